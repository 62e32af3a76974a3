import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geosynth.catalog import load_catalog
from geosynth.errors import UsageError
from geosynth.grid import (
    RasterGrid,
    TileId,
    tile_bounds,
    tile_of_point,
    tile_transform,
    tiles_covering,
)

GRID = load_catalog().grid
ids = st.builds(TileId, st.integers(-1000, 1000), st.integers(0, 9000))


@given(ids)
def test_tile_id_round_trips(tile):
    assert TileId.parse(str(tile)) == tile


@given(ids)
def test_transform_maps_origin_to_north_west_corner(tile):
    left, bottom, right, top = tile_bounds(tile, GRID)
    t = tile_transform(tile, GRID)
    assert t @ (0, 0) == (left, top)
    assert t @ (1000, 1000) == (right, bottom)
    assert right - left == top - bottom == 1000


@settings(max_examples=200)
@given(
    st.floats(300_000, 400_000),
    st.floats(5_600_000, 5_700_000),
    st.floats(1, 5_000),
    st.floats(1, 5_000),
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20),
)
def test_tiles_cover_bbox_exactly_once(x, y, w, h, samples):
    bbox = (x, y, x + w, y + h)
    tiles = tiles_covering(bbox, GRID)
    assert len(set(tiles)) == len(tiles)
    # every sample point of the box lies in exactly one tile
    for fx, fy in samples:
        px, py = x + fx * w * 0.999, y + fy * h * 0.999
        inside = [t for t in tiles if _contains(tile_bounds(t, GRID), px, py)]
        assert len(inside) == 1
    # and every tile intersects the box's interior
    for t in tiles:
        left, bottom, right, top = tile_bounds(t, GRID)
        assert left < bbox[2] and right > bbox[0] and bottom < bbox[3] and top > bbox[1]
    expected = (math.ceil(bbox[2] / 1000) - math.floor(bbox[0] / 1000)) * (
        math.ceil(bbox[3] / 1000) - math.floor(bbox[1] / 1000)
    )
    assert len(tiles) == expected


def _contains(bounds, px, py):
    left, bottom, right, top = bounds
    return left <= px < right and bottom <= py < top


def test_box_on_tile_edges_takes_no_neighbours():
    assert tiles_covering((356_000, 5_645_000, 358_000, 5_646_000), GRID) == [
        TileId(356, 5645),
        TileId(357, 5645),
    ]


def test_tile_of_point_and_window():
    assert tile_of_point(356_999.9, 5_645_000.0, GRID) == TileId(356, 5645)
    grid = RasterGrid.for_tile("356_5645", GRID)
    assert grid.bounds == (356_000.0, 5_645_000.0, 357_000.0, 5_646_000.0)


@pytest.mark.parametrize("bad", ["356-5645", "a_b", "", "356_5645_1"])
def test_bad_tile_ids(bad):
    with pytest.raises(UsageError, match="bad tile id"):
        TileId.parse(bad)
