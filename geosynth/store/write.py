"""Writing one tile: state 1, every array, its metadata, then state 2 (the completion mark)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from geosynth.errors import DataError, UsageError
from geosynth.store.contract import COMPLETE, STANDARD_DTYPES, WRITING, TileData
from geosynth.store.read import GeoStore


def write_tile(
    store: GeoStore,
    tile_id: str,
    data: TileData,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write one tile of ``store`` (opened ``"r+"``); the state is set to complete last.

    Idempotent: writing the same data again gives the same store. Modalities
    not given are marked absent. ``progress`` is called with each array name
    after it is written.
    """
    i = store.index(tile_id)
    g = store.group
    h, w = store.tile_shape
    unknown = set(data.extras) - set(store.modalities)
    if unknown:
        raise UsageError(f"store {store.path} has no modality {sorted(unknown)}")
    given = {
        name: getattr(data, name, None) if name in STANDARD_DTYPES else data.extras.get(name)
        for name in store.modalities
    }
    arrays = {
        name: _checked(store, name, value, tile_id)
        for name, value in given.items()
        if value is not None
    }
    valid = None
    if "sar" in arrays:
        valid = (
            np.ones((h, w), bool) if data.sar_valid is None else np.asarray(data.sar_valid, bool)
        )
        if valid.shape != (h, w):
            raise DataError(f"tile {tile_id}: sar_valid has shape {valid.shape}, expected {(h, w)}")

    g["state"][i] = WRITING
    for name, value in arrays.items():
        g[name][i] = value
        if progress:
            progress(name)
    if valid is not None:
        g["sar_valid"][i] = valid
        if progress:
            progress("sar_valid")
    hist = np.zeros(store.num_classes, dtype="int64")
    if "seg" in arrays:
        hist[:] = np.bincount(arrays["seg"].ravel(), minlength=store.num_classes)[
            : store.num_classes
        ]
    g["class_hist"][i] = hist
    g["present"][i] = np.array([name in arrays for name in store.modalities])
    if data.transform is not None:
        g["transform"][i] = np.array(data.transform[:6], dtype="float64")
    if data.crs is not None:
        g["crs"][i] = data.crs
    g["sources"][i] = json.dumps(dict(data.sources or {}), sort_keys=True, default=str)
    g["state"][i] = COMPLETE


def _checked(store: GeoStore, name: str, value: np.ndarray, tile_id: str) -> np.ndarray:
    """``value`` in the modality's shape and dtype; floats are never cast to integer arrays."""
    spec = store.modality_spec(name)
    h, w = store.tile_shape
    value = np.asarray(value)
    if name == "dem" and value.ndim == 2:
        value = value[None]
    expected = (spec.channels, h, w) if spec.per_band else (h, w)
    if value.shape != expected:
        raise DataError(f"tile {tile_id}: {name} has shape {value.shape}, expected {expected}")
    if value.dtype != np.dtype(spec.dtype):
        if np.issubdtype(np.dtype(spec.dtype), np.integer) and np.issubdtype(
            value.dtype, np.floating
        ):
            raise DataError(f"tile {tile_id}: {name} is {value.dtype}, expected {spec.dtype}")
        value = value.astype(spec.dtype)
    return value
