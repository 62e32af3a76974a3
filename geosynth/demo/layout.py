"""Lay out the demo world: river, floodplain, lake, town, roads, railway, forest and fields.

Everything is placed relative to the region (``W x H`` metres) so that any
tile count gives a plausible world; the tessellation of the domain into
areas follows a priority: water, corridors, town, forest, shrub patches,
then fields and meadows fill the rest.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from affine import Affine
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box

from geosynth.demo.noise import grid_fbm, rng_for
from geosynth.demo.scene import (
    AREA_KINDS,
    CAMPAIGNS,
    CROP_WEIGHTS,
    CROPS,
    Area,
    AtkisFeature,
    Road,
    World,
    WorldParams,
)
from geosynth.demo.shapes import lines, polygons, rotated_box
from geosynth.demo.terrain import build_terrain
from geosynth.demo.town import build_town
from geosynth.demo.vegetation import plant_trees

# random streams of the layout (each part draws from its own generator)
S_RIVER, S_TOWN, S_ROADS, S_FOREST, S_FIELDS, S_BUILDINGS, S_TREES, S_CROPS = range(1, 9)
ATKIS_TOLERANCE_M = 2.5  # Douglas-Peucker generalisation of the land-cover vectors
FOREST_FRACTION = 0.24


# --------------------------------------------------------------------------- river


def river_centreline(params: WorldParams, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A meandering west-east river in the southern part of the region; returns (N, 2), max y."""
    left, bottom, right, top = params.region_bounds
    dl, _, dr, _ = params.domain_bounds
    height = top - bottom
    x = np.arange(dl - 60.0, dr + 61.0, 10.0)
    v = rng.uniform(0.22, 0.3)
    a1 = 0.08 * height * rng.uniform(0.8, 1.2)
    a2 = 0.025 * height
    lam1, lam2 = rng.uniform(900, 1400), rng.uniform(300, 500)
    ph1, ph2 = rng.uniform(0, 2 * math.pi, 2)
    y = (
        bottom
        + v * height
        + a1 * np.sin(2 * math.pi * (x - dl) / lam1 + ph1)
        + a2 * np.sin(2 * math.pi * (x - dl) / lam2 + ph2)
    )
    return np.column_stack([x, y]), bottom + v * height + a1 + a2


def oxbow_lake(
    coords: np.ndarray,
    river_width: float,
    floodplain: float,
    params: WorldParams,
    rng: np.random.Generator,
) -> Polygon:
    """An elongated lake in the floodplain, south of the river, inside the region."""
    left, _, right, _ = params.region_bounds
    river = LineString(coords)
    for _ in range(50):
        x = rng.uniform(left + 0.3 * (right - left), left + 0.7 * (right - left))
        s = river.project(Point(x, float(np.interp(x, coords[:, 0], coords[:, 1]))))
        p, q = river.interpolate(s), river.interpolate(s + 5.0)
        tx, ty = q.x - p.x, q.y - p.y
        norm = math.hypot(tx, ty)
        tx, ty = tx / norm, ty / norm
        offset = 0.55 * floodplain
        cx, cy = p.x + ty * offset, p.y - tx * offset  # right of the flow = south
        a, b = rng.uniform(55, 85), rng.uniform(16, 24)
        ellipse = affinity.scale(Point(cx, cy).buffer(1.0, 32), a, b)
        ellipse = affinity.rotate(ellipse, math.atan2(ty, tx), origin=(cx, cy), use_radians=True)
        if ellipse.distance(river) > river_width / 2 + 8:
            return ellipse
    raise RuntimeError("no room for the oxbow lake")  # pragma: no cover - geometry guarantees room


# --------------------------------------------------------------------------- town and roads


def town_outline(
    params: WorldParams, river_ymax: float, floodplain: float, rng: np.random.Generator
) -> tuple[Polygon, tuple[float, float], float, tuple]:
    """The town polygon north of the floodplain; returns (polygon, centre, angle, (tw, th))."""
    left, bottom, right, top = params.region_bounds
    width, height = right - left, top - bottom
    cx = left + rng.uniform(0.5, 0.62) * width
    tw = min(0.42 * width, 1100.0)
    low = river_ymax + floodplain + 30.0
    th = max(min(0.5 * height, 750.0, top - 40.0 - low), 150.0)
    cy = low + th / 2
    angle = math.radians(rng.uniform(-12, 12))
    town = rotated_box(cx, cy, tw, th, angle).buffer(-30, join_style="round").buffer(30)
    return town, (cx, cy), angle, (tw, th)


def main_roads(
    params: WorldParams, centre: tuple[float, float], tw: float, rng: np.random.Generator
) -> list[Road]:
    """Motorway (east, N-S), primary (N-S through the centre), secondary (W-E through the centre).

    The motorway runs through the easternmost tile column, east of the town, so
    that the test tile and the training tile of that column both hold a stretch
    of it (in the west, all of it lay in training tiles and the test split had
    almost no highway pixels: its IoU was decided by a handful of false alarms).
    """
    left, _, right, _ = params.region_bounds
    dl, db, dr, dt = params.domain_bounds
    cx, cy = centre
    xm = left + rng.uniform(0.84, 0.92) * (right - left)
    xm = max(xm, cx + tw / 2 + 60.0)
    roads = [
        Road(
            LineString([(xm - 30, db - 20), (xm + 10, (db + dt) / 2), (xm + 40, dt + 20)]),
            "motorway",
            24.0,
            "A 99",
        ),
        Road(
            LineString(
                [
                    (cx + rng.uniform(-60, 60), db - 20),
                    (cx, cy),
                    (cx + rng.uniform(-60, 60), dt + 20),
                ]
            ),
            "primary",
            9.5,
            "B 9",
        ),
        Road(
            LineString(
                [
                    (dl - 20, cy + rng.uniform(-70, 70)),
                    (cx, cy),
                    (dr + 20, cy + rng.uniform(-70, 70)),
                ]
            ),
            "secondary",
            7.5,
            "L 99",
        ),
    ]
    return roads


def railway(
    params: WorldParams,
    town_low: float,
    th: float,
    centre: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[list[LineString], Polygon, Polygon]:
    """A double-track railway W-E through the southern town; (tracks, ballast, corridor)."""
    dl, _, dr, _ = params.domain_bounds
    cx, _ = centre
    y0 = town_low + 0.35 * th
    slope = math.tan(math.radians(rng.uniform(-1.2, 1.2)))
    axis = LineString(
        [(dl - 20, y0 + slope * (dl - 20 - cx)), (dr + 20, y0 + slope * (dr + 20 - cx))]
    )
    tracks = [axis.offset_curve(2.25), axis.offset_curve(-2.25)]
    return tracks, axis.buffer(5.5, cap_style="flat"), axis.buffer(13.0, cap_style="flat")


# --------------------------------------------------------------------------- forest, shrubs, fields


def forest_polygons(params: WorldParams, terrain, exclude, rng_seed: int) -> list[Polygon]:
    """Forest on the higher, wilder ground: a noise field plus height, thresholded and smoothed."""
    from rasterio.features import shapes

    dl, db, dr, dt = params.domain_bounds
    cell = 10.0
    xs = np.arange(dl, dr, cell) + cell / 2
    ys = np.arange(dt, db, -cell) - cell / 2
    wild = grid_fbm(xs, ys, ((500.0, 1.0), (180.0, 0.45)), rng_seed)  # (rows, cols)
    hx, hy = np.meshgrid(xs, ys)
    h = terrain.sample(hx, hy)
    h = (h - h.min()) / max(float(np.ptp(h)), 1e-6)
    score = 0.6 * wild + 0.4 * h
    mask = score > np.quantile(score, 1 - FOREST_FRACTION)
    transform = Affine(cell, 0.0, dl, 0.0, -cell, dt)
    found = []
    for geom, value in shapes(mask.astype(np.uint8), mask=mask, transform=transform):
        if value:
            found.append(shapely.geometry.shape(geom))
    forest = shapely.union_all(found).buffer(20).buffer(-28).buffer(8)
    forest = forest.difference(exclude).simplify(1.0)
    return [p for p in polygons(forest) if p.area > 5000]


def shrub_patches(params: WorldParams, allowed, rng: np.random.Generator) -> list[Polygon]:
    """Small woody patches (ATKIS Gehoelz) in the open land, about one per km^2."""
    left, bottom, right, top = params.region_bounds
    count = max(1, round((right - left) * (top - bottom) / 1e6))
    patches: list[Polygon] = []
    for _ in range(count * 20):
        if len(patches) >= count:
            break
        x, y = rng.uniform(left + 50, right - 50), rng.uniform(bottom + 50, top - 50)
        r = rng.uniform(18, 32)
        blob = shapely.union_all(
            [Point(x, y).buffer(r)]
            + [
                Point(x + rng.uniform(-r, r), y + rng.uniform(-r, r)).buffer(
                    rng.uniform(0.5, 0.9) * r
                )
                for _ in range(2)
            ]
        ).simplify(1.0)
        if allowed.contains(blob) and all(blob.distance(p) > 60 for p in patches):
            patches.append(blob)
    return patches


def field_parcels(
    params: WorldParams, open_land, river: LineString, floodplain: float, rng: np.random.Generator
) -> tuple[list[Area], list[Road], list[LineString]]:
    """Cut the open land into parcels on a rotated grid; farm tracks and hedge lines between some."""
    dl, db, dr, dt = params.domain_bounds
    cx, cy = (dl + dr) / 2, (db + dt) / 2
    angle = math.radians(rng.uniform(-25, 25))
    half = math.hypot(dr - dl, dt - db) / 2 + 50
    cos_a, sin_a = math.cos(angle), math.sin(angle)

    def to_world(u, v):
        return (cx + u * cos_a - v * sin_a, cy + u * sin_a + v * cos_a)

    rects, tracks, hedges = [], [], []
    u = -half
    while u < half:
        strip = rng.uniform(120, 260)
        if rng.random() < 0.4:
            tracks.append(LineString([to_world(u, -half), to_world(u, half)]))
        v = -half
        while v < half:
            length = rng.uniform(150, 420)
            rects.append(
                Polygon(
                    [
                        to_world(u, v),
                        to_world(u + strip, v),
                        to_world(u + strip, v + length),
                        to_world(u, v + length),
                    ]
                )
            )
            if rng.random() < 0.18:
                hedges.append(LineString([to_world(u, v), to_world(u + strip, v)]))
            v += length
        u += strip
    prepared = open_land
    shapely.prepare(prepared)
    pieces = shapely.intersection(np.array(rects, dtype=object), prepared)
    areas: list[Area] = []
    parcel = 0
    for geom in pieces:
        for poly in polygons(geom):
            if poly.area < 20:
                continue
            parcel += 1
            wet = poly.centroid.distance(river) < floodplain + 10
            grass = rng.random() < (0.85 if wet else 0.25)
            areas.append(Area(poly, "grassland" if grass else "arable", parcel))
    track_roads = []
    for line in tracks:
        for piece in lines(line.intersection(open_land)):
            if piece.length > 120:
                track_roads.append(Road(piece, "track", 3.0))
    hedge_lines = [p for h in hedges for p in lines(h.intersection(open_land)) if p.length > 40]
    return areas, track_roads, hedge_lines


def crop_tables(n_parcels: int, seed: int) -> dict[int, np.ndarray]:
    """The crop of every parcel in each campaign year (crop rotation: years differ)."""
    tables = {}
    for k, campaign in enumerate(CAMPAIGNS):
        rng = rng_for(seed, S_CROPS, k)
        tables[campaign.year] = rng.choice(len(CROPS), size=n_parcels + 1, p=CROP_WEIGHTS)
    return tables


# --------------------------------------------------------------------------- ATKIS


def atkis_features(areas: list[Area], tolerance: float = ATKIS_TOLERANCE_M) -> list[AtkisFeature]:
    """Generalised land-cover vectors: fields of one use dissolved, boundaries simplified."""
    by_kind: dict[str, list] = {}
    for area in areas:
        by_kind.setdefault(area.kind, []).append(area.polygon)
    features = []
    for kind in AREA_KINDS:
        if kind not in by_kind:
            continue
        _, objart_txt, objart, veg = AREA_KINDS[kind]
        geoms = by_kind[kind]
        if kind in ("arable", "grassland"):
            geoms = polygons(shapely.union_all(geoms).buffer(0.5).buffer(-0.5))
        for poly in geoms:
            simple = poly.simplify(tolerance, preserve_topology=True)
            for part in polygons(simple.buffer(0)):
                if part.area >= 50:
                    features.append(AtkisFeature(part, objart_txt, objart, veg))
    return features


# --------------------------------------------------------------------------- the whole world


def build_world(params: WorldParams) -> World:
    """Lay out the latent scene of ``params`` (deterministic in ``params.seed``)."""

    seed = params.seed
    domain = box(*params.domain_bounds)
    rng = rng_for(seed, S_RIVER)
    coords, river_ymax = river_centreline(params, rng)
    river = LineString(coords)
    river_width = float(rng.uniform(16, 22))
    floodplain = float(rng.uniform(95, 120))
    valley = floodplain + float(rng.uniform(250, 350))
    terrain = build_terrain(params.domain_bounds, coords, floodplain, valley, seed)
    river_poly = river.buffer(river_width / 2, cap_style="flat").intersection(domain)
    lake = oxbow_lake(coords, river_width, floodplain, params, rng)

    rng = rng_for(seed, S_TOWN)
    town, centre, town_angle, (tw, th) = town_outline(params, river_ymax, floodplain, rng)
    town = town.difference(river.buffer(floodplain + 20)).intersection(domain)
    rng = rng_for(seed, S_ROADS)
    roads = main_roads(params, centre, tw, rng)
    town_low = river_ymax + floodplain + 30.0
    tracks, ballast, rail_corridor = railway(params, town_low, th, centre, rng)
    motorway = roads[0]
    road_corridor = motorway.line.buffer(17.0, cap_style="flat").intersection(domain)
    rail_corridor = rail_corridor.intersection(domain)

    water = shapely.union_all([river_poly, lake])
    town = town.difference(rail_corridor).difference(road_corridor)
    corridors = shapely.union_all([road_corridor, rail_corridor]).difference(water)
    town_parts = build_town(
        params, town, centre, town_angle, (tw, th), roads, rail_corridor, rng_for(seed, S_BUILDINGS)
    )

    taken = shapely.union_all([water, corridors, town])
    exclude = shapely.union_all([taken.buffer(25), river.buffer(floodplain + 20)])
    forest = forest_polygons(params, terrain, exclude, seed * 31 + S_FOREST)
    rng = rng_for(seed, S_FIELDS)
    open_land = domain.difference(shapely.union_all([taken, *forest]))
    allowed = open_land.buffer(-30).difference(river.buffer(floodplain + 10))
    for road in roads:
        allowed = allowed.difference(road.line.buffer(25))
    shrubs = shrub_patches(params, allowed, rng)
    open_land = open_land.difference(shapely.union_all(shrubs)) if shrubs else open_land
    fields, track_roads, hedge_lines = field_parcels(params, open_land, river, floodplain, rng)

    areas = list(fields)
    areas += [Area(p, "forest") for p in forest]
    areas += [Area(p, "shrub") for p in shrubs]
    areas += town_parts.areas
    areas += [Area(p, "road_corridor") for p in polygons(road_corridor.difference(water))]
    areas += [Area(p, "rail_corridor") for p in polygons(rail_corridor.difference(water))]
    areas += [Area(p, "river") for p in polygons(river_poly)]
    areas += [Area(lake, "lake")]

    all_roads = roads + town_parts.streets + track_roads
    trees = plant_trees(
        params,
        rng_for(seed, S_TREES),
        forest=forest,
        shrubs=shrubs,
        hedges=hedge_lines,
        fields=fields,
        town=town_parts,
        river=river,
        river_width=river_width,
        roads=all_roads,
        ballast=ballast,
        water=water,
    )
    n_parcels = max((a.parcel for a in fields), default=0)
    sun_rng = rng_for(seed, 99)
    return World(
        params=params,
        terrain=terrain,
        river=river,
        river_width=river_width,
        floodplain_m=floodplain,
        areas=areas,
        roads=all_roads,
        railways=tracks,
        ballast=ballast,
        buildings=town_parts.buildings,
        trees=trees,
        atkis=atkis_features(areas),
        crops=crop_tables(n_parcels, seed),
        sun_azimuth=float(sun_rng.uniform(145, 165)),
        sun_elevation=float(sun_rng.uniform(46, 54)),
        town_centre=centre,
        notes={"town_angle_deg": math.degrees(town_angle), "town_size_m": [tw, th]},
    )
