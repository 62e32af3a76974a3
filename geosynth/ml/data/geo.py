"""Geo-aware sampling over a store: windows by map coordinates, mosaicked across tile borders,
and a torchgeo :class:`~torchgeo.datasets.GeoDataset` over them (``geosynth[torchgeo]``).

:class:`StoreRegions` indexes the complete, georeferenced tiles of a store by their bounds
(all in one CRS) and reads any window of map coordinates, pasting together the tiles it
touches (pixels no tile covers take the fill value: NaN for heights, 0 else).
:class:`WindowDataset` serves such windows to a plain :class:`~torch.utils.data.DataLoader`
(:func:`random_windows` draws them, seeded), without torchgeo;
:func:`torchgeo_dataset` wraps the same index for torchgeo's samplers
(``RandomGeoSampler``, ``GridGeoSampler``) and ``stack_samples``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from geosynth.errors import DataError, UsageError
from geosynth.names import LABELS
from geosynth.store import GeoStore, open_store

Bounds = tuple[float, float, float, float]  # (minx, miny, maxx, maxy) in the store's CRS


@dataclass(frozen=True)
class TileBounds:
    index: int  # position on the store's tile axis
    tile_id: str
    bounds: Bounds


class StoreRegions:
    """The georeferenced tiles of a store (one split, or all) as regions of one map."""

    def __init__(
        self, store, split: str | None = None, modalities: Sequence[str] = ("rgb", LABELS)
    ):
        self.store = store if isinstance(store, GeoStore) else open_store(store)
        self.modalities = tuple(modalities)
        tiles, crs, res = [], set(), set()
        for i in self.store.tiles(split, require=self.modalities):
            transform = self.store.transform(i)
            if transform is None or not self.store.tile_crs(i) or transform.b or transform.d:
                continue  # no georeferencing, or rotated: not on a map grid
            h, w = self.store.tile_shape
            left, top = transform.c, transform.f
            right, bottom = left + transform.a * w, top + transform.e * h
            tiles.append(TileBounds(i, self.store.tile_ids[i], (left, bottom, right, top)))
            crs.add(self.store.tile_crs(i))
            res.add((transform.a, -transform.e))
        if not tiles:
            raise DataError(
                f"store {self.store.path} has no complete georeferenced tile with "
                f"{', '.join(self.modalities)} in split {split!r}"
            )
        if len(crs) > 1 or len(res) > 1:
            raise DataError(
                f"store {self.store.path}: tiles in {len(crs)} CRSs / {len(res)} resolutions; "
                "a map of regions needs one of each (choose a split or store with one)"
            )
        self.tiles = tiles
        self.crs = crs.pop()
        self.res = res.pop()  # (x, y) pixel size

    @property
    def bounds(self) -> Bounds:
        b = np.array([t.bounds for t in self.tiles])
        return (
            float(b[:, 0].min()),
            float(b[:, 1].min()),
            float(b[:, 2].max()),
            float(b[:, 3].max()),
        )

    def read(self, name: str, bounds: Bounds) -> np.ndarray:
        """Pixels of ``name`` in ``bounds`` (snapped to the pixel grid), across tile borders."""
        minx, miny, maxx, maxy = bounds
        rx, ry = self.res
        width, height = round((maxx - minx) / rx), round((maxy - miny) / ry)
        if width < 1 or height < 1:
            raise UsageError(f"window {bounds} is smaller than one pixel ({rx} x {ry})")
        spec = self.store.modality_spec(name) if name != "sar_valid" else None
        bands = (spec.channels,) if spec is not None and spec.per_band else ()
        dtype = np.dtype(spec.dtype if spec is not None else "bool")
        out = np.full((*bands, height, width), np.nan if dtype.kind == "f" else 0, dtype=dtype)
        covered = False
        for tile in self.tiles:
            left, bottom, right, top = tile.bounds
            if left >= maxx or right <= minx or bottom >= maxy or top <= miny:
                continue
            # the window in tile pixels, clipped to the tile
            c0, r0 = round((minx - left) / rx), round((top - maxy) / ry)
            h, w = self.store.tile_shape
            rows = slice(max(r0, 0), min(r0 + height, h))
            cols = slice(max(c0, 0), min(c0 + width, w))
            if rows.start >= rows.stop or cols.start >= cols.stop:
                continue
            out[..., rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0] = (
                self.store.read(name, tile.index, (rows, cols))
            )
            covered = True
        if not covered:
            raise IndexError(f"window {bounds} lies outside every tile of {self.store.path}")
        return out


def random_windows(regions: StoreRegions, size: int, count: int, seed: int = 0) -> list[Bounds]:
    """``count`` windows of ``size`` x ``size`` pixels inside the tiles' bounds, on the pixel
    grid, drawn with ``seed`` (they may straddle tile borders)."""
    rng = np.random.default_rng(seed)
    rx, ry = regions.res
    out = []
    for _ in range(count):
        left, bottom, right, top = regions.tiles[int(rng.integers(len(regions.tiles)))].bounds
        # any window that overlaps the chosen tile, kept inside the whole map
        x = left + rx * int(rng.integers(-size + 1, round((right - left) / rx)))
        y = top - ry * int(rng.integers(-size + 1, round((top - bottom) / ry)))
        minx, miny, maxx, maxy = regions.bounds
        x = min(max(x, minx), maxx - rx * size)
        y = max(min(y, maxy), miny + ry * size)
        out.append((x, y - ry * size, x + rx * size, y))
    return out


class WindowDataset(Dataset):
    """Windows of map coordinates as samples: ``{name: tensor}`` per modality, ``bounds``, ``crs``.

    Images are float32 as stored, ``seg`` int64 class ids; no network scaling (use
    :func:`geosynth.ml.data.tensors.prepare_window` on the arrays for that).
    """

    def __init__(self, regions: StoreRegions, windows: Sequence[Bounds]):
        self.path = regions.store.path
        self.storage_options = dict(regions.store.location.storage_options)
        self.modalities, self.windows = regions.modalities, list(windows)
        self._regions: StoreRegions | None = regions

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_regions"] = None  # reopened in each worker
        return state

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item: int) -> dict:
        if self._regions is None:
            store = open_store(self.path, storage_options=self.storage_options)
            self._regions = StoreRegions(store, None, self.modalities)
        bounds = self.windows[item]
        sample = {name: _tensor(name, self._regions.read(name, bounds)) for name in self.modalities}
        return {
            **sample,
            "bounds": torch.tensor(bounds, dtype=torch.float64),
            "crs": self._regions.crs,
        }


def _tensor(name: str, values: np.ndarray) -> torch.Tensor:
    if name == LABELS:
        return torch.from_numpy(values.astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _query_bounds(query) -> Bounds:
    """A torchgeo query (a ``BoundingBox`` or, in newer torchgeo, slices) as bounds."""
    if hasattr(query, "minx"):
        return float(query.minx), float(query.miny), float(query.maxx), float(query.maxy)
    x, y = query[0], query[1]
    return float(x.start), float(y.start), float(x.stop), float(y.stop)


def torchgeo_dataset(store, split: str | None = None, image: str = "rgb", transforms=None):
    """A torchgeo ``GeoDataset`` over a store's tiles: ``image`` as float32 ``image``, ``seg`` as
    ``mask``, mosaicked across tile borders; its index holds each tile's bounds and the CRS.
    Needs torchgeo (``pip install geosynth[torchgeo]``)."""
    try:
        import pandas as pd
        import shapely
        from geopandas import GeoDataFrame
        from torchgeo.datasets import GeoDataset
    except ImportError as exc:  # torchgeo, or its torchvision, is missing or broken
        raise UsageError(
            f"the torchgeo adapter needs torchgeo and a torchvision that loads with this torch "
            f"({exc}); pip install 'geosynth[torchgeo]'"
        ) from exc

    regions = StoreRegions(store, split, (image, LABELS))

    class GeoStoreDataset(GeoDataset):
        def __init__(self):
            times = [(pd.Timestamp.min, pd.Timestamp.max)] * len(regions.tiles)
            self.index = GeoDataFrame(
                {"tile": [t.tile_id for t in regions.tiles]},
                index=pd.IntervalIndex.from_tuples(times, closed="both", name="datetime"),
                geometry=[shapely.box(*t.bounds) for t in regions.tiles],
                crs=regions.crs,
            )
            self._res = regions.res
            self.transforms = transforms

        def __getitem__(self, query) -> dict:
            bounds = _query_bounds(query)
            sample = {
                "image": _tensor(image, regions.read(image, bounds)),
                "mask": _tensor(LABELS, regions.read(LABELS, bounds)),
                "crs": self.crs,
                "bounds": query,
            }
            return self.transforms(sample) if self.transforms is not None else sample

    return GeoStoreDataset()


__all__ = ["StoreRegions", "WindowDataset", "random_windows", "torchgeo_dataset"]
