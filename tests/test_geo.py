"""Geo-aware windows over a store: the index of tile bounds, windows across tile borders,
seeded random windows through a DataLoader, the torchgeo adapter's query handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine
from torch.utils.data import DataLoader

from geosynth.catalog import load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.ml.data.geo import StoreRegions, WindowDataset, _query_bounds, random_windows
from geosynth.store import TileData, TilePlan, create_store, modality

S = 40  # tile edge in pixels of 25 m: tiles of 1 km
TILES = {"356_5645": (0, 0), "357_5645": (1, 0), "356_5646": (0, 1)}  # an L of three tiles


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    plans = [
        TilePlan(
            t, "demo", "train", Affine(25, 0, 356_000 + 1000 * e, 0, -25, 5_646_000 + 1000 * n)
        )
        for t, (e, n) in TILES.items()
    ]
    s = create_store(
        tmp_path_factory.mktemp("geo") / "s.zarr", plans, tile_shape=(S, S),
        modalities=[modality("rgb"), modality("seg")], dataset="t", crs="EPSG:25832",
        classes=load_catalog().classes,
    )  # fmt: skip
    for k, t in enumerate(TILES):
        rgb = np.full((3, S, S), 40 * (k + 1), np.uint8)
        rgb[0] = np.arange(S, dtype=np.uint8)[None, :]  # column index in red
        s.write_tile(t, TileData(rgb=rgb, seg=np.full((S, S), k + 1, np.uint8)))
    return s


def test_index_holds_the_tile_bounds(store):
    regions = StoreRegions(store)
    assert regions.crs == "EPSG:25832" and regions.res == (25.0, 25.0)
    assert {t.tile_id: t.bounds for t in regions.tiles}["357_5645"] == (
        357_000.0, 5_645_000.0, 358_000.0, 5_646_000.0,
    )  # fmt: skip
    assert regions.bounds == (356_000.0, 5_645_000.0, 358_000.0, 5_647_000.0)


def test_a_window_across_a_tile_border_is_mosaicked(store):
    regions = StoreRegions(store)
    # 10 px west of the border between 356 and 357, 10 px east of it; 4 rows
    window = (357_000.0 - 250, 5_645_500.0, 357_000.0 + 250, 5_645_600.0)
    seg = regions.read("seg", window)
    assert seg.shape == (4, 20)
    np.testing.assert_array_equal(seg, np.repeat([[1] * 10 + [2] * 10], 4, axis=0))
    red = regions.read("rgb", window)[0, 0]
    np.testing.assert_array_equal(red, list(range(30, 40)) + list(range(10)))
    # around the corner of the L: the quarter no tile covers (357_5646) reads the fill value
    corner = regions.read("seg", (357_000.0 - 250, 5_646_000.0 - 250, 357_000.0 + 250, 5_646_250.0))
    assert (corner[:10, :10] == 3).all() and (corner[:10, 10:] == 0).all()  # NW 356_5646; NE none
    assert (corner[-10:, :10] == 1).all() and (corner[-10:, 10:] == 2).all()
    with pytest.raises(IndexError, match="outside every tile"):
        regions.read("seg", (400_000.0, 5_645_000.0, 400_500.0, 5_645_500.0))
    with pytest.raises(UsageError, match="smaller than one pixel"):
        regions.read("seg", (356_000.0, 5_645_000.0, 356_010.0, 5_645_010.0))


def test_random_windows_through_a_dataloader(store):
    regions = StoreRegions(store)
    windows = random_windows(regions, size=16, count=12, seed=3)
    assert windows == random_windows(regions, size=16, count=12, seed=3)
    assert windows != random_windows(regions, size=16, count=12, seed=4)
    minx, miny, maxx, maxy = regions.bounds
    for x0, y0, x1, y1 in windows:
        assert minx <= x0 < x1 <= maxx and miny <= y0 < y1 <= maxy
        assert (x1 - x0, y1 - y0) == (400.0, 400.0) and x0 % 25 == 0 and y0 % 25 == 0
    batches = list(DataLoader(WindowDataset(regions, windows), batch_size=4, num_workers=1))
    assert len(batches) == 3
    first = batches[0]
    assert first["rgb"].shape == (4, 3, 16, 16) and first["rgb"].dtype == torch.float32
    assert first["seg"].shape == (4, 16, 16) and first["seg"].dtype == torch.int64
    np.testing.assert_array_equal(first["seg"][0].numpy(), regions.read("seg", windows[0]))


def test_mixed_crs_stores_are_refused(tmp_path):
    plans = [
        TilePlan("a", "x", "train", Affine(10, 0, 300_000, 0, -10, 5_600_000), "EPSG:32631"),
        TilePlan("b", "x", "train", Affine(10, 0, 300_000, 0, -10, 5_600_000), "EPSG:32633"),
    ]
    s = create_store(tmp_path / "m.zarr", plans, tile_shape=(8, 8), modalities=[modality("seg")],
                     dataset="t", crs=None, classes=load_catalog().classes)  # fmt: skip
    for t in "ab":
        s.write_tile(t, TileData(seg=np.ones((8, 8), np.uint8)))
    with pytest.raises(DataError, match="2 CRSs"):
        StoreRegions(s, modalities=("seg",))


def test_torchgeo_queries_of_both_forms_give_the_bounds():
    from collections import namedtuple

    Box = namedtuple("BoundingBox", "minx maxx miny maxy mint maxt")
    assert _query_bounds(Box(1, 3, 2, 4, 0, 1)) == (1.0, 2.0, 3.0, 4.0)
    assert _query_bounds((slice(1, 3), slice(2, 4), slice(0, 1))) == (1.0, 2.0, 3.0, 4.0)
