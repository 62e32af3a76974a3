"""Generating the default demo world against writing the same files from ready-made arrays.

Target: the default world (4 x 2 tiles, 0.5 m orthophotos, 4
pulses per m^2) in under a minute on 2 cores. The baseline is the encoding
floor: JPEG2000 and LAZ files of exactly the sizes the world writes (same
pixels, same point counts), filled with synthetic arrays, so the ratio says
how much the procedural rendering adds to the unavoidable encoding.
Other processes share the CPU: the figures are indicative.

Run: python benchmarks/demo_world.py [--tiles 4x2] [--dop-resolution 0.5] [--lidar-density 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def generate(out: Path, tiles, res: float, density: float, workers: int | None):
    """(wall s, CPU s, manifest) of one generation."""
    from geosynth.demo import generate_world

    started, cpu = time.perf_counter(), cpu_seconds()
    manifest = generate_world(
        out, tiles=tiles, dop_resolution=res, lidar_density=density, workers=workers
    )
    return time.perf_counter() - started, cpu_seconds() - cpu, manifest


def encode_only(out: Path, manifest: dict) -> float:
    """Write JP2 and LAZ files of the world's sizes from prepared arrays (the encoding floor)."""
    from geosynth.demo.dop import tile_grid
    from geosynth.demo.lidar import PointCloud
    from geosynth.demo.writers import write_jp2, write_laz
    from geosynth.grid import TileId

    rng = np.random.default_rng(0)
    res = manifest["params"]["dop_resolution"]
    n = int(round(1000 / res))
    smooth = np.repeat(np.repeat(rng.integers(40, 200, (4, n // 8 + 1, n // 8 + 1)), 8, 1), 8, 2)
    image = np.clip(smooth[:, :n, :n] + rng.normal(0, 6, (4, n, n)), 0, 255).astype(np.uint8)
    elapsed = 0.0
    for t in manifest["tiles"]:
        tile = TileId.parse(t["id"])
        m = t["lidar_points"]
        left, bottom = tile.e_km * 1000.0, tile.n_km * 1000.0
        cloud = PointCloud(
            x=left + rng.random(m) * 1000,
            y=bottom + rng.random(m) * 1000,
            z=50 + rng.random(m) * 30,
            intensity=rng.integers(0, 60000, m).astype(np.uint16),
            return_number=np.ones(m, np.uint8),
            number_of_returns=np.ones(m, np.uint8),
            scan_direction_flag=np.zeros(m, np.uint8),
            edge_of_flight_line=np.zeros(m, np.uint8),
            classification=np.full(m, 2, np.uint8),
            scan_angle_rank=np.zeros(m, np.int8),
            point_source_id=np.ones(m, np.uint16),
            gps_time=np.arange(m) * 2e-6,
        )
        started = time.perf_counter()
        write_jp2(out / f"{t['id']}.jp2", image, tile_grid(tile, res))
        write_laz(out / f"{t['id']}.laz", cloud, tile)
        elapsed += time.perf_counter() - started
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", default="4x2")
    parser.add_argument("--dop-resolution", type=float, default=0.5)
    parser.add_argument("--lidar-density", type=float, default=4.0)
    args = parser.parse_args()
    tiles = tuple(int(v) for v in args.tiles.split("x"))
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours, ours_cpu, manifest = generate(
            tmp / "a", tiles, args.dop_resolution, args.lidar_density, None
        )
        two, two_cpu, _ = generate(tmp / "b", tiles, args.dop_resolution, args.lidar_density, 2)
        (tmp / "floor").mkdir()
        cpu = cpu_seconds()
        floor = encode_only(tmp / "floor", manifest)
        floor_cpu = cpu_seconds() - cpu
        size = sum(f["bytes"] for f in manifest["files"].values())
    points = sum(t["lidar_points"] for t in manifest["tiles"])
    print(
        f"demo world {args.tiles}, {args.dop_resolution} m DOP, {args.lidar_density} pts/m^2: "
        f"{len(manifest['files'])} files, {size / 1e6:.0f} MB, {points / 1e6:.1f} M lidar points"
    )
    print(f"load average before: {load[0]:.1f} (other processes share the CPUs)")
    print(f"{'':38}{'wall':>8}{'CPU':>9}")
    print(f"generate_world (default: 1 process)   {ours:7.1f} s {ours_cpu:7.1f} s")
    print(f"generate_world, workers=2 (spawned)   {two:7.1f} s {two_cpu:7.1f} s")
    print(
        f"encode the same JP2 + LAZ only        {floor:7.1f} s {floor_cpu:7.1f} s"
        "   (baseline: encoding floor)"
    )
    print(
        f"ratio default / encoding floor        {ours / floor:7.2f}x wall, "
        f"{ours_cpu / floor_cpu:.2f}x CPU"
    )
    print(f"ratio default / workers=2             {ours / two:7.2f}x")
    print("target: default world < 60 s:", "met" if ours < 60 else "NOT met")


if __name__ == "__main__":
    main()
