"""Images for people: label maps in the class colours, rasters and images as 8-bit grids.

Used for TensorBoard image grids and the PNG sample grid at each epoch end.
Every panel is ``(3, H, W)`` uint8; a grid has one row per sample and, when given, a
header naming each column.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from geosynth.catalog import ClassTable
from geosynth.io import atomic_path
from geosynth.ml.data.tensors import to_stored

GAP = 2  # pixels between panels
HEADER = 14  # pixels of the column-header band (PIL's default bitmap font is 11 px high)


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


def grid(columns: Sequence[torch.Tensor], headers: Sequence[str] | None = None) -> torch.Tensor:
    """Panels side by side (one column per tensor, one row per sample) -> ``(3, H', W')`` uint8,
    with ``headers`` (one per column) written above the columns when given."""
    columns = [c.detach().cpu() for c in columns]
    b, _, h, w = columns[0].shape
    n = len(columns)
    top = HEADER if headers else 0
    out = torch.full(
        (3, top + b * h + (b - 1) * GAP, n * w + (n - 1) * GAP), 255, dtype=torch.uint8
    )
    for j, col in enumerate(columns):
        for i in range(b):
            y = top + i * (h + GAP)
            out[:, y : y + h, j * (w + GAP) : j * (w + GAP) + w] = col[i]
    if headers:
        if len(headers) != n:
            raise ValueError(f"{len(headers)} headers for {n} columns")
        out[:, :top] = _header_band(headers, w, out.shape[-1])
    return out


def _header_band(headers: Sequence[str], width: int, total: int) -> torch.Tensor:
    """A white ``(3, HEADER, total)`` band with each header centred over its column."""
    from PIL import Image, ImageDraw, ImageFont

    band = Image.new("RGB", (total, HEADER), "white")
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default()
    for j, text in enumerate(headers):
        while len(text) > 1 and draw.textlength(text, font=font) > width:  # no overflow
            text = text[:-2] + "."
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        x = j * (width + GAP) + max(0, (width - (right - left)) // 2)
        draw.text((x, 1), text, fill="black", font=font)
    return torch.from_numpy(np.asarray(band).copy()).permute(2, 0, 1)


def save_png(path: str | os.PathLike, image: torch.Tensor) -> Path:
    """Write a ``(3, H, W)`` uint8 grid as PNG, atomically."""
    from PIL import Image

    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
