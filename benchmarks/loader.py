"""Training-sample throughput: our store-backed dataset against the paper's file loader.

Random 256 x 256 crops of rgb + dem + seg from 1000 x 1000 tiles, one
DataLoader worker, the same seeded tiles for every contender:

(a) ``SynthesisDataset`` over a Zarr store, for several store layouts
    (chunk edge x Zstandard level, or no compression);
(b) what the code published with the paper does per sample: decode the
    tile's ``rgb.jp2`` (JPEG2000 written by GDAL, lossless unless
    ``--jp2-quality`` says otherwise; its ``colr`` box patched from greyscale
    to sRGB so that PIL accepts it) and its two GeoTIFFs with PIL, then crop;
(c) the ceiling: crops copied from arrays already in memory.

All three turn their crops into the same tensors (one-hot labels, scaled
RGB, DEM in metres) and flip the same way, so only the reading differs.
For the default layout two more rows: the same pixels in store layout v1
(one array per modality with a tile axis, read by the v1 reader: v2 must not
be slower) and, with ``--s3``, the same store on a loopback S3-API server
(moto), read through zarr.
A row for the default layout without crc32c chunk checksums prints their cost
(target < 10 %), and, since whole-sample rates vary by several per cent from
repeat to repeat on a shared machine, the same two stores are also compared
on their window reads alone (best of several alternating rounds). Target: (a) >= 100 x (b) in samples/s. Other processes share the CPU, so the
figures are indicative. Run: python benchmarks/loader.py [--tiles 8] [--s3]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, features  # noqa: E402
from scipy.ndimage import gaussian_filter, zoom  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from geosynth.catalog import load_catalog  # noqa: E402
from geosynth.ml.data.datasets import SynthesisDataset  # noqa: E402
from geosynth.ml.data.tensors import to_network  # noqa: E402
from geosynth.store import (  # noqa: E402
    STORE_LAYOUT,
    StoreLayout,
    TileData,
    TilePlan,
    create_store,
    modality,
)

TILE = 1000
NUM_CLASSES = 11
JP2_SRGB = 0x10  # JPEG2000 colr box EnumCS: 16 = sRGB, 17 = greyscale


# --------------------------------------------------------------------------- synthetic tiles


def make_tile(seed: int) -> dict[str, np.ndarray]:
    """A plausible tile: smooth terrain, blocky buildings, roads, classes and a textured photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((3, 26, 26))
    fields = zoom(coarse, (1, TILE / 26, TILE / 26), order=1)[:, :TILE, :TILE]  # (3, H, W)
    terrain = 80 + 40 * gaussian_filter(rng.random((TILE, TILE)), 60) * 8
    seg = np.digitize(fields[0], [0.25, 0.45, 0.6, 0.75]).astype(np.uint8) + 1  # classes 1..5
    buildings = np.zeros((TILE, TILE), dtype=bool)
    for _ in range(120):
        r, c = rng.integers(0, TILE - 30, 2)
        h, w = rng.integers(8, 30, 2)
        buildings[r : r + h, c : c + w] = True
    roads = np.zeros_like(buildings)
    for _ in range(6):
        roads[rng.integers(0, TILE - 6) :][:6] = True
        roads[:, rng.integers(0, TILE - 6) :][:, :6] = True
    seg[roads] = 9
    seg[buildings] = 10
    dem = (terrain + 12 * buildings).astype(np.float32)[None]  # (1, H, W) metres
    palette = np.array([[0, 0, 0], [40, 90, 40], [40, 60, 120], [150, 120, 80], [130, 130, 130],
                        [120, 150, 60], [110, 90, 70], [100, 100, 100], [140, 140, 150],
                        [90, 90, 90], [170, 110, 100]], dtype=np.float32)  # fmt: skip
    texture = gaussian_filter(rng.normal(0, 12, (3, TILE, TILE)), (0, 1, 1))
    rgb = palette[seg].transpose(2, 0, 1) + 25 * (fields - 0.5) + texture
    return {"rgb": rgb.clip(0, 255).astype(np.uint8), "dem": dem, "seg": seg}


def write_files(tile: dict, folder: Path, name: str, jp2_quality: int = 100) -> None:
    """The GeoNRW file layout: ``<E>_<N>_rgb.jp2``, ``_dem.tif``, ``_seg.tif``.

    ``jp2_quality`` 100 writes lossless (reversible) JPEG2000, less is lossy.
    """
    import rasterio
    from rasterio.transform import from_origin

    common = dict(width=TILE, height=TILE, crs="EPSG:25832",
                  transform=from_origin(356000, 5646000, 1, 1))  # fmt: skip
    jp2 = folder / f"{name}_rgb.jp2"
    lossless = {"QUALITY": 100, "REVERSIBLE": "YES"} if jp2_quality >= 100 else {}
    options = lossless or {"QUALITY": jp2_quality}
    with rasterio.open(jp2, "w", driver="JP2OpenJPEG", count=3, dtype="uint8", **options,
                       **common) as dst:  # fmt: skip
        dst.write(tile["rgb"])
    data = bytearray(jp2.read_bytes())
    at = data.find(b"colr")  # 'colr', METH, PREC, APPROX, EnumCS (4 bytes, big endian)
    if at < 0 or data[at + 4] != 1:
        raise RuntimeError(f"{jp2}: no enumerated colr box to patch")
    data[at + 10] = JP2_SRGB
    jp2.write_bytes(bytes(data))
    for key, dtype in (("dem", "float32"), ("seg", "uint8")):
        with rasterio.open(folder / f"{name}_{key}.tif", "w", driver="GTiff", count=1,
                           dtype=dtype, **common) as dst:  # fmt: skip
            dst.write(np.asarray(tile[key]).reshape(1, TILE, TILE).astype(dtype))


def write_store(tiles: list[dict], path, layout: StoreLayout) -> None:
    classes = load_catalog().classes
    plans = [TilePlan(f"{356 + i}_5645", "bench", "train") for i in range(len(tiles))]
    store = create_store(path, plans, tile_shape=(TILE, TILE),
                         modalities=[modality("rgb"), modality("dem"), modality("seg")],
                         dataset="bench", crs="EPSG:25832", classes=classes, layout=layout)  # fmt: skip
    for plan, tile in zip(plans, tiles, strict=True):
        store.write_tile(plan.tile_id, TileData(**tile))


# --------------------------------------------------------------------------- contenders


class CropDataset(Dataset):
    """Random crop + flip of whole tiles, converted as SynthesisDataset converts them."""

    def __init__(self, n_tiles: int, crop: int, seed: int = 0):
        self.n, self.crop, self.seed = n_tiles, crop, seed

    def __len__(self) -> int:
        return self.n

    def tile(self, item: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, item: int) -> dict:
        full = self.tile(item)
        rng = np.random.default_rng([self.seed, item])
        row, col = (int(v) for v in rng.integers(0, TILE - self.crop + 1, 2))
        win = (slice(row, row + self.crop), slice(col, col + self.crop))
        crops = {"rgb": full["rgb"][(slice(None), *win)], "dem": full["dem"][(slice(None), *win)],
                 "seg": full["seg"][win]}  # fmt: skip
        if rng.random() < 0.5:
            crops = {k: v[..., ::-1] for k, v in crops.items()}
        return {k: torch.from_numpy(to_network(k, v, NUM_CLASSES)) for k, v in crops.items()}


class PaperFiles(CropDataset):
    """(b) decode the whole JPEG2000 and both GeoTIFFs with PIL for every sample."""

    def __init__(self, folder: Path, names: list[str], crop: int):
        super().__init__(len(names), crop)
        self.folder, self.names = folder, names

    def tile(self, item: int) -> dict[str, np.ndarray]:
        name = self.folder / self.names[item]
        rgb = np.asarray(Image.open(f"{name}_rgb.jp2").convert("RGB")).transpose(2, 0, 1)
        dem = np.asarray(Image.open(f"{name}_dem.tif"))[None]  # mode F
        seg = np.asarray(Image.open(f"{name}_seg.tif").convert("I;16"))
        return {"rgb": rgb, "dem": dem, "seg": seg}


class InMemory(CropDataset):
    """(c) crops of arrays already in memory: the ceiling of any loader."""

    def __init__(self, tiles: list[dict], crop: int):
        super().__init__(len(tiles), crop)
        self.tiles = tiles

    def tile(self, item: int) -> dict[str, np.ndarray]:
        return self.tiles[item]


class ThroughZarr(SynthesisDataset):
    """(a) with every window read through zarr's API instead of the direct chunk reads."""

    def _open(self):
        readers = super()._open()
        for reader in readers.values():
            reader._direct = False
        return readers


# --------------------------------------------------------------------------- the v1 layout


def write_v1(tiles: list[dict], path: Path, layout: StoreLayout) -> None:
    """Store version 1's pixel arrays: one array per modality with a leading tile axis,
    chunked one tile, all bands and ``layout.chunk`` px (what geosynth wrote before v2)."""
    import zarr

    group = zarr.open_group(path, mode="w")
    for name in ("rgb", "dem", "seg"):
        data = np.stack([t[name] for t in tiles])
        chunks = (1, *data.shape[1:-2], layout.chunk, layout.chunk)
        array = group.create_array(name, shape=data.shape, chunks=chunks, dtype=data.dtype,
                                   compressors=layout.compressors())  # fmt: skip
        array[...] = data


class V1Reader:
    """The direct chunk reader of store version 1 (tile axis first), as geosynth had it."""

    def __init__(self, array):
        from numcodecs import Blosc

        self.shape, self.dtype = array.shape, np.dtype(array.dtype)
        self.chunk = tuple(array.metadata.chunk_grid.chunk_shape)
        self.root = os.path.join(str(array.store_path.store.root), array.store_path.path, "c")
        self.decoder = Blosc()
        self.buffer = np.empty(int(np.prod(self.chunk[1:])) * self.dtype.itemsize, np.uint8)

    def read(self, tile: int, rows: slice, cols: slice) -> np.ndarray:
        r0, r1, _ = rows.indices(self.shape[-2])
        c0, c1, _ = cols.indices(self.shape[-1])
        ch, cw = self.chunk[-2:]
        bands = self.shape[1:-2]
        out = np.empty((*bands, r1 - r0, c1 - c0), dtype=self.dtype)
        base = os.path.join(self.root, str(int(tile)), *(["0"] if bands else []))
        for bi in range(r0 // ch, (r1 - 1) // ch + 1):
            y0, y1 = max(r0, bi * ch), min(r1, (bi + 1) * ch)
            for bj in range(c0 // cw, (c1 - 1) // cw + 1):
                x0, x1 = max(c0, bj * cw), min(c1, (bj + 1) * cw)
                with open(os.path.join(base, str(bi), str(bj)), "rb", buffering=0) as f:
                    raw = self.decoder.decode(f.readall(), out=self.buffer)
                block = np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk[1:])
                out[..., y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = block[
                    ..., y0 - bi * ch : y1 - bi * ch, x0 - bj * cw : x1 - bj * cw
                ]
        return out


class V1Dataset(SynthesisDataset):
    """(a) with the pixels read from the version 1 layout by the version 1 reader."""

    def __init__(self, v1_path: Path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.v1_path = v1_path

    def _open(self):
        import zarr

        if self._arrays is None or self._pid != os.getpid():
            group = zarr.open_group(self.v1_path, mode="r")
            self._arrays = {name: V1Reader(group[name]) for name in self.modalities}
            self._pid = os.getpid()
        return self._arrays


def s3_copy(tiles: list[dict], layout: StoreLayout):
    """The same store on a loopback S3-API server (moto's); returns ``(url, server)``."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    boto3.client("s3").create_bucket(Bucket="bench")
    url = "s3://bench/store.zarr"
    write_store(tiles, url, layout)
    return url, server


def in_worker(dataset: Dataset, samples: int, set_epoch=None) -> float:
    """Samples/s that one loading process produces (``dataset[i]`` in a loop, no IPC)."""
    order = np.random.default_rng(0).permutation(len(dataset))
    dataset[int(order[0])]  # warm-up: open files / the store
    start, seen, epoch = time.perf_counter(), 0, 0
    while seen < samples:
        if set_epoch:
            set_epoch(epoch)
        for i in order:
            dataset[int(i)]
            seen += 1
            if seen >= samples:
                break
        epoch += 1
    return seen / (time.perf_counter() - start)


def through_loader(dataset: Dataset, samples: int, batch: int, set_epoch=None) -> float:
    """Samples/s through a one-worker DataLoader, after one warm-up batch (worker start)."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=1,
                        persistent_workers=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    seen, start, epoch = -1, None, 0
    while seen < samples:
        if set_epoch:
            set_epoch(epoch)
        for b in loader:
            if start is None:
                start, seen = time.perf_counter(), 0
                continue
            seen += len(b["rgb"])
            if seen >= samples:
                break
        epoch += 1
    rate = seen / (time.perf_counter() - start)
    del loader
    return rate


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parse_layouts(text: str) -> list[StoreLayout]:
    """``"128:blosc-lz4:5,128:zstd:1,256:none:0"``: chunk edge, codec and level."""
    out = []
    for item in text.split(","):
        chunk, codec, level = item.split(":")
        out.append(StoreLayout(chunk=int(chunk), codec=codec, level=int(level)))
    return out


class Contender:
    """One row of the table: a dataset, how many samples to time, and its rates per repeat."""

    def __init__(self, label: str, dataset: Dataset, samples: int, batch: int,
                 size: int | None = None):  # fmt: skip
        self.label, self.dataset, self.samples, self.batch = label, dataset, samples, batch
        self.size = size
        self.worker: list[float] = []
        self.loader: list[float] = []

    def measure(self) -> None:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        self.worker.append(in_worker(self.dataset, max(1, self.samples // 2), set_epoch))
        self.loader.append(through_loader(self.dataset, self.samples, self.batch, set_epoch))

    @property
    def rates(self) -> tuple[float, float]:
        return float(np.median(self.worker)), float(np.median(self.loader))


def read_cost(paths: dict[str, Path], crop: int, windows: int = 400, rounds: int = 7) -> dict:
    """Microseconds per sample (rgb + dem + seg windows) of each store, best of ``rounds``
    alternating rounds over the same seeded windows: the reading alone, without the
    sample's conversion to tensors."""
    from geosynth.store import open_store
    from geosynth.store.read import WindowReader

    readers = {}
    for label, path in paths.items():
        store = open_store(path)
        readers[label] = [WindowReader(store, name) for name in ("rgb", "dem", "seg")]
        n_tiles, edge = len(store.tile_ids), TILE - crop
    rng = np.random.default_rng(0)
    spots = rng.integers(0, [n_tiles, edge, edge], size=(windows, 3))
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(rounds):
        for label, group in readers.items():
            t = time.perf_counter()
            for tile, r, c in spots:
                for reader in group:
                    reader.read(int(tile), slice(r, r + crop), slice(c, c + crop))
            best[label] = min(best[label], (time.perf_counter() - t) / windows * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--samples", type=int, default=800, help="samples per store measurement")
    parser.add_argument("--baseline-samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--jp2-quality", type=int, default=100,
                        help="GDAL JPEG2000 QUALITY for (b); 100 = lossless (default)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="interleaved; medians reported")
    parser.add_argument("--layouts",
                        default="128:blosc-lz4:5,64:blosc-lz4:5,256:blosc-lz4:5,128:blosc-zstd:1,"
                                "128:zstd:1,250:zstd:1,256:none:0",
                        help="chunk:codec:level,... (codecs: blosc-lz4, blosc-zstd, zstd, none)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--s3", action="store_true",
                        help="also the default store on a loopback S3-API server (moto)")  # fmt: skip
    args = parser.parse_args()
    if not features.check("jpg_2000"):
        raise SystemExit("Pillow was built without OpenJPEG: baseline (b) cannot run")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="geosynth-loader-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        tiles = [make_tile(seed) for seed in range(args.tiles)]
        files = work / "files"
        files.mkdir(exist_ok=True)
        names = [f"{356 + i}_5645" for i in range(args.tiles)]
        for tile, name in zip(tiles, names, strict=True):
            write_files(tile, files, name, args.jp2_quality)
        paper = Contender(
            "(b) paper's files (PIL jp2 + 2 tif)",
            PaperFiles(files, names, args.crop),
            args.baseline_samples,
            1,
            du(files),
        )
        contenders = [paper, Contender("(c) in-memory ceiling", InMemory(tiles, args.crop),
                                       args.samples, args.batch)]  # fmt: skip
        for layout in parse_layouts(args.layouts):
            path = work / f"store-{layout.chunk}-{layout.codec}-{layout.level}.zarr"
            write_store(tiles, path, layout)
            codec = f"{layout.codec} {layout.level}" if layout.codec != "none" else "no compression"
            ds = SynthesisDataset(path, "train", crop=args.crop, seed=0)
            contenders.append(Contender(f"(a) store, chunk {layout.chunk}, {codec}", ds,
                                        args.samples, args.batch, du(path)))  # fmt: skip
            if layout == STORE_LAYOUT:
                plain_layout = dataclasses.replace(layout, checksum=False)
                plain = work / "store-no-checksum.zarr"
                write_store(tiles, plain, plain_layout)
                contenders.append(Contender("    same without chunk checksums",
                                            SynthesisDataset(plain, "train", crop=args.crop,
                                                             seed=0),
                                            args.samples, args.batch, du(plain)))  # fmt: skip
                zds = ThroughZarr(path, "train", crop=args.crop, seed=0)
                contenders.append(Contender("    same, read through zarr's API", zds,
                                            args.samples // 2, args.batch))  # fmt: skip
                v1 = work / "store-v1.zarr"
                write_v1(tiles, v1, layout)
                contenders.append(Contender("    same in layout v1 (reader v1)",
                                            V1Dataset(v1, path, "train", crop=args.crop, seed=0),
                                            args.samples, args.batch, du(v1)))  # fmt: skip
                if args.s3:
                    url, server = s3_copy(tiles, layout)
                    contenders.append(Contender("    same on loopback S3 (zarr)",
                                                SynthesisDataset(url, "train", crop=args.crop,
                                                                 seed=0),
                                                max(8, args.samples // 16), args.batch))  # fmt: skip
        print(f"{args.tiles} tiles of {TILE} x {TILE} px, {args.crop} px crops, one worker, "
              f"batch {args.batch}; data written in {time.perf_counter() - t0:.0f} s; "
              f"medians of {args.repeats} interleaved repeats")  # fmt: skip
        for _ in range(args.repeats):
            for contender in contenders:
                contender.measure()

        print("samples/s: 'worker' = one process calling dataset[i] (the loading work itself);")
        print("           'loader' = through a DataLoader with one worker, batch "
              f"{args.batch} (adds inter-process transfer of ~4 MB per sample)")  # fmt: skip
        print(f"{'':38}{'worker':>9} {'x (b)':>7} {'loader':>9} {'x (b)':>7} {'MiB':>7}")
        base = paper.rates
        for c in contenders:
            w, lo = c.rates
            mib = f"{c.size / 2**20:7.1f}" if c.size is not None else ""
            print(f"{c.label:<38}{w:9.1f} {w / base[0]:6.0f}x {lo:9.1f} {lo / base[1]:6.0f}x {mib}")
        default = next(c for c in contenders if c.label.startswith(
            f"(a) store, chunk {STORE_LAYOUT.chunk}, {STORE_LAYOUT.codec} {STORE_LAYOUT.level}"))  # fmt: skip
        v1 = next(c for c in contenders if "layout v1" in c.label)
        plain = next(c for c in contenders if "without chunk checksums" in c.label)
        cost = [1 - default.rates[k] / plain.rates[k] for k in (0, 1)]
        print(f"cost of the crc32c chunk checksums: {cost[0]:+.1%} per worker, {cost[1]:+.1%} "
              "through the DataLoader (target < 10 %)")  # fmt: skip
        reads = read_cost({"with": work / f"store-{STORE_LAYOUT.chunk}-{STORE_LAYOUT.codec}-"
                                          f"{STORE_LAYOUT.level}.zarr",
                           "without": work / "store-no-checksum.zarr"}, args.crop)  # fmt: skip
        print(
            f"  window reads alone: {reads['with']:.0f} us per sample with checksums, "
            f"{reads['without']:.0f} us without: {reads['with'] / reads['without'] - 1:+.1%}"
        )
        print(f"store layout v2 / v1: {default.rates[0] / v1.rates[0]:.2f}x per worker, "
              f"{default.rates[1] / v1.rates[1]:.2f}x through the DataLoader (target >= 1)")  # fmt: skip
        print(f"default layout {STORE_LAYOUT}: (a)/(b) = {default.rates[0] / base[0]:.0f}x per "
              f"worker, {default.rates[1] / base[1]:.0f}x through the DataLoader "
              f"(target 100x); ceiling (c)/(b) = {contenders[1].rates[1] / base[1]:.0f}x "
              "through the DataLoader")  # fmt: skip
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
