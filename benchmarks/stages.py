"""Per-stage time for one demo tile, and the aerial stage against a bare lanczos reproject.

Target: the aerial stage within 1.2x the time of a bare
``rasterio.warp.reproject(..., resampling=lanczos)`` of the same JPEG2000
onto the same tile grid (our overhead: opening and checking the sources,
the footprint test, the coverage alpha band and the mosaic).

The demo world (``geosynth.demo.generate_world``, one 1 km tile at the
catalog's demo origin) provides the inputs; each stage runs once on tile
``356_5645`` and its wall time is printed. Other processes share the CPU,
so the figures are indicative.

Run: python benchmarks/stages.py [--world DIR] [--dop-resolution 0.5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from geosynth.catalog import load_catalog
from geosynth.grid import RasterGrid
from geosynth.sources.aerial import RASTER_SUFFIXES, zip_members

TILE = "356_5645"
VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson")
OSM_SUFFIXES = (".osm", ".osm.bz2", ".osm.xml")
SAR_PRODUCT = re.compile(r"^T[SD]X1_SAR__EEC")  # TerraSAR-X / TanDEM-X EEC product folders


def find_inputs(world: Path) -> dict[str, list[str]]:
    """The demo world's provider files per stage, found by folder and suffix."""
    files = sorted(p for p in world.rglob("*") if p.is_file())
    zips = [p for p in files if p.suffix == ".zip"]
    return {
        "dop": [str(p) for p in zips if "dop" in p.name.lower()],
        "lidar": [str(p) for p in zips if "las" in p.name.lower()],
        "vectors": [str(p) for p in files if p.name.lower().endswith(VECTOR_SUFFIXES)],
        "osm": [str(p) for p in files if p.name.lower().endswith(OSM_SUFFIXES)],
        "sar": [
            str(p) for p in sorted(world.rglob("*")) if p.is_dir() and SAR_PRODUCT.match(p.name)
        ],
    }


def timed(func, *args, **kwargs):
    t0 = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - t0, result


def bare_reproject(path: str, grid: RasterGrid) -> np.ndarray:
    """The baseline: one lanczos reproject of bands 1-3 onto the grid, nothing else."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    out = np.zeros((3, *grid.shape), np.uint8)  # (3, H, W)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, [1, 2, 3]),
            out,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling.lanczos,
        )
    return out


def run_stages(inputs: dict[str, list[str]], grid: RasterGrid, catalog) -> None:
    from geosynth.sources.aerial import aerial_stage
    from geosynth.sources.lidar import dem_stage

    rows = []
    if inputs["dop"]:
        rows.append(("aerial", *timed(aerial_stage, inputs["dop"], grid)))
    if inputs["lidar"]:
        rows.append(("dem", *timed(dem_stage, inputs["lidar"], grid)))
    if inputs["vectors"] or inputs["osm"]:
        from geosynth.sources.landcover import landcover_stage

        rows.append(
            (
                "landcover",
                *timed(
                    landcover_stage,
                    grid,
                    vectors=inputs["vectors"],
                    osm=inputs["osm"] or None,
                    catalog=catalog,
                ),
            )
        )
    if inputs["sar"]:
        from geosynth.sources.sar import sar_stage

        rows.append(("sar", *timed(sar_stage, inputs["sar"], grid, catalog=catalog)))
    print(f"per-stage wall time for demo tile {TILE} ({grid.width} x {grid.height} px):")
    for name, seconds, result in rows:
        extra = ""
        if name == "dem":
            extra = f"  ({result.report['points_read']:,} points)"
        print(f"  {name:<10}{seconds:8.2f} s{extra}")
    missing = [
        n for n, key in (("aerial", "dop"), ("dem", "lidar"), ("sar", "sar")) if not inputs[key]
    ]
    if missing:
        print(f"  (no demo input found for: {', '.join(missing)})")


def aerial_vs_bare(dop_zip: str, grid: RasterGrid, repeat: int) -> None:
    from geosynth.sources.aerial import aerial_stage

    member = zip_members(dop_zip, RASTER_SUFFIXES)[0]
    path = f"/vsizip/{Path(dop_zip).resolve()}/{member}"
    ours_times, bare_times = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        t, ours = timed(aerial_stage, [path], grid)
        ours_times.append(t)
        t, bare = timed(bare_reproject, path, grid)
        bare_times.append(t)
    if not np.array_equal(ours.array, bare):
        raise SystemExit("aerial stage and bare reproject disagree: no ratio")
    t_ours, t_bare = min(ours_times), min(bare_times)
    ratio = t_ours / t_bare
    print(f"aerial stage vs bare rasterio.warp.reproject (lanczos) of {member}, best of {repeat}:")
    print(f"  bare reproject  {t_bare:7.3f} s")
    print(
        f"  aerial stage    {t_ours:7.3f} s   ratio {ratio:.2f}x  "
        f"(target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, help="reuse (or keep) the demo world in this folder")
    parser.add_argument("--dop-resolution", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    catalog = load_catalog()
    grid = RasterGrid.for_tile(TILE, catalog.grid)

    with tempfile.TemporaryDirectory() as tmp:
        world = args.world or Path(tmp) / "world"
        if not world.exists() or not any(world.rglob("*.zip")):
            from geosynth.demo import generate_world

            t, _ = timed(
                generate_world,
                world,
                tiles=(1, 1),
                seed=0,
                origin=tuple(catalog.region("demo").origin_km),
                dop_resolution=args.dop_resolution,
            )
            print(f"demo world (1 tile, DOP at {args.dop_resolution} m) generated in {t:.1f} s")
        inputs = find_inputs(world)
        run_stages(inputs, grid, catalog)
        if inputs["dop"]:
            aerial_vs_bare(inputs["dop"][0], grid, args.repeat)


if __name__ == "__main__":
    main()
