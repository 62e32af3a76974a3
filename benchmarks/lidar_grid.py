"""Lidar gridding throughput: our PointGridder against plain numpy ``np.add.at``, side by side.

Target: >= 10x the points/s of a plain ``np.add.at`` gridding of the
same points, on one core. The contenders grid the same seeded points (a 1 km
tile at 1 m, 17 % of the points in a 50 m margin outside it) into mean heights:

* ours: ``geosynth.sources.lidar.PointGridder`` fed in 1 M-point chunks, as
  ``dem_stage`` feeds it (numba kernels: cells, then accumulation). A warm-up
  call before the timing loads (or, on a first run, compiles) the kernels, so
  the figures exclude the JIT; that one-off cost is printed on its own line;
* plain ``np.add.at``: floor the coordinates, mask the points outside,
  ``np.add.at`` sums and counts on (row, col) index pairs (the target's baseline);
* ``np.add.at`` on linear cell indices, a stronger numpy baseline (NumPy
  >= 1.25 gave ``ufunc.at`` a fast path for 1-D integer indices);
* ``np.bincount`` on linear indices, the best vectorised numpy (our previous
  implementation).

Two point orders: ``random`` (uniform, every point in a random cell: the worst
case for the caches, the target's reference) and ``scan`` (the same kind of
points in acquisition order, as LAZ files hold them: three north-south flight
strips, each scan line crossing its strip west to east). The end-to-end line
times ``dem_stage`` on a LAZ file of the random points, LAZ decompression and
hole filling included. Other processes share the CPU, so the figures are
indicative. Run: python benchmarks/lidar_grid.py [--points N] [--repeat R]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from affine import Affine  # noqa: E402

from geosynth.grid import RasterGrid  # noqa: E402
from geosynth.sources.lidar import DEFAULT_CHUNK_SIZE, PointGridder, dem_stage  # noqa: E402

GRID = RasterGrid("EPSG:25832", Affine(1.0, 0, 356000.0, 0, -1.0, 5646000.0), 1000, 1000)


def make_points(n: int, seed: int = 0):
    """Points on LAS's 1 cm lattice over the tile plus a 50 m margin."""
    rng = np.random.default_rng(seed)
    left, bottom, right, top = GRID.bounds
    x = left - 50 + rng.integers(0, 110_000, n) / 100
    y = bottom - 50 + rng.integers(0, 110_000, n) / 100
    z = np.round(60 + rng.random(n) * 40, 2)
    return x, y, z


def make_scan_points(n: int, seed: int = 0):
    """Points in acquisition order: 3 strips 440 m wide, scan lines of 880 points at 0.5 m."""
    rng = np.random.default_rng(seed)
    left, bottom, _, _ = GRID.bounds
    per_line = 880
    lines = -(-n // per_line)
    per_strip = -(-lines // 3)
    strip = np.arange(lines) // per_strip  # 0, 1, 2: one strip after the other
    along = bottom - 50 + (np.arange(lines) % per_strip) * (1100 / per_strip)
    x0 = left - 50 + strip * 380
    x = x0[:, None] + np.arange(per_line)[None, :] * 0.5 + rng.normal(0, 0.05, (lines, per_line))
    y = along[:, None] + rng.normal(0, 0.05, (lines, per_line))
    z = 60 + rng.random((lines, per_line)) * 40
    return (np.round(a.ravel()[:n], 2) for a in (x, y, z))


def ours(x, y, z) -> np.ndarray:
    gridder = PointGridder(GRID, "mean")
    for start in range(0, len(x), DEFAULT_CHUNK_SIZE):
        stop = start + DEFAULT_CHUNK_SIZE
        gridder.add(x[start:stop], y[start:stop], z[start:stop])
    return gridder.values()


def _cells(x, y):
    left, bottom, _, top = GRID.bounds
    col = np.floor((x - left) / 1.0).astype(np.int64)
    row = GRID.height - 1 - np.floor((y - bottom) / 1.0).astype(np.int64)
    ok = (col >= 0) & (col < GRID.width) & (row >= 0) & (row < GRID.height)
    return row[ok], col[ok], ok


def bincount_linear(x, y, z) -> np.ndarray:
    row, col, ok = _cells(x, y)
    index = row * GRID.width + col
    size = GRID.width * GRID.height
    counts = np.bincount(index, minlength=size)
    sums = np.bincount(index, weights=z[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).reshape(GRID.shape).astype(np.float32)


def add_at_2d(x, y, z) -> np.ndarray:
    row, col, ok = _cells(x, y)
    sums = np.zeros(GRID.shape)
    counts = np.zeros(GRID.shape, np.int64)
    np.add.at(sums, (row, col), z[ok])
    np.add.at(counts, (row, col), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32)


def add_at_linear(x, y, z) -> np.ndarray:
    row, col, ok = _cells(x, y)
    index = row * GRID.width + col
    sums = np.zeros(GRID.width * GRID.height)
    counts = np.zeros(GRID.width * GRID.height, np.int64)
    np.add.at(sums, index, z[ok])
    np.add.at(counts, index, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).reshape(GRID.shape).astype(np.float32)


def best_of(func, args, repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func(*args)
        times.append(time.perf_counter() - t0)
    return min(times), result


def end_to_end(x, y, z, folder: Path) -> tuple[float, int]:
    import laspy
    from pyproj import CRS

    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([355900.0, 5644900.0, 0.0])
    header.add_crs(CRS.from_user_input(GRID.crs))
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, z
    las.return_number = np.ones(len(x), np.uint8)
    las.number_of_returns = np.ones(len(x), np.uint8)
    path = folder / "bench.laz"
    las.write(path)
    t0 = time.perf_counter()
    result = dem_stage([path], GRID)
    return time.perf_counter() - t0, result.report["points_read"]


CONTENDERS = {
    "plain np.add.at on (row, col)": add_at_2d,
    "np.add.at on linear indices": add_at_linear,
    "np.bincount on linear indices": bincount_linear,
}


def compare(label: str, x, y, z, repeat: int) -> float:
    """Print ours and the numpy contenders on one point set; returns the ratio to plain add.at."""
    n = len(x)
    t_ours, ours_result = best_of(ours, (x, y, z), repeat)
    print(f"{label}: {n:,} points, 1000 x 1000 grid (mean), best of {repeat}, one core")
    print(
        f"  {'ours (PointGridder, numba)':<32}{t_ours:7.3f} s  {n / t_ours / 1e6:7.1f} M points/s"
    )
    ratios = {}
    for name, func in CONTENDERS.items():
        t, result = best_of(func, (x, y, z), repeat)
        np.testing.assert_allclose(ours_result, result, rtol=1e-6, equal_nan=True)  # same answer
        ratios[name] = t / t_ours
        print(
            f"  {name:<32}{t:7.3f} s  {n / t / 1e6:7.1f} M points/s   ours {t / t_ours:5.1f}x faster"
        )
    return ratios["plain np.add.at on (row, col)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    x, y, z = make_points(args.points)

    t0 = time.perf_counter()
    ours(x[:1000], y[:1000], z[:1000])  # warm-up: loads (or compiles) the numba kernels
    print(
        f"numba warm-up, first call (excluded from the timings below): {time.perf_counter() - t0:.3f} s"
    )
    ratio = compare("random order", x, y, z, args.repeat)
    ratio_scan = compare("scan order", *make_scan_points(args.points), args.repeat)
    for label, r in (("random order", ratio), ("scan order", ratio_scan)):
        verdict = "met" if r >= 10 else "NOT met"
        print(f"target >= 10x plain np.add.at, {label}: {verdict} ({r:.1f}x)")
    with tempfile.TemporaryDirectory() as tmp:
        t_e2e, read = end_to_end(x, y, z, Path(tmp))
    print(
        f"end to end: dem_stage on a {read:,}-point LAZ (random order)  {t_e2e:7.3f} s  "
        f"{read / t_e2e / 1e6:6.1f} M points/s (LAZ decompression included)"
    )


if __name__ == "__main__":
    main()
