"""build-geonrw on a small demo world: stores, resume after SIGKILL, bad tiles, dask, stats."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.ingest.nrw import build_region, discover_sources
from geosynth.store import open_store, verify

TILES = ["356_5645", "357_5645"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 2 x 1 demo world at low resolution (raw provider files only)."""
    from geosynth.demo import generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, tiles=(2, 1), seed=3, dop_resolution=1.0, lidar_density=1.0)
    return root


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    """The uninterrupted reference build."""
    out = tmp_path_factory.mktemp("ref") / "demo.zarr"
    report = build_region("demo", out, source_dir=world)
    return out, report


def test_build_writes_a_sound_store(built):
    out, report = built
    assert report.ok and report.done == TILES
    store = open_store(out)
    assert store.tiles() == [0, 1]
    assert verify(store) == []
    assert store.tile_shape == (1000, 1000)
    i = store.index("356_5645")
    assert store.transform(i).c == 356_000 and store.transform(i).f == 5_646_000
    seg = store.read("seg", i)
    assert 0 < len(np.unique(seg)) <= 11
    dem = store.read("dem", i)
    assert np.nanmin(dem) >= 40 and np.nanmax(dem) < 200
    assert set(store.sources(i)) >= {"rgb", "dem", "seg"}
    saved = json.loads((out.parent / "demo.zarr.report.json").read_text())
    assert saved["done"] == TILES and saved["failed"] == {}


def test_rerun_skips_complete_tiles(built):
    out, _ = built
    report = build_region(
        "demo", out, source_dir=open_store(out).provenance["parameters"]["source_dir"]
    )
    assert report.done == [] and report.already_complete == TILES


def test_interrupted_build_reports_what_it_finished(world, tmp_path, caplog):
    out = tmp_path / "i.zarr"

    def stop_after_first(record):
        raise KeyboardInterrupt

    with caplog.at_level("WARNING", logger="geosynth"), pytest.raises(KeyboardInterrupt):
        build_region("demo", out, source_dir=world, modalities=["rgb"], progress=stop_after_first)
    assert f"interrupted: 1 of 2 tiles complete in {out}; rerun the same command" in caplog.text
    report = json.loads((tmp_path / "i.zarr.report.json").read_text())
    assert report["interrupted"] is True and report["done"] == [TILES[0]]
    assert report["tiles_planned"] == 2 and report["failed"] == {}
    resumed = build_region("demo", out, source_dir=world, modalities=["rgb"])
    assert resumed.ok and resumed.already_complete == [TILES[0]] and resumed.done == [TILES[1]]
    assert "1 tile(s) built, 1 already complete" in resumed.summary()


def test_discover_by_catalog_names(world):
    found = discover_sources(world, load_catalog())
    assert sorted(found.dop) == TILES and sorted(found.lidar) == TILES
    assert found.vectors and found.osm
    assert all(os.path.basename(p).startswith("TSX1_SAR__EEC") for p in found.sar)


def _copy_world(world, dest):
    shutil.copytree(world, dest)
    discover_sources(dest, load_catalog())  # extract the packages
    return dest


def test_bad_tiles_fail_alone(world, tmp_path):
    src = _copy_world(world, tmp_path / "bad")
    found = discover_sources(src, load_catalog())
    jp2 = found.dop["356_5645"][0]
    with open(jp2, "r+b") as f:
        f.truncate(os.path.getsize(jp2) // 3)
    broken_osm = src / "osm" / "extra_357_5645.osm"
    broken_osm.write_text("<osm version='0.6'><node id='1' lat='50.9' lon=")
    result = CliRunner().invoke(
        cli,
        [
            "build-geonrw",
            "--region",
            "demo",
            "--source-dir",
            str(src),
            "--out",
            str(tmp_path / "bad.zarr"),
            "--modalities",
            "rgb,dem,seg",
        ],
    )
    assert result.exit_code == 1
    assert "FAILED 356_5645" in result.output and os.path.basename(jp2) in result.output
    assert "FAILED 357_5645" in result.output and "extra_357_5645.osm" in result.output
    report = json.loads((tmp_path / "bad.zarr.report.json").read_text())
    assert set(report["failed"]) == set(TILES)


def test_truncated_laz_fails_its_tile_only(world, tmp_path):
    src = _copy_world(world, tmp_path / "badlaz")
    laz = discover_sources(src, load_catalog()).lidar["357_5645"][0]
    with open(laz, "r+b") as f:
        f.truncate(os.path.getsize(laz) // 2)
    report = build_region("demo", tmp_path / "b.zarr", source_dir=src, modalities=["rgb", "dem"])
    assert report.done == ["356_5645"]
    assert (
        list(report.failed) == ["357_5645"] and os.path.basename(laz) in report.failed["357_5645"]
    )


def test_refusals_before_any_work(world, tmp_path, built):
    runner = CliRunner()
    r = runner.invoke(cli, ["build-geonrw", "--region", "atlantis"])
    assert r.exit_code == 2 and "unknown region" in r.output
    r = runner.invoke(
        cli,
        [
            "build-geonrw",
            "--region",
            "koeln",
            "--source-dir",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "k.zarr"),
        ],
    )
    assert r.exit_code == 1 and "does not exist" in r.output
    r = runner.invoke(
        cli,
        [
            "build-geonrw",
            "--region",
            "demo",
            "--source-dir",
            str(world),
            "--tiles",
            "999_9999",
            "--out",
            str(tmp_path / "x.zarr"),
        ],
    )
    assert r.exit_code == 2 and "no orthophoto for tile(s) 999_9999" in r.output
    # a store built with another catalog
    other = tmp_path / "other.zarr"
    shutil.copytree(built[0], other)
    import zarr

    g = zarr.open_group(other, mode="r+")
    prov = dict(g.attrs["geosynth:provenance"])
    prov["catalog_sha256"] = "0" * 64
    g.attrs["geosynth:provenance"] = prov
    r = runner.invoke(
        cli, ["build-geonrw", "--region", "demo", "--source-dir", str(world), "--out", str(other)]
    )
    assert r.exit_code == 1 and "another catalog version" in r.output
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "k.zarr").exists()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.5, 4.0, 7.0])
def test_sigkill_then_rerun_gives_identical_arrays(
    world, built, tmp_path, delay, assert_same_store
):
    out = tmp_path / "k.zarr"
    cmd = [
        sys.executable,
        "-m",
        "geosynth",
        "-q",
        "build-geonrw",
        "--region",
        "demo",
        "--source-dir",
        str(world),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_store(out, built[0])


@pytest.mark.slow
def test_dask_local_cluster(world, built, tmp_path, assert_same_store):
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = CliRunner().invoke(
            cli,
            [
                "build-geonrw",
                "--region",
                "demo",
                "--source-dir",
                str(world),
                "--out",
                str(tmp_path / "d.zarr"),
                "--scheduler",
                cluster.scheduler_address,
            ],
        )
    assert result.exit_code == 0, result.output
    assert_same_store(tmp_path / "d.zarr", built[0])


def test_stats_png_and_csv(built, tmp_path):
    out = tmp_path / "stats.png"
    result = CliRunner().invoke(cli, ["stats", str(built[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "stats.csv").read_text().splitlines()
    assert rows[0].startswith("class_id,class,")
    assert len(rows) == 11
    shares = np.array([[float(v) for v in r.split(",")[2:]] for r in rows[1:]])
    np.testing.assert_allclose(shares.sum(axis=0), 1.0, atol=1e-5)


def test_xarray_and_rioxarray_read_the_built_store_without_geosynth(built):
    """What a downstream user of xarray and rioxarray sees; the reader imports no geosynth."""
    out, _ = built
    code = f"""
import json, sys, warnings
import xarray as xr, rioxarray  # noqa: F401
warnings.simplefilter("error", RuntimeWarning)  # incl. "no consolidated metadata"
tree = xr.open_datatree({str(out)!r}, engine="zarr")
tiles = {{}}
for name, node in tree["tiles"].children.items():
    ds = xr.open_zarr({str(out)!r} + "/tiles/" + name)
    assert set(ds.data_vars) >= {{"rgb", "dem", "seg"}}, ds
    assert ds.rgb.dims == ("rgb_band", "y", "x") and ds.dem.dims == ("dem_band", "y", "x")
    assert list(ds.rgb_band.values) == ["red", "green", "blue"]
    assert ds.seg.attrs["flag_meanings"].split()[0] == "unlabelled"
    tiles[name] = {{"epsg": ds.rio.crs.to_epsg(), "transform": list(ds.rio.transform())[:6],
                   "node": sorted(node.data_vars), "x0": float(ds.x[0]), "shape": list(ds.seg.shape)}}
root = xr.open_zarr({str(out)!r})
print(json.dumps({{"tiles": tiles, "ids": [str(t) for t in root.tile_id.values],
                  "geosynth": [m for m in sys.modules if m.startswith("geosynth")]}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["geosynth"] == [] and seen["ids"] == TILES
    store = open_store(out)
    assert sorted(seen["tiles"]) == TILES
    for tile_id, got in seen["tiles"].items():
        i = store.index(tile_id)
        assert got["epsg"] == 25832 and got["shape"] == [1000, 1000]
        assert got["transform"] == pytest.approx(list(store.transform(i))[:6])
        assert got["x0"] == pytest.approx(store.transform(i).c + 0.5)
        assert {"rgb", "dem", "seg"} <= set(got["node"])


def test_sar_mixes_no_geometries_and_the_conditions_say_which_one(built):
    """356_5645 lies under an ascending scene at 34 degrees, a descending one at 41 and an
    ascending one at 27: its SAR comes from one of them, not their mean, and the
    acquisition metadata (hence ``--conditions``) names that one."""
    from geosynth.ml.data.conditions import describe, tile_conditions

    out, _ = built
    store = open_store(out)
    i = store.index("356_5645")
    scenes = store.acquisition(i)["sar"]
    assert len(scenes) == 3 and {s["orbit"] for s in scenes} == {"ascending", "descending"}
    gave = [s for s in scenes if s["used_pixels"] > 0]
    assert len(gave) == 1
    assert sum(s["used_pixels"] for s in scenes) == int(store.read("sar_valid", i).sum())
    names = ("incidence", "orbit")
    values = describe(names, tile_conditions(store.acquisition(i), names, "356_5645"))
    assert values["orbit"] == (1.0 if gave[0]["orbit"] == "ascending" else -1.0)
    assert values["incidence_deg"] == pytest.approx(gave[0]["incidence_deg"])


def test_the_summary_names_the_tiles_a_modality_was_skipped_on():
    from geosynth.ingest.run import IngestReport

    report = IngestReport("demo", "geonrw", "s.zarr", "world", 3, done=["a", "b", "c"],
                          skipped={"b": {"sar": "valid SAR fraction 0.565 is below 0.7"}})  # fmt: skip
    line = next(ln for ln in report.summary().splitlines() if "skipped" in ln)
    assert line == "  sar skipped on 1 tile(s) (b), e.g. valid SAR fraction 0.565 is below 0.7"
