"""The diffusion generator: the paper's fusion in a denoiser, trained and used downstream as
the GANs are (tiny networks, a few steps, on the CPU)."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from rasterio.transform import from_origin

from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ml.networks.configs import generator_config_for
from geosynth.ml.networks.diffusion import DiffusionGenerator
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.layers import SPADE
from geosynth.ml.training.checkpoint import load_checkpoint, load_generator
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.ml.training.train import train_gan
from geosynth.ml.training.train_unet import train_unet
from geosynth.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(cap=4, crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True,
            samples=0, image_every=0, log_every=0, epoch_gap=0, steps=3)  # fmt: skip


def _run(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


def _labels(b=1, size=32):
    return F.one_hot(torch.randint(0, 11, (b, size, size)), 11).permute(0, 3, 1, 2).float()


# ----------------------------------------------------------------------------- the network


@pytest.mark.parametrize("labels, raster", [(11, 0), (0, 1), (11, 1)], ids=["seg", "dem", "both"])
def test_the_papers_three_variants_in_one_network(labels, raster):
    """Labels only through SPADE in the decoder, the raster only at the input, or both."""
    cfg = generator_config_for("diffusion", labels, raster, 3, capacity=8, n_sampling=2)
    g = build_generator(cfg)
    assert isinstance(g, DiffusionGenerator)
    spade = [m for m in g.denoiser.modules() if isinstance(m, SPADE)]
    assert bool(spade) == bool(labels)  # SPADE only where there are labels
    assert all(isinstance(m.norm, torch.nn.GroupNorm) for m in spade)
    assert g.denoiser.stem.in_channels == 3 + raster  # the noisy image and the raster
    with torch.no_grad():
        out = g(_labels() if labels else None, torch.randn(1, 1, 32, 32) if raster else None,
                steps=2)  # fmt: skip
    assert out.shape == (1, 3, 32, 32) and out.abs().max() <= 1


def test_model_info_counts_the_denoiser_of_each_variant_and_no_discriminator():
    from geosynth.ml.networks.info import network_report

    totals = {}
    for inputs in (("seg",), ("dem",), ("seg", "dem")):
        report = network_report("diffusion", inputs, "rgb", num_classes=11, capacity=8)
        assert set(report) == {"generator", "unet"}
        totals[inputs] = report["generator"]["total"]
        g = build_generator(generator_config_for("diffusion", 11 if "seg" in inputs else 0,
                                                 int("dem" in inputs), 3, capacity=8))  # fmt: skip
        assert totals[inputs] == sum(p.numel() for p in g.parameters())
    assert totals["dem",] < totals["seg",] < totals["seg", "dem"]  # SPADE only with labels


def test_sampling_is_its_noise_and_guidance_combines_two_predictions():
    torch.manual_seed(0)
    g = build_generator(generator_config_for("diffusion", 11, 1, 3, capacity=8, n_sampling=2))
    for p in g.denoiser.out.parameters():  # the output conv starts at zero: give it weights
        torch.nn.init.normal_(p, std=0.1)
    labels, dem = _labels(), torch.randn(1, 1, 32, 32)
    x_t = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = g(labels, dem, noise=x_t, steps=3)
        b = g(labels, dem, noise=x_t.clone(), steps=3)
        c = g(labels, dem, noise=torch.randn(1, 3, 32, 32), steps=3)
        guided = g(labels, dem, noise=x_t, steps=3, guidance=2.0)
        t = torch.tensor([500])
        cond = g.predict(x_t, t, labels, dem, None)
        empty = g.predict(x_t, t, labels, dem, None, torch.tensor([True]))
        zeros = g.predict(x_t, t, torch.zeros_like(labels), torch.zeros_like(dem), None)
        dpm = g(labels, dem, noise=x_t, steps=3, sampler="dpm")  # DPM-Solver++
    assert torch.equal(a, b) and not torch.allclose(a, c)  # the noise decides the sample
    assert torch.isfinite(dpm).all() and not torch.allclose(dpm, a)
    assert not torch.allclose(a, guided)
    assert torch.equal(empty, zeros)  # dropping the conditioning = zero labels and raster
    assert not torch.allclose(cond, empty)
    # guidance samples the conditioned and the dropped branch as one batch of 2B:
    # the same as two passes, combined (1 + w) f(c) - w f(0) at every step
    scheduler, x = g.sampling_scheduler("ddim", 3), x_t.clone()
    with torch.no_grad():
        for step in scheduler.timesteps:
            tt = torch.full((1,), int(step))
            f_c = g.predict(x, tt, labels, dem, None)
            f_0 = g.predict(x, tt, labels, dem, None, torch.tensor([True]))
            x = scheduler.step(3.0 * f_c - 2.0 * f_0, step, x).prev_sample
    torch.testing.assert_close(guided, x.clamp(-1, 1), atol=1e-5, rtol=0)
    with pytest.raises(UsageError, match="--guidance must be >= 0"):
        g(labels, dem, guidance=-1.0)
    with pytest.raises(UsageError, match="--sampler must be one of ddim, dpm"):
        g(labels, dem, sampler="euler")
    with pytest.raises(UsageError, match=r"--steps must be in \[1, 1000\]"):
        g(labels, dem, steps=0)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_the_samplers_reach_the_image_an_ideal_denoiser_points_to(prediction, schedule):
    """A denoiser that knows the image (its exact noise, or v) makes every sampler, at any
    step count, end on that image: the schedules, spacings and the last step are right."""
    torch.manual_seed(0)
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    g = build_generator(generator_config_for("diffusion", 11, 0, 3, capacity=8, n_sampling=2,
                                             prediction=prediction, schedule=schedule))  # fmt: skip
    alphas = g.training_scheduler().alphas_cumprod

    def ideal(x_t, t, labels, raster, conditions, drop=None):
        a = alphas[t][:, None, None, None]
        eps = (x_t - a.sqrt() * target) / (1 - a).sqrt()
        return eps if prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * target

    g.predict = ideal
    for sampler in ("ddim", "dpm"):
        for steps in (1, 5, 25):
            out = g(torch.zeros(1, 11, 32, 32), None, steps=steps, sampler=sampler)
            # 5e-3: epsilon's x0 at the last timestep divides fp32 rounding by sqrt(alpha)
            # ~ 1e-4; the sampler's own faults (a last step left at timestep 0) are 0.02
            torch.testing.assert_close(out, target, atol=5e-3, rtol=0)


def test_the_acquisition_condition_changes_its_own_sample_only():
    torch.manual_seed(0)
    g = build_generator(generator_config_for("diffusion", 11, 1, 3, capacity=8, n_sampling=2,
                                             condition_dim=3))  # fmt: skip
    for p in g.parameters():  # the zero-initialised layers (output, FiLM-like paths): weights
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    labels, dem, x_t = _labels(2), torch.randn(2, 1, 32, 32), torch.randn(2, 3, 32, 32)
    c = torch.tensor([[0.5, -0.5, 1.0], [0.5, -0.5, 1.0]])
    other = c.clone()
    other[0] = torch.tensor([-0.9, 0.2, -1.0])
    with torch.no_grad():
        a, b = g(labels, dem, c, x_t, steps=2), g(labels, dem, c, x_t, steps=2)
        changed = g(labels, dem, other, x_t, steps=2)
    assert torch.equal(a, b)
    assert (a[0] - changed[0]).abs().mean() > 1e-4  # another season: another image
    assert torch.allclose(a[1], changed[1], atol=1e-6)  # the other sample keeps its own
    with pytest.raises(UsageError, match="conditions"):
        g(labels, dem, None, x_t)


def test_the_training_objective_targets_the_noise_or_v():
    torch.manual_seed(0)
    for prediction, schedule in (("epsilon", "cosine"), ("v_prediction", "linear")):
        g = build_generator(generator_config_for("diffusion", 11, 0, 3, capacity=8, n_sampling=2,
                                                 prediction=prediction, schedule=schedule))  # fmt: skip
        loss = g.training_loss(torch.rand(2, 3, 32, 32) * 2 - 1, _labels(2), None, cond_drop=0.5)
        loss.backward()
        assert loss.item() > 0
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_store_factory):
    root = tmp_path_factory.mktemp("diffusion")
    store = tiny_store_factory(
        root / "s.zarr", n_train=2, n_test=2, modalities=("rgb", "dem", "seg", "sar")
    )
    out = {"store": store, "root": root}
    for name, kw in (("rgb", {}), ("sar", dict(output="sar"))):
        out[name] = root / name
        train_gan(GanConfig(store=str(store), out=str(out[name]), generator="diffusion",
                            inputs=("seg", "dem"), max_steps=2, **{**TINY, **kw}))  # fmt: skip
    out["gan"] = root / "gan"
    train_gan(GanConfig(store=str(store), out=str(out["gan"]), generator="ours",
                        inputs=("seg", "dem"), max_steps=1, **{k: v for k, v in TINY.items() if k != "steps"}))  # fmt: skip
    out["unet"] = root / "unet"
    train_unet(UNetRunConfig(store=str(store), out=str(out["unet"]), base_channels=4, crop=32,
                             batch_size=2, workers=0, tensorboard=False, max_steps=1,
                             val_split=None, samples=0))  # fmt: skip
    return out


def test_the_diffusion_run_resumes_exactly(tiny_store, tmp_path):
    """4 steps in one go equal 2 steps, a stop, and 2 more resumed (weights, EMA, Adam)."""
    cfg = dict(store=str(tiny_store), generator="diffusion", inputs=("seg", "dem"), ema=0.9,
               epochs=2, checkpoint_every=0, **TINY)  # 6 tiles / batch 2: 3 steps an epoch  # fmt: skip
    train_gan(GanConfig(out=str(tmp_path / "once"), **cfg))
    train_gan(GanConfig(out=str(tmp_path / "twice"), **{**cfg, "epochs": 1}))
    train_gan(GanConfig(out=str(tmp_path / "twice"), **cfg), resume=True)
    a = load_checkpoint(tmp_path / "once" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "twice" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6 and set(a["models"]) == {"generator", "generator_ema"}
    for name in a["models"]:
        for key, value in a["models"][name]["state"].items():
            assert torch.equal(value, b["models"][name]["state"][key]), (name, key)
    assert "discriminator" not in a["optimizers"]
    assert a["metrics"]["mse"] == pytest.approx(b["metrics"]["mse"])


def test_the_denoisers_spade_width_follows_the_capacity():
    """SPADE's shared layer is min(128, 2 * capacity) wide in the denoiser (128 at the
    paper's 64, as the GANs' always), and a run's saved width is the one it loads with."""
    for capacity, width in ((4, 8), (8, 16), (64, 128), (96, 128)):
        cfg = generator_config_for("diffusion", 11, 1, 3, capacity=capacity, n_sampling=2)
        g = build_generator(cfg)
        assert cfg.spade_hidden == width
        assert {m.shared[0].out_channels for m in g.modules() if isinstance(m, SPADE)} == {width}
    assert generator_config_for("spade", 11, 0, 3, capacity=8).spade_hidden == 128
    saved = generator_config_for("diffusion", 11, 1, 3, capacity=8, spade_hidden=128)
    assert build_generator(saved).denoiser.middle.norm1.shared[0].out_channels == 128


def test_validation_draws_the_same_noise_each_time(tiny_store):
    """Two validations of the same weights score the same: the noise is seeded."""
    from geosynth.ml.training.distributed import DistContext
    from geosynth.ml.training.train import DiffusionTask

    cfg = GanConfig(store=str(tiny_store), out="unused", generator="diffusion",
                    inputs=("seg", "dem"), val_split="test", val_crops=2, **TINY)  # fmt: skip
    task = DiffusionTask(cfg, DistContext())
    for p in task.g_net.denoiser.out.parameters():  # the output conv starts at zero
        torch.nn.init.normal_(p, std=0.1)
    first, second = task.validate(), task.validate()
    assert first["l1"] == second["l1"] > 0
    task.config = dataclasses.replace(cfg, seed=1)  # another run's seed: other noise
    assert task.validate()["l1"] != first["l1"]


def test_bad_diffusion_options_name_themselves(tiny_store, tmp_path):
    base = ["train", "--store", tiny_store, "--out", tmp_path / "r", "--generator", "diffusion",
            "--inputs", "seg,dem"]  # fmt: skip
    for extra, message in ((["--guidance", "-1"], "--guidance"), (["--steps", "0"], "--steps"),
                           (["--sampler", "euler"], "--sampler"),
                           (["--noise", "8"], "--noise applies to the GANs"),
                           (["--lambda-fm", "10", "--d-step", "authors", "--d-fake", "regenerate"],
                            "--lambda-fm, --d-fake, --d-step: options of the GANs"),
                           (["--guidance", "2", "--cond-drop", "0"], "--guidance needs --cond-drop"),
                           (["--steps", "2000"], "--steps must be")):  # fmt: skip
        result = _run(*base, *extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
    assert not (tmp_path / "r").exists()
    gan = _run("train", "--store", tiny_store, "--out", tmp_path / "g", "--generator", "ours",
               "--steps", "10", "--cond-drop", "0.2")  # fmt: skip
    assert gan.exit_code == 2 and "--steps, --cond-drop: options of the diffusion" in gan.output


class _Noise(torch.nn.Module):
    """A stand-in diffusion generator that returns its starting noise: what synthesis
    hands each window is then visible in the output."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def forward(self, labels, raster, noise=None, **sampling):
        return noise.clamp(-1, 1)


def test_every_window_starts_from_its_crop_of_one_noise_field_per_tile():
    from geosynth.ml.synthesis.synthesize import noise_seed, synthesize_array

    cfg = generator_config_for("diffusion", 11, 0, 3, capacity=8, n_sampling=2)
    run = GanConfig(store="unused", out="unused", generator="diffusion", inputs=("seg",), crop=32)
    seg = np.random.default_rng(0).integers(0, 11, (70, 90)).astype(np.uint8)  # edge windows
    out = {}
    for where, seed in (("tile a", 0), ("tile a", 1), ("tile b", 0)):
        out[where, seed] = synthesize_array(_Noise(cfg), run, {"seg": seg}, 11, window=32,
                                            overlap=8, seed=seed, where=where)  # fmt: skip
    draw = torch.Generator().manual_seed(noise_seed(0, "tile a"))
    field = torch.randn((3, 70, 90), generator=draw).clamp(-1, 1).numpy()
    assert np.allclose(out["tile a", 0], field, atol=1e-6)  # the edge windows included
    assert not np.allclose(out["tile a", 0], out["tile a", 1])  # another seed
    assert not np.allclose(out["tile a", 0], out["tile b", 0])  # another tile


def test_resized_windows_start_from_iid_noise_at_the_networks_scale():
    """--resize 64 of 32 px windows: the field is drawn at twice the tile's size and each
    window takes its 64 px crop (not a 32 px crop resampled, which repeats values)."""
    from geosynth.ml.synthesis.synthesize import noise_seed, synthesize_array

    class Recorder(_Noise):
        def forward(self, labels, raster, noise=None, **sampling):
            seen.append(noise.clone())
            return super().forward(labels, raster, noise)

    seen: list[torch.Tensor] = []
    cfg = generator_config_for("diffusion", 11, 0, 3, capacity=8, n_sampling=2)
    run = GanConfig(store="unused", out="unused", generator="diffusion", inputs=("seg",),
                    crop=32, resize=64)  # fmt: skip
    seg = np.zeros((70, 90), dtype=np.uint8)
    synthesize_array(Recorder(cfg), run, {"seg": seg}, 11, window=32, overlap=8, batch_size=64,
                     where="tile a")  # fmt: skip
    draw = torch.Generator().manual_seed(noise_seed(0, "tile a"))
    field = torch.randn((3, 140, 180), generator=draw)
    (noise,) = seen  # every window in one batch: (windows, 3, 64, 64)
    assert noise.shape[1:] == (3, 64, 64)
    starts = [(y, x) for y in (0, 24, 38) for x in (0, 24, 48, 58)]  # stride 24, edges last
    assert len(noise) == len(starts)
    for crop, (y, x) in zip(noise, starts, strict=True):
        ys, xs = min(2 * y, 140 - 64), min(2 * x, 180 - 64)
        assert torch.equal(crop, field[:, ys : ys + 64, xs : xs + 64])
    assert not torch.equal(noise[..., 0::2, :], noise[..., 1::2, :])  # no repeated rows


# ----------------------------------------------------------------------------- downstream


def test_synthesize_draws_seeded_samples_and_blends_windows(runs, tmp_path):
    store, run = runs["store"], runs["rgb"]
    tile = open_store(store).tile_ids[0]
    args = ["synthesize", "--generator", run, "--store", store, "--tiles", tile, "--window", "32",
            "--overlap", "8", "--samples", "2", "--steps", "2"]  # fmt: skip
    for out in ("a", "b"):
        result = _run(*args, "--out", tmp_path / out)
        assert result.exit_code == 0, result.output
    read = {}
    for out in ("a", "b"):
        for k in (1, 2):
            with rasterio.open(tmp_path / out / f"{tile}_rgb_s{k}.tif") as src:
                read[out, k] = src.read()
    assert np.array_equal(read["a", 1], read["b", 1])  # the same seed: the same image
    assert not np.array_equal(read["a", 1], read["a", 2])  # samples differ
    for other, message in (("gan", "--steps: options of the diffusion generator"),
                           ("unet", "holds a 'unet' run, not a 'gan' run")):  # fmt: skip
        result = _run("synthesize", "--generator", runs[other], "--store", store, "--tiles", tile,
                      "--out", tmp_path / other, "--steps", "3")  # fmt: skip
        assert result.exit_code == 2 and message in result.output, result.output


def test_evaluate_both_protocols_and_the_edits(runs, tmp_path):
    store, run, unet = runs["store"], runs["rgb"], runs["unet"]
    opened = open_store(store)
    test_tile = opened.tile_ids[opened.tiles("test")[0]]
    for protocol in ("geosynth", "paper"):
        out = tmp_path / protocol
        result = _run("evaluate", "--generator", run, "--unet", unet, "--store", store,
                      "--protocol", protocol, "--crop", "32", "--out", out)  # fmt: skip
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["generator"]["kind"] == "diffusion"
        assert 0 <= metrics["blocks"]["fake_gt"]["miou"] <= 1
    again = _run("evaluate", "--generator", run, "--unet", unet, "--store", store, "--crop", "32",
                 "--out", tmp_path / "again")  # fmt: skip
    assert again.exit_code == 0
    first = json.loads((tmp_path / "geosynth" / "metrics.json").read_text())["blocks"]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())["blocks"]
    assert first == second  # seeded: the same numbers
    dem = opened.read("dem", opened.index(test_tile))
    level = float(np.nanmedian(dem))
    flood = _run("edit-flood", "--store", store, "--tile", test_tile, "--hmin", f"{level:.2f}",
                 "--generator", run, "--out", tmp_path / "flood")  # fmt: skip
    assert flood.exit_code == 0, flood.output
    swap = _run("edit-classes", "--store", store, "--tile", test_tile, "--from", "forest", "--to",
                "water", "--generator", run, "--out", tmp_path / "swap")  # fmt: skip
    assert swap.exit_code == 0, swap.output
    augment = _run("augment", "--generator", run, "--store", store, "--tiles", "1", "--window",
                   "32", "--out", tmp_path / "aug.zarr")  # fmt: skip
    assert augment.exit_code == 0, augment.output
    assert open_store(tmp_path / "aug.zarr").tile_ids


def test_sar_stats_of_a_diffusion_sar_generator(runs, tmp_path):
    store = runs["store"]
    opened = open_store(store)
    tile = next(opened.tile_ids[i] for i in opened.tiles() if opened.present("sar")[i])
    result = _run("synthesize", "--generator", runs["sar"], "--store", store, "--tiles", tile,
                  "--window", "32", "--out", tmp_path / "synth")  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = _run("sar-stats", "--store", store, "--synth", tmp_path / "synth" / f"{tile}_sar.tif",
                 "--tiles", tile, "--erode", "0", "--out", tmp_path / "stats")  # fmt: skip
    assert stats.exit_code == 0, stats.output
    with open(tmp_path / "stats" / "sar_stats.csv") as f:
        synth = [r for r in csv.DictReader(f) if r["source"] == "synth"]
    assert synth and all(int(r["pixels"]) >= 500 for r in synth)  # the generator's SAR measured


def _dated_store(path, tiny_store):
    """The tiny store's train tiles again, each with an orthophoto flight date (for
    --conditions season)."""
    from geosynth.store import TileData, TilePlan, create_store, modality

    src = open_store(tiny_store)
    plans = [TilePlan(src.tile_ids[i], "demo", "train") for i in src.tiles("train")]
    store = create_store(path, plans, tile_shape=src.tile_shape,
                         modalities=[modality(m) for m in ("rgb", "dem", "seg")],
                         dataset="test", crs="EPSG:25832", classes=src.classes)  # fmt: skip
    for k, plan in enumerate(plans):
        i = src.index(plan.tile_id)
        date = f"2022-{3 + k:02d}-15"
        store.write_tile(plan.tile_id, TileData(
            rgb=src.read("rgb", i), dem=src.read("dem", i), seg=src.read("seg", i),
            acquisition={"rgb": {"date": date, "year": 2022}},
        ))  # fmt: skip
    return path


def test_vary_shows_a_conditioned_diffusion_generator_through_the_seasons(tiny_store, tmp_path):
    store = _dated_store(tmp_path / "dated.zarr", tiny_store)
    run = tmp_path / "seasons"
    train_gan(GanConfig(store=str(store), out=str(run), generator="diffusion", inputs=("seg",),
                        conditions=("season",), epochs=1, split="train", val_split=None,
                        **{**TINY, "tensorboard": True, "samples": 1, "image_every": 1}))  # fmt: skip
    assert list(run.rglob("events.out.tfevents*"))  # TensorBoard as the GAN: losses, sampled images
    assert list((run / "samples").glob("*.png"))
    result = _run("vary", "--generator", run, "--store", store, "--tile", "356_5645", "--season",
                  "80:200:60", "--window", "32", "--out", tmp_path / "vary")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "vary").glob("356_5645_rgb_season*.tif"))) == 3
    assert (tmp_path / "vary" / "356_5645_vary.gif").exists()


def _write(path, values):
    h, w = values.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=1, dtype=values.dtype,
                       crs="EPSG:25832", transform=from_origin(356000, 5646000, 1, 1)) as dst:  # fmt: skip
        dst.write(values, 1)


def test_fusion_probe_takes_the_diffusion_generator(runs, tmp_path):
    store, opened = runs["store"], open_store(runs["store"])
    truth = tmp_path / "truth"
    truth.mkdir()
    rng = np.random.default_rng(0)
    for i in opened.tiles("test"):
        tile, seg = opened.tile_ids[i], opened.read("seg", i)
        dtm = opened.read("dem", i)[0].astype(np.float32)
        _write(truth / f"{tile}_landcover.tif", seg)
        _write(truth / f"{tile}_dtm.tif", dtm)
        _write(truth / f"{tile}_dsm.tif", dtm + (rng.random(seg.shape) < 0.2) * np.float32(8))
    result = _run("fusion-probe", "--generator", f"diff={runs['rgb']}", "--ablate", "diff",
                  "--unet", runs["unet"], "--store", store, "--truth", truth, "--crop", "32",
                  "--out", tmp_path / "probe")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "probe" / "probe.json").exists()
    generator, config = load_generator(runs["rgb"])
    assert config.generator == "diffusion" and generator.config.steps == 3
