"""The geosynth Zarr store contract (``geosynth:store_version`` 2): what a store holds, and reading it.

A store is one Zarr v3 hierarchy per dataset that users open with plain ``zarr``,
xarray and rioxarray, without geosynth (``docs/store.md`` has the whole contract). The
root holds the tile index, one entry per tile: ``tile_id``, ``region``, ``split``,
``crs``, ``transform`` (rasterio's ``a, b, c, d, e, f``; NaN without georeferencing),
``present`` (which modalities), ``class_hist``, ``sources`` (JSON provenance) and
``state`` (0 planned, 1 being written, 2 complete). Every tile has a group of its own,
``tiles/<tile_id>/``, with ``rgb`` (3, H, W) uint8, ``dem`` (1, H, W) float32 metres
(NaN = no data), ``seg`` (H, W) uint8 class ids (0 = unlabelled), ``sar`` (C, H, W)
float32 in [0, 1] with ``sar_valid``, extras such as DFC2020's ``s2``, pixel-centre
coordinates and CF / GeoZarr georeferencing.

Writing: the tile list is planned first and the index sized once; each tile's group is
written by that tile's writer alone, so processes writing different tiles never touch
the same object; a tile counts only once ``state`` is 2, written last.

One module per step:

- :mod:`~geosynth.store.contract`: the types (layout, modality specs, tile plans, tile
  data, states, the class table <-> attributes);
- :mod:`~geosynth.store.create`: :func:`create_store` and :func:`open_for_resume` (the
  one set of checks before a build or import resumes);
- :mod:`~geosynth.store.write`: :func:`write_tile` and the consolidated metadata;
- :mod:`~geosynth.store.read`: :func:`open_store`, :class:`GeoStore` and
  :class:`WindowReader`, the one reader of tile windows;
- :mod:`~geosynth.store.inspect`: :func:`summarize`, :func:`verify`, :func:`tile_dataset`;
- :mod:`~geosynth.store.location`, :mod:`~geosynth.store.lock`: where a store lives (a
  path or an fsspec URL) and its one writer;
- :mod:`~geosynth.store.stats`: class shares by split (the paper's Fig. 2).

Stores are produced by :mod:`geosynth.ingest` (builds, imports, upgrades from version 1)
and exported for GDAL and STAC readers by :mod:`geosynth.export`.
"""

from geosynth.store.contract import (
    COMPLETE,
    PLANNED,
    STATE_NAMES,
    STORE_LAYOUT,
    STORE_VERSION,
    WRITING,
    ModalitySpec,
    StoreLayout,
    TileData,
    TilePlan,
    class_attrs,
    class_table,
    modality,
)
from geosynth.store.create import create_store, open_for_resume
from geosynth.store.inspect import Problem, summarize, tile_dataset, verify
from geosynth.store.read import GeoStore, WindowReader, open_store
from geosynth.store.write import write_tile

__all__ = [
    "COMPLETE",
    "PLANNED",
    "STATE_NAMES",
    "STORE_LAYOUT",
    "STORE_VERSION",
    "WRITING",
    "GeoStore",
    "ModalitySpec",
    "Problem",
    "StoreLayout",
    "TileData",
    "TilePlan",
    "WindowReader",
    "class_attrs",
    "class_table",
    "create_store",
    "modality",
    "open_for_resume",
    "open_store",
    "summarize",
    "tile_dataset",
    "verify",
    "write_tile",
]
