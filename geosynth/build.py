"""Build a region's raw provider files into a GeoNRW store, tile by tile, in parallel.

The flow of :func:`build_region`:

1. resolve the sources: ``--source-dir`` (or, for the ``demo`` region, the
   generated demo world in the cache); zip packages are extracted once, safely,
   beside themselves (``pkg.zip`` -> ``pkg/``), as ``geosynth download`` does;
2. discover files by the catalog's names: orthophotos and lidar per tile,
   land-cover vectors, OSM files and SAR product folders for all tiles;
3. plan the tiles (those with orthophotos, optionally restricted by
   ``tiles``) and size the store once, or reopen an existing store after
   checking that it was planned by the same catalog;
4. run :func:`build_tile` for every tile that is not complete yet: in this
   process (``workers=1``), in a local process pool, or on a
   dask.distributed scheduler. Each tile writes its own chunks and its
   completion mark last, so a build killed at any moment finishes on rerun;
5. write a JSON report (done, skipped modalities with the reason, failed
   tiles with the error) atomically beside the store.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geosynth.catalog import Catalog, Region, load_catalog
from geosynth.errors import DataError, GeosynthError, StoreError, UsageError
from geosynth.sources.names import pattern_regex

log = logging.getLogger(__name__)

MODALITIES = ("rgb", "dem", "seg", "sar")
SAR_PRODUCT = re.compile(r"^(TSX1|TDX1|TSX|TDX)\w*_SAR__EEC", re.IGNORECASE)
OSM_TILE = re.compile(r"(?:^|_)(?P<e>\d{3,4})_(?P<n>\d{4})\.osm(?:\.bz2|\.xml)?$", re.IGNORECASE)
VECTOR_SUFFIXES = (".gpkg", ".shp")
OSM_SUFFIXES = (".osm", ".osm.bz2", ".osm.xml")


def default_cache_dir() -> Path:
    """``$GEOSYNTH_CACHE`` or ``~/.cache/geosynth``: where the demo world is generated."""
    return Path(os.environ.get("GEOSYNTH_CACHE", Path.home() / ".cache" / "geosynth"))


@dataclass
class RegionSources:
    """The raw files of a region, by tile where the provider tiles them."""

    root: Path
    dop: dict[str, list[str]] = field(default_factory=dict)
    lidar: dict[str, list[str]] = field(default_factory=dict)
    vectors: list[str] = field(default_factory=list)
    osm: list[str] = field(default_factory=list)
    osm_by_tile: dict[str, list[str]] = field(default_factory=dict)
    sar: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def extract_packages(root: Path) -> list[Path]:
    """Extract every ``*.zip`` under ``root`` beside itself once (safely); returns new folders."""
    from geosynth.download import safe_extract

    new = []
    for archive in sorted(root.rglob("*.zip")):
        folder = archive.with_suffix("")
        if not folder.exists():
            log.info("extracting %s", archive.name)
            safe_extract(archive, folder)
            new.append(folder)
    return new


def discover_sources(root: str | os.PathLike, catalog: Catalog) -> RegionSources:
    """Find the provider files under ``root`` by the catalog's names."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"source folder {root} does not exist")
    extract_packages(root)
    dop_re = pattern_regex(catalog.sources["dop"].member_pattern or "")
    las_pattern = catalog.sources["lidar"].member_pattern or ""
    las_res = [pattern_regex(las_pattern), pattern_regex(las_pattern.replace(".laz", ".las"))]
    found = RegionSources(root)
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # temporary extraction folders and hidden files
        name = path.name
        if path.is_dir():
            if SAR_PRODUCT.match(name):
                found.sar.append(str(path))
            continue
        lower = name.lower()
        if match := dop_re.match(name):
            found.dop.setdefault(f"{match['e']}_{match['n']}", []).append(str(path))
        elif match := next((m for r in las_res if (m := r.match(name))), None):
            found.lidar.setdefault(f"{match['e']}_{match['n']}", []).append(str(path))
        elif lower.endswith(VECTOR_SUFFIXES):
            found.vectors.append(str(path))
        elif lower.endswith(OSM_SUFFIXES):
            # an extract named for one tile (..._<E>_<N>.osm) serves that tile only
            if match := OSM_TILE.search(name):
                found.osm_by_tile.setdefault(f"{match['e']}_{match['n']}", []).append(str(path))
            else:
                found.osm.append(str(path))
        elif lower.endswith((".jp2", ".laz", ".las")):
            found.ignored.append(str(path))
    if found.ignored:
        log.warning(
            "%d file(s) do not follow the catalog's names and are ignored, e.g. %s",
            len(found.ignored),
            found.ignored[0],
        )
    return found


@dataclass(frozen=True)
class TileTask:
    """Everything a worker needs to build one tile (picklable for processes and dask)."""

    store: str
    tile_id: str
    modalities: tuple[str, ...]
    dop: tuple[str, ...]
    lidar: tuple[str, ...]
    vectors: tuple[str, ...]
    osm: tuple[str, ...]
    sar: tuple[str, ...]
    catalog_path: str


def build_tile(task: TileTask) -> dict[str, Any]:
    """Run the stages for one tile and write it to the store. Never raises for data errors.

    Returns a record: ``{"tile", "status": "done"|"failed", "skipped": {modality: reason},
    "error", "seconds", "stages": {...}}``.
    """
    from geosynth.grid import RasterGrid
    from geosynth.store import TileData, open_store

    started = time.perf_counter()
    record: dict[str, Any] = {"tile": task.tile_id, "status": "done", "skipped": {}, "stages": {}}
    try:
        catalog = load_catalog(task.catalog_path)
        grid = RasterGrid.for_tile(task.tile_id, catalog.grid)
        data = TileData(transform=grid.transform, crs=grid.crs, sources={})
        for name in task.modalities:
            t0 = time.perf_counter()
            result = _run_stage(name, task, grid, catalog)
            record["stages"][name] = round(time.perf_counter() - t0, 3)
            if result is None or result.skipped:
                reason = result.skipped if result is not None else "no source files"
                record["skipped"][name] = reason
                continue
            if name == "sar":
                data.sar, data.sar_valid = result.array, result.valid
            else:
                setattr(data, name, result.array)
            data.sources[name] = result.report.get("sources", [])
        store = open_store(task.store, mode="r+")
        store.write_tile(task.tile_id, data)
    except GeosynthError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug or an unexpected library error: report it, keep building
        log.exception("tile %s failed unexpectedly", task.tile_id)
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def _run_stage(name: str, task: TileTask, grid, catalog: Catalog):
    if name == "rgb":
        from geosynth.sources.aerial import aerial_stage

        if not task.dop:
            raise DataError(f"tile {task.tile_id}: no orthophoto")
        return aerial_stage(task.dop, grid)
    if name == "dem":
        from geosynth.sources.lidar import dem_stage

        if not task.lidar:
            return None
        # GeoNRW DEMs have no holes: fill every one (rivers and lakes return no points),
        # not only those within the stage's default distance
        return dem_stage(
            task.lidar,
            grid,
            default_crs=catalog.grid.crs,
            fill_distance=float(max(grid.width, grid.height)),
        )
    if name == "seg":
        from geosynth.sources.landcover import landcover_stage

        if not task.vectors and not task.osm:
            return None
        return landcover_stage(
            grid, vectors=task.vectors, osm=list(task.osm) or None, catalog=catalog
        )
    if name == "sar":
        from geosynth.sources.sar import sar_stage, select_scenes

        scenes = select_scenes(task.sar, grid)
        if not scenes:
            return _skipped(grid, "no SAR scene covers the tile")
        return sar_stage(scenes, grid, catalog=catalog)
    raise UsageError(f"unknown modality {name!r}; choose from {', '.join(MODALITIES)}")


def _skipped(grid, reason: str):
    from geosynth.sources import StageResult

    return StageResult(array=None, grid=grid, skipped=reason)


# --------------------------------------------------------------------------- the region


@dataclass
class BuildReport:
    region: str
    store: str
    tiles_planned: int
    done: list[str] = field(default_factory=list)
    already_complete: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0
    records: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        head = (
            f"{self.region}: {len(self.done)} tile(s) built, {len(self.already_complete)} already "
            f"complete, {len(self.failed)} failed, of {self.tiles_planned} planned "
            f"({self.seconds:.1f} s) -> {self.store}"
        )
        return "\n".join([head, *self.problem_lines()])

    def problem_lines(self) -> list[str]:
        """Skipped modalities (counted, with an example reason) and the first failures."""
        lines: list[str] = []
        by_modality: dict[str, int] = {}
        for reasons in self.skipped.values():
            for name in reasons:
                by_modality[name] = by_modality.get(name, 0) + 1
        for name, count in sorted(by_modality.items()):
            example = next(r[name] for r in self.skipped.values() if name in r)
            lines.append(f"  {name} skipped on {count} tile(s), e.g. {example}")
        for tile, error in list(self.failed.items())[:10]:
            lines.append(f"  FAILED {tile}: {error}")
        if len(self.failed) > 10:
            lines.append(f"  ... and {len(self.failed) - 10} more failures (see the report)")
        return lines


def resolve_source_dir(region: Region, source_dir: str | os.PathLike | None) -> Path:
    """The folder with the region's raw files; for a generated region, generate it when absent."""
    if source_dir is not None:
        path = Path(source_dir)
        if not path.is_dir():
            raise DataError(f"source folder {path} does not exist")
        return path
    if region.generated:
        from geosynth.demo import ensure_world

        cache = default_cache_dir() / "demo-world"
        kwargs = {}
        if region.origin_km:
            kwargs["origin"] = tuple(region.origin_km)
        if region.tiles:
            kwargs["tiles"] = tuple(region.tiles)
        ensure_world(cache, **kwargs)
        return cache
    raise UsageError(
        f"region {region.name!r} needs --source-dir (run `geosynth download --region {region.name}` "
        "first)"
    )


def plan_tasks(
    store_path: Path,
    sources: RegionSources,
    tiles: Sequence[str],
    modalities: Sequence[str],
    catalog: Catalog,
    region: Region,
) -> list[TileTask]:
    """One task per tile. Real regions without OSM files query Overpass (osmnx caches answers)."""
    fallback = () if region.generated else ("overpass",)
    return [
        TileTask(
            store=str(store_path),
            tile_id=t,
            modalities=tuple(modalities),
            dop=tuple(sources.dop.get(t, ())),
            lidar=tuple(sources.lidar.get(t, ())),
            vectors=tuple(sources.vectors),
            osm=tuple(sources.osm + sources.osm_by_tile.get(t, [])) or fallback,
            sar=tuple(sources.sar),
            catalog_path=str(catalog.path),
        )
        for t in tiles
    ]


def open_or_create_store(
    out: Path,
    region: Region,
    tiles: Sequence[str],
    modalities: Sequence[str],
    catalog: Catalog,
    parameters: dict,
):
    """Create the store sized for ``tiles``, or reopen it after checking it matches the catalog."""
    from geosynth.grid import TileId, tile_transform
    from geosynth.store import TilePlan, create_store, modality, open_store

    if out.exists():
        store = open_store(out, mode="r+")
        built_with = store.provenance.get("catalog_sha256")
        if built_with != catalog.sha256:
            raise StoreError(
                f"store {out} was built with another catalog version (sha256 {str(built_with)[:12]}, "
                f"this catalog {catalog.sha256[:12]}); build into a new store"
            )
        missing = sorted(set(tiles) - set(store.tile_ids))
        if missing:
            raise UsageError(
                f"store {out} was planned without tile(s) {', '.join(missing[:5])}; build them "
                "into a new store"
            )
        extra = [m for m in modalities if m not in store.modalities]
        if extra:
            raise UsageError(f"store {out} has no array for {', '.join(extra)}; use a new store")
        return store
    classes = [
        {"id": c.id, "key": c.key, "name": c.name, "color": c.color}
        for c in catalog.classes.classes
    ]
    plans = [
        TilePlan(
            t,
            region=region.name,
            split=region.split_of(t),
            transform=tile_transform(TileId.parse(t), catalog.grid),
            crs="",
        )
        for t in tiles
    ]
    specs = [
        modality(m, channels=1, bands=("HH",)) if m == "sar" else modality(m) for m in modalities
    ]
    sar = catalog.sar
    return create_store(
        out,
        plans,
        tile_shape=(catalog.grid.tile_pixels, catalog.grid.tile_pixels),
        modalities=specs,
        dataset="geonrw",
        crs=catalog.grid.crs,
        classes=classes,
        normalisation={
            "sar": {
                "rule": sar.rule,
                "db_factor": sar.db_factor,
                "divisor": sar.divisor,
                "clip": list(sar.clip),
                "min_valid_fraction": sar.min_valid_fraction,
            },
            "rgb": "uint8 as delivered",
            "dem": "metres above sea level",
        },
        provenance={"parameters": parameters},
    )


def build_region(
    region_name: str,
    out: str | os.PathLike,
    *,
    source_dir: str | os.PathLike | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    tiles: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    catalog: Catalog | None = None,
    report_path: str | os.PathLike | None = None,
    progress: Callable[[dict], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> BuildReport:
    """Build (or resume building) a region into the store ``out``; see the module docstring."""
    catalog = catalog or load_catalog()
    region = catalog.region(region_name)
    wanted = list(modalities or MODALITIES)
    unknown = [m for m in wanted if m not in MODALITIES]
    if unknown:
        raise UsageError(
            f"unknown modality {', '.join(unknown)}; choose from {', '.join(MODALITIES)}"
        )
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    out = Path(out)
    root = resolve_source_dir(region, source_dir)
    sources = discover_sources(root, catalog)
    if not sources.dop:
        raise DataError(
            f"no orthophotos named like {catalog.sources['dop'].member_pattern} under {root}"
        )
    available = sorted(sources.dop)
    if tiles:
        tiles = [str(t) for t in tiles]
        missing = [t for t in tiles if t not in sources.dop]
        if missing:
            raise UsageError(
                f"no orthophoto for tile(s) {', '.join(missing)} under {root}; "
                f"available: {', '.join(available[:10])}"
            )
        planned = sorted(tiles)
    else:
        planned = available
    if "sar" in wanted and modalities is None and not sources.sar:
        log.info("no SAR products under %s: building without sar", root)
        wanted.remove("sar")
    parameters = {
        "region": region.name,
        "source_dir": str(root),
        "modalities": wanted,
        "tiles": planned,
    }
    store = open_or_create_store(out, region, planned, wanted, catalog, parameters)
    complete = set(store.tile_ids[i] for i in store.tiles())
    todo = [t for t in planned if t not in complete]
    report = BuildReport(
        region=region.name,
        store=str(out),
        tiles_planned=len(planned),
        already_complete=sorted(set(planned) & complete),
    )
    if on_plan:
        on_plan(len(todo))
    tasks = plan_tasks(out, sources, todo, wanted, catalog, region)
    started = time.perf_counter()
    for record in _run(tasks, workers, scheduler):
        report.records.append(record)
        if record["status"] == "done":
            report.done.append(record["tile"])
        else:
            report.failed[record["tile"]] = record["error"]
        if record["skipped"]:
            report.skipped[record["tile"]] = record["skipped"]
        if progress:
            progress(record)
    report.seconds = round(time.perf_counter() - started, 2)
    report.done.sort()
    write_report(report, report_path or default_report_path(out))
    return report


def default_report_path(store: Path) -> Path:
    return store.with_name(store.name + ".report.json")


def write_report(report: BuildReport, path: str | os.PathLike) -> Path:
    from geosynth.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(asdict(report), indent=2, sort_keys=True))
    return Path(path)


def _run(tasks: list[TileTask], workers: int, scheduler: str | None):
    """Yield tile records as they finish: inline, in a process pool, or on dask.distributed."""
    yield from run_tasks(build_tile, tasks, workers, scheduler)


def run_tasks(
    func: Callable[[Any], dict],
    tasks: Sequence[Any],
    workers: int = 1,
    scheduler: str | None = None,
):
    """Yield ``func(task)`` for every task as they finish: inline (``workers=1``), in a
    spawned process pool, or on a dask.distributed scheduler.

    ``func`` must be a picklable top-level function that never raises for data
    errors; every task needs a ``tile_id`` (dask keys are named after it).
    Shared by the region build and the dataset importers.
    """
    if not tasks:
        return
    if scheduler:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed

        # a dask worker runs one task per thread: each task gets one thread per library
        run = functools.partial(_with_threads, func, 1)
        with Client(scheduler) as client:
            futures = client.map(
                run, tasks, pure=False, key=[f"geosynth-tile-{t.tile_id}" for t in tasks]
            )
            for future in dask_completed(futures):
                yield future.result()
        return
    if workers == 1:
        for task in tasks:
            yield func(task)
        return
    import multiprocessing

    # spawn, not fork: zarr's event loop and thread pool do not survive a fork
    # GDAL, lazrs and zarr use every core by default: share the cores out instead
    run = functools.partial(_with_threads, func, max(1, (os.cpu_count() or 1) // workers))
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = [pool.submit(run, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()


def _with_threads(func: Callable[[Any], dict], threads: int, task: Any) -> dict:
    """Run ``func(task)`` with this worker's libraries limited to ``threads`` threads each.

    GDAL (JPEG2000 decoding), lazrs (LAZ decompression, a rayon pool sized at
    first use) and zarr (chunk compression) would each use every core.
    """
    import zarr

    os.environ["GDAL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    zarr.config.set({"threading.max_workers": threads})
    return func(task)
