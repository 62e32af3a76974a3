"""Images for people: label maps in the class colours, rasters and images as 8-bit grids.

Used for TensorBoard image grids and the PNG sample grid at each epoch end.
Every panel is ``(3, H, W)`` uint8; a grid has one row per sample.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from geosynth.catalog import ClassTable
from geosynth.io import atomic_path
from geosynth.ml.inputs import to_stored

GAP = 2  # pixels between panels


def palette(classes: ClassTable) -> torch.Tensor:
    """``(K, 3)`` uint8 colours by class id (the unlabelled 0: black), as in every PNG figure."""
    return torch.tensor(classes.palette(), dtype=torch.uint8)


def colorize(labels: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """Class ids ``(B, H, W)`` or one-hot ``(B, K, H, W)`` -> ``(B, 3, H, W)`` uint8."""
    ids = labels.argmax(1) if labels.ndim == 4 else labels
    return colors.to(ids.device)[ids.long()].permute(0, 3, 1, 2).contiguous()


def image_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A network image in [-1, 1] ``(B, C, H, W)`` -> ``(B, 3, H, W)`` uint8 (grey for 1-2 bands)."""
    x = to_stored("rgb", image.detach().float())
    return x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)


def raster_to_uint8(raster: torch.Tensor) -> torch.Tensor:
    """An auxiliary raster (DEM in metres, ...) ``(B, C, H, W)``: band 0 stretched per sample."""
    x = raster.detach().float()[:, :1]
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    x = (x - low) / (high - low).clamp_min(1e-6)
    return x.mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1)


def grid(columns: Sequence[torch.Tensor]) -> torch.Tensor:
    """Panels side by side (one column per tensor, one row per sample) -> ``(3, H', W')`` uint8."""
    columns = [c.detach().cpu() for c in columns]
    b, _, h, w = columns[0].shape
    n = len(columns)
    out = torch.full((3, b * h + (b - 1) * GAP, n * w + (n - 1) * GAP), 255, dtype=torch.uint8)
    for j, col in enumerate(columns):
        for i in range(b):
            out[:, i * (h + GAP) : i * (h + GAP) + h, j * (w + GAP) : j * (w + GAP) + w] = col[i]
    return out


def save_png(path: str | os.PathLike, image: torch.Tensor) -> Path:
    """Write a ``(3, H, W)`` uint8 grid as PNG, atomically."""
    from PIL import Image

    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
