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
