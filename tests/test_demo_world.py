"""The demo world: every file opens with the tools real data needs and holds what the world promises.

One small world (2 x 1 tiles, 1 m orthophotos, 1 pulse per m^2) is generated
once per module and read back with rasterio, laspy, geopandas and osmnx.
"""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.demo import (
    ensure_world,
    generate_world,
    read_manifest,
    read_tile_file,
    tile_file,
    world_params,
    world_problems,
)
from geosynth.demo.layout import build_world
from geosynth.demo.noise import grid_noise, point_noise
from geosynth.demo.render import cast_shadow
from geosynth.demo.scene import WorldParams
from geosynth.errors import UsageError
from geosynth.sources.filenames import package_name, parse_nrw_name, parse_tsx_name
from geosynth.sources.nrw import parse_listing, read_flight_dates

SMALL = {"tiles": (2, 1), "seed": 3, "dop_resolution": 1.0, "lidar_density": 1.0}
FLAT_CLASSES = ("water", "roads", "agricultural", "grassland")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "world"
    generate_world(out, **SMALL)
    return out


@pytest.fixture(scope="module")
def manifest(world_dir) -> dict:
    return read_manifest(world_dir)


@pytest.fixture(scope="module")
def world():
    return build_world(world_params(**SMALL))


@pytest.fixture(scope="module")
def truth(world_dir, manifest) -> dict:
    """Per tile: landcover, dsm, dtm arrays and the grid transform."""
    import rasterio

    out = {}
    for t in manifest["tiles"]:
        layers = {}
        for name, rel in t["truth"].items():
            with rasterio.open(world_dir / rel) as src:
                layers[name] = src.read(1)
                layers["transform"] = src.transform
                assert src.crs.to_epsg() == 25832
        out[t["id"]] = layers
    return out


@pytest.fixture(scope="module")
def clouds(world_dir, manifest) -> dict:
    import laspy

    return {
        t["id"]: laspy.read(io.BytesIO(read_tile_file(world_dir, manifest, t, "lidar")))
        for t in manifest["tiles"]
    }


def _class_id(key: str) -> int:
    return load_catalog().classes.id_of(key)


# --------------------------------------------------------------------------- manifest, layout


def test_manifest_lists_every_file_and_the_folder_is_complete(world_dir, manifest):
    files = {p.relative_to(world_dir).as_posix() for p in world_dir.rglob("*") if p.is_file()}
    assert files - {"world.json"} == set(manifest["files"])
    assert world_problems(world_dir, manifest, check_hashes=True) == []
    assert manifest["params"] == {
        "tiles": [2, 1],
        "origin": [356, 5645],
        "seed": 3,
        "dop_resolution": 1.0,
        "lidar_density": 1.0,
        "layout": "tiles",
    }
    assert [t["id"] for t in manifest["tiles"]] == ["356_5645", "357_5645"]
    assert not any(p.name.startswith(".") for p in world_dir.parent.iterdir())  # no temp folder


def test_default_world_holds_the_catalogs_test_tiles():
    region = load_catalog().region("demo")
    params = WorldParams(tiles=tuple(region.tiles), origin=tuple(region.origin_km))
    ids = [str(t) for t in params.tile_ids()]
    assert region.test_tiles and set(region.test_tiles) <= set(ids)
    assert {region.split_of(i) for i in ids} == {"train", "test"}


SHARE_TOLERANCE = 0.05  # per class, absolute: test and train shares within 5 percentage points


def test_default_worlds_test_split_is_representative():
    """The default world's test tiles hold each class in about the share the train tiles do
    (the truth land cover, as the build labels it), so the scorer is tested on what it learnt."""
    from geosynth.demo.render import truth_landcover
    from geosynth.grid import RasterGrid

    catalog = load_catalog()
    region = catalog.region("demo")
    params = WorldParams(tiles=tuple(region.tiles), origin=tuple(region.origin_km))
    world = build_world(params)
    counts = {split: np.zeros(catalog.classes.num_classes) for split in ("train", "test")}
    for tile in params.tile_ids():
        lc = truth_landcover(world, RasterGrid.for_tile(tile, catalog.grid), catalog)
        counts[region.split_of(str(tile))] += np.bincount(
            lc.ravel(), minlength=catalog.classes.num_classes
        )
    shares = {k: v[1:] / v[1:].sum() for k, v in counts.items()}
    diff = np.abs(shares["test"] - shares["train"])
    worst = int(diff.argmax()) + 1
    assert diff.max() <= SHARE_TOLERANCE, (catalog.classes.name_of(worst), diff.max())
    for key in (
        "urban",
        "buildings",
        "water",
        "forest",
        "roads",
        "railway",
        "highway",
    ):  # the town, the river, the railway and the motorway on both sides
        k = catalog.classes.id_of(key) - 1
        assert shares["test"][k] > 0.005 and shares["train"][k] > 0.005, key


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"tiles": (0, 2)}, "--tiles"),
        ({"dop_resolution": 0.3}, "--dop-resolution"),
        ({"lidar_density": 0.0}, "--lidar-density"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_parameters_name_the_option(tmp_path, kwargs, option):
    with pytest.raises(UsageError, match=option):
        generate_world(tmp_path / "w", **kwargs)
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- orthophotos


def test_orthophotos_are_georeferenced_rgbi_jpeg2000_named_as_nrw(world_dir, manifest):
    import rasterio

    # laid out as NRW's server: the catalog's folder, listed in index.json and index.xml
    listing_url = load_catalog().sources["dop"].layout("tiles").listing
    assert manifest["dop"]["layout"] == "tiles"
    assert listing_url.endswith(manifest["dop"]["folder"] + "/")
    folder = world_dir / manifest["dop"]["folder"]
    for index in ("index.json", "index.xml"):
        listed = parse_listing((folder / index).read_text(), listing_url).files
        files = {p.name for p in folder.iterdir()} - {"index.json", "index.xml"}
        assert {f.name for f in listed} == files
        assert all(f.size == (folder / f.name).stat().st_size for f in listed)
    # one tile is listed in two years, as about 750 of NRW's are
    twice = manifest["dop"]["two_years"]
    older = [f for f in files if twice["tile"] in f and str(twice["years"][0]) in f]
    assert len(older) == 1 and twice["years"][0] < twice["years"][1]
    flights = read_flight_dates(folder / "dop_meta.zip")
    years = set()
    for t in manifest["tiles"]:
        parsed = parse_nrw_name(t["dop_member"])
        assert (parsed["source"], parsed["tile_id"], parsed["year"]) == ("dop", t["id"], t["year"])
        assert flights[t["id"]]["date"] == t["flight_date"]
        assert flights[t["id"]]["name"] == t["dop_member"].removesuffix(".jp2")
        years.add(parsed["year"])
        with rasterio.open(tile_file(world_dir, manifest, t, "dop")) as src:
            assert src.driver == "JP2OpenJPEG"
            assert src.crs.to_epsg() == 25832
            assert (src.count, src.dtypes[0]) == (4, "uint8")
            assert src.res == (1.0, 1.0)  # from the file, whatever the name says
            e, n = (int(v) * 1000 for v in t["id"].split("_"))
            assert tuple(src.bounds) == pytest.approx((e, n, e + 1000, n + 1000))
            image = src.read(out_shape=(4, 100, 100))
        assert image[3].std() > 10  # NIR carries information
    assert len(years) == 2  # two flight campaigns: the build must read the year per tile


def test_shadows_fall_away_from_the_sun(world_dir, manifest, truth):
    """A shadow model built from the true heights predicts the dark pixels only with the true sun."""
    import rasterio

    contrast = []
    for t in manifest["tiles"]:
        sun = t["sun"]  # the sun of the tile's own flight
        layers = truth[t["id"]]
        dsm, ground = layers["dsm"], layers["dsm"] - layers["dtm"] < 0.2
        with rasterio.open(tile_file(world_dir, manifest, t, "dop")) as src:
            brightness = src.read([1, 2, 3]).astype(float).mean(axis=0)
        along = cast_shadow(dsm, 1.0, sun["azimuth_deg"], sun["elevation_deg"], 35.0)
        mirror = cast_shadow(dsm, 1.0, sun["azimuth_deg"] + 180, sun["elevation_deg"], 35.0)
        lit = brightness[ground & mirror & ~along].mean()
        dark = brightness[ground & along & ~mirror].mean()
        contrast.append(dark / lit)
    assert max(contrast) < 0.7


def test_flights_follow_their_date_sun_and_season(manifest):
    """Each tile's sun is the sun of its flight date and hour at the region (world.json), low
    and long-shadowed in March and October, high in June; seasons and leaves as stated."""
    import datetime as dt

    from geosynth.demo.dop import solar_position
    from geosynth.demo.scene import FLIGHTS

    flights = {f["flight"]: f for f in manifest["sun"]["flights"]}
    assert {f.flight for f in FLIGHTS} == set(flights)
    by_season = {f["season"]: f for f in flights.values()}
    assert by_season["leaf_off"]["leaf_on"] is False and by_season["summer"]["leaf_on"] is True
    assert by_season["summer"]["elevation_deg"] > by_season["spring"]["elevation_deg"]
    assert by_season["spring"]["elevation_deg"] > by_season["leaf_off"]["elevation_deg"] + 10
    assert by_season["autumn"]["elevation_deg"] < 35
    for f in flights.values():
        assert 130 < f["azimuth_deg"] < 180  # mid-morning: south-east of south
    for t in manifest["tiles"]:
        assert t["sun"] == {k: flights[t["flight_number"]][k] for k in t["sun"]}
        assert t["flight_date"] == flights[t["flight_number"]]["date"]
    # the formula against known values: 21 June, local solar noon at 51.5 N: 90 - 51.5 + 23.44
    az, el = solar_position(0.0, 51.5, dt.date(2023, 6, 21).timetuple().tm_yday, 12.0 + 1.7 / 60)
    assert el == pytest.approx(61.9, abs=0.3) and az == pytest.approx(180, abs=1.5)
    az, el = solar_position(0.0, 51.5, dt.date(2023, 12, 21).timetuple().tm_yday, 12.0)
    assert el == pytest.approx(15.1, abs=0.3)


def test_seasons_change_vegetation_colours():
    """Leaf-off crowns are grey-brown, summer crowns green; meadows lose NIR in March."""
    from geosynth.demo.dop import CROWN, GRASS_SEASON

    (deciduous_off, _), (deciduous_summer, _) = CROWN["leaf_off"], CROWN["summer"]
    assert deciduous_off[1] < deciduous_off[0] and deciduous_summer[1] > deciduous_summer[0]
    assert deciduous_off[3] < 0.7 * deciduous_summer[3]  # NIR: no leaves, no red edge
    assert GRASS_SEASON["leaf_off"][3] < GRASS_SEASON["spring"][3]


def test_cast_shadow_points_away_from_the_light():
    dsm = np.zeros((101, 101), dtype=np.float32)
    dsm[48:53, 48:53] = 10.0  # a 10 m tower in the middle
    azimuth, elevation = 150.0, 45.0
    shadow = cast_shadow(dsm, 1.0, azimuth, elevation, 10.0)
    rows, cols = np.nonzero(shadow)
    dx, dy = cols - 50.0, 50.0 - rows  # east, north
    sun = np.array([math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))])
    direction = np.array([dx.mean(), dy.mean()]) / math.hypot(dx.mean(), dy.mean())
    assert direction @ sun < -0.95  # away from the sun
    reach = np.hypot(dx, dy).max()
    assert 10.0 / math.tan(math.radians(elevation)) <= reach <= 10.0 + 2 * 2.5 + 2


# --------------------------------------------------------------------------- lidar


def test_lidar_is_las12_format1_with_crs_and_nrw_names(world_dir, manifest, clouds):
    folder = world_dir / manifest["lidar"]["folder"]
    assert (
        load_catalog().sources["lidar"].layout().listing.endswith(manifest["lidar"]["folder"] + "/")
    )
    assert (folder / "index.json").is_file() and (folder / "index.xml").is_file()
    for t in manifest["tiles"]:
        parsed = parse_nrw_name(t["lidar_member"])
        assert (parsed["source"], parsed["tile_id"]) == ("lidar", t["id"])
        assert t["lidar_member"] == f"3dm_32_{t['id']}_1_nw.laz"  # NRW's names: no year
        las = clouds[t["id"]]
        assert str(las.header.version) == "1.2" and las.header.point_format.id == 1
        assert las.header.parse_crs().to_epsg() == 25832
        assert len(las.points) == t["lidar_points"]
        z = np.asarray(las.z)
        assert z.min() >= 40.0 and z.max() <= 120.0 + 35.0  # above sea level
        assert set(np.unique(las.classification)) == {1, 2, 20}


def test_canopy_returns_first_on_the_crown_last_on_the_ground(clouds):
    for las in clouds.values():
        n = np.asarray(las.number_of_returns)
        r = np.asarray(las.return_number)
        z = np.asarray(las.z)
        assert (r >= 1).all() and (r <= n).all() and n.max() == 4
        first = np.flatnonzero((r == 1) & (n > 1))
        last = first + n[first] - 1  # the returns of one pulse are consecutive
        assert (np.asarray(las.gps_time)[first] == np.asarray(las.gps_time)[last]).all()
        assert (z[first] - z[last] > 1.0).mean() > 0.99
        assert (np.asarray(las.classification)[last] == 2).mean() > 0.98
        # single returns on roofs and open ground
        single = n == 1
        assert (np.asarray(las.classification)[single] == 20).sum() > 1000
        assert (np.asarray(las.classification)[single] == 2).sum() > 100_000


def test_no_returns_over_water(truth, clouds):
    for tile, las in clouds.items():
        layers = truth[tile]
        t = layers["transform"]
        col = ((np.asarray(las.x) - t.c) / t.a).astype(int)
        row = ((np.asarray(las.y) - t.f) / t.e).astype(int)
        counts = np.zeros(layers["landcover"].shape, dtype=np.int64)
        np.add.at(counts, (row.clip(0, 999), col.clip(0, 999)), 1)
        open_water = (layers["landcover"] == _class_id("water")) & (layers["dsm"] <= layers["dtm"])
        assert open_water.sum() > 1000  # water not under overhanging bank trees
        # the generalised water outline leaves a few returns along the banks
        assert counts[open_water].mean() < 0.1 * counts[~open_water].mean()


def test_osm_building_footprints_sit_on_raised_lidar(world_dir, manifest, truth, clouds):
    import osmnx as ox
    from rasterio.features import rasterize

    features = ox.features_from_xml(world_dir / manifest["osm"]["path"]).to_crs("EPSG:25832")
    buildings = features[features["building"].notna()].geometry.buffer(-0.75)
    for tile, las in clouds.items():
        layers = truth[tile]
        t = layers["transform"]
        shapes = [(g, i + 1) for i, g in enumerate(buildings) if not g.is_empty]
        ids = rasterize(shapes, out_shape=(1000, 1000), transform=t, dtype="int32")
        x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
        col = ((x - t.c) / t.a).astype(int).clip(0, 999)
        row = ((y - t.f) / t.e).astype(int).clip(0, 999)
        height = z - layers["dtm"][row, col]
        owner = ids[row, col]
        inside = owner > 0
        order = np.argsort(owner[inside], kind="stable")
        groups = np.split(height[inside][order], np.flatnonzero(np.diff(owner[inside][order])) + 1)
        medians = np.array([np.median(g) for g in groups if g.size >= 3])
        assert medians.size > 20
        assert (medians > 2.0).mean() > 0.97
        assert np.median(height[~inside & (np.asarray(las.classification) == 2)]) < 0.2


# --------------------------------------------------------------------------- land cover, OSM


def test_landcover_vectors_are_coarse_atkis_areas(world_dir, manifest):
    import geopandas as gpd
    import pyogrio

    catalog = load_catalog()
    path = world_dir / manifest["landcover"]["path"]
    frames = [gpd.read_file(path, layer=name) for name, _ in pyogrio.list_layers(path)]
    assert len(frames) >= 4
    assert all(f.crs.to_epsg() == 25832 for f in frames)
    frame = gpd.pd.concat(frames)
    types = set(frame["OBJART_TXT"])
    assert types >= {
        "AX_Wald",
        "AX_Fliessgewaesser",
        "AX_StehendesGewaesser",
        "AX_Landwirtschaft",
        "AX_Wohnbauflaeche",
        "AX_IndustrieUndGewerbeflaeche",
        "AX_Gehoelz",
        "AX_Bahnverkehr",
        "AX_Strassenverkehr",
        "AX_Platz",
    }
    mapped = set(catalog.atkis.types) | set(catalog.atkis.by_attribute)
    assert types - mapped == set(manifest["landcover"]["unmapped_types"]) and types - mapped
    veg = set(frame.loc[frame["OBJART_TXT"] == "AX_Landwirtschaft", "VEG"])
    rule = catalog.atkis.by_attribute["AX_Landwirtschaft"]
    assert {rule.values[v] for v in veg} == {"agricultural", "grassland"}
    woods = frame[frame["OBJART_TXT"].isin(["AX_Wald", "AX_Gehoelz"])]
    assert woods.area.min() > 500  # no single trees
    assert not {c.lower() for c in frame.columns} & {"height", "hoehe", "levels"}


def test_single_trees_and_hedges_are_not_in_the_land_cover(world, truth):
    forest = _class_id("forest")
    kinds = {"hedge", "field", "garden", "street"}
    from geosynth.demo.scene import TREE_KINDS

    selected = np.isin(world.trees.kind, [TREE_KINDS.index(k) for k in kinds])
    hits = []
    for layers in truth.values():
        t = layers["transform"]
        col = ((world.trees.x[selected] - t.c) / t.a).astype(int)
        row = ((world.trees.y[selected] - t.f) / t.e).astype(int)
        ok = (col >= 0) & (col < 1000) & (row >= 0) & (row < 1000)
        hits.append(layers["landcover"][row[ok], col[ok]])
        # ...but the surface has them
        assert (layers["dsm"] - layers["dtm"])[row[ok], col[ok]].mean() > 3.0
    hits = np.concatenate(hits)
    assert hits.size > 100 and (hits != forest).mean() > 0.97


def test_flat_classes_are_flat_in_the_surface(truth):
    """Water, roads, fields and meadows all lie on the terrain: the DEM alone cannot tell them apart."""
    for layers in truth.values():
        above = layers["dsm"] - layers["dtm"]
        for key in FLAT_CLASSES:
            pixels = layers["landcover"] == _class_id(key)
            if pixels.sum() < 500:
                continue
            assert np.median(above[pixels]) == 0.0
            assert (above[pixels] < 0.1).mean() > 0.85  # except where single trees stand
        buildings = layers["landcover"] == _class_id("buildings")
        if buildings.any():
            assert np.median(above[buildings]) > 4.0
        assert layers["dtm"].min() >= 40.0 and layers["dtm"].max() <= 120.0


def test_osm_reads_offline_with_buildings_relation_highways_railways(world_dir, manifest):
    import osmnx as ox

    features = ox.features_from_xml(world_dir / manifest["osm"]["path"])
    assert features.crs.to_epsg() == 4326
    kinds = features.index.get_level_values("element")
    buildings = features[features["building"].notna()]
    assert (buildings.geometry.geom_type == "Polygon").all() and len(buildings) > 100
    relation = buildings[buildings.index.get_level_values("element") == "relation"]
    assert len(relation) >= 1 and len(relation.geometry.iloc[0].interiors) == 1
    highways = features[features["highway"].notna()]
    assert (highways.geometry.geom_type == "LineString").all()
    assert {"motorway", "primary", "secondary", "residential", "track"} <= set(highways["highway"])
    rails = features[features["railway"] == "rail"]
    assert len(rails) >= 2 and "relation" in set(kinds)
    lon, lat = features.geometry.union_all().centroid.coords[0]
    assert 6.5 < lon < 7.5 and 50.5 < lat < 51.5  # Cologne area, where 356_5645 lies
    assert "height" not in features and "building:levels" not in features


# --------------------------------------------------------------------------- SAR


def test_sar_products_overlap_as_stated(world_dir, manifest):
    import rasterio
    from rasterio.warp import Resampling, reproject

    catalog = load_catalog()
    minimum = catalog.sar.min_valid_fraction
    scenes = manifest["sar"]["scenes"]
    assert 2 <= len(scenes) <= 3
    fractions = {t["id"]: [] for t in manifest["tiles"]}
    for scene in scenes:
        folder = world_dir / scene["folder"]
        info = parse_tsx_name(folder.name)
        assert info is not None and info["product"] == "EEC" and info["mission"] == "TSX1"
        cal = ET.parse(folder / f"{folder.name}.xml").getroot().find(".//calFactor")
        assert float(cal.text) > 0
        with rasterio.open(world_dir / scene["image"]) as src:
            assert src.crs.to_epsg() == 32632 and src.dtypes[0] == "uint16"
            assert src.nodata is None  # 0 means no data by convention, as in the real products
            offset = (356000.0 - src.transform.c) / src.transform.a
            assert abs(offset - round(offset)) > 0.1  # not aligned with the tiles
            valid = (src.read(1) > 0).astype(np.uint8)
            for t in manifest["tiles"]:
                e, n = (int(v) * 1000 for v in t["id"].split("_"))
                dst = np.zeros((100, 100), dtype=np.uint8)
                reproject(
                    valid,
                    dst,
                    src_transform=src.transform,
                    src_crs=src.crs,
                    dst_transform=Affine(10.0, 0.0, e, 0.0, -10.0, n + 1000),
                    dst_crs="EPSG:25832",
                    resampling=Resampling.nearest,
                )
                fractions[t["id"]].append(dst.mean())
                assert dst.mean() == pytest.approx(scene["coverage"][t["id"]], abs=0.03)
    two = [tile for tile, f in fractions.items() if sum(v >= minimum for v in f) >= 2]
    short = [tile for tile, f in fractions.items() if max(f) < minimum]
    assert two and short


def test_sar_shadow_and_layover_follow_the_stated_geometry(world_dir, manifest, truth):
    """Each scene is dark where world.json's look geometry puts radar shadow and bright where it
    puts layover, and not on the mirrored sides: ascending and descending scenes disagree."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    scenes = manifest["sar"]["scenes"]
    assert {s["orbit"] for s in scenes} == {"ASCENDING", "DESCENDING"}
    assert len({s["incidence_deg"] for s in scenes}) >= 2
    for scene in scenes:
        assert abs((scene["shadow_azimuth_deg"] - scene["layover_azimuth_deg"]) % 360 - 180) < 1e-6
        side = math.sin(math.radians(scene["shadow_azimuth_deg"]))  # east (+) or west (-)
        assert (side > 0) == (scene["orbit"] == "ASCENDING")  # right-looking: asc looks east
        shadow_el = math.degrees(math.atan(1 / scene["shadow_m_per_m"]))
        layover_el = math.degrees(math.atan(1 / scene["layover_m_per_m"]))
        assert shadow_el == pytest.approx(90 - scene["incidence_deg"], abs=0.01)
        ratios = []
        for t in manifest["tiles"]:
            if scene["coverage"][t["id"]] < 0.9:
                continue
            layers = truth[t["id"]]
            dsm, ground = layers["dsm"], layers["dsm"] - layers["dtm"] < 0.2
            e, n = (int(v) * 1000 for v in t["id"].split("_"))
            amp = np.zeros(dsm.shape, dtype=np.float32)
            with rasterio.open(world_dir / scene["image"]) as src:
                reproject(
                    src.read(1).astype(np.float32), amp, src_transform=src.transform,
                    src_crs=src.crs, dst_transform=Affine(1.0, 0.0, e, 0.0, -1.0, n + 1000),
                    dst_crs="EPSG:25832", resampling=Resampling.nearest,
                )  # fmt: skip
            power = amp.astype(float) ** 2
            az_sensor, az_away = scene["layover_azimuth_deg"], scene["shadow_azimuth_deg"]
            shadow = cast_shadow(dsm, 1.0, az_sensor, shadow_el, 35.0)
            mirror = cast_shadow(dsm, 1.0, az_away, shadow_el, 35.0)
            # layover of the buildings (trees scatter in their volume)
            buildings = layers["landcover"] == _class_id("buildings")
            built = np.where(buildings, dsm, layers["dtm"])
            layover = cast_shadow(built, 1.0, az_away, layover_el, 35.0)
            layover_mirror = cast_shadow(built, 1.0, az_sensor, layover_el, 35.0)
            only = ground & (amp > 0)
            ratios.append(
                (
                    power[only & shadow & ~mirror].mean() / power[only & mirror & ~shadow].mean(),
                    power[only & layover & ~layover_mirror & ~shadow].mean()
                    / power[only & layover_mirror & ~layover & ~mirror].mean(),
                )
            )
        assert ratios, scene["name"]
        assert max(r[0] for r in ratios) < 0.5  # shadow where stated, not on the other side
        assert min(r[1] for r in ratios) > 1.2  # layover where stated


def test_sar_backscatter_follows_the_classes(world_dir, manifest, truth):
    import rasterio
    from rasterio.warp import Resampling, reproject

    scene = manifest["sar"]["scenes"][0]
    tile = next(t for t, c in scene["coverage"].items() if c == 1.0)
    layers = truth[tile]
    with rasterio.open(world_dir / scene["image"]) as src:
        dn = np.zeros((1000, 1000), dtype=np.float32)
        reproject(
            rasterio.band(src, 1),
            dn,
            dst_transform=layers["transform"],
            dst_crs="EPSG:25832",
            resampling=Resampling.nearest,
        )
    seg = layers["landcover"]

    def median(key):
        return np.median(dn[seg == _class_id(key)])

    assert median("water") < 0.3 * median("agricultural")
    assert median("forest") > median("agricultural")


# --------------------------------------------------------------------------- determinism, caching


def test_same_seed_gives_the_same_bytes(tmp_path, world_dir, manifest):
    again = tmp_path / "again"
    generate_world(again, **SMALL)
    for rel in manifest["files"]:
        assert (again / rel).read_bytes() == (world_dir / rel).read_bytes(), rel
    assert (again / "world.json").read_bytes() == (world_dir / "world.json").read_bytes()


@pytest.mark.slow  # two spawned workers import everything and rebuild the world (~14 s)
def test_packages_layout_zips_the_tiles_as_the_authors_downloaded_them(tmp_path):
    import rasterio

    catalog = load_catalog()
    tiny = {"tiles": (2, 1), "dop_resolution": 5.0, "lidar_density": 0.2}
    manifest = generate_world(tmp_path / "w", **tiny, layout="packages")
    dop, lidar = (tmp_path / "w" / manifest[s]["package"] for s in ("dop", "lidar"))
    assert dop.name == package_name("dop", catalog.region("demo"), catalog)
    assert dop.name == "dop_05999000_Demostadt_EPSG25832_JPEG2000.zip"
    assert lidar.name == "3dm_l_las_05999000_Demostadt_EPSG25832.zip"
    assert sorted(p.name for p in dop.parent.iterdir()) == [dop.name]
    assert dop.parent.as_posix().endswith("produkte/geobasis/lbi/dop/dop_jp2_f10_paketiert")
    for t in manifest["tiles"]:
        assert t["dop_member"] in zipfile.ZipFile(dop).namelist()
        assert t["lidar_member"] == f"3dm_32_{t['id']}_1_nw.laz"  # 2020 names: no year
        with rasterio.open(tile_file(tmp_path / "w", manifest, t, "dop")) as src:
            assert src.count == 4
    assert manifest["params"]["layout"] == "packages"


def test_worker_processes_write_the_same_bytes(tmp_path):
    tiny = {"tiles": (2, 1), "dop_resolution": 5.0, "lidar_density": 0.2}
    one = generate_world(tmp_path / "one", **tiny, workers=1)
    two = generate_world(tmp_path / "two", **tiny, workers=2)
    assert one["files"] == two["files"]  # sizes and sha256 of every file


def test_ensure_world_reuses_a_complete_world_and_regenerates_a_broken_one(tmp_path):
    tiny = {"tiles": (1, 1), "dop_resolution": 5.0, "lidar_density": 0.2}
    folder = tmp_path / "cache"
    first = ensure_world(folder, **tiny)
    stamp = (folder / "world.json").stat().st_mtime_ns
    assert ensure_world(folder, **tiny) == first
    assert (folder / "world.json").stat().st_mtime_ns == stamp  # nothing regenerated
    victim = folder / first["lidar"]["folder"] / first["tiles"][0]["lidar_member"]
    victim.unlink()
    ensure_world(folder, **tiny)
    assert victim.is_file() and world_problems(folder, read_manifest(folder)) == []


def test_a_failed_generation_leaves_nothing_behind(tmp_path):
    def fail_midway(done, total):
        if done >= 2:  # after the layout, during the first tile's files
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        generate_world(
            tmp_path / "w",
            tiles=(1, 1),
            dop_resolution=5.0,
            lidar_density=0.2,
            progress=fail_midway,
        )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- CLI


def test_cli_generates_a_world_and_its_preview(tmp_path):
    from geosynth.cli import cli

    out, png = tmp_path / "w", tmp_path / "overview.png"
    result = CliRunner().invoke(
        cli,
        [
            "-q",
            "demo-world",
            "--out",
            str(out),
            "--tiles",
            "1x1",
            "--dop-resolution",
            "5",
            "--lidar-density",
            "0.2",
            "--preview",
            str(png),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["tiles"] == ["356_5645"] and summary["files"] == len(read_manifest(out)["files"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 400_000
    again = CliRunner().invoke(cli, ["demo-world", "--out", str(out), "--tiles", "1x1"])
    assert again.exit_code == 2 and "--out" in again.output


@pytest.mark.parametrize(
    "args, option",
    [
        (["--tiles", "0x2"], "--tiles"),
        (["--tiles", "three"], "--tiles"),
        (["--origin", "abc"], "--origin"),
        (["--dop-resolution", "0.3"], "--dop-resolution"),
    ],
)
def test_cli_bad_options_exit_2_naming_the_option(tmp_path, args, option):
    from geosynth.cli import cli

    result = CliRunner().invoke(cli, ["demo-world", "--out", str(tmp_path / "w"), *args])
    assert result.exit_code == 2
    assert option in result.output
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- noise


@settings(max_examples=30, deadline=None)
@given(
    st.floats(-5000, 5000),
    st.floats(-5000, 5000),
    st.sampled_from([0.5, 3.0, 23.0, 400.0]),
    st.integers(0, 2**31),
)
def test_grid_noise_is_one_field_across_tiles_and_resolutions(x0, y0, scale, seed):
    xs = x0 + np.arange(7) * 0.37
    ys = y0 - np.arange(5) * 0.61
    grid = grid_noise(xs, ys, scale, seed)  # (5, 7)
    gx, gy = np.meshgrid(xs, ys)
    assert np.allclose(grid, point_noise(gx, gy, scale, seed), atol=1e-5)
    assert grid.min() >= 0.0 and grid.max() <= 1.0


def test_default_worlds_test_seasons_are_seen_in_training():
    """Every season of a test tile's flight is the season of some training tile too, so that
    the scorer and the generators are not tested on a look they never saw."""
    region = load_catalog().region("demo")
    params = WorldParams(tiles=tuple(region.tiles), origin=tuple(region.origin_km))
    world = build_world(params)
    seasons = {"train": set(), "test": set()}
    for tile in params.tile_ids():
        seasons[region.split_of(str(tile))].add(world.campaign_of(tile).season)
    assert seasons["test"] <= seasons["train"], seasons
    assert len(seasons["train"]) >= 3  # the world still shows several seasons to learn


def test_a_world_of_another_size_chooses_a_representative_test_split():
    """choose_test_tiles: 3/8 of the tiles (at least one, never all), the set whose class
    shares differ least from the rest's; worked by hand on three classes."""
    from geosynth.demo.generate import choose_test_tiles, share_gap

    counts = {  # class 0 (unlabelled) is not compared
        "a": np.array([5, 10, 0, 0]),  # all class 1
        "b": np.array([0, 5, 5, 0]),  # half 1, half 2: like the whole world
        "c": np.array([0, 0, 10, 0]),
        "d": np.array([0, 5, 5, 0]),
    }
    assert choose_test_tiles(counts) in (["b"], ["d"])  # floor(4 * 3/8) = 1 tile
    assert share_gap(counts, ["b"]) == pytest.approx(abs(0.5 - 20 / 40))
    assert share_gap(counts, ["a"]) > share_gap(counts, ["b"])
    assert choose_test_tiles({"a": counts["a"]}) == []  # one tile: no test split
    assert len(choose_test_tiles({str(i): counts["b"] + i for i in range(8)})) == 3


def test_the_build_says_when_the_test_split_is_empty_and_takes_test_tiles(one_tile_world, tmp_path):
    from geosynth.ingest.nrw import split_notes

    assert split_notes({"train"}, ["356_5645", "357_5645"])[0].startswith(
        "split 'test' is empty: none of the 2 tiles"
    )
    assert "--test-tiles 357_5645" in split_notes({"train"}, ["356_5645", "357_5645"])[0]
    assert split_notes({"train", "test"}, ["356_5645", "357_5645"]) == []
    assert split_notes({"train"}, ["356_5645"]) == []  # one tile cannot be split
    result = CliRunner().invoke(cli, ["-q", "build-geonrw", "--region", "demo", "--source-dir",
                                      str(one_tile_world), "--test-tiles", "999_5645",
                                      "--out", str(tmp_path / "s.zarr")])  # fmt: skip
    assert result.exit_code == 2 and "--test-tiles 999_5645: not among the tiles built" in (
        result.output
    )
    assert not (tmp_path / "s.zarr").exists()
