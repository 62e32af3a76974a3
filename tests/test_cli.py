"""Exit codes and start-up of the command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from geosynth import __version__
from geosynth.cli import cli

HEAVY = ("torch", "osmnx", "rasterio", "zarr", "geopandas", "xarray", "matplotlib", "numba")


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "geosynth", *args], capture_output=True, text=True, timeout=120
    )


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from geosynth.cli import cli; "
        "cli.main(['--help'], standalone_mode=False); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_version_and_help():
    result = run("--version")
    assert result.returncode == 0 and __version__ in result.stdout
    result = run("--help")
    assert result.returncode == 0
    assert "catalog" in result.stdout and "verify" in result.stdout


def test_bad_option_exits_2_with_message():
    result = run("--bogus")
    assert result.returncode == 2
    assert "No such option: --bogus" in result.stderr or "No such option '--bogus'" in result.stderr


def test_missing_store_exits_1_naming_the_path(tmp_path):
    missing = tmp_path / "nothing.zarr"
    for command in ("info", "verify"):
        result = run(command, str(missing))
        assert result.returncode == 1
        assert f"no store at {missing}" in result.stderr
        assert "Traceback" not in result.stderr


def test_traceback_only_with_verbose(tmp_path):
    result = run("-v", "info", str(tmp_path / "x.zarr"))
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_unknown_region_exits_2():
    result = run("catalog", "atlantis")
    assert result.returncode == 2 and "unknown region 'atlantis'" in result.stderr


def test_catalog_listing_and_region():
    runner = CliRunner()
    result = runner.invoke(cli, ["catalog"])
    assert result.exit_code == 0
    assert "43 GeoNRW cities (40 train, 3 test)" in result.output
    result = runner.invoke(cli, ["catalog", "--json", "cologne"])
    data = json.loads(result.output)
    assert data["name"] == "koeln" and data["ags"] == "05315000"
    lidar = data["sources"]["lidar"]
    assert lidar["default_layout"] == "tiles"
    assert lidar["layouts"]["tiles"].endswith("/produkte/geobasis/hm/3dm_l_las/3dm_l_las/")
    assert lidar["layouts"]["packages"].endswith("3dm_l_las_05315000_K%C3%B6ln_EPSG25832.zip")


def test_broken_catalog_option_exits_1(tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text("version: 1\ngrid: {crs: 25832}\n")
    result = CliRunner().invoke(cli, ["catalog", "--catalog", str(bad)])
    assert result.exit_code == 1
    assert "grid.crs" in result.output or "classes: missing" in result.output


def test_version_names_the_libraries():
    result = run("--version")
    assert result.returncode == 0
    import rasterio
    import torch
    import zarr

    lines = result.stdout.splitlines()
    assert lines[0] == f"geosynth {__version__}"
    assert f"GDAL {rasterio.__gdal_version__}" in lines
    assert f"rasterio {rasterio.__version__}" in lines
    assert f"zarr {zarr.__version__}" in lines
    assert f"torch {torch.__version__}" in lines


def test_usage_errors_show_the_subcommands_usage(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--store", "x.zarr"])  # --out missing: the library says
    assert result.exit_code == 2
    assert "Usage: cli train [OPTIONS]" in result.output or "Usage: geosynth train" in result.output
    assert "--out is required" in result.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text("vars: {out: o}\nsteps: [{name: a, run: geosynth catalog, outputs: [x]}]\n")
    nested = runner.invoke(cli, ["pipeline", "run", str(recipe), "--set", "nope=1"])
    assert nested.exit_code == 2 and "pipeline run [OPTIONS] RECIPE" in nested.output


def test_vv_turns_on_the_libraries_debug_logs_and_vvv_is_refused():
    import logging

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    try:
        result = CliRunner().invoke(cli, ["-vv", "catalog"])
        assert result.exit_code == 0, result.output
        assert root.level == logging.DEBUG  # rasterio, zarr, fsspec ... log through the root
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]
    result = CliRunner().invoke(cli, ["-vvv", "catalog"])
    assert result.exit_code == 2 and "at most -vv" in result.output


def test_ctrl_c_in_training_exits_130_naming_the_checkpoint(tiny_store, tmp_path):
    """A real SIGINT to a training process: exit 130, what is saved and how to resume."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    inherited = signal.getsignal(signal.SIGINT)  # an ignored SIGINT would pass to the child

    def default_sigint():
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "geosynth", "-q", "train", "--store",
         str(tiny_store), "--out", str(out), "--cap", "4", "--crop", "32", "--batch-size", "2",
         "--workers", "0", "--checkpoint-every", "1", "--epochs", "1000", "--no-tensorboard"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints where every thread is
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"no exit 120 s after SIGINT (parent's SIGINT: {inherited}):\n{err[-6000:]}")
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "saved:" in err
    assert f"geosynth train --resume --out {out}" in err
    assert "Aborted!" not in err
