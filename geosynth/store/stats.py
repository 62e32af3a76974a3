"""Class statistics of a store: per-class pixel shares by split (the paper's Fig. 2)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from geosynth.catalog import ClassTable
from geosynth.figures import grouped_bars, patch, save_figure, subplots
from geosynth.io import atomic_path
from geosynth.store.read import GeoStore


def class_shares(store: GeoStore) -> dict[str, np.ndarray]:
    """Share of labelled pixels per class id (1..K-1) for each split, from complete tiles.

    Uses the per-tile class histograms written with each tile, so it reads no pixels.
    """
    hist = store.class_hist()  # (N, K)
    complete = store.complete_mask()
    shares = {}
    for split in sorted(set(store.splits)):
        rows = complete & np.array([s == split for s in store.splits])
        counts = hist[rows].sum(axis=0)[1:].astype("float64")  # drop unlabelled
        shares[split] = counts / counts.sum() if counts.sum() else counts
    return shares


def write_shares_csv(
    shares: dict[str, np.ndarray], classes: ClassTable, path: str | os.PathLike
) -> Path:
    splits = list(shares)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class_id", "class", *splits])
        n = len(next(iter(shares.values()))) if shares else 0
        for k in range(n):
            writer.writerow(
                [k + 1, classes.name_of(k + 1), *(f"{shares[s][k]:.6f}" for s in splits)]
            )
    return Path(path)


def plot_class_shares(
    shares: dict[str, np.ndarray], classes: ClassTable, path: str | os.PathLike
) -> Path:
    colors = {c.id: c.color for c in classes.classes}
    splits = list(shares)
    n = len(next(iter(shares.values()))) if shares else 0
    fig, ax = subplots(figsize=(9, 4.5), dpi=110)
    x = grouped_bars(ax, [
        (split, shares[split] * 100, {
            "color": [colors.get(k + 1, "#888888") for k in range(n)],
            "edgecolor": "black",
            "hatch": None if j == 0 else "//",
            "alpha": 1.0 if j == 0 else 0.7,
        })
        for j, split in enumerate(splits)
    ])  # fmt: skip
    ax.set_xticks(x, [classes.name_of(k + 1) for k in range(n)], rotation=35, ha="right")
    ax.set_ylabel("share of labelled pixels (%)")
    ax.set_title("class distribution by split (bars in the class colours)")
    handles = [  # the splits differ by hatching, not colour: the legend shows the hatching
        patch(facecolor="white", edgecolor="black", hatch=None if j == 0 else "//", label=split)
        for j, split in enumerate(splits)
    ]
    ax.legend(handles=handles, title="split", loc="upper right")
    return save_figure(fig, path)
