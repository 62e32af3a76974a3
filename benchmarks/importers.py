"""Importer benchmarks: tiles/s and store size against the source folder size.

For GeoNRW (1000 x 1000 tiles: JPEG2000 rgb at GDAL's default quality,
float32 DEM, uint8 labels) and DFC2020 (256 x 256 patches: S1 float32, S2
uint16 13 bands, labels), generated with smooth, compressible content into a
temporary folder, one run measures side by side:

1. the baseline: only decoding every source file with rasterio (the least
   any importer must do), in one process;
2. ``import_*`` with 1 worker, then with 2 workers (fresh stores);

and prints tiles/s, the ratio import / decode-only, and the size of the
store against the source folder. The CPU is shared with other work on a
busy machine: figures are indicative.

Run: python benchmarks/importers.py [--geonrw-tiles 12] [--dfc-patches 60] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy.ndimage import gaussian_filter, zoom

from geosynth.ingest.dfc2020 import import_dfc2020
from geosynth.ingest.geonrw import import_geonrw


def folder_bytes(path: str | Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def smooth(rng, shape, scale, low, high):
    """A smooth random field in [low, high] (C, H, W) or (H, W): compressible like real data."""
    coarse_shape = tuple(
        max(2, s // scale) if i >= len(shape) - 2 else s for i, s in enumerate(shape)
    )
    coarse = rng.random(coarse_shape)
    factors = [s / c for s, c in zip(shape, coarse_shape, strict=True)]
    field = zoom(coarse, factors, order=1)[tuple(slice(0, s) for s in shape)]
    field = gaussian_filter(field, sigma=[0] * (len(shape) - 2) + [2, 2])
    field += rng.normal(0, 0.02, shape)
    return low + (high - low) * np.clip(field, 0, 1)


def write(path, data, **profile):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(
        path, "w", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype, **profile,
    ) as dst:  # fmt: skip
        dst.write(data)


def make_geonrw(root: Path, n: int, size: int = 1000) -> None:
    rng = np.random.default_rng(0)
    for k in range(n):
        e, nn = 356 + k % 4, 5645 + k // 4
        city = "koeln" if k % 3 else "neuss"
        geo = {"crs": "EPSG:25832", "transform": Affine(1, 0, e * 1000, 0, -1, nn * 1000 + size)}
        stem = root / city / f"{e}_{nn}"
        rgb = smooth(rng, (3, size, size), 40, 20, 230).astype(np.uint8)
        write(Path(f"{stem}_rgb.jp2"), rgb, driver="JP2OpenJPEG", **geo)
        dem = smooth(rng, (size, size), 200, 40, 120).astype(np.float32)
        write(Path(f"{stem}_dem.tif"), dem, driver="GTiff", **geo)
        seg = (smooth(rng, (size, size), 100, 1, 10.99)).astype(np.uint8)
        write(Path(f"{stem}_seg.tif"), seg, driver="GTiff", **geo)


def make_dfc2020(root: Path, n: int, size: int = 256) -> None:
    rng = np.random.default_rng(1)
    folders = {"s1": "s1_0", "s2": "s2_0", "dfc": "dfc_0"}
    for k in range(n):
        geo = {
            "crs": f"EPSG:{(32631, 32633, 32755)[k % 3]}",
            "transform": Affine(10, 0, 300000 + 2560 * k, 0, -10, 5600000),
        }
        arrays = {
            "s1": smooth(rng, (2, size, size), 16, -25, 0).astype(np.float32),
            "s2": smooth(rng, (13, size, size), 16, 200, 4000).astype(np.uint16),
            "dfc": smooth(rng, (size, size), 32, 1, 10.99).astype(np.uint16),
        }
        for kind, data in arrays.items():
            name = f"ROIs0000_test_{kind}_0_p{k}.tif"
            write(root / "ROIs0000_test" / folders[kind] / name, data, driver="GTiff", **geo)


def decode_only(files: list[Path]) -> float:
    """Seconds to read every file's pixels: the baseline."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            with rasterio.open(path) as src:
                src.read()
    return time.perf_counter() - t0


def measure(name: str, root: Path, tmp: Path, run, n_tiles: int) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    baseline = decode_only(files)
    source = folder_bytes(root)
    print(f"\n{name}: {n_tiles} tiles, source folder {source / 1e6:.1f} MB")
    print(f"  decode only (baseline)   {n_tiles / baseline:7.2f} tiles/s")
    for workers in (1, 2):
        out = tmp / f"{name}-{workers}.zarr"
        t0 = time.perf_counter()
        report = run(root, out, workers=workers)
        seconds = time.perf_counter() - t0
        assert report.ok and len(report.done) == n_tiles, report.summary()
        store = folder_bytes(out)
        print(
            f"  import, {workers} worker(s)      {n_tiles / seconds:7.2f} tiles/s  "
            f"({seconds / baseline:.2f}x the decode-only time; store {store / 1e6:.1f} MB "
            f"= {store / source:.2f}x the source folder)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geonrw-tiles", type=int, default=12)
    parser.add_argument("--dfc-patches", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geosynth-bench-import-"))
    try:
        make_geonrw(tmp / "geonrw", args.geonrw_tiles)
        measure("geonrw", tmp / "geonrw", tmp, import_geonrw, args.geonrw_tiles)
        make_dfc2020(tmp / "dfc2020", args.dfc_patches)
        measure("dfc2020", tmp / "dfc2020", tmp, import_dfc2020, args.dfc_patches)
    finally:
        if args.keep:
            print(f"\nkept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
