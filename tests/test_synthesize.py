"""Synthesis of whole tiles (seamless windows, COG outputs) and the edit commands."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

from geosynth.cli import cli
from geosynth.ml.data.tensors import to_stored
from geosynth.ml.synthesis.synthesize import synthesize_array
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.train import train_gan
from geosynth.store import TileData, TilePlan, create_store, modality, open_store

SIZE = 96
TILES = ["356_5645", "357_5645", "358_5645"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from geosynth.catalog import load_catalog

    classes = load_catalog().classes
    path = tmp_path_factory.mktemp("synth") / "s.zarr"
    plans = [
        TilePlan(
            t,
            "demo",
            "test" if k == 2 else "train",
            transform=Affine(1000 / SIZE, 0, 356_000 + 1000 * k, 0, -1000 / SIZE, 5_646_000),
        )
        for k, t in enumerate(TILES)
    ]
    s = create_store(
        path,
        plans,
        tile_shape=(SIZE, SIZE),
        modalities=[modality("rgb"), modality("dem"), modality("seg")],
        dataset="test",
        crs="EPSG:25832",
        classes=classes,
    )
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for t in TILES:
        dem = (40 + 0.5 * np.abs(x - SIZE / 2) + rng.random()).astype(np.float32)[None]
        seg = np.where(np.abs(x - SIZE / 2) < 3, 2, 3).astype(np.uint8)
        seg[:20, :20] = 10
        rgb = rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8)
        s.write_tile(t, TileData(rgb=rgb, dem=dem, seg=seg))
    return path


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    """Two tiny generators trained for one step: seg+dem (ours) and seg only (spade)."""
    root = tmp_path_factory.mktemp("runs")
    common = dict(
        store=str(store),
        cap=4,
        crop=32,
        batch_size=2,
        workers=0,
        epochs=1,
        max_steps=1,
        tensorboard=False,
        deterministic=True,
    )
    train_gan(GanConfig(out=str(root / "ours"), generator="ours", **common))
    train_gan(GanConfig(out=str(root / "spade"), generator="spade", inputs=("seg",), **common))
    return root


class PointwiseGenerator(torch.nn.Module):
    """A generator whose output pixel depends on its input pixel only (a 1x1 convolution)."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"n_sampling": 2})()
        self.conv = torch.nn.Conv2d(12, 3, 1)

    def forward(self, labels, raster):
        return torch.tanh(self.conv(torch.cat([labels, raster], 1)))


def test_windows_blend_without_seams():
    torch.manual_seed(0)
    g = PointwiseGenerator()
    config = GanConfig(store="x", out="y", crop=32, inputs=("seg", "dem"))
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 11, (70, 90)).astype(np.uint8)  # stored labels
    labels = np.eye(11, dtype=np.float32)[ids].transpose(2, 0, 1)  # the one-hot G takes
    dem = rng.normal(size=(1, 70, 90)).astype(np.float32)
    inputs = {"seg": ids, "dem": dem}
    out = synthesize_array(g, config, inputs, 11, window=32, overlap=8, batch_size=3)
    with torch.no_grad():
        direct = g(torch.from_numpy(labels)[None], torch.from_numpy(dem)[None])[0].numpy()
    assert out.shape == (3, 70, 90)
    np.testing.assert_allclose(out, direct, atol=1e-5)
    # a tile smaller than one window is padded, then cropped back
    small = synthesize_array(
        g, config, {"seg": ids[:20, :20], "dem": dem[:, :20, :20]}, 11, window=32, overlap=8
    )
    np.testing.assert_allclose(small, direct[:, :20, :20], atol=1e-5)


def test_to_stored_ranges():
    x = np.array([[[-1.0, 0.0, 1.0]]], np.float32)
    assert to_stored("rgb", x).tolist() == [[[0, 128, 255]]]
    assert to_stored("sar", x).tolist() == [[[0.0, 0.5, 1.0]]]


def test_synthesize_store_tiles_to_cogs(store, runs, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "synthesize",
            "--generator",
            str(runs / "ours"),
            "--store",
            str(store),
            "--split",
            "test",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "358_5645_rgb.tif") as src:
        assert src.count == 3 and src.dtypes[0] == "uint8"
        assert src.crs.to_string() == "EPSG:25832"
        assert src.transform == Affine(1000 / SIZE, 0, 358_000, 0, -1000 / SIZE, 5_646_000)
        assert src.profile["tiled"] and src.overviews(1) is not None
    assert (out / "358_5645_panel.png").read_bytes()[:4] == b"\x89PNG"


def test_edit_flood_sequence_with_generator(store, runs, tmp_path):
    out = tmp_path / "flood"
    result = CliRunner().invoke(
        cli,
        [
            "edit-flood",
            "--store",
            str(store),
            "--tile",
            "357_5645",
            "--hmin",
            "45:55:5",
            "--generator",
            str(runs / "ours"),
            "--erosion",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "water: 5.21% before" in result.output  # 5 of 96 columns
    for tag in ("h45", "h50", "h55"):
        with rasterio.open(out / f"357_5645_dem_{tag}.tif") as src:
            dem = src.read(1)
            assert src.transform.c == 357_000
        with rasterio.open(out / f"357_5645_seg_{tag}.tif") as src:
            seg = src.read(1)
        level = float(tag[1:])
        assert (dem[seg == 2][dem[seg == 2] < level + 1e-3] <= level).all()
        assert (out / f"357_5645_rgb_{tag}.tif").exists() and (out / f"357_5645_{tag}.png").exists()
    assert (out / "357_5645_flood.gif").read_bytes()[:3] == b"GIF"
    # the flooded share grows with the level
    shares = [
        float(line.split("after")[0].split(",")[1].strip().rstrip("%"))
        for line in result.output.splitlines()
        if line.startswith("water:")
    ]
    assert shares == sorted(shares) and shares[0] < shares[-1]


def test_edit_flood_refusals(store, runs, tmp_path):
    runner = CliRunner()
    base = ["edit-flood", "--store", str(store), "--out", str(tmp_path / "x")]
    r = runner.invoke(cli, [*base, "--tile", "357_5645", "--hmin", "500"])
    assert r.exit_code == 2 and "minimum 40" in r.output and "maximum" in r.output
    r = runner.invoke(cli, [*base, "--tile", "999_5645", "--hmin", "45"])
    assert r.exit_code == 1 and "nearest: 358_5645" in r.output
    r = runner.invoke(
        cli, [*base, "--tile", "357_5645", "--hmin", "45", "--generator", str(runs / "spade")]
    )
    assert r.exit_code == 2 and "without dem" in r.output


def test_edit_classes_forest_to_farmland(store, tmp_path):
    out = tmp_path / "cls"
    r = CliRunner().invoke(
        cli,
        [
            "edit-classes",
            "--store",
            str(store),
            "--tile",
            "356_5645",
            "--from",
            "buildings",
            "--to",
            "agricultural",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    with rasterio.open(out / "356_5645_seg_buildings-to-agricultural.tif") as src:
        seg = src.read(1)
    assert not (seg == 10).any() and (seg[:20, :20] == 3).all()
    r = CliRunner().invoke(
        cli,
        [
            "edit-classes",
            "--store",
            str(store),
            "--tile",
            "356_5645",
            "--from",
            "jungle",
            "--to",
            "agricultural",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 2 and "unknown class 'jungle'" in r.output


def test_edit_flood_reports_the_rate_the_unet_sees_the_new_water(store, runs, tmp_path):
    import json

    import torch

    from geosynth.ml.metrics import predict_classes
    from geosynth.ml.training.checkpoint import load_unet
    from geosynth.ml.training.config import UNetRunConfig
    from geosynth.ml.training.train_unet import train_unet

    unet_run = tmp_path / "unet"
    train_unet(UNetRunConfig(store=str(store), out=str(unet_run), base_channels=4, crop=32,
                             batch_size=2, workers=0, max_steps=1, tensorboard=False,
                             val_split=None, samples=0, image_every=0))  # fmt: skip
    out = tmp_path / "flood"
    args = ["edit-flood", "--store", str(store), "--tile", "357_5645", "--hmin", "45:55:5",
            "--generator", str(runs / "ours"), "--erosion", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--unet", str(unet_run)])
    assert result.exit_code == 0, result.output
    info = json.loads((out / "water_rate.json").read_text())
    assert info["level"] == 55 and set(info["levels"]) == {"45", "50", "55"}
    with rasterio.open(out / "357_5645_rgb_h55.tif") as src:
        rgb = src.read()
    with rasterio.open(out / "357_5645_seg_h55.tif") as src:
        seg = src.read(1)
    unet, _ = load_unet(unet_run)
    with torch.no_grad():
        x = torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1)[None]
        pred = predict_classes(unet(x).logits)[0].numpy()
    before = open_store(store).read("seg", open_store(store).index("357_5645"))
    new = (seg == 2) & (before != 2)
    assert info["pixels"] == int(new.sum()) > 0
    assert info["rate"] == pytest.approx(float((pred[new] == 2).mean()))
    bare = [*args[:7], "--out", str(tmp_path / "x"), "--unet", str(unet_run)]  # no generator
    r = CliRunner().invoke(cli, bare)
    assert r.exit_code != 0 and "needs an RGB generator" in r.output


def test_edits_leave_no_output_folder_behind_on_any_error(store, runs, tmp_path):
    from geosynth.cli.options import load_inputs
    from geosynth.ml.synthesis.editing import flood_run
    from geosynth.ml.synthesis.synthesize import Synthesizer

    out = tmp_path / "x"
    r = CliRunner().invoke(cli, ["edit-flood", "--store", str(store), "--out", str(out),
                                 "--tile", "357_5645", "--hmin", "500"])  # fmt: skip
    assert r.exit_code == 2 and not out.exists()
    inputs = load_inputs(str(store), "357_5645", None, None, None, {})

    def interrupt(done, total):  # Ctrl-C after the first level's files are written
        raise KeyboardInterrupt

    synths = [Synthesizer.load(runs / "ours", device="cpu")]
    with pytest.raises(KeyboardInterrupt):
        flood_run(inputs, [45.0, 46.0], out, synths=synths, progress=interrupt)
    assert not out.exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    with pytest.raises(KeyboardInterrupt):
        flood_run(inputs, [45.0, 46.0], kept, synths=synths, progress=interrupt)
    assert kept.is_dir()  # a folder the user made is not removed
