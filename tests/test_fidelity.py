"""The instruments of the fidelity measurements: class colours, the condition
classifiers and the geometric SAR shadow side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geosynth.demo.render import cast_shadow
from geosynth.ml.evaluation.fidelity import (
    class_colours,
    predict,
    predict_colours,
    shadow_side,
    train_classifier,
    train_colour_classifier,
)


def test_class_colours_are_per_class_means_and_shares():
    images = torch.zeros(1, 3, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.int64)
    labels[0, :, :1] = 1  # class 1: the first column, red
    images[0, 0, :, :1] = 1.0
    labels[0, :, 1:] = 2  # class 2: the rest, blue 0.5
    images[0, 2, :, 1:] = 0.5
    feats = class_colours(images, labels, [1, 2, 3])
    assert feats.shape == (1, 3 * 3 + 3)
    np.testing.assert_allclose(feats[0, :3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(feats[0, 3:6], [0.0, 0.0, 0.5])
    overall = images[0].reshape(3, -1).mean(1)  # class 3 is absent: the crop's mean
    np.testing.assert_allclose(feats[0, 6:9], overall)
    np.testing.assert_allclose(feats[0, 9:], [0.25, 0.75, 0.0])


def seasons(n: int, seed: int):
    """Crops of two classes whose shares vary at random; the season shows only in the colour of
    class 1 (green in summer, brown in winter); class 2 looks alike in both."""
    rng = np.random.default_rng(seed)
    images, labels, targets = [], [], []
    for i in range(n):
        season = i % 2
        lab = np.where(rng.random((16, 16)) < rng.uniform(0.2, 0.8), 1, 2)
        img = rng.normal(0, 0.15, (3, 16, 16))
        img[:, lab == 1] += np.array([0.3, -0.2, -0.4] if season else [-0.3, 0.4, -0.3])[:, None]
        img[:, lab == 2] += np.array([0.1, 0.1, 0.1])[:, None]
        images.append(img)
        labels.append(lab)
        targets.append(season)
    return (
        torch.tensor(np.stack(images), dtype=torch.float32),
        torch.tensor(np.stack(labels)),
        torch.tensor(targets),
    )


def test_colour_classifier_tells_the_season_from_class_colours():
    x, lab, y = seasons(40, seed=0)
    clf = train_colour_classifier(x, lab, y, 2, [1, 2], seed=0)
    xt, labt, yt = seasons(20, seed=1)
    assert (predict_colours(clf, xt, labt) == yt).float().mean() == 1.0
    # the same crops with the class-1 colours of the other season are taken for it
    swapped = xt.clone()
    for j in range(len(xt)):
        mask = labt[j] == 1
        other = x[(y != yt[j]).nonzero()[0, 0]]
        swapped[j][:, mask] = other[:, lab[(y != yt[j]).nonzero()[0, 0]] == 1].mean(1)[:, None]
    assert (predict_colours(clf, swapped, labt) != yt).float().mean() == 1.0


def sides(n: int, seed: int):
    """Noise crops with a dark band on the left (class 0) or on the right (class 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.2, (n, 1, 16, 16)).astype(np.float32)
    y = np.arange(n) % 2
    x[y == 0, :, :, :4] -= 1.0
    x[y == 1, :, :, -4:] -= 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def test_side_classifier_learns_without_flips_and_cannot_with_them():
    x, y = sides(64, seed=0)
    xt, yt = sides(32, seed=1)
    plain = train_classifier(x, y, 2, steps=150, seed=0, flip=False)
    assert (predict(plain, xt) == yt).float().mean() >= 0.95
    flipped = train_classifier(x, y, 2, steps=150, seed=0, flip=True)
    assert (predict(flipped, xt) == yt).float().mean() <= 0.75  # a flip swaps the classes


def test_balanced_training_sees_the_rare_class():
    x, y = sides(66, seed=0)
    keep = torch.cat([torch.nonzero(y == 0)[:, 0], torch.nonzero(y == 1)[:3, 0]])  # 33 vs 3
    xt, yt = sides(32, seed=1)
    clf = train_classifier(x[keep], y[keep], 2, steps=150, seed=0, flip=False, balance=True)
    assert (predict(clf, xt)[yt == 1] == 1).float().mean() >= 0.9


@pytest.mark.parametrize("look_east", [True, False])
def test_shadow_side_reads_which_side_the_radar_shadow_falls(look_east):
    rng = np.random.default_rng(0)
    dsm = np.full((200, 200), 50.0)
    for _ in range(12):  # buildings 12-20 m tall
        r, c = rng.integers(10, 180, 2)
        dsm[r : r + 12, c : c + 12] = 50 + rng.uniform(12, 20)
    # a sensor in the west (azimuth 270 seen from the scene) casts its shadows east
    shadow = cast_shadow(dsm, 1.0, 270.0 if look_east else 90.0, 90.0 - 35.0, 40.0)
    sar = np.where(shadow, 0.1, 0.5) + rng.normal(0, 0.05, dsm.shape)
    side, ratio = shadow_side(sar, dsm, 35.0, 1.0)
    assert side == ("east" if look_east else "west")
    assert (ratio > 1.5) if look_east else (ratio < 0.67)
