"""Multiscale conditional PatchGAN discriminator (pix2pixHD / SPADE; the paper's Table II).

Each scale: 4 x 4 convs with 64, 128, 256, 512 and 1 output channels (times
``capacity / 64``), stride 2 on the first three, padding 2, instance norm on
all but the first, leaky ReLU 0.2 after all but the last. The scales see the
input average-pooled 2x, 4x, ...: two scales for 256 x 256 crops, three for
512 x 512 (:func:`default_num_scales`). The discriminator is conditioned on
the generator's input: ``D(condition, image)`` concatenates both along the
channels. It returns every scale's final map and the intermediate features
(the outputs of all layers but the last) for the feature-matching loss.

Parity: with capacity 64 and two scales, the discriminator for ``ours`` on
GeoNRW (11 label + 1 DEM + 3 RGB input channels) has 5,554,050 parameters,
as in the code published with the paper.

Acquisition conditions (``condition_dim`` > 0, beyond the paper): the
condition vector ``(B, D)`` is replicated into ``D`` constant maps and
concatenated to the input of every scale, so D judges whether the image fits
its season or look angle as it judges whether it fits its label map (the
"concatenated maps" of conditional GANs; a projection head would have to
match the last feature map's size at every scale, the maps need no new
layer). With ``condition_dim`` 0 the discriminator is the paper's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.errors import UsageError
from geosynth.ml.networks.configs import DiscriminatorConfig
from geosynth.ml.networks.layers import conv2d, spectral_on

KERNEL = 4
PADDING = KERNEL // 2  # pix2pixHD's ceil((4 - 1) / 2)
LEAK = 0.2


class DiscriminatorOutput(NamedTuple):
    """``final[s]``: the patch map of scale ``s`` (B, 1, h_s, w_s); ``features[s]``: its layers."""

    final: list[torch.Tensor]
    features: list[list[torch.Tensor]]


class PatchGAN(nn.Module):
    """One scale of the discriminator."""

    def __init__(self, in_channels: int, capacity: int, n_layers: int, spectral_mode: str):
        super().__init__()
        main = spectral_on(spectral_mode, main_path=True)
        edge = spectral_on(spectral_mode, main_path=False)  # first and last conv
        layers = [
            nn.Sequential(
                conv2d(in_channels, capacity, KERNEL, stride=2, padding=PADDING, spectral=edge),
                nn.LeakyReLU(LEAK),
            )
        ]
        width = capacity
        for i in range(1, n_layers):
            stride = 2 if i < n_layers - 1 else 1
            layers.append(
                nn.Sequential(
                    conv2d(width, 2 * width, KERNEL, stride=stride, padding=PADDING, spectral=main),
                    nn.InstanceNorm2d(2 * width),
                    nn.LeakyReLU(LEAK),
                )
            )
            width *= 2
        self.layers = nn.ModuleList(layers)
        self.final = conv2d(width, 1, KERNEL, padding=PADDING, spectral=edge)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.final(x), features  # (B, 1, h, w)


class MultiscaleDiscriminator(nn.Module):
    """``num_scales`` identical PatchGANs on the input pooled 1x, 2x, 4x, ..."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(
            PatchGAN(config.in_channels, config.capacity, config.n_layers, config.spectral_norm)
            for _ in range(config.num_scales)
        )

    def forward(
        self,
        condition: torch.Tensor | None,
        image: torch.Tensor,
        conditions: torch.Tensor | None = None,
    ) -> DiscriminatorOutput:
        """``condition`` (B, C_cond, H, W): the generator's input; ``image`` (B, C_out, H, W);
        ``conditions`` (B, condition_dim): the acquisition conditions, when configured."""
        cfg = self.config
        if image.shape[1] != cfg.output_channels:
            raise UsageError(
                f"discriminator expects {cfg.output_channels} image channels, got {image.shape[1]}"
            )
        cond_channels = 0 if condition is None else condition.shape[1]
        if cond_channels != cfg.condition_channels:
            raise UsageError(
                f"discriminator expects {cfg.condition_channels} condition channels, "
                f"got {cond_channels}"
            )
        if condition is not None and cfg.condition_order is not None:
            condition = condition[:, list(cfg.condition_order)]  # the first conv's order
        x = image if condition is None else torch.cat([condition, image], dim=1)  # (B, C, H, W)
        if cfg.condition_dim:
            if conditions is None or conditions.shape != (x.shape[0], cfg.condition_dim):
                got = None if conditions is None else tuple(conditions.shape)
                raise UsageError(
                    f"discriminator expects conditions (batch, {cfg.condition_dim}), got {got}"
                )
            maps = conditions.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, maps], dim=1)  # (B, C + D, H, W)
        elif conditions is not None:
            raise UsageError("this discriminator takes no conditions (condition_dim 0)")
        finals, features = [], []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 2)  # (B, C, H / 2**i, W / 2**i)
            final, feats = scale(x)
            finals.append(final)
            features.append(feats)
        return DiscriminatorOutput(finals, features)


def build_discriminator(config: DiscriminatorConfig) -> MultiscaleDiscriminator:
    """The discriminator described by ``config``."""
    return MultiscaleDiscriminator(config)


def generator_condition(labels: torch.Tensor | None, raster: torch.Tensor | None) -> torch.Tensor:
    """The discriminator's condition: one-hot labels and raster concatenated (labels first)."""
    parts = [t for t in (labels, raster) if t is not None]
    if not parts:
        raise UsageError("the discriminator needs labels or a raster as condition")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
