"""OSM PBF: streamed by pyosmium, cut once for many tiles, read per tile; land cover as from XML.

The fixtures are written with pyosmium's own writer (``osmium.SimpleWriter``),
once as ``.osm.pbf`` and once as ``.osm`` XML from the same objects, so the XML
path (osmnx) is the reference for the PBF path.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import osmium
import pytest
import shapely
from affine import Affine
from click.testing import CliRunner
from osmium.osm.mutable import Node, Relation, Way
from pyproj import Transformer

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.sources.landcover import landcover_stage
from geosynth.sources.osm import max_half_width, osm_file_format, read_osm_file
from geosynth.sources.osm.pbf import (
    CUT_LAYER,
    POLYGON_FEATURES,
    cut_info,
    cut_osm,
    ensure_osm_cut,
    read_osm_cut,
    read_osm_pbf,
)

CAT = load_catalog()
RULES = CAT.osm
CRS = CAT.grid.crs
ID = {c.key: c.id for c in CAT.classes.classes}
TILE = "350_5650"  # bounds (350000, 5650000, 351000, 5651000)
TILES = ("350_5650", "351_5650", "350_5651", "351_5651")  # 2 x 2 km
X0, Y0 = 350000.0, 5651000.0  # north-west corner of TILE
TO_WGS = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def grid(tile: str = TILE) -> RasterGrid:
    return RasterGrid.for_tile(tile, CAT.grid)


class OsmData:
    """OSM objects from coordinates in EPSG:25832 metres, written by pyosmium in any format."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.ways: list[Way] = []
        self.relations: list[Relation] = []

    def node(self, x, y, tags=None) -> int:
        lon, lat = TO_WGS.transform(x, y)
        self.nodes.append(Node(id=len(self.nodes) + 1, location=(lon, lat), tags=tags or {}))
        return len(self.nodes)

    def way(self, coords, tags=None, closed=False, refs=None) -> int:
        refs = list(refs or [self.node(x, y) for x, y in coords])
        if closed:
            refs.append(refs[0])
        self.ways.append(Way(id=len(self.ways) + 1, nodes=refs, tags=tags or {}))
        return len(self.ways)

    def multipolygon(self, outer, inners, tags, split_outer=False) -> int:
        """A relation; ``split_outer`` makes the outer ring two open ways (both readers join them)."""
        if split_outer:
            refs = [self.node(x, y) for x, y in outer]
            half = len(refs) // 2
            members = [
                ("w", self.way(None, refs=refs[: half + 1]), "outer"),
                ("w", self.way(None, refs=[*refs[half:], refs[0]]), "outer"),
            ]
        else:
            members = [("w", self.way(outer, closed=True), "outer")]
        members += [("w", self.way(ring, closed=True), "inner") for ring in inners]
        tags = {"type": "multipolygon", **tags}
        self.relations.append(Relation(id=len(self.relations) + 1, members=members, tags=tags))
        return len(self.relations)

    def write(self, path):
        with osmium.SimpleWriter(str(path)) as writer:
            for obj in self.nodes:
                writer.add_node(obj)
            for obj in self.ways:
                writer.add_way(obj)
            for obj in self.relations:
                writer.add_relation(obj)
        return path


def local(x, y):
    """Tile-local offsets (x east, y south of TILE's north-west corner) -> EPSG:25832."""
    return X0 + x, Y0 - y


def square(x, y, w, h):
    return [local(x, y), local(x + w, y), local(x + w, y + h), local(x, y + h)]


COURTYARD_OUTER = square(100, 100, 100, 100)
COURTYARD_INNER = square(130, 130, 40, 40)
PEDESTRIAN_SQUARE = square(400, 400, 80, 80)
SERVICE_LOOP = square(600, 600, 100, 100)


def write_town(data: OsmData) -> None:
    """Hand-made features over TILE, one of each case the readers must agree on."""
    data.way(square(10, 10, 40, 30), {"building": "house"}, closed=True)
    data.multipolygon(COURTYARD_OUTER, [COURTYARD_INNER], {"building": "yes"}, split_outer=True)
    data.way(square(60, 60, 20, 20), {"building": "no", "amenity": "shelter"}, closed=True)
    data.node(*local(80, 30), {"building": "yes"})  # a building as a point: ignored
    bowtie = [local(850, 200), local(880, 230), local(880, 200), local(850, 230)]
    data.way(bowtie, {"building": "yes"}, closed=True)  # self-intersecting: made valid
    data.way([local(0, 300), local(1000, 300)], {"highway": "residential"})
    data.way([local(0, 500), local(1000, 520)], {"highway": "motorway"})
    data.way([local(0, 900), local(500, 880), local(1000, 900)], {"highway": "primary"})
    data.way([local(300, 0), local(300, 1000)], {"railway": "rail"})
    data.way(PEDESTRIAN_SQUARE, {"highway": "pedestrian", "area": "yes"}, closed=True)
    data.way(SERVICE_LOOP, {"highway": "service"}, closed=True)  # closed, but a line
    data.way([local(20, 800), local(200, 800)], {"highway": "footway"})  # no catalog width
    data.way(square(800, 100, 60, 8), {"railway": "platform"}, closed=True)  # a polygon
    data.node(*local(250, 250), {"highway": "turning_circle"})
    # edge cases both readers must shape alike
    parking = square(900, 600, 40, 30)
    data.way(parking, {"highway": "service", "amenity": "parking"}, closed=True)  # a polygon
    data.way(square(900, 650, 30, 20), {"building": "yes", "area": "no"}, closed=True)  # a line
    data.way([local(900, 700), local(930, 700)], {"building": "shed"}, closed=True)  # 3 nodes
    members = [("w", data.way(square(900, 750, 30, 30)), "outer")]  # a ring that never closes
    tags = {"type": "multipolygon", "building": "yes"}
    data.relations.append(Relation(id=len(data.relations) + 1, members=members, tags=tags))
    data.node(*local(500, 300), {"highway": "traffic_signals"})


def write_random_town(data: OsmData, rng, left, bottom, size, n_buildings=150, n_roads=30):
    """Seeded buildings (some with courtyards) and roads, ``size`` metres from (left, bottom)."""
    values = ["residential", "service", "tertiary", "track", "footway", "cycleway", "trunk"]
    for i in range(n_buildings):
        x, y = left + rng.uniform(20, size - 60), bottom + rng.uniform(20, size - 60)
        w, h = rng.uniform(8, 40, 2)
        ring = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        if i % 15 == 0:
            hole = [(x + w / 4, y + h / 4), (x + w / 2, y + h / 4), (x + w / 2, y + h / 2)]
            data.multipolygon(ring, [hole], {"building": "apartments"})
        else:
            data.way(ring, {"building": "yes"}, closed=True)
    for _ in range(n_roads):
        start = (left, bottom) + rng.uniform(0, size, 2)
        steps = rng.uniform(-150, 150, (3, 2))
        line = np.clip(
            start + np.cumsum(steps, axis=0), (left, bottom), (left + size, bottom + size)
        )
        data.way([tuple(p) for p in np.vstack([start, line])], {"highway": str(rng.choice(values))})
    data.way([(left, bottom + size / 3), (left + size, bottom + size / 3)], {"railway": "tram"})


FAR = 20_000.0  # metres east of the 2 x 2 tiles: never in the cut


def write_far_features(data: OsmData) -> list[tuple[str, int]]:
    """Features far from every tile; returns their (element, id)."""
    ids = [("way", data.way(square(FAR + 10, 10, 30, 30), {"building": "yes"}, closed=True))]
    ids.append(("way", data.way([local(FAR, 300), local(FAR + 500, 300)], {"highway": "primary"})))
    ids.append(("node", data.node(*local(FAR, 50), {"highway": "crossing"})))
    outer, inner = square(FAR + 100, 100, 50, 50), square(FAR + 110, 110, 10, 10)
    ids.append(("relation", data.multipolygon(outer, [inner], {"building": "yes"})))
    return ids


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """The town over TILE, a random town over the 2 x 2 tiles, far features; as PBF and as XML."""
    folder = tmp_path_factory.mktemp("osm")
    data = OsmData()
    write_town(data)
    write_random_town(data, np.random.default_rng(7), X0, Y0 - 1000, 2000)
    data.way([local(-5, 900), local(1995, -900)], {"highway": "secondary"})  # crosses 3 tiles
    far = write_far_features(data)
    return {
        "pbf": data.write(folder / "region.osm.pbf"),
        "xml": data.write(folder / "region.osm"),
        "far": far,
        "folder": folder,
    }


# --------------------------------------------------------------------------- one tile


def test_pbf_land_cover_equals_the_xml_land_cover(region):
    g = grid()
    from_xml = landcover_stage(g, osm=region["xml"])
    from_pbf = landcover_stage(g, osm=region["pbf"])
    assert np.array_equal(from_pbf.array, from_xml.array)
    for key in ("features", "unmapped", "ignored", "pixels"):
        assert from_pbf.report[key] == from_xml.report[key], key
    present = set(np.unique(from_pbf.array).tolist())
    assert {0, ID["buildings"], ID["roads"], ID["highway"], ID["railway"]} <= present
    report = from_pbf.report
    assert (
        report["unmapped"]["highway=footway"] >= 1 and report["unmapped"]["railway=platform"] == 1
    )
    assert report["ignored"]["highway as Point"] == 2
    assert report["ignored"]["building as Point"] == 1
    a = from_pbf.array  # rows are metres south, columns metres east of the tile's corner
    assert a[150, 150] == 0 and a[110, 150] == ID["buildings"]  # the courtyard is a hole
    assert a[440, 440] == ID["roads"]  # highway=pedestrian + area=yes: the square is burned
    assert a[650, 650] == 0 and a[600, 650] == ID["roads"]  # a closed service road: a line


def test_pbf_frame_has_the_geometries_osmnx_builds(region):
    xml = read_osm_file(region["xml"], RULES)
    pbf = read_osm_file(region["pbf"], RULES)  # no grid: the whole file
    assert list(pbf.index) == list(xml.index) and pbf.index.names == ["element", "id"]
    assert pbf.crs == xml.crs
    assert list(pbf.geometry.geom_type) == list(xml.geometry.geom_type)
    assert shapely.equals(pbf.geometry.values, xml.geometry.values).all()
    for tag in ("building", "highway", "railway", "area"):
        assert pbf[tag].fillna("").tolist() == xml[tag].fillna("").tolist(), tag
    relations = pbf.loc["relation"].geometry
    assert (shapely.get_num_interior_rings(relations.values) == 1).all()


def test_pbf_for_one_grid_keeps_only_features_near_it(region):
    g = grid()
    near = read_osm_file(region["pbf"], RULES, g)
    everything = read_osm_file(region["pbf"], RULES)
    assert 0 < len(near) < len(everything)
    reach = shapely.box(*g.bounds).buffer(max_half_width(RULES), join_style="mitre")
    projected = everything.to_crs(CRS)
    wanted = projected[projected.intersects(reach)]
    assert set(wanted.index) <= set(near.index)


def test_file_backed_node_index_reads_the_same_and_leaves_no_file(region, tmp_path):
    g = grid()
    in_memory = read_osm_pbf(region["pbf"], RULES, g)
    on_disk = read_osm_pbf(region["pbf"], RULES, g, locations="sparse_file_array", tmpdir=tmp_path)
    assert list(on_disk.index) == list(in_memory.index)
    assert shapely.equals(on_disk.geometry.values, in_memory.geometry.values).all()
    assert not any(tmp_path.iterdir())
    with pytest.raises(UsageError, match="node-location index"):
        read_osm_pbf(region["pbf"], RULES, g, locations="no_such_index")


# --------------------------------------------------------------------------- the cut


@pytest.fixture(scope="module")
def cut(region):
    grids = {name: grid(name).bounds for name in TILES}
    out = region["folder"] / "region.osmcut.gpkg"
    report = cut_osm(region["pbf"], grids, CRS, RULES, out)
    return out, report


def test_cut_read_per_tile_gives_the_land_cover_of_the_pbf_and_the_xml(region, cut):
    path, report = cut
    assert report.path == path and report.tiles == 4 and report.total > 0
    for name in TILES:
        g = grid(name)
        from_cut = landcover_stage(g, osm=[path])
        from_pbf = landcover_stage(g, osm=[region["pbf"]])
        from_xml = landcover_stage(g, osm=[region["xml"]])
        assert np.array_equal(from_cut.array, from_pbf.array), name
        assert np.array_equal(from_cut.array, from_xml.array), name
        assert from_cut.report["features"] == from_xml.report["features"], name
        assert len(np.unique(from_cut.array)) >= 3, name


def test_cut_leaves_out_features_far_from_the_tiles(region, cut):
    import pyogrio

    path, report = cut
    rows = pyogrio.read_dataframe(path, layer=CUT_LAYER, read_geometry=False)
    keys = set(zip(rows["osm_element"], rows["osm_id"].tolist(), strict=True))
    assert not keys & set(region["far"])
    everything = read_osm_file(region["xml"], RULES)
    assert len(rows) == len(everything) - len(region["far"]) == report.total
    assert report.outside == len(region["far"])
    assert len(keys) == len(rows)  # each feature once


def test_cut_is_a_geopackage_with_a_spatial_index_and_metadata(cut):
    import sqlite3

    import pyogrio

    path, _ = cut
    info = pyogrio.read_info(path, layer=CUT_LAYER)
    assert info["crs"] == "EPSG:4326" and info["capabilities"]["fast_spatial_filter"]
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master")}
    assert f"rtree_{CUT_LAYER}_{info['geometry_name']}" in tables
    meta = cut_info(path)
    assert meta.crs == CRS and meta.tile_names == TILES
    assert meta.margin_m == max_half_width(RULES)
    assert not list(path.parent.glob(".*.part.gpkg"))  # the temporary file was renamed


def test_cut_is_recognised_by_its_layer_and_pbf_by_its_magic_bytes(region, cut, tmp_path):
    renamed_cut = shutil.copy(cut[0], tmp_path / "tiles.gpkg")
    renamed_pbf = shutil.copy(region["pbf"], tmp_path / "extract.dat")
    assert osm_file_format(renamed_cut) == "osm_cut"
    assert osm_file_format(renamed_pbf) == "pbf"
    assert osm_file_format(region["xml"]) == "xml"
    g = grid()
    expected = landcover_stage(g, osm=region["xml"]).array
    assert np.array_equal(landcover_stage(g, osm=renamed_cut).array, expected)
    assert np.array_equal(landcover_stage(g, osm=renamed_pbf).array, expected)


def test_cut_that_does_not_cover_the_grid_or_is_too_narrow_names_the_file(region, tmp_path):
    one = cut_osm(region["pbf"], {TILE: grid().bounds}, CRS, RULES, tmp_path / "one.osmcut.gpkg")
    with pytest.raises(DataError, match=r"one\.osmcut\.gpkg.*does not cover"):
        read_osm_cut(one.path, grid("352_5650"), RULES)
    narrow = cut_osm(region["pbf"], {TILE: grid()}, None, RULES, tmp_path / "n.gpkg", margin_m=0)
    with pytest.raises(DataError, match=r"n\.gpkg.*margin"):
        landcover_stage(grid(), osm=narrow.path)


def test_two_overlapping_extracts_write_each_feature_once(region, cut, tmp_path):
    grids = {name: grid(name) for name in TILES}
    twice = cut_osm([region["pbf"], region["xml"]], grids, None, RULES, tmp_path / "2.osmcut.gpkg")
    assert twice.features == cut[1].features


def test_ensure_cut_reuses_a_current_cut_and_cuts_again_when_the_extract_changes(region, tmp_path):
    pbf = shutil.copy(region["pbf"], tmp_path / "state.osm.pbf")
    out = tmp_path / "state.osmcut.gpkg"
    two = {name: grid(name) for name in TILES[:2]}
    assert ensure_osm_cut(pbf, two, None, RULES, out) == out
    first = out.stat().st_mtime_ns
    ensure_osm_cut(pbf, {TILES[0]: grid(TILES[0])}, None, RULES, out)  # a subset: reused
    assert out.stat().st_mtime_ns == first
    ensure_osm_cut(pbf, {name: grid(name) for name in TILES}, None, RULES, out)  # more tiles
    assert out.stat().st_mtime_ns != first and cut_info(out).tile_names == TILES
    second = out.stat().st_mtime_ns
    os.utime(pbf, ns=(second, second + 10**9))  # a new extract
    ensure_osm_cut(pbf, two, None, RULES, out)
    assert out.stat().st_mtime_ns != second and len(cut_info(out).tile_names) == 2


# --------------------------------------------------------------------------- real OSM samples


@pytest.mark.parametrize(
    ("name", "crs"), [("bavaria_small.osm", "EPSG:25832"), ("west_oakland.osm.bz2", "EPSG:32610")]
)
def test_real_osm_samples_converted_to_pbf_read_like_the_xml(realdata, tmp_path, name, crs):
    """osmnx's own test extracts (messy real tagging), converted to PBF by pyosmium."""
    source = realdata / "osm" / name
    pbf = tmp_path / "sample.osm.pbf"
    with osmium.SimpleWriter(str(pbf)) as writer:
        for obj in osmium.FileProcessor(str(source)):
            writer.add(obj)
    xml = read_osm_file(source, RULES)
    assert list(read_osm_file(pbf, RULES).index) == list(xml.index)
    left, bottom, right, top = xml.to_crs(crs).total_bounds
    x0, y0 = np.floor(left) - 20, np.ceil(top) + 20
    g = RasterGrid(
        crs,
        Affine(1.0, 0.0, x0, 0.0, -1.0, y0),
        int(np.ceil(right - x0)) + 20,
        int(np.ceil(y0 - bottom)) + 20,
    )
    from_xml, from_pbf = landcover_stage(g, osm=source), landcover_stage(g, osm=pbf)
    assert np.array_equal(from_pbf.array, from_xml.array)
    assert from_pbf.report["features"] == from_xml.report["features"]
    assert from_pbf.report["features"]["buildings"] > 20


# --------------------------------------------------------------------------- errors, CLI, osmnx


def test_corrupt_pbf_is_a_data_error_naming_the_file(region, tmp_path):
    data = region["pbf"].read_bytes()
    broken = tmp_path / "broken.osm.pbf"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"broken\.osm\.pbf"):
        landcover_stage(grid(), osm=[broken])
    out = tmp_path / "broken.osmcut.gpkg"
    with pytest.raises(DataError, match=r"broken\.osm\.pbf"):
        cut_osm(broken, {TILE: grid()}, None, RULES, out)
    assert not out.exists() and not list(tmp_path.glob("*.part.gpkg"))
    garbage = tmp_path / "garbage.pbf"
    garbage.write_bytes(b"\x00\x00\x00\x0enot a pbf at all" * 8)
    with pytest.raises(DataError, match=r"garbage\.pbf"):
        read_osm_file(garbage, RULES, grid())
    not_a_cut = tmp_path / "x.osmcut.gpkg"
    not_a_cut.write_bytes(b"nothing")
    with pytest.raises(DataError, match=r"x\.osmcut\.gpkg"):
        landcover_stage(grid(), osm=[not_a_cut])


def test_cli_landcover_reads_a_pbf(region, tmp_path):
    import rasterio

    out = tmp_path / "seg.tif"
    run = CliRunner().invoke(
        cli, ["-q", "landcover", "--osm", str(region["pbf"]), "--tile", TILE, "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    with rasterio.open(out) as src:
        seg = src.read(1)
    assert np.array_equal(seg, landcover_stage(grid(), osm=region["xml"]).array)


def test_polygon_rules_are_osmnx_rules():
    features = pytest.importorskip("osmnx.features")
    theirs = getattr(features, "_POLYGON_FEATURES", None)
    if theirs is None:
        pytest.skip("this osmnx has no _POLYGON_FEATURES table")
    ours = {key: (kind, set(values)) for key, (kind, values) in POLYGON_FEATURES.items()}
    assert ours == {key: (v["polygon"], set(v.get("values", ()))) for key, v in theirs.items()}
