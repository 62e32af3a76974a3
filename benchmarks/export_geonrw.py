"""``geosynth export --layout geonrw`` of the demo store's 8 tiles against decoding them.

Side by side in one run, each timed in rounds (median):

1. the baseline: decoding the 8 tiles' exported files (rgb.jp2, dem.tif, seg.tif,
   sar.tif) with rasterio, in one process: what every reader of the layout does;
2. the export itself (store read, JPEG2000 at the release's QUALITY 25, GeoTIFFs, the
   card), 1 process, then 2 (``--workers 2``), each into a fresh folder;
3. for scale: reading the 8 tiles' arrays from the store.

Target: the export with 1 process < 2x the decoding. Also prints the JPEG2000 error on
the demo's orthophotos (max and PSNR against the store), the bound the docs state.

Run: python benchmarks/export_geonrw.py [--store demo.zarr] [--rounds 3]
(without --store: the default demo world is generated and built first, about 1.5 minutes)
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
import rasterio

from geosynth.export.geonrw import export_geonrw
from geosynth.store import open_store


def demo_store(tmp: Path) -> Path:
    from geosynth.demo import generate_world
    from geosynth.ingest.nrw import build_region

    t0 = time.perf_counter()
    world = tmp / "world"
    generate_world(world, seed=0)
    store = tmp / "demo.zarr"
    report = build_region("demo", store, source_dir=[world, world / "osm", world / "sar"],
                          workers=2)  # fmt: skip
    assert report.ok, report.failed
    print(f"built the demo store ({len(report.done)} tiles) in {time.perf_counter() - t0:.0f} s")
    return store


def decode(folder: Path) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for path in sorted(folder.rglob("*_*_*.*")):
            if path.suffix in (".jp2", ".tif"):
                with rasterio.open(path) as src:
                    src.read()
    return time.perf_counter() - t0


def read_store(store) -> float:
    t0 = time.perf_counter()
    for i in store.tiles():
        for name in ("rgb", "dem", "seg", "sar"):
            if name in store.modalities and store.present(name)[i]:
                store.read(name, i)
                if name == "sar":
                    store.read("sar_valid", i)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a built store (default: the demo's, built)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geosynth-bench-export-"))
    try:
        store = open_store(args.store or demo_store(tmp))
        times = {"decode": [], "export 1 process": [], "export 2 processes": [], "store": []}
        for r in range(args.rounds):
            for workers in (1, 2):
                out = tmp / f"out{r}_{workers}"
                t0 = time.perf_counter()
                export_geonrw(store, out, workers=workers)
                times[f"export {workers} process{'es' if workers > 1 else ''}"].append(
                    time.perf_counter() - t0
                )
            times["decode"].append(decode(tmp / f"out{r}_1"))
            times["store"].append(read_store(store))
        med = {k: statistics.median(v) for k, v in times.items()}
        n = len(store.tiles())
        print(f"{n} tiles of {store.path}, median of {args.rounds} rounds:")
        for name, seconds in med.items():
            print(f"  {name:20s} {seconds:6.2f} s  ({n / seconds:5.1f} tiles/s)")
        ratio = med["export 1 process"] / med["decode"]
        print(f"export (1 process) / decoding its files: {ratio:.2f} "
              f"(target < 2: {'met' if ratio < 2 else 'NOT met'}); 2 processes / decoding: "
              f"{med['export 2 processes'] / med['decode']:.2f}")  # fmt: skip
        worst, psnrs = 0, []
        for i in store.tiles():
            tile = store.tile_ids[i]
            with rasterio.open(next((tmp / "out0_1").rglob(f"{tile}_rgb.jp2"))) as src:
                back = src.read().astype(float)
            diff = back - store.read("rgb", i).astype(float)
            worst = max(worst, int(np.abs(diff).max()))
            psnrs.append(10 * np.log10(255**2 / (diff**2).mean()))
        print(f"JPEG2000 QUALITY 25 on the orthophotos: max error {worst} grey levels, "
              f"PSNR {min(psnrs):.1f}-{max(psnrs):.1f} dB")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
