"""GAN losses of the paper: hinge loss for D and G, L1 feature matching (SPADE's recipe).

The discriminator is multiscale. Under ``d_step: joint`` every loss is averaged
over its scales, as SPADE (``GANLoss`` and ``GAN_Feat_loss``) does, and the
functions take the :class:`~geosynth.ml.networks.discriminator.DiscriminatorOutput`
of ONE forward on the batch ``cat([fake, real])``, split at ``n_fake``. Under
``d_step: authors`` D sees fake and real in separate forwards and the losses
are summed over the scales, as the code published with the paper does (a factor
``num_scales`` that Adam's normalisation all but hides): the ``*_apart``
functions take the two outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from geosynth.ml.networks.discriminator import DiscriminatorOutput


def split_scores(out: DiscriminatorOutput, n_fake: int) -> tuple[list, list]:
    """Per-scale patch maps (in float32, also under bf16 autocast) of the fake and the real samples."""
    finals = [f.float() for f in out.final]  # (2B, 1, h, w) each
    return [f[:n_fake] for f in finals], [f[n_fake:] for f in finals]


def _over_scales(per_scale: Sequence[torch.Tensor], reduce: str) -> torch.Tensor:
    total = sum(per_scale)
    return total if reduce == "sum" else total / len(per_scale)


def d_hinge(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor], reduce: str = "mean"):
    """D's hinge losses ``(real, fake)`` from per-scale patch maps: ``mean(relu(1 - D(real)))``
    and ``mean(relu(1 + D(fake)))``, averaged (``mean``) or summed (``sum``) over the scales."""
    loss_real = _over_scales([F.relu(1 - r.float()).mean() for r in real], reduce)
    loss_fake = _over_scales([F.relu(1 + f.float()).mean() for f in fake], reduce)
    return loss_real, loss_fake


def g_hinge(fake: Sequence[torch.Tensor], reduce: str = "mean") -> torch.Tensor:
    """G's adversarial loss ``-mean(D(fake))`` from per-scale patch maps."""
    return _over_scales([-f.float().mean() for f in fake], reduce)


def feature_l1(fake: Sequence[Sequence[torch.Tensor]], real, reduce: str = "mean"):
    """L1 between D's features of fake and real (``[scale][layer]``), summed over the layers,
    averaged or summed over the scales. The real features are detached: the term trains G
    only (the paper's code leaves them attached, but discards D's gradients of G's step)."""
    per_scale = [
        sum(F.l1_loss(f, r.detach()) for f, r in zip(fs, rs, strict=True))
        for fs, rs in zip(fake, real, strict=True)
    ]
    return _over_scales(per_scale, reduce)


def hinge_d_loss(out: DiscriminatorOutput, n_fake: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D's hinge losses ``(real, fake)`` of a joint forward, averaged over the scales."""
    fake, real = split_scores(out, n_fake)
    return d_hinge(real, fake)


def hinge_g_loss(out: DiscriminatorOutput, n_fake: int) -> torch.Tensor:
    """G's adversarial loss ``-mean(D(fake))`` of a joint forward, averaged over the scales."""
    fake, _ = split_scores(out, n_fake)
    return g_hinge(fake)


def feature_matching_loss(out: DiscriminatorOutput, n_fake: int) -> torch.Tensor:
    """L1 between D's intermediate features of fake and real in a joint forward, summed over
    layers, averaged over scales."""
    fake = [[f[:n_fake] for f in feats] for feats in out.features]
    real = [[f[n_fake:] for f in feats] for feats in out.features]
    return feature_l1(fake, real)
