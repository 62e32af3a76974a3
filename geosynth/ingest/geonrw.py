"""Import the published GeoNRW dataset (IEEE DataPort / torchgeo release) into a store.

The release holds one folder per city with ``<E>_<N>_rgb.jp2``,
``<E>_<N>_dem.tif``, ``<E>_<N>_seg.tif`` and, in the SAR edition,
``<E>_<N>_sar.tif``. :func:`import_geonrw` copies them into the store
contract of :mod:`geosynth.store`:

- the split comes from the city (``regions`` of the catalog: duesseldorf,
  herne and neuss are test); a city the catalog does not know is reported
  and left out unless ``assign`` gives its split;
- rgb and seg pixels are copied bit-exactly; a DEM of an integer type (the
  100 x 100 samples carry uint8) is cast to float32 metres unchanged and the
  cast is recorded in the tile's ``sources``;
- georeferencing, in order of precedence:
  1. the files' own CRS and geotransform (rgb, then dem, then seg);
  2. the name ``<E>_<N>`` read as the tile's south-west corner in km of the
     catalog grid, when that lies inside the grid CRS's area of use
     (logged as a warning and noted in the tile's ``sources``);
  3. none: the tile is stored without a transform (``geosynth info`` lists it);
- ``sar.tif`` holds amplitudes: normalised with the catalog rule
  (``normalisation.geonrw_sar``), valid where finite and not no-data; tiles
  below the catalog's minimum valid fraction get no SAR, as in a build;
- a tile with a missing member, an unreadable file, or members of different
  shapes is excluded with the reason; the rest imports. Tile ids are the
  names ``<E>_<N>``; names that occur in several cities (the samples' ``0_0``)
  become ``<city>_<E>_<N>``.

The tiles run through the ingest runner (:func:`geosynth.ingest.run.run_ingest`):
resumable, locally in processes or on a dask scheduler, with a report.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from geosynth.catalog import Catalog, GridSpec, SarNorm, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import TileId, tile_bounds
from geosynth.ingest import run
from geosynth.ingest.download import catalog_hosts, fetch, safe_extract
from geosynth.ingest.rasters import RasterInfo, check_labels, common_shape, probe_all, read_raster
from geosynth.io import removing_new_empty_folders
from geosynth.names import SPLITS
from geosynth.sources.filenames import (
    GEONRW_FILE,
    GEONRW_MEMBERS,
    GEONRW_SAR_MEMBER,
    GEONRW_TILE_STEM,
)
from geosynth.sources.sar import normalise
from geosynth.store import TileData, TilePlan, create_store, modality
from geosynth.store.lock import locks_store

log = logging.getLogger(__name__)

DATASET = "geonrw"
MEMBERS = GEONRW_MEMBERS
SAR_MEMBER = GEONRW_SAR_MEMBER


# --------------------------------------------------------------------------- discovery


@dataclass
class Triplet:
    """The files of one published tile (rgb, dem, seg and optionally sar) in one city folder."""

    city: str
    stem: str
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class GeoNRWSources:
    root: Path
    triplets: list[Triplet]
    unknown_cities: dict[str, int]  # folder -> tiles, for cities without a split


def city_splits(
    folders: list[str], catalog: Catalog, assign: Mapping[str, str]
) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Folder -> (region name, split), and folder -> why it has none.

    Precedence: 1. ``assign`` (folder or region name -> split); 2. the catalog
    city of that name or alias; 3. none (reported).
    """
    known = {r.name: r for r in catalog.cities()}
    for region in catalog.cities():
        for alias in region.aliases:
            known.setdefault(alias, region)
    assign = {k.strip().lower(): v for k, v in assign.items()}
    out, unknown = {}, {}
    for folder in folders:
        key = folder.strip().lower()
        region = known.get(key)
        name = region.name if region else key
        split = assign.get(key) or assign.get(name)
        if split is None and region is not None:
            split = region.split
        if split is None:
            unknown[folder] = "city not in the catalog; give its split with --assign CITY=SPLIT"
        else:
            out[folder] = (name, split)
    return out, unknown


def discover_geonrw(root: str | os.PathLike, with_sar: bool = False) -> GeoNRWSources:
    """Find the tiles under ``root``: files ``<stem>_<kind>.<ext>`` grouped by folder and stem."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"GeoNRW folder {root} does not exist")
    kinds = (*MEMBERS, SAR_MEMBER) if with_sar else MEMBERS
    triplets: dict[tuple[str, str], Triplet] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(part.startswith(".") for part in rel) or not path.is_file():
            continue
        match = GEONRW_FILE.match(path.name)
        if not match or match["kind"].lower() not in kinds:
            continue
        city = path.parent.name if path.parent != root else root.name
        key = (city, match["stem"])
        triplet = triplets.setdefault(key, Triplet(city, match["stem"]))
        kind = match["kind"].lower()
        if kind in triplet.files:
            raise DataError(
                f"{path}: a second {kind} file for tile {match['stem']} of {city} "
                f"(first: {triplet.files[kind]})"
            )
        triplet.files[kind] = str(path)
    if not triplets:
        raise DataError(f"no GeoNRW files (<E>_<N>_rgb.jp2, _dem.tif, _seg.tif) under {root}")
    return GeoNRWSources(root, list(triplets.values()), {})


def tile_ids(triplets: list[Triplet]) -> dict[tuple[str, str], str]:
    """(city, stem) -> tile id: the stem, or ``<city>_<stem>`` where cities share a stem."""
    counts: dict[str, int] = {}
    for t in triplets:
        counts[t.stem] = counts.get(t.stem, 0) + 1
    return {
        (t.city, t.stem): t.stem if counts[t.stem] == 1 else f"{t.city}_{t.stem}" for t in triplets
    }


# --------------------------------------------------------------------------- georeferencing


@functools.lru_cache(maxsize=8)
def _area_of_use(crs: str) -> tuple[float, float, float, float]:
    from pyproj import CRS, Transformer

    area = CRS.from_user_input(crs).area_of_use
    if area is None:
        return (-np.inf, -np.inf, np.inf, np.inf)
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return to_crs.transform_bounds(*area.bounds)


def transform_from_name(stem: str, shape: tuple[int, int], grid: GridSpec) -> Affine | None:
    """The transform of a tile named ``<E>_<N>`` (south-west corner in km of the catalog grid),
    or None when the name is not that or the tile lies outside the grid CRS's area of use."""
    match = GEONRW_TILE_STEM.match(stem)
    if not match:
        return None
    left, bottom, _, _ = tile_bounds(TileId.from_match(match), grid)
    size = float(grid.tile_size_m)
    x0, y0, x1, y1 = _area_of_use(grid.crs)
    if not (x0 <= left and left + size <= x1 and y0 <= bottom and bottom + size <= y1):
        return None
    h, w = shape
    return Affine(size / w, 0.0, left, 0.0, -size / h, bottom + size)


@dataclass(frozen=True)
class Georef:
    transform: Affine | None
    crs: str
    source: str  # "file", "name" or "none"
    note: str


def resolve_georef(
    stem: str, infos: Mapping[str, RasterInfo], shape: tuple[int, int], grid: GridSpec
) -> Georef:
    """A tile's georeferencing by the precedence of the module docstring."""
    # 1. the files' own
    for kind in MEMBERS:
        info = infos.get(kind)
        if info is not None and info.transform is not None:
            if info.crs is None:
                return Georef(
                    info.affine,
                    grid.crs,
                    "file",
                    f"transform from {Path(info.path).name}, which has no CRS: "
                    f"{grid.crs} (the catalog grid's) assumed",
                )
            return Georef(info.affine, info.crs, "file", f"read from {Path(info.path).name}")
    # 2. the name in km
    transform = transform_from_name(stem, shape, grid)
    if transform is not None:
        return Georef(
            transform,
            grid.crs,
            "name",
            f"derived from the name {stem} (km of {grid.crs}): the files carry none",
        )
    # 3. none
    return Georef(
        None,
        "",
        "none",
        f"none: the files carry none and {stem!r} is not <E>_<N> in km inside {grid.crs}",
    )


# --------------------------------------------------------------------------- one tile


@dataclass(frozen=True)
class GeoNRWTask(run.TileTask):
    """One tile to import: its plan and what a worker needs to write it (picklable)."""

    files: tuple[tuple[str, str], ...]  # (kind, path)
    shape: tuple[int, int]
    georef: str  # how the georeferencing was found: "file", "name" or "none"
    georef_note: str
    sar_norm: SarNorm | None
    sar_note: str | None  # why the tile imports without SAR
    num_classes: int


def import_geonrw_tile(task: GeoNRWTask, record: run.Record) -> None:
    """Read one tile's files, convert them per the module docstring and write the tile."""

    files = dict(task.files)
    data = TileData(
        transform=task.plan.transform,
        crs=task.plan.crs,
        sources={"files": files, "georeferencing": task.georef_note},
    )
    for kind, path in files.items():
        values = read_raster(path)  # (C, H, W)
        if values.shape[1:] != task.shape:
            raise DataError(
                f"{path}: shape {values.shape[1:]} differs from the tile's {task.shape}"
            )
        if kind == "rgb":
            data.rgb = _rgb(values, path)
        elif kind == "dem":
            data.dem, note = _dem(values, path)
            if note:
                data.sources["dem"] = note
            if np.isnan(data.dem).any():
                record["skipped"]["dem"] = f"{path}: {int(np.isnan(data.dem).sum())} no-data pixels"
                data.dem = None
        elif kind == "seg":
            data.seg = check_labels(values[0], task.num_classes - 1, path)
        elif kind == SAR_MEMBER and task.sar_norm is not None:
            sar, valid, skipped = _sar(values, path, task.sar_norm)
            if skipped:
                record["skipped"]["sar"] = skipped
            else:
                data.sar, data.sar_valid = sar, valid
    if task.sar_note:
        record["skipped"]["sar"] = task.sar_note
    run.writable_store(task).write_tile(task.tile_id, data)


def _rgb(values: np.ndarray, path: str) -> np.ndarray:
    if values.dtype != np.uint8 or values.shape[0] < 3:
        raise DataError(
            f"{path}: expected 3 uint8 bands, got {values.shape[0]} {values.dtype} band(s)"
        )
    return values[:3]  # (3, H, W)


def _dem(values: np.ndarray, path: str) -> tuple[np.ndarray, str | None]:
    """(1, H, W) float32 metres; integer DEMs are cast unchanged (and the cast noted)."""
    dem = values[:1]
    if dem.dtype == np.float32:
        return dem, None
    if not (np.issubdtype(dem.dtype, np.integer) or np.issubdtype(dem.dtype, np.floating)):
        raise DataError(f"{path}: DEM of type {dem.dtype} is not numeric")
    return dem.astype(np.float32), f"{dem.dtype} cast to float32, values taken as metres"


def _sar(values: np.ndarray, path: str, norm: SarNorm):
    """Amplitudes (C, H, W) -> normalised (C, H, W) float32, valid (H, W), or a skip reason."""

    amplitude = values.astype(np.float64)
    valid = (np.isfinite(amplitude) & (amplitude != norm.nodata)).all(axis=0)  # (H, W)
    fraction = float(valid.mean())
    if fraction < norm.min_valid_fraction:
        return (
            None,
            None,
            (
                f"{path}: valid SAR fraction {fraction:.3f} is below the minimum "
                f"{norm.min_valid_fraction} (normalisation.geonrw_sar.min_valid_fraction)"
            ),
        )
    sar = np.where(valid, normalise(np.where(valid, amplitude, 1.0), norm), np.float32(0))
    return sar.astype(np.float32), valid, None


# --------------------------------------------------------------------------- the import


def _plan_notes(tasks: list[GeoNRWTask], unknown: Mapping[str, int], crs: str) -> list[str]:
    """The report's notes on left-out cities and georeferencing, logged as warnings."""
    notes = [
        f"city folder {city!r} ({n} tiles) is not in the catalog: left out; "
        f"give its split with --assign {city}=train|test"
        for city, n in sorted(unknown.items())
    ]
    derived = sum(1 for t in tasks if t.georef == "name")
    if derived:
        notes.append(
            f"{derived} tile(s) carry no georeferencing: transforms derived from their names "
            f"<E>_<N> in km of {crs}"
        )
    none = sum(1 for t in tasks if t.georef == "none")
    if none:
        notes.append(f"{none} tile(s) stored without georeferencing (see geosynth info)")
    for note in notes:
        log.warning("%s", note)
    return notes


def _check_triplet(t: Triplet, infos: Mapping[str, RasterInfo | str]) -> tuple[int, int] | str:
    """The shape of a complete, readable, consistent tile, or why it is none of these."""
    missing = [k for k in MEMBERS if k not in t.files]
    if missing:
        have = ", ".join(sorted(t.files)) or "nothing"
        return f"{t.city}/{t.stem}: missing {', '.join(missing)} (have {have})"
    members = {k: infos[t.files[k]] for k in MEMBERS}
    bad = [info for info in members.values() if isinstance(info, str)]
    if bad:
        return bad[0]
    shapes = {k: info.shape for k, info in members.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {h}x{w}" for k, (h, w) in sorted(shapes.items()))
        return f"{t.city}/{t.stem}: members of different shapes ({listed})"
    return shapes["rgb"]


def _sar_problem(info: RasterInfo | str, shape: tuple[int, int], channels: int) -> str | None:
    """Why a tile's SAR file cannot be imported with it (the tile imports without SAR)."""
    if isinstance(info, str):
        return info
    if info.shape != shape:
        return f"{info.path}: {info.shape[0]}x{info.shape[1]} px, the tile is {shape[0]}x{shape[1]}"
    if info.count != channels:
        return f"{info.path}: {info.count} band(s), the store's sar has {channels}"
    return None


def plan_geonrw(
    sources: GeoNRWSources,
    out: str | os.PathLike,
    catalog: Catalog,
    assign: Mapping[str, str],
    with_sar: bool,
    threads: int,
    progress: Callable[[int, int], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[list[GeoNRWTask], dict[str, str], tuple[int, int], int]:
    """The tiles to import as tasks, those excluded (tile -> reason), the tile shape, SAR bands."""
    folders = sorted({t.city for t in sources.triplets})
    splits, unknown = city_splits(folders, catalog, assign)
    ids = tile_ids(sources.triplets)
    excluded: dict[str, str] = {}
    for t in sources.triplets:
        if t.city in unknown:
            sources.unknown_cities[t.city] = sources.unknown_cities.get(t.city, 0) + 1
            excluded[ids[t.city, t.stem]] = f"{t.city}: {unknown[t.city]}"
    candidates = [t for t in sources.triplets if t.city in splits]
    infos = probe_all(
        [p for t in candidates for p in t.files.values()], threads=threads, progress=progress
    )
    shapes: dict[str, tuple[int, int]] = {}
    for t in candidates:
        checked = _check_triplet(t, infos)
        if isinstance(checked, str):
            excluded[ids[t.city, t.stem]] = checked
        else:
            shapes[ids[t.city, t.stem]] = checked
    if not shapes:
        raise DataError(
            f"no complete GeoNRW tile under {sources.root} "
            f"({len(excluded)} excluded, e.g. {next(iter(excluded.values()), '-')})"
        )
    tile_shape = common_shape(list(shapes.values()))
    sar_channels = _sar_channels(candidates, infos, sources.root) if with_sar else 1
    tasks = []
    for t in candidates:
        tid = ids[t.city, t.stem]
        if tid not in shapes:
            continue
        if shapes[tid] != tile_shape:
            h, w = shapes[tid]
            excluded[tid] = (
                f"{t.city}/{t.stem}: {h}x{w} px, the import's tiles are "
                f"{tile_shape[0]}x{tile_shape[1]}"
            )
            continue
        files = {k: t.files[k] for k in MEMBERS}
        sar_note = None
        if with_sar:
            sar = t.files.get(SAR_MEMBER)
            sar_note = "no _sar.tif for this tile"
            if sar is not None:
                sar_note = _sar_problem(infos[sar], tile_shape, sar_channels)
                if sar_note is None:
                    files[SAR_MEMBER] = sar
        georef = resolve_georef(
            t.stem, {k: infos[t.files[k]] for k in MEMBERS}, tile_shape, catalog.grid
        )
        region, split = splits[t.city]
        tasks.append(
            GeoNRWTask(
                store=str(out),
                storage_options=dict(storage_options or {}),
                plan=TilePlan(tid, region, split, georef.transform, georef.crs),
                files=tuple(sorted(files.items())),
                shape=tile_shape,
                georef=georef.source,
                georef_note=georef.note,
                sar_norm=catalog.sar if with_sar else None,
                sar_note=sar_note,
                num_classes=catalog.classes.num_classes,
            )
        )
    return tasks, excluded, tile_shape, sar_channels


def _sar_channels(candidates: list[Triplet], infos, root: Path) -> int:
    """The most frequent band count of the readable ``_sar.tif`` files."""
    counts = [
        info.count
        for t in candidates
        if "sar" in t.files and not isinstance(info := infos[t.files["sar"]], str)
    ]
    if not counts:
        raise DataError(f"--with-sar: no readable <E>_<N>_sar.tif under {root}")
    return max(set(counts), key=counts.count)


@locks_store("out")
def import_geonrw(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    with_sar: bool = False,
    assign: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    **runner,
) -> run.IngestReport:
    """Import (or resume importing) the published GeoNRW folder ``root`` into the store ``out``.

    ``runner``: how its tiles run (:class:`~geosynth.ingest.run.RunOptions`: workers or a
    scheduler, report path, progress callbacks, storage options).
    """
    options = run.RunOptions(**runner)
    storage_options = options.storage_options
    catalog = catalog or load_catalog()
    assign = dict(assign or {})
    for city, split in assign.items():
        if split not in SPLITS:
            raise UsageError(f"--assign {city}={split}: the split must be train or test")
    out = str(out)
    sources = discover_geonrw(root, with_sar)
    tasks, excluded, tile_shape, sar_channels = plan_geonrw(
        sources, out, catalog, assign, with_sar, threads=max(4, options.workers),
        storage_options=storage_options,
    )  # fmt: skip
    modalities = [*MEMBERS, SAR_MEMBER] if with_sar else list(MEMBERS)
    notes = _plan_notes(tasks, sources.unknown_cities, catalog.grid.crs)
    plans = [t.plan for t in tasks]
    run.open_or_create(
        out, plans, modalities,
        lambda: _create(
            out, plans, tile_shape, with_sar, sar_channels, catalog, root, assign, storage_options
        ),
        dataset=DATASET, catalog_sha256=catalog.sha256, verb="import",
        storage_options=storage_options,
    )  # fmt: skip
    report = run.IngestReport(
        region=DATASET,
        dataset=DATASET,
        store=out,
        source=str(root),
        tiles_planned=len(tasks),
        verb="imported",
        excluded=excluded,
        notes=notes,
    )
    return run.run_ingest(report, tasks, import_geonrw_tile, options)


def _create(out, plans, tile_shape, with_sar, sar_channels, catalog, root, assign, options):

    specs = [modality(m) for m in MEMBERS]
    if with_sar:
        bands = ("HH",) if sar_channels == 1 else ()
        specs.append(modality("sar", channels=sar_channels, bands=bands))
    create_store(
        out,
        plans,
        tile_shape=tile_shape,
        modalities=specs,
        dataset=DATASET,
        crs=catalog.grid.crs,
        classes=catalog.classes,
        normalisation={
            "sar": catalog.sar.to_attrs(),
            "rgb": "uint8 as published",
            "dem": "metres as published; integer DEMs cast to float32 unchanged",
        },
        provenance={
            "imported_from": "GeoNRW (published release)",
            "parameters": {"root": str(Path(root)), "with_sar": with_sar, "assign": assign},
        },
        storage_options=options,
    )


# --------------------------------------------------------------------------- download


def download_geonrw(
    dest: str | os.PathLike,
    catalog: Catalog | None = None,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
) -> Path:
    """Fetch the published archive (catalog ``published.geonrw``: URL and md5) into ``dest``
    and extract it there once; returns the extracted folder. A rerun reuses both."""

    catalog = catalog or load_catalog()
    published = catalog.published.get(DATASET)
    if published is None:
        raise UsageError("the catalog has no published.geonrw entry (url, filename, md5)")
    dest = Path(dest)
    archive = dest / published.filename
    with removing_new_empty_folders(dest):  # a failed download leaves no empty folder
        fetch(
            published.url,
            archive,
            allowed_hosts=catalog_hosts(catalog),
            md5=published.md5,
            retries=retries,
            backoff=backoff,
            progress=progress,
        )
    name = published.filename
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    folder = dest / name
    if not folder.exists():
        log.info("extracting %s", archive.name)
        safe_extract(archive, folder)
    return folder
