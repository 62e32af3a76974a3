"""Build a region's raw provider files into a GeoNRW store, tile by tile, in parallel.

The flow of :func:`build_region`:

1. resolve the sources: ``--source-dir`` (or, for the ``demo`` region, the
   generated demo world in the cache); zip packages are extracted once, safely,
   beside themselves (``pkg.zip`` -> ``pkg/``), as ``geosynth download`` does;
2. discover files by the catalog's names: orthophotos and lidar per tile,
   land-cover vectors, OSM files and SAR product folders for all tiles;
3. plan the tiles (those with orthophotos, optionally restricted by
   ``tiles``) and size the store once, or reopen an existing store after
   checking that it was planned by the same catalog
   (:func:`geosynth.store.open_for_resume`);
4. run :func:`build_tile` for every tile that is not complete yet through
   the ingest runner (:func:`geosynth.ingest.run.run_ingest`): in this
   process, in a local process pool, or on a dask.distributed scheduler;
   each tile writes its own chunks and its completion mark last;
5. the runner writes the JSON report (done, skipped modalities with the
   reason, failed tiles with the error) atomically beside the store, also
   when the build is interrupted.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geosynth.catalog import Catalog, Region, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.ingest.run import IngestReport, Progress, Record, TileTask, run_ingest, writable_store
from geosynth.names import BUILD_MODALITIES
from geosynth.sources.names import pattern_regex

log = logging.getLogger(__name__)

DATASET = "geonrw"
SAR_PRODUCT = re.compile(r"^(TSX1|TDX1|TSX|TDX)\w*_SAR__EEC", re.IGNORECASE)
OSM_TILE = re.compile(r"(?:^|_)(?P<e>\d{3,4})_(?P<n>\d{4})\.osm(?:\.bz2|\.xml)?$", re.IGNORECASE)
VECTOR_SUFFIXES = (".gpkg", ".shp")
OSM_SUFFIXES = (".osm", ".osm.bz2", ".osm.xml")


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


# --------------------------------------------------------------------------- one tile


@dataclass(frozen=True)
class BuildTask(TileTask):
    """Everything a worker needs to build one tile (picklable for processes and dask)."""

    modalities: tuple[str, ...]
    dop: tuple[str, ...]
    lidar: tuple[str, ...]
    vectors: tuple[str, ...]
    osm: tuple[str, ...]
    sar: tuple[str, ...]
    catalog_path: str


def build_tile(task: BuildTask, record: Record) -> None:
    """Run the stages for one tile and write it to the store (the runner's ``work``).

    Fills ``record["skipped"]`` (modality -> reason) and ``record["stages"]``
    (modality -> seconds); data errors raise and fail the tile.
    """
    from geosynth.grid import RasterGrid
    from geosynth.store import TileData

    record["stages"] = {}
    catalog = load_catalog(task.catalog_path)
    grid = RasterGrid.for_tile(task.tile_id, catalog.grid)
    data = TileData(transform=grid.transform, crs=grid.crs, sources={})
    for name in task.modalities:
        t0 = time.perf_counter()
        result = _run_stage(name, task, grid, catalog)
        record["stages"][name] = round(time.perf_counter() - t0, 3)
        if result is None or result.skipped:
            record["skipped"][name] = result.skipped if result is not None else "no source files"
            continue
        if name == "sar":
            data.sar, data.sar_valid = result.array, result.valid
        else:
            setattr(data, name, result.array)
        data.sources[name] = result.report.get("sources", [])
    writable_store(task).write_tile(task.tile_id, data)


def _run_stage(name: str, task: BuildTask, grid, catalog: Catalog):
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
        from geosynth.sources import StageResult
        from geosynth.sources.sar import sar_stage, select_scenes

        scenes = select_scenes(task.sar, grid)
        if not scenes:
            return StageResult(array=None, grid=grid, skipped="no SAR scene covers the tile")
        return sar_stage(scenes, grid, catalog=catalog)
    raise UsageError(f"unknown modality {name!r}; choose from {', '.join(BUILD_MODALITIES)}")


# --------------------------------------------------------------------------- the region


def resolve_source_dir(region: Region, source_dir: str | os.PathLike | None) -> Path:
    """The folder with the region's raw files; for a generated region, generate it when absent."""
    if source_dir is not None:
        path = Path(source_dir)
        if not path.is_dir():
            raise DataError(f"source folder {path} does not exist")
        return path
    if region.generated:
        from geosynth.demo import ensure_world
        from geosynth.io import cache_dir

        cache = cache_dir() / "demo-world"
        ensure_world(cache, tiles=region.tiles, origin=region.origin_km)
        return cache
    raise UsageError(
        f"region {region.name!r} needs --source-dir (run `geosynth download --region {region.name}` "
        "first)"
    )


def plan_tiles(sources: RegionSources, tiles: Sequence[str] | None) -> list[str]:
    """The tiles to build: those with orthophotos, or the requested ones (which need them)."""
    available = sorted(sources.dop)
    if not tiles:
        return available
    tiles = [str(t) for t in tiles]
    missing = [t for t in tiles if t not in sources.dop]
    if missing:
        raise UsageError(
            f"no orthophoto for tile(s) {', '.join(missing)} under {sources.root}; "
            f"available: {', '.join(available[:10])}"
        )
    return sorted(tiles)


def plan_tasks(
    store_path,
    sources: RegionSources,
    tiles: Sequence[str],
    modalities: Sequence[str],
    catalog: Catalog,
    region: Region,
    storage_options: Mapping[str, Any] | None = None,
) -> list[BuildTask]:
    """One task per tile, on the catalog grid. Real regions without OSM files query Overpass
    (osmnx caches answers)."""
    from geosynth.grid import TileId, tile_transform
    from geosynth.store import TilePlan

    fallback = () if region.generated else ("overpass",)
    return [
        BuildTask(
            store=str(store_path),
            plan=TilePlan(
                t,
                region=region.name,
                split=region.split_of(t),
                transform=tile_transform(TileId.parse(t), catalog.grid),
            ),
            modalities=tuple(modalities),
            dop=tuple(sources.dop.get(t, ())),
            lidar=tuple(sources.lidar.get(t, ())),
            vectors=tuple(sources.vectors),
            osm=tuple(sources.osm + sources.osm_by_tile.get(t, [])) or fallback,
            sar=tuple(sources.sar),
            catalog_path=str(catalog.path),
            storage_options=dict(storage_options or {}),
        )
        for t in tiles
    ]


def open_or_create_store(
    out,
    plans: Sequence,
    modalities: Sequence[str],
    catalog: Catalog,
    parameters: dict,
    storage_options: Mapping[str, Any] | None = None,
):
    """Create the store sized for ``plans``, or reopen it after checking it matches the catalog."""
    from geosynth.store import create_store, modality, open_for_resume
    from geosynth.store.location import locate

    if locate(out, storage_options).exists():
        return open_for_resume(
            out, plans, modalities, dataset=DATASET, catalog_sha256=catalog.sha256,
            storage_options=storage_options,
        )  # fmt: skip
    specs = [
        modality(m, channels=1, bands=("HH",)) if m == "sar" else modality(m) for m in modalities
    ]
    return create_store(
        out,
        plans,
        tile_shape=(catalog.grid.tile_pixels, catalog.grid.tile_pixels),
        modalities=specs,
        dataset=DATASET,
        crs=catalog.grid.crs,
        classes=catalog.classes,
        normalisation={
            "sar": catalog.sar.to_attrs(),
            "rgb": "uint8 as delivered",
            "dem": "metres above sea level",
        },
        provenance={"parameters": parameters},
        storage_options=storage_options,
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
    progress: Progress | None = None,
    on_plan: Callable[[int], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Build (or resume building) a region into the store ``out`` (a path or URL, with
    ``storage_options`` for object storage); see the module docstring."""
    catalog = catalog or load_catalog()
    region = catalog.region(region_name)
    wanted = list(modalities or BUILD_MODALITIES)
    unknown = [m for m in wanted if m not in BUILD_MODALITIES]
    if unknown:
        raise UsageError(
            f"unknown modality {', '.join(unknown)}; choose from {', '.join(BUILD_MODALITIES)}"
        )
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    out = str(out)
    root = resolve_source_dir(region, source_dir)
    sources = discover_sources(root, catalog)
    if not sources.dop:
        raise DataError(
            f"no orthophotos named like {catalog.sources['dop'].member_pattern} under {root}"
        )
    planned = plan_tiles(sources, tiles)
    if "sar" in wanted and modalities is None and not sources.sar:
        log.info("no SAR products under %s: building without sar", root)
        wanted.remove("sar")
    parameters = {
        "region": region.name,
        "source_dir": str(root),
        "modalities": wanted,
        "tiles": planned,
    }
    tasks = plan_tasks(out, sources, planned, wanted, catalog, region, storage_options)
    open_or_create_store(out, [t.plan for t in tasks], wanted, catalog, parameters, storage_options)
    report = IngestReport(
        region=region.name,
        dataset=DATASET,
        store=out,
        source=str(root),
        tiles_planned=len(planned),
        verb="built",
    )
    return run_ingest(
        report,
        tasks,
        build_tile,
        workers=workers,
        scheduler=scheduler,
        report_path=report_path,
        progress=progress,
        on_plan=on_plan,
        storage_options=storage_options,
    )
