"""The switches that train as the code published with the paper: U-Net BCE, D's fake, flips, range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch.utils.data import default_collate

from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ml.data.tensors import expand_compact, from_generator
from geosynth.ml.networks.discriminator import generator_condition
from geosynth.ml.synthesis.synthesize import synthesize_array
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.ml.training.distributed import init_distributed
from geosynth.ml.training.losses import feature_matching_loss, hinge_d_loss, hinge_g_loss
from geosynth.ml.training.train import GanTask
from geosynth.ml.training.train_unet import UNetTask, one_hot_bce
from geosynth.store import open_store

TINY = dict(crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True, samples=2,
            image_every=1, log_every=0)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(dataset, n: int = 2) -> dict:
    return default_collate([dataset[i] for i in range(n)])


# ----------------------------------------------------------------------------- U-Net loss


def test_one_hot_bce_is_the_element_mean_over_all_classes():
    logits = torch.zeros(1, 3, 1, 2)
    assert one_hot_bce(logits, torch.tensor([[[0, 2]]])).item() == pytest.approx(math.log(2))
    logits[0, 0, 0, 0] = 4.0  # the right class of pixel 0, class 0 included
    # (B, K, H, W) = 6 elements: five at log 2, one at log(1 + e^-4)
    expected = (5 * math.log(2) + math.log1p(math.exp(-4))) / 6
    assert one_hot_bce(logits, torch.tensor([[[0, 2]]])).item() == pytest.approx(expected)


def test_bce_training_step_shapes(tiny_store, tmp_path):
    cfg = UNetRunConfig(store=str(tiny_store), out=str(tmp_path / "u"), base_channels=4,
                        loss="bce", val_split=None, **TINY)  # fmt: skip
    task = UNetTask(cfg, init_distributed("cpu"))
    batch = _batch(task.train_dataset())
    assert batch["seg"].shape == (2, 32, 32) and batch["seg"].dtype == torch.int64
    before = [p.detach().clone() for p in task.net_plain.parameters()]
    losses = task.train_step(batch)
    assert list(losses) == ["bce"] and losses["bce"].shape == ()
    x, logits, target = task._last  # what the step saw
    assert x.shape == (2, 3, 32, 32) and logits.shape == (2, 11, 32, 32)  # class 0 predicted too
    z = torch.nn.functional.one_hot(target, 11).permute(0, 3, 1, 2).float()
    assert z.shape == logits.shape
    by_hand = (logits.clamp_min(0) - logits * z + torch.log1p(torch.exp(-logits.abs()))).mean()
    assert losses["bce"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, task.net_plain.parameters(), strict=True)
    )
    with pytest.raises(UsageError, match="loss must be one of ce, bce, focal"):
        UNetRunConfig(store="s", out="o", loss="hinge")


# ----------------------------------------------------------------------------- GAN switches


def _gan_task(store, tmp_path, **kw) -> GanTask:
    cfg = GanConfig(store=str(store), out=str(tmp_path / "g"), cap=4, **{**TINY, **kw})
    return GanTask(cfg, init_distributed("cpu"))


@pytest.mark.parametrize("d_fake, calls", [("reuse", 1), ("regenerate", 2)])
def test_regenerate_runs_the_generator_twice_per_step(tiny_store, tmp_path, d_fake, calls):
    task = _gan_task(tiny_store, tmp_path, d_fake=d_fake)
    batch = _batch(task.train_dataset())
    seen = []
    task.g_net.register_forward_hook(lambda m, i, out: seen.append(out.detach().clone()))
    d_inputs = []
    task.d_net.register_forward_hook(lambda m, i, out: d_inputs.append(i[1].detach().clone()))
    for _ in range(2):
        task.train_step(batch)
    assert len(seen) == 2 * calls
    # reuse: one D forward per step serves both losses; regenerate: a second one for D's step
    assert len(d_inputs) == 2 * calls
    # D's loss (the step's last D forward) sees the first fake, or the regenerated one
    d_fake_half = d_inputs[calls - 1][:2]
    assert torch.equal(d_fake_half, seen[calls - 1])
    if d_fake == "regenerate":  # after G's update the new fake differs from G's step's
        assert not torch.equal(seen[0], seen[1])


def test_one_shared_d_forward_updates_both_networks_as_two_separate_steps(tiny_store, tmp_path):
    """d_fake reuse: the one D forward gives G and D exactly the updates of the two-step way
    (G's step with D frozen, then D's step on the detached fake), without spectral norm's
    power iteration in between (spectral_norm none) and in fp32."""
    kw = dict(d_fake="reuse", spectral_norm="none", amp=False)
    torch.manual_seed(0)
    shared = _gan_task(tiny_store, tmp_path / "a", **kw)
    torch.manual_seed(0)
    twostep = _gan_task(tiny_store, tmp_path / "b", **kw)
    batch = _batch(shared.train_dataset())
    shared.train_step(batch)

    t = twostep  # the two-step reference, written out
    labels, raster, real = t._inputs(batch)
    cond = generator_condition(labels, raster)
    cond2 = torch.cat([cond, cond])
    fake = t.g(labels, raster, None)
    t.d_net.requires_grad_(False)
    out = t.d_net(cond2, torch.cat([fake, real]), None)
    g_loss = hinge_g_loss(out, 2) + t.config.lambda_fm * feature_matching_loss(out, 2)
    t.opt_g.zero_grad()
    g_loss.backward()
    t.opt_g.step()
    t.d_net.requires_grad_(True)
    out = t.d_net(cond2, torch.cat([fake.detach(), real]), None)
    t.opt_d.zero_grad()
    sum(hinge_d_loss(out, 2)).backward()
    t.opt_d.step()

    for a, b in ((shared.g_net, t.g_net), (shared.d_net, t.d_net)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
    before = _gan_task(tiny_store, tmp_path / "c", **kw)  # and the step did change both
    assert not torch.equal(next(iter(before.d_net.parameters())), next(iter(t.d_net.parameters())))


def test_no_flip_and_the_unit_range(tiny_store, tmp_path):
    flipping = _gan_task(tiny_store, tmp_path, flip=True).train_dataset()
    plain = _gan_task(tiny_store, tmp_path, flip=False, image_range="unit")
    flips = []
    for epoch in range(4):
        for d in (flipping, plain.train_dataset()):
            d.set_epoch(epoch)
        flips.append([flipping.window(i)[4] for i in range(len(flipping))])
        assert not any(plain.train_dataset().window(i)[4] for i in range(len(flipping)))
    assert any(any(f) for f in flips)  # the default flips some crops
    d_inputs = []
    plain.d_net.register_forward_hook(lambda m, i, out: d_inputs.append(i[1].detach()))
    batch = _batch(plain.train_dataset())
    plain.train_step(batch)
    real_half = d_inputs[0][2:]
    rgb = expand_compact(batch, plain.train_dataset().num_classes)["rgb"]  # [-1, 1]
    assert real_half.min() >= 0 and torch.allclose(real_half, (rgb + 1) / 2)


def test_unit_range_outputs_are_mapped_back_to_the_network_range(tiny_store):
    store = open_store(tiny_store)
    i = store.tiles("train")[0]
    arrays = {"seg": store.read("seg", i), "dem": store.read("dem", i)}
    sym = GanConfig(store="s", out="o", cap=4, crop=32)
    unit = GanConfig(store="s", out="o", cap=4, crop=32, image_range="unit")
    from geosynth.ml.networks.configs import generator_config_for
    from geosynth.ml.networks.generators import build_generator

    torch.manual_seed(0)
    g = build_generator(generator_config_for("ours", 11, 1, 3, capacity=4)).eval()
    a = synthesize_array(g, sym, arrays, store.num_classes)
    b = synthesize_array(g, unit, arrays, store.num_classes)
    assert np.allclose(b, np.clip(2 * a - 1, -1, 1), atol=1e-6)
    assert torch.equal(from_generator(sym, torch.ones(1)), torch.ones(1))
    assert from_generator(unit, torch.zeros(1)).item() == -1.0


def test_switches_through_the_command_line(tiny_store, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "-q", "train", "--store", str(tiny_store), "--out", str(out), "--cap", "4", "--crop", "32",
        "--batch-size", "2", "--max-steps", "1", "--workers", "0", "--no-tensorboard",
        "--samples", "0", "--d-fake", "regenerate", "--no-flip", "--image-range", "unit",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["d_fake"], saved["flip"], saved["image_range"]) == ("regenerate", False, "unit")
    bad = CliRunner().invoke(cli, ["train", "--store", "s", "--out", "o", "--d-fake", "twice"])
    assert bad.exit_code == 2
    helped = CliRunner().invoke(cli, ["train-unet", "--help"])
    assert "--loss [ce|bce|focal]" in helped.output and "[default: ce]" in helped.output


@pytest.mark.parametrize("name, flip", [("table3_geonrw", True), ("table3_dfc2020", False),
                                        ("sar_geonrw", True)])  # fmt: skip
def test_the_table3_recipes_train_and_evaluate_as_the_papers_code(name, flip):
    from geosynth.pipeline.recipe import bundled_pipeline, load_pipeline

    steps = load_pipeline(bundled_pipeline(name), {"nproc": "8"}).steps
    parsed = {}
    for step in steps:
        command = cli.commands[step.args[0]]
        ctx = command.make_context(step.args[0], list(step.args[1:]), resilient_parsing=True)
        parsed.setdefault(step.args[0], []).append(ctx.params)
    (unet,) = parsed["train-unet"]
    assert (unet["loss"], unet["batch_size"], unet["amp"], unet["nproc"], unet["image_range"]) == (
        "bce", 32, False, None, "unit"
    )  # fmt: skip
    for gan in parsed["train"]:
        assert (gan["d_fake"], gan["flip"], gan["image_range"], gan["amp"]) == (
            "regenerate", flip, "unit", False
        )  # fmt: skip
        # every switch that makes geosynth compute what the paper's code computes
        assert (gan["block_order"], gan["spectral_norm"], gan["d_step"]) == (
            "authors", "reference", "authors"
        )  # fmt: skip
        assert (gan["d_cap"], gan["d_scales"]) == (64, 2) and gan["dem_norm"] in (None, "none")
        assert gan["nproc"] == 8 and gan["batch_size"] == 32  # the paper's global batch
    assert all(e["protocol"] == "paper" for e in parsed["evaluate"])
