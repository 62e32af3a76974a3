"""Torch datasets over geosynth stores (GeoNRW, DFC2020, demo: any store of the contract).

A sample is a dict of float32 tensors, one per requested modality, cut from
one tile with one window shared by all modalities:

- ``seg``: one-hot ``(K, h, w)`` with ``K`` the store's class count including
  the unlabelled id 0 (11 for GeoNRW); or class ids ``(h, w)`` int64 with
  ``one_hot=False`` (segmentation targets);
- ``dem``: heights in metres ``(1, h, w)`` as stored (the network learns the
  normalisation, as in the paper); ``dem_norm="tile"`` or ``"crop"``
  standardises by the tile's / crop's mean and standard deviation. No-data
  (NaN) pixels take the crop's median height;
- ``rgb``: ``(3, h, w)`` scaled from 0..255 to [-1, 1] (the generators' tanh);
- ``sar``: ``(C, h, w)`` from [0, 1] to [-1, 1], plus ``sar_valid``
  ``(1, h, w)`` bool; pixels without SAR read -1;
- other (extra) modalities: float32 as stored;
- ``tile``: the tile id and ``window``: ``(row, col, height, width)`` of the
  crop in tile pixels.

Training mode draws a random window and a random horizontal flip from a
generator seeded with ``(seed, epoch, tile)``: every sample is reproducible
for a seed and epoch whatever worker, worker count or start method loads it.
Only horizontal flips: a vertical flip would turn the shadows of the
northern hemisphere's sun southwards. Call :meth:`SynthesisDataset.set_epoch`
before each epoch; the epoch lives in shared memory, so persistent workers
see it. Evaluation mode (``train=False``) is deterministic: the centre crop
of size ``crop``, or the whole tile when ``crop`` is None; no flips.

The store is opened lazily in every process (zarr's event loop and thread
pool do not survive ``fork``); the dataset pickles without it, so DataLoader
workers work under ``fork`` and ``spawn``. Windows are read straight from the
chunk files (:mod:`geosynth.ml.chunks`), about 3x faster than through zarr's
asyncio machinery; see ``benchmarks/loader.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from geosynth.errors import DataError, UsageError
from geosynth.ml.chunks import WindowReader
from geosynth.store import GeoStore, open_store

log = logging.getLogger(__name__)

DEM_NORMS = ("none", "tile", "crop")
LABELS = "seg"
STD_FLOOR = 1e-3  # metres: a flat tile is centred, not blown up


def _size2(value: int | Sequence[int] | None, option: str) -> tuple[int, int] | None:
    if value is None:
        return None
    h, w = (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))
    if h < 1 or w < 1:
        raise UsageError(f"{option} must be positive, got {value}")
    return h, w


class SynthesisDataset(Dataset):
    """Crops of generator inputs and the target image from the tiles of one split of a store.

    ``store``: a path or an open :class:`~geosynth.store.GeoStore`; ``split``:
    ``"train"``, ``"test"``, ... or None for all tiles; ``inputs``: the
    generator's input modalities; ``output``: the image to synthesize; ``crop``:
    window size (int or (h, w); None = the whole tile); ``resize``: size after
    cropping (nearest for labels, bilinear otherwise); ``flip``: random
    horizontal flips in training mode. Tiles that are incomplete or lack a
    requested modality are left out of the index.
    """

    def __init__(
        self,
        store: str | os.PathLike | GeoStore,
        split: str | None = "train",
        inputs: Sequence[str] = ("seg", "dem"),
        output: str = "rgb",
        crop: int | Sequence[int] | None = 256,
        resize: int | Sequence[int] | None = None,
        flip: bool = True,
        seed: int = 0,
        *,
        train: bool = True,
        dem_norm: str = "none",
        one_hot: bool = True,
        samples_per_epoch: int | None = None,
    ):
        opened = store if isinstance(store, GeoStore) else open_store(store)
        self.path = Path(opened.path)
        self.split = split
        self.inputs = tuple(inputs)
        self.output = output
        self.modalities = (*self.inputs, output)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.train = bool(train)
        self.one_hot = bool(one_hot)
        if dem_norm not in DEM_NORMS:
            raise UsageError(f"dem_norm must be one of {', '.join(DEM_NORMS)}, not {dem_norm!r}")
        self.dem_norm = dem_norm
        if len(set(self.modalities)) != len(self.modalities):
            raise UsageError(f"inputs {list(self.inputs)} and output {output!r} must be distinct")
        for name in self.modalities:
            if name not in opened.modalities:
                raise UsageError(
                    f"store {self.path} has no modality {name!r} (has: {', '.join(opened.modalities)})"
                )
        self.tile_shape = opened.tile_shape
        self.crop = _size2(crop, "crop")
        self.resize = _size2(resize, "resize")
        if self.crop and (self.crop[0] > self.tile_shape[0] or self.crop[1] > self.tile_shape[1]):
            raise UsageError(
                f"crop {self.crop} is larger than the tiles of {self.path} "
                f"({self.tile_shape[0]} x {self.tile_shape[1]})"
            )
        self.num_classes = opened.num_classes
        self.channels = {
            name: (self.num_classes if name == LABELS else opened.modality_spec(name).channels)
            for name in self.modalities
        }
        self.indices = opened.tiles(split, require=self.modalities)
        if not self.indices:
            in_split = len(opened.tiles(split))
            raise DataError(
                f"store {self.path} has no complete tile in split {split!r} with "
                f"{', '.join(self.modalities)} ({in_split} complete tiles in the split)"
            )
        skipped = len(opened.tiles(split)) - len(self.indices)
        if skipped:
            log.info(
                "%s: %d tiles of split %r lack one of %s and are left out",
                self.path,
                skipped,
                split,
                ", ".join(self.modalities),
            )
        self.tile_ids = [opened.tile_ids[i] for i in self.indices]
        # an epoch is one crop per tile unless set (small stores: several crops per tile)
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise UsageError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.length = int(samples_per_epoch or len(self.indices))
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._arrays: dict | None = None
        self._pid: int | None = None
        self._tile_stats: dict[int, tuple[float, float]] = {}

    @property
    def generator_channels(self) -> tuple[int, int, int]:
        """``(label, raster, output)`` channel counts, as :class:`GeneratorConfig` takes them."""
        labels = self.channels[LABELS] if LABELS in self.inputs else 0
        raster = sum(self.channels[name] for name in self.inputs if name != LABELS)
        return labels, raster, self.channels[self.output]

    # ------------------------------------------------------------------ process safety
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = None  # zarr handles stay in their process
        state["_pid"] = None
        return state

    def _open(self) -> dict[str, WindowReader]:
        """Readers of this process's zarr arrays, (re)opened after a fork or unpickling."""
        if self._arrays is None or self._pid != os.getpid():
            group = open_store(self.path).group
            names = list(self.modalities)
            if "sar" in self.modalities:
                names.append("sar_valid")
            self._arrays = {name: WindowReader(group[name]) for name in names}
            self._pid = os.getpid()
        return self._arrays

    # ------------------------------------------------------------------ epochs
    def set_epoch(self, epoch: int) -> None:
        """Select the random crops and flips of ``epoch`` (seen by persistent workers too)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return (
            f"<SynthesisDataset {self.path} split={self.split!r} {len(self)} tiles "
            f"{'+'.join(self.inputs)} -> {self.output} crop={self.crop} {mode}>"
        )

    # ------------------------------------------------------------------ sampling
    def window(self, item: int) -> tuple[int, int, int, int, bool]:
        """``(row, col, height, width, flip)`` of sample ``item`` in the current epoch."""
        th, tw = self.tile_shape
        ch, cw = self.crop or (th, tw)
        if not self.train:
            return (th - ch) // 2, (tw - cw) // 2, ch, cw, False
        rng = np.random.default_rng([self.seed, self.epoch, int(item)])
        row = int(rng.integers(0, th - ch + 1))
        col = int(rng.integers(0, tw - cw + 1))
        flip = bool(self.flip and rng.random() < 0.5)
        return row, col, ch, cw, flip

    def __getitem__(self, item: int) -> dict:
        if not 0 <= item < len(self):
            raise IndexError(f"sample {item} out of range for {len(self)} samples")
        readers = self._open()
        row, col, h, w, flip = self.window(item)
        item = item % len(self.indices)  # sample -> tile position (several crops per tile)
        index = self.indices[item]
        rows, cols = slice(row, row + h), slice(col, col + w)
        raw = {name: reader.read(index, rows, cols) for name, reader in readers.items()}
        if flip:  # views; the conversions below copy
            raw = {name: values[..., ::-1] for name, values in raw.items()}
        resize = self.resize is not None and self.resize != (h, w)
        arrays = {name: self._convert(name, raw[name], item, resize) for name in self.modalities}
        if "sar" in self.modalities:
            valid = np.array(raw["sar_valid"], dtype=bool, order="C")[None]  # (1, h, w)
            arrays["sar"][np.broadcast_to(~valid, arrays["sar"].shape)] = -1.0
            arrays["sar_valid"] = valid
        sample = {name: torch.from_numpy(values) for name, values in arrays.items()}
        if resize:
            sample = {k: _resize(v, self.resize) for k, v in sample.items()}
            if LABELS in sample and self.one_hot:
                sample[LABELS] = _one_hot(sample[LABELS], self.num_classes)
        sample["tile"] = self.tile_ids[item]
        sample["window"] = torch.tensor([row, col, h, w])
        return sample

    def _convert(self, name: str, values: np.ndarray, item: int, resize: bool) -> np.ndarray:
        """Check labels, convert with :func:`to_network` (ids when resized), normalise the DEM."""
        if name == LABELS and values.max(initial=0) >= self.num_classes:
            raise DataError(
                f"tile {self.tile_ids[item]} of {self.path}: "
                f"class id {int(values.max())} >= {self.num_classes}"
            )
        out = to_network(name, values, self.num_classes, one_hot=self.one_hot and not resize)
        return self._dem(out, self.indices[item]) if name == "dem" else out

    def _dem(self, dem: np.ndarray, index: int) -> np.ndarray:
        nan = np.isnan(dem)
        if nan.any():
            dem[nan] = float(np.nanmedian(dem)) if not nan.all() else 0.0
        if self.dem_norm == "crop":
            return (dem - dem.mean()) / max(float(dem.std()), STD_FLOOR)
        if self.dem_norm == "tile":
            mean, std = self._tile_dem_stats(index)
            return (dem - mean) / std
        return dem

    def _tile_dem_stats(self, index: int) -> tuple[float, float]:
        """Mean and standard deviation of the whole tile's DEM, read once per process."""
        if index not in self._tile_stats:
            tile = self._open()["dem"].read(index, slice(None), slice(None))
            mean = float(np.nanmean(tile)) if np.isfinite(tile).any() else 0.0
            std = float(np.nanstd(tile)) if np.isfinite(tile).any() else 1.0
            self._tile_stats[index] = (mean, max(std, STD_FLOOR))
        return self._tile_stats[index]


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
    if name in ("rgb", "sar"):
        scale = 1 / 127.5 if name == "rgb" else 2.0
        out = np.empty(values.shape, dtype=np.float32)  # (C, h, w)
        np.multiply(values, np.float32(scale), out=out, casting="unsafe")
        out -= 1.0
        return out
    return np.array(values, dtype=np.float32, order="C")


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
    """(h, w) class ids -> (K, h, w) float32 one-hot."""
    classes = torch.arange(num_classes, dtype=labels.dtype)[:, None, None]
    return (labels[None] == classes).to(torch.float32)
