"""Parameter counts of the networks, per part, without allocating them.

Networks are built on PyTorch's ``meta`` device, so counting the
240-million-parameter generator costs neither memory nor time. Spectral
norm is left out of these shape-only copies: it adds buffers, not
parameters, and its power iteration at construction is slow on ``meta``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from geosynth.errors import UsageError
from geosynth.ml.networks.configs import (
    PAPER_CROP,
    DiscriminatorConfig,
    GeneratorConfig,
    UNetConfig,
    default_num_scales,
    generator_config_for,
)
from geosynth.ml.networks.discriminator import build_discriminator
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.unet import build_unet
from geosynth.names import LABELS, generator_input_problem


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (spectral norm's ``u``/``v`` are buffers and not counted)."""
    return sum(p.numel() for p in module.parameters())


def parts(module: nn.Module, expand: tuple[str, ...] = ()) -> dict[str, int]:
    """Parameters per direct child of ``module``; children named in ``expand`` per grandchild.

    Children without parameters are left out.
    """
    counts = {}
    for name, child in module.named_children():
        if name in expand:
            counts.update(
                {f"{name}.{sub}": count_parameters(c) for sub, c in child.named_children()}
            )
        else:
            counts[name] = count_parameters(child)
    return {name: n for name, n in counts.items() if n}


def on_meta(build: Callable[[Any], nn.Module], config: Any) -> nn.Module:
    """``build(config)`` on the meta device (shapes only, no storage), without spectral norm."""
    if dataclasses.is_dataclass(config) and hasattr(config, "spectral_norm"):
        config = dataclasses.replace(config, spectral_norm="none")
    with torch.device("meta"):
        return build(config)


def network_report(
    kind: str,
    inputs: tuple[str, ...],
    output: str,
    *,
    num_classes: int,
    sar_channels: int = 1,
    capacity: int = GeneratorConfig.capacity,
    crop: int = PAPER_CROP,
    scales: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Config, parameters per part and total of the generator, discriminator (not for the
    diffusion generator) and U-Net scorer for one data combination (``geosynth model-info``); inputs are checked like ``train``'s."""

    if output in inputs:
        raise UsageError(f"--output {output} cannot also be an input (--inputs {','.join(inputs)})")
    problem = generator_input_problem(kind, inputs)
    if problem:
        raise UsageError(problem)
    channels = {LABELS: num_classes, "dem": 1, "sar": sar_channels, "rgb": 3}
    raster = sum(channels[n] for n in inputs if n != LABELS)
    labels = num_classes if LABELS in inputs else 0
    g_cfg = generator_config_for(kind, labels, raster, channels[output], capacity=capacity)
    d_cfg = DiscriminatorConfig.for_generator(
        g_cfg, num_scales=scales or default_num_scales(crop), capacity=capacity
    )
    u_cfg = UNetConfig(in_channels=channels[output], num_classes=num_classes)
    networks = [("generator", build_generator, g_cfg)]
    if kind != "diffusion":  # the diffusion generator trains without a discriminator
        networks.append(("discriminator", build_discriminator, d_cfg))
    networks.append(("unet", build_unet, u_cfg))
    report = {}
    for name, build, cfg in networks:
        model = on_meta(build, cfg)
        report[name] = {
            "config": cfg.to_dict(),
            "parts": parts(model, expand=("scales",)),
            "total": count_parameters(model),
        }
    return report
