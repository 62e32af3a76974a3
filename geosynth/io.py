"""Small I/O helpers shared by the stages: atomic output files and GeoTIFF writing."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from geosynth.grid import RasterGrid


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Nothing half-written is ever left at ``path``: on an exception the
    temporary file (or folder) is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_geotiff(
    path: str | os.PathLike,
    array: np.ndarray,
    grid: RasterGrid,
    *,
    nodata: float | int | None = None,
    descriptions: tuple[str, ...] = (),
    compress: str = "deflate",
    tags: dict | None = None,
) -> Path:
    """Write ``array`` ((bands, H, W) or (H, W)) as a tiled GeoTIFF on ``grid``, atomically."""
    import rasterio

    data = array[None] if array.ndim == 2 else array
    if data.shape[1:] != grid.shape:
        raise ValueError(f"array of shape {data.shape[1:]} does not match grid {grid.shape}")
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": data.shape[0],
        "dtype": data.dtype.name if data.dtype != bool else "uint8",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": compress,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if data.dtype == bool:
        data = data.astype("uint8")
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, desc in enumerate(descriptions, start=1):
            dst.set_band_description(i, desc)
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return Path(path)
