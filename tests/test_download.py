"""Downloads against a real HTTP server on 127.0.0.1; safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.ingest.download import download_region, fetch, safe_extract


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def payload(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    data = bytes(range(256)) * 4000  # ~1 MB
    (root / "big.bin").write_bytes(data)
    return root, data


def test_fetch_resumes_after_dropped_connection(tmp_path, payload, http_serve):
    root, data = payload
    with http_serve(root, drop_after={"/big.bin": 300_000}) as srv:
        got = fetch(
            f"{srv.url}/big.bin",
            tmp_path / "out" / "big.bin",
            allowed_hosts=[srv.url[7:]],
            md5=hashlib.md5(data).hexdigest(),
            backoff=0.01,
        )
    assert got.path.read_bytes() == data
    assert got.attempts == 2
    # the second request continued where the first one broke off
    assert srv.requests == [("/big.bin", None), ("/big.bin", "bytes=300000-")]
    assert not (tmp_path / "out" / "big.bin.part").exists()


def test_fetch_restarts_when_server_ignores_range(tmp_path, payload, http_serve):
    root, data = payload
    with http_serve(root, ranges=False, drop_after={"/big.bin": 1000}) as srv:
        got = fetch(
            f"{srv.url}/big.bin",
            tmp_path / "big.bin",
            allowed_hosts=[srv.url[7:]],
            size=len(data),
            backoff=0.01,
        )
    assert got.path.read_bytes() == data


def test_fetch_checksum_mismatch_leaves_nothing(tmp_path, payload, http_serve):
    root, _ = payload
    with http_serve(root) as srv, pytest.raises(DataError, match="md5 checksum mismatch"):
        fetch(f"{srv.url}/big.bin", tmp_path / "big.bin", allowed_hosts=[srv.url[7:]], md5="0" * 32)
    assert list(tmp_path.glob("big.bin*")) == []


def test_fetch_refuses_foreign_hosts_and_404(tmp_path, payload, http_serve):
    root, _ = payload
    with pytest.raises(UsageError, match="not a host of the data catalog"):
        fetch("http://example.org/x.zip", tmp_path / "x.zip", allowed_hosts=["127.0.0.1:1"])
    with http_serve(root) as srv, pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{srv.url}/missing.zip", tmp_path / "m.zip", allowed_hosts=[srv.url[7:]])
    assert not (tmp_path / "m.zip").exists()


def test_safe_extract_refuses_escaping_zip(tmp_path):
    evil = _zip(tmp_path / "evil.zip", {"ok.txt": b"fine", "../escaped.txt": b"gotcha"})
    with pytest.raises(DataError, match=r"'\.\./escaped\.txt' leaves the target"):
        safe_extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.zip"]
    absolute = _zip(tmp_path / "abs.zip", {"/etc/passwd2": b"x"})
    with pytest.raises(DataError, match="absolute path"):
        safe_extract(absolute, tmp_path / "out")


def test_safe_extract_refuses_links_and_bombs(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../outside"
        tf.addfile(info)
    (tmp_path / "link.tar").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="leaves the target"):
        safe_extract(tmp_path / "link.tar", tmp_path / "out")
    zlink = tmp_path / "zlink.zip"
    with zipfile.ZipFile(zlink, "w") as zf:
        info = zipfile.ZipInfo("sneaky")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc")
    with pytest.raises(DataError, match="symbolic link"):
        safe_extract(zlink, tmp_path / "out")
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": b"\0" * 100_000})
    with pytest.raises(DataError, match="above the cap"):
        safe_extract(bomb, tmp_path / "out", max_bytes=10_000)
    assert not (tmp_path / "out").exists()
    good = _zip(tmp_path / "good.zip", {"a/b.txt": b"hello"})
    files = safe_extract(good, tmp_path / "out")
    assert [p.read_bytes() for p in files] == [b"hello"]


def _nrw(www, url):
    """Where a URL of NRW's server lies in a web root laid out as the server."""
    from urllib.parse import unquote, urlsplit

    path = www / unquote(urlsplit(url).path).lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_download_region_from_loopback(tmp_path, loopback_catalog, monkeypatch, http_serve):
    """The packages layout: a dropped connection is resumed, the archives extracted, the land
    cover's layer read out of its zip, and a rerun downloads nothing."""
    from geosynth.catalog import load_catalog

    cat = load_catalog()
    koeln = cat.region("koeln")
    www = tmp_path / "www"
    lidar_url = koeln.source_url(cat.sources["lidar"])
    for url, member in (
        (koeln.source_url(cat.sources["dop"]), "dop10rgbi_32_356_5645_1_nw_2024.jp2"),
        (lidar_url, "3dm_32_356_5645_1_nw.laz"),
        (cat.sources["landcover"].url, "veg01_f.shp"),
    ):
        from urllib.parse import unquote

        _zip(_nrw(www, unquote(url)), {member: member.encode() * 1000})
    drop = {lidar_url.split("opengeodata.nrw.de", 1)[1]: 500}
    with http_serve(www, drop_after=drop) as srv:
        path, catalog = loopback_catalog(srv.url)
        records, _ = download_region(
            "cologne", tmp_path / "raw", catalog=catalog, layout="packages", backoff=0.01
        )
        assert [r["source"] for r in records] == ["dop", "lidar", "landcover"]
        extracted = tmp_path / "raw" / "lidar" / "3dm_l_las_05315000_Köln_EPSG25832"
        assert (
            extracted / "3dm_32_356_5645_1_nw.laz"
        ).read_bytes() == b"3dm_32_356_5645_1_nw.laz" * 1000
        layer = tmp_path / "raw" / "landcover" / "basis-dlm_EPSG25832_Shape" / "veg01_f.shp"
        assert layer.read_bytes() == b"veg01_f.shp" * 1000
        n_requests = len(srv.requests)
        # a rerun downloads nothing
        monkeypatch.setenv("GEOSYNTH_CATALOG", str(path))
        result = CliRunner().invoke(
            cli,
            ["download", "--region", "koeln", "--dest", str(tmp_path / "raw"),
             "--layout", "packages"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(srv.requests) == n_requests


def test_download_cli_refusals(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["download", "--region", "atlantis", "--dest", str(tmp_path)])
    assert result.exit_code == 2 and "unknown region 'atlantis'" in result.output
    result = runner.invoke(cli, ["download", "--region", "demo", "--dest", str(tmp_path)])
    assert result.exit_code == 2 and "generated locally" in result.output
    assert "--mirror" in result.output


# --------------------------------------------------------------------------- a busy server


def test_a_busy_server_is_waited_for_as_it_asks(tmp_path, payload, http_serve):
    root, data = payload
    waits = []
    with http_serve(root, busy={"/big.bin": (503, 1)}) as srv:
        t0 = time.perf_counter()
        got = fetch(f"{srv.url}/big.bin", tmp_path / "big.bin", allowed_hosts=[srv.url[7:]],
                    backoff=0.01, on_wait=waits.append)  # fmt: skip
        waited = time.perf_counter() - t0
    assert got.path.read_bytes() == data and got.attempts == 2
    assert waited >= 1.0  # Retry-After: 1, not the 0.01 s backoff
    assert waits == ["server busy (HTTP 503): waiting 1 s as it asks"]
    busy = pytest.raises(DataError, match=r"HTTP 429\) and asks to wait 100000 s")
    with http_serve(root, busy={"/big.bin": (429, 100_000)}) as srv, busy:
        fetch(f"{srv.url}/big.bin", tmp_path / "b2.bin", allowed_hosts=[srv.url[7:]])
    assert not (tmp_path / "b2.bin").exists() and not (tmp_path / "b2.bin.part").exists()


def test_a_file_shorter_than_listed_fails_and_leaves_nothing(tmp_path, payload, http_serve):
    root, data = payload
    with (
        http_serve(root) as srv,
        pytest.raises(DataError, match=f"expected {len(data) + 10} bytes"),
    ):
        fetch(f"{srv.url}/big.bin", tmp_path / "big.bin", allowed_hosts=[srv.url[7:]],
              size=len(data) + 10)  # fmt: skip
    assert list(tmp_path.glob("big.bin*")) == []


# --------------------------------------------------------------------------- layers of a zip


def _shape_package(path, layers, filler=0):
    """A zip like NRW's land-cover package: a folder of shapefiles written by GDAL (through
    geopandas), deflated, plus ``filler`` bytes of another member the build never needs."""
    import geopandas as gpd
    from shapely.geometry import box

    folder = path.parent / "shapes"
    folder.mkdir()
    for i, layer in enumerate(layers):
        frame = gpd.GeoDataFrame({"OBJART_TXT": ["AX_Wald"]},
                                 geometry=[box(i, 0, i + 1, 1)], crs="EPSG:25832")  # fmt: skip
        frame.to_file(folder / f"{layer}.shp")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"basis-dlm/{f.name}")
        if filler:
            rng = np.random.default_rng(0)
            zf.writestr("basis-dlm/rel01_l.shp", rng.bytes(filler))
    return path


def test_only_the_needed_layers_come_by_range_requests(tmp_path, http_serve):
    from geosynth.ingest.download import fetch_layers

    www = tmp_path / "www"
    www.mkdir()
    package = _shape_package(www / "lc.zip", ["veg01_f", "gew01_f"], filler=3_000_000)
    with http_serve(www) as srv:
        got = fetch_layers(f"{srv.url}/lc.zip", tmp_path / "raw", ["veg01_f", "gew01_f", "ver04_f"],
                           allowed_hosts=[srv.url[7:]])  # fmt: skip
        ranges = [r for _, r in srv.requests]
    names = sorted(f["path"].name for f in got["files"])
    assert names == sorted(f"{la}.{e}" for la in ("veg01_f", "gew01_f")
                           for e in ("cpg", "dbf", "prj", "shp", "shx"))  # fmt: skip
    assert got["absent"] == ["ver04_f"] and got["how"].startswith("range requests")
    assert all(r and r.startswith("bytes=") for r in ranges)
    fetched = sum(int(r.split("-")[1]) - int(r[6:].split("-")[0]) + 1 for r in ranges)
    assert fetched < package.stat().st_size / 2  # not the filler
    import geopandas as gpd

    frame = gpd.read_file(tmp_path / "raw" / "lc" / "veg01_f.shp")  # GDAL reads what we wrote
    assert list(frame["OBJART_TXT"]) == ["AX_Wald"] and frame.crs.to_epsg() == 25832


def test_a_server_without_ranges_gets_the_whole_zip_once(tmp_path, http_serve, caplog):
    from geosynth.ingest.download import fetch_layers

    www = tmp_path / "www"
    www.mkdir()
    _shape_package(www / "lc.zip", ["veg01_f"])
    with http_serve(www, ranges=False) as srv:
        got = fetch_layers(f"{srv.url}/lc.zip", tmp_path / "raw", ["veg01_f"],
                           allowed_hosts=[srv.url[7:]])  # fmt: skip
    assert got["how"] == "whole archive (the server ignores range requests)"
    assert "ignores range requests" in caplog.text
    assert (tmp_path / "raw" / "lc" / "veg01_f.dbf").is_file()


def test_a_zip_without_the_layers_is_refused_naming_them(tmp_path, http_serve):
    from geosynth.ingest.download import fetch_layers

    www = tmp_path / "www"
    www.mkdir()
    _shape_package(www / "lc.zip", ["rel01_l"])
    with http_serve(www) as srv, pytest.raises(DataError, match=r"lc\.zip: none of the land"):
        fetch_layers(f"{srv.url}/lc.zip", tmp_path / "raw", ["veg01_f", "gew01_f"],
                     allowed_hosts=[srv.url[7:]])  # fmt: skip
    assert not (tmp_path / "raw" / "lc").exists() or not any((tmp_path / "raw" / "lc").iterdir())


def test_a_name_that_does_not_resolve_is_not_retried_and_leaves_no_folder(
    tmp_path, monkeypatch, loopback_catalog
):
    """Offline (or a host that does not exist): one clear error at once, no five retries,
    and the folders the failed download made are gone."""
    slept = []
    monkeypatch.setattr(time, "sleep", lambda s: slept.append(s))
    with pytest.raises(DataError, match="cannot resolve nowhere.invalid"):
        fetch("http://nowhere.invalid/a.zip", tmp_path / "dl" / "a.zip",
              allowed_hosts={"nowhere.invalid"}, retries=5)  # fmt: skip
    assert slept == []
    path, _ = loopback_catalog("http://nowhere.invalid")
    dest = tmp_path / "raw" / "koeln"
    monkeypatch.setenv("GEOSYNTH_CATALOG", str(path))
    result = CliRunner().invoke(cli, ["download", "--region", "cologne", "--dest", str(dest),
                                      "--tiles", "356_5645"])  # fmt: skip
    assert result.exit_code == 1 and "cannot resolve nowhere.invalid" in result.output
    assert not dest.exists() and slept == []
    (tmp_path / "kept").mkdir()  # a folder that was there stays
    with pytest.raises(DataError):
        download_region("cologne", tmp_path / "kept", catalog=_catalog(path), tiles=["356_5645"])
    assert (tmp_path / "kept").is_dir()


def test_overpass_fails_at_once_offline():
    from geosynth.sources.osm.features import _check_resolves

    with pytest.raises(DataError, match="cannot resolve overpass.invalid.*--source-dir"):
        _check_resolves("https://overpass.invalid/api")


def _catalog(path):
    from geosynth.catalog import load_catalog

    return load_catalog(path)
