"""Stores anywhere: builds, training and evaluation against a real S3-API server on 127.0.0.1
(moto's), memory:// and file:// URLs, open groups, and the errors of unreachable stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import zarr
from click.testing import CliRunner

from geosynth.cli import cli
from geosynth.errors import DataError
from geosynth.ingest.nrw import build_region
from geosynth.ml.evaluation.evaluate import evaluate
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.ml.training.train import train_gan
from geosynth.ml.training.train_unet import train_unet
from geosynth.store import open_store, verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TILE = "356_5645"
TINY = dict(crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True, max_steps=2,
            samples=0, image_every=0, log_every=0)  # fmt: skip


def test_build_into_s3_resumes_and_equals_a_local_build(
    s3_server, one_tile_world, tmp_path, assert_same_store
):
    url = s3_server("builds") + "/demo.zarr"

    def stop(record):
        raise KeyboardInterrupt

    args = dict(source_dir=one_tile_world, tiles=[TILE], modalities=["rgb", "dem", "seg"])
    with pytest.raises(KeyboardInterrupt):  # the first tile is written, then the run stops
        build_region("demo", url, progress=stop, **args)
    report = json.loads(open_text(url + ".report.json"))
    assert report["interrupted"] and report["done"] == [TILE]
    resumed = build_region("demo", url, **args)
    assert resumed.ok and resumed.already_complete == [TILE] and resumed.done == []
    local = build_region("demo", tmp_path / "local.zarr", **args)
    assert local.ok
    assert_same_store(url, tmp_path / "local.zarr")
    store = open_store(url)
    assert verify(store) == [] and store.tiles() == [0]
    result = CliRunner().invoke(cli, ["info", "--json", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["states"]["complete"] == 1


def open_text(url: str) -> str:
    import fsspec

    with fsspec.open(url, "r") as f:
        return f.read()


def test_train_and_evaluate_on_s3_equal_the_local_run(s3_server, tiny_store_factory, tmp_path):
    url = tiny_store_factory(s3_server("training") + "/tiny.zarr")
    local = tiny_store_factory(tmp_path / "tiny.zarr")
    scores = {}
    for name, store in (("s3", url), ("local", local)):
        runs = tmp_path / name
        train_gan(GanConfig(store=str(store), out=str(runs / "g"), cap=4, **TINY))
        train_unet(UNetRunConfig(store=str(store), out=str(runs / "u"), base_channels=4,
                                 val_split=None, **TINY))  # fmt: skip
        result = evaluate(runs / "g", runs / "u", store, "train", runs / "eval", crop=32,
                          device="cpu")  # fmt: skip
        scores[name] = result.metrics["blocks"], result.metrics["frechet_distance"]
    assert scores["s3"] == scores["local"]


def test_a_dataloader_worker_reopens_the_store_by_url(s3_server, tiny_store_factory):
    from torch.utils.data import DataLoader

    from geosynth.ml.data.datasets import SynthesisDataset

    url = tiny_store_factory(s3_server("workers") + "/tiny.zarr")
    ds = SynthesisDataset(url, "train", crop=16, train=False)
    direct = ds[0]["rgb"]
    loader = DataLoader(ds, batch_size=1, num_workers=1, multiprocessing_context="spawn")
    first = next(iter(loader))
    assert first["rgb"][0].equal(direct)


def test_memory_and_file_urls_and_open_groups(tiny_store_factory, tmp_path):
    memory = tiny_store_factory("memory://stores/tiny.zarr", n_train=1, n_test=1)
    a = open_store(memory)
    local = tiny_store_factory(tmp_path / "t.zarr", n_train=1, n_test=1)
    b = open_store(f"file://{local}")
    c = open_store(zarr.open_group(local, mode="r"))
    for store in (a, b, c):
        assert store.tile_ids == ["356_5645", "357_5645"] and store.tiles() == [0, 1]
    assert (a.read("rgb", 1) == b.read("rgb", 1)).all() and (
        b.read("dem", 0) == c.read("dem", 0)
    ).all()


@pytest.mark.parametrize(
    "url, options, message",
    [
        ("ftp://example/x.zarr", [], "unknown URL scheme 'ftp'"),
        ("s3://nobucket/x.zarr", ["endpoint_url=http://127.0.0.1:9"], "cannot reach"),
    ],
)
def test_bad_urls_exit_1_naming_the_url(url, options, message):
    args = ["info", url, *[f"--storage-option={o}" for o in options]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert url in result.output and message in result.output


def test_missing_credentials_name_the_url(s3_server, tmp_path):
    bucket = s3_server("nocreds")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_ENDPOINT_URL"] = os.environ["AWS_ENDPOINT_URL"]
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["HOME"] = str(tmp_path)  # no ~/.aws
    result = subprocess.run(
        [sys.executable, "-m", "geosynth", "info", f"{bucket}/x.zarr"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"{bucket}/x.zarr" in result.stderr and "credentials" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tile_group_missing_behind_the_index_is_named(tiny_store_factory, tmp_path):
    import shutil

    path = tiny_store_factory(tmp_path / "t.zarr", n_train=2, n_test=0)
    shutil.rmtree(path / "tiles" / "357_5645")
    store = open_store(path)
    problems = [str(p) for p in verify(store)]
    assert any("357_5645" in p and "tiles/357_5645" in p for p in problems), problems
    with pytest.raises(DataError, match="357_5645"):
        store.read("rgb", 1)
