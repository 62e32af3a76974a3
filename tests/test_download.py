"""Downloads against a real HTTP server on 127.0.0.1; safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

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


def test_download_region_from_loopback(tmp_path, loopback_catalog, monkeypatch, http_serve):
    """The packages layout: a dropped connection is resumed, the archives extracted, and a
    rerun downloads nothing."""
    www = tmp_path / "www"
    lidar_zip = "3dm_l_las_05315000_Köln_EPSG25832.zip"
    for sub, name, member in (
        ("dop", "dop_05315000_Köln_EPSG25832_JPEG2000.zip", "dop10rgbi_32_356_5645_1_nw_2024.jp2"),
        ("lidar", lidar_zip, "3dm_32_356_5645_1_nw.laz"),
        ("landcover", "basis-dlm_EPSG25832_Shape.zip", "veg01_f.shp"),
    ):
        (www / sub).mkdir(parents=True)
        _zip(www / sub / name, {member: member.encode() * 1000})
    drop = {"/lidar/3dm_l_las_05315000_K%C3%B6ln_EPSG25832.zip": 500}
    with http_serve(www, drop_after=drop) as srv:
        path, catalog = loopback_catalog(srv.url)
        records, _ = download_region(
            "cologne", tmp_path / "raw", catalog=catalog, layout="packages", backoff=0.01
        )
        assert [r["source"] for r in records] == ["dop", "lidar", "landcover"]
        extracted = tmp_path / "raw" / "lidar" / lidar_zip.removesuffix(".zip")
        assert (
            extracted / "3dm_32_356_5645_1_nw.laz"
        ).read_bytes() == b"3dm_32_356_5645_1_nw.laz" * 1000
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
    assert result.exit_code == 2 and "generated offline" in result.output
