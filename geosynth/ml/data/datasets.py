"""Torch datasets over geosynth stores (GeoNRW, DFC2020, demo: any store of the contract).

A sample is a dict of tensors, one per requested modality, cut from one
tile with one window shared by all modalities and prepared by
:func:`geosynth.ml.data.tensors.prepare_window` (one-hot ``seg`` or class ids, DEM
in metres or standardised per tile or crop with holes filled, ``rgb`` and
``sar`` in [-1, 1] with ``sar_valid``), plus ``tile`` (the tile id) and
``window`` (``(row, col, height, width)`` of the crop in tile pixels), and
with ``conditions`` the tile's acquisition vector ``conditions`` ``(D,)``
(:func:`geosynth.ml.data.conditions.tile_conditions`).

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
workers work under ``fork`` and ``spawn``. Windows are read by the store's
window reader (:class:`geosynth.store.WindowReader`), straight from the chunk
files of a local store; see ``benchmarks/loader.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from geosynth.errors import DataError, UsageError
from geosynth.ml.data.tensors import dem_stats, prepare_window
from geosynth.ml.networks.configs import PAPER_CROP
from geosynth.names import DEM_NORMS, LABELS
from geosynth.store import GeoStore, WindowReader, open_store

log = logging.getLogger(__name__)


def _size2(value: int | Sequence[int] | None, option: str) -> tuple[int, int] | None:
    if value is None:
        return None
    h, w = (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))
    if h < 1 or w < 1:
        raise UsageError(f"{option} must be positive, got {value}")
    return h, w


class SynthesisDataset(Dataset):
    """Crops of generator inputs and the target image from the tiles of one split of a store.

    ``store``: a path, a URL (with ``storage_options``), an open zarr group or an open
    :class:`~geosynth.store.GeoStore`; ``split``:
    ``"train"``, ``"test"``, ... or None for all tiles; ``inputs``: the
    generator's input modalities; ``output``: the image to synthesize; ``crop``:
    window size (int or (h, w); None = the whole tile); ``resize``: size after
    cropping (nearest for labels, bilinear otherwise); ``flip``: random
    horizontal flips in training mode. Tiles that are incomplete or lack a
    requested modality are left out of the index. ``compact``: ``seg`` as uint8
    ids and ``rgb`` as uint8 (a 12th of the bytes between DataLoader processes);
    :func:`~geosynth.ml.data.tensors.expand_compact` turns a batch into the usual tensors
    on the training device.
    """

    def __init__(
        self,
        store: str | os.PathLike | GeoStore,
        split: str | None = "train",
        inputs: Sequence[str] = ("seg", "dem"),
        output: str = "rgb",
        crop: int | Sequence[int] | None = PAPER_CROP,
        resize: int | Sequence[int] | None = None,
        flip: bool = True,
        seed: int = 0,
        *,
        train: bool = True,
        dem_norm: str = "none",
        one_hot: bool = True,
        samples_per_epoch: int | None = None,
        storage_options: dict | None = None,
        compact: bool = False,
        conditions: Sequence[str] = (),
    ):
        opened = (
            store
            if isinstance(store, GeoStore)
            else open_store(store, storage_options=storage_options)
        )
        self.path = opened.path  # local path or URL: every worker process reopens it
        self.storage_options = dict(opened.location.storage_options)
        self.split = split
        self.inputs = tuple(inputs)
        self.output = output
        self.modalities = (*self.inputs, output)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.train = bool(train)
        self.one_hot = bool(one_hot)
        self.compact = bool(compact)
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
        self.conditions = tuple(conditions)
        self.condition_vectors = None  # tile position -> (D,) float32, read once here
        if self.conditions:
            from geosynth.ml.data.conditions import tile_conditions

            self.condition_vectors = [
                torch.tensor(
                    tile_conditions(
                        opened.acquisition(i), self.conditions, f"tile {t} of {self.path}"
                    ),
                    dtype=torch.float32,
                )
                for i, t in zip(self.indices, self.tile_ids, strict=True)
            ]
        # an epoch is one crop per tile unless set (small stores: several crops per tile)
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise UsageError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.length = int(samples_per_epoch or len(self.indices))
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._arrays: dict | None = None
        self._store: GeoStore | None = None
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
        state["_store"] = None
        state["_pid"] = None
        return state

    def _open(self) -> dict[str, WindowReader]:
        """Readers of this process's arrays, (re)opened after a fork or unpickling."""
        if self._arrays is None or self._pid != os.getpid():
            _exit_with_loader()
            store = open_store(self.path, storage_options=self.storage_options)
            names = list(self.modalities)
            if "sar" in self.modalities:
                names.append("sar_valid")
            self._arrays = {name: store.reader(name) for name in names}
            self._store = store
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
        if self._store is not None:  # remote arrays in one round of concurrent reads
            raw = self._store.read_windows(readers, index, rows, cols)
        else:
            raw = {name: reader.read(index, rows, cols) for name, reader in readers.items()}
        if flip:  # views; the preparation copies
            raw = {name: values[..., ::-1] for name, values in raw.items()}
        sample: dict = prepare_window(
            raw,
            self.modalities,
            self.num_classes,
            dem_norm=self.dem_norm,
            dem_stats=self._tile_dem_stats(index) if self.dem_norm == "tile" else None,
            one_hot=self.one_hot,
            resize=self.resize,
            where=f"tile {self.tile_ids[item]} of {self.path}",
            compact=self.compact,
        )
        sample["tile"] = self.tile_ids[item]
        if self.condition_vectors is not None:
            sample["conditions"] = self.condition_vectors[item].clone()
        sample["window"] = torch.tensor([row, col, h, w])
        return sample

    def _tile_dem_stats(self, index: int) -> tuple[float, float]:
        """:func:`~geosynth.ml.data.tensors.dem_stats` of the whole tile's DEM, read once per process."""
        if index not in self._tile_stats:
            tile = self._open()["dem"].read(index, slice(None), slice(None))
            self._tile_stats[index] = dem_stats(tile)
        return self._tile_stats[index]


def _exit_with_loader() -> None:
    """In a DataLoader worker: exit when the process that runs the loader dies (kill -9 too)."""
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        from geosynth.workers import exit_with_parent

        exit_with_parent()
