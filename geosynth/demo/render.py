"""Rasterise the latent world on any north-up grid: materials, heights, shadows, true land cover.

:func:`render_surface` gives, per pixel, the ground material, the terrain
height and the height of whatever stands on it (roof or tree crown). Every
modality is drawn from it: orthophoto colours, lidar returns and SAR
backscatter, so they agree with each other by construction.
:func:`cast_shadow` is shared by the sun (orthophoto) and the radar (SAR
shadow: the same geometry with the sensor's elevation angle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geosynth.demo.scene import AREA_KINDS, AREA_ORDER, Material, World
from geosynth.demo.terrain import pixel_centres
from geosynth.grid import RasterGrid

# crown profile: height drops by this fraction from the top to the crown edge
CROWN_DROP_DECIDUOUS = 0.3
CROWN_DROP_CONIFER = 0.5
CONIFER_TONE = 0.7  # trees with a tone above this are conifers (cone-shaped, dark)
SHADOW_EPS_M = 0.05


@dataclass
class Surface:
    """The latent world on one grid; all arrays (H, W)."""

    grid: RasterGrid
    material: np.ndarray  # uint8 Material of the ground
    parcel: np.ndarray  # int32 field parcel id (0: not a field)
    building: np.ndarray  # int32 building index + 1 (0: none)
    terrain: np.ndarray  # float32 m a.s.l.
    objects: np.ndarray  # float32 m above terrain: roof or crown (0: bare ground)
    canopy: np.ndarray  # bool: a tree crown is the top surface
    tree_tone: np.ndarray  # float32 colour tone of the crown on top

    @property
    def dsm(self) -> np.ndarray:
        return self.terrain + self.objects


def _burn(shapes: list, grid: RasterGrid, dtype, out: np.ndarray | None = None) -> np.ndarray:
    from rasterio.features import rasterize

    if out is None:
        out = np.zeros(grid.shape, dtype=dtype)
    if shapes:
        rasterize(shapes, out=out, transform=grid.transform)
    return out


def _visible(geoms_bounds: np.ndarray, grid: RasterGrid, margin: float = 0.0) -> np.ndarray:
    left, bottom, right, top = grid.bounds
    b = geoms_bounds
    return (
        (b[:, 0] <= right + margin)
        & (b[:, 2] >= left - margin)
        & (b[:, 1] <= top + margin)
        & (b[:, 3] >= bottom - margin)
    )


def _cached(world: World, key: str, make):
    if key not in world.cache:
        world.cache[key] = make()
    return world.cache[key]


def _area_shapes(world: World):
    import shapely

    def make():
        geoms = [a.polygon for a in world.areas]
        order = {k: i for i, k in enumerate(AREA_ORDER)}
        rank = np.array([order[a.kind] for a in world.areas])
        idx = np.argsort(rank, kind="stable")
        mats = np.array([int(AREA_KINDS[a.kind][0]) for a in world.areas])
        return (
            [geoms[i] for i in idx],
            mats[idx],
            np.array([world.areas[i].parcel for i in idx]),
            shapely.bounds(np.array([geoms[i] for i in idx], dtype=object)),
        )

    return _cached(world, "areas", make)


def _road_shapes(world: World):
    import shapely

    def make():
        polys = [r.line.buffer(r.width / 2) for r in world.roads]
        mats = np.array([int(r.material) for r in world.roads])
        return polys, mats, shapely.bounds(np.array(polys, dtype=object))

    return _cached(world, "roads", make)


def _building_table(world: World):
    import shapely

    def make():
        n = len(world.buildings)
        table = np.zeros((n + 1, 7), dtype=np.float64)  # row 0: no building
        for i, b in enumerate(world.buildings, start=1):
            table[i] = (
                b.eave,
                b.rise,
                b.ridge[0],
                b.ridge[1],
                b.centre[0],
                b.centre[1],
                b.half_depth,
            )
        polys = np.array([b.polygon for b in world.buildings], dtype=object)
        return table, polys, shapely.bounds(polys) if n else np.zeros((0, 4))

    return _cached(world, "buildings", make)


def render_surface(world: World, grid: RasterGrid) -> Surface:
    """The latent world on ``grid`` (north-up, EPSG:25832)."""
    xs, ys = pixel_centres(grid)
    geoms, mats, parcels, bounds = _area_shapes(world)
    vis = np.flatnonzero(_visible(bounds, grid))
    material = np.full(grid.shape, int(Material.GRASS), dtype=np.uint8)  # beyond the domain
    _burn([(geoms[i], int(mats[i])) for i in vis], grid, np.uint8, out=material)
    parcel = _burn([(geoms[i], int(parcels[i])) for i in vis if parcels[i] > 0], grid, np.int32)
    _burn([(world.ballast, int(Material.BALLAST))], grid, np.uint8, out=material)
    road_polys, road_mats, road_bounds = _road_shapes(world)
    vis = np.flatnonzero(_visible(road_bounds, grid))
    _burn([(road_polys[i], int(road_mats[i])) for i in vis], grid, np.uint8, out=material)

    table, polys, b_bounds = _building_table(world)
    vis = np.flatnonzero(_visible(b_bounds, grid))
    building = _burn([(polys[i], int(i) + 1) for i in vis], grid, np.int32)
    roofs = roof_heights(building, table, xs, ys)
    crowns, tone = stamp_trees(world, grid)
    canopy = crowns > roofs
    objects = np.maximum(roofs, crowns)
    return Surface(
        grid, material, parcel, building, world.terrain.on_grid(grid), objects, canopy, tone
    )


def roof_heights(
    building: np.ndarray, table: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> np.ndarray:
    """Roof height above terrain at every building pixel: flat, or a gable along the ridge."""
    out = np.zeros(building.shape, dtype=np.float32)
    rows, cols = np.nonzero(building)
    if rows.size == 0:
        return out
    eave, rise, rx, ry, cx, cy, half = table[building[rows, cols]].T
    across = np.abs((xs[cols] - cx) * -ry + (ys[rows] - cy) * rx)  # distance from the ridge line
    out[rows, cols] = eave + rise * np.clip(1.0 - across / half, 0.0, 1.0)
    return out


def stamp_trees(world: World, grid: RasterGrid) -> tuple[np.ndarray, np.ndarray]:
    """Crown heights (m above terrain) and crown tones on ``grid``: the highest crown wins."""
    trees = world.trees
    res = grid.transform.a
    left, bottom, right, top = grid.bounds
    r = trees.radius.astype(np.float64)
    sel = np.flatnonzero(
        (trees.x + r > left) & (trees.x - r < right) & (trees.y + r > bottom) & (trees.y - r < top)
    )
    height, width = grid.shape
    # key = crown height in cm * 256 + tone (0..255): one maximum keeps the top crown and its tone
    key = np.zeros(height * width, dtype=np.int32)
    if sel.size:
        x, y, h = trees.x[sel], trees.y[sel], trees.height[sel].astype(np.float64)
        rad, tone = r[sel], trees.tone[sel]
        col_c = np.round((x - left) / res - 0.5).astype(np.int64)
        row_c = np.round((top - y) / res - 0.5).astype(np.int64)
        reach = np.ceil(rad / res).astype(np.int64)
        for k in np.unique(reach):
            group = np.flatnonzero(reach == k)
            off = np.arange(-k, k + 1)
            dr, dc = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
            chunk = max(1, 4_000_000 // dr.size)
            for start in range(0, group.size, chunk):
                g = group[start : start + chunk]
                rows = row_c[g, None] + dr[None, :]  # (trees, offsets)
                cols = col_c[g, None] + dc[None, :]
                px = left + (cols + 0.5) * res
                py = top - (rows + 0.5) * res
                d = np.hypot(px - x[g, None], py - y[g, None]) / rad[g, None]
                inside = (d <= 1.0) & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
                conifer = (tone[g] > CONIFER_TONE)[:, None]
                drop = np.where(conifer, CROWN_DROP_CONIFER * d, CROWN_DROP_DECIDUOUS * d * d)
                value = h[g, None] * (1.0 - drop)
                packed = (
                    np.round(value * 100).astype(np.int32) * 256
                    + np.round(tone[g] * 255).astype(np.int32)[:, None]
                )
                np.maximum.at(key, (rows * width + cols)[inside], packed[inside])
    key = key.reshape(height, width)
    return (key // 256).astype(np.float32) / 100.0, (key % 256).astype(np.float32) / 255.0


def cast_shadow(
    dsm: np.ndarray, res: float, azimuth_deg: float, elevation_deg: float, max_height: float
) -> np.ndarray:
    """Pixels in the shadow of a light (sun or radar) at ``azimuth_deg``/``elevation_deg``.

    A pixel is shadowed when a surface point toward the light, ``t`` pixels
    away, rises above the ray through it: ``dsm[p + t*d] - t*res*tan(e) > dsm[p]``.
    Shadows therefore fall away from the light, ``h / tan(e)`` metres long
    behind an object of height ``h``; ``max_height`` bounds the search.
    """
    az = math.radians(azimuth_deg)
    drop = res * math.tan(math.radians(elevation_deg))
    steps = int(math.ceil(max_height / drop)) if max_height > 0 else 0
    d_col, d_row = math.sin(az), -math.cos(az)  # one pixel toward the light (row axis points south)
    height, width = dsm.shape
    reach = dsm.copy()
    for t in range(1, steps + 1):
        oc, orow = int(round(t * d_col)), int(round(t * d_row))
        if abs(oc) >= width or abs(orow) >= height:
            break
        dst = (slice(max(0, -orow), height - max(0, orow)), slice(max(0, -oc), width - max(0, oc)))
        src = (slice(max(0, orow), height - max(0, -orow)), slice(max(0, oc), width - max(0, -oc)))
        np.maximum(reach[dst], dsm[src] - np.float32(t * drop), out=reach[dst])
    return reach > dsm + SHADOW_EPS_M


def shading(dsm: np.ndarray, res: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Lambertian illumination of the surface relative to flat ground (1.0 on the flat)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    d_row, d_col = np.gradient(dsm.astype(np.float32), res)
    dz_dx, dz_dy = d_col, -d_row  # y grows northward, rows southward
    sx, sy, sz = math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)
    lit = (-dz_dx * sx - dz_dy * sy + sz) / np.sqrt(dz_dx**2 + dz_dy**2 + 1.0)
    return np.clip(lit / sz, 0.25, 1.6).astype(np.float32)


def crop_surface(surface: Surface, margin_px: int) -> Surface:
    """The inner part of a surface rendered on an :func:`expanded` grid."""
    from affine import Affine

    g, m = surface.grid, margin_px
    t = g.transform
    grid = RasterGrid(
        g.crs,
        Affine(t.a, 0.0, t.c + m * t.a, 0.0, t.e, t.f + m * t.e),
        g.width - 2 * m,
        g.height - 2 * m,
    )
    inner = (slice(m, g.height - m), slice(m, g.width - m))
    return Surface(
        grid,
        *(
            getattr(surface, f)[inner]
            for f in ("material", "parcel", "building", "terrain", "objects", "canopy", "tree_tone")
        ),
    )


def expanded(grid: RasterGrid, margin_px: int) -> RasterGrid:
    """``grid`` grown by ``margin_px`` pixels on every side."""
    from affine import Affine

    t = grid.transform
    transform = Affine(t.a, 0.0, t.c - margin_px * t.a, 0.0, t.e, t.f - margin_px * t.e)
    return RasterGrid(grid.crs, transform, grid.width + 2 * margin_px, grid.height + 2 * margin_px)


# --------------------------------------------------------------------------- ground truth


def truth_landcover(world: World, grid: RasterGrid, catalog) -> np.ndarray:
    """The 10-class map that ATKIS + OSM of this world should yield (pixel centres burned).

    ATKIS areas map through ``catalog.atkis``; OSM roads and railways are
    buffered by the catalog widths; buildings mapped in OSM burn last, in the
    catalog's ``burn_order``. Unmapped object types stay 0 (unlabelled).
    """
    atkis, osm, classes = catalog.atkis, catalog.osm, catalog.classes
    shapes: dict[str, list] = {key: [] for key in classes.keys}
    for f in world.atkis:
        key = atkis.types.get(f.objart_txt)
        rule = atkis.by_attribute.get(f.objart_txt)
        if rule is not None:
            key = rule.values.get(str(f.veg), rule.default) if f.veg is not None else rule.default
        if key:
            shapes[key].append(f.polygon)
    for road in world.roads:
        width = osm.highways.widths_m.get(road.highway)
        if width:
            key = osm.highways.classes.get(road.highway, osm.highways.default_class)
            shapes[key].append(road.line.buffer(width / 2))
    rail_width = osm.railways.widths_m.get("rail")
    for line in world.railways:
        shapes[osm.railways.default_class].append(line.buffer(rail_width / 2))
    for b in world.buildings:
        if b.in_osm:
            shapes[osm.building_class].append(b.polygon)
    out = np.full(grid.shape, classes.unlabelled, dtype=np.uint8)
    for key in classes.burn_order:
        _burn([(g, classes.id_of(key)) for g in shapes[key]], grid, np.uint8, out=out)
    return out
