"""One input preparation: every path hands the generator the same tensors for the same window.

The dataset (training), ``evaluate``, ``synthesize``, ``edit-flood`` and
``edit-classes`` are run as a user runs them, on a tile whose DEM has holes;
a forward pre-hook on every module records what the generator received.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from affine import Affine
from click.testing import CliRunner

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.data.tensors import (
    STD_FLOOR,
    dem_stats,
    generator_inputs,
    prepare_window,
    quantize,
    to_network,
    to_stored,
)
from geosynth.ml.networks.generators import Generator
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.ml.training.train import train_gan
from geosynth.ml.training.train_unet import train_unet
from geosynth.store import TileData, TilePlan, create_store, modality

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 80  # tile edge: the centre 32 px crop (24, 24) is also synthesize's fifth window
CROP = 32  # training crop; synthesize's windows: 32 px at 0, 24, 48 (overlap 8)
TILES = ["356_5645", "357_5645", "358_5645"]  # train, test, test (FD needs two)
CLASSES = load_catalog().classes
TINY = dict(crop=CROP, batch_size=1, workers=0, tensorboard=False, deterministic=True,
            max_steps=1, samples=0, image_every=0, log_every=0)  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three georeferenced tiles: forest, water and grassland; DEM with holes (NaN)."""
    path = tmp_path_factory.mktemp("inputs") / "s.zarr"
    plans = [
        TilePlan(t, "demo", split, transform=Affine(1, 0, 356_000 + 1000 * k, 0, -1, 5_646_000))
        for k, (t, split) in enumerate(zip(TILES, ("train", "test", "test"), strict=True))
    ]
    s = create_store(
        path, plans, tile_shape=(SIZE, SIZE),
        modalities=[modality("rgb"), modality("dem"), modality("seg")],
        dataset="test", crs="EPSG:25832", classes=CLASSES,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    for t in TILES:
        seg = np.full((SIZE, SIZE), CLASSES.id_of("grassland"), np.uint8)
        seg[:, :8] = CLASSES.id_of("water")
        seg[20:40, 30:] = CLASSES.id_of("forest")
        dem = (
            50 + 0.4 * x + rng.random((SIZE, SIZE)) + 15 * (seg == CLASSES.id_of("forest"))
        ).astype(np.float32)
        dem[30:34, 40:46] = np.nan  # holes in the lidar, inside the centre window
        dem[50, 30] = np.nan
        rgb = rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)
        s.write_tile(t, TileData(rgb=rgb, dem=dem[None], seg=seg))
    return path


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory, one_torch_thread):
    """A one-step ``ours`` generator per DEM normalisation, and a one-step U-Net."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for norm in ("none", "tile", "crop"):
        out[norm] = root / f"g_{norm}"
        train_gan(GanConfig(store=str(store), out=str(out[norm]), dem_norm=norm, cap=4, **TINY))
    out["unet"] = root / "unet"
    train_unet(UNetRunConfig(store=str(store), out=str(out["unet"]), base_channels=4,
                             val_split=None, **TINY))  # fmt: skip
    return out


@contextlib.contextmanager
def generator_windows():
    """Records ``(labels, raster)`` of every window any generator receives while the block runs."""
    windows: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args):
        if isinstance(module, Generator):
            labels, raster = (a.detach().clone() for a in args)  # (B, K, h, w), (B, 1, h, w)
            windows.extend(zip(labels, raster, strict=True))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield windows
    finally:
        handle.remove()


@pytest.mark.parametrize("norm", ["none", "tile", "crop"])
def test_every_path_gives_the_generator_the_same_window(store, runs, tmp_path, norm):
    run = str(runs[norm])
    dataset = SynthesisDataset(store, "test", crop=CROP, train=False, dem_norm=norm)
    sample = dataset[0]  # the centre window of the first test tile
    assert sample["tile"] == TILES[1] and sample["window"].tolist() == [24, 24, CROP, CROP]
    labels, raster = generator_inputs(sample, dataset.inputs)  # (K, h, w), (1, h, w)
    assert torch.isfinite(raster).all()  # the holes were filled
    invoke = CliRunner().invoke
    seen = {}
    paths = {
        "evaluate": ["evaluate", "--generator", run, "--unet", str(runs["unet"]),
                     "--store", str(store), "--batch-size", "1", "--crop", str(CROP),
                     "--device", "cpu", "--out", str(tmp_path / "eval")],
        "synthesize": ["synthesize", "--generator", run, "--store", str(store), "--tiles",
                       TILES[1], "--device", "cpu", "--out", str(tmp_path / "synth")],
        "edit-flood": ["edit-flood", "--store", str(store), "--tile", TILES[1], "--hmin", "65",
                       "--generator", run, "--device", "cpu", "--out", str(tmp_path / "flood")],
        "edit-classes": ["edit-classes", "--store", str(store), "--tile", TILES[1], "--from",
                         "forest", "--to", "grassland", "--generator", run, "--device", "cpu",
                         "--out", str(tmp_path / "classes")],
    }  # fmt: skip
    # evaluate: one window per test tile; synthesize and the edits (unedited tile first): 3 x 3
    first = {"evaluate": 0, "synthesize": 4, "edit-flood": 4, "edit-classes": 4}
    for name, args in paths.items():
        with generator_windows() as windows:
            result = invoke(cli, ["-q", *args])
        assert result.exit_code == 0, (name, result.output)
        seen[name] = windows[first[name]]
    for name, (g_labels, g_raster) in seen.items():
        assert torch.equal(g_labels, labels), name
        assert torch.equal(g_raster, raster), name
    # the flooded tile's centre window differs in its labels
    with generator_windows() as windows:
        invoke(cli, ["-q", *paths["edit-flood"][:-1], str(tmp_path / "flood2")])
    assert len(windows) == 18 and not torch.equal(windows[9 + 4][0], labels)


# ----------------------------------------------------------------------------- the rules


def test_dem_holes_take_the_window_median_and_norms_follow_the_docstring():
    dem = np.array([[[1.0, 2.0, np.nan], [4.0, np.nan, 10.0]]], np.float32)  # (1, 2, 3)
    seg = np.zeros((2, 3), np.uint8)
    filled = dem.copy()
    filled[np.isnan(filled)] = 3.0  # median of 1, 2, 4, 10
    plain = prepare_window({"seg": seg, "dem": dem}, ("seg", "dem"), 11)["dem"].numpy()
    np.testing.assert_array_equal(plain, filled)
    crop = prepare_window({"dem": dem}, ("dem",), 11, dem_norm="crop")["dem"].numpy()
    np.testing.assert_allclose(crop, (filled - filled.mean()) / filled.std(), rtol=1e-6)
    stats = dem_stats(dem)  # over the valid pixels only
    assert stats == pytest.approx((float(np.nanmean(dem)), float(np.nanstd(dem))))
    tile = prepare_window({"dem": dem}, ("dem",), 11, dem_norm="tile", dem_stats=stats)["dem"]
    np.testing.assert_allclose(tile.numpy(), (filled - stats[0]) / stats[1], rtol=1e-6)
    flat = np.full((1, 2, 2), 7.0, np.float32)
    assert dem_stats(flat) == (7.0, STD_FLOOR)
    assert dem_stats(np.full((1, 2, 2), np.nan, np.float32)) == (0.0, 1.0)


def test_sar_without_data_reads_minus_one_and_labels_are_checked():
    sar = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    valid = np.array([[True, False, True]])
    out = prepare_window({"sar": sar, "sar_valid": valid}, ("sar",), 11)
    assert out["sar"].tolist() == [[[-1.0, -1.0, 1.0]]]
    assert out["sar_valid"].tolist() == [[[True, False, True]]]
    with pytest.raises(DataError, match="tile x: class id 11 >= 11"):
        prepare_window({"seg": np.array([[11]], np.uint8)}, ("seg",), 11, where="tile x")


def test_value_ranges_round_trip():
    stored = np.array([[[0, 1, 127, 128, 255]]], np.uint8)
    net = to_network("rgb", stored, 11)
    np.testing.assert_array_equal(to_stored("rgb", net), stored)
    np.testing.assert_array_equal(to_stored("rgb", torch.from_numpy(net)).numpy(), stored)
    image = torch.tensor([[[-1.0, -0.3, 0.2, 1.5]]])
    assert torch.equal(quantize("rgb", image), to_stored("rgb", image).float() / 127.5 - 1)
    assert torch.equal(quantize("sar", image), image.clamp(-1, 1))  # float32: no rounding
    assert to_stored("sar", np.array([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]
