"""Writing one tile: state 1, the tile's group (its arrays, coordinates and georeferencing,
consolidated), its row of the tile index, then state 2 (the completion mark).

A tile's group ``tiles/<tile_id>/`` is written by that tile's writer alone, so processes (or
dask workers, also on object storage) writing different tiles never touch the same object.
It holds, per present modality, one array chunked one band-stack and ``layout.chunk``
pixels square, plus what xarray and rioxarray need without geosynth:

- ``x`` (x), ``y`` (y): pixel centres in the tile's CRS (pixel indices without a transform);
- ``<name>_band`` coordinate arrays with the band names (``rgb_band``: red, green, blue);
- ``spatial_ref``: a scalar whose attributes are the CF grid mapping (``crs_wkt``,
  ``GeoTransform``); every data array names it in ``grid_mapping`` and ``coordinates``;
- group attributes: the GeoZarr ``zarr_conventions``, ``spatial:*`` and ``proj:*`` keys.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from geosynth.errors import DataError, UsageError
from geosynth.names import LABELS
from geosynth.store.contract import (
    COMPLETE,
    FILL_VALUES,
    PLANNED,
    STANDARD_DTYPES,
    WRITING,
    TileData,
    band_dimension,
    grid_mapping_attrs,
    label_attrs,
    pixel_centres,
    tile_georef_attrs,
    tile_group_path,
)

if TYPE_CHECKING:  # the store object calls these functions; they only use its methods
    from geosynth.store.location import StoreLocation
    from geosynth.store.read import GeoStore


def write_tile(
    store: GeoStore,
    tile_id: str,
    data: TileData,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Write one tile of ``store`` (opened ``"r+"``); the state is set to complete last.

    Idempotent: writing the same data again gives the same store (the tile's group is
    replaced). Modalities not given are marked absent. ``progress`` is called with each
    array name after it is written. The tile's transform and CRS are ``data``'s, else the
    plan's. Outside a build or import (which consolidate the store when they end,
    ``store.batch_writes``), the store's consolidated metadata is dropped at the first write,
    so that readers never see a stale list of tiles.
    """

    i = store.index(tile_id)
    g = store.group
    unknown = set(data.extras) - set(store.modalities)
    if unknown:
        raise UsageError(f"store {store.location} has no modality {sorted(unknown)}")
    given = {
        name: getattr(data, name, None) if name in STANDARD_DTYPES else data.extras.get(name)
        for name in store.modalities
    }
    arrays = {
        name: _checked(store, name, value, tile_id)
        for name, value in given.items()
        if value is not None
    }
    if "sar" in arrays:
        h, w = store.tile_shape
        valid = (
            np.ones((h, w), bool) if data.sar_valid is None else np.asarray(data.sar_valid, bool)
        )
        if valid.shape != (h, w):
            raise DataError(f"tile {tile_id}: sar_valid has shape {valid.shape}, expected {(h, w)}")
        arrays["sar_valid"] = valid
    transform = data.transform if data.transform is not None else store.transform(i)
    crs = data.crs if data.crs is not None else store.tile_crs(i)

    if not store.batch_writes and not store.unconsolidated:
        unconsolidate(store.location)
        store.unconsolidated = True
    g["state"][i] = WRITING
    try:
        _write_group(store, tile_id, arrays, transform, crs or None, progress, data.acquisition)
        consolidate(store.location, tile_id)
        hist = np.zeros(store.num_classes, dtype="int64")
        if LABELS in arrays:
            counts = np.bincount(arrays[LABELS].ravel(), minlength=store.num_classes)
            hist[:] = counts[: store.num_classes]
        g["class_hist"][i] = hist
        g["present"][i] = np.array([name in arrays for name in store.modalities])
        if data.transform is not None:
            g["transform"][i] = np.array(data.transform[:6], dtype="float64")
        if data.crs is not None:
            g["crs"][i] = data.crs
        g["sources"][i] = json.dumps(dict(data.sources or {}), sort_keys=True, default=str)
        g["state"][i] = COMPLETE
    except BaseException:
        with contextlib.suppress(Exception):  # e.g. the disk is full: state 1 says the same
            g["state"][i] = PLANNED
        raise
    store.forget_tile(i)


def _write_group(
    store: GeoStore, tile_id: str, arrays: dict, transform, crs, progress, acquisition=None
) -> None:
    import zarr

    shape = store.tile_shape
    i = store.index(tile_id)
    attrs = {
        "tile_id": tile_id,
        "region": store.regions[i],
        "split": store.splits[i],
        **tile_georef_attrs(transform, crs, shape),
    }
    if acquisition:
        attrs["geosynth:acquisition"] = json.loads(json.dumps(dict(acquisition), default=str))
    group = zarr.open_group(
        store.location.zarr_store(), path=tile_group_path(tile_id), mode="w", attributes=attrs
    )
    georeferenced = transform is not None and bool(crs)
    mapping = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"} if georeferenced else {}
    layout = store.layout
    plane = tuple(min(layout.chunk, n) for n in shape)
    for name, values in arrays.items():
        spec = store.modality_spec(name) if name != "sar_valid" else None
        per_band = values.ndim == 3
        attrs = dict(mapping)
        if name == LABELS:
            attrs.update(label_attrs(store.classes))
        elif spec is not None:
            attrs["geosynth:bands"] = list(spec.bands)
        array = group.create_array(
            name,
            shape=values.shape,
            chunks=(values.shape[0], *plane) if per_band else plane,
            dtype=values.dtype,
            fill_value=FILL_VALUES.get(str(values.dtype), False if values.dtype == bool else 0),
            dimension_names=(band_dimension(name), "y", "x") if per_band else ("y", "x"),
            compressors=layout.compressors(),
            attributes=attrs,
        )
        array[...] = values
        if per_band:
            _coordinate(
                group, band_dimension(name), np.array(spec.bands, dtype=object), str, layout
            )
        if progress:
            progress(name)
    x, y = pixel_centres(transform, shape)
    units = {"units": "m"} if georeferenced else {}
    for axis, values in (("x", x), ("y", y)):
        standard = {"standard_name": f"projection_{axis}_coordinate", **units}
        _coordinate(group, axis, values, "float64", layout, standard)
    if georeferenced:
        ref = group.create_array(
            "spatial_ref", shape=(), dtype="int64", fill_value=0, dimension_names=(),
            compressors=layout.checksums() or None, attributes=grid_mapping_attrs(transform, crs),
        )  # fmt: skip
        ref[...] = 0


def _coordinate(group, name: str, values: np.ndarray, dtype, layout, attrs=None) -> None:
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=values.shape,
        dtype=dtype,
        fill_value="" if dtype is str else 0,
        dimension_names=(name,),
        compressors=layout.checksums() or None,
        attributes=attrs or {},
    )
    array[:] = values


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


def consolidate(location: StoreLocation, tile_id: str | None = None) -> None:
    """Consolidated metadata (zarr's): of one tile's group, or of the whole store.

    Readers that never import geosynth (xarray) open a tile or the store from one
    ``zarr.json``. The store's is refreshed at the end of every build or import.
    """
    import warnings

    import zarr

    path = None if tile_id is None else tile_group_path(tile_id)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(location.zarr_store(), path=path)


def unconsolidate(location: StoreLocation) -> None:
    """Drop the store's consolidated metadata (a tile was written outside a build or import):
    readers then list the store, and see every tile, until the next consolidation."""
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r+", use_consolidated=False)
    group.update_attributes({})  # rewrites the root's zarr.json without the consolidated blob
