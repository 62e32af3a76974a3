"""geosynth train / train-unet on tiny real stores: run folder, exact resume, NaN stop, config."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner

from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.ml.metrics import confusion_matrix, segmentation_scores
from geosynth.ml.networks.configs import DiscriminatorConfig
from geosynth.ml.networks.discriminator import DiscriminatorOutput, build_discriminator
from geosynth.ml.training.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_generator,
    load_unet,
    rng_state,
    set_rng_state,
)
from geosynth.ml.training.config import GanConfig, UNetRunConfig, resolve_config
from geosynth.ml.training.distributed import strip_option, torchrun_command
from geosynth.ml.training.losses import feature_matching_loss, hinge_d_loss, hinge_g_loss
from geosynth.ml.training.train import train_gan
from geosynth.ml.training.train_unet import train_unet
from geosynth.ml.training.trainer import TrainingDiverged
from geosynth.store import TileData, open_store

TINY = dict(cap=4, crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True,
            epoch_gap=0)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store_path(tiny_store):
    return tiny_store


def _gan(store_path, out, **kw) -> GanConfig:
    return GanConfig(store=str(store_path), out=str(out), **{**TINY, **kw})


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- losses


def _fake_output(scores: list[torch.Tensor], feats: list[list[torch.Tensor]]):
    return DiscriminatorOutput(scores, feats)


def test_hinge_losses_on_known_scores():
    fake = torch.tensor([[-2.0, 0.5]]).reshape(1, 1, 1, 2)  # relu(1 + x): 0, 1.5 -> 0.75
    real = torch.tensor([[0.0, 3.0]]).reshape(1, 1, 1, 2)  # relu(1 - x): 1, 0 -> 0.5
    out = _fake_output([torch.cat([fake, real]), torch.cat([fake * 0, real * 0])], [[], []])
    d_real, d_fake = hinge_d_loss(out, 1)
    # scale 2: all zeros -> relu(1) = 1 for both; averaged over the two scales
    assert d_real.item() == pytest.approx((0.5 + 1) / 2)
    assert d_fake.item() == pytest.approx((0.75 + 1) / 2)
    assert hinge_g_loss(out, 1).item() == pytest.approx(-(-0.75 + 0) / 2)


def test_feature_matching_is_l1_and_trains_only_the_fake_side():
    fake = torch.zeros(1, 2, 3, 3, requires_grad=True)
    real = torch.ones(1, 2, 3, 3, requires_grad=True)
    feat = torch.cat([fake, real]) * 2  # (2, 2, 3, 3): |0 - 2| = 2 everywhere
    loss = feature_matching_loss(_fake_output([], [[feat, feat]]), 1)
    assert loss.item() == pytest.approx(4.0)  # two layers, one scale
    loss.backward()
    assert fake.grad.abs().sum() > 0
    assert real.grad is None or real.grad.abs().sum() == 0


# ----------------------------------------------------------------------------- config


def test_config_precedence_cli_over_yaml_over_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store: a.zarr\nout: runs/x\ncap: 32\nlr-g: 2e-4\ninputs: [seg]\n")
    cfg = resolve_config(GanConfig, {"cap": 16, "generator": "spade"}, path)
    assert cfg.cap == 16  # command line wins
    assert cfg.lr_g == 2e-4 and cfg.inputs == ("seg",)  # YAML over defaults (text -> float)
    assert cfg.lr_d == 4e-4 and cfg.betas == (0.0, 0.9) and cfg.lambda_fm == 5.0  # the paper
    again = GanConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(
    "text, message",
    [
        ("store: a\nout: b\ncaps: 3\n", "unknown key(s) caps"),
        ("store: a\nout: b\ncrop: 8\n", "crop must be an integer >= 16"),
        ("store: a\nout: b\ninputs: seg,rgb\n", "output rgb cannot also be an input"),
        ("store: a\nout: b\nlr_d: -1\n", "lr_d must be a finite number > 0"),
        ("- a\n- b\n", "must hold a mapping"),
        ("store: [unclosed\n", "not readable YAML"),
        ("task: unet\nstore: a\nout: b\n", "a 'unet' configuration, not 'gan'"),
    ],
)
def test_bad_config_files_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match="bad.yaml|mapping|must be") as info:
        resolve_config(GanConfig, {}, path)
    assert message in str(info.value)


def test_resume_may_change_the_length_but_not_the_model():
    base = GanConfig(store="a", out="runs/x").to_dict()
    assert resolve_config(GanConfig, {"epochs": 300}, base=base).epochs == 300
    with pytest.raises(UsageError, match="cannot change cap, lr_g when resuming runs/x"):
        resolve_config(GanConfig, {"cap": 32, "lr_g": 1e-3}, base=base)


def test_torchrun_command_drops_nproc():
    argv = ["-q", "train", "--nproc", "2", "--cap", "4", "--nproc=3", "--out", "r"]
    assert strip_option(argv, "--nproc") == ["-q", "train", "--cap", "4", "--out", "r"]
    cmd = torchrun_command(2, ["train", "--cap", "4"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       "-m", "geosynth", "train", "--cap", "4"]  # fmt: skip


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoints_load_weights_only(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": UsageError("not a tensor")}, bad)
    with pytest.raises(DataError, match="evil.pt cannot be loaded safely"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(DataError, match="not a geosynth training checkpoint"):
        load_checkpoint(other)
    with pytest.raises(DataError, match="neither a run folder nor a checkpoint"):
        load_generator(tmp_path / "missing")


def test_rng_states_round_trip():
    import random

    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


# ----------------------------------------------------------------------------- GAN runs


def test_gan_run_writes_its_folder_and_loads_back(store_path, tmp_path):
    out = tmp_path / "run"
    cfg = _gan(store_path, out, epochs=2, checkpoint_every=2, log_every=1, image_every=1,
               tensorboard=True, samples=2)  # fmt: skip
    events = []
    result = train_gan(cfg, progress=events.append)
    assert result.step == 6  # 6 train tiles / batch 2 = 3 steps per epoch
    assert [e.kind for e in events].count("step") == 6
    assert events[0].kind == "start" and events[-1].kind == "end"
    assert all(e.images_per_s > 0 for e in events if e.kind == "step")

    assert yaml.safe_load((out / "config.yaml").read_text())["cap"] == 4
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["last.pt", "step_00000002.pt", "step_00000004.pt", "step_00000006.pt"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]  # fmt: skip
    from PIL import Image

    with Image.open(out / "samples" / "epoch_0001.png") as im:
        assert im.size == (4 * 32 + 3 * 2, 14 + 2 * 32 + 2)  # labels | dem | fake | real, 2 rows
        header = np.asarray(im.convert("L"))[:14]  # the column headers: dark text on white
        assert (
            (header < 128).any() and (header[:, :32] < 128).any() and (header[:, -32:] < 128).any()
        )
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "g_adv" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r[k]) for r in steps for k in ("g_adv", "g_fm", "d_real", "d_fake"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/g_adv", "loss/g_fm", "loss/d_real", "loss/d_fake", "lr/generator",
            "lr/discriminator", "perf/images_per_s"} <= scalars  # fmt: skip
    assert acc.Scalars("lr/discriminator")[0].value == pytest.approx(4e-4)
    assert "train/inputs_output_target" in acc.Tags()["images"]

    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    assert payload["step"] == 6 and payload["task"] == "gan"
    g, run_cfg = load_generator(out)
    assert run_cfg == cfg and not g.training
    assert _states_equal(g.state_dict(), result.models["generator"].state_dict())
    step = load_checkpoint(out / "checkpoints" / "step_00000004.pt")["models"]["discriminator"]
    d = build_discriminator(DiscriminatorConfig.from_dict(step["config"]))
    d.load_state_dict(step["state"])
    assert len(d.scales) == 2
    labels = F.one_hot(torch.randint(0, 11, (1, 32, 32)), 11).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        assert g(labels, torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_resume_continues_exactly(store_path, tmp_path):
    straight = train_gan(_gan(store_path, tmp_path / "a", epochs=2, max_steps=4))
    first = train_gan(_gan(store_path, tmp_path / "b", epochs=2, max_steps=2))
    assert first.step == 2  # stopped inside epoch 1 (3 steps per epoch)
    resumed = train_gan(_gan(store_path, tmp_path / "b", epochs=2, max_steps=4), resume=True)
    assert resumed.step == straight.step == 4
    for name in ("generator", "discriminator"):
        a, b = straight.models[name].state_dict(), resumed.models[name].state_dict()
        assert _states_equal(a, b), name
    start = train_gan(_gan(store_path, tmp_path / "c", epochs=2, max_steps=1))
    assert not _states_equal(start.models["generator"].state_dict(), a)
    opt_a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["optimizers"]
    opt_b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["optimizers"]
    for k, v in opt_a["generator"]["state"].items():
        assert torch.equal(v["exp_avg"], opt_b["generator"]["state"][k]["exp_avg"])


def test_existing_run_is_refused_and_resume_needs_a_run(store_path, tmp_path):
    out = tmp_path / "run"
    args = ["-q", "train", "--store", str(store_path), "--out", str(out), "--cap", "4",
            "--crop", "32", "--batch-size", "2", "--max-steps", "1", "--workers", "0",
            "--no-tensorboard"]  # fmt: skip
    runner = CliRunner()
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    before = (out / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = runner.invoke(cli, args)
    assert again.exit_code == 2
    assert f"run folder {out} already exists" in again.output and "--resume" in again.output
    assert (out / "checkpoints" / "last.pt").stat().st_mtime_ns == before  # untouched
    # a run stopped before its first checkpoint (a killed pipeline step): the same command
    # starts it again, its log keeps no line of the stopped run
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    shutil.copy(out / "config.yaml", stopped / "config.yaml")
    (stopped / "log.jsonl").write_text('{"step": 7, "g_adv": 1.0}\n{"step": 8, "g_a')
    rerun = runner.invoke(cli, [str(stopped) if a == str(out) else a for a in args])
    assert rerun.exit_code == 0, rerun.output
    assert (stopped / "checkpoints" / "last.pt").exists()
    logged = [json.loads(line)["step"] for line in (stopped / "log.jsonl").read_text().splitlines()]
    assert 7 not in logged and 1 in logged
    changed = runner.invoke(cli, [*args, "--resume", "--cap", "8"])
    assert changed.exit_code == 2 and "cannot change cap" in changed.output
    nothing = runner.invoke(cli, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert nothing.exit_code == 2 and "holds no run" in nothing.output
    more = runner.invoke(cli, ["-q", "train", "--out", str(out), "--resume", "--max-steps", "2"])
    assert more.exit_code == 0, more.output
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2


def test_nan_loss_stops_naming_the_step_and_the_last_checkpoint(tmp_path, tiny_store_factory):
    path = tiny_store_factory(tmp_path / "s.zarr", n_train=2, n_test=0)
    out = tmp_path / "run"
    train_gan(_gan(path, out, max_steps=2, checkpoint_every=1))
    store = open_store(path, mode="r+")  # a corrupt DEM: float32 overflow in the first conv
    for tile_id in store.tile_ids:
        i = store.index(tile_id)
        data = TileData(
            rgb=store.read("rgb", i), seg=store.read("seg", i),
            dem=np.full((1, *store.tile_shape), 3e38, dtype=np.float32),
        )  # fmt: skip
        store.write_tile(tile_id, data)
    with pytest.raises(TrainingDiverged) as info:
        train_gan(_gan(path, out, max_steps=4, checkpoint_every=1), resume=True)
    message = str(info.value)
    assert "at step 3" in message and "last.pt (step 2)" in message
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2  # nothing bad saved
    result = CliRunner().invoke(
        cli, ["-q", "train", "--out", str(out), "--resume", "--max-steps", "4"]
    )
    assert result.exit_code == 1 and "training diverged at step 3" in result.output


def test_generator_must_match_the_inputs(store_path, tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--store", str(store_path), "--out", str(tmp_path / "r"),
              "--generator", "pix2pix", "--inputs", "seg,dem", "--cap", "4", "--crop", "32"]
    )  # fmt: skip
    assert result.exit_code == 2 and "takes a raster" in result.output
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_config_file_and_command_line_through_the_cli(store_path, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": str(store_path),
                "out": str(out),
                "generator": "spade",
                "inputs": "seg",
                "cap": 8,
                "crop": 32,
                "batch_size": 2,
                "workers": 0,
                "tensorboard": False,
                "max_steps": 1,
            }
        )  # fmt: skip
    )
    result = CliRunner().invoke(cli, ["-q", "train", "--config", str(config), "--cap", "4"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["cap"] == 4 and saved["generator"] == "spade" and saved["inputs"] == ["seg"]
    g, _ = load_generator(out)
    assert g.config.kind == "spade" and g.config.capacity == 4 and g.config.raster_channels == 0


# ----------------------------------------------------------------------------- U-Net


def test_miou_on_a_known_confusion():
    target = torch.tensor([[0, 1, 1, 2], [2, 2, 3, 0]])
    pred = torch.tensor([[2, 1, 2, 2], [2, 1, 3, 3]])
    conf = confusion_matrix(pred, target, 4)
    assert conf.sum() == 6  # class 0 pixels left out
    scores = segmentation_scores(conf.numpy())
    miou, iou = scores["miou"], scores["iou"]
    # class 1: inter 1, union 2+2-1=3; class 2: inter 2, union 3+3-2=4; class 3: 1/1
    assert iou[1:].tolist() == pytest.approx([1 / 3, 2 / 4, 1.0])
    assert miou == pytest.approx((1 / 3 + 0.5 + 1) / 3)


def test_unet_trains_reports_miou_per_epoch_and_resumes(store_path, tmp_path):
    out = tmp_path / "unet"
    args = ["-q", "train-unet", "--store", str(store_path), "--input", "rgb", "--out", str(out),
            "--base-channels", "4", "--crop", "32", "--batch-size", "2", "--epochs", "2",
            "--workers", "0", "--no-tensorboard", "--deterministic", "--epoch-gap", "0"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r.get("end_of_epoch")]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0 <= r["miou"] <= 1 and 0 <= r["pixel_acc"] <= 1 for r in epochs)
    assert len(list((out / "samples").glob("epoch_*.png"))) == 2
    unet, cfg = load_unet(out)
    assert cfg.input == "rgb" and unet.config.num_classes == 11 and unet.config.base_channels == 4
    more = CliRunner().invoke(cli, ["-q", "train-unet", "--out", str(out), "--resume",
                                    "--epochs", "3"])  # fmt: skip
    assert more.exit_code == 0, more.output
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 9
    with pytest.raises(UsageError, match="holds a 'unet' run"):
        load_generator(out)
    wrong = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume"])
    assert wrong.exit_code == 2 and "resume it with train-unet" in wrong.output


@pytest.mark.slow
def test_unet_learns_the_colour_to_class_mapping(store_path, tmp_path):
    """RGB is the class colour plus noise: 150 steps lift the validation mIoU well above chance."""
    cfg = UNetRunConfig(store=str(store_path), out=str(tmp_path / "u"), base_channels=8,
                        crop=32, batch_size=2, epochs=50, workers=0, tensorboard=False,
                        lr=1e-3, samples=0, seed=1, log_every=0, epoch_gap=0)  # fmt: skip
    train_unet(cfg)
    lines = (tmp_path / "u" / "log.jsonl").read_text().splitlines()
    mious = [r["miou"] for r in map(json.loads, lines) if r.get("end_of_epoch")]
    assert len(mious) == 50
    assert mious[0] < 0.05 and mious[-1] > 0.2, mious


# ----------------------------------------------------------------------------- rough edges


def test_short_runs_log_every_epoch_and_at_the_end(store_path, tmp_path):
    out = tmp_path / "run"
    cfg = _gan(store_path, out, epochs=2, max_steps=4, tensorboard=True, samples=1)
    assert cfg.log_every == 50 and cfg.image_every == 500  # the defaults, far beyond 4 steps
    train_gan(cfg)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "g_adv" in r] == [3, 4]  # epoch 1's end, the end
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in acc.Scalars("loss/g_adv")] == [3, 4]
    assert [e.step for e in acc.Images("train/inputs_output_target")] == [3, 4]


def test_resuming_a_finished_run_says_so_and_how_to_extend_it(store_path, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--store", str(store_path), "--out", str(out), "--cap", "4", "--crop",
            "32", "--batch-size", "2", "--epochs", "1", "--workers", "0"]  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(cli, ["-q", *args]).exit_code == 0
    events = sorted((out / "tensorboard").iterdir())
    again = runner.invoke(cli, ["train", "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert f"{out} is complete: 3 steps, 1 of 1 epochs" in again.output
    assert f"geosynth train --resume --out {out} --epochs 2" in again.output
    assert sorted((out / "tensorboard").iterdir()) == events  # no new, empty event file
    more = runner.invoke(cli, ["-q", "train", "--out", str(out), "--resume", "--epochs", "2"])
    assert more.exit_code == 0, more.output
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 6


def test_store_path_is_saved_absolute_and_resumes_from_another_directory(
    store_path, tmp_path, monkeypatch
):
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(store_path, work / "data.zarr")
    monkeypatch.chdir(work)
    train_gan(_gan("data.zarr", "run", epochs=2, max_steps=1))
    saved = yaml.safe_load((work / "run" / "config.yaml").read_text())
    assert saved["store"] == str((work / "data.zarr").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    runner = CliRunner()
    more = runner.invoke(cli, ["-q", "train", "--out", str(work / "run"), "--resume",
                               "--max-steps", "2"])  # fmt: skip
    assert more.exit_code == 0, more.output
    # a config.yaml edited by hand with a path relative to the run folder
    saved["store"] = "../data.zarr"
    (work / "run" / "config.yaml").write_text(yaml.safe_dump(saved))
    again = runner.invoke(cli, ["-q", "train", "--out", str(work / "run"), "--resume",
                                "--max-steps", "3"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert load_checkpoint(work / "run" / "checkpoints" / "last.pt")["step"] == 3


def test_ctrl_c_says_what_is_saved_and_how_to_resume(store_path, tmp_path, caplog):
    out = tmp_path / "run"

    def interrupt(info):
        if info.kind == "step" and info.step == 4:
            raise KeyboardInterrupt

    with caplog.at_level("WARNING", logger="geosynth"), pytest.raises(KeyboardInterrupt):
        train_gan(_gan(store_path, out, epochs=3), progress=interrupt)
    last = out / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 3  # the epoch-end checkpoint
    assert f"interrupted at step 4; saved: {last} (step 3)" in caplog.text
    assert f"geosynth train --resume --out {out}" in caplog.text


# ----------------------------------------------------------------------------- modern practice


def test_lr_schedule_is_constant_then_linear_to_zero_at_the_boundaries():
    from geosynth.ml.training.trainer import lr_factor

    assert [lr_factor(e, 10, None) for e in range(10)] == [1.0] * 10
    factors = [lr_factor(e, 10, 5) for e in range(10)]
    assert factors[:6] == [1.0] * 6  # SPADE: the first decayed epoch still trains at the base
    assert factors[6:] == pytest.approx([0.8, 0.6, 0.4, 0.2])  # the last at 1/(10 - 5)
    assert lr_factor(0, 4, 0) == 1.0 and lr_factor(3, 4, 0) == pytest.approx(0.25)
    assert lr_factor(9, 10, 10) == 1.0  # decay starting after the run: constant


def test_lr_decay_start_sets_each_epochs_rates_and_survives_resume(store_path, tmp_path):
    out = tmp_path / "run"
    train_gan(_gan(store_path, out, epochs=3, lr_decay_start=1, max_steps=4))  # into epoch 2
    opt = load_checkpoint(out / "checkpoints" / "last.pt")["optimizers"]["generator"]
    assert opt["param_groups"][0]["lr"] == pytest.approx(1e-4)  # epoch 2 (index 1): full rate
    train_gan(_gan(store_path, out, epochs=3, lr_decay_start=1), resume=True)
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    assert payload["step"] == 9
    g, d = (payload["optimizers"][n]["param_groups"][0] for n in ("generator", "discriminator"))
    assert g["lr"] == pytest.approx(0.5e-4) and g["base_lr"] == pytest.approx(1e-4)
    assert d["lr"] == pytest.approx(2e-4)  # the last epoch: half the rate (1 / (3 - 1))


def test_ema_weights_differ_from_the_raw_ones_and_are_what_evaluation_loads(store_path, tmp_path):
    from geosynth.ml.training.checkpoint import load_generator
    from geosynth.ml.training.distributed import DistContext
    from geosynth.ml.training.train import GanTask
    from geosynth.ml.training.trainer import _seed

    cfg = _gan(store_path, tmp_path / "run", epochs=1, max_steps=1, ema=0.9)
    _seed(cfg.seed)  # the networks as the run initialises them
    initial = GanTask(cfg, DistContext(device=torch.device("cpu"))).g_net.state_dict()
    result = train_gan(cfg)
    raw, ema = (result.models[n].state_dict() for n in ("generator", "generator_ema"))
    assert not _states_equal(raw, ema)
    for name, param in result.models["generator"].named_parameters():
        expected = initial[name] + 0.1 * (param.detach() - initial[name])  # one step, decay 0.9
        assert torch.allclose(ema[name], expected, atol=1e-6), name
    loaded, _ = load_generator(tmp_path / "run")  # what evaluate, synthesize and the edits use
    assert _states_equal(loaded.state_dict(), ema)
    plain, _ = load_generator(tmp_path / "run", ema=False)
    assert _states_equal(plain.state_dict(), raw)
    with pytest.raises(UsageError, match="ema must be a decay in"):
        _gan(store_path, tmp_path / "x", ema=1.0)


def test_hyperparameters_go_to_tensorboard_and_config_yaml(store_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "run"
    train_gan(_gan(store_path, out, epochs=1, max_steps=1, tensorboard=True, ema=0.99))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["ema"] == 0.99 and saved["lambda_fm"] == 5.0 and saved["cap"] == 4
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["ema"].number_value == pytest.approx(0.99)
    assert info.hparams["generator"].string_value == "ours"
    assert info.hparams["inputs"].string_value == "['seg', 'dem']"
    assert info.hparams["lr_decay_start"].string_value == "None"


def test_validation_every_n_steps_l1_and_unet_miou(store_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    unet = tmp_path / "unet"
    train_unet(UNetRunConfig(store=str(store_path), out=str(unet), crop=32, batch_size=2,
                             base_channels=4, max_steps=1, workers=0, tensorboard=False,
                             val_split=None))  # fmt: skip
    out = tmp_path / "run"
    train_gan(_gan(store_path, out, epochs=2, max_steps=4, val_every=2, unet=str(unet),
                   val_split=None, val_crops=3, tensorboard=True, ema=0.9))  # fmt: skip
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("validation")]
    assert [r["step"] for r in val] == [2, 4]
    assert all(0 < r["l1"] < 2 and 0 <= r["miou"] <= 1 for r in val)
    assert val[0]["l1"] != val[1]["l1"]  # the generator moved between the two
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    assert [e.step for e in acc.Scalars("val/l1")] == [2, 4]
    assert [e.step for e in acc.Scalars("val/miou")] == [2, 4]
    with pytest.raises(UsageError, match="--unet validation"):
        _gan(store_path, out, inputs="dem", generator="pix2pix", unet=str(unet))


def test_sample_grid_headers_name_every_column():
    import torch

    from geosynth.ml.training.visual import HEADER, grid

    panels = [torch.zeros(2, 3, 40, 40, dtype=torch.uint8) + 255 for _ in range(3)]
    plain, titled = grid(panels), grid(panels, ["labels", "dem", "real rgb"])
    assert titled.shape[1] == plain.shape[1] + HEADER and titled.shape[2] == plain.shape[2]
    assert torch.equal(titled[:, HEADER:], plain)  # the panels are unchanged below the band
    for j in range(3):  # some dark pixels of text above each column
        assert (titled[:, :HEADER, j * 42 : j * 42 + 40] < 128).any()
    with pytest.raises(ValueError, match="2 headers for 3 columns"):
        grid(panels, ["a", "b"])


def test_tiny_epochs_do_not_multiply_the_epoch_end_work(tiny_store, tmp_path):
    """6 tiles, batch 2: 3 steps an epoch. 10 epochs at the default epoch_gap (50 steps):
    one validation, one sample grid, one epoch record and one checkpoint, at the end;
    epoch_gap 6: every other epoch end."""
    from geosynth.ml.training.train_unet import train_unet

    base = dict(store=str(tiny_store), crop=32, batch_size=2, workers=0, tensorboard=False,
                base_channels=4, epochs=10, image_every=0, val_crop=32)  # fmt: skip
    for gap, ends in ((None, [30]), (6, [6, 12, 18, 24, 30])):
        out = tmp_path / f"gap{gap}"
        kw = {} if gap is None else {"epoch_gap": gap}
        train_unet(UNetRunConfig(out=str(out), **base, **kw))
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r.get("end_of_epoch")] == ends
        assert all("miou" in r for r in records if r.get("end_of_epoch"))
        assert len(list((out / "samples").glob("*.png"))) == len(ends)
        assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 30


def test_unet_validates_on_a_bounded_number_of_tiles(tiny_store_factory, tmp_path):
    from geosynth.ml.training.distributed import init_distributed
    from geosynth.ml.training.train_unet import UNetTask

    store = tiny_store_factory(tmp_path / "s.zarr", n_train=2, n_test=3)
    cfg = dict(store=str(store), out=str(tmp_path / "u"), crop=32, batch_size=2, workers=0,
               base_channels=4, val_crop=32)  # fmt: skip
    assert (
        len(UNetTask(UNetRunConfig(**cfg, val_tiles=2), init_distributed("cpu")).val_dataset) == 2
    )
    assert (
        len(UNetTask(UNetRunConfig(**cfg, val_tiles=None), init_distributed("cpu")).val_dataset)
        == 3
    )


def test_export_weights_drops_adam_and_the_discriminator(tiny_store, tmp_path):
    from geosynth.ml.training.checkpoint import load_generator

    run = tmp_path / "run"
    train_gan(GanConfig(store=str(tiny_store), out=str(run), max_steps=1, samples=0, **TINY))
    out = tmp_path / "weights.pt"
    result = CliRunner().invoke(cli, ["export-weights", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    full = (run / "checkpoints" / "last.pt").stat().st_size
    assert out.stat().st_size < full / 2  # Adam's moments and D are most of a checkpoint
    generator, config = load_generator(out)
    original, _ = load_generator(run)
    for a, b in zip(generator.state_dict().values(), original.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert set(torch.load(out, weights_only=True)["models"]) == {"generator"}
    shared = tmp_path / "shared"  # someone's run folder holding only the weights
    shutil.copytree(run, shared)
    shutil.copy(out, shared / "checkpoints" / "last.pt")
    resumed = CliRunner().invoke(cli, ["-q", "train", "--out", str(shared), "--resume",
                                       "--epochs", "5"])  # fmt: skip
    assert resumed.exit_code == 2 and "export-weights" in resumed.output
