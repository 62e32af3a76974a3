"""Airborne lidar of the demo world, recorded as real scanners record it.

Pulses fall on a jittered grid (``1 / sqrt(density)`` m apart) in scan
lines across the flight direction, alternating scan direction from line to
line. Each pulse returns from the latent surface:

* water: no return (the pulse is absorbed), so the DEM has holes to fill;
* a roof or bare ground: one return;
* a tree crown: one to four returns, the first on the crown, the last on the
  ground below (a few pulses end in a dense crown with a single return).

Heights are metres above sea level (terrain + object + 3 cm noise).
Classification follows the NRW codes: 2 ground, 20 non-ground, and 1
(unclassified) for a small random share of points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geosynth.demo.noise import rng_for
from geosynth.demo.render import Surface
from geosynth.demo.scene import Material, World
from geosynth.grid import TileId

S_LIDAR = 31
SURFACE_RES_M = 0.5  # the latent surface is looked up on this grid
PULSE_JITTER = 0.35  # of the pulse spacing
Z_NOISE_M = 0.03
CANOPY_RETURNS = (1, 2, 3, 4)
CANOPY_RETURN_P = (0.25, 0.35, 0.25, 0.15)
UNCLASSIFIED_SHARE = 0.003
CLASS_UNCLASSIFIED, CLASS_GROUND, CLASS_NONGROUND = 1, 2, 20
STRIP_WIDTH_M = 500.0  # flight strips run north-south
MAX_SCAN_ANGLE = 20.0
# 1064 nm reflectance of the materials, as 16-bit intensity / 256
INTENSITY = {
    Material.GRASS: 170,
    Material.ARABLE: 120,
    Material.FOREST_FLOOR: 110,
    Material.SHRUB: 150,
    Material.GARDEN: 160,
    Material.PAVED: 90,
    Material.CEMETERY: 150,
    Material.SQUARE: 100,
    Material.VERGE: 150,
    Material.ASPHALT: 45,
    Material.TRACK: 110,
    Material.BALLAST: 80,
}
ROOF_INTENSITY, CROWN_INTENSITY = 95, 185
GPS_WEEK_START = 1.3e9  # adjusted standard GPS time (s), spring of the flight year


@dataclass
class PointCloud:
    """The points of one tile as LAS point-format-1 fields (1-D arrays of equal length)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    intensity: np.ndarray
    return_number: np.ndarray
    number_of_returns: np.ndarray
    scan_direction_flag: np.ndarray
    edge_of_flight_line: np.ndarray
    classification: np.ndarray
    scan_angle_rank: np.ndarray
    point_source_id: np.ndarray
    gps_time: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def simulate_lidar(world: World, tile: TileId, density: float, surface: Surface) -> PointCloud:
    """The point cloud of one 1 km tile; ``surface`` covers the tile at :data:`SURFACE_RES_M`."""
    rng = rng_for(world.params.seed, S_LIDAR, tile.e_km, tile.n_km)
    left, top = tile.e_km * 1000.0, (tile.n_km + 1) * 1000.0
    per_side = max(1, int(round(1000.0 * math.sqrt(density))))
    spacing = 1000.0 / per_side
    # scan lines run west-east, one after the other from north to south
    line = np.repeat(np.arange(per_side), per_side)
    k = np.tile(np.arange(per_side), per_side)
    reverse = (line % 2) == 1
    col = np.where(reverse, per_side - 1 - k, k)
    x = left + (col + 0.5 + rng.uniform(-PULSE_JITTER, PULSE_JITTER, col.size)) * spacing
    y = top - (line + 0.5 + rng.uniform(-PULSE_JITTER, PULSE_JITTER, col.size)) * spacing
    edge = ((k == 0) | (k == per_side - 1)).astype(np.uint8)

    s_left, s_top = surface.grid.transform.c, surface.grid.transform.f
    res = surface.grid.transform.a
    r = np.clip(((s_top - y) / res).astype(np.int64), 0, surface.grid.height - 1)
    c = np.clip(((x - s_left) / res).astype(np.int64), 0, surface.grid.width - 1)
    material = surface.material[r, c]
    objects = surface.objects[r, c].astype(np.float64)
    canopy = surface.canopy[r, c]
    roof = (surface.building[r, c] > 0) & ~canopy
    ground_z = world.terrain.sample(x, y).astype(np.float64)

    keep = ~((material == Material.WATER) & ~canopy & ~roof)  # water absorbs the pulse
    pulse = np.flatnonzero(keep)
    n_ret = np.ones(pulse.size, dtype=np.uint8)
    in_crown = canopy[pulse]
    n_ret[in_crown] = rng.choice(CANOPY_RETURNS, size=int(in_crown.sum()), p=CANOPY_RETURN_P)

    owner = np.repeat(pulse, n_ret)  # pulse index of every return
    count = np.repeat(n_ret, n_ret)
    first = np.concatenate([[0], np.cumsum(n_ret)[:-1]])
    number = (np.arange(owner.size) - np.repeat(first, n_ret) + 1).astype(np.uint8)
    # height fraction of the object where each return happens: 1 on top, 0 on the ground
    frac = np.where(count > 1, 1.0 - (number - 1) / np.maximum(count - 1, 1), 1.0)
    inner = (number > 1) & (number < count)
    frac[inner] *= rng.uniform(0.8, 1.1, int(inner.sum()))
    top_drop = np.where((number == 1) & canopy[owner], rng.uniform(0.0, 0.4, owner.size), 0.0)
    on_object = canopy[owner] | roof[owner]
    height = np.where(on_object, np.maximum(objects[owner] * frac - top_drop, 0.0), 0.0)
    z = ground_z[owner] + height + rng.normal(0.0, Z_NOISE_M, owner.size)

    on_ground = ~on_object | ((number == count) & (count > 1))
    classification = np.where(on_ground, CLASS_GROUND, CLASS_NONGROUND).astype(np.uint8)
    classification[rng.random(owner.size) < UNCLASSIFIED_SHARE] = CLASS_UNCLASSIFIED

    lut = np.zeros(len(Material), dtype=np.float64)
    for m, v in INTENSITY.items():
        lut[m] = v
    base = np.where(roof[owner], ROOF_INTENSITY, lut[material[owner]])
    base = np.where(canopy[owner] & ~on_ground, CROWN_INTENSITY, base)
    base = base / count  # the pulse energy is shared among its returns
    intensity = np.clip(base * 256 * rng.uniform(0.85, 1.15, owner.size), 0, 65535)

    region_left = world.params.region_bounds[0]
    strip = np.floor((x[owner] - region_left) / STRIP_WIDTH_M)
    across = (x[owner] - region_left - (strip + 0.5) * STRIP_WIDTH_M) / (STRIP_WIDTH_M / 2)
    t0 = GPS_WEEK_START + (tile.n_km * 1000 + tile.e_km) * 10.0
    gps = t0 + owner.astype(np.float64) * 2e-6
    return PointCloud(
        x=x[owner],
        y=y[owner],
        z=z,
        intensity=intensity.astype(np.uint16),
        return_number=number,
        number_of_returns=count.astype(np.uint8),
        scan_direction_flag=(~reverse[owner]).astype(np.uint8),
        edge_of_flight_line=edge[owner],
        classification=classification,
        scan_angle_rank=np.round(across * MAX_SCAN_ANGLE).astype(np.int8),
        point_source_id=(strip + 1).astype(np.uint16),
        gps_time=gps,
    )
