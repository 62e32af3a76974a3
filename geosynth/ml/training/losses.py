"""GAN losses of the paper: hinge loss for D and G, L1 feature matching (SPADE's recipe).

The discriminator is multiscale: every loss is averaged over its scales, as
SPADE (``GANLoss`` and ``GAN_Feat_loss``) does. All functions take the
:class:`~geosynth.ml.networks.discriminator.DiscriminatorOutput` of ONE forward on the
batch ``cat([fake, real])`` and split it at ``n_fake``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geosynth.ml.networks.discriminator import DiscriminatorOutput


def split_scores(out: DiscriminatorOutput, n_fake: int) -> tuple[list, list]:
    """Per-scale patch maps (in float32, also under bf16 autocast) of the fake and the real samples."""
    finals = [f.float() for f in out.final]  # (2B, 1, h, w) each
    return [f[:n_fake] for f in finals], [f[n_fake:] for f in finals]


def hinge_d_loss(out: DiscriminatorOutput, n_fake: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D's hinge losses ``(real, fake)``: ``mean(relu(1 - D(real)))``, ``mean(relu(1 + D(fake)))``."""
    fake, real = split_scores(out, n_fake)
    n = len(fake)
    loss_real = sum(F.relu(1 - r).mean() for r in real) / n
    loss_fake = sum(F.relu(1 + f).mean() for f in fake) / n
    return loss_real, loss_fake


def hinge_g_loss(out: DiscriminatorOutput, n_fake: int) -> torch.Tensor:
    """G's adversarial loss: ``-mean(D(fake))``, averaged over the scales."""
    fake, _ = split_scores(out, n_fake)
    return -sum(f.mean() for f in fake) / len(fake)


def feature_matching_loss(out: DiscriminatorOutput, n_fake: int) -> torch.Tensor:
    """L1 between D's intermediate features of fake and real, summed over layers, mean over scales.

    The real features are detached: the term trains G only.
    """
    total = 0.0
    for feats in out.features:  # one list per scale
        for f in feats:  # (2B, C, h, w)
            total = total + F.l1_loss(f[:n_fake], f[n_fake:].detach())
    return total / len(out.features)
