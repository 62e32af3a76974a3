"""The demo world's terrain: rolling hills (40-120 m a.s.l.) cut by a river valley.

The terrain is a height lattice (:data:`TERRAIN_CELL_M` spacing) sampled
bilinearly wherever a height is needed: raster pixels of any resolution,
lidar pulses, SAR pixels. Near the river the hills give way to a flat
floodplain at the river's water level, which falls slowly downstream, so
that water, meadows, fields and roads on the floodplain sit at one height:
the DEM alone cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from geosynth.demo.noise import grid_fbm, interp_separable
from geosynth.grid import RasterGrid

TERRAIN_CELL_M = 2.0
HILL_RANGE_M = (52.0, 118.0)  # lowest and highest hill heights
RIVER_LEVEL_M = (47.0, 43.0)  # water level at the upstream and downstream end
LEVEL_SMOOTHING_M = 120.0
HILL_OCTAVES = ((1400.0, 1.0), (600.0, 0.55), (250.0, 0.25), (90.0, 0.1))


@dataclass(frozen=True)
class Terrain:
    """Heights (m) on a north-up lattice: node (r, c) at ``(left + c*cell, top - r*cell)``."""

    heights: np.ndarray  # (rows, cols) float32
    left: float
    top: float
    cell: float

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear heights at points (clamped at the lattice edge); float32."""
        n_r, n_c = self.heights.shape
        fc = np.clip((np.asarray(x, dtype=np.float64) - self.left) / self.cell, 0, n_c - 1.000001)
        fr = np.clip((self.top - np.asarray(y, dtype=np.float64)) / self.cell, 0, n_r - 1.000001)
        c0 = fc.astype(np.int64)
        r0 = fr.astype(np.int64)
        wc = (fc - c0).astype(np.float32)
        wr = (fr - r0).astype(np.float32)
        h = self.heights
        top = h[r0, c0] * (1 - wc) + h[r0, c0 + 1] * wc
        bottom = h[r0 + 1, c0] * (1 - wc) + h[r0 + 1, c0 + 1] * wc
        return top * (1 - wr) + bottom * wr

    def on_grid(self, grid: RasterGrid) -> np.ndarray:
        """Heights at the pixel centres of a north-up grid; (H, W) float32."""
        xs, ys = pixel_centres(grid)
        return interp_separable(
            self.heights, (self.top - ys) / self.cell, (xs - self.left) / self.cell
        )


def pixel_centres(grid: RasterGrid) -> tuple[np.ndarray, np.ndarray]:
    """x of every column (W,) and y of every row (H,) of a north-up grid."""
    t = grid.transform
    if t.b != 0 or t.d != 0:
        raise ValueError("the demo world renders north-up grids only")
    xs = t.c + t.a * (np.arange(grid.width) + 0.5)
    ys = t.f + t.e * (np.arange(grid.height) + 0.5)
    return xs, ys


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def build_terrain(
    domain: tuple[float, float, float, float],
    river: np.ndarray,
    floodplain_m: float,
    valley_m: float,
    seed: int,
) -> Terrain:
    """Hills from fractal noise, flattened to the river level within ``floodplain_m`` of the river.

    ``river`` is the river centreline as an (N, 2) array of x, y vertices,
    upstream first. Between ``floodplain_m`` and ``valley_m`` from the river
    the hills rise smoothly from the water level.
    """
    left, bottom, right, top = domain
    cell = TERRAIN_CELL_M
    n_c = int(np.ceil((right - left) / cell)) + 1
    n_r = int(np.ceil((top - bottom) / cell)) + 1
    xs = left + cell * np.arange(n_c)
    ys = top - cell * np.arange(n_r)
    hills = grid_fbm(xs, ys, HILL_OCTAVES, seed)  # (n_r, n_c)
    hills = (hills - hills.min()) / max(float(np.ptp(hills)), 1e-6)
    lo, hi = HILL_RANGE_M
    hills = lo + (hi - lo) * hills

    # distance to the river and the downstream position of the nearest river point
    dist, along = _river_distance(river, left, top, cell, (n_r, n_c))
    length = max(float(along.max()), 1.0)
    level = RIVER_LEVEL_M[0] + (RIVER_LEVEL_M[1] - RIVER_LEVEL_M[0]) * along / length
    # the nearest river point jumps across meanders: smooth the level so no crease remains
    level = ndimage.gaussian_filter(level, LEVEL_SMOOTHING_M / cell, mode="nearest")
    weight = smoothstep((dist - floodplain_m) / (valley_m - floodplain_m))
    heights = level + (hills - level) * weight
    return Terrain(heights.astype(np.float32), float(left), float(top), cell)


def _river_distance(
    river: np.ndarray, left: float, top: float, cell: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(distance in m, along-river position in m of the nearest river point) on the lattice."""
    seg = np.diff(river, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    steps = np.arange(0.0, cum[-1], cell / 2)
    px = np.interp(steps, cum, river[:, 0])
    py = np.interp(steps, cum, river[:, 1])
    cols = np.round((px - left) / cell).astype(np.int64)
    rows = np.round((top - py) / cell).astype(np.int64)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    marked = np.full(shape, np.nan)
    marked[rows[inside], cols[inside]] = steps[inside]
    if not inside.any():
        raise ValueError("the river does not cross the terrain lattice")
    dist, (ir, ic) = ndimage.distance_transform_edt(np.isnan(marked), return_indices=True)
    return (dist * cell).astype(np.float32), marked[ir, ic].astype(np.float32)
