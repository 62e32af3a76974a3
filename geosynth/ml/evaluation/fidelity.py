"""Condition fidelity and sample diversity of conditioned, noise-taking generators.

- **Condition fidelity**: a small classifier trained on crops of *real* images
  to tell their acquisition class is applied to images synthesized under each
  requested condition; its accuracy there is compared with chance and with
  its accuracy on real images it did not see. For the season of a flight:
  :class:`ColourClassifier`, a linear classifier on the mean colour of each
  land-cover class in the crop (the season shows in the colour of fields,
  meadows and trees; the labels make the classes comparable across tiles).
  For the SAR orbit direction: :class:`ConditionNet`, a small CNN trained
  without horizontal flips (a flip swaps the sides that shadow and layover
  fall on, which is the cue).
- **Diversity**: the mean pairwise distance between the U-Net features
  (:func:`~geosynth.ml.metrics.pooled_features`, unit-normalised) of several
  samples of one input, next to each sample's U-Net mIoU (fidelity to the
  label map).
- **SAR shadow side**: which side of tall objects is dark in a SAR image,
  from the DEM alone (:func:`shadow_side`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geosynth.demo.render import cast_shadow
from geosynth.ml.metrics import pooled_features


def season_class(doy: float, centres: Sequence[float]) -> int:
    """The index of the nearest of ``centres`` (days of year), on the circle of the year."""
    d = [min(abs(doy - c), 365.25 - abs(doy - c)) for c in centres]
    return int(np.argmin(d))


def crops(image: np.ndarray, size: int, stride: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(N, C, size, size)`` windows every ``stride`` pixels."""
    _, h, w = image.shape
    out = [
        image[:, y : y + size, x : x + size]
        for y in range(0, h - size + 1, stride)
        for x in range(0, w - size + 1, stride)
    ]
    return np.stack(out)


class ConditionNet(nn.Module):
    """Three stride-2 convs, global average pooling, a linear layer: a condition classifier."""

    def __init__(self, in_channels: int, classes: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x)
        # mean and standard deviation per channel: colour and texture
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1))


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, classes: int, *, steps: int = 300,
    batch: int = 32, seed: int = 0, lr: float = 2e-3, flip: bool = True, balance: bool = False,
) -> ConditionNet:  # fmt: skip
    """A :class:`ConditionNet` trained on ``images`` ``(N, C, h, w)`` in [-1, 1] and ``labels``;
    ``flip``: random horizontal flips (not for conditions that have a side); ``balance``: draw
    every class equally often."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = ConditionNet(images.shape[1], classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    counts = torch.bincount(labels, minlength=classes).clamp(min=1).float()
    weights = (1 / counts)[labels] if balance else torch.ones(len(labels))
    for _ in range(steps):
        idx = torch.multinomial(weights, min(batch, len(images)), replacement=True, generator=gen)
        x = images[idx]
        if flip and torch.rand(1, generator=gen).item() < 0.5:
            x = x.flip(-1)
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def class_colours(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int]):
    """``(N, C, h, w)`` images and ``(N, h, w)`` class ids -> ``(N, len(classes) * C)``: the mean
    of every channel over each class's pixels in each crop (the crop's mean where the class
    is absent), then the fraction of the crop each class covers."""
    n, c = images.shape[:2]
    flat, ids = images.reshape(n, c, -1), labels.reshape(n, -1)
    overall = flat.mean(-1)  # (N, C)
    feats, cover = [], []
    for k in classes:
        mask = (ids == k).to(images.dtype)  # (N, h*w)
        count = mask.sum(-1, keepdim=True)  # (N, 1)
        mean = (flat * mask[:, None]).sum(-1) / count.clamp(min=1)
        feats.append(torch.where(count > 0, mean, overall))
        cover.append(count / ids.shape[1])
    return torch.cat([*feats, *cover], dim=1)


class ColourClassifier(nn.Module):
    """A linear classifier on :func:`class_colours` features, standardised with the training
    set's mean and spread; ``forward(images, labels)``."""

    def __init__(self, classes: Sequence[int], channels: int, conditions: int):
        super().__init__()
        self.classes = list(classes)
        width = len(self.classes) * (channels + 1)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.head = nn.Linear(width, conditions)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head((class_colours(images, labels, self.classes) - self.mean) / self.scale)


def train_colour_classifier(
    images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, conditions: int,
    classes: Sequence[int], *, steps: int = 500, seed: int = 0, lr: float = 0.05,
    weight_decay: float = 1e-3,
) -> ColourClassifier:  # fmt: skip
    """A :class:`ColourClassifier` fitted (full batch, Adam) to crops ``images`` with their
    class ids ``labels`` and condition classes ``targets``."""
    torch.manual_seed(seed)
    net = ColourClassifier(classes, images.shape[1], conditions)
    with torch.no_grad():
        feats = class_colours(images, labels, net.classes)
        net.mean.copy_(feats.mean(0))
        net.scale.copy_(feats.std(0).clamp(min=1e-3))
        x = (feats - net.mean) / net.scale
    opt = torch.optim.Adam(net.head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(net.head(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def predict_colours(net: ColourClassifier, images: torch.Tensor, labels: torch.Tensor):
    return net(images, labels).argmax(1)


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([net(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])


@torch.no_grad()
def pairwise_feature_distance(unet: nn.Module, samples: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance of the unit-normalised pooled U-Net features of
    ``samples`` ``(S, C, H, W)`` (0: all alike; 2: opposite)."""
    feats = F.normalize(pooled_features(unet(samples).features), dim=1)  # (S, D)
    s = len(feats)
    if s < 2:
        return 0.0
    d = torch.cdist(feats, feats)
    return float(d.sum() / (s * (s - 1)))


def shadow_side(
    sar: np.ndarray, dsm: np.ndarray, incidence_deg: float, resolution: float, max_height=40.0
) -> tuple[str, float]:
    """``("east"|"west", contrast)``: the side on which ``sar`` (H, W) is dark behind tall
    objects of ``dsm`` (H, W), comparing the radar shadows cast by a sensor looking east
    (ascending, right-looking) and one looking west. ``contrast`` = mean of the west-looking
    shadow / mean of the east-looking shadow (below 1: shadows fall west)."""

    elevation = 90.0 - incidence_deg
    # a sensor in the west (azimuth 270) casts shadows east, and vice versa
    east = cast_shadow(dsm, resolution, 270.0, elevation, max_height)
    west = cast_shadow(dsm, resolution, 90.0, elevation, max_height)
    a, b = east & ~west, west & ~east
    if a.sum() < 10 or b.sum() < 10:
        return "unknown", math.nan
    ratio = float(sar[b].mean() / max(sar[a].mean(), 1e-6))
    return ("west" if ratio < 1 else "east"), ratio
