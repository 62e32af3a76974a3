"""Input edits: raise the water level (the paper's Fig. 9) and swap classes.

Both edits change the label map and the DEM consistently and leave every
pixel outside the edited mask untouched. They are plain numpy/scipy and need
no network; ``geosynth edit-flood`` / ``edit-classes`` then synthesize what
the sensor would see before and after.

Flood rule (:func:`flood`): the mask is ``DEM < hmin`` (in the DEM's units),
cleaned by a binary erosion with a ``erosion x erosion`` square (drops
perturbations narrower than the square: single low pixels, ditches), and
optionally restricted to the parts connected (8-neighbourhood) to existing
water. Inside the mask the class becomes water and the DEM becomes exactly
``hmin``. Both the threshold set and the erosion are monotone, so the flooded
area never shrinks as ``hmin`` rises.

Class-swap rule (:func:`swap_classes`): pixels of class ``from`` (inside an
optional area) become class ``to``. When the source class stands above the
ground (forest: tree heights) the DEM follows: inside the edited mask it is
replaced by the ground estimated from the heights around the mask, a smooth
inverse-distance interpolation inwards from the mask's border
(``rasterio.fill.fillnodata``), never above the original height.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid

RAISED_CLASSES = ("forest", "buildings")  # classes whose DEM carries object heights


@dataclass
class EditResult:
    seg: np.ndarray  # (H, W) uint8
    dem: np.ndarray  # (H, W) float32
    mask: np.ndarray  # (H, W) bool, where the edit applied

    def fraction(self, class_id: int) -> float:
        return float((self.seg == class_id).mean())


def _check_pair(seg: np.ndarray, dem: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seg = np.asarray(seg)
    dem = np.asarray(dem, dtype=np.float32)
    if dem.ndim == 3 and dem.shape[0] == 1:
        dem = dem[0]
    if seg.shape != dem.shape or seg.ndim != 2:
        raise DataError(
            f"label map {seg.shape} and DEM {dem.shape} must be two rasters of one shape"
        )
    return seg, dem


def flood_mask(
    dem: np.ndarray, hmin: float, *, erosion: int = 3, connected_to: np.ndarray | None = None
) -> np.ndarray:
    """Where water at level ``hmin`` stands: ``dem < hmin``, eroded, optionally connected."""
    from scipy import ndimage

    if erosion < 0:
        raise UsageError(f"--erosion must be >= 0, got {erosion}")
    mask = np.asarray(dem) < hmin  # NaN compares False: no data never floods
    if erosion > 1:
        mask = ndimage.binary_erosion(
            mask, structure=np.ones((erosion, erosion), bool), border_value=1
        )
    if connected_to is not None and mask.any():
        labels, _ = ndimage.label(mask | connected_to, structure=np.ones((3, 3), bool))
        keep = np.unique(labels[connected_to & (labels > 0)])
        mask &= np.isin(labels, keep)
    return mask


def flood(
    seg: np.ndarray,
    dem: np.ndarray,
    hmin: float,
    *,
    water_id: int,
    erosion: int = 3,
    connected: bool = False,
    check_range: bool = True,
) -> EditResult:
    """Raise the water level to ``hmin``: the mask becomes water, its DEM exactly ``hmin``."""
    seg, dem = _check_pair(seg, dem)
    if check_range:
        lo, hi = float(np.nanmin(dem)), float(np.nanmax(dem))
        if not lo < hmin <= hi:
            raise UsageError(
                f"--hmin {hmin:g} is outside the tile's DEM range (minimum {lo:.2f}, maximum "
                f"{hi:.2f}): nothing or everything would flood"
            )
    mask = flood_mask(
        dem, hmin, erosion=erosion, connected_to=(seg == water_id) if connected else None
    )
    new_seg = seg.copy()
    new_seg[mask] = water_id
    new_dem = dem.copy()
    new_dem[mask] = np.float32(hmin)
    return EditResult(new_seg, new_dem, mask)


def parse_levels(text: str) -> list[float]:
    """``"45"`` -> [45.0]; ``"40:50:1"`` -> [40, 41, ..., 50] (inclusive, like a range of levels)."""
    try:
        parts = [float(p) for p in str(text).split(":")]
    except ValueError:
        raise UsageError(f"--hmin {text!r}: expected a number or START:STOP:STEP") from None
    if not np.isfinite(parts).all():
        raise UsageError(f"--hmin {text!r}: levels must be finite numbers")
    if len(parts) == 1:
        return parts
    if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
        raise UsageError(f"--hmin {text!r}: expected START:STOP:STEP with STOP >= START, STEP > 0")
    start, stop, step = parts
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    if count > 500:
        raise UsageError(f"--hmin {text!r} gives {count} levels; at most 500")
    return [round(start + k * step, 6) for k in range(count)]


def ground_estimate(
    dem: np.ndarray, mask: np.ndarray, *, max_distance: int | None = None
) -> np.ndarray:
    """Heights inside ``mask`` interpolated inwards from the surrounding pixels (GDAL fill)."""
    from rasterio.fill import fillnodata

    if mask.all():
        raise DataError("the edit covers the whole tile: no surrounding ground to estimate from")
    valid = ~mask & np.isfinite(dem)
    filled = fillnodata(
        np.where(valid, dem, 0).astype(np.float32),
        mask=valid.astype(np.uint8),
        max_search_distance=float(max_distance or max(dem.shape)),
        smoothing_iterations=0,
    )
    return np.minimum(filled, dem)


def swap_classes(
    seg: np.ndarray,
    dem: np.ndarray,
    from_id: int,
    to_id: int,
    *,
    area: np.ndarray | None = None,
    lower_dem: bool = True,
) -> EditResult:
    """Class ``from_id`` becomes ``to_id`` (inside ``area`` when given); the DEM follows."""
    seg, dem = _check_pair(seg, dem)
    mask = seg == from_id
    if area is not None:
        if area.shape != seg.shape:
            raise DataError(f"area mask {area.shape} does not match the tile {seg.shape}")
        mask &= area
    new_seg = seg.copy()
    new_seg[mask] = to_id
    new_dem = dem.copy()
    if lower_dem and mask.any():
        new_dem[mask] = ground_estimate(dem, mask)[mask]
    return EditResult(new_seg, new_dem, mask)


def area_mask(
    path: str | os.PathLike, grid: RasterGrid | None, name: str = "the tile"
) -> np.ndarray:
    """Rasterise the polygons of a vector file (GeoJSON, GeoPackage, ...) on ``grid``.

    A file without a CRS is read as WGS 84 (GeoJSON's default). ``name``
    names the tile in the error for an ungeoreferenced one.
    """
    import geopandas as gpd
    from rasterio.features import rasterize

    if grid is None:
        raise UsageError(f"--where needs a georeferenced tile; {name} has no transform")
    try:
        frame = gpd.read_file(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot read polygons: {exc}") from exc
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")  # GeoJSON's default
    frame = frame.to_crs(grid.crs)
    shapes = [(g, 1) for g in frame.geometry if g is not None and not g.is_empty]
    if not shapes:
        raise DataError(f"{path}: no polygons")
    mask = rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")
    return mask.astype(bool)
