"""U-Net (Ronneberger et al. 2015) that scores synthesized images by segmenting them.

Four downsampling and four upsampling levels, 64 base channels, two 3 x 3
conv + ReLU per level, max pooling down, 2 x 2 transposed conv up, a 1 x 1
conv to class logits. It returns the logits and its encoder features (the
four skip tensors, before pooling), which the evaluation pools globally and
concatenates for the Frechet distance, as the code published with the paper
does. With RGB input and 11 classes it has 31,032,395 parameters, as there.

Its input is an image in [-1, 1], as geosynth's images are everywhere.
``input_range="unit"`` maps it to [0, 1] before the first convolution: the
range the paper's scorer was trained on (its images straight from
``ToTensor``), so that its weights (``geosynth import-weights``) and a scorer
trained as the paper's see the same values.

``norm="batch"`` (not in the paper's scorer) puts a BatchNorm after every 3 x 3
conv (which then has no bias): on the short CPU budgets of the demo it converges
several times faster than the plain network.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.errors import UsageError
from geosynth.ml.networks.configs import UNetConfig


class UNetOutput(NamedTuple):
    logits: torch.Tensor  # (B, K, H, W)
    features: list[torch.Tensor]  # encoder levels, (B, 64 * 2**i, H / 2**i, W / 2**i)


def _double_conv(in_channels: int, out_channels: int, norm: str = "none") -> nn.Sequential:
    layers = []
    for i in range(2):
        layers.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3,
                                padding=1, bias=norm == "none"))  # fmt: skip
        if norm == "batch":
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**i for i in range(config.depth)]
        ins = [config.in_channels, *widths[:-1]]
        norm = config.norm
        self.down = nn.ModuleList(
            _double_conv(i, o, norm) for i, o in zip(ins, widths, strict=True)
        )
        self.bottom = _double_conv(widths[-1], 2 * widths[-1], norm)
        self.up = nn.ModuleList(nn.ConvTranspose2d(2 * w, w, 2, stride=2) for w in reversed(widths))
        self.up_conv = nn.ModuleList(_double_conv(2 * w, w, norm) for w in reversed(widths))
        self.head = nn.Conv2d(widths[0], config.num_classes, 1)

    def forward(self, x: torch.Tensor) -> UNetOutput:
        m = 2**self.config.depth
        if x.shape[-2] % m or x.shape[-1] % m:
            raise UsageError(f"U-Net input {tuple(x.shape[-2:])} is not a multiple of {m}")
        if self.config.input_range == "unit":
            x = (x + 1) / 2  # [-1, 1] -> [0, 1]
        skips = []
        for down in self.down:
            x = down(x)  # (B, C_i, H_i, W_i)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)  # (B, 2 C_last, H / 16, W / 16)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([up(x), skip], dim=1))
        return UNetOutput(self.head(x), skips)


def build_unet(config: UNetConfig) -> UNet:
    """The U-Net described by ``config``."""
    return UNet(config)
