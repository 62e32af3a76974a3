"""Region build benchmarks, each measured side by side in one run.

1. Peak memory (max RSS) of a build of 4 tiles against 16 tiles of the same
   4 x 4 demo world, each build in a fresh process: target ratio <= 1.3
   (memory stays per tile, not per region).
2. Wall time of a dask.distributed LocalCluster with 2 workers against 1
   worker building the same tiles: target speed-up >= 1.6x on 2 cores.

Run: python benchmarks/build.py [--world DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from geosynth.ingest.nrw import build_region
t0 = time.perf_counter()
report = build_region("demo", sys.argv[1], source_dir=sys.argv[2], tiles=sys.argv[3].split(","))
assert report.ok, report.failed
print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0, "tiles": len(report.done)}))
"""


def peak_rss(world: Path, tiles: list[str], out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), str(world), ",".join(tiles)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def dask_time(world: Path, tiles: list[str], out: Path, workers: int) -> float:
    from dask.distributed import LocalCluster

    from geosynth.ingest.nrw import build_region

    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        # warm the workers (imports) so that both runs time the build itself
        from dask.distributed import Client

        with Client(cluster.scheduler_address) as client:
            client.run(lambda: __import__("geosynth.sources.aerial"))
            client.run(lambda: __import__("geosynth.sources.lidar"))
            client.run(lambda: __import__("geosynth.sources.landcover"))
            client.run(lambda: __import__("geosynth.sources.sar"))
        t0 = time.perf_counter()
        report = build_region(
            "demo", out, source_dir=world, tiles=tiles, scheduler=cluster.scheduler_address
        )
        elapsed = time.perf_counter() - t0
    assert report.ok, report.failed
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="an existing 4 x 4 demo world (else generated)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geosynth-bench-build-"))
    try:
        world = args.world
        if world is None:
            from geosynth.catalog import load_catalog
            from geosynth.demo import generate_world
            from geosynth.ingest.nrw import discover_sources

            world = tmp / "world"
            t0 = time.perf_counter()
            generate_world(world, tiles=(4, 4), seed=0)
            discover_sources(world, load_catalog())  # extract the packages once, outside timings
            print(f"generated a 4 x 4 demo world in {time.perf_counter() - t0:.1f} s")
        tiles = sorted(f"{e}_{n}" for e in range(356, 360) for n in range(5645, 5649))

        small = peak_rss(world, tiles[:4], tmp / "rss4.zarr")
        large = peak_rss(world, tiles, tmp / "rss16.zarr")
        ratio = large["maxrss_mb"] / small["maxrss_mb"]
        print(f"peak RSS  4 tiles: {small['maxrss_mb']:7.1f} MB ({small['seconds']:.1f} s)")
        print(f"peak RSS 16 tiles: {large['maxrss_mb']:7.1f} MB ({large['seconds']:.1f} s)")
        print(
            f"ratio 16/4 tiles: {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})"
        )

        subset = tiles[:8]
        one = dask_time(world, subset, tmp / "dask1.zarr", 1)
        two = dask_time(world, subset, tmp / "dask2.zarr", 2)
        speedup = one / two
        print(
            f"dask LocalCluster, {len(subset)} tiles: 1 worker {one:.1f} s, 2 workers {two:.1f} s"
        )
        print(
            f"speed-up 2/1 workers: {speedup:.2f}x (target >= 1.6x: "
            f"{'met' if speedup >= 1.6 else 'NOT met'})"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
