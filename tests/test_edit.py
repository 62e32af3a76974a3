"""Properties of the input edits (flood, class swap)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosynth.edit.rules import flood, flood_mask, parse_levels, swap_classes
from geosynth.errors import UsageError

WATER, FOREST, FARM = 2, 1, 3


def terrain(seed, size=48):
    """A smooth valley with a river (class water) at its bottom, forest on one side."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    dem = (
        40 + 0.6 * np.abs(x - size / 2) + ndimage.gaussian_filter(rng.normal(0, 3, (size, size)), 2)
    )
    seg = np.full((size, size), FARM, np.uint8)
    seg[np.abs(x - size / 2) < 2] = WATER
    seg[:, : size // 4] = FOREST
    return seg, dem.astype(np.float32)


levels = st.floats(41, 52, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1000), levels, levels, st.integers(0, 5), st.booleans())
def test_flooded_area_never_shrinks(seed, h1, h2, erosion, connected):
    seg, dem = terrain(seed)
    lo, hi = sorted((h1, h2))
    a = flood(seg, dem, lo, water_id=WATER, erosion=erosion, connected=connected, check_range=False)
    b = flood(seg, dem, hi, water_id=WATER, erosion=erosion, connected=connected, check_range=False)
    assert not (a.mask & ~b.mask).any()
    assert ((a.seg == WATER) <= (b.seg == WATER)).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1000), levels, st.integers(0, 5))
def test_outside_unchanged_and_dem_exact_inside(seed, hmin, erosion):
    seg, dem = terrain(seed)
    r = flood(seg, dem, hmin, water_id=WATER, erosion=erosion, check_range=False)
    np.testing.assert_array_equal(r.seg[~r.mask], seg[~r.mask])
    np.testing.assert_array_equal(r.dem[~r.mask], dem[~r.mask])
    assert (r.dem[r.mask] == np.float32(hmin)).all()
    assert (r.seg[r.mask] == WATER).all()
    # the mask is the eroded threshold set: every masked pixel was below hmin
    assert (dem[r.mask] < hmin).all()


def test_erosion_drops_small_perturbations():
    dem = np.full((20, 20), 60.0, np.float32)
    dem[5, 5] = 30.0  # a single low pixel: noise
    dem[10:18, 2:18] = 30.0  # a real basin
    mask = flood_mask(dem, 45, erosion=3)
    assert not mask[5, 5] and mask[12:16, 4:16].all()
    assert flood_mask(dem, 45, erosion=0)[5, 5]


def test_connected_keeps_parts_touching_water():
    dem = np.full((20, 20), 60.0, np.float32)
    dem[:, 0:6] = 30.0  # basin with the river
    dem[:, 14:20] = 30.0  # a separate basin
    seg = np.zeros((20, 20), np.uint8)
    seg[:, 0:2] = WATER
    r = flood(seg, dem, 45, water_id=WATER, erosion=0, connected=True)
    assert r.mask[:, 0:6].all() and not r.mask[:, 14:].any()
    r = flood(seg, dem, 45, water_id=WATER, erosion=0, connected=False)
    assert r.mask[:, 14:].all()


def test_hmin_outside_range_names_min_and_max():
    seg, dem = terrain(1)
    with pytest.raises(UsageError, match=r"minimum 3\d\.\d\d, maximum \d\d\.\d\d"):
        flood(seg, dem, 500, water_id=WATER)


def test_parse_levels():
    assert parse_levels("45") == [45.0]
    assert parse_levels("40:42:0.5") == [40.0, 40.5, 41.0, 41.5, 42.0]
    for bad in ("a", "50:40:1", "40:50:0", "1:2"):
        with pytest.raises(UsageError, match="--hmin"):
            parse_levels(bad)


def test_swap_forest_to_farmland_lowers_trees():
    seg, dem = terrain(2)
    trees = dem.copy()
    trees[seg == FOREST] += 20  # canopy on the forest
    area = np.zeros_like(seg, bool)
    area[:24] = True
    r = swap_classes(seg, trees, FOREST, FARM, area=area)
    assert ((seg == FOREST) & area).sum() == r.mask.sum()
    assert (r.seg[r.mask] == FARM).all()
    np.testing.assert_array_equal(r.seg[~r.mask], seg[~r.mask])
    np.testing.assert_array_equal(r.dem[~r.mask], trees[~r.mask])
    # the canopy is gone: the new heights are near the terrain, far below the crowns
    assert np.abs(r.dem[r.mask] - dem[r.mask]).mean() < 5
    assert (r.dem <= trees).all()
