"""Deterministic noise defined in world coordinates.

Every random texture of the demo world is a function of the map position
(metres in EPSG:25832) and a seed, never of the tile being drawn, so that
neighbouring tiles, different resolutions and different modalities see the
same world without seams. Lattice values come from an integer hash
(SplitMix64 finaliser); smooth noise interpolates them bilinearly with a
smoothstep fade.
"""

from __future__ import annotations

import numpy as np

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)
_K4 = np.uint64(0xD6E8FEB86659FD93)


def hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A uniform value in [0, 1) for every integer lattice point ``(ix, iy)`` (broadcast)."""
    ix = np.asarray(ix, dtype=np.int64).astype(np.uint64)
    iy = np.asarray(iy, dtype=np.int64).astype(np.uint64)
    s = np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    h = ix * _K1 ^ (iy * _K4) ^ (s * _K2 + _K3)
    h ^= h >> np.uint64(30)
    h *= _K2
    h ^= h >> np.uint64(27)
    h *= _K3
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def interp_separable(
    lattice: np.ndarray, rows: np.ndarray, cols: np.ndarray, fade: bool = False
) -> np.ndarray:
    """Bilinear interpolation of ``lattice`` (Lr, Lc) at fractional ``rows`` (H,) x ``cols`` (W,).

    The sample points form a separable (north-up) grid, so the work is two
    1-D interpolations: first along columns for every lattice row, then along
    rows. Coordinates are clamped to the lattice. Returns (H, W) float32.
    """
    lattice = np.asarray(lattice, dtype=np.float32)
    n_r, n_c = lattice.shape
    rows = np.clip(np.asarray(rows, dtype=np.float64), 0, n_r - 1)
    cols = np.clip(np.asarray(cols, dtype=np.float64), 0, n_c - 1)
    r0 = np.minimum(np.floor(rows).astype(np.int64), max(n_r - 2, 0))
    c0 = np.minimum(np.floor(cols).astype(np.int64), max(n_c - 2, 0))
    fr = (rows - r0).astype(np.float32)
    fc = (cols - c0).astype(np.float32)
    if fade:
        fr, fc = _fade(fr), _fade(fc)
    r1 = np.minimum(r0 + 1, n_r - 1)
    c1 = np.minimum(c0 + 1, n_c - 1)
    lo_r, hi_r = int(r0.min()), int(r1.max()) + 1
    sub = lattice[lo_r:hi_r]  # only the lattice rows that are needed
    along = sub[:, c0] * (1 - fc) + sub[:, c1] * fc  # (rows needed, W)
    return along[r0 - lo_r] * (1 - fr)[:, None] + along[r1 - lo_r] * fr[:, None]  # (H, W)


def grid_noise(xs: np.ndarray, ys: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with feature size ``scale`` m at pixel centres ``xs`` (W,), ``ys`` (H,)."""
    gx = np.asarray(xs, dtype=np.float64) / scale
    gy = np.asarray(ys, dtype=np.float64) / scale
    ix0, iy0 = int(np.floor(gx.min())), int(np.floor(gy.min()))
    ixs = np.arange(ix0, int(np.floor(gx.max())) + 2)
    iys = np.arange(iy0, int(np.floor(gy.max())) + 2)
    lattice = hash_uniform(ixs[None, :], iys[:, None], seed)  # (Ly, Lx)
    return interp_separable(lattice, gy - iy0, gx - ix0, fade=True)


def grid_fbm(
    xs: np.ndarray, ys: np.ndarray, octaves: tuple[tuple[float, float], ...], seed: int
) -> np.ndarray:
    """A weighted sum of :func:`grid_noise` octaves ``((scale_m, weight), ...)``, scaled to [0, 1]."""
    total = sum(w for _, w in octaves)
    out = np.zeros((len(ys), len(xs)), dtype=np.float32)
    for k, (scale, weight) in enumerate(octaves):
        out += np.float32(weight / total) * grid_noise(xs, ys, scale, seed * 7919 + k)
    return out


def point_noise(x: np.ndarray, y: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] at arbitrary points (the same field as :func:`grid_noise`)."""
    gx = np.asarray(x, dtype=np.float64) / scale
    gy = np.asarray(y, dtype=np.float64) / scale
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = _fade(gx - ix), _fade(gy - iy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    v00 = hash_uniform(ix, iy, seed)
    v10 = hash_uniform(ix + 1, iy, seed)
    v01 = hash_uniform(ix, iy + 1, seed)
    v11 = hash_uniform(ix + 1, iy + 1, seed)
    top = v00 * (1 - fx) + v10 * fx
    bottom = v01 * (1 - fx) + v11 * fx
    return top * (1 - fy) + bottom * fy


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one named stream of the world (e.g. ``rng_for(seed, LIDAR, e_km, n_km)``)."""
    return np.random.default_rng([seed & 0xFFFFFFFF, *[k & 0xFFFFFFFF for k in keys]])
