"""Orthophoto colours (R, G, B, NIR) of the demo world.

Colours come from the material under each pixel, the crop of each field in
the flight's year and season, the roof colour of each building and the tone
of each tree crown; then texture (smooth noise in world coordinates plus
per-pixel grain), Lambertian shading of the surface and cast shadows, both
from the sun of the tile's flight (its date and hour at the region: long
shadows in March and October, short ones in June), and a slight radiometric
tint per flight campaign. Seasons: crops and meadows change colour (bare soil
and young cereals in March, ripe cereals in June, stubble and green rapeseed
in October), deciduous crowns are bare (grey-brown) on leaf-off flights and
turn orange-brown in autumn.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine

from geosynth.demo.noise import grid_noise, hash_uniform, rng_for
from geosynth.demo.render import cast_shadow, crop_surface, expanded, render_surface, shading
from geosynth.demo.scene import CROPS, WORLD_CRS, Campaign, Material, World
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
    "leaf_off": {  # March: winter cereals just green, spring crops not yet sown
        "wheat": (112, 128, 84, 150),
        "barley": (118, 130, 86, 148),
        "rapeseed": (92, 124, 62, 175),
        "maize": (138, 112, 90, 98),
        "sugar_beet": (132, 108, 86, 96),
        "bare": (140, 116, 94, 100),
    },
    "autumn": {  # October: stubble and ploughed fields, new rapeseed, ripe maize
        "wheat": (160, 140, 106, 120),
        "barley": (150, 128, 100, 116),
        "rapeseed": (98, 130, 66, 190),
        "maize": (172, 150, 96, 130),
        "sugar_beet": (82, 118, 60, 200),
        "bare": (126, 100, 80, 92),
    },
}
GRASS_SEASON = {
    "spring": (1.0, 1.0, 1.0, 1.0),
    "summer": (1.12, 1.04, 1.08, 0.92),
    "leaf_off": (1.08, 0.9, 0.92, 0.62),  # dull, brownish winter meadows
    "autumn": (1.1, 0.98, 0.9, 0.8),
}
ROOF_GABLE = ((166, 84, 64, 96), (72, 72, 78, 62))  # tone 0: red tiles, tone 1: anthracite
ROOF_FLAT = ((104, 104, 100, 82), (168, 166, 160, 118))  # tone 0: dark felt, tone 1: light
CROWN = {
    "spring": ((86, 122, 60, 210), (38, 62, 44, 150)),  # deciduous, conifer
    "summer": ((62, 96, 48, 195), (36, 58, 42, 145)),
    "leaf_off": ((112, 100, 90, 118), (36, 56, 42, 140)),  # bare branches over the floor
    "autumn": ((150, 108, 56, 160), (36, 58, 42, 142)),
}
HOUR_UTC_NOTE = "sun from the flight date and hour (UTC) at the region centre (NOAA formulas)"


def solar_position(lon_deg: float, lat_deg: float, day_of_year: int, hour_utc: float):
    """``(azimuth, elevation)`` of the sun in degrees (azimuth clockwise from north).

    NOAA's general solar position approximation (about 0.1 degree here).
    """
    g = 2 * math.pi / 365.0 * (day_of_year - 1 + (hour_utc - 12) / 24)
    eqtime = 229.18 * (
        0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g)
    )  # fmt: skip
    decl = (
        0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g) + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g)
    )  # fmt: skip
    hour_angle = math.radians((hour_utc * 60 + eqtime + 4 * lon_deg) / 4 - 180)
    lat = math.radians(lat_deg)
    cos_zenith = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(
        hour_angle
    )
    elevation = 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
    azimuth = math.degrees(
        math.atan2(
            math.sin(hour_angle),
            math.cos(hour_angle) * math.sin(lat) - math.tan(decl) * math.cos(lat),
        )
    )
    return (azimuth + 180.0) % 360.0, elevation


def campaign_sun(world: World, campaign: Campaign) -> tuple[float, float]:
    """``(azimuth, elevation)`` of the sun during ``campaign``'s flight over the region."""
    import datetime as dt

    from pyproj import Transformer

    left, bottom, right, top = world.params.region_bounds
    to_geo = Transformer.from_crs(WORLD_CRS, "EPSG:4326", always_xy=True)
    lon, lat = to_geo.transform((left + right) / 2, (bottom + top) / 2)
    doy = dt.date(campaign.year, campaign.month, campaign.day).timetuple().tm_yday
    return solar_position(lon, lat, doy, campaign.hour_utc)


def tile_grid(tile: TileId, resolution: float, crs: str = WORLD_CRS) -> RasterGrid:
    """The grid of one 1 km tile at ``resolution`` m."""
    n = int(round(1000.0 / resolution))
    left, top = tile.e_km * 1000.0, (tile.n_km + 1) * 1000.0
    return RasterGrid(crs, Affine(resolution, 0.0, left, 0.0, -resolution, top), n, n)


def shadow_margin_px(world: World, resolution: float, elevation: float | None = None) -> int:
    """How far (pixels) a shadow can reach into a tile from outside it (sun at ``elevation``)."""
    elevation = world.sun_elevation if elevation is None else elevation
    reach = world.max_object_height / math.tan(math.radians(elevation))
    return int(math.ceil(reach / resolution)) + 2


def render_dop(world: World, tile: TileId, resolution: float):
    """The orthophoto of one tile: ((4, H, W) uint8 R, G, B, NIR; the expanded Surface; margin)."""
    grid = tile_grid(tile, resolution)
    campaign = world.campaign_of(tile)
    az, el = campaign_sun(world, campaign)
    margin = shadow_margin_px(world, resolution, el)
    surface = render_surface(world, expanded(grid, margin))
    dsm = surface.dsm
    inner = (slice(margin, margin + grid.height), slice(margin, margin + grid.width))
    shadow = cast_shadow(dsm, resolution, az, el, world.max_object_height)[inner]
    shade = shading(dsm, resolution, az, el)[inner]
    del dsm
    s = crop_surface(surface, margin)  # colours are needed inside the tile only

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
