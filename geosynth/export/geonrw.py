"""``geosynth export --layout geonrw``: a store as the published GeoNRW folder.

What torchgeo's ``GeoNRW`` dataset, the authors' loaders (gbaier/geonrw
``pytorch/nrw.py``, gbaier/rs_img_synth ``datasets/nrw.py``) and scripts written
against the release read::

    <out>/<city>/<E>_<N>_rgb.jp2     aerial image, JPEG2000
    <out>/<city>/<E>_<N>_dem.tif     heights, GeoTIFF
    <out>/<city>/<E>_<N>_seg.tif     land-cover class ids, GeoTIFF
    <out>/<city>/<E>_<N>_sar.tif     TerraSAR-X amplitude, GeoTIFF (tiles with SAR)
    <out>/DATASET.md, tiles.csv      the dataset card (:mod:`geosynth.export.card`)
    <out>/export.json                what was written, what a tile lacked

The facts, and where they come from:

- **Names**: ``<E>_<N>`` the tile's south-west corner in km of EPSG:25832, without
  the zone (``364_5633``; file names of the release as mm1129/Geo3DVQA lists
  them; torchgeo splits ``utm_coords`` off the name). The city folder is the
  first word of the city's package name, lower case, umlauts spelled out
  (gbaier/geonrw ``downsample_rgbs.py`` ``dop2cityname`` and ``util.deumlautify``:
  ``Bergisch_Gladbach`` -> ``bergisch``, ``Düsseldorf`` -> ``duesseldorf``): the
  catalog's region keys. A region outside the 43 gets its name the same way.
- **Split**: by city, as the release defines it (torchgeo ``GeoNRW.train_list``
  / ``test_list`` = gbaier/geonrw ``pytorch/nrw.py``: duesseldorf, herne and
  neuss test, 40 cities train; the catalog's ``regions``). The readers'
  city lists are fixed, so a city outside the 43 is written but read by none of
  them; the card lists its split. Every city folder of the release is created
  (empty where no tile lands), as torchgeo checks that all of a split's city
  folders exist before it reads any.
- **rgb.jp2**: GDAL's JP2OpenJPEG driver, as gbaier/geonrw ``downsample_rgbs.py``
  writes it (``gdal.Translate(..., format="JP2OpenJPEG")`` with the driver's
  defaults: lossy, ``QUALITY=25``, i.e. a quarter of the raw size, with GeoJP2 and
  GMLJP2 georeferencing); uint8, colour space sRGB (the enumerated colour space
  byte the authors' ``correct_ecs_byte`` sets to 0x10; GDAL writes it when the
  bands' colour interpretation is RGB, and PIL, which torchgeo and the authors'
  loaders read with, refuses the file without it). The release's files carry
  the four RGBI bands of the orthophotos (``gdal.Translate`` without a band
  list); a store keeps RGB only, so three bands: every reader above takes
  ``.convert("RGB")``. ``jp2_quality=None`` writes the reversible (lossless)
  5/3 wavelet instead.
- **dem.tif**: float32 metres, 1000 x 1000 at 1 m, georeferenced, no-data -9999,
  uncompressed strips (PDAL ``writers.gdal`` with ``data_type: float`` and GDAL's
  GTiff defaults, rewritten by rasterio with the same profile after the hole
  filling: gbaier/geonrw ``build_lidar_dem.py``). PIL opens it as mode ``F``:
  torchgeo's ``ToTensor`` then keeps metres (an integer DEM would be divided by 255).
- **seg.tif**: uint8 (``GDT_Byte``) class ids 0-10, georeferenced as the rgb,
  uncompressed, no no-data (gbaier/geonrw ``rasterize_landcover.py``).
- **sar.tif**: float32 amplitude, no-data 0 (missing data in EEC products); the
  store holds ``clip(20 log10(A) / 100, 0, 1)`` (catalog ``normalisation.geonrw_sar``,
  the authors' ``sar_norm``), written back as ``A = 10^(100 x / 20)``.
- **Georeferencing**: each tile's own CRS and transform; a tile stored without
  them (as the release's sample tiles) is written without them.

Writing goes to ``<out>.partial`` (each file atomically) and the folder is
renamed to ``<out>`` when every tile is done; an interrupted export resumes
there, keeping the files already written.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from affine import Affine

from geosynth.catalog import Catalog, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import TileId
from geosynth.io import atomic_path, write_text
from geosynth.names import LABELS
from geosynth.sources.filenames import GEONRW_TILE_STEM
from geosynth.store.read import GeoStore

log = logging.getLogger(__name__)

LAYOUT_CRS = "EPSG:25832"  # the CRS whose km the names <E>_<N> count
MODALITIES = ("rgb", "dem", "seg", "sar")
SUFFIX = {"rgb": "jp2", "dem": "tif", "seg": "tif", "sar": "tif"}
PUBLISHED_JP2_QUALITY = 25  # GDAL JP2OpenJPEG's default QUALITY, as the release was written
DEM_NODATA = -9999.0  # PDAL writers.gdal's default no-data
SAR_NODATA = 0.0  # amplitude 0: missing data in EEC products (catalog normalisation)
UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


@dataclass
class GeoNRWExport:
    """What an export wrote: files per tile, what a tile lacked, tiles left out (and why)."""

    out: Path
    files: list[str] = field(default_factory=list)
    tiles: dict[str, str] = field(default_factory=dict)  # tile -> city folder
    lacking: dict[str, list[str]] = field(default_factory=dict)  # tile -> modalities
    skipped: dict[str, str] = field(default_factory=dict)  # tile -> why

    def summary(self) -> str:
        cities = sorted(set(self.tiles.values()))
        lines = [
            f"{len(self.tiles)} tile(s) in {len(cities)} city folder(s) "
            f"({', '.join(cities[:6])}{', ...' if len(cities) > 6 else ''}), "
            f"{len(self.files)} file(s) -> {self.out} (GeoNRW layout)"
        ]
        lines += [f"  {t} lacks {', '.join(m)}" for t, m in self.lacking.items()]
        lines += [f"  skipped {t}: {why}" for t, why in self.skipped.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------- names


def city_folder(region: str, catalog: Catalog) -> str:
    """The release's folder of a region: the catalog's key for its 43 cities (the package
    name's first word, lower case, umlauts spelled out), the same rule for any other."""
    found = catalog.regions.get(region)
    if found is None:
        found = next((r for r in catalog.regions.values() if region in r.aliases), None)
    if found is not None and not found.generated:
        return found.name
    word = re.split(r"[\s_\-]+", region.strip())[0].lower().translate(UMLAUTS)
    word = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    if not re.fullmatch(r"[a-z0-9]+", word or ""):
        raise UsageError(f"region {region!r} gives no folder name of letters and digits")
    return word


def city_folders(regions: Sequence[str], catalog: Catalog) -> dict[str, str]:
    """Region -> folder for the store's regions; two regions on one folder are refused."""
    folders: dict[str, str] = {}
    owner: dict[str, str] = {}
    for region in dict.fromkeys(regions):
        folder = city_folder(region, catalog)
        if folder in owner and owner[folder] != region:
            raise UsageError(
                f"regions {owner[folder]!r} and {region!r} would share the city folder "
                f"{folder!r}; export them separately (--tiles)"
            )
        owner[folder], folders[region] = region, folder
    return folders


def georefs(store: GeoStore) -> list[tuple[Affine | None, str | None]]:
    """Every tile's ``(transform, crs)``, read from the tile index in two reads."""
    coeffs, crss = store.root_values("transform"), store.root_values("crs")
    return [
        (None if np.isnan(c).any() else Affine(*(float(v) for v in c)), str(k) or store.crs)
        for c, k in zip(coeffs, crss, strict=True)
    ]


def file_stem(tile: str, georef: tuple, city: str, height: int) -> str:
    """``<E>_<N>`` of a tile: its id (``<city>_`` of an import's duplicates dropped), or the
    south-west corner of its transform in EPSG:25832 km."""
    name = tile.removeprefix(f"{city}_")
    if GEONRW_TILE_STEM.match(name) or re.fullmatch(r"\d+_\d+", name):  # also the samples' 0_0
        return name
    transform, crs = georef
    if transform is None or not crs:
        raise DataError(
            f"tile {tile}: its id is not <E>_<N> and it has no CRS to name it by its corner "
            f"(the GeoNRW layout names tiles by their south-west corner in {LAYOUT_CRS} km)"
        )
    from pyproj import CRS

    if CRS.from_user_input(crs) != CRS.from_user_input(LAYOUT_CRS):
        raise DataError(
            f"tile {tile}: its id is not <E>_<N> and its CRS is {crs}, not {LAYOUT_CRS}, "
            "whose km the layout's names count"
        )
    west, south = transform * (0, height)
    e, n = west / 1000, south / 1000
    if abs(e - round(e)) > 1e-6 or abs(n - round(n)) > 1e-6:
        raise DataError(f"tile {tile}: its corner ({west}, {south}) is not on the 1 km grid")
    return str(TileId(round(e), round(n)))


# --------------------------------------------------------------------------- one tile


def _profile(job: TileJob, count: int, dtype: str) -> dict:
    from rasterio.crs import CRS

    h, w = job.shape
    profile = {"width": w, "height": h, "count": count, "dtype": dtype}
    if job.transform is not None and job.crs:
        profile.update(transform=Affine(*job.transform), crs=CRS.from_user_input(job.crs))
    return profile


def _write_rgb(path: Path, values: np.ndarray, profile: dict, quality: int | None) -> None:
    """A copy (GDAL's CreateCopy, as ``gdal.Translate``) of an in-memory RGB GeoTIFF: the
    JP2 then declares the sRGB colour space; no PAM sidecar."""
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    options = {"QUALITY": str(quality)} if quality else {"QUALITY": "100", "REVERSIBLE": "YES"}
    options["CODEC"] = "JP2"  # the container with its colour and GeoJP2 boxes, whatever the name
    with atomic_path(path) as tmp, rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with MemoryFile() as memory:
            with memory.open(driver="GTiff", photometric="RGB", **profile) as rgb:
                rgb.write(values)
            with memory.open() as rgb:
                rasterio.shutil.copy(rgb, tmp, driver="JP2OpenJPEG", **options)


def _write_tif(path: Path, values: np.ndarray, profile: dict, nodata=None) -> None:
    import rasterio

    with atomic_path(path) as tmp, rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="GTiff", nodata=nodata, **profile) as dst:
            dst.write(values)


def sar_amplitude(store: GeoStore, i: int) -> np.ndarray:
    """The stored normalised SAR back to amplitude (C, H, W) float32, 0 where invalid."""
    norm = load_catalog().sar
    x = store.read("sar", i).astype(np.float64)  # (C, H, W)
    valid = store.read("sar_valid", i).astype(bool)  # (H, W)
    amplitude = np.power(10.0, x * norm.divisor / norm.db_factor)
    return np.where(valid, amplitude, SAR_NODATA).astype(np.float32)


@dataclass(frozen=True)
class TileJob:
    store: str
    storage_options: dict
    index: int
    folder: str  # <partial>/<city>
    stem: str
    modalities: tuple[str, ...]  # to write (the tile has them)
    jp2_quality: int | None
    shape: tuple[int, int]
    transform: tuple[float, ...] | None
    crs: str | None


@functools.lru_cache(maxsize=4)
def _open(path: str, options: str) -> GeoStore:
    """The store, opened once per process (every tile job of an export names the same)."""
    from geosynth.store import open_store

    return open_store(path, storage_options=json.loads(options))


def export_tile(job: TileJob) -> list[str]:
    """Write one tile's files (those already there are kept: a resumed export)."""
    store = _open(job.store, json.dumps(job.storage_options, sort_keys=True))
    i, folder = job.index, Path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in job.modalities:
        path = folder / f"{job.stem}_{name}.{SUFFIX[name]}"
        files.append(str(path))
        if path.exists():
            continue
        if name == "rgb":
            values = store.read("rgb", i)  # (3, H, W) uint8
            _write_rgb(path, values, _profile(job, 3, "uint8"), job.jp2_quality)
        elif name == "dem":
            dem = store.read("dem", i).astype(np.float32)  # (1, H, W) metres
            dem = np.where(np.isfinite(dem), dem, np.float32(DEM_NODATA))
            _write_tif(path, dem, _profile(job, 1, "float32"), nodata=DEM_NODATA)
        elif name == LABELS:
            seg = store.read(LABELS, i).astype(np.uint8)[None]  # (1, H, W) class ids
            _write_tif(path, seg, _profile(job, 1, "uint8"))
        else:  # sar
            amplitude = sar_amplitude(store, i)  # (C, H, W)
            profile = _profile(job, amplitude.shape[0], "float32")
            _write_tif(path, amplitude, profile, nodata=SAR_NODATA)
    return files


# --------------------------------------------------------------------------- the export


def partial_folder(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def export_geonrw(
    store: GeoStore,
    out: str | os.PathLike,
    *,
    tiles: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    jp2_quality: int | None = PUBLISHED_JP2_QUALITY,
    workers: int = 1,
    storage_options: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GeoNRWExport:
    """Write ``store``'s complete tiles in the GeoNRW layout under ``out`` (module docstring).

    ``jp2_quality``: GDAL's ``QUALITY`` of the rgb.jp2 files (25, the release's), or None
    for lossless; ``workers``: processes, one tile each at a time.
    """
    from geosynth.export.card import write_card

    catalog = load_catalog()
    out = Path(out)
    if LABELS not in store.modalities:
        raise DataError(
            f"store {store.path} has no {LABELS} (land-cover labels): the GeoNRW layout is "
            "rgb, dem and seg per tile"
        )
    names = list(modalities or [m for m in MODALITIES if m in store.modalities])
    foreign = [m for m in names if m not in MODALITIES]
    if foreign:
        raise UsageError(
            f"--modalities: the GeoNRW layout has no place for {', '.join(foreign)} "
            f"(it holds {', '.join(MODALITIES)}); --layout stac exports every modality"
        )
    absent = [m for m in names if m not in store.modalities]
    if absent:
        raise UsageError(
            f"--modalities: store {store.path} has no {', '.join(absent)} "
            f"(has: {', '.join(store.modalities)})"
        )
    if jp2_quality is not None and not 1 <= jp2_quality <= 100:
        raise UsageError(f"--jp2-quality must be 1..100 or lossless, got {jp2_quality}")
    partial = partial_folder(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose another --out")
    indices = [store.index(t) for t in tiles] if tiles else list(range(len(store.tile_ids)))
    complete = set(store.tiles())
    result = GeoNRWExport(out)
    folders = city_folders([store.regions[i] for i in indices], catalog)
    where = georefs(store)
    present = {name: store.present(name) for name in names}
    jobs, taken = [], {}
    for i in indices:
        tile = store.tile_ids[i]
        if i not in complete:
            result.skipped[tile] = "not complete"
            continue
        city = folders[store.regions[i]]
        stem = file_stem(tile, where[i], city, store.tile_shape[0])
        if (city, stem) in taken:
            raise DataError(
                f"tiles {taken[city, stem]} and {tile} would both be {city}/{stem}_*; "
                "export them separately (--tiles)"
            )
        taken[city, stem] = tile
        result.tiles[tile] = city
        has = tuple(n for n in names if present[n][i])
        if len(has) < len(names):
            result.lacking[tile] = [n for n in names if n not in has]
        transform, crs = where[i]
        jobs.append(TileJob(
            str(store.path), dict(storage_options or {}), i, str(partial / city), stem, has,
            jp2_quality, store.tile_shape, None if transform is None else tuple(transform)[:6], crs,
        ))  # fmt: skip
    if not jobs:
        raise DataError(f"store {store.path}: no complete tile to export")
    partial.mkdir(parents=True, exist_ok=True)
    done = 0
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        results = pool.map(export_tile, jobs) if pool else map(export_tile, jobs)
        for files in results:
            result.files += [str(out / Path(f).relative_to(partial)) for f in files]
            done += 1
            if progress:
                progress(done, len(jobs))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    for region in catalog.cities():  # torchgeo checks that every city folder exists
        (partial / region.name).mkdir(exist_ok=True)
    report = {"layout": "geonrw", "jp2_quality": jp2_quality or "lossless", **asdict(result)}
    report["out"] = str(out)
    write_text(partial / "export.json", json.dumps(report, indent=1) + "\n")
    write_card(store, partial, layout="geonrw", tiles=result.tiles, catalog=catalog,
               options={"jp2_quality": jp2_quality or "lossless", "modalities": names})  # fmt: skip
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(partial, out)
    for tile, why in result.skipped.items():
        log.warning("export: tile %s left out: %s", tile, why)
    return result
