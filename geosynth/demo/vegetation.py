"""Trees of the demo world: forest stands, shrub patches, hedges, field, garden, street and bank trees.

Only the forest and the shrub patches are land-cover areas; hedges and
single trees exist in the surface (lidar, orthophoto, SAR) and nowhere in the
vectors, as in the real ATKIS. Forest trees spill a few metres over the
generalised forest boundary and leave clearings inside it.
"""

from __future__ import annotations

import numpy as np
import shapely

from geosynth.demo.noise import point_noise
from geosynth.demo.scene import TREE_KINDS, Trees, WorldParams
from geosynth.demo.shapes import lines

KIND = {name: i for i, name in enumerate(TREE_KINDS)}


def _make(x, y, height, radius, tone, kind: str) -> Trees:
    n = len(x)
    return Trees(
        np.asarray(x, float),
        np.asarray(y, float),
        np.asarray(height, np.float32),
        np.asarray(radius, np.float32),
        np.asarray(tone, np.float32),
        np.full(n, KIND[kind], np.uint8),
    )


def _jittered(geom, spacing: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points on a jittered square grid of ``spacing`` inside ``geom``."""
    if geom.is_empty:
        return np.empty(0), np.empty(0)
    left, bottom, right, top = geom.bounds
    gx, gy = np.meshgrid(np.arange(left, right, spacing), np.arange(bottom, top, spacing))
    x = gx.ravel() + rng.uniform(-0.35, 0.35, gx.size) * spacing
    y = gy.ravel() + rng.uniform(-0.35, 0.35, gy.size) * spacing
    shapely.prepare(geom)
    inside = shapely.contains_xy(geom, x, y)
    return x[inside], y[inside]


def forest_trees(forest: list, seed: int, rng: np.random.Generator) -> Trees:
    if not forest:
        return _make([], [], [], [], [], "forest")
    stand = shapely.union_all(forest)
    x, y = _jittered(stand.buffer(4.0), 5.5, rng)
    outside = ~shapely.contains_xy(stand, x, y)
    keep = ~outside | (rng.random(x.size) < 0.4)  # a ragged edge over the boundary
    keep &= point_noise(x, y, 60.0, seed + 1) > 0.12  # clearings
    x, y = x[keep], y[keep]
    height = 16.0 + 11.0 * point_noise(x, y, 150.0, seed + 2) + rng.normal(0, 1.5, x.size)
    height = np.clip(height, 10.0, 30.0)
    radius = np.clip(0.13 * height + rng.uniform(-0.4, 0.4, x.size), 1.8, 4.2)
    conifer = point_noise(x, y, 250.0, seed + 3) > 0.6
    tone = np.where(conifer, rng.uniform(0.75, 1.0, x.size), rng.uniform(0.0, 0.45, x.size))
    return _make(x, y, height, radius, tone, "forest")


def shrub_trees(shrubs: list, rng: np.random.Generator) -> Trees:
    if not shrubs:
        return _make([], [], [], [], [], "shrub")
    x, y = _jittered(shapely.union_all(shrubs), 3.2, rng)
    return _make(
        x,
        y,
        rng.uniform(3, 7, x.size),
        rng.uniform(1.3, 2.3, x.size),
        rng.uniform(0.2, 0.5, x.size),
        "shrub",
    )


def hedge_trees(hedges: list, rng: np.random.Generator) -> Trees:
    xs, ys = [], []
    for line in hedges:
        s = np.arange(0.0, line.length, 2.5)
        pts = shapely.line_interpolate_point(line, s)
        xs.append(shapely.get_x(pts) + rng.normal(0, 0.4, s.size))
        ys.append(shapely.get_y(pts) + rng.normal(0, 0.4, s.size))
    x = np.concatenate(xs) if xs else np.empty(0)
    y = np.concatenate(ys) if ys else np.empty(0)
    return _make(
        x,
        y,
        rng.uniform(3.5, 7.0, x.size),
        rng.uniform(1.2, 2.2, x.size),
        rng.uniform(0.1, 0.5, x.size),
        "hedge",
    )


def field_trees(params: WorldParams, fields: list, rng: np.random.Generator) -> Trees:
    """Solitary big trees in fields and meadows, about four per km^2."""
    left, bottom, right, top = params.domain_bounds
    n = max(2, round((right - left) * (top - bottom) / 1e6 * 4))
    x = rng.uniform(left, right, n * 4)
    y = rng.uniform(bottom, top, n * 4)
    open_land = shapely.union_all([f.polygon for f in fields]).buffer(-8)
    shapely.prepare(open_land)
    inside = shapely.contains_xy(open_land, x, y)
    x, y = x[inside][:n], y[inside][:n]
    return _make(
        x,
        y,
        rng.uniform(14, 22, x.size),
        rng.uniform(4.0, 6.0, x.size),
        rng.uniform(0.0, 0.4, x.size),
        "field",
    )


def garden_trees(blocks: list, buildings: list, rng: np.random.Generator) -> Trees:
    """Trees in residential gardens, clear of the houses."""
    homes = [b.polygon for b in buildings]
    keep_out = shapely.union_all(homes).buffer(5.0) if homes else None
    xs, ys = [], []
    for block, kind in blocks:
        if kind != "residential":
            continue
        left, bottom, right, top = block.bounds
        n = int(block.area / 350)
        x = rng.uniform(left, right, n)
        y = rng.uniform(bottom, top, n)
        inside = shapely.contains_xy(block.buffer(-2.0), x, y)
        xs.append(x[inside])
        ys.append(y[inside])
    x = np.concatenate(xs) if xs else np.empty(0)
    y = np.concatenate(ys) if ys else np.empty(0)
    if keep_out is not None and x.size:
        shapely.prepare(keep_out)
        free = ~shapely.contains_xy(keep_out, x, y)
        x, y = x[free], y[free]
    return _make(
        x,
        y,
        rng.uniform(5, 14, x.size),
        rng.uniform(1.8, 4.0, x.size),
        rng.uniform(0.0, 0.6, x.size),
        "garden",
    )


def line_trees(
    line_list: list,
    offset: float,
    step: float,
    keep: float,
    kind: str,
    heights: tuple[float, float],
    radii: tuple[float, float],
    rng: np.random.Generator,
) -> Trees:
    """Trees on both sides of lines (streets, river banks), ``offset`` m from the line."""
    xs, ys = [], []
    for line in line_list:
        for side in (offset, -offset):
            shifted = line.offset_curve(side)
            if shifted.is_empty or shifted.length < step:
                continue
            s = np.arange(step / 2, shifted.length, step)
            pts = shapely.line_interpolate_point(shifted, s)
            chosen = rng.random(s.size) < keep
            xs.append(shapely.get_x(pts)[chosen])
            ys.append(shapely.get_y(pts)[chosen])
    x = np.concatenate(xs) if xs else np.empty(0)
    y = np.concatenate(ys) if ys else np.empty(0)
    return _make(
        x,
        y,
        rng.uniform(*heights, x.size),
        rng.uniform(*radii, x.size),
        rng.uniform(0.0, 0.4, x.size),
        kind,
    )


def plant_trees(
    params: WorldParams,
    rng: np.random.Generator,
    *,
    forest,
    shrubs,
    hedges,
    fields,
    town,
    river,
    river_width: float,
    roads,
    ballast,
    water,
) -> Trees:
    """All trees of the world, none standing on a road, the track bed, water or a building."""
    town_roads = [r.line for r in roads if r.highway in ("primary", "secondary")]
    town_area = shapely.union_all([b for b, _ in town.blocks]) if town.blocks else None
    street_lines = []
    if town_area is not None:
        reach = town_area.buffer(12)
        for line in town_roads:
            street_lines += [g for g in lines(line.intersection(reach)) if g.length > 30]
    parts = [
        forest_trees(forest, params.seed * 13 + 5, rng),
        shrub_trees(shrubs, rng),
        hedge_trees(hedges, rng),
        field_trees(params, fields, rng),
        garden_trees(town.blocks, town.buildings, rng),
        line_trees(street_lines, 8.0, 15.0, 0.7, "street", (8, 15), (2.5, 4.0), rng),
        line_trees(
            [river], river_width / 2 + 2.5, 9.0, 0.55, "riparian", (12, 20), (3.0, 5.0), rng
        ),
    ]
    trees = Trees.concat(parts)
    blocked = shapely.union_all(
        [r.line.buffer(r.width / 2 + 0.5) for r in roads]
        + [ballast, water]
        + [b.polygon.buffer(1.0) for b in town.buildings]
    )
    shapely.prepare(blocked)
    free = ~shapely.contains_xy(blocked, trees.x, trees.y)
    return Trees(*(getattr(trees, f)[free] for f in ("x", "y", "height", "radius", "tone", "kind")))
