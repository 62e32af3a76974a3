"""The inputs of one tile, from a store or from a user's own GeoTIFFs.

``synthesize``, ``edit-flood`` and ``edit-classes`` take either ``--store S
--tile E_N`` or ``--seg seg.tif --dem dem.tif ...``; both give a
:class:`TileInputs` with the arrays in the store's form (``seg`` (H, W) uint8,
``dem`` (1, H, W) float32 metres, ``sar`` (C, H, W) in [0, 1], ``rgb``
(3, H, W) uint8) and the tile's grid.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from geosynth.catalog import ClassTable
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.names import NETWORK_MODALITIES
from geosynth.sources.aerial import raster_members
from geosynth.store import open_store

log = logging.getLogger(__name__)


@dataclass
class TileInputs:
    """One tile's arrays in the store's form, its grid (None: not georeferenced), its classes."""

    name: str
    arrays: dict[str, np.ndarray]
    grid: RasterGrid | None
    classes: ClassTable
    acquisition: dict | None = None  # the store's ``geosynth:acquisition`` of the tile

    @property
    def num_classes(self) -> int:
        return self.classes.num_classes

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.arrays.values())).shape[-2:]


def from_store(
    store_path,
    tile_id: str,
    names: tuple[str, ...] = NETWORK_MODALITIES,
    storage_options: dict | None = None,
) -> TileInputs:
    """The modalities ``names`` that the store (a path or URL) holds for ``tile_id``; absent
    ones are left out."""

    store = open_store(store_path, storage_options=storage_options)
    i = store.index(tile_id)  # unknown tiles: the message lists the nearest
    if i not in store.tiles():
        raise DataError(f"tile {tile_id} of {store_path} is not complete")
    present = dict(zip(store.modalities, store.present()[i], strict=True))
    arrays = {name: store.read(name, i) for name in names if present.get(name)}
    if "sar" in arrays:
        arrays["sar_valid"] = store.read("sar_valid", i)
    transform, crs = store.transform(i), store.tile_crs(i)
    h, w = store.tile_shape
    grid = RasterGrid(crs, transform, w, h) if transform is not None and crs else None
    return TileInputs(tile_id, arrays, grid, store.classes, store.acquisition(i))


def _openable(path: str | os.PathLike) -> str:
    """What GDAL opens for an input raster: the path itself, or for a zip holding one raster
    (e.g. an SRTM ``N50E006.hgt`` zipped), that raster's ``/vsizip/`` path."""
    import zipfile

    text = str(path)
    if not text.lower().endswith(".zip") or not zipfile.is_zipfile(text):
        return text

    members = raster_members(text)
    if len(members) > 1:
        raise DataError(
            f"{path}: the zip holds {len(members)} rasters ({', '.join(m.rsplit('/', 1)[-1] for m in members[:4])}); "
            "give one as /vsizip/<zip>/<member>"
        )
    return members[0]


def from_files(
    classes: ClassTable, crs: str | None = None, **paths: str | os.PathLike | None
) -> TileInputs:
    """Read ``seg=..., dem=..., sar=..., rgb=...`` GeoTIFFs that share one grid.

    Inputs with a transform but no CRS are refused unless ``crs`` says which it is (their
    outputs would lose the georeferencing); inputs with neither are plain images.
    """
    import rasterio

    arrays, grid, name = {}, None, None
    for key, path in paths.items():
        if path is None:
            continue
        if key not in NETWORK_MODALITIES:
            raise UsageError(f"unknown input {key!r}")
        try:
            with rasterio.open(_openable(path)) as src:
                data = src.read()
                this = RasterGrid(
                    src.crs.to_string() if src.crs else "", src.transform, src.width, src.height
                )
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{path}: cannot read: {exc}") from exc
        if grid is None:
            grid, name = this, os.path.splitext(os.path.basename(str(path)))[0]
        elif (this.width, this.height, this.transform) != (grid.width, grid.height, grid.transform):
            raise DataError(
                f"{path}: its grid differs from the other inputs' "
                f"({this.width}x{this.height} vs {grid.width}x{grid.height})"
            )
        if key == "seg":
            arrays["seg"] = data[0].astype(np.uint8)
        elif key == "dem":
            arrays["dem"] = data[:1].astype(np.float32)
        elif key == "rgb":
            arrays["rgb"] = data[:3].astype(np.uint8)
        else:
            arrays["sar"] = data.astype(np.float32)
    if not arrays:
        raise UsageError("give --store and --tile, or input rasters (--seg, --dem, ...)")
    if grid is not None and not grid.crs:
        if crs:
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                name_of_crs = CRS.from_user_input(crs).to_string()
            except CRSError as exc:
                raise UsageError(f"--crs {crs!r} is not a CRS: {exc}") from exc
            grid = RasterGrid(name_of_crs, grid.transform, grid.width, grid.height)
        elif not grid.transform.is_identity:
            first = next(str(p) for p in paths.values() if p is not None)
            raise DataError(
                f"{first}: has a transform but no CRS; give --crs (e.g. EPSG:25832), or the "
                "outputs would not be georeferenced"
            )
        else:
            grid = None
    elif grid is not None and crs:
        log.warning("inputs have the CRS %s; --crs %s is not used", grid.crs, crs)
    return TileInputs(name or "input", arrays, grid, classes)
