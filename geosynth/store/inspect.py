"""Looking at a store: its summary (``geosynth info``), the contract check (``geosynth verify``)
and one tile as a georeferenced :class:`xarray.Dataset`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geosynth.errors import DataError, GeosynthError
from geosynth.store.contract import (
    COMPLETE,
    STANDARD_DTYPES,
    STATE_NAMES,
    STORE_VERSION,
    TILE_ARRAYS,
    tile_group_path,
)

if TYPE_CHECKING:  # the store object calls these functions; they only use its methods
    from geosynth.store.read import GeoStore


def summarize(store: GeoStore) -> dict:
    """Counts per split, region, modality and state, and the class histogram (of complete tiles)."""
    states = store.states()
    complete = states == COMPLETE
    present = store.present()
    hist = store.class_hist()[complete].sum(axis=0)
    by_split: dict[str, int] = {}
    by_region: dict[str, int] = {}
    for i in np.flatnonzero(complete):
        by_split[store.splits[i]] = by_split.get(store.splits[i], 0) + 1
        by_region[store.regions[i]] = by_region.get(store.regions[i], 0) + 1
    no_transform = [
        store.tile_ids[i] for i in np.flatnonzero(complete) if store.transform(int(i)) is None
    ]
    return {
        "path": str(store.path),
        "dataset": store.dataset,
        "store_version": STORE_VERSION,
        "crs": store.crs,
        "tile_shape": list(store.tile_shape),
        "tiles": len(store),
        "states": {STATE_NAMES[s]: int((states == s).sum()) for s in STATE_NAMES},
        "splits": by_split,
        "regions": by_region,
        "modalities": {m: int(present[complete, j].sum()) for j, m in enumerate(store.modalities)},
        "class_hist": {str(k): int(v) for k, v in enumerate(hist)},
        "without_transform": no_transform,
    }


def summary_lines(store: GeoStore, summary: dict) -> list[str]:
    """:func:`summarize` as the lines ``geosynth info`` prints."""
    names = {str(c.id): c.name for c in store.classes.classes}
    names.setdefault("0", "unlabelled")
    h, w = summary["tile_shape"]

    def counts(mapping: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) or "-"

    lines = [
        f"{summary['path']}: {summary['dataset']} store v{summary['store_version']}, "
        f"CRS {summary['crs'] or 'per tile'}, tiles {h} x {w} px",
        "tiles: " + ", ".join(f"{v} {k}" for k, v in summary["states"].items()),
        "splits: " + counts(summary["splits"]),
        "regions: " + counts(summary["regions"]),
        "modalities: " + ", ".join(f"{k} {v}" for k, v in summary["modalities"].items()),
    ]
    missing = summary["without_transform"]
    if missing:
        lines.append(f"without georeferencing: {len(missing)} tile(s): {', '.join(missing[:10])}")
    total = sum(summary["class_hist"].values())
    lines.append("classes (share of labelled pixels of complete tiles):")
    for cid, count in summary["class_hist"].items():
        share = count / total if total else 0.0
        lines.append(f"  {cid:>3} {names.get(cid, '?'):<36} {share:7.2%} {count:>14,}")
    return lines


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`verify`: the tile (None for the store as a whole), what is wrong
    and, for a chunk that does not decode, its path in the store."""

    tile: str | None
    message: str
    chunk: str | None = None

    def __str__(self) -> str:
        return f"{self.tile}: {self.message}" if self.tile else self.message


def verify(
    store: GeoStore, progress: Callable[[int, int], None] | None = None, quick: bool = False
) -> list[Problem]:
    """Check a store against the contract; returns the problems found (empty when sound).

    Finds tiles that are not complete, arrays whose shape or dtype break the
    contract and, unless ``quick`` (metadata only), every chunk of a complete
    tile that does not decode (checksum, frame length, codec error; one
    problem per chunk, naming it), NaN in the DEM, class ids out of range and
    valid SAR outside [0, 1].
    """
    problems = _array_problems(store)
    if problems:
        return problems
    n = len(store)
    states = store.states()
    present = store.present()
    for i, tile in enumerate(store.tile_ids):
        if progress:
            progress(i, n)
        if states[i] != COMPLETE:
            problems.append(
                Problem(tile, f"incomplete ({STATE_NAMES.get(int(states[i]), states[i])})")
            )
            continue
        row = dict(zip(store.modalities, present[i], strict=True))
        problems += _tile_problems(store, i, row, quick)
    if progress:
        progress(n, n)
    return problems


def repair(store: GeoStore, problems: list[Problem]) -> list[str]:
    """Mark every complete tile with a problem 'planned', so that the next build or import
    rewrites it; returns those tiles. ``store`` must be open for writing."""
    states = store.states()
    tiles = sorted({p.tile for p in problems if p.tile is not None})
    marked = [t for t in tiles if states[store.index(t)] == COMPLETE]
    for tile in marked:
        store.mark_planned(tile)
    return marked


def _tile_problems(store: GeoStore, i: int, present: dict[str, bool], quick: bool) -> list:
    tile = store.tile_ids[i]
    found = [Problem(tile, m) for m in _metadata_problems(store, i, present)]
    if found or quick:
        return found
    names = [m for m, here in present.items() if here]
    for name in names + (["sar_valid"] if "sar" in names else []):
        for key, reason in store.reader(name).damaged_chunks(i):
            path = f"{tile_group_path(tile)}/{name}/{key}"
            found.append(Problem(tile, f"damaged chunk {path}: {reason}", chunk=path))
    if found:
        return found
    return [Problem(tile, m) for m in _value_problems(store, i, present)]


def _array_problems(store: GeoStore) -> list[Problem]:
    """The root's tile index against the tile count, and the modality table."""
    problems: list[Problem] = []
    n = len(store)
    for name in store.modalities:
        spec = store.modality_spec(name)
        if name in STANDARD_DTYPES and spec.dtype != STANDARD_DTYPES[name]:
            problems.append(
                Problem(None, f"modality {name} must be {STANDARD_DTYPES[name]}, not {spec.dtype}")
            )
    for name in (*TILE_ARRAYS, "present", "transform", "class_hist"):
        try:
            shape = store.root_array(name).shape
        except GeosynthError as exc:
            problems.append(Problem(None, str(exc)))
            continue
        if name in TILE_ARRAYS and shape != (n,):
            problems.append(Problem(None, f"array {name} has shape {shape}, expected {(n,)}"))
    return problems


def _metadata_problems(store: GeoStore, i: int, present: dict[str, bool]) -> list[str]:
    """Shapes and dtypes of a complete tile's arrays (their metadata must be readable)."""
    out = []
    h, w = store.tile_shape
    names = [m for m, here in present.items() if here]
    for name in names + (["sar_valid"] if "sar" in names else []):
        spec = store.modality_spec(name) if name != "sar_valid" else None
        try:
            array = store.tile_array(name, i)
        except GeosynthError as exc:
            out.append(str(exc))
            continue
        except Exception as exc:  # a damaged zarr.json: zarr raises many types
            out.append(f"{name}: unreadable metadata ({type(exc).__name__}: {exc})")
            continue
        expected = (spec.channels, h, w) if spec and spec.per_band else (h, w)
        dtype = spec.dtype if spec else "bool"
        if tuple(array.shape) != expected:
            out.append(f"{name} has shape {tuple(array.shape)}, expected {expected}")
        if str(array.dtype) != dtype:
            out.append(f"{name} has dtype {array.dtype}, expected {dtype}")
    return out


def _value_problems(store: GeoStore, i: int, present: dict[str, bool]) -> list[str]:
    """NaN in a tile's DEM, class ids out of range, valid SAR outside [0, 1]."""
    out = []
    if present.get("dem"):
        nan = int(np.isnan(store.read("dem", i)).sum())
        if nan:
            out.append(f"dem has {nan} NaN pixels")
    if present.get("seg"):
        seg = store.read("seg", i)
        max_class = store.num_classes - 1
        bad = int((seg > max_class).sum())
        if bad:
            out.append(
                f"seg has {bad} pixels with class ids above {max_class} (max {int(seg.max())})"
            )
    if present.get("sar"):
        sar = store.read("sar", i)
        valid = np.broadcast_to(store.read("sar_valid", i), sar.shape)
        values = sar[valid]
        bad = int(((values < 0) | (values > 1) | ~np.isfinite(values)).sum())
        if bad:
            out.append(f"sar has {bad} valid pixels outside [0, 1]")
    return out


def tile_dataset(store: GeoStore, tile_id: str):
    """One tile as an :class:`xarray.Dataset`: its group opened by xarray, as any user of
    xarray opens it (``xr.open_zarr(store, group="tiles/<tile_id>")``).

    ``x``/``y`` are pixel centres in the tile's CRS (pixel indices when the tile has no
    transform); the CRS is in the ``spatial_ref`` coordinate (CF ``crs_wkt``, as rioxarray
    reads it) and the group's ``proj:code`` attribute.
    """
    import xarray as xr

    i = store.index(tile_id)
    state = int(store.group["state"][i])
    if state != COMPLETE:
        raise DataError(f"tile {tile_id} of {store.path} is {STATE_NAMES[state]}, not complete")
    tile = store.location.join(tile_group_path(tile_id))
    return xr.open_zarr(tile.zarr_store(read_only=True), consolidated=True, zarr_format=3)
