"""Stored tile pixels -> network tensors, and network outputs -> stored values: the one place.

Every path that feeds a network prepares its window with :func:`prepare_window`:
the training dataset (:class:`~geosynth.ml.data.datasets.SynthesisDataset`), and through
it ``evaluate``; ``synthesize`` window by window; and ``edit-flood`` /
``edit-classes`` through ``synthesize``. The same window of the same tile
therefore reaches the generator as the same tensors, whichever command runs it
(tested, DEM holes included).

Per modality (``(C, h, w)`` float32 tensors unless said otherwise):

- ``seg``: one-hot ``(K, h, w)`` with ``K`` the store's class count including
  the unlabelled id 0; or class ids ``(h, w)`` int64 with ``one_hot=False``
  (segmentation targets); ids >= K are refused;
- ``dem``: metres as stored; no-data (NaN) pixels take the median of the
  window's valid heights (0 when it has none). ``dem_norm="crop"``
  standardises by the window's mean and standard deviation (after filling),
  ``"tile"`` by the whole tile's, over its valid pixels (:func:`dem_stats`);
  standard deviations are floored at :data:`STD_FLOOR`;
- ``rgb``: 0..255 -> [-1, 1]; ``sar``: [0, 1] -> [-1, 1], pixels without SAR
  read -1, and ``sar_valid`` ``(1, h, w)`` bool comes along when the window has it;
- anything else (extra modalities): float32 as stored.

With ``resize`` the prepared window is resized: nearest for labels and
masks, bilinear (antialiased when shrinking) for the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.errors import DataError
from geosynth.names import LABELS

STD_FLOOR = 1e-3  # metres: a flat window is centred, not blown up
IMAGE_SCALE = {"rgb": 127.5, "sar": 0.5}  # stored = (network + 1) * scale


# --------------------------------------------------------------------------- value ranges


def to_network(name: str, values: np.ndarray, num_classes: int, one_hot: bool = True) -> np.ndarray:
    """Stored pixels (possibly a flipped view) -> a new C-ordered array in the network's range.

    ``seg``: one-hot float32 ``(K, h, w)``, or int64 class ids ``(h, w)`` when
    not ``one_hot``; ``rgb`` 0..255 and ``sar`` 0..1 -> float32 in [-1, 1];
    anything else (``dem`` in metres, extras): float32 as stored.
    """
    if name == LABELS:
        if one_hot:
            classes = np.arange(num_classes, dtype=values.dtype)[:, None, None]
            return np.equal(values[None], classes).astype(np.float32, order="C")  # (K, h, w)
        return values.astype(np.int64, order="C")  # (h, w)
    if name in IMAGE_SCALE:
        out = np.empty(values.shape, dtype=np.float32)  # (C, h, w)
        np.multiply(values, np.float32(1 / IMAGE_SCALE[name]), out=out, casting="unsafe")
        out -= 1.0
        return out
    return np.array(values, dtype=np.float32, order="C")


def to_stored(name: str, values):
    """Network output in [-1, 1] (numpy array or tensor) -> the store's form.

    ``rgb``: uint8, rounded; ``sar``: float32 in [0, 1].
    """
    scaled = (values.clip(-1.0, 1.0) + 1.0) * IMAGE_SCALE[name]
    if name != "rgb":
        return scaled.astype(np.float32) if isinstance(scaled, np.ndarray) else scaled.float()
    rounded = scaled.round()
    return rounded.astype(np.uint8) if isinstance(rounded, np.ndarray) else rounded.to(torch.uint8)


def from_generator(config, image):
    """A generator's output in the networks' [-1, 1] convention.

    A run trained with ``image_range: unit`` (the paper's code: targets in
    [0, 1] under the tanh output) gives ``2 y - 1``; ``symmetric`` runs as is.
    ``config``: the run's :class:`~geosynth.ml.training.config.GanConfig`.
    """
    return image * 2 - 1 if getattr(config, "image_range", "symmetric") == "unit" else image


def quantize(name: str, image: torch.Tensor) -> torch.Tensor:
    """A network image as it reads back after being stored (8 bits for rgb), in [-1, 1]."""
    if name != "rgb":
        return image.clamp(-1, 1)
    return to_stored(name, image).float() / IMAGE_SCALE[name] - 1


# --------------------------------------------------------------------------- the DEM


def dem_stats(dem: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation (floored) of the valid heights: the ``tile`` normalisation."""
    if not np.isfinite(dem).any():
        return 0.0, 1.0
    return float(np.nanmean(dem)), max(float(np.nanstd(dem)), STD_FLOOR)


def _dem(dem: np.ndarray, norm: str, stats: tuple[float, float] | None) -> np.ndarray:
    """Heights of one window (a new float32 array): holes filled, then normalised."""
    nan = np.isnan(dem)
    if nan.any():
        dem[nan] = float(np.nanmedian(dem)) if not nan.all() else 0.0
    if norm == "crop":
        return (dem - dem.mean()) / max(float(dem.std()), STD_FLOOR)
    if norm == "tile":
        if stats is None:
            raise ValueError("dem_norm 'tile' needs the tile's dem_stats")
        mean, std = stats
        return (dem - mean) / std
    return dem


# --------------------------------------------------------------------------- one window


def prepare_window(
    raw: Mapping[str, np.ndarray],
    names: Sequence[str],
    num_classes: int,
    *,
    dem_norm: str = "none",
    dem_stats: tuple[float, float] | None = None,
    one_hot: bool = True,
    resize: tuple[int, int] | None = None,
    where: str = "input",
    compact: bool = False,
) -> dict[str, torch.Tensor]:
    """Stored pixels of one window (``raw[name]``: ``(C, h, w)``, ``(h, w)`` for ``seg`` and
    ``sar_valid``) -> the tensors of ``names`` as the networks take them (module docstring).

    ``where`` names the window in errors (e.g. ``"tile 356_5645 of x.zarr"``).
    ``compact``: ``seg`` as uint8 class ids ``(h, w)`` and, unless resized, ``rgb``
    as the stored uint8 ``(3, h, w)``: what a DataLoader worker sends to the
    training process, which turns them into the network's tensors on its device
    with :func:`expand_compact` (a 12th of the bytes; the same tensors exactly).
    """
    compact_labels = compact and one_hot and num_classes <= 256
    if compact_labels:
        one_hot = False
    h, w = raw[names[0]].shape[-2:]
    resize = None if resize == (h, w) else resize
    out: dict[str, np.ndarray] = {}
    for name in names:
        values = raw[name]
        if name == LABELS and values.max(initial=0) >= num_classes:
            raise DataError(f"{where}: class id {int(values.max())} >= {num_classes}")
        if name == "dem" and values.ndim == 2:
            values = values[None]
        if compact_labels and name == LABELS and resize is None:
            out[name] = np.array(values, dtype=np.uint8, order="C")  # (h, w) class ids
            continue
        if compact and name == "rgb" and resize is None:
            out[name] = np.array(values, dtype=np.uint8, order="C")  # (3, h, w) as stored
            continue
        converted = to_network(name, values, num_classes, one_hot=one_hot and resize is None)
        out[name] = _dem(converted, dem_norm, dem_stats) if name == "dem" else converted
    if "sar" in names and "sar_valid" in raw:
        valid = np.array(raw["sar_valid"], dtype=bool, order="C")[None]  # (1, h, w)
        out["sar"][np.broadcast_to(~valid, out["sar"].shape)] = -1.0
        out["sar_valid"] = valid
    tensors = {name: torch.from_numpy(values) for name, values in out.items()}
    if resize is not None:
        tensors = {k: _resize(v, resize) for k, v in tensors.items()}
        if LABELS in tensors and one_hot:
            tensors[LABELS] = _one_hot(tensors[LABELS], num_classes)
    if compact_labels and LABELS in tensors:
        tensors[LABELS] = tensors[LABELS].to(torch.uint8)  # (h, w) class ids
    return tensors


def expand_compact(batch: dict, num_classes: int, device: torch.device | str | None = None) -> dict:
    """A batch of compact samples (:func:`prepare_window` with ``compact=True``) -> the
    network's tensors, computed on ``device``: uint8 ``seg`` ids ``(B, h, w)`` -> one-hot
    float32 ``(B, K, h, w)``; uint8 ``rgb`` ``(B, 3, h, w)`` -> float32 in [-1, 1].

    Other entries are moved to ``device`` unchanged (non-blocking: pinned batches
    overlap the copy). The result equals the non-compact batch exactly.

    On the CPU the expansion runs on one thread (:func:`_one_cpu_thread`).
    """
    out = dict(batch)
    on_cpu = device is None or torch.device(device).type == "cpu"
    with _one_cpu_thread() if on_cpu else contextlib.nullcontext():
        for name, value in batch.items():
            if not isinstance(value, torch.Tensor):
                continue
            value = value.to(device, non_blocking=True) if device is not None else value
            if value.dtype == torch.uint8 and name == LABELS:
                value = _one_hot(value, num_classes)
            elif value.dtype == torch.uint8 and name in IMAGE_SCALE:
                scale = torch.tensor(
                    1 / IMAGE_SCALE[name], dtype=torch.float32, device=value.device
                )
                value = value.to(torch.float32).mul_(scale).sub_(1.0)  # as to_network, in float32
            out[name] = value
    return out


@contextlib.contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """Torch's intra-op thread count at 1 inside, restored after.

    The expansion is memory-bound: on 2 cores it takes as long on one thread as on
    two (0.3 ms a 256 px sample). Run on the OpenMP pool instead, it leaves the pool's
    threads spinning for work after each batch while the training process waits for
    the next one, and that spinning takes the cores the DataLoader's workers need:
    2 workers delivered about 410 samples/s with the pool, measured by
    ``benchmarks/train_step.py --loader-only`` (today's figure: docs/performance.md).
    """
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


def _resize(value: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest for labels and masks, bilinear (antialiased when shrinking) for images."""
    if value.dtype in (torch.int64, torch.bool):
        x = value.reshape(1, -1, *value.shape[-2:]).float()
        out = F.interpolate(x, size=size, mode="nearest").to(value.dtype)
        return out.reshape(*value.shape[:-2], *size)
    x = value[None]  # (1, C, h, w)
    shrink = size[0] < value.shape[-2] or size[1] < value.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(..., h, w) class ids -> (..., K, h, w) float32 one-hot.

    The comparison writes straight into the float32 result (no bool intermediate and
    cast): 5x faster on CPU than ``(ids == classes).float()``, the same values.
    """
    classes = torch.arange(num_classes, dtype=labels.dtype, device=labels.device)
    ids = labels.unsqueeze(-3)
    out = torch.empty(ids.shape[:-3] + (num_classes,) + ids.shape[-2:], device=labels.device)
    return torch.eq(ids, classes[:, None, None], out=out)


def generator_inputs(
    sample: dict, inputs: Sequence[str]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(labels, raster)`` for ``G(labels, raster)`` from a sample or a batch.

    ``labels``: the one-hot ``seg`` (None when not an input); ``raster``: the
    other inputs concatenated along the channels in the order of ``inputs``
    (None when there are none).
    """
    labels = sample[LABELS] if LABELS in inputs else None
    rasters = [sample[name] for name in inputs if name != LABELS]
    raster = None if not rasters else rasters[0] if len(rasters) == 1 else torch.cat(rasters, -3)
    return labels, raster
