"""The tile grid: tile ids <-> bounds <-> affine transforms.

NRW names its 1 km tiles by the south-west corner in kilometres,
``<E>_<N>`` (e.g. ``356_5645`` covers E 356000-357000 m, N 5645000-5646000 m
in EPSG:25832). Pixel (row 0, col 0) of a tile is its north-west corner, as in
every north-up GeoTIFF. All functions here are pure and take the grid spec
from the catalog (:class:`geosynth.catalog.GridSpec`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from affine import Affine

from geosynth.catalog import GridSpec
from geosynth.errors import DataError, UsageError

_TILE_ID = re.compile(r"^(-?\d+)_(-?\d+)$")

#: A tile id as NRW's file names spell it (``dop10rgbi_32_356_5645_1_nw.jp2``, the published
#: GeoNRW's ``356_5645_rgb.jp2``): km east (3-4 digits) and north (4 digits) of the south-west
#: corner in UTM zone 32N, as the named groups ``e`` and ``n``; a part of larger patterns.
TILE_DIGITS = {"e": r"\d{3,4}", "n": r"\d{4}"}
TILE_IN_NAME = rf"(?P<e>{TILE_DIGITS['e']})_(?P<n>{TILE_DIGITS['n']})"


@dataclass(frozen=True, order=True)
class TileId:
    """A tile named by its south-west corner in km (``e_km``, ``n_km``)."""

    e_km: int
    n_km: int

    @classmethod
    def parse(cls, text: str) -> TileId:
        match = _TILE_ID.match(str(text).strip())
        if not match:
            raise UsageError(f"bad tile id {text!r}: expected '<E>_<N>' in km, e.g. '356_5645'")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_match(cls, match: re.Match) -> TileId:
        """The tile of a match of a pattern with :data:`TILE_IN_NAME` (groups ``e``, ``n``)."""
        return cls(int(match["e"]), int(match["n"]))

    def __str__(self) -> str:
        return f"{self.e_km}_{self.n_km}"


def _km_to_m(grid: GridSpec) -> int:
    if grid.tile_size_m % 1000:
        raise UsageError("tile ids in km need a tile size that is a multiple of 1000 m")
    return 1000


def tile_bounds(tile: TileId, grid: GridSpec) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of a tile in the grid's CRS."""
    left = tile.e_km * _km_to_m(grid)
    bottom = tile.n_km * _km_to_m(grid)
    return (
        float(left),
        float(bottom),
        float(left + grid.tile_size_m),
        float(bottom + grid.tile_size_m),
    )


def tile_transform(tile: TileId, grid: GridSpec) -> Affine:
    """The affine transform of a tile: pixel (0, 0) at its north-west corner."""
    left, _, _, top = tile_bounds(tile, grid)
    return Affine(grid.pixel_size_m, 0.0, left, 0.0, -grid.pixel_size_m, top)


def tile_shape(grid: GridSpec) -> tuple[int, int]:
    """``(height, width)`` in pixels of every tile."""
    return grid.tile_pixels, grid.tile_pixels


def tile_of_point(x: float, y: float, grid: GridSpec) -> TileId:
    """The tile containing a point (a point on a tile edge belongs to the tile east/north of it)."""
    step = grid.tile_size_m / _km_to_m(grid)
    return TileId(
        int(math.floor(x / grid.tile_size_m)) * int(step),
        int(math.floor(y / grid.tile_size_m)) * int(step),
    )


def tiles_covering(bbox: tuple[float, float, float, float], grid: GridSpec) -> list[TileId]:
    """Tiles whose interiors intersect ``bbox = (left, bottom, right, top)``, west-east then south-north.

    Together they cover the box exactly once: tiles never overlap, and every
    point of the box lies in one of them. A box edge on a tile edge does not
    pull in the neighbouring tile.
    """
    left, bottom, right, top = bbox
    if not (right > left and top > bottom):
        raise UsageError(f"empty or inverted bounding box {bbox}")
    size = grid.tile_size_m
    step = size // _km_to_m(grid)
    i0, i1 = math.floor(left / size), math.ceil(right / size)
    j0, j1 = math.floor(bottom / size), math.ceil(top / size)
    return [TileId(i * step, j * step) for j in range(j0, j1) for i in range(i0, i1)]


@dataclass(frozen=True)
class RasterGrid:
    """An output pixel grid: CRS, affine transform and size. What ``--tile`` or ``--like`` fixes."""

    crs: str
    transform: Affine
    width: int
    height: int

    @classmethod
    def for_tile(cls, tile: TileId | str, grid: GridSpec) -> RasterGrid:
        tile = TileId.parse(tile) if isinstance(tile, str) else tile
        h, w = tile_shape(grid)
        return cls(grid.crs, tile_transform(tile, grid), w, h)

    @classmethod
    def like(cls, path) -> RasterGrid:
        """The grid of an existing raster (``--like ref.tif``)."""
        import rasterio

        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise DataError(f"{path}: reference raster has no CRS")
                return cls(src.crs.to_string(), src.transform, src.width, src.height)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{path}: cannot open reference raster: {exc}") from exc

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)``; assumes a north-up grid."""
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.width
        bottom = top + self.transform.e * self.height
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    @property
    def resolution(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)
