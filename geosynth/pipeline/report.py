"""The report of a pipeline's output folder: ``report.md`` and ``report.html`` with the figures.

It reads what the steps left in the folder (any of them may be absent) and
explains it: the data (``world/world.json``, ``figures/class_shares.csv``),
the setup (``runs/*/config.yaml``), Table III (``eval/<name>/metrics.json``,
several seeds as ``eval/<name>-s<seed>``) with what each block means, the
paper's GeoNRW row as a reference line and an honest verdict, the fusion
probe (``probe/probe.json``), the flood edit (``flood/*``), SAR synthesis and speckle
(``sar/stats/``, ``geosynth sar-stats``), the figures and the steps' timings.

The page is a list of sections (:data:`SECTIONS`): each is a function of the
folder's :class:`Context` that returns Markdown lines (or none, when its
inputs are absent); another section is one more function in the list. The
HTML page is the same Markdown rendered by ``markdown``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from geosynth.analysis.augment_scores import demo_report_section
from geosynth.analysis.results import read_metrics, speckle_line
from geosynth.analysis.sar_stats import SPECKLE_PNG, check_sentence, summary_lines
from geosynth.io import atomic_path
from geosynth.ml.evaluation.probe import PANEL_PNG, PROBE_PNG, row_label
from geosynth.names import KIND_INPUTS, TABLE3_ROWS

SINGLE = tuple(name for name, kind in TABLE3_ROWS.items() if sum(KIND_INPUTS[kind]) == 1)
SHARE_TOLERANCE_PP = 5.0  # test vs train class shares, per class (tests/test_demo_world.py)
LONG_RECIPE = "`pipelines/demo_long_results.md`"  # the measured long recipe, shipped with geosynth
# The paper's Table III, GeoNRW (RGB), as a reference line. Only the scorer's
# real-image mIoU is transcribed here (about 17 %); the other cells: see the paper.
PAPER_GEONRW = {
    "source": "Baier et al., IEEE TGRS 2021 (arXiv:2011.11314), Table III, GeoNRW",
    "real_miou": 0.17,
}
GREY = "#999"


# --------------------------------------------------------------------------- reading


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _load_evals(root: Path) -> list[dict]:

    evals = []
    for path in sorted((root / "eval").glob("*/metrics.json")):
        m = read_metrics(path)
        m.setdefault("name", path.parent.name)
        m["_dir"] = path.parent
        evals.append(m)
    order = {name: i for i, name in enumerate(TABLE3_ROWS)}
    return sorted(evals, key=lambda m: (order.get(base_name(m["name"]), 9), m["name"]))


def base_name(name: str) -> str:
    """``ours-s2`` -> ``ours``: evaluations of one generator over several seeds."""
    return re.sub(r"-s\d+$", "", name)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_step(run: Path) -> int | None:
    try:
        lines = (run / "log.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


@dataclass
class Context:
    """What the sections read, loaded once."""

    root: Path
    evals: list[dict] = field(default_factory=list)
    runs: dict[str, dict] = field(default_factory=dict)  # name -> config.yaml (+ "_steps")
    world: dict | None = None
    shares: list[dict] = field(default_factory=list)  # rows of class_shares.csv
    probe: dict | None = None
    steps: list[tuple[str, float, str]] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path) -> Context:
        ctx = cls(root, evals=_load_evals(root))
        for run in sorted((root / "runs").glob("*/config.yaml")):
            cfg = _read_yaml(run)
            cfg["_steps"] = _last_step(run.parent)
            ctx.runs[run.parent.name] = cfg
        for candidate in (root / "world" / "world.json",):
            if candidate.is_file():
                ctx.world = json.loads(candidate.read_text())
        shares = root / "figures" / "class_shares.csv"
        if shares.is_file():
            with open(shares, newline="") as f:
                ctx.shares = list(csv.DictReader(f))
        if (root / "probe" / "probe.json").is_file():
            from geosynth.ml.evaluation.probe import read_probe

            ctx.probe = read_probe(root / "probe")
        for stamp in sorted(
            (root / ".pipeline").glob("*/*.done"), key=lambda p: p.stat().st_mtime
        ):  # run order
            info = json.loads(stamp.read_text())
            ctx.steps.append((stamp.stem, info.get("seconds", 0.0), info.get("command", "")))
        return ctx


# --------------------------------------------------------------------------- numbers


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _spread(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """``mean`` or ``mean ± sd`` (sample standard deviation over seeds)."""
    vals = [v * scale for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "n/a"
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def fd_rankable(m: dict) -> tuple[bool, str]:
    """Whether a Frechet distance may be ranked: it needs more samples than feature dimensions
    (otherwise the feature covariance is singular and the distance mostly measures that)."""
    n, d = m.get("fd_samples"), m.get("feature_dim")
    if m.get("frechet_distance") is None:
        return False, "not computed"
    if n is None or d is None:
        return False, "sample and feature counts unknown"
    if n <= d:
        return False, f"{n} samples in {d} dimensions: not ranked"
    return True, f"{n} samples in {d} dimensions"


def _fd_cell(group: list[dict]) -> str:
    value = _spread([m["frechet_distance"] for m in group], scale=1.0, digits=2)
    ok, why = fd_rankable(group[0])
    if all(fd_rankable(m)[0] for m in group):
        return value
    return f'<span style="color:{GREY}" title="{why}">{value}*</span>'


def _groups(evals: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in evals:
        out.setdefault(base_name(m["name"]), []).append(m)
    return out


def _miou_spread(group: list[dict]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one seed) of fake-vs-ground-truth mIoU."""
    values = [m["blocks"]["fake_gt"]["miou"] or 0.0 for m in group]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def diffusion_verdict(evals: list[dict]) -> str | None:
    """The diffusion generator against the GANs with the same inputs, and the paper's fusion
    (labels + raster) against labels only within the diffusion generator; a difference
    counts only where it exceeds the two groups' standard deviations together."""
    by = _groups(evals)
    kind = {n: g[0]["generator"]["kind"] for n, g in by.items()}
    inputs = {n: tuple(sorted(g[0]["generator"]["inputs"])) for n, g in by.items()}
    diffusion = [n for n in by if kind[n] == "diffusion"]
    if not diffusion:
        return None

    def compare(a: str, b: str) -> str:
        (ma, sa), (mb, sb) = _miou_spread(by[a]), _miou_spread(by[b])
        if abs(ma - mb) <= sa + sb:
            how = "within the spread of the seeds"
        else:
            how = f"**{a} {'better' if ma > mb else 'worse'}**"
        return (
            f"{a} ({kind[a]}, {'+'.join(inputs[a])}) {ma:.1%} ± {sa:.1%} against {b} "
            f"({kind[b]}) {mb:.1%} ± {sb:.1%}: {how}"
        )

    parts = []
    for d in diffusion:
        parts += [compare(d, g) for g in by if kind[g] != "diffusion" and inputs[g] == inputs[d]]
    fused = [d for d in diffusion if len(inputs[d]) > 1]
    labels_only = [d for d in diffusion if inputs[d] == ("seg",)]
    parts += [compare(f, lab) for f in fused for lab in labels_only]
    if not parts:
        return None
    return (
        "Diffusion against the GANs (fake mIoU, mean ± sd over seeds; fusion within the "
        "diffusion generator last): " + "; ".join(parts) + "."
    )


def verdict(evals: list[dict]) -> str:
    """An honest sentence on fusion vs single inputs, from fake-vs-ground-truth mIoU and FD."""
    by = _groups(evals)
    if "ours" not in by or not any(n in by for n in SINGLE):
        return "Not enough evaluations to compare fusion with single inputs."

    (ours, ours_sd) = _miou_spread(by["ours"])
    singles = {n: _miou_spread(by[n]) for n in SINGLE if n in by}
    best_name = max(singles, key=lambda n: singles[n][0])
    best, best_sd = singles[best_name]
    seeds = len(by["ours"]) > 1 and len(by[best_name]) > 1
    parts = [
        f"Fusion (ours) reaches an mIoU of {ours:.1%} on its synthetic images against "
        f"{best:.1%} for the best single input ({best_name})"
    ]
    if seeds and abs(ours - best) <= ours_sd + best_sd:  # the seeds cannot tell them apart
        parts.append(
            f": the difference lies within the spread of the seeds (sd {ours_sd:.1%} and "
            f"{best_sd:.1%}), so at this budget fusion is **neither better nor worse** than "
            "the single input."
        )
    elif ours > best:
        parts.append(": at this budget, fusing labels and DEM helps, as in the paper.")
    else:
        parts.append(
            ": at this small budget fusion does **not** beat the single inputs. The demo "
            "trains for minutes on CPU, far from the paper's 200 epochs; read this as a "
            "smoke test of the pipeline, not as a result."
        )
    rankable = {n: g for n, g in by.items() if all(fd_rankable(m)[0] for m in g)}
    if rankable:
        fds = {n: statistics.fmean(m["frechet_distance"] for m in g) for n, g in rankable.items()}
        best_fd = min(fds, key=lambda n: fds[n])
        parts.append(f" The lowest Frechet distance: {best_fd} ({fds[best_fd]:.3g}).")
    if len(rankable) < len(by):
        greyed = next(m for g in by.values() for m in g if not fd_rankable(m)[0])
        parts.append(
            f" Frechet distances marked * are not ranked: {fd_rankable(greyed)[1]} (the "
            "covariance of so few samples is singular, so the distance mostly measures that)."
        )
    return "".join(parts)


# --------------------------------------------------------------------------- sections

Section = Callable[[Context], list[str]]


def data_section(ctx: Context) -> list[str]:
    lines = []
    if ctx.world:
        tiles = ctx.world.get("tiles", [])
        test = [t["id"] for t in tiles if t.get("split") == "test"]
        train = [t["id"] for t in tiles if t.get("split") != "test"]
        p = ctx.world.get("params", {})
        lines += [
            f"The procedural demo world (seed {p.get('seed')}): {len(tiles)} tiles of 1 km "
            f"({' x '.join(map(str, p.get('tiles', [])))}), orthophotos at "
            f"{p.get('dop_resolution')} m and lidar at {p.get('lidar_density')} pulses/m², built "
            "into a store of 1 m tiles (1000 x 1000 px) exactly as a real NRW region: RGB from the "
            "orthophotos, the DEM (a surface model) from the lidar, labels from the land-cover "
            "vectors and OpenStreetMap.",
            "",
            f"- train split: {len(train)} tiles ({', '.join(train)})",
            f"- test split: {len(test)} tiles ({', '.join(test)})",
            "",
        ]
    if ctx.shares:
        splits = [k for k in ctx.shares[0] if k not in ("class_id", "class")]
        lines += [
            "Class shares of the labelled pixels by split (`figures/class_shares.csv`):",
            "",
            "| class | " + " | ".join(f"{s} (%)" for s in splits) + " | test - train (pp) |",
            "|---|" + "---:|" * (len(splits) + 1),
        ]
        worst = 0.0
        for row in ctx.shares:
            vals = {s: 100 * float(row[s]) for s in splits}
            diff = vals.get("test", 0.0) - vals.get("train", 0.0)
            worst = max(worst, abs(diff))
            cells = " | ".join(f"{vals[s]:.1f}" for s in splits)
            lines.append(f"| {row['class']} | {cells} | {diff:+.1f} |")
        ok = "within" if worst <= SHARE_TOLERANCE_PP else "**outside**"
        lines += [
            "",
            f"The largest difference is {worst:.1f} percentage points, {ok} the "
            f"{SHARE_TOLERANCE_PP:.0f} pp the demo world's test tiles are chosen to keep: the "
            "scorer is tested on the mix of classes it learnt from.",
            "",
        ]
    return ["## Data", "", *lines] if lines else []


def _steps_of(cfg: dict) -> str:
    done = cfg.get("_steps")
    if done is not None:
        return str(done)
    if cfg.get("max_steps"):
        return str(cfg["max_steps"])
    spe, batch, epochs = cfg.get("samples_per_epoch"), cfg.get("batch_size"), cfg.get("epochs")
    return str(epochs * -(-spe // batch)) if spe and batch and epochs else "?"


def setup_section(ctx: Context) -> list[str]:
    if not ctx.runs:
        return []
    lines = [
        "## Setup",
        "",
        "| run | network | inputs -> output | width | crop (px) | batch | steps | lr | seed |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cfg in ctx.runs.items():
        if cfg.get("task") == "unet":
            loss = {"ce": "cross-entropy", "bce": "BCE", "focal": "focal loss"}.get(
                cfg.get("loss", "ce"), cfg.get("loss")
            )
            extras = (
                [f"{cfg['class_weights']} class weights"]
                if cfg.get("class_weights", "none") != "none"
                else []
            )
            extras += ["BatchNorm"] if cfg.get("norm") == "batch" else []
            net = f"U-Net scorer ({', '.join([loss, *extras])})"
            io = f"{cfg.get('input')} -> classes"
            width = cfg.get("base_channels")
            lr = cfg.get("lr")
        else:
            io = f"{'+'.join(cfg.get('inputs') or [])} -> {cfg.get('output')}"
            width = cfg.get("cap")
            if cfg.get("generator") == "diffusion":
                net = (
                    f"diffusion generator ({cfg.get('prediction')}, {cfg.get('schedule')} "
                    f"schedule, {cfg.get('sampler')} {cfg.get('steps')} steps)"
                )
                lr = cfg.get("lr_g")
            else:
                net = f"{cfg.get('generator')} generator + discriminator"
                lr = f"G {cfg.get('lr_g')}, D {cfg.get('lr_d')}"  # a GAN has two
        lines.append(
            f"| {name} | {net} | {io} | {width} | {cfg.get('crop')} | {cfg.get('batch_size')} "
            f"| {_steps_of(cfg)} | {lr} | {cfg.get('seed')} |"
        )
    lines.append("")
    if ctx.evals:
        m = ctx.evals[0]
        lines += [
            f"Scoring: the centre {m['window'][0]} x {m['window'][1]} px window of each of the "
            f"{len(m['tiles'])} test tiles ({', '.join(m['tiles'])}); width is the U-Net's "
            "base channels or the generator's capacity (the paper: 64 and 256 px crops, "
            "200 epochs on a GPU).",
            "",
        ]
    return lines


BLOCKS_TEXT = (
    "How to read it: every block is the U-Net scorer (trained on *real* training images) "
    "segmenting an image of the test split. **real** segments the real image against the "
    "ground truth: how good the scorer is, and the ceiling of the next block. **fake** "
    "segments the synthesized image against the ground truth: does the image show the classes "
    "it was asked for? **fake vs real** compares the two segmentations: does the synthesized "
    "image look like the real one to the scorer? mIoU and pixel accuracy in %, labelled pixels "
    "only. **FD** is the Frechet distance between the scorer's encoder features of real and "
    "synthesized images (lower is better); it is ranked only when it rests on more samples "
    "than feature dimensions."
)

WHY_LOW = (
    "Why the numbers are low: the demo trains each network for a few hundred steps on 2 CPU "
    "cores with narrow networks and small crops; the paper trained 200 epochs on a GPU with "
    "capacity 64 and 256 px crops. A generator this short produces blurred, colour-correct "
    "textures, so the fake blocks sit well below the real block; small classes (roads, "
    "railway, buildings) suffer first. The numbers test the pipeline end to end; the long "
    f"recipe (`pipelines/demo_long.yaml`, 3 seeds, figures in {LONG_RECIPE}) "
    "gives the spread between seeds, which any difference here must exceed to mean anything."
)


def table_section(ctx: Context) -> list[str]:
    if not ctx.evals:
        return []
    groups = _groups(ctx.evals)
    seeds = {len(g) for g in groups.values()}
    lines = [
        "## Table III (test split)",
        "",
        "| generator | inputs | seeds | real mIoU | real acc | fake mIoU | fake acc "
        "| fake-vs-real mIoU | fake-vs-real acc | FD |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in groups.items():
        g = group[0]["generator"]

        def col(block, key, group=group):
            return _spread([m["blocks"][block][key] for m in group])

        lines.append(
            f"| {name} ({g['kind']}) | {'+'.join(g['inputs'])} | {len(group)} "
            f"| {col('real_gt', 'miou')} | {col('real_gt', 'pixel_acc')} "
            f"| {col('fake_gt', 'miou')} | {col('fake_gt', 'pixel_acc')} "
            f"| {col('fake_real', 'miou')} | {col('fake_real', 'pixel_acc')} | {_fd_cell(group)} |"
        )
    lines.append(
        f"| *paper, GeoNRW (reference)* | seg+dem | - | *{_pct(PAPER_GEONRW['real_miou'])}* "
        "| see paper | see paper | see paper | see paper | see paper | see paper |"
    )
    spread = (
        "mean ± standard deviation over the seeds"
        if max(seeds) > 1
        else f"one seed; for the spread between seeds see the long recipe's figures in "
        f"{LONG_RECIPE}"
    )
    lines += [
        "",
        f"Values: {spread}. Reference line: {PAPER_GEONRW['source']}; its scorer reached "
        "about 17 % mIoU on GeoNRW's real test images, much harder data than this "
        "procedural world.",
        "",
        BLOCKS_TEXT,
        "",
        verdict(ctx.evals),
        "",
        *([d, ""] if (d := diffusion_verdict(ctx.evals)) else []),
        WHY_LOW,
        "",
    ]
    return lines


def probe_section(ctx: Context) -> list[str]:
    p = ctx.probe
    if not p:
        return []

    lines = [
        "## Fusion probe (the paper's Fig. 7)",
        "",
        "Where does the DEM carry what the labels lack? The demo world's truth rasters mark "
        f"single trees and hedges (objects over {p['min_height_m']:g} m on pixels labelled "
        "neither forest nor buildings) and buildings (the labels give the footprint, only the "
        "DEM the height). On those pixels of the test windows: the share where the scorer's "
        "segmentation of the synthesized image agrees with its segmentation of the real image, "
        "and the mean absolute RGB error (0-255). *elsewhere* is every other labelled pixel, "
        "the control. The last row is the ours generator with the objects removed from its "
        "DEM input (the terrain underneath), on the same pixels.",
        "",
        "| generator | DEM | agreement: trees, hedges (%) | buildings (%) | elsewhere (%) "
        "| RGB error: trees, hedges | buildings | elsewhere |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def num(v):
        return "n/a" if v is None else f"{v:.1f}"

    for r in p["rows"]:
        a, e = r["agreement"], r["error"]
        lines.append(
            f"| {r['name']} | {r['dem']} | {_pct(a['trees_hedges'])} | {_pct(a['buildings'])} "
            f"| {_pct(a['elsewhere'])} | {num(e['trees_hedges'])} | {num(e['buildings'])} "
            f"| {num(e['elsewhere'])} |"
        )
    px = p["pixels"]
    lines += [
        "",
        f"Pixels: {px['trees_hedges']} trees/hedges, {px['buildings']} buildings, "
        f"{px['elsewhere']} elsewhere, in {len(p['tiles'])} tiles.",
        "",
        probe_verdict(p, row_label),
        "",
    ]
    for name, caption in ((PROBE_PNG, "fusion probe"), (PANEL_PNG, "fusion probe, one tile")):
        path = ctx.root / "probe" / name
        if path.is_file():
            lines += [f"![{caption}]({_rel(path, ctx.root)})", ""]
    return lines


def probe_verdict(p: dict, row_label) -> str:
    """What the probe shows, whatever it shows."""
    rows = {row_label(r): r for r in p["rows"]}
    parts = []

    def agree(r):
        return r["agreement"]["probe"]

    if (
        "ours" in rows
        and "label" in rows
        and None not in (agree(rows["ours"]), agree(rows["label"]))
    ):
        d = agree(rows["ours"]) - agree(rows["label"])
        parts.append(
            f"On the probe pixels ours agrees with the real image {abs(100 * d):.1f} points "
            f"{'more' if d > 0 else 'less'} than labels only"
        )
    ablated = [r for r in p["rows"] if r["dem"] != "real"]
    if ablated and "ours" in rows:
        r, o = ablated[0], rows["ours"]
        if None not in (agree(r), agree(o)):
            d = agree(o) - agree(r)
            e = (r["error"]["probe"] or 0) - (o["error"]["probe"] or 0)
            parts.append(
                f"; removing the objects from its DEM changes its agreement there by "
                f"{-100 * d:+.1f} points and its RGB error by {e:+.1f}"
            )
    if not parts:
        return ""
    parts.append(
        ". If fusion used the DEM as the paper claims, ours would agree more than labels only "
        "on these pixels and lose that lead when the objects are removed from its DEM; at "
        "the demo's budget read the sign of small differences with the long recipe's spread "
        "in mind."
    )
    return "".join(parts)


def flood_section(ctx: Context) -> list[str]:
    flood = sorted((ctx.root / "flood").glob("*.png"), key=_level)
    gifs = sorted((ctx.root / "flood").glob("*.gif"))
    if not flood and not gifs:
        return []
    lines = [
        "## Flood edit",
        "",
        "The water level of a test tile's DEM is raised and the pixels below it relabelled as "
        "water; the ours generator synthesizes the edited inputs. At the demo's budget the "
        "generator has seen water on about 1-2 % of its training pixels for a few hundred steps, "
        "so the new water is often a smooth, dark or greyish band rather than convincing water: "
        "a short GAN learns the large classes' colours first.",
        "",
    ]
    rate = ctx.root / "flood" / "water_rate.json"
    if rate.is_file():
        info = json.loads(rate.read_text())
        lines += [
            f"The U-Net classifies {_pct(info.get('rate'))} % of the flood's new water pixels "
            f"as water (level {info.get('level')} m, {info.get('pixels')} pixels).",
            "",
        ]
    else:
        lines += [
            "The rate at which the U-Net classifies the flood's new water as water was not "
            "measured in this run.",
            "",
        ]
    if flood:
        lines += [f"![flood edit {flood[-1].stem}]({_rel(flood[-1], ctx.root)})", ""]
    for gif in gifs:
        lines += [f"![rising water (animation)]({_rel(gif, ctx.root)})", ""]
    return lines


def figures_section(ctx: Context) -> list[str]:
    images = _images(ctx.root, ctx.evals)
    if not images:
        return []
    lines = ["## Figures", ""]
    for caption, path in images:
        lines += [f"### {caption}", "", f"![{caption}]({_rel(path, ctx.root)})", ""]
    return lines


def steps_section(ctx: Context) -> list[str]:
    if not ctx.steps:
        return []
    lines = ["## Steps", "", "| step | seconds | command |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {sec:.0f} | `{cmd}` |" for name, sec, cmd in ctx.steps]
    total = sum(s for _, s, _ in ctx.steps) / 60
    return [*lines, "", f"Total: {total:.1f} minutes.", ""]


SAR_INTRO = (
    "Beyond the paper: a short `ours` generator (labels + DEM -> SAR) trained on the tiles "
    "with enough SAR, its synthesized SAR beside the real one in dB, and the speckle "
    "statistics of both over homogeneous areas (`geosynth sar-stats`). `raw` is the "
    "simulated TerraSAR-X amplitude on its own 1.25 m grid; `real` is the store's SAR "
    "(resampled to 1 m and averaged over scenes, which raises the ENL and correlates "
    "neighbours); `synth` is the generator's."
)


def sar_section(ctx: Context) -> list[str]:
    """SAR synthesis and speckle statistics, from ``sar/stats`` (``geosynth sar-stats``) and
    the ``speckle`` sections of SAR generators' evaluations."""

    folder = ctx.root / "sar" / "stats"
    stats = folder / "sar_stats.json"
    evals = [m for m in ctx.evals if m.get("speckle")]
    if not stats.exists() and not evals:
        return []
    lines = ["## SAR: synthesis and speckle statistics", "", SAR_INTRO, ""]
    if stats.exists():
        summary = json.loads(stats.read_text())
        check = summary.get("looks_check")
        figures = sorted(folder.glob("sar_pair_*.png")) + sorted(folder.glob("sar_stats_*.png"))
        lines += [*summary_lines(summary["rows"]), ""]
        if check:
            lines += [check_sentence(check), ""]
        lines += [f"{summary['note']}.", ""]
        lines += [f"![{p.stem}]({_rel(p, ctx.root)})\n" for p in figures]
    for m in evals:
        windows = len(m["speckle"].get("tiles", []))
        lines += [
            f"`geosynth evaluate` of {m['name']} ({windows} window{'s' * (windows != 1)} of "
            f"split {m['split']}), "
            f"{speckle_line(m)}.",
            "",
        ]
        if (m["_dir"] / SPECKLE_PNG).exists():
            lines += [f"![speckle {m['name']}]({_rel(m['_dir'] / SPECKLE_PNG, ctx.root)})", ""]
    return lines


def augment_section(ctx: Context) -> list[str]:
    """The augmentation recipe's last measured table (committed, not rerun by the demo)."""

    return demo_report_section()


SECTIONS: list[Section] = [
    data_section,
    setup_section,
    table_section,
    probe_section,
    flood_section,
    sar_section,
    augment_section,
    figures_section,
    steps_section,
]


def _images(root: Path, evals: list[dict]) -> list[tuple[str, Path]]:
    """(caption, path) of the figures not shown in a section, in reading order."""
    found: list[tuple[str, Path]] = []
    for path in sorted((root / "figures").glob("*.png")):
        found.append((path.stem.replace("_", " "), path))
    for m in evals:
        chart = m["_dir"] / "iou_per_class.png"
        if chart.exists():
            found.append((f"IoU per class: {m['name']}", chart))
    for run in sorted((root / "runs").glob("*")):
        samples = sorted((run / "samples").glob("*.png"))
        if samples:
            found.append((f"training samples: {run.name} ({samples[-1].stem})", samples[-1]))
    synth = root / "synth"  # one folder of panels per synthesize step, or the panels in it
    for path in sorted(synth.rglob("*_panel.png")):
        where = path.parent.relative_to(synth).as_posix()
        by = "" if where == "." else f" ({where})"
        found.append((f"synthesized tile {path.stem.replace('_panel', '')}{by}", path))
    return found


def _level(path: Path) -> float:
    match = re.search(r"_h(-?\d+(?:\.\d+)?)$", path.stem)
    return float(match.group(1)) if match else 0.0


# --------------------------------------------------------------------------- writing


def write_report(
    root: str | os.PathLike,
    title: str = "geosynth demo",
    sections: list[Section] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``root``; returns both paths."""
    root = Path(root)
    ctx = Context.load(root)
    lines = [f"# {title}", ""]
    for section in SECTIONS if sections is None else sections:
        lines += section(ctx)
    text = "\n".join(lines)
    md = root / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text(text, encoding="utf-8")
    page = root / "report.html"
    with atomic_path(page) as tmp:
        tmp.write_text(_html(title, text), encoding="utf-8")
    return md, page


def _html(title: str, text: str) -> str:
    import html

    import markdown

    body = markdown.markdown(text, extensions=["tables"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px}"
        "img{max-width:100%}</style></head><body>\n" + body + "\n</body></html>\n"
    )
