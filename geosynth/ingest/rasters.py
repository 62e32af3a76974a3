"""Raster headers and pixels of published datasets, as the importers read them.

Probing reads only headers (shape, bands, dtype, georeferencing), in a
thread pool (GDAL reads headers without the GIL), so an import can exclude
incomplete or inconsistent tiles with the reason before it writes anything.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from affine import Affine

from geosynth.errors import DataError, GeosynthError


@dataclass(frozen=True)
class RasterInfo:
    """The header of one raster file: what planning needs without reading pixels."""

    path: str
    shape: tuple[int, int]  # (H, W)
    count: int
    dtype: str
    crs: str | None  # "EPSG:<code>" where it has one, else WKT; None without a CRS
    transform: tuple[float, ...] | None  # (a, b, c, d, e, f); None without a geotransform
    nodata: float | None

    @property
    def affine(self) -> Affine | None:
        return None if self.transform is None else Affine(*self.transform)


def crs_string(crs) -> str | None:
    """A rasterio CRS as ``EPSG:<code>`` where it has one, else its WKT; None for no CRS."""
    if crs is None or not crs.to_wkt():
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _probe(path: str | os.PathLike) -> RasterInfo:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            transform = src.transform
            georeferenced = not (transform == Affine.identity() and src.crs is None)
            return RasterInfo(
                path=str(path),
                shape=(src.height, src.width),
                count=src.count,
                dtype=src.dtypes[0],
                crs=crs_string(src.crs),
                transform=tuple(transform)[:6] if georeferenced else None,
                nodata=src.nodata,
            )
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable raster: {exc}") from exc


def probe_all(
    paths: Iterable[str], threads: int = 4, progress: Callable[[int, int], None] | None = None
) -> dict[str, RasterInfo | str]:
    """Probe many files in a thread pool (GDAL reads headers without the GIL).

    Returns path -> :class:`RasterInfo`, or the error message for unreadable files.
    """
    from rasterio.errors import NotGeoreferencedWarning

    paths = sorted(set(paths))

    def one(path: str) -> RasterInfo | str:
        try:
            return _probe(path)
        except GeosynthError as exc:
            return str(exc)

    out: dict[str, RasterInfo | str] = {}
    # one filter for all threads: catch_warnings inside threads is not thread-safe
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for done, (path, info) in enumerate(zip(paths, pool.map(one, paths), strict=True), 1):
            out[path] = info
            if progress:
                progress(done, len(paths))
    return out


def common_shape(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The most frequent ``(H, W)``: the tile shape of the store (ties: the larger tile)."""
    if not shapes:
        raise DataError("no tile to import")
    counts = Counter(shapes)
    return max(counts, key=lambda s: (counts[s], s))


def read_raster(path: str, bands: Sequence[int] | None = None) -> np.ndarray:
    """All bands (or the 1-based ``bands``) of a raster: ``(C, H, W)`` as stored in the file."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read(list(bands) if bands else None)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read pixels: {exc}") from exc


def check_labels(labels: np.ndarray, max_id: int, path: str) -> np.ndarray:
    """Class ids ``(H, W)`` as uint8; ids outside ``0..max_id`` fail naming the file."""
    if np.issubdtype(labels.dtype, np.floating) and not np.array_equal(labels, np.round(labels)):
        raise DataError(f"{path}: labels are not whole numbers")
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if low < 0 or high > max_id:
        raise DataError(f"{path}: class ids {low}..{high} outside 0..{max_id}")
    return labels.astype(np.uint8)
