"""The demo town: land use, a street grid, houses, apartment blocks, halls and garden sheds.

The town is a rotated, rounded rectangle; its southern part is residential
(ATKIS Wohnbauflaeche), the northern part industrial (Industrie- und
Gewerbeflaeche), with a square (Platz) at the main crossing and a cemetery
(Friedhof: an object type the catalog does not map). Streets form a grid
aligned with the town. Buildings stand in the blocks between the streets:

* houses along the block edges, gable roofs parallel to the street;
* apartment blocks near the centre, one of them a courtyard block mapped in
  OSM as a multipolygon relation with an inner ring;
* industrial halls with flat roofs;
* garden sheds and garages behind some houses, mostly *not* in OSM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.geometry.polygon import orient

from geosynth.demo.scene import Area, Building, Road, WorldParams
from geosynth.demo.shapes import lines, polygons, rotated_box

STREET_WIDTH = {"residential": 5.5, "service": 4.5}
SIDEWALK_M = 2.5
SHED_IN_OSM = 0.3  # probability that a garden shed or garage is mapped


@dataclass
class TownParts:
    areas: list[Area] = field(default_factory=list)
    streets: list[Road] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    blocks: list[tuple[Polygon, str]] = field(default_factory=list)  # (block, "residential"|...)


def _frame(angle: float) -> tuple[np.ndarray, np.ndarray]:
    u = np.array([math.cos(angle), math.sin(angle)])
    return u, np.array([-u[1], u[0]])


def build_town(
    params: WorldParams,
    town: Polygon,
    centre: tuple[float, float],
    angle: float,
    size: tuple[float, float],
    main_roads: list[Road],
    rail_corridor,
    rng: np.random.Generator,
) -> TownParts:
    """Streets, land-use areas and buildings of the town."""
    tw, th = size
    c = np.asarray(centre)
    u, v = _frame(angle)
    big = 4 * max(tw, th)
    # the northern part along the town's axis: the default world's train/test boundary runs
    # north-south through the town, so both sides hold houses and halls
    north = rotated_box(*(c + v * (0.1 * th + big / 2)), big, big, angle)
    industrial = town.intersection(north)
    residential = town.difference(north)
    square = rotated_box(*(c - u * 42 - v * 10), 60, 44, angle)
    cemetery = rotated_box(*(c - u * 0.28 * tw - v * 0.22 * th), 90, 70, angle).intersection(
        residential
    )
    residential = residential.difference(square).difference(cemetery)
    parts = TownParts()
    parts.areas += [Area(p, "residential") for p in polygons(residential)]
    parts.areas += [Area(p, "industrial") for p in polygons(industrial)]
    parts.areas += [Area(p, "square") for p in polygons(square.intersection(town))]
    parts.areas += [Area(p, "cemetery") for p in polygons(cemetery) if p.area > 500]

    parts.streets = _street_grid(town, industrial, c, u, v, math.hypot(tw, th) / 2 + 20, rng)
    in_town = [r for r in main_roads if r.line.intersects(town)]
    corridors = [r.line.buffer(r.width / 2 + SIDEWALK_M) for r in in_town + parts.streets]
    free = town.difference(shapely.union_all(corridors + [rail_corridor, square, cemetery]))
    shapely.prepare(industrial)
    for block in polygons(free):
        if block.area < 600:
            continue
        kind = "industrial" if industrial.contains(block.representative_point()) else "residential"
        parts.blocks.append((block, kind))

    near = 0.25 * min(tw, th) + 60
    courtyard_block = min(
        (b for b, k in parts.blocks if k == "residential" and b.area > 3500),
        key=lambda b: b.centroid.distance(shapely.Point(*c)),
        default=None,
    )
    for block, kind in parts.blocks:
        placed: list[Building] = []
        if kind == "industrial":
            placed = _halls(block, angle, rng)
        else:
            if block is courtyard_block:
                placed += _courtyard_block(block, angle, rng)
            central = block.centroid.distance(shapely.Point(*c)) < near
            if central and rng.random() < 0.8:
                placed += _edge_buildings(block, rng, placed, apartments=True)
            placed += _edge_buildings(block, rng, placed, apartments=False)
        parts.buildings += placed
    return parts


def _street_grid(
    town: Polygon, industrial, c, u, v, reach: float, rng: np.random.Generator
) -> list[Road]:
    spacing = rng.uniform(95, 120)
    streets = []
    offsets = np.arange(-reach, reach, spacing) + spacing / 2
    for along, across in ((u, v), (v, u)):
        for off in offsets:
            base = c + across * (off + rng.uniform(-8, 8))
            line = LineString([base - along * reach, base + along * reach])
            for piece in lines(line.intersection(town)):
                if piece.length < 40:
                    continue
                mid = piece.interpolate(0.5, normalized=True)
                kind = "service" if industrial.contains(mid) else "residential"
                streets.append(Road(piece, kind, STREET_WIDTH[kind]))
    return streets


def _fits(candidate: Polygon, block: Polygon, placed: list[Building], gap: float) -> bool:
    if not block.contains(candidate):
        return False
    if not placed:
        return True
    others = np.array([b.polygon for b in placed], dtype=object)
    return not shapely.intersects(others, candidate.buffer(gap)).any()


def _gable(
    poly: Polygon,
    centre,
    direction,
    depth: float,
    eave: float,
    rise: float,
    tags: dict,
    tone: float,
    in_osm: bool = True,
) -> Building:
    return Building(
        poly,
        eave,
        rise,
        (float(direction[0]), float(direction[1])),
        (float(centre[0]), float(centre[1])),
        depth / 2,
        tags,
        in_osm,
        tone,
    )


def _flat(poly: Polygon, height: float, tags: dict, tone: float, in_osm: bool = True) -> Building:
    c = poly.centroid
    return Building(poly, height, 0.0, (1.0, 0.0), (c.x, c.y), 1.0, tags, in_osm, tone)


def _edge_buildings(
    block: Polygon, rng: np.random.Generator, existing: list[Building], apartments: bool
) -> list[Building]:
    """Buildings facing the block's edges: houses (with sheds behind) or apartment blocks."""
    ring = orient(block, 1.0).exterior  # counter-clockwise: the block lies to the left
    length = ring.length
    placed = list(existing)
    new: list[Building] = []
    s = rng.uniform(0, 8)
    while s < length:
        p = np.array(ring.interpolate(s).coords[0])
        a_pt = np.array(ring.interpolate(max(s - 1.0, 0)).coords[0])
        b_pt = np.array(ring.interpolate(min(s + 1.0, length)).coords[0])
        t = b_pt - a_pt
        t /= max(np.linalg.norm(t), 1e-9)
        n = np.array([-t[1], t[0]])
        angle = math.atan2(t[1], t[0])
        if apartments:
            a, b, setback = rng.uniform(28, 45), rng.uniform(12, 14), rng.uniform(3, 5)
        else:
            a, b, setback = rng.uniform(9, 13), rng.uniform(9, 12), rng.uniform(4, 7)
        centre = p + n * (setback + b / 2) + t * (a / 2)
        poly = rotated_box(*centre, a, b, angle)
        if _fits(poly, block, placed, 2.0):
            if apartments:
                building = _flat(
                    poly,
                    float(rng.uniform(12, 21)),
                    {"building": "apartments"},
                    float(rng.uniform(0.0, 0.3)),
                )
            else:
                building = _gable(
                    poly,
                    centre,
                    t,
                    b,
                    float(rng.uniform(5.5, 7.0)),
                    float(rng.uniform(3.0, 4.8)),
                    {"building": str(rng.choice(["house", "house", "detached"]))},
                    float(rng.uniform(0.0, 1.0)),
                )
            placed.append(building)
            new.append(building)
            if not apartments and rng.random() < 0.35:
                shed_centre = centre + n * (b / 2 + rng.uniform(4, 7)) + t * rng.uniform(-2, 2)
                shed = rotated_box(*shed_centre, 3.0, 6.0, angle)
                if _fits(shed, block, placed, 1.5):
                    mapped = rng.random() < SHED_IN_OSM
                    new.append(
                        _flat(
                            shed,
                            float(rng.uniform(2.6, 3.1)),
                            {"building": "garage"},
                            float(rng.uniform(0.2, 0.6)),
                            in_osm=mapped,
                        )
                    )
                    placed.append(new[-1])
            s += a + rng.uniform(3, 8)
        else:
            s += 4.0
    return new


def _courtyard_block(block: Polygon, angle: float, rng: np.random.Generator) -> list[Building]:
    """A perimeter block with an inner courtyard (an OSM multipolygon with an inner ring)."""
    p = block.representative_point()
    outer = rotated_box(p.x, p.y, 46, 38, angle)
    inner = rotated_box(p.x, p.y, 22, 16, angle)
    if not block.contains(outer.buffer(1)):
        return []
    poly = Polygon(outer.exterior.coords, [inner.exterior.coords])
    return [
        _flat(
            poly, float(rng.uniform(15, 18)), {"building": "apartments", "name": "Hofblock"}, 0.15
        )
    ]


def _halls(block: Polygon, angle: float, rng: np.random.Generator) -> list[Building]:
    """Industrial halls with flat roofs, kept apart for yards and access."""
    inner = block.buffer(-6)
    if inner.is_empty:
        return []
    left, bottom, right, top = inner.bounds
    placed: list[Building] = []
    for _ in range(40):
        a, b = rng.uniform(25, 80), rng.uniform(18, 45)
        cx, cy = rng.uniform(left, right), rng.uniform(bottom, top)
        poly = rotated_box(cx, cy, a, b, angle)
        if _fits(poly, inner, placed, 8.0):
            tags = {"building": str(rng.choice(["industrial", "warehouse", "retail"]))}
            placed.append(
                _flat(poly, float(rng.uniform(7, 13)), tags, float(rng.uniform(0.3, 0.9)))
            )
    return placed
