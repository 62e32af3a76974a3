"""Render a demo world into a folder: every provider file, the ground truth and ``world.json``."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from geosynth import __version__
from geosynth.catalog import Catalog, load_catalog
from geosynth.demo.dop import HOUR_UTC_NOTE, campaign_sun, render_dop, tile_grid
from geosynth.demo.layout import build_world
from geosynth.demo.lidar import SURFACE_RES_M, simulate_lidar
from geosynth.demo.render import crop_surface, render_surface, truth_landcover
from geosynth.demo.sar import (
    CAL_FACTOR,
    LOOKS,
    PIXEL_M,
    SAR_CRS,
    annotation_xml,
    render_scene,
    scene_specs,
)
from geosynth.demo.scene import FLIGHTS, World, WorldParams
from geosynth.demo.writers import (
    ATKIS_LAYERS,
    TRUTH_README,
    write_dop_metadata,
    write_index,
    write_jp2,
    write_landcover,
    write_laz,
    write_osm,
    write_sar_product,
    write_truth,
    write_zip,
)
from geosynth.grid import RasterGrid, TileId
from geosynth.sources.filenames import member_name, package_name
from geosynth.workers import exit_with_parent

log = logging.getLogger(__name__)

GENERATOR_VERSION = 8  # bump whenever the same parameters would give different files
MANIFEST = "world.json"


NOTE = (
    "Synthetic data made by geosynth demo-world for offline use and tests. "
    "It imitates the formats of NRW open data (DOP, 3D-Messdaten, ATKIS Basis-DLM), "
    "OpenStreetMap and TerraSAR-X EEC products; none of it is provider data."
)


def generate_into(
    root: Path,
    params: WorldParams,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> dict:
    """Write the world of ``params`` into the (empty) folder ``root``; returns the manifest.

    With ``workers`` > 1, tiles are rendered by that many spawned processes
    (each rebuilds the latent world) while this process writes the SAR scenes
    and the vectors; every tile's files depend on the seed only, so the bytes
    do not depend on ``workers``.
    """

    catalog = load_catalog()
    region = catalog.region("demo")
    tiles = params.tile_ids()
    workers = 1 if workers is None else max(1, int(workers))
    done = 0
    world = world_of(params)
    scenes = scene_specs(world)
    total = 1 + 3 * len(tiles) + len(scenes) + 2

    def step(what: str, count: int = 1) -> None:
        nonlocal done
        done += count
        log.debug("demo world: %s (%d/%d)", what, done, total)
        if progress is not None:
            progress(done, total)

    step("layout")
    staging = root / ".staging"
    staging.mkdir()
    (root / "truth").mkdir()
    (root / "truth" / "README.txt").write_text(TRUTH_README)
    if workers == 1:
        tile_records = []
        for tile in tiles:
            tile_records.append(_tile_job(root, staging, params, str(tile)))
            step(f"tile {tile}", 3)
        sar_records = _write_sar(root, world, scenes, step)
        vectors = _write_vectors(root, world, region, catalog, step)
    else:
        # spawn, not fork: a forked child inherits thread pools (lazrs, GDAL) it cannot use
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        )
        try:
            futures = [pool.submit(_tile_job, root, staging, params, str(t)) for t in tiles]
            sar_records = _write_sar(root, world, scenes, step)
            vectors = _write_vectors(root, world, region, catalog, step)
            by_tile = {}
            for future in as_completed(futures):
                record = future.result()
                by_tile[record["id"]] = record
                step(f"tile {record['id']}", 3)
            tile_records = [by_tile[str(t)] for t in tiles]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    assign_splits(tile_records, params, region)
    dop, lidar = _publish(root, staging, tile_records, params, region, catalog)
    shutil.rmtree(staging)
    manifest = {
        "generator": "geosynth demo-world",
        "generator_version": _generator_version(),
        "geosynth_version": __version__,
        "note": NOTE,
        "params": params.as_dict(),
        "region": {"name": region.name, "ags": region.ags, "package": region.package},
        "crs": catalog.grid.crs,
        "region_bounds": list(params.region_bounds),
        "domain_bounds": list(params.domain_bounds),
        "sun": _flight_suns(world),
        "dop": {
            **dop,
            "bands": ["red", "green", "blue", "nir"],
            "resolution_m": params.dop_resolution,
            "dtype": "uint8",
            "coding": "lossless",
        },
        "lidar": {
            **lidar,
            "density_per_m2": params.lidar_density,
            "las_version": "1.2",
            "point_format": 1,
            "classes": {"1": "unclassified", "2": "ground", "20": "non-ground"},
            "water": "no returns (absorbed)",
        },
        **vectors,
        "sar": sar_records,
        "tiles": tile_records,
        "truth": {"folder": "truth", "note": "ground truth of the demo world, not provider data"},
        "files": _file_table(root),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def server_folder(url: str) -> Path:
    """Where a catalog URL's folder lies in a world laid out as the provider's server (its
    path: ``produkte/geobasis/lusat/akt/dop/dop_jp2_f10`` for NRW's orthophotos)."""
    path = urlsplit(url).path.strip("/")
    return Path(path if url.endswith("/") else path.rsplit("/", 1)[0])


def _publish(
    root: Path, staging: Path, tile_records: list[dict], params: WorldParams, region, catalog
) -> tuple[dict, dict]:
    """Move the rendered tiles into the provider's folders, at the paths of the catalog's
    URLs: per-tile files with NRW's listings (``index.json``, ``index.xml``) and the
    orthophoto metadata, one tile listed in two years (``tiles``); or one zip per source
    (``packages``)."""
    out = {}
    for source in ("dop", "lidar"):
        lay = catalog.sources[source].layout(params.layout)
        folder = root / server_folder(lay.listing or lay.url)
        folder.mkdir(parents=True)
        members = [(r[f"{source}_member"], staging / r[f"{source}_member"]) for r in tile_records]
        if params.layout == "packages":
            package = write_zip(folder / package_name(source, region, catalog), members)
            out[source] = {"layout": params.layout, "package": _rel(root, package)}
            continue
        for name, path in members:
            shutil.move(path, folder / name)
        entry = {"layout": params.layout, "folder": _rel(root, folder)}
        if source == "dop":
            entry["two_years"] = _older_flight(folder, tile_records[0], catalog)
            records = [*tile_records, entry["two_years"]["record"]]
            meta = write_dop_metadata(folder / "dop_meta.zip", records, params.dop_resolution)
            entry["metadata"] = _rel(root, meta)
        dataset = {"dop": "dop_jp2_f10", "lidar": "3dm_kacheln"}[source]  # NRW's dataset names
        entry["listing"] = [_rel(root, p) for p in write_index(folder, dataset)]
        out[source] = entry
    return out["dop"], out["lidar"]


def _older_flight(folder: Path, record: dict, catalog: Catalog) -> dict:
    """A tile listed in two years, as NRW lists about 750 of its tiles: an earlier flight of
    the first tile (two years before, the same pixels) beside its current file."""
    year = record["year"] - 2
    name = member_name("dop", TileId.parse(record["id"]), year, catalog)
    shutil.copyfile(folder / record["dop_member"], folder / name)
    date = f"{year}{record['flight_date'][4:]}"
    older = {**record, "year": year, "dop_member": name, "flight_date": date,
             "flight_number": f"{year}-{record['flight_number'].split('-')[-1]}"}  # fmt: skip
    return {"tile": record["id"], "years": [year, record["year"]], "record": older}


def _generator_version() -> int:
    return GENERATOR_VERSION


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


_WORLDS: dict[WorldParams, World] = {}


def world_of(params: WorldParams) -> World:
    """The latent world of ``params``, built once per process."""
    if params not in _WORLDS:
        _WORLDS.clear()
        _WORLDS[params] = build_world(params)
    return _WORLDS[params]


def forget_worlds() -> None:
    """Drop the cached latent worlds of this process."""
    _WORLDS.clear()


def _tile_job(root: Path, staging: Path, params: WorldParams, tile_id: str) -> dict:
    """Render one tile (runs in a worker process)."""
    return _write_tile(root, staging, world_of(params), TileId.parse(tile_id), load_catalog())


def _write_tile(root: Path, staging: Path, world: World, tile: TileId, catalog: Catalog) -> dict:
    """Orthophoto, lidar and truth of one tile (files into ``staging`` and ``root/truth``)."""

    params = world.params
    res = params.dop_resolution
    campaign = world.campaign_of(tile)
    image, surface, margin = render_dop(world, tile, res)
    dop_member = member_name("dop", tile, campaign.year, catalog)
    write_jp2(staging / dop_member, image, tile_grid(tile, res))
    del image

    if abs(res - SURFACE_RES_M) < 1e-9:
        surface = crop_surface(surface, margin)
    else:
        surface = render_surface(world, tile_grid(tile, SURFACE_RES_M))
    cloud = simulate_lidar(world, tile, params.lidar_density, surface)
    del surface
    lidar_member = member_name("lidar", tile, None, catalog)  # NRW's names carry no year
    write_laz(staging / lidar_member, cloud, tile)
    points = len(cloud)
    del cloud

    grid = RasterGrid.for_tile(tile, catalog.grid)
    truth_surface = render_surface(world, grid)
    landcover = truth_landcover(world, grid, catalog)
    paths = write_truth(
        root / "truth", tile, landcover, truth_surface.dsm, truth_surface.terrain, grid
    )
    counts = np.bincount(landcover.ravel(), minlength=catalog.classes.num_classes)
    return {
        "id": str(tile),
        "class_counts": [int(c) for c in counts],  # for the split (choose_test_tiles)
        "year": campaign.year,
        "season": campaign.season,
        "leaf_on": campaign.leaf_on,
        "flight_date": campaign.date,
        "flight_number": campaign.flight,
        "sun": _sun_record(world, campaign),
        "dop_member": dop_member,
        "lidar_member": lidar_member,
        "lidar_points": points,
        "truth": {p.stem.split("_")[-1]: _rel(root, p) for p in paths},
    }


TEST_SHARE = 3 / 8  # the default world's: 3 test tiles of 8
EXHAUSTIVE = 20_000  # test sets tried one by one up to this many, else built greedily


def share_gap(counts: dict[str, np.ndarray], test: Sequence[str]) -> float:
    """The largest difference, over the labelled classes, between the test and the training
    tiles' class shares (0..1)."""
    test_counts = sum(counts[t] for t in test)[1:].astype(float)
    train_counts = sum(counts[t] for t in counts if t not in test)[1:].astype(float)
    return float(np.abs(test_counts / test_counts.sum() - train_counts / train_counts.sum()).max())


def choose_test_tiles(counts: dict[str, np.ndarray]) -> list[str]:
    """The test tiles of a world of any size: ``TEST_SHARE`` of its tiles (at least one, never
    all) whose class shares are closest to the other tiles' (the smallest largest gap; the
    rule the default world's test tiles were chosen by). One tile: no test split."""
    tiles = sorted(counts)
    if len(tiles) < 2:
        return []
    k = min(len(tiles) - 1, max(1, math.floor(len(tiles) * TEST_SHARE)))
    if math.comb(len(tiles), k) <= EXHAUSTIVE:
        return list(min(itertools.combinations(tiles, k), key=lambda t: (share_gap(counts, t), t)))
    chosen: list[str] = []
    for _ in range(k):  # greedy: the tile that keeps the gap smallest
        rest = [t for t in tiles if t not in chosen]
        chosen.append(min(rest, key=lambda t: (share_gap(counts, [*chosen, t]), t)))
    return sorted(chosen)


def assign_splits(records: list[dict], params: WorldParams, region) -> None:
    """Each tile record's ``split``: the catalog's test tiles for the catalog's own world
    (origin and size), else :func:`choose_test_tiles`."""
    default = tuple(params.origin) == tuple(region.origin_km or ()) and tuple(
        params.tiles
    ) == tuple(region.tiles or ())
    if default:
        test = {r["id"] for r in records if region.split_of(r["id"]) == "test"}
    else:
        test = set(choose_test_tiles({r["id"]: np.array(r["class_counts"]) for r in records}))
    for record in records:
        record["split"] = "test" if record["id"] in test else "train"


def _sun_record(world: World, campaign) -> dict:

    azimuth, elevation = campaign_sun(world, campaign)
    return {
        "azimuth_deg": round(azimuth, 4),
        "elevation_deg": round(elevation, 4),
        "hour_utc": campaign.hour_utc,
    }


def _flight_suns(world: World) -> dict:
    """The sun of every flight (each tile's record names its own)."""

    return {
        "model": HOUR_UTC_NOTE,
        "flights": [
            {"flight": c.flight, "date": c.date, "season": c.season, "leaf_on": c.leaf_on,
             **_sun_record(world, c)}
            for c in FLIGHTS
        ],
    }  # fmt: skip


def _write_sar(root: Path, world: World, scenes: list, step) -> dict:
    from shapely.geometry import box

    records = []
    (root / "sar").mkdir()
    for spec in scenes:
        image, grid = render_scene(world, spec)
        folder = write_sar_product(root / "sar", spec, image, grid, annotation_xml(spec, grid))
        del image
        coverage = {}
        for tile in world.params.tile_ids():
            left, bottom = tile.e_km * 1000.0, tile.n_km * 1000.0
            cell = box(left, bottom, left + 1000.0, bottom + 1000.0)
            coverage[str(tile)] = round(spec.footprint.intersection(cell).area / cell.area, 4)
        records.append(
            {
                "name": spec.name,
                "folder": _rel(root, folder),
                "image": _rel(root, folder / "IMAGEDATA" / spec.image_name),
                "annotation": _rel(root, folder / f"{spec.name}.xml"),
                "orbit": spec.orbit,
                "heading_deg": spec.heading_deg,
                "incidence_deg": spec.incidence_deg,
                "look_azimuth_deg": spec.look_azimuth,
                **spec.geometry(),
                "footprint_wkt": spec.footprint.wkt,
                "coverage": coverage,
            }
        )
        step(f"sar {spec.name}")
    return {
        "crs": SAR_CRS,
        "pixel_m": PIXEL_M,
        "cal_factor": CAL_FACTOR,
        "looks": LOOKS,  # of the simulated speckle (what `geosynth sar-stats --world` checks)
        "polarisation": "HH",
        "nodata": 0,
        "scenes": records,
    }


def _write_vectors(root: Path, world: World, region, catalog: Catalog, step) -> dict:
    url = catalog.sources["landcover"].url
    folder = root / server_folder(url)
    folder.mkdir(parents=True)
    package = write_landcover(folder / Path(urlsplit(url).path).name, world)
    write_index(folder, "basis-dlm")
    step("land-cover vectors")
    osm = root / "osm" / f"demo_{region.ags}.osm"
    osm.parent.mkdir()
    write_osm(osm, world)
    step("OpenStreetMap")
    types = sorted({f.objart_txt for f in world.atkis})
    mapped = set(catalog.atkis.types) | set(catalog.atkis.by_attribute)
    return {
        "landcover": {
            "path": _rel(root, package),
            "layers": [
                layer
                for layer, kinds in ATKIS_LAYERS.items()
                if any(f.objart_txt in kinds for f in world.atkis)
            ],  # fmt: skip
            "type_field": catalog.atkis.type_field,
            "object_types": types,
            "unmapped_types": [t for t in types if t not in mapped],
        },
        "osm": {
            "path": _rel(root, osm),
            "buildings": sum(b.in_osm for b in world.buildings),
            "buildings_not_in_osm": sum(not b.in_osm for b in world.buildings),
            "highways": sorted({r.highway for r in world.roads}),
            "railway_tracks": len(world.railways),
        },
    }


def _file_table(root: Path) -> dict:
    table = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = _rel(root, path)
        if rel == MANIFEST:
            continue
        table[rel] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return table


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (the manifest's ``sha256``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
