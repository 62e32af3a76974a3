"""The switches that compute what the paper's code computes, worked on tiny inputs by hand.

Block order (pad before the norm), spectral norm as ``torch.nn.utils.spectral_norm``,
the authors' D step, the U-Net's [0, 1] input, and ``geosynth import-weights``. The
transplant against the paper's code itself is run outside the project (its code has no
licence); these tests state the behaviour in our own words.
"""

from __future__ import annotations

import pickle
import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.ml.networks.configs import (
    DiscriminatorConfig,
    GeneratorConfig,
    UNetConfig,
    generator_config_for,
)
from geosynth.ml.networks.discriminator import build_discriminator, generator_condition
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.layers import LabelPyramid, ResBlock, SPADEResBlock, SpectralNorm
from geosynth.ml.networks.unet import build_unet
from geosynth.ml.training.checkpoint import load_generator, load_unet
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.distributed import init_distributed
from geosynth.ml.training.import_weights import (
    DISCRIMINATOR_RULES,
    GENERATOR_RULES,
    UNET_RULES,
    channel_order,
    rename,
)
from geosynth.ml.training.train import GanTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- block order


def _one_channel_block(pad_first: bool) -> ResBlock:
    block = ResBlock(1, 1, spectral_mode="none", pad_first=pad_first).train()
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return block


@pytest.mark.parametrize("pad_first, mean", [(False, 9 / 9), (True, 81 / 25)])
def test_with_the_authors_order_batchnorm_counts_the_reflected_border(pad_first, mean):
    """A 3 x 3 map, 9 in the centre: reflection padding copies the centre to 8 of the 16
    border cells, so the padded 5 x 5 map holds nine 9s: mean 81 / 25 against 9 / 9."""
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 9.0
    block = _one_channel_block(pad_first)
    block(x)
    # BatchNorm's running mean after one step: momentum 0.1 times the batch mean
    assert block.norm1.running_mean.item() == pytest.approx(0.1 * mean)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    assert padded.sum().item() == 81.0 and (padded == 9).sum().item() == 9


def test_with_the_authors_order_spade_reads_the_label_rows_of_the_padded_map():
    """Features 4 x 4 from a 16 x 16 label map: geosynth's SPADE reads label rows 0, 4, 8, 12
    (nearest); the authors' normalises the padded 6 x 6 map and reads rows
    floor(i * 16 / 6) = 0, 2, 5, 8, 10, 13, so output row r is modulated by label rows
    (2, 5, 8, 10) at r = 1..4 of the padded map, shifted against the features."""
    labels = torch.arange(16.0).view(1, 1, 16, 1).expand(1, 1, 16, 16)  # row i holds i
    for pad_first, rows in ((False, [0, 4, 8, 12]), (True, [0, 2, 5, 8, 10, 13])):
        block = SPADEResBlock(2, 2, 1, hidden=4, spectral_mode="none", pad_first=pad_first)
        seen = []
        block.norm1.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args))
        pyramid = LabelPyramid(labels)
        block(torch.randn(1, 2, 4, 4), pyramid)
        x, given = seen[0]
        size = tuple(x.shape[-2:])
        assert size == ((6, 6) if pad_first else (4, 4))
        assert given.at(size)[0, 0, :, 0].tolist() == rows


def test_the_block_order_changes_eval_outputs_too_and_keeps_the_parameters():
    torch.manual_seed(0)
    ours = build_generator(generator_config_for("ours", 11, 1, 3, capacity=2)).eval()
    theirs = build_generator(
        generator_config_for("ours", 11, 1, 3, capacity=2, block_order="authors")
    ).eval()
    theirs.load_state_dict(ours.state_dict())  # same parameters, same names
    labels = F.one_hot(torch.randint(0, 11, (1, 32, 32)), 11).permute(0, 3, 1, 2).float()
    raster = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(ours(labels, raster), theirs(labels, raster))
    with pytest.raises(UsageError, match="block_order must be one of geosynth, authors"):
        GeneratorConfig(block_order="sideways")


# ----------------------------------------------------------------------------- spectral norm


def test_reference_spectral_norm_is_torchs_spectral_norm():
    """No iteration at construction, then v before u per training forward, W / sigma: the
    values of torch.nn.utils.spectral_norm from the same u and v."""
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 3, 3)
    draws = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    ref = SpectralNorm(weight, reference=True)
    u0 = F.normalize(torch.empty(4).normal_(0, 1, generator=draws), dim=0)
    v0 = F.normalize(torch.empty(27).normal_(0, 1, generator=draws), dim=0)
    assert torch.equal(ref._u, u0) and torch.equal(ref._v, v0)  # the draws, not iterated
    fast = SpectralNorm(weight)  # torch's parametrization: 15 iterations at construction
    assert not torch.allclose(fast._u, F.normalize(fast._u.clone().normal_(), dim=0))

    conv = nn.Conv2d(3, 4, 3, bias=False)
    conv.weight.data.copy_(weight)
    torch_sn = nn.utils.spectral_norm(conv)
    torch_sn.weight_u.copy_(u0)
    torch_sn.weight_v.copy_(v0)
    for _ in range(3):  # three training forwards, each one power iteration
        expected = torch_sn(torch.ones(1, 3, 3, 3))
        mine = F.conv2d(torch.ones(1, 3, 3, 3), ref(weight))
        torch.testing.assert_close(mine, expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(ref._u, torch_sn.weight_u, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ref._v, torch_sn.weight_v, rtol=1e-6, atol=1e-7)
    # by hand: v = normalize(W^T u), then u = normalize(W v)
    matrix = weight.flatten(1)
    v1 = F.normalize(matrix.t() @ u0, dim=0)
    u1 = F.normalize(matrix @ v1, dim=0)
    fresh = SpectralNorm(weight, reference=True)
    fresh._u.copy_(u0), fresh._v.copy_(v0)
    out = fresh(weight)
    torch.testing.assert_close(fresh._v, v1)
    torch.testing.assert_close(out, weight / (u1 @ matrix @ v1))


# ----------------------------------------------------------------------------- D step


TINY = dict(crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True, samples=0,
            image_every=0, log_every=0, cap=4, amp=False)  # fmt: skip


def test_the_authors_d_step_calls_d_four_times_in_their_order(tiny_store, tmp_path):
    cfg = GanConfig(store=str(tiny_store), out=str(tmp_path / "g"), d_step="authors",
                    d_fake="regenerate", **TINY)  # fmt: skip
    task = GanTask(cfg, init_distributed("cpu"))
    from torch.utils.data import default_collate

    batch = default_collate([task.train_dataset()[i] for i in range(2)])
    _, _, real = task._inputs(batch)
    seen = []
    task.d_net.register_forward_hook(lambda m, i, out: seen.append(i[1].detach().clone()))
    fakes = []
    task.g_net.register_forward_hook(lambda m, i, out: fakes.append(out.detach().clone()))
    losses = task.train_step(batch)
    assert len(seen) == 4 and all(s.shape[0] == 2 for s in seen)  # fake and real apart
    assert torch.equal(seen[0], fakes[0]) and torch.equal(seen[1], real)  # G's step
    assert torch.equal(seen[2], real) and torch.equal(seen[3], fakes[1])  # D's step
    assert not torch.equal(fakes[0], fakes[1])  # regenerated after G's update
    assert set(losses) == {"g_adv", "g_fm", "d_real", "d_fake"}
    with pytest.raises(UsageError, match="add d_fake 'regenerate'"):
        GanConfig(store="s", out="o", d_step="authors")


def test_the_authors_losses_sum_the_scales():
    from geosynth.ml.training.losses import d_hinge, feature_l1, g_hinge

    scores = [torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 1, 1), -2.0)]
    assert g_hinge(scores, "sum").item() == pytest.approx(-0.5 + 2.0)
    assert g_hinge(scores, "mean").item() == pytest.approx((-0.5 + 2.0) / 2)
    real, fake = d_hinge(scores, scores, "sum")
    assert (real.item(), fake.item()) == pytest.approx((0.5 + 3.0, 1.5 + 0.0))
    one = [[torch.ones(1, 1, 2, 2)]]
    assert feature_l1(one + one, [[torch.zeros(1, 1, 2, 2)]] * 2, "sum").item() == 2.0


# ----------------------------------------------------------------------------- U-Net range


def test_a_unit_range_unet_sees_images_in_0_1():
    torch.manual_seed(0)
    sym = build_unet(UNetConfig(base_channels=2, depth=2)).eval()
    unit = build_unet(UNetConfig(base_channels=2, depth=2, input_range="unit")).eval()
    unit.load_state_dict(sym.state_dict())
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        assert torch.equal(unit(x).logits, sym((x + 1) / 2).logits)


# ----------------------------------------------------------------------------- import-weights

# The authors' tensor names (models/generator.py, arch.py, discriminator.py, unet.py of
# gbaier/rs_img_synth) and where each lands in geosynth's networks.
NAMES = [
    (GENERATOR_RULES, "encoder.init_conv.1.weight_orig", "encoder.stem.1.parametrizations.weight.original"),
    (GENERATOR_RULES, "encoder.down2.norm.mlp_gamma.weight", "encoder.down.2.norm.gamma.weight"),
    (GENERATOR_RULES, "encoder.down0.norm.mlp_shared.0.bias", "encoder.down.0.norm.shared.0.bias"),
    (GENERATOR_RULES, "body.body8.norm2.norm.running_var", "body.blocks.8.norm2.norm.running_var"),
    (GENERATOR_RULES, "head.body1.conv1.weight_u", "body.blocks.1.conv1.parametrizations.weight.0._u"),
    (GENERATOR_RULES, "decoder.up3.shortcut.weight", "decoder.stages.3.shortcut.weight"),
    (GENERATOR_RULES, "decoder.final_conv.1.weight_v", "to_image.1.parametrizations.weight.0._v"),
    (GENERATOR_RULES, "init_conv.1.bias", "embed.conv.1.bias"),
    (DISCRIMINATOR_RULES, "disc_1.init_conv.0.weight", "scales.1.layers.0.0.weight"),
    (DISCRIMINATOR_RULES, "disc_0.conv_2.0.weight_orig", "scales.0.layers.3.0.parametrizations.weight.original"),
    (DISCRIMINATOR_RULES, "disc_0.final_conv.bias", "scales.0.final.bias"),
    (UNET_RULES, "down_path.3.2.weight", "down.3.2.weight"),
    (UNET_RULES, "body.0.bias", "bottom.0.bias"),
    (UNET_RULES, "upsamplers.0.weight", "up.0.weight"),
    (UNET_RULES, "up_path.2.0.weight", "up_conv.2.0.weight"),
    (UNET_RULES, "last.bias", "head.bias"),
]  # fmt: skip


@pytest.mark.parametrize("rules, theirs, ours", NAMES)
def test_the_authors_names_land_on_geosynths(rules, theirs, ours):
    assert rename(theirs, rules) == ours


def test_channel_order_reads_geosynths_labels_first_condition_in_the_authors_order():
    channels = {"seg": 3, "dem": 1, "sar": 2}  # geosynth: seg 0..2, then the rasters
    assert channel_order(["dem", "seg"], channels) == [3, 0, 1, 2]
    assert channel_order(["seg", "dem"], channels) == [0, 1, 2, 3]
    assert channel_order(["sar", "dem", "seg"], channels) == [3, 4, 5, 0, 1, 2]
    config = DiscriminatorConfig(
        condition_channels=4, output_channels=3, condition_order=(3, 0, 1, 2)
    )
    assert config.condition_order == (3, 0, 1, 2)
    with pytest.raises(UsageError, match="condition_order must be a permutation of 0..3"):
        DiscriminatorConfig(condition_channels=4, output_channels=3, condition_order=(0, 0, 1, 2))


# geosynth's names back to the authors' (the inverse of the import's rules, for the test only)
_TO_AUTHORS = [
    (r"\.parametrizations\.weight\.original$", ".weight_orig"),
    (r"\.parametrizations\.weight\.0\._u$", ".weight_u"),
    (r"\.parametrizations\.weight\.0\._v$", ".weight_v"),
    (r"^encoder\.stem\.", "encoder.init_conv."),
    (r"^encoder\.down\.(\d+)\.", r"encoder.down\1."),
    (r"^body\.blocks\.(\d+)\.", r"body.body\1."),
    (r"^decoder\.stages\.(\d+)\.", r"decoder.up\1."),
    (r"^to_image\.", "decoder.final_conv."),
    (r"\.shared\.", ".mlp_shared."),
    (r"\.gamma\.", ".mlp_gamma."),
    (r"\.beta\.", ".mlp_beta."),
    (r"^scales\.(\d+)\.layers\.0\.0\.", r"disc_\1.init_conv.0."),
    (r"^scales\.(\d+)\.layers\.(\d+)\.0\.", lambda m: f"disc_{m[1]}.conv_{int(m[2]) - 1}.0."),
    (r"^scales\.(\d+)\.final\.", r"disc_\1.final_conv."),
]


def _as_authors(state: dict) -> dict:
    out = {}
    for name, tensor in state.items():
        for pattern, repl in _TO_AUTHORS:
            name = re.sub(pattern, repl, name)
        out["module." + name] = tensor  # saved from DDP-wrapped networks
    return out


def _authors_run(folder, kind="ours", inputs=("dem", "seg"), cap=2):
    """A run folder as the paper's train.py leaves it, from geosynth networks: config.yml,
    model_gnet.pt, model_dnet.pt; D's input channels in the authors' order (dem, seg, rgb)."""
    torch.manual_seed(0)
    g_cfg = generator_config_for(kind, 11, 1, 3, capacity=cap, spectral_norm="reference",
                                 block_order="authors")  # fmt: skip
    g = build_generator(g_cfg)
    d = build_discriminator(DiscriminatorConfig.for_generator(g_cfg, capacity=64,
                                                              spectral_norm="reference"))  # fmt: skip
    folder.mkdir()
    config = {"model": {"model_cap": cap, "n_sampling": 4, "n_scales": 2},
              "training": {"crop": 64, "resize": 64, "batch_size": 2, "epochs": 1, "lbda": 5.0},
              "dataset": {"name": "nrw", "root": "./data/nrw", "input": list(inputs),
                          "output": "rgb"}}  # fmt: skip
    import yaml

    (folder / "config.yml").write_text(yaml.safe_dump(config))
    d_state = dict(d.state_dict())
    order = channel_order(list(inputs), {"seg": 11, "dem": 1})  # theirs -> geosynth's channel
    for s in range(2):  # their first conv reads dem, seg, rgb
        key = f"scales.{s}.layers.0.0.weight"
        d_state[key] = d_state[key][:, order + [12, 13, 14]]
    torch.save(_as_authors(g.state_dict()), folder / "model_gnet.pt")
    torch.save(_as_authors(d_state), folder / "model_dnet.pt")
    return g, d


def test_import_weights_makes_a_run_folder_that_computes_the_same(tiny_store, tmp_path):
    g, d = _authors_run(tmp_path / "authors")
    out = tmp_path / "imported"
    result = CliRunner().invoke(cli, ["-q", "import-weights", str(tmp_path / "authors"),
                                      "--store", str(tiny_store), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    generator, config = load_generator(out)
    assert (config.block_order, config.spectral_norm, config.d_step, config.image_range) == (
        "authors", "reference", "authors", "unit"
    )  # fmt: skip
    assert (config.d_cap, config.d_scales, config.inputs) == (64, 2, ("dem", "seg"))
    labels = F.one_hot(torch.randint(0, 11, (1, 64, 64)), 11).permute(0, 3, 1, 2).float()
    dem = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(generator(labels, dem), g.eval()(labels, dem))
    payload = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    entry = payload["models"]["discriminator"]
    mine = build_discriminator(DiscriminatorConfig.from_dict(entry["config"]))
    mine.load_state_dict(entry["state"])
    image = torch.rand(1, 3, 64, 64)
    assert entry["config"]["condition_order"] == (11, *range(11))  # dem first, as theirs
    with torch.no_grad():  # their weights, reading geosynth's [seg, dem] in their order
        a = mine.eval()(generator_condition(labels, dem), image).final
        b = d.eval()(generator_condition(labels, dem), image).final
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)  # the sums in another order

    # synthesize uses it as a trained run; resuming it is refused
    synth = CliRunner().invoke(cli, ["-q", "synthesize", "--generator", str(out), "--store",
                                     str(tiny_store), "--tiles", "362_5645", "--out",
                                     str(tmp_path / "synth")])  # fmt: skip
    assert synth.exit_code == 0, synth.output
    assert list((tmp_path / "synth").rglob("*.tif"))
    again = CliRunner().invoke(cli, ["-q", "train", "--out", str(out), "--resume"])
    assert again.exit_code == 2 and "cannot be resumed" in again.output
    twice = CliRunner().invoke(cli, ["-q", "import-weights", str(tmp_path / "authors"),
                                     "--store", str(tiny_store), "--out", str(out)])  # fmt: skip
    assert twice.exit_code == 2 and "already exists" in twice.output


def test_import_weights_maps_by_name_and_shape_never_by_position(tmp_path):
    _authors_run(tmp_path / "authors")
    state = torch.load(tmp_path / "authors" / "model_gnet.pt", weights_only=True)
    state["module.decoder.up0.conv9.weight"] = torch.zeros(1)  # a tensor with no counterpart
    del state["module.body.body0.norm1.mlp_beta.bias"]
    torch.save(state, tmp_path / "authors" / "model_gnet.pt")
    result = CliRunner().invoke(cli, ["-q", "import-weights", str(tmp_path / "authors"),
                                      "--store", "s.zarr", "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 1
    assert "no counterpart for decoder.up0.conv9.weight" in result.output
    assert "body.blocks.0.norm1.beta.bias not in the file" in result.output
    assert not (tmp_path / "o" / "checkpoints" / "last.pt").exists()


class PickledUNet(nn.Module):  # stands for a module pickled by the paper's train_unet.py
    def __init__(self):
        super().__init__()
        self.last = nn.Conv2d(2, 2, 1)


def test_a_pickled_module_is_refused_with_the_export_command(tmp_path):
    path = tmp_path / "nrw_unet_rgb.pt"
    torch.save(PickledUNet(), path)
    result = CliRunner().invoke(cli, ["-q", "import-weights", str(path), "--store", "s.zarr",
                                      "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 1
    assert "pickled object" in result.output and "PickledUNet" in result.output
    assert ".state_dict(), 'nrw_unet_rgb_state.pt')" in result.output
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # never unpickled by geosynth


def test_import_weights_takes_the_authors_unet_state_dict(tiny_store, tmp_path):
    torch.manual_seed(0)
    reference = build_unet(UNetConfig(base_channels=4, depth=4, input_range="unit")).eval()
    names = {
        r"^down\.": "down_path.", r"^bottom\.": "body.", r"^up\.": "upsamplers.",
        r"^up_conv\.": "up_path.", r"^head\.": "last.",
    }  # fmt: skip
    state = {}
    for name, tensor in reference.state_dict().items():
        for pattern, repl in names.items():
            name = re.sub(pattern, repl, name)
        state[name] = tensor
    torch.save(state, tmp_path / "unet_state.pt")
    out = tmp_path / "unet"
    result = CliRunner().invoke(cli, ["-q", "import-weights", str(tmp_path / "unet_state.pt"),
                                      "--store", str(tiny_store), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    unet, config = load_unet(out)
    assert (unet.config.input_range, config.loss, unet.config.base_channels) == ("unit", "bce", 4)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(unet(x).logits, reference(x).logits)
    with pytest.raises(DataError):
        from geosynth.ml.training.import_weights import read_state_dict

        read_state_dict(tmp_path / "missing.pt")
