"""The landcover stage: ATKIS vectors and OSM (files, Overpass) -> a class map in burn order."""

from __future__ import annotations

import bz2
import contextlib
import http.server
import json
import threading
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry import LineString, Polygon, box

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.io import write_geotiff
from geosynth.sources.landcover import burn, landcover_stage

CRS = "EPSG:25832"
X0, Y0 = 356000.0, 5646000.0  # north-west corner of the small test grid
CAT = load_catalog()
ID = {c.key: c.id for c in CAT.classes.classes}


def small_grid(width=60, height=40) -> RasterGrid:
    return RasterGrid(CRS, Affine(1.0, 0.0, X0, 0.0, -1.0, Y0), width, height)


def centres(grid: RasterGrid) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    return grid.transform @ (cols + 0.5, rows + 0.5)


def expected_map(grid: RasterGrid, shapes) -> np.ndarray:
    """Independent burn: pixel centres inside each (geometry, key), classes in catalog order."""
    xs, ys = centres(grid)
    out = np.zeros(grid.shape, np.uint8)
    rank = {k: i for i, k in enumerate(CAT.classes.burn_order)}
    for geom, key in sorted(shapes, key=lambda s: rank[s[1]]):
        out[shapely.contains_xy(geom, xs, ys)] = ID[key]
    return out


def rect(x, y, w, h) -> Polygon:
    """A rectangle from grid-local offsets (x east, y south of the grid's NW corner)."""
    return box(X0 + x, Y0 - y - h, X0 + x + w, Y0 - y)


def write_ref(path, grid: RasterGrid):
    return write_geotiff(path, np.zeros(grid.shape, np.uint8), grid)


# --------------------------------------------------------------------------- ATKIS vectors

ATKIS_ROWS = [  # (OBJART_TXT, VEG, geometry in grid-local offsets)
    ("AX_Wald", None, rect(0.3, 0.3, 30.4, 25.4)),
    ("AX_Landwirtschaft", "1020", rect(30.7, 0.3, 29.0, 20.1)),  # grassland by VEG
    ("AX_Landwirtschaft", "Ackerland", rect(30.7, 20.4, 14.2, 19.3)),
    ("AX_Landwirtschaft", "9999", rect(44.9, 20.4, 15.0, 19.3)),  # unknown VEG -> default
    ("AX_Fliessgewaesser", None, rect(10.2, 10.2, 40.1, 6.1)),  # water over forest and grass
    (
        "AX_Wohnbauflaeche",
        None,
        Polygon(
            [(X0 + 2.2, Y0 - 27.1), (X0 + 28.3, Y0 - 27.4), (X0 + 15.6, Y0 - 39.2)],
            holes=[[(X0 + 12.1, Y0 - 29.2), (X0 + 18.2, Y0 - 29.3), (X0 + 15.1, Y0 - 33.3)]],
        ),
    ),
    ("AX_Friedhof", None, rect(0.4, 36.1, 3.3, 3.2)),  # not in the catalog
    ("AX_Friedhof", None, rect(50.4, 36.1, 3.3, 3.2)),
]
ATKIS_KEYS = ["forest", "grassland", "agricultural", "agricultural", "water", "urban", None, None]


def write_atkis(path, crs=CRS, rows=ATKIS_ROWS, drop=None, layer="veg01_f"):
    frame = gpd.GeoDataFrame(
        {"OBJART_TXT": [r[0] for r in rows], "VEG": [r[1] for r in rows]},
        geometry=[r[2] for r in rows],
        crs=CRS,
    )
    if crs != CRS:
        frame = frame.to_crs(crs)
    if drop:
        frame = frame.drop(columns=[drop])
    frame.to_file(path, layer=layer)
    return path


def test_atkis_types_burned_in_catalog_order_and_unmapped_counted(tmp_path):
    g = small_grid()
    path = write_atkis(tmp_path / "atkis.gpkg")
    result = landcover_stage(g, vectors=[path])
    assert result.array.dtype == np.uint8 and result.array.shape == g.shape
    shapes = [(r[2], k) for r, k in zip(ATKIS_ROWS, ATKIS_KEYS, strict=True) if k]
    np.testing.assert_array_equal(result.array, expected_map(g, shapes))
    report = result.report
    assert report["unmapped"] == {"AX_Friedhof": 2}
    assert report["defaulted"] == {"AX_Landwirtschaft VEG=9999": 1}
    assert report["features"] == {
        "agricultural": 2,
        "grassland": 1,
        "forest": 1,
        "urban": 1,
        "water": 1,
    }
    assert report["pixels"]["water"] == int((result.array == ID["water"]).sum()) > 0
    # the residential triangle's hole is not urban
    assert result.array[30, 15] != ID["urban"] and result.array[36, 15] == ID["urban"]


def test_vectors_in_another_crs_are_reprojected(tmp_path):
    g = small_grid()
    path = write_atkis(tmp_path / "atkis_wgs84.gpkg", crs="EPSG:4326")
    result = landcover_stage(g, vectors=[path])
    to_grid = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform
    to_wgs = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform
    shapes = [
        (
            shapely.transform(
                shapely.transform(r[2], to_wgs, interleaved=False), to_grid, interleaved=False
            ),
            k,
        )
        for r, k in zip(ATKIS_ROWS, ATKIS_KEYS, strict=True)
        if k
    ]
    np.testing.assert_array_equal(result.array, expected_map(g, shapes))


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_vector_file_without_crs_takes_the_grid_crs_with_a_warning(tmp_path, caplog):
    g = small_grid()
    frame = gpd.GeoDataFrame({"OBJART_TXT": ["AX_Wald"]}, geometry=[rect(5.2, 5.2, 20.1, 10.2)])
    frame.to_file(tmp_path / "nocrs.shp")
    with caplog.at_level("WARNING", logger="geosynth"):
        result = landcover_stage(g, vectors=[tmp_path / "nocrs.shp"])
    assert "no CRS" in caplog.text and "nocrs" in caplog.text
    assert (result.array == ID["forest"]).sum() == 20 * 10


def test_lowercase_attribute_names_and_integer_veg_codes(tmp_path):
    g = small_grid()
    frame = gpd.GeoDataFrame(
        {"objart_txt": ["AX_Landwirtschaft"], "veg": [1020]},
        geometry=[rect(1.1, 1.1, 10.3, 10.3)],
        crs=CRS,
    )
    frame.to_file(tmp_path / "lower.gpkg")
    result = landcover_stage(g, vectors=[tmp_path / "lower.gpkg"])
    assert (result.array == ID["grassland"]).sum() == 100


def test_vector_file_without_the_type_attribute_exits_1_naming_it(tmp_path):
    g = small_grid()
    path = write_atkis(tmp_path / "no_objart.gpkg", drop="OBJART_TXT")
    with pytest.raises(DataError, match=r"no_objart\.gpkg.*'OBJART_TXT'.*VEG"):
        landcover_stage(g, vectors=[path])
    ref = write_ref(tmp_path / "ref.tif", g)
    out = tmp_path / "seg.tif"
    run = CliRunner().invoke(
        cli, ["landcover", "--vectors", str(path), "--like", str(ref), "--out", str(out)]
    )
    assert run.exit_code == 1 and "no_objart.gpkg" in run.output and "OBJART_TXT" in run.output
    assert not out.exists() and not list(tmp_path.glob(".seg.tif*"))


def test_unreadable_vector_file_names_it(tmp_path):
    bad = tmp_path / "broken.gpkg"
    bad.write_bytes(b"SQLite format 3\x00 truncated")
    with pytest.raises(DataError, match="broken.gpkg"):
        landcover_stage(small_grid(), vectors=[bad])


def test_no_inputs_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        landcover_stage(small_grid())
    ref = write_ref(tmp_path / "ref.tif", small_grid())
    run = CliRunner().invoke(
        cli, ["landcover", "--like", str(ref), "--out", str(tmp_path / "o.tif")]
    )
    assert run.exit_code == 2


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(CAT.classes.keys),
            st.integers(0, 23),
            st.integers(0, 15),
            st.integers(1, 12),
            st.integers(1, 12),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_burn_order_later_class_wins(rects):
    g = small_grid(24, 16)
    # edges at .25 offsets: no pixel centre (at .5) lies on an edge
    shapes = [(rect(x + 0.25, y + 0.25, w, h), key) for key, x, y, w, h in rects]
    np.testing.assert_array_equal(burn(shapes, g, CAT.classes), expected_map(g, shapes))


# --------------------------------------------------------------------------- OSM files

TO_WGS = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
TO_GRID = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)


class OsmWriter:
    """Builds an OSM XML document from geometries in grid-local offsets (metres)."""

    def __init__(self):
        self.root = ET.Element("osm", version="0.6", generator="geosynth tests")
        self.next_id = 1
        self.nodes: list[ET.Element] = []
        self.others: list[ET.Element] = []

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def node(self, x, y, tags=None) -> int:
        lon, lat = TO_WGS.transform(X0 + x, Y0 - y)
        nid = self._id()
        el = ET.Element("node", id=str(nid), lat=f"{lat:.9f}", lon=f"{lon:.9f}", version="1")
        for k, v in (tags or {}).items():
            ET.SubElement(el, "tag", k=k, v=v)
        self.nodes.append(el)
        return nid

    def way(self, coords, tags=None, closed=False) -> int:
        refs = [self.node(x, y) for x, y in coords]
        if closed:
            refs.append(refs[0])
        wid = self._id()
        el = ET.Element("way", id=str(wid), version="1")
        for ref in refs:
            ET.SubElement(el, "nd", ref=str(ref))
        for k, v in (tags or {}).items():
            ET.SubElement(el, "tag", k=k, v=v)
        self.others.append(el)
        return wid

    def multipolygon(self, outer, inners, tags) -> int:
        members = [("outer", self.way(outer, closed=True))]
        members += [("inner", self.way(ring, closed=True)) for ring in inners]
        rid = self._id()
        el = ET.Element("relation", id=str(rid), version="1")
        for role, ref in members:
            ET.SubElement(el, "member", type="way", ref=str(ref), role=role)
        for k, v in {"type": "multipolygon", **tags}.items():
            ET.SubElement(el, "tag", k=k, v=v)
        self.others.append(el)
        return rid

    def write(self, path):
        self.root.extend(self.nodes + self.others)
        ET.ElementTree(self.root).write(path, encoding="utf-8", xml_declaration=True)
        return path


def local(geom):
    """Grid-local offsets -> grid CRS, round-tripped through WGS84 as OSM stores it."""
    return shapely.transform(
        geom, lambda x, y: TO_GRID.transform(*TO_WGS.transform(X0 + x, Y0 - y)), interleaved=False
    )


COURTYARD_OUTER = [(30.2, 2.3), (56.1, 2.3), (56.1, 20.4), (30.2, 20.4)]
COURTYARD_INNER = [(36.3, 8.2), (48.4, 8.2), (48.4, 14.3), (36.3, 14.3)]
HOUSE = [(4.3, 4.1), (16.2, 4.1), (16.2, 12.6), (4.3, 12.6)]


def write_town(path):
    osm = OsmWriter()
    osm.way(HOUSE, {"building": "house"}, closed=True)
    osm.multipolygon(COURTYARD_OUTER, [COURTYARD_INNER], {"building": "yes"})
    osm.way([(20.7, 24.2), (20.7, 38.3)], {"building": "no", "amenity": "shelter"}, closed=False)
    osm.way([(0.0, 30.1), (60.0, 30.1)], {"highway": "residential"})  # 6 m wide -> roads
    osm.way([(0.0, 36.4), (60.0, 36.4)], {"highway": "motorway"})  # 24 m -> highway class
    osm.way([(25.3, 0.0), (25.3, 40.0)], {"railway": "rail"})  # 5 m, crosses the roads
    osm.way([(2.0, 22.0), (20.0, 22.0)], {"highway": "footway"})  # no catalog width
    osm.way([(40.0, 24.0), (55.0, 24.0)], {"railway": "platform"})
    osm.node(10.0, 30.1, {"highway": "turning_circle"})
    return osm.write(path)


def town_shapes():
    return [
        (local(LineString([(0.0, 36.4), (60.0, 36.4)])).buffer(12.0), "highway"),
        (local(LineString([(25.3, 0.0), (25.3, 40.0)])).buffer(2.5), "railway"),
        (local(LineString([(0.0, 30.1), (60.0, 30.1)])).buffer(3.0), "roads"),
        (local(Polygon(HOUSE)), "buildings"),
        (local(Polygon(COURTYARD_OUTER, holes=[COURTYARD_INNER])), "buildings"),
    ]


def test_osm_buildings_with_holes_roads_and_railways(tmp_path):
    g = small_grid()
    result = landcover_stage(g, osm=write_town(tmp_path / "town.osm"))
    expected = expected_map(g, town_shapes())
    assert (result.array != expected).sum() <= 2, "at most centres on buffer arcs may differ"
    report = result.report
    assert report["features"] == {"highway": 1, "railway": 1, "roads": 1, "buildings": 2}
    assert report["unmapped"] == {"highway=footway": 1, "railway=platform": 1}
    assert report["ignored"] == {"highway as Point": 1}
    # the courtyard (a hole of the multipolygon) is not a building; the ring around it is
    assert result.array[11, 42] == 0 and result.array[4, 42] == ID["buildings"]
    courtyard = local(Polygon(COURTYARD_OUTER, holes=[COURTYARD_INNER]))
    pixels = int((result.array == ID["buildings"]).sum())
    house = local(Polygon(HOUSE)).area
    assert pixels == pytest.approx(courtyard.area + house, rel=0.05)


def test_osm_bz2_file_reads_like_the_plain_one(tmp_path):
    g = small_grid()
    plain = write_town(tmp_path / "town.osm")
    packed = tmp_path / "town.osm.bz2"
    packed.write_bytes(bz2.compress(plain.read_bytes()))
    a = landcover_stage(g, osm=plain).array
    b = landcover_stage(g, osm=packed).array
    np.testing.assert_array_equal(a, b)


def test_vectors_and_osm_together_osm_buildings_win(tmp_path):
    g = small_grid()
    result = landcover_stage(
        g, vectors=[write_atkis(tmp_path / "atkis.gpkg")], osm=write_town(tmp_path / "town.osm")
    )
    atkis = [(r[2], k) for r, k in zip(ATKIS_ROWS, ATKIS_KEYS, strict=True) if k]
    expected = expected_map(g, atkis + town_shapes())
    assert (result.array != expected).sum() <= 2
    assert [s["kind"] for s in result.report["sources"]] == ["vectors", "osm"]


def test_broken_osm_xml_exits_1_naming_the_file(tmp_path):
    g = small_grid()
    good = write_town(tmp_path / "town.osm").read_bytes()
    bad = tmp_path / "cut.osm"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut\.osm"):
        landcover_stage(g, osm=bad)
    ref = write_ref(tmp_path / "ref.tif", g)
    out = tmp_path / "seg.tif"
    run = CliRunner().invoke(
        cli, ["landcover", "--osm", str(bad), "--like", str(ref), "--out", str(out)]
    )
    assert run.exit_code == 1 and "cut.osm" in run.output
    assert not out.exists()


def test_truncated_bz2_osm_names_the_file(tmp_path):
    packed = bz2.compress(write_town(tmp_path / "town.osm").read_bytes())
    cut = tmp_path / "cut.osm.bz2"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"cut\.osm\.bz2"):
        landcover_stage(small_grid(), osm=[cut])


def test_cli_like_grid_colour_table_and_json_report(tmp_path):
    g = small_grid()
    ref = write_ref(tmp_path / "ref.tif", g)
    out = tmp_path / "seg.tif"
    run = CliRunner().invoke(
        cli,
        [
            "-q",
            "landcover",
            "--osm",
            str(write_town(tmp_path / "t.osm")),
            "--vectors",
            str(write_atkis(tmp_path / "a.gpkg")),
            "--like",
            str(ref),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["unmapped"]["AX_Friedhof"] == 2 and report["unmapped"]["highway=footway"] == 1
    with rasterio.open(out) as src, rasterio.open(ref) as r:
        assert (src.crs, src.transform, src.shape) == (r.crs, r.transform, r.shape)
        assert src.dtypes == ("uint8",)
        assert src.colormap(1)[ID["buildings"]][:3] == CAT.classes.by_key("buildings").rgb
        seg = src.read(1)
    assert sum(report["pixels"].values()) == seg.size
    assert report["pixels"]["buildings"] == int((seg == ID["buildings"]).sum())


def test_cli_tile_grid(tmp_path):
    tile = RasterGrid.for_tile("356_5645", CAT.grid)
    out = tmp_path / "seg.tif"
    run = CliRunner().invoke(
        cli,
        [
            "-q",
            "landcover",
            "--osm",
            str(write_town(tmp_path / "t.osm")),
            "--tile",
            "356_5645",
            "--out",
            str(out),
        ],
    )
    assert run.exit_code == 0, run.output
    with rasterio.open(out) as src:
        assert src.transform == tile.transform and src.shape == (1000, 1000)
        seg = src.read(1)
    # the town sits in the tile's north-west corner: same pixels as on the small grid
    small = landcover_stage(small_grid(), osm=tmp_path / "t.osm").array
    np.testing.assert_array_equal(seg[:40, :60], small)
    assert not seg[50:, :].any() and not seg[:, 75:].any()  # buffers reach 12 m beyond


# --------------------------------------------------------------------------- real OSM samples


def parse_osm_buildings(path, crs=CRS):
    """Building footprints of closed, tagged ways, parsed with ElementTree (independent of osmnx)."""
    with bz2.open(path) if path.suffix == ".bz2" else open(path, "rb") as f:
        root = ET.parse(f).getroot()
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    nodes = {n.get("id"): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    polys = []
    for way in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in way.iter("tag")}
        refs = [nd.get("ref") for nd in way.iter("nd")]
        closed = len(refs) >= 4 and refs[0] == refs[-1]
        if tags.get("building", "no") != "no" and closed and all(r in nodes for r in refs):
            lon, lat = np.array([nodes[r] for r in refs]).T
            polys.append(shapely.make_valid(Polygon(zip(*to_crs.transform(lon, lat), strict=True))))
    return polys


def check_buildings(path, grid: RasterGrid, crs: str):
    """The stage's building pixels equal pixel centres inside the independently parsed footprints."""
    result = landcover_stage(grid, osm=path)
    footprints = parse_osm_buildings(path, crs)
    assert len(footprints) == result.report["features"]["buildings"]
    union = shapely.union_all(footprints)
    xs, ys = centres(grid)
    inside = shapely.contains_xy(union, xs, ys)
    buildings = result.array == ID["buildings"]
    assert (inside != buildings).sum() <= 3  # buildings burn last: the masks agree
    assert buildings.sum() == pytest.approx(union.area, rel=0.05)
    return result


def test_real_bavarian_osm_buildings_match_their_footprints(realdata):
    path = realdata / "osm" / "bavaria_small.osm"
    g = RasterGrid(CRS, Affine(1.0, 0.0, 579440.0, 0.0, -1.0, 5332040.0), 280, 220)
    result = check_buildings(path, g, CRS)
    assert result.report["features"]["buildings"] == 32
    assert result.report["features"]["roads"] > 0 and (result.array == ID["roads"]).sum() > 1000


def test_real_west_oakland_bz2_in_utm10(realdata):
    from geosynth.sources.osm.features import read_osm_file

    path = realdata / "osm" / "west_oakland.osm.bz2"
    crs = "EPSG:32610"
    left, bottom, right, top = read_osm_file(path, CAT.osm).to_crs(crs).total_bounds
    x0, y0 = np.floor(left) - 20, np.ceil(top) + 20
    g = RasterGrid(
        crs,
        Affine(1.0, 0.0, x0, 0.0, -1.0, y0),
        int(np.ceil(right - x0)) + 20,
        int(np.ceil(y0 - bottom)) + 20,
    )
    result = check_buildings(path, g, crs)
    assert result.report["features"]["buildings"] > 0 and result.report["features"]["roads"] > 0


# --------------------------------------------------------------------------- Overpass (loopback)


class OverpassHandler(http.server.BaseHTTPRequestHandler):
    """Overpass on 127.0.0.1: /status says a slot is free; /interpreter answers canned JSON."""

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        status = "Connected as: 1\nCurrent time: now\nAnnounced endpoint: none\nRate limit: 2\n"
        self._send(
            (status + "2 slots available now.\nCurrently running queries:\n").encode(), "text/plain"
        )

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts += 1
        self._send(json.dumps(self.server.payload).encode(), "application/json")


@contextlib.contextmanager
def overpass(payload):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OverpassHandler)
    server.payload, server.posts = payload, 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_overpass_query_is_cached(tmp_path, monkeypatch):
    ring = [(4.3, 4.1), (16.2, 4.1), (16.2, 12.6), (4.3, 12.6), (4.3, 4.1)]
    nodes = [
        {"type": "node", "id": i + 1, "lon": lon, "lat": lat}
        for i, (lon, lat) in enumerate(TO_WGS.transform(X0 + x, Y0 - y) for x, y in ring[:-1])
    ]
    way = {"type": "way", "id": 100, "nodes": [1, 2, 3, 4, 1], "tags": {"building": "yes"}}
    import osmnx as ox

    with overpass({"version": 0.6, "elements": [*nodes, way]}) as (server, url):
        monkeypatch.setattr(ox.settings, "overpass_url", url)
        g = small_grid()
        cache = tmp_path / "cache"
        first = landcover_stage(g, osm="overpass", overpass_cache=cache)
        second = landcover_stage(g, osm="overpass", overpass_cache=cache)
        assert server.posts == 1  # the second run is answered from osmnx's cache
    np.testing.assert_array_equal(first.array, second.array)
    assert (first.array == ID["buildings"]).sum() == pytest.approx(
        local(Polygon(ring)).area, rel=0.1
    )
    assert list(cache.glob("*.json")) and ox.settings.cache_folder != str(cache)


def test_overpass_unreachable_is_a_data_error(tmp_path, monkeypatch):
    import osmnx as ox

    monkeypatch.setattr(ox.settings, "overpass_url", "http://127.0.0.1:9/api")
    monkeypatch.setattr(ox.settings, "overpass_rate_limit", False)
    with pytest.raises(DataError, match="Overpass query"):
        landcover_stage(small_grid(), osm="overpass", overpass_cache=tmp_path)


def test_point_only_osm_gives_empty_map(tmp_path):
    osm = OsmWriter()
    osm.node(3.0, 3.0, {"highway": "crossing"})
    result = landcover_stage(small_grid(), osm=osm.write(tmp_path / "p.osm"))
    assert not result.array.any() and result.report["ignored"] == {"highway as Point": 1}


def test_burn_of_nothing_is_unlabelled():
    out = burn([], small_grid(10, 7), CAT.classes)
    assert out.shape == (7, 10) and out.dtype == np.uint8 and not out.any()


# --------------------------------------------------------------------------- the demo world


@pytest.fixture(scope="module")
def demo_world(one_tile_world):
    from geosynth.demo import read_manifest

    return one_tile_world, read_manifest(one_tile_world)


def test_demo_tile_matches_the_worlds_truth(demo_world, tmp_path):
    root, manifest = demo_world
    tile = manifest["tiles"][0]["id"]
    out = tmp_path / "seg.tif"
    vectors = root / manifest["landcover"]["path"]
    osm = root / manifest["osm"]["path"]
    run = CliRunner().invoke(
        cli,
        [
            "-q",
            "landcover",
            "--vectors",
            str(vectors),
            "--osm",
            str(osm),
            "--tile",
            tile,
            "--out",
            str(out),
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    with rasterio.open(out) as src, rasterio.open(root / "truth" / f"{tile}_landcover.tif") as t:
        assert src.transform == RasterGrid.for_tile(tile, CAT.grid).transform
        assert (src.crs, src.transform, src.shape) == (t.crs, t.transform, t.shape)
        seg, truth = src.read(1), t.read(1)
    # the truth is burned by the generator from its own geometries; ours went through GeoPackage
    # and OSM XML (WGS84, 7 decimals): only pixel centres within centimetres of an edge may differ
    assert (seg != truth).mean() < 1e-4
    assert set(report["unmapped"]) == set(manifest["landcover"]["unmapped_types"])
    assert report["features"]["buildings"] == manifest["osm"]["buildings"]
