"""The geosynth Zarr store contract (``geosynth:store_version`` 1).

A store is one Zarr v3 group per dataset. Everything below is a public
contract: users open stores from their own code with plain ``zarr``.

Arrays with a leading tile axis (``N`` tiles, all ``H x W``):

=============  ================  =========  ====================================
array          shape             dtype      meaning
=============  ================  =========  ====================================
``rgb``        (N, 3, H, W)      uint8      optical image, R, G, B
``dem``        (N, 1, H, W)      float32    heights in metres (NaN = no data)
``seg``        (N, H, W)         uint8      class ids (0 = unlabelled)
``sar``        (N, C, H, W)      float32    SAR normalised to [0, 1]
``sar_valid``  (N, H, W)         bool       where ``sar`` holds data
extras         (N, C, H, W)      any        e.g. ``s2`` (DFC2020's 13 bands)
=============  ================  =========  ====================================

Per-tile 1-D arrays: ``tile_id``, ``region``, ``split`` (str, fixed when the
store is created), ``crs`` (str, "" = the group's ``proj:code``),
``transform`` (N, 6) float64, ``present`` (N, M) bool with the modality order
in its ``geosynth:modalities`` attribute, ``class_hist`` (N, K) int64 pixel
counts per class id, ``sources`` (str, JSON provenance per tile) and
``state`` (N,) uint8: 0 planned, 1 being written, 2 complete.

A tile's transform: ``transform[i]`` holds the coefficients ``(a, b, c, d, e,
f)`` of ``affine.Affine`` (rasterio's order: ``x = a*col + b*row + c``,
``y = d*col + e*row + f``); all NaN where the tile has no georeferencing.
Its CRS: ``crs[i]`` when not empty, else the group attribute ``proj:code``.

Every array carries ``dimension_names``. Group attributes hold the class table
(``geosynth:classes``), normalisation constants, the modality table and the
provenance (geosynth version, catalog version and hash, build parameters).

Writing: the tile list is planned first and every array is sized once; each
per-tile array is chunked one tile at a time, so processes writing different
tiles never touch the same file. A tile counts only once ``state`` is 2, which
is written after all of its arrays; rewriting a tile is idempotent.

The package, one module per step:

- :mod:`~geosynth.store.contract`: the types (layout, modality specs, tile
  plans, tile data, states, the class table <-> attributes);
- :mod:`~geosynth.store.create`: :func:`create_store` and
  :func:`open_for_resume` (the one set of checks before a build or import resumes);
- :mod:`~geosynth.store.write`: :func:`write_tile`;
- :mod:`~geosynth.store.read`: :func:`open_store`, :class:`GeoStore` and
  :class:`WindowReader`, the one reader of tile windows;
- :mod:`~geosynth.store.inspect`: :func:`summarize`, :func:`verify`,
  :func:`tile_dataset`.
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
