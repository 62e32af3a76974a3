"""The files of an evaluation, without torch: ``metrics.json``, Table III rows, CSV, IoU chart.

``geosynth evaluate`` (:mod:`geosynth.ml.evaluation.evaluate`) computes the scores and
writes them here; ``geosynth table``, the demo report and anyone's own code
read and format them without importing torch.

The output folder (``--out eval/NAME``)::

    metrics.json        everything: protocol, runs, store, window, tiles, the three blocks
                        (mIoU, pixel accuracy, per-class IoU, confusion matrix, each with
                        its protocol and window), the Frechet distances (``frechet``: per
                        variant its value, samples, window and feature set)
    metrics.csv         one header and one row (per-class IoU as columns): cat them
    table_row.md        one Markdown row of Table III (header: TABLE_HEADER)
    iou_per_class.png   per-class IoU of the three blocks as bars
    speckle.csv         SAR generators only: the speckle statistics, one row per source and
                        class (``geosynth.analysis.sar_stats``; class ``all``: the pixel-weighted
                        means over the classes)
    speckle.png         SAR generators only: real and synthesized intensity histograms with
                        their Gamma and K fits, for the largest classes

A SAR generator's ``metrics.json`` also holds ``speckle``: the speckle
statistics of the real and the synthesized SAR of the scored windows (at most
``geosynth.ml.evaluation.evaluate.SPECKLE_PIXELS``, 2^23, of their pixels, windows spread over the split; ``tiles``
names them), computed on the amplitude ``A = 10^(100 x / 20)`` of the store's
normalised values ``x`` and only on valid SAR pixels, over homogeneous areas
(each class's mask eroded by ``erode_px``; classes with fewer than
``min_pixels`` such pixels are left out)::

    "speckle": {"note": ..., "pixels": ..., "erode_px": 3, "min_pixels": 500,
                "lags_px": [1, 2, 3, 4, 5], "tiles": [...],
                "overall": {"real": ROW, "synth": ROW},  # pixel-weighted class means
                "classes": {"<class key>": {"real": ROW, "synth": ROW}, ...}}

    ROW: pixels, mean_intensity, enl (mean^2 / var of intensity), enl_local,
         cv_amplitude, gamma_looks, gamma_ks (Kolmogorov-Smirnov distance), k_looks,
         k_alpha, k_ks, acf1..acf5 (autocorrelation at lags 1..5 px), clipped;
         null where not finite (e.g. the ENL of a constant image)

The section is optional (no format change): readers that do not know it ignore it.
Each file is written atomically; ``metrics.json`` comes last, so a folder
with it is complete. Files of format ``geosynth-eval/1`` (before protocols)
read as the ``geosynth`` protocol. A table refuses rows of different
protocols unless asked (:func:`markdown_table`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.errors import UsageError
from geosynth.figures import grouped_bars, save_figure, subplots
from geosynth.io import read_result, temporary_name

FORMAT = "geosynth-eval/2"
READABLE_FORMATS = ("geosynth-eval/1", FORMAT)
# block key -> (reference, title); the order of the paper's Table III
BLOCKS = {
    "real_gt": ("ground truth", "real vs ground truth"),
    "fake_gt": ("ground truth", "synthesized vs ground truth"),
    "fake_real": ("segmentation of the real image", "synthesized vs real segmentation"),
}
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
TABLE_ROW = "table_row.md"
IOU_PNG = "iou_per_class.png"
TABLE_HEADER = (
    "| run | generator | inputs | real mIoU | real acc | fake mIoU | fake acc "
    "| fake-vs-real mIoU | fake-vs-real acc | FD |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def protocol_of(metrics: dict) -> str:
    """The protocol of an evaluation (``geosynth`` for files written before protocols)."""
    return (metrics.get("protocol") or {}).get("name", "geosynth")


def summary(m: dict) -> str:
    b = m["blocks"]
    return (
        f"{m['name']} ({protocol_of(m)} protocol): mIoU real {_pct(b['real_gt']['miou'])}, fake {_pct(b['fake_gt']['miou'])}, "
        f"fake vs real {_pct(b['fake_real']['miou'])}; FD {_num(m['frechet_distance'])}"
    )


def block_lines(metrics: dict) -> list[str]:
    """The three blocks and the Frechet distance as ``geosynth evaluate`` prints them."""
    b = metrics["blocks"]
    lines = [
        f"{b[key]['title']}: mIoU {_percent(b[key]['miou'])}, acc {_percent(b[key]['pixel_acc'])}"
        for key in BLOCKS
    ]
    window = "x".join(str(v) for v in metrics["window"])
    lines.insert(0, f"protocol {protocol_of(metrics)}, centre window {window} px")
    fds = metrics.get("frechet") or {"tile": {"value": metrics["frechet_distance"]}}
    for key, entry in fds.items():
        fd = entry["value"]
        what = "" if key == "tile" else f" ({entry['windows_per_tile']} windows per tile)"
        lines.append(f"Frechet distance{what}: {'n/a' if fd is None else f'{fd:.3f}'}")
    if metrics.get("speckle"):
        lines.append(speckle_line(metrics))
    return lines


def speckle_line(metrics: dict) -> str:
    """The speckle section in one line: ENL and lag-1 autocorrelation, real / synthesized."""
    section = metrics.get("speckle") or {}
    overall = section.get("overall") or {}
    if not overall:
        return (
            f"speckle: no class has {section.get('min_pixels', 'enough')} homogeneous pixels "
            "of valid SAR in the scored windows"
        )
    real, synth = overall.get("real") or {}, overall.get("synth") or {}
    return (
        f"speckle (homogeneous areas, mean over classes): ENL real {_num(real.get('enl'))} / "
        f"synthesized {_num(synth.get('enl'))}, lag-1 autocorrelation "
        f"{_num(real.get('acf1'))} / {_num(synth.get('acf1'))}"
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table_row(metrics: dict, show_protocol: bool = False) -> str:
    """One Markdown row of Table III (mIoU and accuracy in %); see :data:`TABLE_HEADER`.

    ``show_protocol``: the run's name is followed by its protocol in brackets.
    """
    b = metrics["blocks"]
    g = metrics["generator"]
    name = f"{metrics['name']} [{protocol_of(metrics)}]" if show_protocol else metrics["name"]
    cells = [
        name, g["kind"], "+".join(g["inputs"]),
        _pct(b["real_gt"]["miou"]), _pct(b["real_gt"]["pixel_acc"]),
        _pct(b["fake_gt"]["miou"]), _pct(b["fake_gt"]["pixel_acc"]),
        _pct(b["fake_real"]["miou"]), _pct(b["fake_real"]["pixel_acc"]),
        _num(metrics["frechet_distance"]),
    ]  # fmt: skip
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def markdown_table(metrics: Sequence[dict], allow_mixed: bool = False) -> str:
    """Table III from several evaluations' ``metrics.json`` contents, in the given order.

    Rows of different protocols are refused (:class:`UsageError`) unless
    ``allow_mixed``; then every run's name shows its protocol.
    """
    protocols = {protocol_of(m) for m in metrics}
    mixed = len(protocols) > 1
    if mixed and not allow_mixed:
        rows = ", ".join(f"{m['name']} ({protocol_of(m)})" for m in metrics)
        raise UsageError(
            f"the evaluations use different protocols ({rows}): their numbers are not "
            "comparable; evaluate them alike, or pass --allow-mixed to tabulate them anyway"
        )
    return "\n".join([TABLE_HEADER, *(table_row(m, mixed) for m in metrics)]) + "\n"


def csv_columns(metrics: dict) -> dict[str, Any]:
    """The row of ``metrics.csv``: scores of the three blocks, FD, then per-class IoU."""
    g = metrics["generator"]
    row: dict[str, Any] = {
        "name": metrics["name"],
        "protocol": protocol_of(metrics),
        "window": "x".join(str(v) for v in metrics["window"]),
        "generator": g["kind"],
        "inputs": "+".join(g["inputs"]),
        "output": g["output"],
        "split": metrics["split"],
        "tiles": len(metrics["tiles"]),
    }
    for key, block in metrics["blocks"].items():
        row[f"{key}_miou"] = block["miou"]
        row[f"{key}_acc"] = block["pixel_acc"]
    row["fd"] = metrics["frechet_distance"]
    row["fd_samples"] = metrics["fd_samples"]
    row["feature_dim"] = metrics["feature_dim"]
    grid = (metrics.get("frechet") or {}).get("grid")
    row["fd_grid"] = None if grid is None else grid["value"]
    row["fd_grid_samples"] = None if grid is None else grid["samples"]
    for key, block in metrics["blocks"].items():
        for cls, value in block["iou"].items():
            row[f"{key}_iou_{cls}"] = value
    return row


def _csv_text(row: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def plot_iou(metrics: dict, path: str | os.PathLike) -> Path:
    """Per-class IoU of the three blocks as grouped bars, written atomically as PNG."""
    classes = metrics["classes"]
    fig, ax = subplots(figsize=(max(6.0, 0.8 * len(classes) + 2), 4.0))
    x = grouped_bars(ax, [
        (f"{block['title']} (mIoU {_pct(block['miou'])} %)",
         [np.nan if block["iou"][c["key"]] is None else block["iou"][c["key"]]
          for c in classes],  # absent classes: no bar
         {})
        for block in metrics["blocks"].values()
    ])  # fmt: skip
    ax.set_xticks(x, [c["name"] for c in classes], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.set_title(
        f"{metrics['name']}: per-class IoU ({len(metrics['tiles'])} tiles, {metrics['split']}, "
        f"{protocol_of(metrics)} protocol)"
    )
    ax.legend(fontsize="small", loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def write_reports(
    out: str | os.PathLike, metrics: dict, extra: Callable[[Path], list[Path]] | None = None
) -> None:
    """The four files of an evaluation folder, written into a temporary folder beside it
    (:func:`~geosynth.io.temporary_name`) and moved in when all are complete: a new folder
    by one rename, into an existing one file by file, ``metrics.json`` last. ``extra(tmp)``
    writes further files (e.g. the speckle statistics) into the temporary folder first and
    returns their paths."""
    out = Path(out).absolute()  # `--out .` too
    # into an existing folder (--overwrite, `.`, a mount point) the temporary lives inside it,
    # so the files move within one folder and one file system; a new folder is moved in whole
    tmp = temporary_name(out / "metrics" if out.is_dir() else out)
    try:
        tmp.mkdir(parents=True)
        extras = [Path(p).name for p in extra(tmp)] if extra is not None else []
        plot_iou(metrics, tmp / IOU_PNG)
        for filename, text in (
            (METRICS_CSV, _csv_text(csv_columns(metrics))),
            (TABLE_ROW, table_row(metrics) + "\n"),
            (METRICS_JSON, json.dumps(metrics, indent=2, allow_nan=False) + "\n"),
        ):
            (tmp / filename).write_text(text, encoding="utf-8")
        if out.is_dir():  # --overwrite, or a folder made beforehand: other files stay
            for filename in (*extras, IOU_PNG, METRICS_CSV, TABLE_ROW, METRICS_JSON):
                os.replace(tmp / filename, out / filename)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_metrics(path: str | os.PathLike) -> dict:
    """An evaluation's ``metrics.json`` (a folder or the file); errors name the path."""
    return read_result(path, METRICS_JSON, "evaluation", READABLE_FORMATS)
