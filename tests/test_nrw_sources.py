"""NRW's sources as published: per-tile folders read from their listings (index.json, the
folders' XML, HTML pages), historic vintages, the authors' municipality packages, the tiles
of a region, flight dates, downloads at scale.

Everything is served by a real HTTP server on 127.0.0.1 from demo worlds, which are laid
out as NRW's server is today (``produkte/geobasis/...``); catalogs move the server's host
onto it and keep its paths (``loopback_catalog``).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import geopandas as gpd
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.demo import generate_world
from geosynth.errors import DataError, UsageError
from geosynth.ingest.download import download_many, download_region
from geosynth.ingest.nrw import build_region
from geosynth.sources.nrw import (
    geonrw_tiles,
    listing_tiles,
    parse_listing,
    read_flight_dates,
    region_tiles,
)
from geosynth.store import open_store

TILES = ["356_5645", "357_5645"]  # the two tiles of the worlds below: flown in 2022 and 2023
TINY = {"tiles": (2, 1), "seed": 3, "dop_resolution": 1.0, "lidar_density": 1.0}


@pytest.fixture(scope="module")
def tiles_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nrw") / "tiles-world"
    generate_world(root, **TINY)
    return root


@pytest.fixture(scope="module")
def packages_world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nrw") / "packages-world"
    generate_world(root, **TINY, layout="packages")
    return root


def _zip_folder(archive: Path, files: list[Path]) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as z:
        for f in files:
            z.write(f, f.name)
    return archive


def _shapefile_zip(archive: Path, frame: gpd.GeoDataFrame, layer: str) -> Path:
    folder = archive.parent / f".{layer}"
    folder.mkdir(parents=True)
    frame.to_file(folder / f"{layer}.shp")
    return _zip_folder(archive, sorted(folder.iterdir()))


def _nrw(www: Path, url: str) -> Path:
    """Where a URL of NRW's server lies in a web root laid out as the server."""
    return www / unquote(urlsplit(url).path).lstrip("/")


def _www(tmp_path: Path, world: Path, boundary: gpd.GeoDataFrame | None = None) -> Path:
    """A web root laid out as NRW's server: the world's ``produkte/`` tree as it wrote it
    (orthophotos, lidar, the land-cover package, each folder with index.json and index.xml),
    and the municipality boundaries (DVG1) as a zipped shapefile where the catalog says."""
    www = tmp_path / "www"
    shutil.copytree(world / "produkte", www / "produkte")
    if boundary is not None:
        zipped = _nrw(www, load_catalog().sources["boundary"].url)
        zipped.parent.mkdir(parents=True, exist_ok=True)
        _shapefile_zip(zipped, boundary, "dvg1gem_nw")
    return www


def _folder(world: Path, source: str) -> Path:
    """The folder of a world's per-tile files of ``source`` (its manifest says where)."""
    return world / json.loads((world / "world.json").read_text())[source]["folder"]


def _relist(folder: Path) -> None:
    """Write the folder's index.json and index.xml anew (after a test changed its files)."""
    from geosynth.demo.writers import write_index

    write_index(folder, folder.name)


def _with_osm(raw: Path, world: Path) -> Path:
    """OSM as the user brings it (download fetches no OSM): the world's XML file."""
    shutil.copytree(world / "osm", raw / "osm")
    return raw


# --------------------------------------------------------------------------- listings


def test_listing_html_and_index_give_names_urls_and_sizes():
    html = """<html><body><table>
    <tr><th>Name</th><th>Size</th></tr>
    <tr><td><a href="../">Parent</a></td></tr>
    <tr><td><a href="dop10rgbi_32_356_5645_1_nw_2021.jp2">a</a></td><td>1234</td></tr>
    <tr><td><a href="dop10rgbi_32_356_5645_1_nw_2023.jp2">b</a></td><td>99</td></tr>
    <tr><td><a href="dop10rgbi_32_357_5645_1_nw.jp2">c</a></td><td>12 MB</td></tr>
    <tr><td><a href="?C=M;O=A">sort</a></td></tr>
    <tr><td><a href="sub/">sub/</a></td></tr>
    </table></body></html>"""
    listing = parse_listing(html, "https://example.org/dop/dop_jp2_f10")
    files = listing.files
    assert listing.folders == ("https://example.org/dop/dop_jp2_f10/sub/",)
    assert [f.name for f in files] == [
        "dop10rgbi_32_356_5645_1_nw_2021.jp2",
        "dop10rgbi_32_356_5645_1_nw_2023.jp2",
        "dop10rgbi_32_357_5645_1_nw.jp2",
    ]
    assert files[0].url == "https://example.org/dop/dop_jp2_f10/dop10rgbi_32_356_5645_1_nw_2021.jp2"
    assert [f.size for f in files] == [1234, 99, None]
    layout = load_catalog().sources["dop"].layout("tiles")
    by_tile = listing_tiles(files, layout)
    assert by_tile["356_5645"].name.endswith("_2023.jp2")  # the newest flight wins
    assert by_tile["357_5645"].name == "dop10rgbi_32_357_5645_1_nw.jp2"  # year optional
    index = parse_listing("3dm_32_356_5645_1_nw.laz 5000\n\n", "http://h/x/", "index").files
    assert index[0].url == "http://h/x/3dm_32_356_5645_1_nw.laz" and index[0].size == 5000
    with pytest.raises(UsageError, match="unknown listing format"):
        parse_listing("", "http://h/", "yaml")


def test_listings_as_nrw_serves_them_json_and_xml():
    """index.json (datasets -> files -> name, size, timestamp) and index.xml (<file name=..
    size=../>, <folder name=../>), told apart by their content."""
    text = json.dumps({"datasets": [
        {"name": "3dm_kacheln", "files": [
            {"name": "3dm_32_280_5652_1_nw.laz", "size": 103876432,
             "timestamp": "2024-03-01T10:00:00"},
            {"name": "3dm_32_281_5652_1_nw.laz", "size": "99000"}]},
        {"name": "andere", "files": [{"name": "3dm_nw.csv"}]}]})  # fmt: skip
    listing = parse_listing(text, "https://h/hm/3dm_l_las/3dm_l_las/")
    assert [(f.name, f.size) for f in listing.files] == [
        ("3dm_32_280_5652_1_nw.laz", 103876432), ("3dm_32_281_5652_1_nw.laz", 99000),
        ("3dm_nw.csv", None),
    ]  # fmt: skip
    assert listing.files[0].timestamp == "2024-03-01T10:00:00"
    lidar = load_catalog().sources["lidar"].layout()
    assert sorted(listing_tiles(listing.files, lidar)) == ["280_5652", "281_5652"]
    xml = """<?xml version="1.0" encoding="UTF-8"?>
    <opengeodata><folders><folder name="epsg_25832"/></folders>
    <datasets><dataset name="x"><files>
    <file name="dop10rgbi_32288_5736_1_nw_2015.jp2" size="12" timestamp="2016-01-01"/>
    <file name="dop10rgb_32_289_5736_1_nw_2010.jp2" size="13"/>
    </files></dataset></datasets></opengeodata>"""
    listing = parse_listing(xml, "https://h/hist_dop_2015/")
    assert listing.folders == ("https://h/hist_dop_2015/epsg_25832/",)
    dop = load_catalog().sources["dop"].layout("tiles")
    by_tile = listing_tiles(listing.files, dop)  # both of NRW's historic name variants
    assert sorted(by_tile) == ["288_5736", "289_5736"]
    assert sorted(listing_tiles(listing.files, dop, year=2015)) == ["288_5736"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("PK\x03\x04binary", "neither JSON \\(index.json\\), XML \\(index.xml\\) nor an HTML page"),
        ('{"files": []}', "an index.json without 'datasets'"),
        ('{"datasets": [', "not a readable JSON listing"),
        ("<opengeodata><files>", "not a readable XML listing"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><x/>', "DOCTYPE or entities is refused"),
    ],
)
def test_a_listing_nrw_does_not_serve_is_refused_naming_the_url(text, message):
    with pytest.raises(DataError, match=f"^https://h/dop/: .*{message}|^https://h/dop/: {message}"):
        parse_listing(text, "https://h/dop/")


def test_flight_dates_read_german_and_iso_dates(tmp_path):
    csv = tmp_path / "dop_nw.csv"
    csv.write_text(
        "Metadaten DOP10\n\nKachelname;Aktualitaet;Bildflugnummer\n"
        "dop10rgbi_32_356_5645_1_nw_2022;06.05.2022;17\n"
        "dop10rgbi_32_357_5645_1_nw_2023;2023-06-27;42\n"
        "kaputt;;\n",
        encoding="utf-8",
    )
    dates = read_flight_dates(_zip_folder(tmp_path / "dop_meta.zip", [csv]))
    assert dates["356_5645"]["date"] == "2022-05-06" and dates["356_5645"]["flight"] == "17"
    assert dates["357_5645"]["date"] == "2023-06-27" and len(dates) == 2
    csv.write_text("nothing here\n")
    with pytest.raises(DataError, match="Kachelname"):
        read_flight_dates(csv)


# --------------------------------------------------------------------------- which tiles


def test_region_tiles_by_bbox_boundary_and_published_geonrw(tmp_path):
    catalog = load_catalog()
    koeln = catalog.region("cologne")
    chosen, how = region_tiles(koeln, catalog, bbox=[356_500, 5_645_000, 358_000, 5_646_000])
    assert chosen == ["356_5645", "357_5645"] and how == "--bbox"  # edges only touching: out
    frame = gpd.GeoDataFrame(
        {"KN": ["05315000", "05111000"]},
        geometry=[
            box(357_100, 5_645_100, 357_900, 5_646_500),
            box(356_100, 5_645_100, 356_200, 5_645_200),
        ],
        crs="EPSG:25832",
    )
    frame.to_file(tmp_path / "gemeinden.gpkg")
    chosen, how = region_tiles(koeln, catalog, boundary=tmp_path / "gemeinden.gpkg")
    assert chosen == ["357_5645", "357_5646"]  # the feature with Cologne's key only
    frame.to_crs("EPSG:4326").drop(columns="KN").to_file(tmp_path / "any.geojson")
    chosen, _ = region_tiles(koeln, catalog, boundary=tmp_path / "any.geojson")
    assert chosen == ["356_5645", "357_5645", "357_5646"]  # no key field: every polygon
    with pytest.raises(DataError, match="no feature with KN = 05314000"):
        region_tiles(catalog.region("bonn"), catalog, boundary=tmp_path / "gemeinden.gpkg")
    # the published GeoNRW's own tile list for the city, from the folder or the archive
    city = tmp_path / "nrw_dataset" / "koeln"
    city.mkdir(parents=True)
    for name in ("356_5645_rgb.jp2", "356_5645_dem.tif", "356_5645_seg.tif", "357_5646_rgb.jp2"):
        (city / name).write_bytes(b"")
    assert geonrw_tiles(tmp_path / "nrw_dataset", "koeln") == ["356_5645", "357_5646"]
    shutil.make_archive(str(tmp_path / "nrw_dataset"), "gztar", tmp_path, "nrw_dataset")
    assert geonrw_tiles(tmp_path / "nrw_dataset.tar.gz", "koeln") == ["356_5645", "357_5646"]
    chosen, how = region_tiles(koeln, catalog, tiles_from=tmp_path / "nrw_dataset.tar.gz")
    assert chosen == ["356_5645", "357_5646"] and "published GeoNRW" in how
    with pytest.raises(DataError, match="bonn"):
        geonrw_tiles(tmp_path / "nrw_dataset.tar.gz", "bonn")
    with pytest.raises(UsageError, match="need --tiles, --bbox"):
        region_tiles(koeln, catalog)
    # a generated region: its extent in the catalog
    chosen, how = region_tiles(catalog.region("demo"), catalog)
    assert len(chosen) == 8 and chosen[0] == "356_5645" and how == "the catalog's extent of demo"


# --------------------------------------------------------------------------- end to end


def test_download_and_build_tiles_layout(tmp_path, tiles_world, loopback_catalog, http_serve,
                                         monkeypatch):  # fmt: skip
    """Today's NRW: index.json listings, a tile listed in two years (the newest wins), the
    land cover's layers read out of the state-wide zip by range requests; then the build."""
    www = _www(tmp_path, tiles_world)
    published = tmp_path / "published" / "koeln"
    published.mkdir(parents=True)
    for tile in TILES:
        (published / f"{tile}_rgb.jp2").write_bytes(b"")
    with http_serve(www) as srv:
        path, catalog = loopback_catalog(srv.url)
        raw = tmp_path / "raw"
        seen = []
        records, summary = download_region(
            "cologne", raw, catalog=catalog, tiles_from=tmp_path / "published", jobs=3,
            progress=lambda done, total: seen.append((done, total)),
        )  # fmt: skip
        assert summary["tiles"] == TILES and summary["missing"] == {}
        names = sorted(Path(r["path"]).name for r in records)
        # the year in each name comes from the listing: it differs from tile to tile, and
        # 356_5645 is listed in 2020 and 2022
        assert "dop10rgbi_32_356_5645_1_nw_2022.jp2" in names
        assert "dop10rgbi_32_356_5645_1_nw_2020.jp2" not in names
        assert "dop10rgbi_32_357_5645_1_nw_2023.jp2" in names
        assert "3dm_32_357_5645_1_nw.laz" in names and "dop_meta.zip" in names
        assert {"veg01_f.shp", "veg01_f.dbf", "gew01_f.shp"} <= set(names)  # the layers only
        jp2 = raw / "dop" / "dop10rgbi_32_357_5645_1_nw_2023.jp2"
        assert jp2.read_bytes() == (_folder(tiles_world, "dop") / jp2.name).read_bytes()
        tiled = sum(r["bytes"] for r in records if r["source"] != "landcover")
        assert seen[-1] == (tiled, tiled)  # one progress over the bytes of every file
        manifest = json.loads((raw / "manifest.json").read_text())
        dop_url = catalog.sources["dop"].layout().listing
        assert {r["url"] for r in manifest["files"]} >= {f"{dop_url}{jp2.name}"}
        assert manifest["plan"]["tiles"] == TILES
        listings = [r for r, _ in srv.requests if r.endswith("/index.json")]
        assert len(listings) == 2  # dop and lidar, each listed once
        package = catalog.sources["landcover"].url
        assert all(rng for r, rng in srv.requests if package.endswith(r))  # only ranges

        # a rerun downloads nothing: the listings are cached, the files verified by size
        before = len(srv.requests)
        monkeypatch.setenv("GEOSYNTH_CATALOG", str(path))
        result = CliRunner().invoke(cli, ["download", "--region", "koeln", "--dest", str(raw),
                                          "--tiles-from", str(tmp_path / "published")])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "2 tile(s) chosen by the published GeoNRW tiles of koeln" in result.output
        assert len(srv.requests) == before

    _with_osm(raw, tiles_world)
    report = build_region(
        "cologne", tmp_path / "koeln.zarr", source_dir=raw, catalog=catalog,
        modalities=["rgb", "dem", "seg"],
    )  # fmt: skip
    assert report.ok and sorted(report.done) == TILES, report.summary()
    store = open_store(tmp_path / "koeln.zarr")
    flights = {store.tile_ids[i]: store.acquisition(i)["rgb"] for i in range(len(store))}
    assert flights["356_5645"]["date"] == "2022-05-06"  # from dop_nw.csv, not the name
    assert flights["357_5645"]["flight"] == "2023-042"
    assert flights["357_5645"]["source"] == "dop_nw.csv"
    seg = store.read("seg", store.index("356_5645"))
    assert (seg > 0).mean() > 0.9  # the land cover came from the downloaded layers


def test_the_folder_answers_with_xml_when_there_is_no_index_json(tmp_path, tiles_world,
                                                                 loopback_catalog, http_serve):  # fmt: skip
    www = _www(tmp_path, tiles_world)
    for source in ("dop", "lidar"):
        (_nrw(www, load_catalog().sources[source].layout().listing) / "index.json").unlink()
    with http_serve(www) as srv:
        _, catalog = loopback_catalog(srv.url)
        records, _ = download_region("cologne", tmp_path / "raw", catalog=catalog, tiles=TILES)
    assert sorted(r["tile"] for r in records if r["tile"]) == sorted(TILES * 2)
    folder = urlsplit(catalog.sources["dop"].layout().listing).path
    assert (folder + "index.json", None) in srv.requests  # asked first: 404
    assert (folder, None) in srv.requests  # then the folder itself: its index.xml


def test_a_vintage_comes_from_the_current_or_the_historic_folder(tmp_path, tiles_world,
                                                                 loopback_catalog, http_serve):  # fmt: skip
    """--vintage 2020: 356_5645 from the current folder (listed there in 2020 too), 357_5645
    from hist_dop_2020/, whose tiles sit in the epsg_25832/ folder its index.xml names, with
    the historic name that lacks the underscore after the zone."""
    www = _www(tmp_path, tiles_world)
    dop = load_catalog().sources["dop"].layout()
    hist = _nrw(www, dop.history.format(year=2020))
    (hist / "epsg_25832").mkdir(parents=True)
    current = _folder(tiles_world, "dop") / "dop10rgbi_32_357_5645_1_nw_2023.jp2"
    shutil.copyfile(current, hist / "epsg_25832" / "dop10rgbi_32357_5645_1_nw_2020.jp2")
    _relist(hist / "epsg_25832")
    _relist(hist)
    (hist / "index.json").unlink()  # the year folder answers with XML alone
    with http_serve(www) as srv:
        _, catalog = loopback_catalog(srv.url)
        records, summary = download_region("cologne", tmp_path / "raw", catalog=catalog,
                                           tiles=TILES, vintage=2020)  # fmt: skip
        names = sorted(Path(r["path"]).name for r in records if r["source"] == "dop")
        assert names == [
            "dop10rgbi_32357_5645_1_nw_2020.jp2",
            "dop10rgbi_32_356_5645_1_nw_2020.jp2",
        ]
        assert summary["vintage"] == 2020
        assert any("carry no year" in n for n in summary["notes"])  # lidar
        with pytest.raises(DataError, match="no vintage 2011 on the server"):
            download_region("cologne", tmp_path / "raw2", catalog=catalog, tiles=TILES,
                            vintage=2011)  # fmt: skip


def test_a_tile_the_server_lacks_fails_the_download_unless_allowed(
    tmp_path, tiles_world, loopback_catalog, http_serve, monkeypatch
):
    """A requested tile without its point cloud: exit 1 naming it, nothing fetched; with
    --allow-missing the rest comes, the gap is in the manifest, and the build says which tile
    it built without a DEM and why."""
    www = _www(tmp_path, tiles_world)
    lidar = _nrw(www, load_catalog().sources["lidar"].layout().listing)
    (lidar / "3dm_32_357_5645_1_nw.laz").unlink()
    _relist(lidar)
    with http_serve(www) as srv:
        path, _ = loopback_catalog(srv.url)
        monkeypatch.setenv("GEOSYNTH_CATALOG", str(path))
        args = ["download", "--region", "koeln", "--dest", str(tmp_path / "raw"),
                "--tiles", ",".join(TILES)]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert "1 of 2 tile(s) have no point cloud on the server: 357_5645" in result.output
        assert not list((tmp_path / "raw").rglob("*.jp2"))  # nothing half-done
        result = CliRunner().invoke(cli, [*args, "--allow-missing"])
        assert result.exit_code == 0, result.output
        assert "missing (allowed)" in result.output
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert manifest["plan"]["missing"] == {"lidar": ["357_5645"]}
    _with_osm(tmp_path / "raw", tiles_world)
    report = build_region("koeln", tmp_path / "k.zarr", source_dir=tmp_path / "raw",
                          modalities=["rgb", "dem"], catalog=load_catalog(path))  # fmt: skip
    assert report.ok and sorted(report.done) == TILES
    assert "the download found no point cloud for 1 tile(s)" in " ".join(report.notes)
    assert "download found none" in report.skipped["357_5645"]["dem"]


def test_download_and_build_packages_layout(tmp_path, packages_world, loopback_catalog,
                                            http_serve):  # fmt: skip
    """The authors' 2020 layout: one zip per municipality and source, named with umlauts."""
    www = _www(tmp_path, packages_world)
    catalog = load_catalog()
    koeln, demo = catalog.region("koeln"), catalog.region("demo")
    for source in ("dop", "lidar"):
        spec = catalog.sources[source]
        _nrw(www, demo.source_url(spec, "packages")).rename(
            _nrw(www, koeln.source_url(spec, "packages"))
        )
    with http_serve(www) as srv:
        _, catalog = loopback_catalog(srv.url)
        raw = tmp_path / "raw"
        records, summary = download_region("cologne", raw, catalog=catalog, layout="packages")
        dop_url = koeln.source_url(catalog.sources["dop"], "packages")
        assert (urlsplit(dop_url).path, None) in srv.requests
    assert summary["layout"] == "packages"
    assert [r["source"] for r in records][:2] == ["dop", "lidar"]
    assert {r["source"] for r in records[2:]} == {"landcover"}
    assert records[0]["url"].endswith("/dop_05315000_K%C3%B6ln_EPSG25832_JPEG2000.zip")
    assert (raw / "dop" / "dop_05315000_Köln_EPSG25832_JPEG2000").is_dir()  # extracted
    _with_osm(raw, packages_world)
    report = build_region("cologne", tmp_path / "k.zarr", source_dir=raw, catalog=catalog,
                          modalities=["rgb", "dem"])  # fmt: skip
    assert report.ok and sorted(report.done) == TILES
    # no dop_nw.csv in a package: the year of the file name is the flight's
    store = open_store(tmp_path / "k.zarr")
    assert store.acquisition(0)["rgb"] == {"year": 2022, "date": None, "source": "file name"}


def test_official_boundary_chooses_the_tiles(tmp_path, tiles_world, loopback_catalog, http_serve):
    """Without a choice, the municipality's polygon from the catalog's boundary source (its
    feature whose key is the region's AGS) decides which tiles are fetched."""
    boundary = gpd.GeoDataFrame(
        {"KN": ["05315000", "05111000"], "GN": ["Köln", "Düsseldorf"]},
        geometry=[
            box(357_050, 5_645_100, 357_950, 5_646_900),
            box(356_100, 5_645_100, 356_900, 5_645_900),
        ],
        crs="EPSG:25832",
    )
    www = _www(tmp_path, tiles_world, boundary=boundary)
    with http_serve(www) as srv:
        _, catalog = loopback_catalog(srv.url)
        records, summary = download_region("cologne", tmp_path / "raw", catalog=catalog,
                                           allow_missing=True)  # fmt: skip
    assert summary["tiles"] == ["357_5645", "357_5646"]
    assert summary["chosen_by"] == "the boundary of koeln (AGS 05315000)"
    assert summary["missing"] == {"dop": ["357_5646"], "lidar": ["357_5646"]}  # not listed
    tiled = sorted(r["tile"] for r in records if r["tile"])
    assert tiled == ["357_5645", "357_5645"]  # its orthophoto and its point cloud


def test_build_chooses_tiles_and_reports_the_ones_without_orthophoto(tmp_path, tiles_world):
    """build-geonrw --bbox / --boundary on local files: the chosen tiles with an orthophoto
    are built, the others are named in the report."""
    out = tmp_path / "demo.zarr"
    result = CliRunner().invoke(cli, [
        "build-geonrw", "--region", "demo", "--source-dir", str(tiles_world), "--out", str(out),
        "--modalities", "rgb", "--bbox", "357100,5645100,358500,5645900",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 tile(s) built" in result.output and "1 excluded" in result.output
    report = json.loads(out.with_name("demo.zarr.report.json").read_text())
    assert report["done"] == ["357_5645"]
    assert "no orthophoto" in report["excluded"]["358_5645"]
    result = CliRunner().invoke(cli, [
        "build-geonrw", "--region", "demo", "--source-dir", str(tiles_world),
        "--out", str(tmp_path / "x.zarr"), "--bbox", "400000,5000000,401000,5001000",
    ])  # fmt: skip
    assert result.exit_code == 1 and "none of the 1 tile(s) chosen by --bbox" in result.output


# --------------------------------------------------------------------------- downloads


def test_redirects_must_stay_on_catalog_hosts(tmp_path, http_serve):
    from geosynth.ingest.download import Download, fetch

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "file.bin").write_bytes(b"x" * 5000)
    with http_serve(tmp_path / "b") as mirror:
        hops = {"/file.bin": "/hop.bin", "/hop.bin": f"{mirror.url}/file.bin"}
        with http_serve(tmp_path / "a", redirects=hops) as origin:
            host, other = origin.url[7:], mirror.url[7:]
            # the second hop leaves the catalog's hosts: refused, nothing written, no retry
            with pytest.raises(DataError, match=f"{other!r} is not a host"):
                fetch(f"{origin.url}/file.bin", tmp_path / "out.bin", allowed_hosts=[host])
            assert not (tmp_path / "out.bin").exists() and len(origin.requests) == 2
            assert mirror.requests == []
            # both hosts in the catalog: followed to the end, the final URL recorded
            records = download_many(
                [Download("dop", f"{origin.url}/file.bin", "dop/file.bin")], tmp_path / "dest",
                allowed_hosts=[host, other],
            )  # fmt: skip
    assert records[0]["final_url"] == f"{mirror.url}/file.bin" and records[0]["bytes"] == 5000


def test_download_many_verifies_the_listed_size(tmp_path, http_serve):
    from geosynth.ingest.download import Download

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "a.laz").write_bytes(b"a" * 1000)
    with http_serve(tmp_path / "www") as srv:
        host = srv.url[7:]
        with pytest.raises(DataError, match="a.laz"):
            download_many([Download("lidar", f"{srv.url}/a.laz", "a.laz", size=999)],
                          tmp_path / "dest", allowed_hosts=[host], retries=0)  # fmt: skip
    assert not (tmp_path / "dest" / "a.laz").exists()
    with pytest.raises(UsageError, match="--jobs"):
        download_many([], tmp_path, allowed_hosts=[], jobs=0)


def test_a_listed_file_on_a_foreign_host_is_refused(tmp_path, loopback_catalog, http_serve,
                                                   tiles_world):  # fmt: skip
    www = _www(tmp_path, tiles_world)
    index = _nrw(www, load_catalog().sources["dop"].layout().listing) / "index.json"
    name = "dop10rgbi_32_356_5645_1_nw_2022.jp2"
    index.write_text(
        index.read_text().replace(f'"name": "{name}"', f'"name": "http://evil.example/{name}"')
    )
    with http_serve(www) as srv:
        _, catalog = loopback_catalog(srv.url)
        with pytest.raises(UsageError, match="'evil.example': not a host of the data catalog"):
            download_region("cologne", tmp_path / "raw", catalog=catalog, tiles=TILES)
    assert not list((tmp_path / "raw").rglob("*.jp2"))


# --------------------------------------------------------------------------- TerraSAR-X list


def test_catalog_lists_the_authors_tsx_scenes_and_sar_says_which_are_listed(
    tmp_path, tiles_world, loopback_catalog, monkeypatch
):
    result = CliRunner().invoke(cli, ["catalog", "--sar", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 49 and len({r["product"] for r in rows}) == 49
    assert sum(r["orbit"] == "descending" for r in rows) == 1
    assert all(r["product"].startswith("TSX1_SAR__EEC_SE___SL_S_SRA_") for r in rows)
    scenes = sorted(p for p in (tiles_world / "sar").iterdir() if p.is_dir())

    def edit(data):  # the world's first scene joins the list
        data["tsx_scenes"].append({"product": scenes[0].name, "orbit": "ascending"})

    path, _ = loopback_catalog("http://127.0.0.1:9", edit)
    monkeypatch.setenv("GEOSYNTH_CATALOG", str(path))
    result = CliRunner().invoke(cli, ["sar", *map(str, scenes[:2]), "--tile", "356_5645",
                                      "--out", str(tmp_path / "sar.tif")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{scenes[0].name}: in the catalog's scene list" in result.output
    assert f"{scenes[1].name}: NOT in the catalog's scene list" in result.output


def test_with_osm_fetches_the_state_extract_checked_by_its_md5(tmp_path, tiles_world,
                                                              loopback_catalog, http_serve):  # fmt: skip
    import hashlib

    www = _www(tmp_path, tiles_world)
    (www / "osm").mkdir()
    pbf = www / "osm" / "nordrhein-westfalen-latest.osm.pbf"
    pbf.write_bytes(b"\x00\x00\x00\x0d" + bytes(range(256)) * 40)
    md5 = hashlib.md5(pbf.read_bytes()).hexdigest()
    (www / "osm" / f"{pbf.name}.md5").write_text(f"{md5}  {pbf.name}\n")
    with http_serve(www) as srv:
        _, catalog = loopback_catalog(srv.url)
        records, _ = download_region("cologne", tmp_path / "raw", catalog=catalog,
                                     tiles=TILES[:1], with_osm=True)  # fmt: skip
        assert (tmp_path / "raw" / "osm" / pbf.name).read_bytes() == pbf.read_bytes()
        assert [r["source"] for r in records].count("osm") == 1
        (www / "osm" / f"{pbf.name}.md5").write_text(f"{'0' * 32}  {pbf.name}\n")
        with pytest.raises(DataError, match="md5 checksum mismatch"):
            download_region("koeln", tmp_path / "raw2", catalog=catalog, tiles=TILES[:1],
                            with_osm=True, retries=0)  # fmt: skip
    assert not (tmp_path / "raw2" / "osm" / pbf.name).exists()
