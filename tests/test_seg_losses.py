"""Class weights and focal loss of the U-Net scorer, against their formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ml.training.config import UNetRunConfig
from geosynth.ml.training.seg_losses import (
    LOSS_FAMILIES,
    SegmentationLoss,
    class_weights,
    focal_binary_cross_entropy,
    focal_cross_entropy,
)
from geosynth.names import UNET_LOSSES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# class 0: 100 unlabelled px; classes 1-3: 10, 30, 60 px (frequencies 0.1, 0.3, 0.6); 4 absent
HIST = [100, 10, 30, 60, 0]


def test_inverse_weights_from_a_known_histogram():
    w = class_weights(HIST, "inverse")
    np.testing.assert_allclose(w, [0, 1 / 0.3, 1 / 0.9, 1 / 1.8, 1])
    freq = np.array([0.1, 0.3, 0.6])
    assert (freq * w[1:4]).sum() == pytest.approx(1.0)  # the pixel-weighted mean is 1


def test_median_frequency_weights_from_a_known_histogram():
    np.testing.assert_allclose(class_weights(HIST, "median"), [0, 3, 1, 0.5, 1])
    np.testing.assert_allclose(class_weights(HIST, "sqrt"), [0, 3**0.5, 1, 0.5**0.5, 1])


def test_no_weights_and_bad_histograms():
    np.testing.assert_array_equal(class_weights(HIST, "none"), [0, 1, 1, 1, 1])
    with pytest.raises(UsageError, match="one of"):
        class_weights(HIST, "cube")
    with pytest.raises(Exception, match="no labelled pixels"):
        class_weights([5, 0, 0], "median")


def _batch(seed=0, k=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 3, 4, generator=g) * 2
    target = torch.randint(0, k, (2, 3, 4), generator=g)
    target[0, 0, :2] = 0  # some unlabelled pixels
    return logits, target


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = _batch()
    expected = F.cross_entropy(logits, target, ignore_index=0)
    assert focal_cross_entropy(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    w = torch.tensor(class_weights(HIST, "median"), dtype=torch.float32)
    weighted = F.cross_entropy(logits, target, weight=w, ignore_index=0)
    assert focal_cross_entropy(logits, target, w).item() == pytest.approx(weighted.item(), 1e-6)


def test_focal_loss_against_its_formula():
    logits, target = _batch(1)
    w = torch.tensor(class_weights(HIST, "inverse"), dtype=torch.float32)
    p = torch.softmax(logits, 1)
    num = den = 0.0
    for b, y, x in np.ndindex(*target.shape):
        t = int(target[b, y, x])
        if t == 0:
            continue
        pt = float(p[b, t, y, x])
        num += -float(w[t]) * (1 - pt) ** 2 * np.log(pt)
        den += float(w[t])
    got = focal_cross_entropy(logits, target, w, gamma=2.0).item()
    assert got == pytest.approx(num / den, rel=1e-5)
    assert got < focal_cross_entropy(logits, target, w).item()  # easy pixels count less


def test_binary_family_gamma_zero_is_bce_and_focal_matches_formula():
    logits, target = _batch(2)
    onehot = F.one_hot(target, 5).permute(0, 3, 1, 2).float()
    expected = F.binary_cross_entropy_with_logits(logits, onehot)
    assert focal_binary_cross_entropy(logits, target).item() == pytest.approx(expected.item())
    p = torch.sigmoid(logits)
    pt = torch.where(onehot > 0, p, 1 - p)
    w = torch.tensor([0.0, 2.0, 1.0, 0.5, 1.0])
    wpos = torch.where(onehot > 0, torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0]).view(1, 5, 1, 1), 1.0)
    formula = (-wpos * (1 - pt) ** 2 * torch.log(pt)).mean()
    got = focal_binary_cross_entropy(logits, onehot, w, gamma=2.0)
    assert got.item() == pytest.approx(formula.item(), rel=1e-5)


def test_loss_choices_and_batches_without_labels():
    assert set(LOSS_FAMILIES) == set(UNET_LOSSES)
    logits, _ = _batch()
    empty = torch.zeros(2, 3, 4, dtype=torch.int64)
    assert SegmentationLoss("focal")(logits, empty).item() == 0.0
    assert SegmentationLoss("ce", gamma=5).gamma == 0.0  # gamma only for focal


def test_config_and_cli_refuse_bad_values(tiny_store, tmp_path):
    with pytest.raises(UsageError, match=r"mix must lie in \[0, 1\]"):
        UNetRunConfig(store="s", out="o", mix=1.5)
    with pytest.raises(UsageError, match="class_weights"):
        UNetRunConfig(store="s", out="o", class_weights="cube")
    out = tmp_path / "run"
    args = ["train-unet", "--store", str(tiny_store), "--out", str(out), "--extra-store",
            str(tiny_store), "--mix", "1.5"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--mix" in result.output
    assert not out.exists()


def test_bce_loss_is_the_papers_and_takes_class_weights():
    logits, target = _batch(3)
    onehot = F.one_hot(target, 5).permute(0, 3, 1, 2).float()
    plain = SegmentationLoss("bce")(logits, target)
    assert plain.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, onehot).item())
    w = torch.tensor(class_weights(HIST, "inverse"), dtype=torch.float32)
    assert SegmentationLoss("bce", w)(logits, target).item() != pytest.approx(plain.item())
