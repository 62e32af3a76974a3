"""What the per-tile groups of store v2 cost in metadata: opening a store of 100 and of 1000
tiles, side by side.

For each size one run writes a store of small tiles (16 x 16 px: only the metadata grows),
consolidates it as a build does, and times (medians of 5):

* ``open_store`` (geosynth: root attributes and the tile index, no consolidated metadata);
* ``zarr.open_group`` with the consolidated metadata (what xarray and plain zarr users do);
* ``xarray.open_zarr`` of one tile's group (its own consolidated metadata);

and prints the size of the root's ``zarr.json``. GeoNRW has 7,783 tiles: the ratio between
the two sizes says how the costs grow. Run: python benchmarks/store_open.py [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from geosynth.catalog import load_catalog
from geosynth.store import TileData, TilePlan, create_store, modality, open_store
from geosynth.store.create import consolidate


def build(path: Path, n: int) -> float:
    plans = [TilePlan(f"{i}_{5000 + i}", "bench", "train",
                      __import__("affine").Affine(1, 0, 1000 * i, 0, -1, 5_000_000)) for i in range(n)]  # fmt: skip
    store = create_store(path, plans, tile_shape=(16, 16), dataset="bench", crs="EPSG:25832",
                         modalities=[modality("rgb"), modality("dem"), modality("seg")],
                         classes=load_catalog().classes)  # fmt: skip
    store.batch_writes = True  # as a build's writers: consolidated once at the end
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for p in plans:
        store.write_tile(p.tile_id, TileData(rgb=rng.integers(0, 255, (3, 16, 16), dtype=np.uint8),
                                             dem=np.zeros((1, 16, 16), np.float32),
                                             seg=np.ones((16, 16), np.uint8)))  # fmt: skip
    seconds = time.perf_counter() - t0
    consolidate(store.location)
    return seconds / n


def median_time(func, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    import xarray as xr
    import zarr

    warnings.filterwarnings("ignore", message="Consolidated metadata")
    work = Path(tempfile.mkdtemp(prefix="geosynth-open-"))
    rows = []
    try:
        for n in (int(v) for v in args.sizes.split(",")):
            path = work / f"s{n}.zarr"
            per_tile = build(path, n)
            tile = open_store(path).tile_ids[n // 2]
            rows.append((
                n, per_tile, (path / "zarr.json").stat().st_size / 2**20,
                median_time(lambda: open_store(path)),  # noqa: B023
                median_time(lambda: zarr.open_group(path, mode="r")),  # noqa: B023
                median_time(lambda: xr.open_zarr(path / "tiles" / tile).close()),  # noqa: B023
            ))  # fmt: skip
        print(f"{'tiles':>6} {'write/tile':>11} {'root MiB':>9} {'open_store':>11} "
              f"{'zarr consolidated':>18} {'xarray one tile':>16}")  # fmt: skip
        for n, per_tile, mib, ours, consolidated, one in rows:
            print(
                f"{n:>6} {per_tile * 1e3:9.1f} ms {mib:9.2f} {ours * 1e3:8.1f} ms "
                f"{consolidated * 1e3:15.1f} ms {one * 1e3:13.1f} ms"
            )
        (a, *_, oa, ca, xa), (b, *_, ob, cb, xb) = (
            rows[0][:1] + rows[0][1:],
            rows[-1][:1] + rows[-1][1:],
        )
        print(
            f"{b} vs {a} tiles: open_store {ob / oa:.1f}x, consolidated open {cb / ca:.1f}x, "
            f"one tile through xarray {xb / xa:.1f}x"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
