"""Synthesis of whole tiles with a trained generator, and georeferenced outputs.

Generators are trained on crops (256 x 256 in the paper); a 1000 x 1000 tile
is synthesized window by window. Windows of the training crop size overlap
by ``overlap`` pixels and are blended with weights that ramp linearly from
the window's border over the overlap, so no seam shows: every pixel is a
weighted mean of the windows covering it, and the weights of a window are
highest in its centre, where the generator sees the most context.

Inputs are prepared exactly as :class:`~geosynth.ml.data.SynthesisDataset`
prepares them for training (one-hot labels, DEM in metres or standardised per
tile or per window as the run's ``dem_norm`` says, rasters in [-1, 1]).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.errors import UsageError
from geosynth.grid import RasterGrid
from geosynth.io import atomic_path
from geosynth.ml.config import GanConfig
from geosynth.ml.data import LABELS, STD_FLOOR, to_network

log = logging.getLogger(__name__)


def _fill_nan(dem: np.ndarray) -> np.ndarray:
    dem = np.array(dem, dtype=np.float32)
    nan = np.isnan(dem)
    if nan.any():
        dem[nan] = float(np.nanmedian(dem)) if not nan.all() else 0.0
    return dem


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / max(float(x.std()), STD_FLOOR)


def prepare_inputs(
    arrays: Mapping[str, np.ndarray], config: GanConfig, num_classes: int
) -> dict[str, np.ndarray]:
    """Stored pixels of a whole tile -> network inputs ``(C, H, W)`` (per-window norms later)."""
    missing = [name for name in config.inputs if name not in arrays]
    if missing:
        raise UsageError(
            f"the generator was trained on {','.join(config.inputs)}; missing {', '.join(missing)}"
        )
    out = {}
    for name in config.inputs:
        values = np.asarray(arrays[name])
        if name == "dem":
            values = _fill_nan(values if values.ndim == 3 else values[None])
            if config.dem_norm == "tile":
                values = _standardise(values)
            out[name] = values.astype(np.float32)
        elif name == LABELS:
            if values.max(initial=0) >= num_classes:
                raise UsageError(f"label map has class id {int(values.max())} >= {num_classes}")
            out[name] = to_network(name, values, num_classes)
        else:
            values = values if values.ndim == 3 else values[None]
            out[name] = to_network(name, values, num_classes)
    return out


def _ramp(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights: rising linearly over ``overlap`` px at both ends, 1 inside."""
    i = np.arange(size, dtype=np.float64)
    if overlap <= 0:
        return np.ones(size)
    return np.clip(np.minimum(i + 0.5, size - i - 0.5) / overlap, 1e-3, 1.0)


def _starts(length: int, window: int, stride: int) -> list[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


@torch.no_grad()
def synthesize_array(
    generator: torch.nn.Module,
    config: GanConfig,
    inputs: Mapping[str, np.ndarray],
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Generator output ``(C, H, W)`` in [-1, 1] for prepared ``inputs`` of any size.

    ``window`` defaults to the training crop, ``overlap`` to a quarter of it (at most 32 px).
    """
    window = int(window or config.crop)
    overlap = int(min(window // 4, 32) if overlap is None else overlap)
    if not 0 <= overlap < window:
        raise UsageError(f"overlap must be in [0, {window}), got {overlap}")
    size = config.resize or window  # the network's input size
    multiple = 2 ** getattr(generator.config, "n_sampling", 4)
    if size % multiple:
        raise UsageError(f"window {size} must be a multiple of {multiple}")
    first = next(iter(inputs.values()))
    h, w = first.shape[-2:]
    # pad small tiles up to one window (reflect keeps the statistics)
    pad_h, pad_w = max(0, window - h), max(0, window - w)
    tensors = {}
    for name, values in inputs.items():
        t = torch.from_numpy(np.ascontiguousarray(values))[None]  # (1, C, H, W)
        if pad_h or pad_w:
            t = F.pad(t, (0, pad_w, 0, pad_h), mode="replicate")
        tensors[name] = t
    H, W = h + pad_h, w + pad_w
    stride = window - overlap
    boxes = [(y, x) for y in _starts(H, window, stride) for x in _starts(W, window, stride)]
    weight = torch.from_numpy(np.outer(_ramp(window, overlap), _ramp(window, overlap))).float()
    out = None
    norm = torch.zeros(H, W)
    generator = generator.to(device).eval()
    for first_box in range(0, len(boxes), batch_size):
        batch_boxes = boxes[first_box : first_box + batch_size]
        labels, rasters = None, []
        crops = {
            name: torch.cat([t[..., y : y + window, x : x + window] for y, x in batch_boxes])
            for name, t in tensors.items()
        }  # (B, C, win, win)
        for name in config.inputs:
            crop = crops[name]
            if name == "dem" and config.dem_norm == "crop":
                flat = crop.flatten(1)
                std = flat.std(dim=1, unbiased=False).clamp_min(STD_FLOOR)
                crop = (crop - flat.mean(dim=1)[:, None, None, None]) / std[:, None, None, None]
            if size != window:
                mode = "nearest" if name == LABELS else "bilinear"
                crop = F.interpolate(
                    crop,
                    size=(size, size),
                    mode=mode,
                    **({} if mode == "nearest" else {"align_corners": False}),
                )
            if name == LABELS:
                labels = crop.to(device)
            else:
                rasters.append(crop.to(device))
        raster = torch.cat(rasters, 1) if rasters else None
        fake = generator(labels, raster).float().cpu()  # (B, C_out, size, size)
        if size != window:
            fake = F.interpolate(fake, size=(window, window), mode="bilinear", align_corners=False)
        if out is None:
            out = torch.zeros(fake.shape[1], H, W)
        for k, (y, x) in enumerate(batch_boxes):
            out[:, y : y + window, x : x + window] += fake[k] * weight
            norm[y : y + window, x : x + window] += weight
        if progress:
            progress(min(first_box + batch_size, len(boxes)), len(boxes))
    result = (out / norm).numpy()[:, :h, :w]
    return np.clip(result, -1.0, 1.0)


def to_stored(name: str, values: np.ndarray) -> np.ndarray:
    """Network output in [-1, 1] -> the store's form: rgb uint8, sar float32 in [0, 1]."""
    if name == "rgb":
        return np.round((values + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return ((values + 1.0) / 2.0).clip(0, 1).astype(np.float32)


def synthesize_tile(
    generator, config: GanConfig, arrays: Mapping[str, np.ndarray], num_classes: int, **kwargs
) -> np.ndarray:
    """Stored input pixels of one tile -> the synthesized image in the store's form."""
    prepared = prepare_inputs(arrays, config, num_classes)
    return to_stored(config.output, synthesize_array(generator, config, prepared, **kwargs))


def write_cog(
    path: str | os.PathLike,
    array: np.ndarray,
    grid: RasterGrid | None,
    *,
    descriptions: tuple[str, ...] = (),
    nodata=None,
    tags: dict | None = None,
) -> Path:
    """Write ``(C, H, W)`` as a Cloud-Optimised GeoTIFF (GDAL's COG driver), atomically."""
    import rasterio

    profile = {
        "width": array.shape[-1],
        "height": array.shape[-2],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "nodata": nodata,
    }
    if grid is not None:
        profile.update(crs=grid.crs, transform=grid.transform)
    # the COG driver copies from a source: write a plain GeoTIFF in memory first
    with atomic_path(path) as tmp, rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", **profile) as dst:
            dst.write(array)
            for i, d in enumerate(descriptions, 1):
                dst.set_band_description(i, d)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
        with mem.open() as src:
            from rasterio.shutil import copy as rio_copy

            rio_copy(src, tmp, driver="COG", compress="deflate", blocksize=256)
    return Path(path)


def run_synthesis(
    synth,
    inputs,
    out: str | os.PathLike,
    *,
    window: int | None = None,
    overlap: int | None = None,
    sar_db: bool = False,
    device: str = "cpu",
) -> list[Path]:
    """Synthesize one tile (:class:`~geosynth.inputs.TileInputs`) and write its COG and panel."""
    from geosynth.figures import save_panel

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    synth.check((), tuple(inputs.arrays))
    config = synth.config
    image = synthesize_tile(
        synth.generator,
        config,
        inputs.arrays,
        inputs.num_classes,
        window=window,
        overlap=overlap,
        device=device,
    )
    written = []
    data, descriptions = (
        image,
        (
            ("red", "green", "blue")
            if config.output == "rgb"
            else tuple(f"sar{i + 1}" for i in range(image.shape[0]))
        ),
    )
    tags = {"geosynth_generator": synth.run, "geosynth_inputs": ",".join(config.inputs)}
    if config.output == "sar" and sar_db:
        from geosynth.catalog import load_catalog

        data = (image * load_catalog().sar.divisor).astype(np.float32)  # 20 log10(A), dB
        tags["units"] = "dB (20 log10 amplitude), clipped to the normalisation range"
    written.append(
        write_cog(
            out / f"{inputs.name}_{config.output}.tif",
            data,
            inputs.grid,
            descriptions=descriptions,
            tags=tags,
        )
    )
    columns = []
    for name in config.inputs:
        columns.append((name, name, inputs.arrays[name]))
    columns.append((f"synthesized {config.output}", config.output, image))
    if config.output in inputs.arrays:
        columns.append((f"real {config.output}", config.output, inputs.arrays[config.output]))
    written.append(
        save_panel(
            out / f"{inputs.name}_panel.png",
            columns,
            classes=inputs.classes,
            title=f"{inputs.name}: {synth.run}",
        )
    )
    return written
