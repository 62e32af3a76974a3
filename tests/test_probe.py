"""The fusion probe: masks from truth rasters written with rasterio, numbers vs a direct computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.transform import from_origin

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.ml.evaluation.probe import fusion_probe, read_probe, truth_masks
from geosynth.ml.metrics import predict_classes
from geosynth.ml.training.checkpoint import load_generator, load_unet
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.ml.training.train import train_gan
from geosynth.ml.training.train_unet import train_unet
from geosynth.store import open_store

TINY = dict(crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True, max_steps=1,
            samples=0, image_every=0, log_every=0)  # fmt: skip
pytestmark = pytest.mark.usefixtures("one_torch_thread")
CROP = 32


def _write(path, values):
    h, w = values.shape
    with rasterio.open(
        path, "w", driver="GTiff", height=h, width=w, count=1, dtype=values.dtype,
        crs="EPSG:25832", transform=from_origin(356000, 5646000, 1, 1),
    ) as dst:  # fmt: skip
        dst.write(values, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_torch_thread, tiny_store_factory):
    root = tmp_path_factory.mktemp("probe")
    store = tiny_store_factory(root / "s.zarr", n_train=2, n_test=2)
    runs = {}
    for name, inputs in (("label", ("seg",)), ("ours", ("seg", "dem"))):
        runs[name] = root / name
        train_gan(GanConfig(store=str(store), out=str(runs[name]), inputs=inputs, cap=4,
                            generator="spade" if name == "label" else "ours", **TINY))  # fmt: skip
    runs["unet"] = root / "unet"
    train_unet(UNetRunConfig(store=str(store), out=str(runs["unet"]), base_channels=4,
                             val_split=None, **TINY))  # fmt: skip
    truth = root / "truth"
    truth.mkdir()
    opened = open_store(store)
    rng = np.random.default_rng(3)
    for i in opened.tiles("test"):
        tile = opened.tile_ids[i]
        seg = opened.read("seg", i)
        dtm = opened.read("dem", i)[0].astype(np.float32)
        objects = (rng.random(seg.shape) < 0.2) * rng.uniform(3, 15, seg.shape)
        _write(truth / f"{tile}_landcover.tif", seg)
        _write(truth / f"{tile}_dtm.tif", dtm)
        _write(truth / f"{tile}_dsm.tif", (dtm + objects).astype(np.float32))
    return {"store": store, "truth": truth, **runs}


def test_masks_come_from_the_truth_rasters():
    classes = load_catalog().classes
    forest, buildings, fields = (classes.id_of(k) for k in ("forest", "buildings", "agricultural"))
    lc = np.array([[forest, fields, fields, buildings, 0]], dtype=np.uint8)
    dtm = np.zeros((1, 5), np.float32)
    dsm = np.array([[20, 8, 1, 6, 9]], np.float32)  # a forest tree, a field tree, bare field
    m = truth_masks(lc, dsm, dtm, classes, min_height=2.0)
    assert m["trees_hedges"].tolist() == [[False, True, False, False, False]]
    assert m["buildings"].tolist() == [[False, False, False, True, False]]
    assert m["elsewhere"].tolist() == [[True, False, True, False, False]]  # unlabelled: out


def _direct(world):
    """Agreement and RGB error per mask, tile by tile, without the probe's code."""
    store = open_store(world["store"])
    unet, _ = load_unet(world["unet"])
    classes = store.classes
    k = store.num_classes
    h0 = (store.tile_shape[0] - CROP) // 2
    win = (slice(h0, h0 + CROP), slice(h0, h0 + CROP))
    gens = {n: load_generator(world[n])[0] for n in ("label", "ours")}
    tally = {}
    for i in store.tiles("test"):
        tile = store.tile_ids[i]
        with rasterio.open(world["truth"] / f"{tile}_landcover.tif") as src:
            lc = src.read(1)[win]
        with rasterio.open(world["truth"] / f"{tile}_dsm.tif") as src:
            dsm = src.read(1)[win]
        with rasterio.open(world["truth"] / f"{tile}_dtm.tif") as src:
            dtm = src.read(1)[win]
        raised = dsm - dtm > 2.0
        houses = lc == classes.id_of("buildings")
        trees = raised & (lc > 0) & (lc != classes.id_of("forest")) & ~houses
        probe = trees | houses
        masks = {"trees_hedges": trees, "buildings": houses, "probe": probe,
                 "elsewhere": (lc > 0) & ~probe}  # fmt: skip
        seg = store.read("seg", i)[win]
        onehot = torch.from_numpy(np.eye(k, dtype=np.float32)[seg].transpose(2, 0, 1))[None]
        rgb = store.read("rgb", i)[:, win[0], win[1]]
        real = torch.from_numpy(rgb.astype(np.float32) / 127.5 - 1)[None]
        dem = store.read("dem", i)[:, win[0], win[1]].astype(np.float32)
        ablated = dem - np.where(probe, dsm - dtm, 0)[None]
        with torch.no_grad():
            p_real = predict_classes(unet(real).logits)[0].numpy()
            for row, net, d in (("label", gens["label"], None), ("ours", gens["ours"], dem),
                                ("ablated", gens["ours"], ablated)):  # fmt: skip
                raster = None if d is None else torch.from_numpy(d)[None]
                fake = torch.round((net(onehot, raster).clamp(-1, 1) + 1) * 127.5)
                p_fake = predict_classes(unet(fake / 127.5 - 1).logits)[0].numpy()
                err = np.abs(fake[0].numpy() - rgb).mean(0)
                for key, m in masks.items():
                    t = tally.setdefault((row, key), [0, 0, 0.0])
                    t[0] += m.sum()
                    t[1] += (p_fake == p_real)[m].sum()
                    t[2] += err[m].sum()
    return tally


def test_probe_equals_a_direct_computation(world, tmp_path):
    result = fusion_probe(
        {"label": world["label"], "ours": world["ours"]}, world["unet"], world["store"],
        world["truth"], tmp_path / "p", crop=CROP, device="cpu",
    )  # fmt: skip
    assert read_probe(tmp_path / "p") == json.loads((tmp_path / "p" / "probe.json").read_text())
    assert (tmp_path / "p" / "probe.png").read_bytes()[:4] == b"\x89PNG"
    assert [(r["name"], r["dem"]) for r in result["rows"]] == [
        ("label", "real"),
        ("ours", "real"),
        ("ours", "objects removed"),
    ]
    direct = _direct(world)
    assert result["pixels"]["probe"] > 0 and result["pixels"]["elsewhere"] > 0
    for row, key in zip(("label", "ours", "ablated"), result["rows"], strict=True):
        for mask in ("trees_hedges", "buildings", "probe", "elsewhere"):
            n, agree, err = direct[(row, mask)]
            assert result["pixels"][mask] == n
            if n:
                assert key["agreement"][mask] == pytest.approx(agree / n)
                assert key["error"][mask] == pytest.approx(err / n, abs=1e-3)


def test_probe_refuses_bad_input(world, tmp_path):
    with pytest.raises(UsageError, match="--ablate dem"):
        fusion_probe({"ours": world["ours"]}, world["unet"], world["store"], world["truth"],
                     tmp_path / "a", ablate="dem", crop=CROP)  # fmt: skip
    with pytest.raises(DataError, match="no truth raster"):
        fusion_probe({"ours": world["ours"]}, world["unet"], world["store"], tmp_path,
                     tmp_path / "b", crop=CROP)  # fmt: skip
    assert not (tmp_path / "b" / "probe.json").exists()


def test_cli_prints_one_line_per_row(world, tmp_path):
    r = CliRunner().invoke(cli, [
        "-q", "fusion-probe", "--generator", f"ours={world['ours']}", "--unet", str(world["unet"]),
        "--store", str(world["store"]), "--truth", str(world["truth"]), "--crop", str(CROP),
        "--out", str(tmp_path / "c"), "--device", "cpu",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "ours: agreement" in r.output and "ours, DEM objects removed: agreement" in r.output
    r = CliRunner().invoke(cli, ["fusion-probe", "--generator", "ours", "--unet", "x"])
    assert r.exit_code == 2
