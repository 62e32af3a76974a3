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
    """The point cloud of one 1 km tile; ``surface`` covers the tile at :data:`SURFACE_RES_M`.

    Terrain heights come from ``surface.terrain`` (the nearest surface
    pixel: within a few cm of the exact terrain on the demo world's gentle slopes).
    """
    rng = rng_for(world.params.seed, S_LIDAR, tile.e_km, tile.n_km)
    left, top = tile.e_km * 1000.0, (tile.n_km + 1) * 1000.0
    per_side = max(1, int(round(1000.0 * math.sqrt(density))))
    spacing = 1000.0 / per_side
    # scan lines run west-east, one after the other from north to south, alternating direction
    line = np.repeat(np.arange(per_side, dtype=np.int32), per_side)
    k = np.tile(np.arange(per_side, dtype=np.int32), per_side)
    reverse = (line & 1).astype(bool)
    col = np.where(reverse, per_side - 1 - k, k)
    jitter = rng.random((2, line.size), dtype=np.float32) * np.float32(2 * PULSE_JITTER)
    x = left + (col + (0.5 - PULSE_JITTER) + jitter[0]) * spacing  # (pulses,) float64
    y = top - (line + (0.5 - PULSE_JITTER) + jitter[1]) * spacing
    edge = (k == 0) | (k == per_side - 1)
    del jitter, col, k, line

    t = surface.grid.transform
    height, width = surface.grid.shape
    rows = np.minimum(((t.f - y) / t.a).astype(np.int32), height - 1)
    cols = np.minimum(((x - t.c) / t.a).astype(np.int32), width - 1)
    flat = rows.astype(np.int64) * width + cols
    del rows, cols
    material = surface.material.ravel()[flat]
    canopy = surface.canopy.ravel()[flat]
    roof = (surface.building.ravel()[flat] > 0) & ~canopy
    keep = (material != Material.WATER) | canopy | roof  # water absorbs the pulse
    pulse = np.flatnonzero(keep)
    flat, material, canopy, roof = flat[pulse], material[pulse], canopy[pulse], roof[pulse]
    objects = surface.objects.ravel()[flat]
    ground = surface.terrain.ravel()[flat]
    n_ret = np.ones(pulse.size, dtype=np.uint8)
    n_ret[canopy] = rng.choice(CANOPY_RETURNS, size=int(canopy.sum()), p=CANOPY_RETURN_P)

    # every return: its pulse (index into the kept pulses) and its number within the pulse
    owner = np.repeat(np.arange(pulse.size, dtype=np.int64), n_ret)
    count = n_ret[owner]
    starts = np.cumsum(n_ret, dtype=np.int64) - n_ret
    number = (np.arange(owner.size, dtype=np.int64) - starts[owner] + 1).astype(np.uint8)
    in_crown = canopy[owner]
    on_object = in_crown | roof[owner]
    last_of_many = (number == count) & (count > 1)

    # height above the terrain: the crown top (less a little penetration) for the first
    # return, the ground for the last, in between for the others
    above = np.where(on_object, objects[owner], np.float32(0))
    many = count > 1
    frac = np.ones(owner.size, dtype=np.float32)
    frac[many] = 1 - (number[many] - 1) / (count[many] - np.float32(1))
    inner = many & (number > 1) & ~last_of_many
    frac[inner] *= rng.uniform(0.8, 1.1, int(inner.sum())).astype(np.float32)
    above *= frac
    first_in_crown = in_crown & (number == 1)
    above[first_in_crown] -= rng.random(int(first_in_crown.sum()), dtype=np.float32) * 0.4
    np.maximum(above, 0, out=above)
    noise = rng.standard_normal(owner.size, dtype=np.float32) * np.float32(Z_NOISE_M)
    z = ground[owner].astype(np.float64) + (above + noise)

    on_ground = ~on_object | last_of_many
    classification = np.where(on_ground, CLASS_GROUND, CLASS_NONGROUND).astype(np.uint8)
    classification[rng.random(owner.size, dtype=np.float32) < UNCLASSIFIED_SHARE] = (
        CLASS_UNCLASSIFIED
    )

    lut = np.zeros(len(Material), dtype=np.float32)
    for m, v in INTENSITY.items():
        lut[m] = v
    per_pulse = np.where(roof, np.float32(ROOF_INTENSITY), lut[material])
    base = per_pulse[owner]
    base[in_crown & ~on_ground] = CROWN_INTENSITY
    gain = rng.uniform(0.85, 1.15, owner.size).astype(np.float32) * np.float32(256)
    intensity = np.minimum(base * gain / count, 65535).astype(np.uint16)  # energy shared

    region_left = world.params.region_bounds[0]
    px = x[pulse]
    strip = np.floor((px - region_left) / STRIP_WIDTH_M)
    across = (px - region_left - (strip + 0.5) * STRIP_WIDTH_M) / (STRIP_WIDTH_M / 2)
    t0 = GPS_WEEK_START + (tile.n_km * 1000 + tile.e_km) * 10.0
    gps = t0 + pulse.astype(np.float64) * 2e-6
    return PointCloud(
        x=px[owner],
        y=y[pulse][owner],
        z=z,
        intensity=intensity,
        return_number=number,
        number_of_returns=count,
        scan_direction_flag=(~reverse[pulse]).astype(np.uint8)[owner],
        edge_of_flight_line=edge[pulse].astype(np.uint8)[owner],
        classification=classification,
        scan_angle_rank=np.round(across * MAX_SCAN_ANGLE).astype(np.int8)[owner],
        point_source_id=(strip + 1).astype(np.uint16)[owner],
        gps_time=gps[owner],
    )
