"""Generators, discriminator and U-Net: shapes, a training step, parity with the paper's code."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.nn.utils import parametrize

from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ml import (
    GAN_KINDS,
    GENERATOR_KINDS,
    DiscriminatorConfig,
    GeneratorConfig,
    UNetConfig,
    build_discriminator,
    build_generator,
    build_unet,
    count_parameters,
    default_num_scales,
    generator_condition,
    generator_config_for,
    on_meta,
)
from geosynth.ml.networks import layers
from geosynth.ml.networks.layers import SPADE, LabelPyramid, conv2d

CLASSES = 11  # GeoNRW incl. unlabelled
SMALL = dict(capacity=4, spade_hidden=8)  # fast on CPU


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(cfg: GeneratorConfig, size: int, batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = raster = None
    if cfg.label_channels:
        ids = torch.randint(0, cfg.label_channels, (batch, size, size), generator=g)
        labels = F.one_hot(ids, cfg.label_channels).permute(0, 3, 1, 2).float()  # (B, L, H, W)
    if cfg.raster_channels:
        raster = torch.randn(batch, cfg.raster_channels, size, size, generator=g)
    return labels, raster


# ----------------------------------------------------------------------------- parity

PAPER_COUNTS = {  # the code published with the paper: capacity 64, 11 classes, DEM, RGB
    "ours": 240_263_491,
    "spade": 64_209_731,
    "pix2pix": 186_306_499,
    "concat": 186_340_995,
}


@pytest.mark.parametrize("kind", sorted(PAPER_COUNTS))
def test_generator_parameter_counts_match_the_papers_code(kind):
    cfg = generator_config_for(kind, CLASSES, 1, 3, capacity=64)
    assert count_parameters(on_meta(build_generator, cfg)) == PAPER_COUNTS[kind]


def test_merge_generator_has_a_quarter_less_capacity():
    merge = count_parameters(on_meta(build_generator, generator_config_for("merge", CLASSES, 1, 3)))
    assert merge == 156_590_067  # our reading of the paper; pinned against silent changes
    assert merge < PAPER_COUNTS["ours"]


def test_discriminator_and_unet_counts_match_the_papers_code():
    ours = generator_config_for("ours", CLASSES, 1, 3, capacity=64)
    d = on_meta(build_discriminator, DiscriminatorConfig.for_generator(ours, num_scales=2))
    assert count_parameters(d) == 5_554_050
    assert count_parameters(on_meta(build_unet, UNetConfig(in_channels=3, num_classes=11))) == (
        31_032_395
    )


def test_batchnorm_unet_swaps_conv_biases_for_norm_affines():
    """``norm="batch"``: each 3 x 3 conv loses its bias and gains a BatchNorm (weight + bias)."""
    plain = on_meta(build_unet, UNetConfig(in_channels=3, num_classes=11))
    batch = on_meta(build_unet, UNetConfig(in_channels=3, num_classes=11, norm="batch"))
    norms = [m for m in batch.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 18  # two per level: 4 down, the bottom, 4 up
    widths = sum(m.num_features for m in norms)
    assert count_parameters(batch) == count_parameters(plain) - widths + 2 * widths
    with pytest.raises(UsageError, match="norm"):
        UNetConfig(norm="group")


def test_parameter_free_spade_norm_drops_exactly_the_batchnorm_affines():
    ours = generator_config_for("ours", CLASSES, 1, 3)
    free = on_meta(build_generator, GeneratorConfig(**{**ours.to_dict(), "norm_affine": False}))
    spade_channels = sum(m.norm.num_features for m in free.modules() if isinstance(m, SPADE))
    assert spade_channels == 23_232
    assert count_parameters(free) == PAPER_COUNTS["ours"] - 2 * spade_channels


@pytest.mark.parametrize("kind", GAN_KINDS)  # the diffusion generator: test_diffusion.py
def test_spectral_norm_placement_changes_no_parameter_count(kind):
    counts, covered = {}, {}
    for mode in ("all", "reference", "none"):
        cfg = generator_config_for(kind, CLASSES, 1, 3, spectral_norm=mode, **SMALL)
        g = build_generator(cfg)
        d = build_discriminator(
            DiscriminatorConfig.for_generator(cfg, capacity=4, spectral_norm=mode)
        )
        convs = [m for net in (g, d) for m in net.modules() if isinstance(m, nn.Conv2d)]
        counts[mode] = count_parameters(g) + count_parameters(d)
        covered[mode] = sum(parametrize.is_parametrized(c, "weight") for c in convs), len(convs)
    assert counts["all"] == counts["reference"] == counts["none"]
    n_all, total = covered["all"]
    assert n_all == total  # every convolution of G and D
    assert 0 < covered["reference"][0] < total
    assert covered["none"][0] == 0


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("out", [3, 1, 2], ids=["rgb", "sar1", "sar2"])
def test_generator_and_discriminator_shapes(kind, size, out):
    cfg = generator_config_for(kind, CLASSES, 1, out, **SMALL)
    g = build_generator(cfg)
    labels, raster = _inputs(cfg, size)
    scales = default_num_scales(size)
    assert scales == {256: 2, 512: 3}[size]
    d = build_discriminator(DiscriminatorConfig.for_generator(cfg, num_scales=scales, capacity=4))
    with torch.no_grad():
        fake = g(labels, raster)
        result = d(generator_condition(labels, raster), fake)
    assert fake.shape == (1, out, size, size)
    assert fake.abs().max() <= 1  # tanh
    assert len(result.final) == scales and len(result.features) == scales
    for s, (final, feats) in enumerate(zip(result.final, result.features, strict=True)):
        edge = size // 2**s
        # 4 x 4 convs with padding 2: stride 2 three times, then two stride-1 convs add 1 px each
        expected = ((edge // 2 + 1) // 2 + 1) // 2 + 1 + 2
        assert final.shape == (1, 1, expected, expected)
        assert [f.shape[1] for f in feats] == [4, 8, 16, 32]


def test_unet_returns_logits_and_encoder_features():
    net = build_unet(UNetConfig(in_channels=3, num_classes=CLASSES, base_channels=4))
    out = net(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, CLASSES, 64, 64)
    assert [tuple(f.shape) for f in out.features] == [
        (2, 4, 64, 64), (2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)
    ]  # fmt: skip
    out.logits.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


# ----------------------------------------------------------------------------- training step


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_one_forward_and_backward_step_on_cpu(kind):
    torch.manual_seed(0)
    cfg = generator_config_for(kind, CLASSES, 1, 3, **SMALL)
    g = build_generator(cfg)
    d = build_discriminator(DiscriminatorConfig.for_generator(cfg, num_scales=2, capacity=4))
    labels, raster = _inputs(cfg, 64, batch=2)
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    cond = generator_condition(labels, raster)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    before = {k: v.detach().clone() for k, v in g.state_dict().items()}

    fake = g(labels, raster)
    # D: one forward on fake and real together (hinge loss), as SPADE does
    out = d(torch.cat([cond, cond]), torch.cat([fake.detach(), real]))
    d_loss = sum(F.relu(1 + f[:2]).mean() + F.relu(1 - f[2:]).mean() for f in out.final)
    opt_d.zero_grad()
    d_loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in d.parameters())
    opt_d.step()
    # G: adversarial + feature matching
    fake_out = d(cond, fake)
    real_out = d(cond, real)
    feat = sum(
        F.l1_loss(a, b.detach())
        for fa, fb in zip(fake_out.features, real_out.features, strict=True)
        for a, b in zip(fa, fb, strict=True)
    )
    g_loss = -sum(f.mean() for f in fake_out.final) + feat
    opt_g.zero_grad()
    g_loss.backward()
    grads = [p.grad for p in g.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0
    opt_g.step()
    after = g.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- behaviour


def test_label_map_is_downsampled_once_per_resolution(monkeypatch):
    calls = []
    original = F.interpolate

    def spy(x, size=None, scale_factor=None, mode="nearest", **kw):
        if size is not None:
            calls.append(tuple(size))
        return original(x, size=size, scale_factor=scale_factor, mode=mode, **kw)

    monkeypatch.setattr(layers.F, "interpolate", spy)
    cfg = generator_config_for("ours", CLASSES, 1, 3, **SMALL)
    g = build_generator(cfg)
    labels, raster = _inputs(cfg, 64)
    with torch.no_grad():
        g(labels, raster)
    # encoder at 32, 16, 8, 4 px; the decoder reuses them (and the full map)
    assert sorted(calls) == [(4, 4), (8, 8), (16, 16), (32, 32)]
    pyramid = LabelPyramid(labels)
    assert pyramid.at((8, 8)) is pyramid.at((8, 8))


def test_spade_modulates_normalised_activations_by_the_label_map():
    torch.manual_seed(0)
    spade = SPADE(4, 3, hidden=8).eval()
    x = torch.randn(1, 4, 8, 8)
    labels = torch.zeros(1, 3, 8, 8)
    labels[:, 0, :, :4] = 1
    labels[:, 1, :, 4:] = 1
    out = spade(x, LabelPyramid(labels))
    actv = spade.shared(labels)
    expected = spade.norm(x) * (1 + spade.gamma(actv)) + spade.beta(actv)
    torch.testing.assert_close(out, expected)
    other = labels.flip(1)  # different classes: different modulation
    assert not torch.allclose(out, spade(x, LabelPyramid(other)))


def test_spectral_norm_matches_torchs_state_values_and_gradients():
    """Our parametrization (scaling by 1 / sigma) against torch's (dividing by sigma): the
    same state-dict keys and random start, the same weights and gradients over training
    forwards (each one power iteration), so checkpoints load either way."""
    from torch.nn.utils.parametrizations import spectral_norm

    torch.manual_seed(3)
    ours = conv2d(5, 7, 3, padding=1, spectral=True)
    torch.manual_seed(3)
    theirs = spectral_norm(nn.Conv2d(5, 7, 3, padding=1))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(2, 5, 6, 6)
    for _ in range(3):
        torch.testing.assert_close(ours(x), theirs(x))
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    fresh = conv2d(5, 7, 3, padding=1, spectral=True)
    fresh.load_state_dict(theirs.state_dict())  # a checkpoint of torch's loads into ours
    torch.testing.assert_close(fresh.eval()(x), theirs.eval()(x))
    sigma = torch.linalg.matrix_norm(fresh.weight.flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)  # the weight has spectral norm ~1


def test_fused_gamma_beta_equals_the_two_convolutions_forward_and_backward():
    """SPADE's gamma and beta run as one convolution (weights concatenated); with spectral
    norm on each, output and every gradient equal those of the two separate convs."""
    torch.manual_seed(0)
    spade = SPADE(6, 3, hidden=8, spectral=True).eval()  # eval: no power iteration per call
    x = torch.randn(2, 6, 8, 8)
    labels = F.one_hot(torch.randint(0, 3, (2, 8, 8)), 3).permute(0, 3, 1, 2).float()
    results = []
    for fused in (True, False):
        spade.fused = fused
        spade.zero_grad()
        out = spade(x, LabelPyramid(labels))
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads = {n: p.grad.clone() for n, p in spade.named_parameters()}
        results.append((out.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0])
    assert results[0][1].keys() == results[1][1].keys()
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], msg=name)
        assert grad.abs().sum() > 0, name


def test_configs_round_trip_and_reject_bad_values():
    cfg = generator_config_for("concat", CLASSES, 1, 2, **SMALL)
    again = GeneratorConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.n_blocks == 9
    assert GeneratorConfig(kind="spade", raster_channels=0).n_blocks == 2
    a, b = build_generator(cfg), build_generator(again)
    assert a.state_dict().keys() == b.state_dict().keys()
    d = DiscriminatorConfig.for_generator(cfg, num_scales=3)
    assert DiscriminatorConfig.from_dict(d.to_dict()) == d and d.in_channels == 14
    assert UNetConfig.from_dict(UNetConfig().to_dict()) == UNetConfig()
    with pytest.raises(UsageError, match="kind"):
        GeneratorConfig(kind="unet")
    with pytest.raises(UsageError, match="does not use label_channels"):
        GeneratorConfig(kind="pix2pix")
    with pytest.raises(UsageError, match="needs raster_channels"):
        GeneratorConfig(kind="ours", raster_channels=0)
    with pytest.raises(UsageError, match="unknown generator config keys: depth"):
        GeneratorConfig.from_dict({"depth": 3})
    with pytest.raises(UsageError, match="spectral_norm"):
        DiscriminatorConfig(4, 3, spectral_norm="some")


def test_generator_rejects_wrong_channels_and_sizes():
    cfg = generator_config_for("ours", CLASSES, 1, 3, **SMALL)
    g = build_generator(cfg)
    labels, raster = _inputs(cfg, 64)
    with pytest.raises(UsageError, match="expects 1 raster channels, got 2"):
        g(labels, torch.cat([raster, raster], 1))
    with pytest.raises(UsageError, match="not a multiple of 16"):
        g(labels[..., :40, :40], raster[..., :40, :40])
    with pytest.raises(UsageError, match="needs labels"):
        g(None, raster)


# ----------------------------------------------------------------------------- CLI


def test_model_info_prints_parts_and_totals():
    result = CliRunner().invoke(
        cli, ["model-info", "--generator", "ours", "--inputs", "seg,dem", "--output", "rgb",
              "--cap", "64"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "encoder" in result.output and "decoder" in result.output
    assert "240,263,491" in result.output
    assert "5,554,050" in result.output and "31,032,395" in result.output


def test_model_info_json_for_dual_pol_sar_at_512():
    result = CliRunner().invoke(
        cli, ["model-info", "--generator", "spade", "--inputs", "seg", "--output", "sar",
              "--sar-channels", "2", "--crop", "512", "--cap", "16", "--json"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["generator"]["config"]["output_channels"] == 2
    assert report["discriminator"]["config"]["num_scales"] == 3
    assert report["generator"]["total"] == sum(report["generator"]["parts"].values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--generator", "pix2pix", "--inputs", "seg,dem"], "takes a raster"),
        (["--generator", "ours", "--inputs", "seg"], "takes seg and a raster"),
        (["--inputs", "seg,lidar"], "expected distinct names"),
        (["--inputs", "seg,rgb"], "cannot also be an input"),
    ],
)
def test_model_info_usage_errors_exit_2(args, message):
    result = CliRunner().invoke(cli, ["model-info", *args])
    assert result.exit_code == 2
    assert message in result.output
