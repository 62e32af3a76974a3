"""Segmentation scores against explicit set computations; the Frechet distance against closed forms."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geosynth.errors import DataError, UsageError
from geosynth.ml.metrics import (
    PROTOCOLS,
    ConfusionMatrix,
    FeatureStats,
    _counts_torch,
    confusion_matrix,
    frechet_distance,
    frechet_distance_of,
    gaussian_statistics,
    ignite_scores,
    iou_per_class,
    pooled_features,
    predict_classes,
    segmentation_scores,
)

# ----------------------------------------------------------------------------- segmentation


def _by_sets(pred: np.ndarray, target: np.ndarray, k: int) -> tuple[float, float, dict]:
    """mIoU, pixel accuracy and IoU per class from pixel index sets (no confusion matrix)."""
    labelled = {i for i, t in enumerate(target.ravel()) if t != 0}
    ious = {}
    for c in range(1, k):
        truth = {i for i in labelled if target.ravel()[i] == c}
        predicted = {i for i in labelled if pred.ravel()[i] == c}
        union = truth | predicted
        if union:
            ious[c] = len(truth & predicted) / len(union)
    correct = sum(1 for i in labelled if pred.ravel()[i] == target.ravel()[i])
    miou = sum(ious.values()) / len(ious) if ious else float("nan")
    acc = correct / len(labelled) if labelled else float("nan")
    return miou, acc, ious


def test_scores_on_a_hand_computed_example():
    target = np.array([[0, 1, 1, 2], [2, 2, 3, 0]])
    pred = np.array([[2, 1, 2, 2], [2, 1, 3, 3]])
    counts = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 4).numpy()
    assert counts.sum() == 6  # the two unlabelled pixels are left out
    assert counts[1].tolist() == [0, 1, 1, 0] and counts[2].tolist() == [0, 1, 2, 0]
    s = segmentation_scores(counts)
    # class 1: 1 / (2 + 2 - 1); class 2: 2 / (3 + 3 - 2); class 3: 1 / 1
    assert s["iou"][1:].tolist() == pytest.approx([1 / 3, 1 / 2, 1.0])
    assert np.isnan(s["iou"][0])
    assert s["miou"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert s["pixel_acc"] == pytest.approx(4 / 6) and s["pixels"] == 6


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(2, 6),
    data=st.data(),
)
def test_scores_equal_an_independent_set_computation(k, data):
    shape = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7)))
    target = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, k - 1)))
    pred = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(1, k - 1)))
    counts = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), k).numpy()
    s = segmentation_scores(counts)
    miou, acc, ious = _by_sets(pred, target, k)
    for c in range(1, k):
        if c in ious:
            assert s["iou"][c] == pytest.approx(ious[c])
        else:
            assert np.isnan(s["iou"][c])
    if np.isnan(miou):
        assert np.isnan(s["miou"]) and np.isnan(s["pixel_acc"])
    else:
        assert s["miou"] == pytest.approx(miou) and s["pixel_acc"] == pytest.approx(acc)


def test_mask_and_batches_accumulate_like_one_call():
    rng = np.random.default_rng(3)
    target = torch.from_numpy(rng.integers(0, 5, (4, 9, 9)))
    pred = torch.from_numpy(rng.integers(1, 5, (4, 9, 9)))
    mask = torch.from_numpy(rng.random((4, 9, 9)) < 0.7)
    acc = ConfusionMatrix(5)
    assert acc.counts.sum() == 0
    for i in range(4):
        acc.update(pred[i], target[i], mask[i])
    whole = confusion_matrix(pred, target, 5, mask).numpy()
    assert np.array_equal(acc.counts, whole)
    assert np.array_equal(_counts_torch(pred, target, mask, 5).numpy(), whole)  # the CUDA path
    assert whole.sum() == int(((target != 0) & mask).sum())
    kept = (target != 0) & mask
    assert np.array_equal(whole, confusion_matrix(pred[kept], target[kept], 5).numpy())


def _protocol_scores(name: str, logits: torch.Tensor, target: torch.Tensor, k: int) -> dict:
    protocol = PROTOCOLS[name]
    cm = ConfusionMatrix(k, protocol.ignore)
    cm.update(protocol.predict(logits), target)
    return protocol.scores(cm.counts)


def test_paper_protocol_follows_ignites_formulas_where_the_protocols_differ():
    # 8 pixels, 4 classes: ground truth 0 on three pixels, class 0 predicted on two, class 3
    # nowhere. The top logit gives the prediction over all classes, the runner-up (never 0)
    # the one over classes 1..3.
    target = torch.tensor([[[0, 0, 1, 1, 1, 2, 2, 0]]])  # (1, 1, 8)
    top = [0, 1, 1, 1, 2, 2, 0, 2]
    runner_up = [1, 2, 3, 2, 1, 1, 2, 1]
    logits = torch.zeros(1, 4, 1, 8)
    for i, (a, b) in enumerate(zip(top, runner_up, strict=True)):
        logits[0, a, 0, i], logits[0, b, 0, i] = 2.0, 1.0
    paper = _protocol_scores("paper", logits, target[0][None], 4)
    # ignite by hand: every pixel; rows gt, columns argmax over all logits
    #   gt 0 -> pred 0, 1, 2; gt 1 -> 1, 1, 2; gt 2 -> 2, 0; class 3 absent
    # IoU_c = TP / (row + column - TP + 1e-15): class 1: 2 / (3 + 3 - 2), class 2:
    # 1 / (2 + 3 - 1), class 3: 0 / 1e-15 = 0; mIoU over classes 1..3; accuracy 4 of 8
    assert paper["pixels"] == 8
    assert paper["iou"][1:].tolist() == pytest.approx([0.5, 0.25, 0.0]) and np.isnan(
        paper["iou"][0]
    )
    assert paper["miou"] == pytest.approx((0.5 + 0.25 + 0.0) / 3)
    assert paper["pixel_acc"] == pytest.approx(4 / 8)
    # geosynth on the same logits: labelled pixels only, the runner-up where the top is 0
    ours = _protocol_scores("geosynth", logits, target[0][None], 4)
    # labelled pixels 2..6: gt 1, 1, 1, 2, 2; predictions 1, 1, 2, 2, 2 (pixel 6: 0 -> 2)
    assert ours["pixels"] == 5
    assert ours["iou"][1:3].tolist() == pytest.approx([2 / 3, 2 / 3]) and np.isnan(ours["iou"][3])
    assert ours["miou"] == pytest.approx(2 / 3) and ours["pixel_acc"] == pytest.approx(4 / 5)


def test_ignite_scores_of_a_class_absent_from_the_split_cap_the_miou():
    counts = np.diag([7, 5, 3, 0, 0]).astype(np.int64)  # perfect, two of four classes absent
    s = ignite_scores(counts)
    assert s["iou"][1:].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert s["miou"] == pytest.approx(0.5)
    assert s["pixel_acc"] == 1.0 and s["pixels"] == 15
    assert segmentation_scores(counts)["miou"] == 1.0  # geosynth leaves them out


def test_bad_class_ids_and_shapes_are_refused():
    with pytest.raises(DataError, match=r"class ids must lie in 0\.\.2"):
        confusion_matrix(torch.tensor([3]), torch.tensor([1]), 3)
    with pytest.raises(UsageError, match="shapes differ"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), 3)
    with pytest.raises(UsageError, match="num_classes must be >= 2"):
        ConfusionMatrix(1)


def test_prediction_never_picks_unlabelled_and_iou_of_absent_classes_is_nan():
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 0] = 10.0  # class 0 scores highest everywhere
    logits[0, 2, 0, 0] = 1.0
    assert predict_classes(logits).tolist() == [[[2, 1], [1, 1]]]
    counts = np.zeros((4, 4), dtype=np.int64)
    counts[1, 1] = 5
    iou = iou_per_class(counts)
    assert iou[1] == 1.0 and np.isnan(iou[[0, 2, 3]]).all()
    empty = segmentation_scores(np.zeros((3, 3), dtype=np.int64))
    assert np.isnan(empty["miou"]) and np.isnan(empty["pixel_acc"]) and empty["pixels"] == 0


def test_pooled_features_are_layer_means_concatenated():
    a = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).reshape(2, 2, 4, 4)
    b = torch.ones(2, 3, 2, 2) * torch.tensor([1.0, 2.0, 3.0])[None, :, None, None]
    out = pooled_features([a, b])  # (2, 5)
    assert out.shape == (2, 5)
    assert out[0, :2].tolist() == [7.5, 23.5] and out[1, 2:].tolist() == [1.0, 2.0, 3.0]


# ----------------------------------------------------------------------------- Frechet distance


def _closed_form_commuting(mu1, a, mu2, b) -> float:
    """FD for covariances Q diag(a) Q^T and Q diag(b) Q^T: |dmu|^2 + sum (sqrt a - sqrt b)^2."""
    diff = np.asarray(mu1) - np.asarray(mu2)
    return float(diff @ diff + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


@settings(max_examples=40, deadline=None)
@given(
    d=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_fd_equals_the_closed_form_for_commuting_covariances(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(0, 3, d), rng.normal(0, 3, d)
    a, b = rng.uniform(0.1, 5, d), rng.uniform(0.1, 5, d)
    expected = _closed_form_commuting(mu1, a, mu2, b)
    # diagonal covariances
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-8)
    # the same spectra in a common rotated basis
    q = _rotation(d, seed + 1)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7, abs=1e-7)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


@settings(max_examples=30, deadline=None)
@given(d=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_fd_equals_the_symmetric_form_for_general_covariances(d, seed):
    """tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)), here with eigendecompositions only."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = x @ x.T + 0.1 * np.eye(d), y @ y.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    r1 = _psd_sqrt(s1)
    cross = np.trace(_psd_sqrt(r1 @ s2 @ r1))
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * cross)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-6)


def test_fd_of_samples_approaches_the_closed_form():
    rng = np.random.default_rng(7)
    d, n = 3, 40_000
    q = _rotation(d, 11)
    a, b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 2.0])
    real = rng.multivariate_normal(mu1, q @ np.diag(a) @ q.T, size=n)
    fake = rng.multivariate_normal(mu2, q @ np.diag(b) @ q.T, size=n)
    expected = _closed_form_commuting(mu1, a, mu2, b)  # 5.25 + 0.536 + 0.5 + 0
    got = frechet_distance_of(real, fake)
    assert got == pytest.approx(expected, rel=0.03)
    stats = FeatureStats()
    for chunk in np.array_split(real, 7):
        stats.update(torch.from_numpy(chunk))
    mu, sigma = stats.statistics()
    assert np.allclose(mu, real.mean(0)) and np.allclose(sigma, np.cov(real, rowvar=False))
    assert mu.dtype == np.float64


def test_singular_covariances_take_the_epsilon_fallback(caplog):
    mu = np.zeros(3)
    a, b = np.array([4.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])  # both rank-deficient
    with caplog.at_level(logging.WARNING, logger="geosynth.ml.metrics"):
        got = frechet_distance(mu, np.diag(a), mu, np.diag(b))
    assert "adding 1e-06 to the diagonal" in caplog.text
    assert got == pytest.approx(_closed_form_commuting(mu, a, mu, b), abs=1e-2)  # 1 + 1 = 2
    nilpotent = np.zeros((2, 2))
    nilpotent[0, 1] = 1.0  # sqrtm gives huge finite garbage here; the fallback catches it
    assert np.isfinite(frechet_distance(np.zeros(2), nilpotent, np.zeros(2), np.eye(2)))


def test_a_large_imaginary_part_is_an_error():
    # not a covariance: the product has a negative eigenvalue, whose root is imaginary
    with pytest.raises(DataError, match="imaginary component of 1"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_too_few_samples_warn_or_fail(caplog):
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.WARNING, logger="geosynth.ml.metrics"):
        gaussian_statistics(rng.normal(size=(40, 8)))
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="geosynth.ml.metrics"):
        value = frechet_distance_of(rng.normal(size=(5, 8)), rng.normal(size=(5, 8)))
    assert "5 samples do not exceed the feature dimension 8" in caplog.text
    assert np.isfinite(value)
    with pytest.raises(DataError, match="at least 2 samples, got 1"):
        gaussian_statistics(np.ones((1, 4)), "real features")
    with pytest.raises(DataError, match="NaN or infinite"):
        gaussian_statistics(np.full((3, 2), np.nan))
    with pytest.raises(UsageError, match="mismatched statistics"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
