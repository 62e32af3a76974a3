"""geosynth evaluate on a tiny real store with networks trained for one step by the library."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geosynth.analysis.results import (
    TABLE_HEADER,
    block_lines,
    markdown_table,
    protocol_of,
    read_metrics,
)
from geosynth.analysis.speckle import amplitude_from_normalised, area_stats, enl, homogeneous_masks
from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ml.data.tensors import to_network
from geosynth.ml.evaluation.evaluate import evaluate, grid_windows
from geosynth.ml.metrics import frechet_distance_of, pooled_features, predict_classes
from geosynth.ml.training.checkpoint import load_generator, load_unet
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.ml.training.train import train_gan
from geosynth.ml.training.train_unet import train_unet
from geosynth.store import TileData, open_store

TINY = dict(crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True, max_steps=1,
            samples=0, image_every=0, log_every=0)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


EVAL_STORE = dict(n_train=2, n_test=3, unlabelled=True)  # 3 test tiles, unlabelled blocks


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_torch_thread, tiny_store_factory):
    """A store, generators to RGB and SAR and U-Nets on RGB and SAR, each trained one step."""
    root = tmp_path_factory.mktemp("eval")
    store = tiny_store_factory(
        root / "s.zarr", modalities=("rgb", "dem", "seg", "sar"), **EVAL_STORE
    )
    runs = {}
    for output in ("rgb", "sar"):
        runs[f"g_{output}"] = root / f"g_{output}"
        train_gan(GanConfig(store=str(store), out=str(runs[f"g_{output}"]), output=output, cap=4,
                            **TINY))  # fmt: skip
        runs[f"u_{output}"] = root / f"u_{output}"
        train_unet(UNetRunConfig(store=str(store), out=str(runs[f"u_{output}"]), input=output,
                                 base_channels=4, val_split=None, **TINY))  # fmt: skip
    return {"store": store, "root": root, **runs}


def _direct(world, output: str):
    """Confusions and features computed tile by tile without the evaluation code."""
    store = open_store(world["store"])
    g, gan = load_generator(world[f"g_{output}"])
    u, _ = load_unet(world[f"u_{output}"])
    k = store.num_classes
    conf = {b: np.zeros((k, k), dtype=np.int64) for b in ("real_gt", "fake_gt", "fake_real")}
    feats_real, feats_fake = [], []
    for i in store.tiles("test"):
        seg = store.read("seg", i).astype(np.int64)  # (H, W)
        labels = torch.from_numpy(to_network("seg", store.read("seg", i), k))[None]
        dem = torch.from_numpy(store.read("dem", i))[None]  # (1, 1, H, W)
        real = torch.from_numpy(to_network(output, store.read(output, i), k))[None]
        keep = seg != 0
        if output == "sar":
            valid = store.read("sar_valid", i)
            real[0][:, ~valid] = -1.0
            keep &= valid
        with torch.no_grad():
            fake = g(labels, dem).clamp(-1, 1)
            if output == "rgb":
                fake = torch.round((fake + 1) * 127.5) / 127.5 - 1
            out_real, out_fake = u(real), u(fake)
        p_real = predict_classes(out_real.logits)[0].numpy()
        p_fake = predict_classes(out_fake.logits)[0].numpy()
        for key, pred, ref in (("real_gt", p_real, seg), ("fake_gt", p_fake, seg),
                               ("fake_real", p_fake, p_real)):  # fmt: skip
            for t, p in zip(ref[keep], pred[keep], strict=True):
                conf[key][t, p] += 1
        feats_real.append(pooled_features(out_real.features).double().numpy())
        feats_fake.append(pooled_features(out_fake.features).double().numpy())
    return conf, np.concatenate(feats_real), np.concatenate(feats_fake)


@pytest.mark.parametrize("output", ["rgb", "sar"])
def test_evaluation_equals_a_direct_computation(world, tmp_path, output, caplog):
    out = tmp_path / f"eval_{output}"
    with caplog.at_level(logging.WARNING, logger="geosynth.ml.metrics"):
        result = evaluate(world[f"g_{output}"], world[f"u_{output}"], world["store"], "test", out,
                          batch_size=2, device="cpu")  # fmt: skip
    m = result.metrics
    assert m["tiles"] == ["358_5645", "359_5645", "360_5645"] and m["window"] == list(
        open_store(world["store"]).tile_shape
    )
    conf, real, fake = _direct(world, output)
    for key, counts in conf.items():
        block = m["blocks"][key]
        assert np.array_equal(np.array(block["confusion"]), counts), key
        assert block["pixels"] == counts.sum() > 0
        assert block["pixel_acc"] == pytest.approx(np.trace(counts) / counts.sum())
    assert m["blocks"]["real_gt"]["pixels"] == m["blocks"]["fake_real"]["pixels"]
    # 3 samples in 60 dimensions: singular covariances amplify float32 rounding of the features
    assert m["frechet_distance"] == pytest.approx(frechet_distance_of(real, fake), rel=1e-4)
    assert m["feature_dim"] == 4 + 8 + 16 + 32 and m["fd_samples"] == 3 and not m["fd_reliable"]
    assert "3 samples do not exceed the feature dimension 60" in caplog.text
    assert read_metrics(out) == json.loads((out / "metrics.json").read_text())


def test_reports_are_written_and_deterministic(world, tmp_path):
    args = (world["g_rgb"], world["u_rgb"], world["store"], "test")
    first = evaluate(*args, tmp_path / "ours", crop=32, batch_size=3, device="cpu").metrics
    assert first["window"] == [32, 32] and first["name"] == "ours"
    again = evaluate(*args, tmp_path / "again", crop=32, batch_size=3, device="cpu", name="ours")
    assert again.metrics == first  # bit for bit (batch sizes only move the FD's last bits)
    out = tmp_path / "ours"
    assert sorted(p.name for p in out.iterdir()) == [
        "iou_per_class.png", "metrics.csv", "metrics.json", "table_row.md",
    ]  # fmt: skip
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["name"] == "ours" and rows[0]["inputs"] == "seg+dem"
    assert float(rows[0]["real_gt_miou"]) == pytest.approx(first["blocks"]["real_gt"]["miou"])
    assert float(rows[0]["fd"]) == pytest.approx(first["frechet_distance"])
    forest = first["blocks"]["fake_gt"]["iou"]["forest"]
    assert rows[0]["fake_gt_iou_forest"] == ("" if forest is None else str(forest))
    row = (out / "table_row.md").read_text().strip()
    real_miou = f"{100 * first['blocks']['real_gt']['miou']:.1f}"
    assert row.startswith(f"| ours | ours | seg+dem | {real_miou} |") and row.count("|") == 11
    table = markdown_table([first, first])
    assert table.startswith(TABLE_HEADER) and table.count("\n") == 4
    from PIL import Image

    with Image.open(out / "iou_per_class.png") as im:
        assert im.format == "PNG" and im.size[0] >= 600
    with pytest.raises(UsageError, match="already holds an evaluation"):
        evaluate(*args, out, device="cpu")
    assert not list(out.glob(".*tmp*"))  # nothing half-written
    assert "speckle" not in first and "speckle" not in "\n".join(block_lines(first))  # rgb


def test_table_formats_evaluations_without_torch(world, tmp_path):
    evaluate(world["g_rgb"], world["u_rgb"], world["store"], "test", tmp_path / "ours",
             crop=32, device="cpu")  # fmt: skip
    code = (
        "import sys; from geosynth.cli import cli; "
        f"cli.main(['-q', 'table', {str(tmp_path / 'ours')!r}, '--out', "
        f"{str(tmp_path / 't.md')!r}], standalone_mode=False); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "t.md").read_text().startswith(TABLE_HEADER)


@pytest.mark.parametrize("crop, message", [(24, "must be a multiple of 16"), (80, "larger than")])
def test_bad_crops_are_refused(world, tmp_path, crop, message):
    with pytest.raises(UsageError, match=message):
        evaluate(world["g_rgb"], world["u_rgb"], world["store"], "test", tmp_path / "e", crop=crop)
    assert not (tmp_path / "e").exists()


def test_cli_scores_and_refuses_mismatches(world, tmp_path, tiny_store_factory):
    runner = CliRunner()
    base = ["-q", "evaluate", "--store", str(world["store"]), "--device", "cpu"]
    ok = runner.invoke(cli, [*base, "--generator", str(world["g_rgb"]), "--unet",
                             str(world["u_rgb"]), "--out", str(tmp_path / "ok"), "--crop", "32"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "real vs ground truth: mIoU" in ok.output and "Frechet distance:" in ok.output
    assert read_metrics(tmp_path / "ok")["window"] == [32, 32]

    mismatch = runner.invoke(cli, [*base, "--generator", str(world["g_sar"]), "--unet",
                                   str(world["u_rgb"]), "--out", str(tmp_path / "bad")])  # fmt: skip
    assert mismatch.exit_code == 2
    assert "synthesizes 'sar' but the U-Net" in mismatch.output and "--input sar" in mismatch.output
    assert not (tmp_path / "bad").exists()

    no_dem = tiny_store_factory(tmp_path / "no_dem.zarr", modalities=("rgb", "seg"), **EVAL_STORE)
    missing = runner.invoke(cli, ["-q", "evaluate", "--store", str(no_dem), "--generator",
                                  str(world["g_rgb"]), "--unet", str(world["u_rgb"]),
                                  "--out", str(tmp_path / "m")])  # fmt: skip
    assert missing.exit_code == 2
    assert "no_dem.zarr has no 'dem' (an input of" in missing.output

    not_a_run = runner.invoke(cli, [*base, "--generator", str(world["u_rgb"]), "--unet",
                                    str(world["u_rgb"]), "--out", str(tmp_path / "x")])  # fmt: skip
    assert not_a_run.exit_code == 2 and "holds a 'unet' run, not a 'gan' run" in not_a_run.output


# ----------------------------------------------------------------------------- the paper's protocol


def _direct_paper(world, output: str, window: int):
    """The paper's confusions tile by tile: centre window, every pixel, argmax over all classes,
    the generator's output unrounded."""
    store = open_store(world["store"])
    g, _ = load_generator(world[f"g_{output}"])
    u, _ = load_unet(world[f"u_{output}"])
    k = store.num_classes
    top = (store.tile_shape[0] - window) // 2
    win = (slice(top, top + window), slice(top, top + window))
    conf = {b: np.zeros((k, k), dtype=np.int64) for b in ("real_gt", "fake_gt", "fake_real")}
    for i in store.tiles("test"):
        seg = store.read("seg", i)[win]
        labels = torch.from_numpy(to_network("seg", seg, k))[None]
        dem = torch.from_numpy(store.read("dem", i)[(slice(None), *win)].copy())[None]
        real = torch.from_numpy(to_network(output, store.read(output, i)[(slice(None), *win)], k))
        if output == "sar":
            real[:, ~store.read("sar_valid", i)[win]] = -1.0  # as every loader prepares SAR
        with torch.no_grad():
            p_real = u(real[None]).logits.argmax(1)[0].numpy()
            p_fake = u(g(labels, dem)).logits.argmax(1)[0].numpy()
        for key, pred, ref in (("real_gt", p_real, seg), ("fake_gt", p_fake, seg),
                               ("fake_real", p_fake, p_real)):  # fmt: skip
            np.add.at(conf[key], (ref.ravel().astype(np.int64), pred.ravel()), 1)
    return conf


@pytest.mark.parametrize("output", ["rgb", "sar"])
def test_paper_protocol_equals_a_direct_computation_of_ignites_formulas(world, tmp_path, output):
    m = evaluate(world[f"g_{output}"], world[f"u_{output}"], world["store"], "test",
                 tmp_path / "paper", batch_size=2, device="cpu", protocol="paper").metrics  # fmt: skip
    assert m["window"] == [32, 32]  # the generator's training crop, not the whole 64 px tile
    assert protocol_of(m) == "paper" and "ignite" in m["protocol"]["description"]
    if output == "sar":  # 8 px class blocks in 32 px windows: too little homogeneous area
        assert m["speckle"]["classes"] == {} and m["speckle"]["overall"] == {}
        assert block_lines(m)[-1].startswith("speckle: no class has 500 homogeneous pixels")
    else:
        assert "speckle" not in m
    for key, counts in _direct_paper(world, output, 32).items():
        block = m["blocks"][key]
        assert np.array_equal(np.array(block["confusion"]), counts), key
        assert block["pixels"] == 3 * 32 * 32  # every pixel, ground truth 0 included
        assert block["protocol"] == "paper" and block["window"] == [32, 32]
        c = counts.astype(np.float64)
        iou = np.diag(c) / (c.sum(0) + c.sum(1) - np.diag(c) + 1e-15)
        assert block["miou"] == pytest.approx(iou[1:].mean(), abs=1e-12)
        assert block["pixel_acc"] == pytest.approx(np.trace(c) / c.sum())
        assert all(v is not None for v in block["iou"].values())  # absent classes score 0


def test_window_selection_and_the_grid_of_windows(world, tmp_path):
    args = (world["g_rgb"], world["u_rgb"], world["store"], "test")
    ours = evaluate(*args, tmp_path / "g", device="cpu").metrics
    assert ours["window"] == [64, 64] and protocol_of(ours) == "geosynth"
    cropped = evaluate(*args, tmp_path / "p", device="cpu", protocol="paper", crop=48).metrics
    assert cropped["window"] == [48, 48]
    assert grid_windows((256, 256), (1000, 1000), 3) == [
        (116 + 256 * i, 116 + 256 * j) for i in range(3) for j in range(3)
    ]
    assert grid_windows((32, 32), (64, 64), 1) == [(16, 16)]  # the centre window itself
    with pytest.raises(UsageError, match="do not fit"):
        grid_windows((32, 32), (64, 64), 3)
    one = evaluate(*args, tmp_path / "one", device="cpu", protocol="paper", fd_grid=1).metrics
    assert one["frechet"]["grid"]["value"] == pytest.approx(one["frechet"]["tile"]["value"])
    four = evaluate(*args, tmp_path / "four", device="cpu", protocol="paper", fd_grid=2).metrics
    grid, tile = four["frechet"]["grid"], four["frechet"]["tile"]
    assert (grid["samples"], grid["windows_per_tile"], tile["samples"]) == (12, 4, 3)
    assert grid["window"] == tile["window"] == [32, 32] and "encoder" in grid["features"]
    assert tile["value"] == four["frechet_distance"] and four["blocks"] == one["blocks"]


def test_a_table_refuses_mixed_protocols(world, tmp_path):
    args = (world["g_rgb"], world["u_rgb"], world["store"], "test")
    evaluate(*args, tmp_path / "ours", crop=32, device="cpu")
    runner = CliRunner()
    paper = runner.invoke(cli, ["-q", "evaluate", "--store", str(world["store"]), "--device", "cpu",
                                "--generator", str(world["g_rgb"]), "--unet", str(world["u_rgb"]),
                                "--out", str(tmp_path / "paper"), "--protocol", "paper",
                                "--fd-grid", "2"])  # fmt: skip
    assert paper.exit_code == 0, paper.output
    assert "protocol paper, centre window 32x32 px" in paper.output
    assert "Frechet distance (4 windows per tile):" in paper.output
    evals = [str(tmp_path / "ours"), str(tmp_path / "paper")]
    refused = runner.invoke(cli, ["table", *evals, "--out", str(tmp_path / "t.md")])
    assert refused.exit_code == 2 and "different protocols" in refused.output
    assert "ours (geosynth), paper (paper)" in refused.output and not (tmp_path / "t.md").exists()
    mixed = runner.invoke(cli, ["table", *evals, "--out", str(tmp_path / "t.md"), "--allow-mixed"])
    assert mixed.exit_code == 0, mixed.output
    rows = (tmp_path / "t.md").read_text().splitlines()[2:]
    assert rows[0].startswith("| ours [geosynth] |") and rows[1].startswith("| paper [paper] |")
    same = markdown_table([read_metrics(tmp_path / "paper")] * 2)
    assert "[paper]" not in same
    # a file from before protocols reads as the geosynth protocol
    old = json.loads((tmp_path / "ours" / "metrics.json").read_text())
    old.pop("protocol")
    old["format"] = "geosynth-eval/1"
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert protocol_of(read_metrics(tmp_path / "old.json")) == "geosynth"


# ----------------------------------------------------------------------------- SAR speckle

LOOKS = 3.0  # of the simulated speckle of the test tiles


@pytest.fixture(scope="module")
def speckle_store(world, tiny_store_factory):
    """The evaluation store with test tiles of two classes (left and right half) whose SAR is
    Gamma speckle of LOOKS looks, stored as the store normalises it (20 log10 A / 100)."""
    path = tiny_store_factory(
        world["root"] / "speckle.zarr", modalities=("rgb", "dem", "seg", "sar"), **EVAL_STORE
    )
    store = open_store(path, mode="r+")
    rng = np.random.default_rng(7)
    h, w = store.tile_shape
    for i in store.tiles("test"):
        seg = np.ones((h, w), dtype=np.uint8)
        seg[:, w // 2 :] = 2
        intensity = np.where(seg == 1, 1e4, 4e4) * rng.gamma(LOOKS, 1.0 / LOOKS, (h, w))
        x = np.clip(20.0 * np.log10(np.sqrt(intensity)) / 100.0, 0.0, 1.0)
        valid = store.read("sar_valid", i)
        data = TileData(rgb=store.read("rgb", i), dem=store.read("dem", i), seg=seg,
                        sar=(x * valid)[None].astype(np.float32), sar_valid=valid)  # fmt: skip
        store.write_tile(store.tile_ids[i], data)
    return path


def test_a_sar_evaluation_has_the_speckle_statistics_of_its_windows(world, speckle_store, tmp_path):
    out = tmp_path / "sar"
    m = evaluate(world["g_sar"], world["u_sar"], speckle_store, "test", out, batch_size=2,
                 device="cpu").metrics  # fmt: skip
    sp = m["speckle"]
    store = open_store(speckle_store)
    keys = {c.id: c.key for c in store.classes.classes}
    assert sp["tiles"] == m["tiles"] and sp["erode_px"] == 3 and "10^(100 x / 20)" in sp["note"]
    assert set(sp["classes"]) == {keys[1], keys[2]} and set(sp["overall"]) == {"real", "synth"}
    # the same statistics straight from the store: its SAR, eroded masks of the valid pixels
    ids = [c.id for c in store.classes.classes if c.id != 0]
    pieces = {1: [], 2: []}
    for i in store.tiles("test"):
        intensity = amplitude_from_normalised(store.read("sar", i)[0]) ** 2
        masks = homogeneous_masks(store.read("seg", i), store.read("sar_valid", i), ids, 3)
        for c in pieces:
            pieces[c].append((intensity, masks[c]))
    for c in pieces:
        entry = sp["classes"][keys[c]]
        real = entry["real"]
        assert real["pixels"] == sum(int(mk.sum()) for _, mk in pieces[c]) > 0
        assert real["enl"] == pytest.approx(enl(np.concatenate([i[mk] for i, mk in pieces[c]])),
                                            rel=1e-5)  # fmt: skip
        stats = area_stats(pieces[c])[0]
        assert real["gamma_looks"] == pytest.approx(stats.gamma_looks, rel=1e-4)
        assert real["acf1"] == pytest.approx(sum(stats.acf_x[:1] + stats.acf_y[:1]) / 2, abs=1e-6)
        assert entry["synth"]["pixels"] == real["pixels"]  # the same pixels, synthesized
    for key in (keys[1], keys[2]):  # the simulated looks come back within a class; white speckle
        real = sp["classes"][key]["real"]
        assert real["enl"] == pytest.approx(LOOKS, rel=0.1)
        assert real["gamma_looks"] == pytest.approx(LOOKS, rel=0.1) and real["gamma_ks"] < 0.05
        assert abs(real["acf1"]) < 0.1
    real, synth = sp["overall"]["real"], sp["overall"]["synth"]
    one, two = (sp["classes"][keys[c]] for c in (1, 2))
    for key in ("enl", "acf1", "gamma_looks", "cv_amplitude"):  # pixel-weighted class means
        for source, entry in (("real", real), ("synth", synth)):
            n1, n2 = one[source]["pixels"], two[source]["pixels"]
            assert entry[key] == pytest.approx(
                (n1 * one[source][key] + n2 * two[source][key]) / (n1 + n2)
            ), (source, key)
    assert real["pixels"] == one["real"]["pixels"] + two["real"]["pixels"]
    assert real["enl"] == pytest.approx(LOOKS, rel=0.1) and abs(real["acf1"]) < 0.1
    line = block_lines(m)[-1]
    assert line == (
        f"speckle (homogeneous areas, mean over classes): ENL real {real['enl']:.2f} / synthesized "
        f"{synth['enl']:.2f}, lag-1 autocorrelation {real['acf1']:.2f} / {synth['acf1']:.2f}"
    )
    rows = list(csv.DictReader((out / "speckle.csv").open()))
    assert {(r["source"], r["class"]) for r in rows} == {
        (s, k) for s in ("real", "synth") for k in (keys[1], keys[2], "all")
    }
    assert float(next(r for r in rows if r["source"] == "real" and r["class"] == "all")["enl"]) == (
        pytest.approx(real["enl"], rel=1e-5)
    )
    from PIL import Image

    with Image.open(out / "speckle.png") as im:
        assert im.format == "PNG" and im.size[0] >= 800  # two class panels
    assert read_metrics(out)["speckle"] == sp
