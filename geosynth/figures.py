"""PNG figures people look at: panels of tiles (labels, DEM, RGB, SAR), bar charts, legends.

The one home of matplotlib in geosynth (a contract in ``pyproject.toml`` keeps it so):
every module that draws takes its figure, axes, legend handles and colour maps from here
and writes the PNG with :func:`save_figure`. matplotlib is imported inside the functions,
and figures are :class:`matplotlib.figure.Figure` objects drawn with Agg, without
pyplot's global state, so drawing is safe in worker processes and threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from geosynth.catalog import ClassTable
from geosynth.io import atomic_path


def colorize_labels(seg: np.ndarray, classes: ClassTable | None) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 with each class's colour (0 and unknown ids: black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    if classes is not None:
        lut[: classes.num_classes] = classes.palette()
    return lut[np.asarray(seg, dtype=np.uint8)]


def to_display(
    kind: str, values: np.ndarray, classes: ClassTable | None = None
) -> tuple[np.ndarray, dict]:
    """An array as matplotlib shows it, and the imshow keywords."""
    values = np.asarray(values)
    if kind == "seg":
        return colorize_labels(values, classes), {}
    if kind == "rgb":
        return np.moveaxis(values[:3], 0, -1), {}
    if kind == "dem":
        dem = values[0] if values.ndim == 3 else values
        lo, hi = np.nanpercentile(dem, [1, 99]) if np.isfinite(dem).any() else (0, 1)
        return dem, {"cmap": land_colormap(), "vmin": lo, "vmax": hi if hi > lo else lo + 1}
    if kind == "sar":
        sar = values[0] if values.ndim == 3 else values
        return sar, {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    if kind == "mask":
        return values.astype(float), {"cmap": "Blues", "vmin": 0, "vmax": 1}
    raise ValueError(f"unknown panel kind {kind!r}")


def subplots(nrows: int = 1, ncols: int = 1, *, figsize, dpi: int = 100, **kwargs):
    """``(figure, axes)`` as :func:`matplotlib.pyplot.subplots` gives them, without pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def grouped_bars(ax, series: Sequence[tuple[str, Sequence[float], dict]], width: float = 0.8):
    """Bars of every series side by side at ``x = 0 .. n-1`` on ``ax``; returns ``x``.

    ``series``: ``(label, heights, bar keywords)`` each; NaN heights draw no bar. The
    series share ``width`` at every position.
    """
    x = np.arange(len(series[0][1]))
    w = width / len(series)
    for i, (label, heights, style) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * w, heights, w, label=label, **style)
    return x


def patch(**kwargs):
    """A legend handle: a :class:`matplotlib.patches.Patch` with these keywords."""
    from matplotlib.patches import Patch

    return Patch(**kwargs)


def listed_colormap(colors):
    """A colour map of these colours, one per integer value."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(colors)


def land_colormap():
    """matplotlib's ``terrain`` without its blue (sea) quarter: low ground is green, not water."""
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    terrain = colormaps["terrain"]
    return LinearSegmentedColormap.from_list("land", terrain(np.linspace(0.25, 1.0, 192)))


def class_legend(fig, classes: ClassTable, present: set[int] | None = None) -> None:
    """A legend of the class colours (``present``: only these ids) below the panels."""
    handles = [
        patch(facecolor=c.color, edgecolor="black", label=c.name)
        for c in classes.classes
        if present is None or c.id in present
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5),
                   fontsize=8, frameon=False)  # fmt: skip


def save_panel(
    path: str | os.PathLike,
    columns: Sequence[tuple[str, str, np.ndarray]],
    *,
    classes: ClassTable | None = None,
    title: str | None = None,
    rows: int = 1,
    size: float = 3.2,
) -> Path:
    """Write a grid of titled images: ``columns`` = [(title, kind, array)], filled row-wise."""
    n = len(columns)
    cols = int(np.ceil(n / rows))
    segs = [v for _, kind, v in columns if kind == "seg"]
    legend = 0.9 if segs and classes is not None else 0.0
    fig, axes = subplots(
        rows, cols, figsize=(size * cols, size * rows + (0.5 if title else 0) + legend),
        squeeze=False,
    )  # fmt: skip
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, kind, values) in zip(axes.ravel(), columns, strict=False):
        image, kwargs = to_display(kind, values, classes)
        shown = ax.imshow(image, interpolation="nearest", **kwargs)
        ax.set_title(name, fontsize=10)
        if kind == "dem":
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="height (m)")
    if title:
        fig.suptitle(title, fontsize=11)
    top = 1 - 0.5 / fig.get_figheight() if title else 1
    bottom = legend / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, top))
    if legend:
        present = {int(i) for v in segs for i in np.unique(np.asarray(v))}
        class_legend(fig, classes, present)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def save_figure(fig, path: str | os.PathLike, dpi: float | None = None) -> Path:
    """Lay out ``fig`` and write it to ``path`` as PNG under a temporary name, then rename."""
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi or "figure")
    return path
