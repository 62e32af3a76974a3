"""The augmentation experiment's results, without torch: one table and one figure from many
``scores.json`` of ``geosynth score-unet``.

Runs are grouped by their name (the training data, e.g. ``real + resynthesis``)
and class weighting; every group shows the mean and, over several seeds, the
sample standard deviation of mIoU and pixel accuracy, and the mean IoU of
every class. The figure puts the per-class IoU of all groups side by side, so
the runs with and without class weights read off one chart.

The demo report shows the last *measured* table of ``pipelines/augment_demo.yaml``
(committed as :data:`DEMO_TABLE`), not a rerun: the recipe takes longer than
the demo's budget.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geosynth import bundled_path
from geosynth.errors import DataError
from geosynth.figures import grouped_bars, save_figure, subplots
from geosynth.io import read_result

SCORES_FORMAT = "geosynth-unet-scores/1"
SCORES_JSON = "scores.json"
#: The last measured table of pipelines/augment_demo.yaml, committed beside the recipe.
DEMO_TABLE = "augment_demo_results.md"


def demo_table_path() -> Path | None:
    """The committed table (``pipelines/``, installed in the package as the recipes are)."""
    path = bundled_path("pipelines") / DEMO_TABLE
    return path if path.is_file() else None


def read_scores(path: str | os.PathLike) -> dict:
    """One ``scores.json`` (a folder or the file); errors name the path."""
    return read_result(path, SCORES_JSON, SCORES_JSON, SCORES_FORMAT)


def collect_scores(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """The ``scores.json`` of each path: the file, a folder holding one, or every one found
    below a folder (e.g. all seeds of a recipe's output)."""
    found: list[dict] = []
    for path in map(Path, paths):
        if path.is_file() or (path / SCORES_JSON).is_file():
            found.append(read_scores(path))
            continue
        files = sorted(path.rglob(SCORES_JSON))
        if not files:
            raise DataError(f"{path}: no {SCORES_JSON} in or below it")
        found += [read_scores(f) for f in files]
    return found


def group_scores(scores: Sequence[dict]) -> list[dict]:
    """Runs grouped by (name, class weights, loss): real-only runs first, then by name, each
    without class weights before with."""
    groups: dict[tuple, dict] = {}
    for s in scores:
        u = s["unet"]
        key = (s["name"], u["class_weights"], u["loss"])
        g = groups.setdefault(
            key,
            {"name": s["name"], "weights": u["class_weights"], "loss": u["loss"], "runs": []},
        )
        g["runs"].append(s)
    out = []
    for g in groups.values():
        runs = g["runs"]
        classes = list(runs[0]["iou"])
        for field in ("miou", "pixel_acc"):
            values = np.array([np.nan if r[field] is None else r[field] for r in runs], float)
            g[field] = float(np.nanmean(values)) if np.isfinite(values).any() else None
            g[field + "_sd"] = float(np.nanstd(values, ddof=1)) if len(runs) > 1 else None
        g["iou"] = {}
        for c in classes:
            values = np.array([np.nan if r["iou"].get(c) is None else r["iou"][c] for r in runs])
            g["iou"][c] = float(np.nanmean(values)) if np.isfinite(values).any() else None
        g["seeds"] = sorted({r["unet"]["seed"] for r in runs})
        g["mixed"] = any(r["unet"].get("extra_store") for r in runs)
        out.append(g)
    return sorted(out, key=lambda g: (g["mixed"], g["name"], g["weights"] != "none", g["loss"]))


def _pct(value: float | None, sd: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" + ("" if sd is None else f" ± {100 * sd:.1f}")


def markdown_table(groups: Sequence[dict]) -> str:
    """Mean (± sd over seeds) mIoU and pixel accuracy and mean per-class IoU, in percent."""
    classes = list(groups[0]["iou"]) if groups else []
    head = ["training data", "class weights", "loss", "seeds", "mIoU", "pixel acc", *classes]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|---:|" + "---:|" * (2 + len(classes))]
    for g in groups:
        cells = [
            g["name"], g["weights"], g["loss"], str(len(g["runs"])),
            _pct(g["miou"], g["miou_sd"]), _pct(g["pixel_acc"], g["pixel_acc_sd"]),
            *(_pct(g["iou"].get(c)) for c in classes),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_groups(groups: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Per-class IoU of every group as grouped bars (mIoU in the legend), PNG, atomically."""
    classes = list(groups[0]["iou"])
    fig, ax = subplots(figsize=(max(7.0, 0.9 * len(classes) + 3), 4.5))
    x = grouped_bars(ax, [
        (f"{g['name']}, weights {g['weights']} (mIoU {_pct(g['miou'], g['miou_sd'])})",
         [np.nan if g["iou"][c] is None else g["iou"][c] for c in classes],
         {"hatch": "//" if g["weights"] != "none" else None})
        for g in groups
    ], width=0.85)  # fmt: skip
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU on real test images")
    ax.set_title(title or "U-Net per-class IoU on the real test split")
    ax.legend(fontsize="x-small", loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def demo_report_section(table: str | os.PathLike | None = None) -> list[str]:
    """Markdown lines of the demo report's section on the augmentation experiment ([] when
    no measured table is at hand)."""
    path = Path(table) if table is not None else demo_table_path()
    if path is None or not path.is_file():
        return []
    return [
        "## Synthesized training data (last measured run of pipelines/augment_demo.yaml)",
        "",
        "Not rerun by the demo (it takes longer than the demo's budget); run it with "
        "`geosynth pipeline pipelines/augment_demo.yaml`.",
        "",
        *path.read_text(encoding="utf-8").strip().splitlines(),
        "",
    ]
