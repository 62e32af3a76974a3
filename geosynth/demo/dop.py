"""Orthophoto colours (R, G, B, NIR) of the demo world.

Colours come from the material under each pixel, the crop of each field in
the flight's year and season, the roof colour of each building and the tone
of each tree crown; then texture (smooth noise in world coordinates plus
per-pixel grain), Lambertian shading of the surface and cast shadows, both
from one sun azimuth and elevation, and a slight radiometric tint per flight
campaign.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine

from geosynth.demo.noise import grid_noise, hash_uniform, rng_for
from geosynth.demo.render import cast_shadow, crop_surface, expanded, render_surface, shading
from geosynth.demo.scene import CROPS, Campaign, Material, World
from geosynth.demo.terrain import pixel_centres
from geosynth.grid import RasterGrid, TileId

S_DOP = 21
SHADOW_GAIN = np.array([0.40, 0.44, 0.56, 0.38], dtype=np.float32)  # bluish, dark shadows

# (R, G, B, NIR) of the bare materials, 0..255
GROUND = {
    Material.GRASS: (96, 128, 70, 175),
    Material.ARABLE: (150, 125, 100, 105),  # replaced by the crop colour
    Material.FOREST_FLOOR: (72, 80, 52, 125),
    Material.SHRUB: (78, 100, 58, 160),
    Material.WATER: (42, 62, 68, 14),
    Material.GARDEN: (102, 122, 82, 150),
    Material.PAVED: (152, 150, 143, 112),
    Material.CEMETERY: (92, 116, 80, 150),
    Material.SQUARE: (178, 168, 152, 122),
    Material.VERGE: (122, 132, 92, 150),
    Material.ASPHALT: (84, 85, 88, 60),
    Material.TRACK: (162, 148, 122, 112),
    Material.BALLAST: (128, 118, 108, 92),
}
# smooth texture amplitude (relative) and grain (digital numbers) per material
TEXTURE = {
    Material.GRASS: (0.10, 5.0),
    Material.ARABLE: (0.08, 4.0),
    Material.FOREST_FLOOR: (0.18, 6.0),
    Material.SHRUB: (0.15, 7.0),
    Material.WATER: (0.04, 1.5),
    Material.GARDEN: (0.16, 7.0),
    Material.PAVED: (0.06, 4.0),
    Material.CEMETERY: (0.14, 8.0),
    Material.SQUARE: (0.05, 4.0),
    Material.VERGE: (0.12, 5.0),
    Material.ASPHALT: (0.05, 3.0),
    Material.TRACK: (0.08, 5.0),
    Material.BALLAST: (0.06, 7.0),
}
CROP_COLOURS = {
    "spring": {
        "wheat": (84, 126, 60, 195),
        "barley": (96, 132, 66, 190),
        "rapeseed": (212, 200, 62, 185),
        "maize": (142, 118, 92, 100),
        "sugar_beet": (136, 112, 88, 102),
        "bare": (150, 125, 100, 105),
    },
    "summer": {
        "wheat": (176, 160, 102, 150),
        "barley": (202, 178, 112, 140),
        "rapeseed": (128, 118, 72, 130),
        "maize": (78, 120, 56, 205),
        "sugar_beet": (70, 116, 56, 210),
        "bare": (155, 128, 102, 108),
    },
}
GRASS_SEASON = {"spring": (1.0, 1.0, 1.0, 1.0), "summer": (1.12, 1.04, 1.08, 0.92)}
ROOF_GABLE = ((166, 84, 64, 96), (72, 72, 78, 62))  # tone 0: red tiles, tone 1: anthracite
ROOF_FLAT = ((104, 104, 100, 82), (168, 166, 160, 118))  # tone 0: dark felt, tone 1: light
CROWN = {
    "spring": ((86, 122, 60, 210), (38, 62, 44, 150)),  # deciduous, conifer
    "summer": ((62, 96, 48, 195), (36, 58, 42, 145)),
}


def tile_grid(tile: TileId, resolution: float, crs: str = "EPSG:25832") -> RasterGrid:
    """The grid of one 1 km tile at ``resolution`` m."""
    n = int(round(1000.0 / resolution))
    left, top = tile.e_km * 1000.0, (tile.n_km + 1) * 1000.0
    return RasterGrid(crs, Affine(resolution, 0.0, left, 0.0, -resolution, top), n, n)


def shadow_margin_px(world: World, resolution: float) -> int:
    """How far (pixels) a shadow can reach into a tile from outside it."""
    reach = world.max_object_height / math.tan(math.radians(world.sun_elevation))
    return int(math.ceil(reach / resolution)) + 2


def render_dop(world: World, tile: TileId, resolution: float):
    """The orthophoto of one tile: ((4, H, W) uint8 R, G, B, NIR; the expanded Surface; margin)."""
    grid = tile_grid(tile, resolution)
    margin = shadow_margin_px(world, resolution)
    surface = render_surface(world, expanded(grid, margin))
    dsm = surface.dsm
    az, el = world.sun_azimuth, world.sun_elevation
    inner = (slice(margin, margin + grid.height), slice(margin, margin + grid.width))
    shadow = cast_shadow(dsm, resolution, az, el, world.max_object_height)[inner]
    shade = shading(dsm, resolution, az, el)[inner]
    del dsm
    s = crop_surface(surface, margin)  # colours are needed inside the tile only
    campaign = world.campaign_of(tile)

    xs, ys = pixel_centres(grid)
    seed = world.params.seed
    fine = grid_noise(xs, ys, 3.0, seed * 101 + 1) - np.float32(0.5)
    mid = grid_noise(xs, ys, 23.0, seed * 101 + 2) - np.float32(0.5)
    amp, grain_lut = np.zeros(len(Material), np.float32), np.zeros(len(Material), np.float32)
    for m, (a, g) in TEXTURE.items():
        amp[m], grain_lut[m] = a, g
    texture = np.where(s.canopy, 1 + 0.5 * fine, 1 + 2 * amp[s.material] * (0.6 * fine + 0.4 * mid))
    factor = texture * shade  # (H, W)
    grain_sigma = np.where(s.canopy, np.float32(10), grain_lut[s.material])
    rng = rng_for(seed, S_DOP, tile.e_km, tile.n_km)
    grain = rng.standard_normal(grid.shape, dtype=np.float32) * grain_sigma
    del fine, mid, texture, shade, grain_sigma

    image = np.empty((4, *grid.shape), dtype=np.uint8)  # (4, H, W)
    for band, colour in enumerate(base_colours(world, s, campaign)):
        colour *= factor * np.float32(campaign.tint[band])
        colour[shadow] *= SHADOW_GAIN[band]
        colour += grain
        np.clip(np.round(colour, out=colour), 1, 255, out=colour)
        image[band] = colour
    return image, surface, margin


def base_colours(world: World, s, campaign: Campaign):
    """Untextured colours, one (H, W) float32 band at a time (R, G, B, NIR).

    Ground materials, then per field the crop of the flight's year (or the
    meadow's seasonal tone), per building its roof colour, per crown its tone.
    """
    season = campaign.season
    n_parcels = int(s.parcel.max()) + 1
    vary = 0.9 + 0.2 * hash_uniform(np.arange(n_parcels), campaign.year, world.params.seed)
    kinds = np.zeros(n_parcels, dtype=np.uint8)  # the material each parcel is painted with
    for area in world.areas:
        if area.parcel and area.parcel < n_parcels:
            kinds[area.parcel] = Material.ARABLE if area.kind == "arable" else Material.GRASS
    is_field = (s.parcel > 0) & (s.material == kinds[s.parcel])
    crops = world.crops[campaign.year][:n_parcels]
    roofs = (s.building > 0) & ~s.canopy
    tone = np.array([0.0] + [b.tone for b in world.buildings], dtype=np.float32)
    gable = np.array([False] + [b.rise > 0 for b in world.buildings])
    for band in range(4):
        lut = np.zeros(len(Material), dtype=np.float32)
        for m, c in GROUND.items():
            lut[m] = c[band]
        field = (
            np.where(  # colour of every parcel in this band
                kinds == Material.ARABLE,
                np.array([CROP_COLOURS[season][c][band] for c in CROPS], np.float32)[crops],
                GROUND[Material.GRASS][band] * GRASS_SEASON[season][band],
            )
            * vary
        )
        g0, g1 = ROOF_GABLE[0][band], ROOF_GABLE[1][band]
        f0, f1 = ROOF_FLAT[0][band], ROOF_FLAT[1][band]
        roof = np.where(gable, g0 + (g1 - g0) * tone, f0 + (f1 - f0) * tone).astype(np.float32)
        d, c = CROWN[season][0][band], CROWN[season][1][band]
        colour = lut[s.material]
        colour = np.where(is_field, field.astype(np.float32)[s.parcel], colour)
        colour = np.where(roofs, roof[s.building], colour)
        colour = np.where(s.canopy, np.float32(d) + np.float32(c - d) * s.tree_tone, colour)
        yield colour
