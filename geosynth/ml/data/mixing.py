"""Training on two stores: real tiles and synthesized ones (``train-unet --extra-store --mix``).

Every epoch of :class:`MixedDataset` draws exactly ``round(share * length)``
samples from the extra store and the rest from the main one; which sample
positions go to which store is a permutation seeded with ``(seed, epoch)``,
so an epoch is reproducible whatever the worker count, and shuffled positions
spread the extra samples over the batches. The k-th sample drawn from a store
in epoch e is that store's dataset item ``(k + e * n) % len`` (``n`` samples
drawn from it per epoch): successive epochs walk through all of its tiles
even when few samples are drawn from it, each with its own seeded crop and flip.

Both stores must describe the same classes (ids and keys) and tiles of the
same size; :func:`check_compatible_stores` says what differs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from geosynth.errors import DataError, UsageError


def check_compatible_stores(main, extra, modalities) -> None:
    """Refuse an extra store with other classes, another tile size or without ``modalities``."""
    mine = [(c.id, c.key) for c in main.classes.classes]
    theirs = [(c.id, c.key) for c in extra.classes.classes]
    if mine != theirs:
        raise UsageError(
            f"--extra-store {extra.path} has other classes than {main.path} "
            f"({', '.join(k for _, k in theirs)} vs {', '.join(k for _, k in mine)})"
        )
    if tuple(extra.tile_shape) != tuple(main.tile_shape):
        raise UsageError(
            f"--extra-store {extra.path} has tiles of {extra.tile_shape[0]} x {extra.tile_shape[1]}"
            f" px, {main.path} of {main.tile_shape[0]} x {main.tile_shape[1]} px"
        )
    missing = [m for m in modalities if m not in extra.modalities]
    if missing:
        raise UsageError(
            f"--extra-store {extra.path} has no {', '.join(missing)} "
            f"(has: {', '.join(extra.modalities)})"
        )


class MixedDataset(Dataset):
    """``length`` samples per epoch, a ``share`` of them from ``extra``, the rest from ``main``.

    ``main`` and ``extra`` are datasets with ``set_epoch`` (e.g.
    :class:`~geosynth.ml.data.datasets.SynthesisDataset`); one smaller than its draws per
    epoch repeats items within an epoch.
    """

    def __init__(self, main: Dataset, extra: Dataset, share: float, seed: int, length: int):
        if not 0 <= share <= 1:
            raise UsageError(f"--mix must lie in [0, 1], got {share}")
        self.main, self.extra = main, extra
        self.channels = getattr(main, "channels", None)  # as SynthesisDataset: per modality
        self.share, self.seed, self.length = float(share), int(seed), int(length)
        self.n_extra = int(round(self.share * self.length))
        for name, dataset, need in (
            ("main", main, self.length - self.n_extra),
            ("extra", extra, self.n_extra),
        ):
            if need and not len(dataset):
                raise DataError(f"the {name} dataset is empty; {need} samples per epoch needed")
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)
        for dataset in (self.main, self.extra):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(from_extra, item)`` of every position of ``epoch``: which store, which of its items."""
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, int(epoch), 0x5EED])
            from_extra = np.zeros(self.length, bool)
            from_extra[rng.permutation(self.length)[: self.n_extra]] = True
            rank = np.empty(self.length, np.int64)
            n_main = self.length - self.n_extra
            rank[from_extra] = (np.arange(self.n_extra) + epoch * self.n_extra) % len(self.extra)
            rank[~from_extra] = (np.arange(n_main) + epoch * n_main) % len(self.main)
            self._plan = (int(epoch), from_extra, rank)
        return self._plan[1], self._plan[2]

    def __getitem__(self, item: int) -> dict:
        if not 0 <= item < self.length:
            raise IndexError(f"sample {item} out of range for {self.length} samples")
        from_extra, rank = self.plan(int(self._epoch[0]))
        extra = bool(from_extra[item])
        sample = (self.extra if extra else self.main)[int(rank[item])]
        sample["extra"] = torch.tensor(extra)
        return sample
