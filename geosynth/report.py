"""The report of a pipeline's output folder: ``report.md`` and ``report.html`` with the figures.

It reads what the steps left in the folder (any of them may be absent):
``eval/<name>/metrics.json`` (Table III), ``figures/*.png``, the last sample
grid of each ``runs/<name>``, ``synth/*_panel.png`` and ``flood/*``; it states
plainly whether fusing labels and DEM beat the single inputs at this budget.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from geosynth.io import atomic_path

SINGLE = ("label", "dem")


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _load_evals(root: Path) -> list[dict]:
    from geosynth.ml.results import read_metrics

    evals = []
    for path in sorted((root / "eval").glob("*/metrics.json")):
        m = read_metrics(path)
        m.setdefault("name", path.parent.name)
        m["_dir"] = path.parent
        evals.append(m)
    order = {"dem": 0, "label": 1, "concat": 2, "merge": 3, "ours": 4}
    return sorted(evals, key=lambda m: (order.get(m["name"], 9), m["name"]))


def verdict(evals: list[dict]) -> str:
    """An honest sentence on fusion vs single inputs, from fake-vs-ground-truth mIoU and FD."""
    by = {m["name"]: m for m in evals}
    if "ours" not in by or not any(n in by for n in SINGLE):
        return "Not enough evaluations to compare fusion with single inputs."
    ours = by["ours"]["blocks"]["fake_gt"]["miou"]
    singles = {n: by[n]["blocks"]["fake_gt"]["miou"] for n in SINGLE if n in by}
    best_name = max(singles, key=lambda n: singles[n])
    best = singles[best_name]
    parts = [
        f"Fusion (ours) reaches an mIoU of {ours:.1%} on its synthetic images against "
        f"{best:.1%} for the best single input ({best_name})"
    ]
    if ours > best:
        parts.append(": at this budget, fusing labels and DEM helps, as in the paper.")
    else:
        parts.append(
            ": at this small budget fusion does **not** beat the single inputs. The demo "
            "trains for minutes on CPU, far from the paper's 200 epochs; read this as a "
            "smoke test of the pipeline, not as a result."
        )
    fds = {m["name"]: m.get("frechet_distance") for m in evals}
    if all(v is not None for v in fds.values()):
        best_fd = min(fds, key=lambda n: fds[n])
        parts.append(f" The lowest Frechet distance: {best_fd} ({fds[best_fd]:.3g}).")
    if any(not m.get("fd_reliable", True) for m in evals):
        parts.append(
            " The Frechet distances rest on fewer samples than feature dimensions and "
            "are biased; compare them with caution."
        )
    return "".join(parts)


def _images(root: Path) -> list[tuple[str, Path]]:
    """(caption, path) of the figures to show, in reading order."""
    found: list[tuple[str, Path]] = []
    for path in sorted((root / "figures").glob("*.png")):
        found.append((path.stem.replace("_", " "), path))
    for m in _load_evals(root):
        chart = m["_dir"] / "iou_per_class.png"
        if chart.exists():
            found.append((f"IoU per class: {m['name']}", chart))
    for run in sorted((root / "runs").glob("*")):
        samples = sorted((run / "samples").glob("*.png"))
        if samples:
            found.append((f"training samples: {run.name} ({samples[-1].stem})", samples[-1]))
    for path in sorted((root / "synth").glob("*_panel.png")):
        found.append((f"synthesized tile {path.stem.replace('_panel', '')}", path))
    flood = sorted((root / "flood").glob("*.png"), key=_level)
    if flood:
        found.append((f"flood edit {flood[-1].stem}", flood[-1]))
    for gif in sorted((root / "flood").glob("*.gif")):
        found.append(("rising water (animation)", gif))
    return found


def _level(path: Path) -> float:
    match = re.search(r"_h(-?\d+(?:\.\d+)?)$", path.stem)
    return float(match.group(1)) if match else 0.0


def write_report(root: str | os.PathLike, title: str = "geosynth demo") -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``root``; returns both paths."""
    from geosynth.augment_results import demo_report_section
    from geosynth.ml.results import markdown_table

    root = Path(root)
    evals = _load_evals(root)
    lines = [f"# {title}", ""]
    timings = root / ".pipeline"
    steps = []
    for stamp in sorted(timings.glob("*/*.done"), key=lambda p: p.stat().st_mtime):  # run order
        info = json.loads(stamp.read_text())
        steps.append((stamp.stem, info.get("seconds", 0.0), info.get("command", "")))
    if evals:
        lines += [
            "## Table III (test split)",
            "",
            "mIoU and pixel accuracy of the U-Net trained on real images, segmenting the "
            "real image (real/GT), the synthesized image (fake/GT) and the synthesized image "
            "against the segmentation of the real one (fake/real); FD is the Frechet "
            "distance of U-Net encoder features (lower is better).",
            "",
            markdown_table([{k: v for k, v in m.items() if k != "_dir"} for m in evals]),
            "",
            verdict(evals),
            "",
        ]
    images = _images(root)
    if images:
        lines += ["## Figures", ""]
        lines += [
            f"### {caption}\n\n![{caption}]({_rel(path, root)})\n" for caption, path in images
        ]
    lines += demo_report_section()  # the augmentation recipe's last measured table
    if steps:
        lines += ["## Steps", "", "| step | seconds | command |", "| --- | ---: | --- |"]
        lines += [f"| {name} | {sec:.0f} | `{cmd}` |" for name, sec, cmd in steps]
        lines += ["", f"Total: {sum(s for _, s, _ in steps) / 60:.1f} minutes.", ""]
    md = root / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    page = root / "report.html"
    with atomic_path(page) as tmp:
        tmp.write_text(_html(title, evals, images, steps, root), encoding="utf-8")
    return md, page


def _html(title, evals, images, steps, root: Path) -> str:
    from geosynth.augment_results import demo_report_html
    from geosynth.ml.results import TABLE_HEADER, table_row

    e = html.escape
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if evals:
        rows = [TABLE_HEADER.splitlines()[0]] + [
            table_row({k: v for k, v in m.items() if k != "_dir"}) for m in evals
        ]
        out.append("<h2>Table III (test split)</h2><table>")
        for k, row in enumerate(rows):
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            tag = "th" if k == 0 else "td"
            out.append("<tr>" + "".join(f"<{tag}>{e(c)}</{tag}>" for c in cells) + "</tr>")
        out.append(f"</table><p>{e(verdict(evals)).replace('**', '')}</p>")
    if images:
        out.append("<h2>Figures</h2>")
        for caption, path in images:
            out.append(f"<h3>{e(caption)}</h3><img src='{e(_rel(path, root))}' alt='{e(caption)}'>")
    out.append(demo_report_html())
    if steps:
        out.append("<h2>Steps</h2><table><tr><th>step</th><th>seconds</th><th>command</th></tr>")
        out += [
            f"<tr><td>{e(n)}</td><td>{s:.0f}</td><td><code>{e(c)}</code></td></tr>"
            for n, s, c in steps
        ]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
