"""Build a region's raw provider files into a GeoNRW store, tile by tile, in parallel.

The flow of :func:`build_region`:

1. resolve the sources: ``--source-dir`` (or, for a generated region such as ``demo``,
   its folder in geosynth's cache, named by the catalog); zip packages are extracted once, safely,
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geosynth.catalog import Catalog, Region, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import TILE_IN_NAME, RasterGrid, TileId, tile_transform
from geosynth.ingest import run
from geosynth.ingest.download import safe_extract
from geosynth.io import cache_dir
from geosynth.names import BUILD_MODALITIES
from geosynth.sources.filenames import parse_member
from geosynth.sources.nrw import read_flight_dates, region_tiles
from geosynth.sources.osm.pbf import ensure_osm_cut
from geosynth.store import TileData, TilePlan, create_store, modality
from geosynth.store.lock import locks_store

log = logging.getLogger(__name__)

DATASET = "geonrw"
SAR_PRODUCT = re.compile(r"^(TSX1|TDX1|TSX|TDX)\w*_SAR__EEC", re.IGNORECASE)
OSM_TILE = re.compile(rf"(?:^|_){TILE_IN_NAME}\.osm(?:\.bz2|\.xml)?$", re.IGNORECASE)
VECTOR_SUFFIXES = (".gpkg", ".shp")
PBF_SUFFIXES = (".osm.pbf", ".pbf")
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
    pbf: list[str] = field(default_factory=list)
    dop_metadata: list[str] = field(default_factory=list)  # NRW's dop_nw.csv
    years: dict[str, int] = field(default_factory=dict)  # tile -> orthophoto year in its name
    ignored: list[str] = field(default_factory=list)
    gaps: dict[str, list[str]] = field(default_factory=dict)  # source -> tiles the download lacked


def extract_packages(root: Path) -> list[Path]:
    """Extract every ``*.zip`` under ``root`` beside itself once (safely); returns new folders."""

    new = []
    for archive in sorted(root.rglob("*.zip")):
        folder = archive.with_suffix("")
        if not folder.exists():
            log.info("extracting %s", archive.name)
            safe_extract(archive, folder)
            new.append(folder)
    return new


def discover_sources(
    roots: str | os.PathLike | Sequence[str | os.PathLike], catalog: Catalog
) -> RegionSources:
    """Find the provider files under ``roots`` (one folder or several: a download and the
    SAR scenes a user brings, say) by the catalog's names."""
    roots = [Path(roots)] if isinstance(roots, str | os.PathLike) else [Path(r) for r in roots]
    for root in roots:
        if not root.is_dir():
            raise DataError(f"source folder {root} does not exist")
    found = RegionSources(roots[0])
    dop_years: dict[str, list[tuple[int, str]]] = {}
    paths = []
    for root in roots:
        extract_packages(root)
        for source, tiles in _download_gaps(root).items():
            found.gaps.setdefault(source, []).extend(tiles)
        paths += [(root, p) for p in sorted(root.rglob("*"))]
    for root, path in paths:
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # temporary extraction folders and hidden files
        name = path.name
        if path.is_dir():
            if SAR_PRODUCT.match(name):
                found.sar.append(str(path))
            continue
        lower = name.lower()
        if dop := parse_member(name, "dop", catalog):
            dop_years.setdefault(dop.tile_id, []).append((dop.year or 0, str(path)))
        elif lidar := parse_member(name, "lidar", catalog):
            found.lidar.setdefault(lidar.tile_id, []).append(str(path))
        elif lower == "dop_nw.csv":
            found.dop_metadata.append(str(path))
        elif lower.endswith(PBF_SUFFIXES):
            found.pbf.append(str(path))
        elif lower.endswith(VECTOR_SUFFIXES):
            found.vectors.append(str(path))
        elif lower.endswith(OSM_SUFFIXES):
            # an extract named for one tile (..._<E>_<N>.osm) serves that tile only
            if match := OSM_TILE.search(name):
                found.osm_by_tile.setdefault(str(TileId.from_match(match)), []).append(str(path))
            else:
                found.osm.append(str(path))
        elif lower.endswith((".jp2", ".laz", ".las")):
            found.ignored.append(str(path))
    for tile, files in dop_years.items():  # the newest flight first: it wins where they overlap
        files.sort(key=lambda f: (-f[0], f[1]))
        found.dop[tile] = [path for _, path in files]
        if files[0][0]:
            found.years[tile] = files[0][0]
    if found.ignored:
        log.warning(
            "%d file(s) do not follow the catalog's names and are ignored, e.g. %s",
            len(found.ignored),
            found.ignored[0],
        )
    return found


def _download_gaps(root: Path) -> dict[str, list[str]]:
    """Source -> the tiles ``geosynth download --allow-missing`` found no file for
    (``root/manifest.json``'s plan; empty without one)."""
    import json

    from geosynth.ingest.download import MANIFEST

    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        plan = json.loads(path.read_text(encoding="utf-8")).get("plan") or {}
    except (OSError, ValueError, AttributeError):
        log.warning("%s is not readable: the download's gaps are not reported", path)
        return {}
    return {str(k): [str(t) for t in v] for k, v in (plan.get("missing") or {}).items()}


def flight_dates(sources: RegionSources) -> dict[str, dict]:
    """Tile -> the orthophoto's acquisition: the flight date and number from NRW's metadata
    where given (``dop_nw.csv``), else the year in the file name."""

    records: dict[str, dict] = {}
    for tile, year in sources.years.items():
        records[tile] = {"year": year, "date": None, "source": "file name"}
    for path in sources.dop_metadata:
        for tile, row in read_flight_dates(path).items():
            if tile in sources.dop:
                date = row["date"]
                year = int(date[:4]) if date else records.get(tile, {}).get("year")
                records[tile] = {**row, "year": year, "source": Path(path).name}
    return records


# --------------------------------------------------------------------------- one tile


@dataclass(frozen=True)
class BuildTask(run.TileTask):
    """Everything a worker needs to build one tile (picklable for processes and dask)."""

    modalities: tuple[str, ...]
    dop: tuple[str, ...]
    lidar: tuple[str, ...]
    vectors: tuple[str, ...]
    osm: tuple[str, ...]
    sar: tuple[str, ...]
    catalog_path: str
    rgb_acquisition: Mapping[str, Any] | None = None
    lidar_default_crs: str | None = None  # the user's CRS for lidar without a readable one
    lidar_crs: str | None = None  # the user's override of every lidar header
    dem_radius: float | None = None  # the authors' PDAL gridding instead of per-cell means
    drop_classes: tuple[int, ...] | None = None  # lidar classes kept out of the DEM
    keep_classes: tuple[int, ...] | None = None  # or the only lidar classes let in
    decode_level: int | str = 0  # the orthophotos' reduced resolution read (0: full)
    gaps: Mapping[str, str] | None = None  # modality -> why its source files are missing


def build_tile(task: BuildTask, record: run.Record) -> None:
    """Run the stages for one tile and write it to the store (the runner's ``work``).

    Fills ``record["skipped"]`` (modality -> reason) and ``record["stages"]``
    (modality -> seconds); data errors raise and fail the tile.
    """

    record["stages"] = {}
    catalog = load_catalog(task.catalog_path)
    grid = RasterGrid.for_tile(task.tile_id, catalog.grid)
    data = TileData(transform=grid.transform, crs=grid.crs, sources={}, acquisition={})
    for name in task.modalities:
        t0 = time.perf_counter()
        result = _run_stage(name, task, grid, catalog)
        record["stages"][name] = round(time.perf_counter() - t0, 3)
        if result is None or result.skipped:
            missing = (task.gaps or {}).get(name, "no source files")
            record["skipped"][name] = result.skipped if result is not None else missing
            continue
        if name == "sar":
            data.sar, data.sar_valid = result.array, result.valid
            data.acquisition["sar"] = [_scene_acquisition(s) for s in result.report["scenes"]]
            record["sar_scenes"] = [s.get("product") for s in result.report["scenes"]]
        else:
            setattr(data, name, result.array)
        data.sources[name] = result.report.get("sources", [])
    if data.rgb is not None and task.rgb_acquisition:
        data.acquisition["rgb"] = dict(task.rgb_acquisition)
    run.writable_store(task).write_tile(task.tile_id, data)


def _scene_acquisition(scene: dict) -> dict:
    keys = (
        "product", "start", "stop", "orbit", "look", "incidence_deg", "heading_deg", "listed",
        "valid_pixels", "used_pixels",
    )  # fmt: skip
    return {k: scene[k] for k in keys if k in scene}


def _run_stage(name: str, task: BuildTask, grid, catalog: Catalog):
    if name == "rgb":
        from geosynth.sources.aerial import aerial_stage

        if not task.dop:
            raise DataError(f"tile {task.tile_id}: no orthophoto")
        return aerial_stage(task.dop, grid, decode_level=task.decode_level)
    if name == "dem":
        from geosynth.sources.lidar import dem_stage

        if not task.lidar:
            return None
        # GeoNRW DEMs have no holes: fill every one (rivers and lakes return no points),
        # not only those within the stage's default distance
        return dem_stage(
            task.lidar,
            grid,
            default_crs=task.lidar_default_crs or catalog.grid.crs,
            crs_for_unreadable=task.lidar_default_crs,  # refused unless the user gave one
            crs=task.lidar_crs,
            radius=task.dem_radius,
            drop_classes=task.drop_classes,
            keep_classes=task.keep_classes,
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


def resolve_source_dir(
    region: Region, source_dir: str | os.PathLike | Sequence[str | os.PathLike] | None
) -> list[Path]:
    """The folders with the region's raw files: ``source_dir`` (one or several), or for a
    generated region its folder in geosynth's cache (``sources_folder`` in the catalog),
    which must exist."""
    if isinstance(source_dir, str | os.PathLike):
        source_dir = [source_dir]
    if source_dir:
        paths = [Path(s) for s in source_dir]
        for path in paths:
            if not path.is_dir():
                raise DataError(f"source folder {path} does not exist")
        return paths
    if region.generated:
        path = cache_dir() / region.sources_folder
        if not path.is_dir():
            raise DataError(
                f"region {region.name!r} is generated locally and {path} does not exist: "
                f"`{region.prepared_by} --out {path}` writes it"
            )
        return [path]
    raise UsageError(
        f"region {region.name!r} needs --source-dir (run `geosynth download --region {region.name}` "
        "first)"
    )


def plan_tiles(
    sources: RegionSources,
    tiles: Sequence[str] | None,
    *,
    region: Region | None = None,
    catalog: Catalog | None = None,
    bbox: Sequence[float] | None = None,
    tiles_from: str | os.PathLike | None = None,
    boundary: str | os.PathLike | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The tiles to build and the chosen tiles left out (tile -> why).

    Without a choice: every tile with an orthophoto. ``tiles``: exactly those (each needs
    its orthophoto). ``bbox``, ``tiles_from`` (the published GeoNRW's tiles of the city)
    or ``boundary`` (a polygon file): the chosen tiles that have an orthophoto; the others
    are returned as left out (:func:`geosynth.sources.nrw.region_tiles`).
    """
    available = sorted(sources.dop)
    if tiles:
        tiles = [str(t) for t in tiles]
        missing = [t for t in tiles if t not in sources.dop]
        if missing:
            raise UsageError(
                f"no orthophoto for tile(s) {', '.join(missing)} under {sources.root}; "
                f"available: {', '.join(available[:10])}"
            )
        return sorted(tiles), {}
    if not (bbox or tiles_from or boundary):
        return available, {}

    assert region is not None and catalog is not None
    chosen, how = region_tiles(region, catalog, bbox=bbox, tiles_from=tiles_from, boundary=boundary)
    planned = [t for t in chosen if t in sources.dop]
    left_out = {t: f"chosen by {how} but no orthophoto under {sources.root}"
                for t in chosen if t not in sources.dop}  # fmt: skip
    if not planned:
        raise DataError(
            f"none of the {len(chosen)} tile(s) chosen by {how} has an orthophoto under "
            f"{sources.root} (e.g. {chosen[0] if chosen else '-'}); available: "
            f"{', '.join(available[:10])}"
        )
    return planned, left_out


def cut_osm_extracts(sources: RegionSources, tiles: Sequence[str], catalog: Catalog) -> Path:
    """Cut the region's ``.osm.pbf`` extracts (a whole state, as Geofabrik publishes it) for
    ``tiles`` in one streaming pass, into ``<source>/.geosynth/osm-<n>-tiles.osmcut.gpkg``;
    a rerun reuses a current cut (:func:`geosynth.sources.osm.pbf.ensure_osm_cut`)."""

    grids = {t: RasterGrid.for_tile(t, catalog.grid) for t in tiles}
    out = sources.root / ".geosynth" / "osm.osmcut.gpkg"
    out.parent.mkdir(exist_ok=True)
    log.info("cutting OSM from %s for %d tile(s)", ", ".join(map(str, sources.pbf)), len(tiles))
    t0 = time.perf_counter()
    path = ensure_osm_cut(sources.pbf, grids, None, catalog.osm, out)
    log.info("OSM cut ready in %.1f s: %s", time.perf_counter() - t0, path)
    return path


def source_notes(
    sources: RegionSources, planned: Sequence[str], catalog: Catalog, generated: bool = False
) -> list[str]:
    """Report lines about the sources: SAR scenes and the tiles they cover (listed in the
    catalog or not; for a generated region, whose scenes the authors' list cannot hold, only
    a scene that covers no tile), OSM files the build does not use."""

    notes = []
    what = {"dop": "orthophoto", "lidar": "point cloud"}
    for source, tiles in sources.gaps.items():
        built = sorted(set(tiles) & set(planned))
        if built:
            notes.append(
                f"the download found no {what.get(source, source)} for {len(built)} tile(s) "
                f"(--allow-missing, manifest.json): {', '.join(built[:10])}"
            )
    if sources.sar:
        from geosynth.sources.sar import coverage_lines, scene_coverage

        grids = {t: RasterGrid.for_tile(t, catalog.grid) for t in planned}
        coverage = scene_coverage(sources.sar, grids, catalog)
        if generated:
            coverage = [c for c in coverage if not c["tiles"]]
        notes += coverage_lines(coverage)
    unused = sorted(
        path for tile, paths in sources.osm_by_tile.items() if tile not in planned for path in paths
    )
    if unused:
        notes.append(
            f"{len(unused)} OSM file(s) named for tiles outside the build are not used, "
            f"e.g. {unused[0]}"
        )
    return notes


def plan_tasks(
    store_path,
    sources: RegionSources,
    tiles: Sequence[str],
    modalities: Sequence[str],
    catalog: Catalog,
    region: Region,
    storage_options: Mapping[str, Any] | None = None,
    lidar: Mapping[str, Any] | None = None,
    osm_cut: str | os.PathLike | None = None,
    test_tiles: Sequence[str] | None = None,
) -> list[BuildTask]:
    """One task per tile, on the catalog grid. ``osm_cut``: the features of the ``.osm.pbf``
    extracts cut for these tiles (:func:`cut_osm_extracts`), read by every tile. Real
    regions without OSM files query Overpass (osmnx caches answers). ``test_tiles``: the
    tiles of split ``test`` (the others take the region's split), instead of the catalog's."""

    def split_of(tile: str) -> str:
        if test_tiles is None:
            return region.split_of(tile)
        return "test" if tile in test_tiles else region.split

    fallback = () if region.generated else ("overpass",)
    shared = ([str(osm_cut)] if osm_cut else []) + sources.osm
    flights = flight_dates(sources)
    return [
        BuildTask(
            store=str(store_path),
            plan=TilePlan(
                t,
                region=region.name,
                split=split_of(t),
                transform=tile_transform(TileId.parse(t), catalog.grid),
            ),
            modalities=tuple(modalities),
            dop=tuple(sources.dop.get(t, ())),
            lidar=tuple(sources.lidar.get(t, ())),
            vectors=tuple(sources.vectors),
            osm=tuple(shared + sources.osm_by_tile.get(t, [])) or fallback,
            sar=tuple(sources.sar),
            catalog_path=str(catalog.path),
            storage_options=dict(storage_options or {}),
            rgb_acquisition=flights.get(t),
            gaps={"dem": "no point cloud: the download found none for this tile (manifest.json)"}
            if t in sources.gaps.get("lidar", ())
            else None,
            **dict(lidar or {}),
        )
        for t in tiles
    ]


def create_region_store(
    out,
    plans: Sequence,
    modalities: Sequence[str],
    catalog: Catalog,
    parameters: dict,
    storage_options: Mapping[str, Any] | None = None,
):
    """Create the store of a region build, sized for ``plans``."""

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


@locks_store("out")
def build_region(
    region_name: str,
    out: str | os.PathLike,
    *,
    source_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    tiles: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    tiles_from: str | os.PathLike | None = None,
    boundary: str | os.PathLike | None = None,
    modalities: Sequence[str] | None = None,
    catalog: Catalog | None = None,
    lidar_default_crs: str | None = None,
    lidar_crs: str | None = None,
    dem_radius: float | None = None,
    drop_classes: Sequence[int] | None = None,
    keep_classes: Sequence[int] | None = None,
    decode_level: int | str = 0,
    test_tiles: Sequence[str] | None = None,
    **runner,
) -> run.IngestReport:
    """Build (or resume building) a region into the store ``out`` (a path or URL); see the
    module docstring. ``runner``: how its tiles run (:class:`~geosynth.ingest.run.RunOptions`:
    workers or a scheduler, report path, progress callbacks, storage options).

    ``bbox``, ``tiles_from`` and ``boundary`` choose tiles as :func:`plan_tiles` says.
    ``lidar_default_crs`` is the CRS of lidar files without a readable one (files without
    any take the grid's CRS anyway; those whose GeoTIFF keys do not read are refused
    without it), ``lidar_crs`` overrides every header, ``drop_classes``/``keep_classes``
    choose the point classes of the DEM (default: the catalog's noise classes kept out),
    ``dem_radius`` grids the DEM as the
    authors' PDAL code did (:func:`geosynth.sources.lidar.dem_stage`). ``test_tiles``: the
    tiles of split ``test`` instead of the catalog's (a demo world of another size prints
    its own); a build whose test split is empty says so in its notes.
    """
    options = run.RunOptions(**runner)
    storage_options = options.storage_options
    catalog = catalog or load_catalog()
    region = catalog.region(region_name)
    wanted = list(modalities or BUILD_MODALITIES)
    unknown = [m for m in wanted if m not in BUILD_MODALITIES]
    if unknown:
        raise UsageError(
            f"unknown modality {', '.join(unknown)}; choose from {', '.join(BUILD_MODALITIES)}"
        )
    out = str(out)
    roots = resolve_source_dir(region, source_dir)
    root = ", ".join(map(str, roots))
    sources = discover_sources(roots, catalog)
    if not sources.dop:
        raise DataError(
            f"no orthophotos named like {catalog.sources['dop'].member_pattern} under {root}"
        )
    planned, left_out = plan_tiles(
        sources, tiles, region=region, catalog=catalog, bbox=bbox, tiles_from=tiles_from,
        boundary=boundary,
    )  # fmt: skip
    if "sar" in wanted and modalities is None and not sources.sar:
        log.info("no SAR products under %s: building without sar", root)
        wanted.remove("sar")
    for option, value in (("--default-crs", lidar_default_crs), ("--crs", lidar_crs)):
        if value is not None:
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                CRS.from_user_input(value)
            except CRSError as exc:
                raise UsageError(f"{option} {value!r} is not a CRS: {exc}") from exc
    lidar = {"lidar_default_crs": lidar_default_crs, "lidar_crs": lidar_crs,
             "dem_radius": dem_radius,
             "drop_classes": None if drop_classes is None else tuple(drop_classes),
             "keep_classes": None if keep_classes is None else tuple(keep_classes),
             "decode_level": decode_level}  # fmt: skip
    parameters = {
        "region": region.name,
        **({"test_tiles": sorted(test_tiles)} if test_tiles is not None else {}),
        "source_dir": str(root),
        "source_dirs": [str(r) for r in roots],
        "modalities": wanted,
        "tiles": planned,
        **{k: v for k, v in lidar.items() if v is not None},
    }
    cut = cut_osm_extracts(sources, planned, catalog) if "seg" in wanted and sources.pbf else None
    if test_tiles is not None:
        foreign = sorted(set(test_tiles) - set(planned))
        if foreign:
            raise UsageError(
                f"--test-tiles {', '.join(foreign)}: not among the tiles built "
                f"({', '.join(planned[:6])}{', ...' if len(planned) > 6 else ''})"
            )
    tasks = plan_tasks(
        out, sources, planned, wanted, catalog, region, storage_options, lidar, osm_cut=cut,
        test_tiles=test_tiles,
    )  # fmt: skip
    plans = [t.plan for t in tasks]
    splits = {p.split for p in plans}
    run.open_or_create(
        out, plans, wanted,
        lambda: create_region_store(out, plans, wanted, catalog, parameters, storage_options),
        dataset=DATASET, catalog_sha256=catalog.sha256, verb="build",
        storage_options=storage_options,
    )  # fmt: skip
    report = run.IngestReport(
        region=region.name,
        dataset=DATASET,
        store=out,
        source=str(root),
        tiles_planned=len(planned),
        verb="built",
        excluded=left_out,
        notes=source_notes(sources, planned, catalog, region.generated)
        + split_notes(splits, planned),
    )
    return run.run_ingest(report, tasks, build_tile, options)


def split_notes(splits: set[str], planned: Sequence[str]) -> list[str]:
    """A line when a split the training and evaluation read is empty, and how to fill it."""
    if "test" in splits or len(planned) < 2:
        return []
    return [
        f"split 'test' is empty: none of the {len(planned)} tiles is a test tile of the "
        "region (train-unet validates and evaluate scores on 'test'); choose some with "
        f"--test-tiles, e.g. --test-tiles {planned[-1]} (demo-world prints its own)"
    ]
