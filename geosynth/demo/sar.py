"""TerraSAR-X spotlight EEC scenes of the demo world.

Each scene is geocoded (EEC: enhanced ellipsoid corrected) onto a north-up
grid in EPSG:32632 (WGS84 / UTM 32N, as TerraSAR-X delivers) with 1.25 m
pixels whose origin is offset from the 1 km tile grid. The valid data is the
swath footprint, a rectangle rotated by the orbit heading; outside it the
amplitude is 0 (no data; the GeoTIFF carries no nodata tag, as the real
products). Amplitudes are digital numbers with ``beta0 = calFactor * DN**2``.

The radar sees the latent surface from ``incidence`` degrees off nadir,
looking right of the flight direction:

* class-dependent backscatter (``SIGMA0_DB``), modulated by the local
  incidence on slopes and roofs;
* double bounce: bright lines at the foot of building walls facing the sensor;
* radar shadow behind tall objects, on the far side of the look direction
  (``h tan(incidence)`` long behind an object ``h`` metres tall);
* layover in front of buildings, on the sensor's side: walls and roofs fold
  over the ground ``h / tan(incidence)`` towards the sensor (brighter there);
* multiplicative speckle (gamma-distributed intensity, ``LOOKS`` looks).

Ascending and descending scenes look from opposite sides (west and east), so
shadow and layover of the same building lie on opposite sides. The footprints
are placed so that some tiles are covered by two scenes and the south-east
tile by too little (below the catalog's ``min_valid_fraction``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from scipy import ndimage

from geosynth.demo.noise import rng_for
from geosynth.demo.render import cast_shadow, render_surface, shading
from geosynth.demo.scene import WORLD_CRS, Material, World
from geosynth.grid import RasterGrid
from geosynth.sources.filenames import tsx_product_name

S_SAR = 41
SAR_CRS = "EPSG:32632"
PIXEL_M = 1.25
GRID_OFFSET_M = (17.3, 41.9)  # the SAR pixel grid is not aligned with the tiles
LOOKS = 1.5
CAL_FACTOR = 1.2e-5
SIGMA0_DB = {
    Material.GRASS: -11.0,
    Material.ARABLE: -9.0,
    Material.FOREST_FLOOR: -8.0,
    Material.SHRUB: -8.0,
    Material.WATER: -23.0,
    Material.GARDEN: -10.0,
    Material.PAVED: -13.0,
    Material.CEMETERY: -10.0,
    Material.SQUARE: -14.0,
    Material.VERGE: -11.0,
    Material.ASPHALT: -18.0,
    Material.TRACK: -14.0,
    Material.BALLAST: -10.0,
}
ROOF_DB, CROWN_DB, DOUBLE_BOUNCE_DB, SHADOW_DB = -9.0, -6.5, 10.0, -24.0
LAYOVER_DB = -7.0  # backscatter of walls and roofs folded onto the ground in front
CANOPY_CLOSING_PX = 5  # crowns are merged into a closed canopy over this many pixels
DOUBLE_BOUNCE_PX = 2  # width of the bright line at the wall foot
SHORT_FRACTION = 0.6  # the south-east tile's coverage by all scenes stays below this


@dataclass(frozen=True)
class SceneSpec:
    """One acquisition: timing, orbit geometry and the footprint (EPSG:25832 polygon)."""

    name: str
    start: str  # YYYYMMDDTHHMMSS
    stop: str
    orbit: str  # ASCENDING or DESCENDING
    abs_orbit: int
    heading_deg: float  # flight direction, clockwise from north
    incidence_deg: float
    beam: str
    footprint: object  # shapely Polygon

    @property
    def look_azimuth(self) -> float:
        """Ground direction away from the (right-looking) sensor."""
        return (self.heading_deg + 90.0) % 360.0

    @property
    def sensor_azimuth(self) -> float:
        return (self.heading_deg - 90.0) % 360.0

    def geometry(self) -> dict:
        """Where shadows and layover fall (world.json): azimuths and metres per metre of height."""
        t = math.tan(math.radians(self.incidence_deg))
        return {
            "shadow_azimuth_deg": round(self.look_azimuth, 3),
            "layover_azimuth_deg": round(self.sensor_azimuth, 3),
            "shadow_m_per_m": round(t, 4),
            "layover_m_per_m": round(1.0 / t, 4),
        }

    @property
    def image_name(self) -> str:
        return f"IMAGE_HH_SRA_{self.beam}.tif"


# (start, stop, orbit, absolute orbit, heading, incidence, beam)
_ACQUISITIONS = (
    ("20200412T172103", "20200412T172104", "ASCENDING", 55321, 349.0, 34.0, "spot_042"),
    ("20200417T054312", "20200417T054313", "DESCENDING", 55398, 191.0, 41.0, "spot_071"),
    ("20200504T171214", "20200504T171215", "ASCENDING", 55654, 347.5, 27.0, "spot_019"),
)


def _covering_rectangle(must: tuple[float, float, float, float], heading_deg: float):
    """The smallest rectangle along ``heading_deg`` that contains the box ``must``."""
    from shapely import affinity
    from shapely.geometry import box

    rect = box(*must)
    c = rect.centroid
    # rotate into the scene frame (along-track = north), take the bounds, rotate back
    local = affinity.rotate(rect, heading_deg, origin=c)
    return affinity.rotate(box(*local.bounds), -heading_deg, origin=c)


def scene_specs(world: World) -> list[SceneSpec]:
    """Three scenes over the region: west (ascending), east (descending), south-west (ascending)."""
    from shapely import union_all
    from shapely.geometry import box

    left, bottom, right, top = world.params.region_bounds
    nx, ny = world.params.tiles
    t = 1000.0
    width, height = right - left, top - bottom
    # boxes each scene must cover fully, in region coordinates (see the module docstring)
    east_x0 = max(nx - 2, 0) * t
    musts = [
        (-60.0, -60.0, (nx - 1) * t + 120.0, height + 60.0),
        (
            east_x0 - 60.0,
            (t + 120.0 if ny > 1 else -60.0),
            (width if ny > 1 else (nx - 1) * t) + 120.0,
            height + 60.0,
        ),
        (-60.0, -60.0, min(t, width) + 60.0, min(t, height) + 60.0),
    ]
    footprints = [
        _covering_rectangle((left + m[0], bottom + m[1], left + m[2], bottom + m[3]), a[4])
        for a, m in zip(_ACQUISITIONS, musts, strict=True)
    ]
    if ny > 1:
        # lift the east scene until the south-east tile is clearly short of data
        south_east = box(right - t, bottom, right, bottom + t)
        for _ in range(20):
            if union_all(footprints).intersection(south_east).area < SHORT_FRACTION * t * t:
                break
            m = musts[1] = (musts[1][0], musts[1][1] + 50.0, musts[1][2], musts[1][3])
            footprints[1] = _covering_rectangle(
                (left + m[0], bottom + m[1], left + m[2], bottom + m[3]), _ACQUISITIONS[1][4]
            )
    specs = []
    for (start, stop, orbit, abs_orbit, heading, incidence, beam), footprint in zip(
        _ACQUISITIONS, footprints, strict=True
    ):
        specs.append(
            SceneSpec(
                tsx_product_name(start, stop),
                start,
                stop,
                orbit,
                abs_orbit,
                heading,
                incidence,
                beam,
                footprint,
            )
        )
    return specs


def scene_grid(spec: SceneSpec) -> RasterGrid:
    """The scene's north-up pixel grid in EPSG:32632, snapped to :data:`GRID_OFFSET_M`."""
    from pyproj import Transformer

    to_utm = Transformer.from_crs(WORLD_CRS, SAR_CRS, always_xy=True)
    minx, miny, maxx, maxy = spec.footprint.bounds
    xs, ys = to_utm.transform([minx, maxx], [miny, maxy])
    ox, oy = GRID_OFFSET_M
    x0 = math.floor((min(xs) - ox) / PIXEL_M) * PIXEL_M + ox
    y1 = math.ceil((max(ys) - oy) / PIXEL_M) * PIXEL_M + oy
    width = int(math.ceil((max(xs) - x0) / PIXEL_M))
    height = int(math.ceil((y1 - min(ys)) / PIXEL_M))
    return RasterGrid(SAR_CRS, Affine(PIXEL_M, 0.0, x0, 0.0, -PIXEL_M, y1), width, height)


def render_scene(world: World, spec: SceneSpec) -> tuple[np.ndarray, RasterGrid]:
    """Amplitude DN (H, W) uint16 of one scene (0 outside the footprint) and its grid."""
    from pyproj import Transformer
    from rasterio.features import rasterize

    grid = scene_grid(spec)
    # the same grid in the world's CRS (ETRS89 and WGS84 UTM differ by a shift below 1 m here)
    to_world = Transformer.from_crs(SAR_CRS, WORLD_CRS, always_xy=True)
    t = grid.transform
    x0, y0 = to_world.transform(t.c, t.f)
    local = RasterGrid(WORLD_CRS, Affine(t.a, 0.0, x0, 0.0, t.e, y0), grid.width, grid.height)
    s = render_surface(world, local)
    # the radar sees a closed canopy (volume scattering), not single crowns with gaps
    crowns = ndimage.maximum_filter(np.where(s.canopy, s.objects, 0.0), size=CANOPY_CLOSING_PX)
    in_canopy = s.canopy | (crowns > s.objects + 0.5)
    dsm = s.terrain + np.maximum(s.objects, crowns)
    elevation = 90.0 - spec.incidence_deg
    lut = np.zeros(len(Material), dtype=np.float32)
    for m, db in SIGMA0_DB.items():
        lut[m] = db
    sigma_db = lut[s.material]
    roof = (s.building > 0) & ~s.canopy
    sigma_db[roof] = ROOF_DB
    sigma = 10.0 ** (sigma_db / 10.0)
    # local incidence: slopes and roof planes facing the sensor are brighter
    sigma *= shading(dsm, PIXEL_M, spec.sensor_azimuth, elevation) ** 2
    sigma[in_canopy] = 10.0 ** (CROWN_DB / 10.0)
    front = wall_foot(roof, spec.look_azimuth, DOUBLE_BOUNCE_PX) & ~in_canopy
    sigma[front] = 10.0 ** (DOUBLE_BOUNCE_DB / 10.0)
    shadow = cast_shadow(dsm, PIXEL_M, spec.sensor_azimuth, elevation, world.max_object_height)
    sigma[shadow & ~front] = 10.0 ** (SHADOW_DB / 10.0)
    # layover of the buildings' walls and roofs (trees scatter in their volume, already bright):
    # lit from the far side at the incidence angle, the "shadow" falls towards the sensor
    built = s.terrain + np.where(roof, s.objects, 0.0).astype(np.float32)
    layover = cast_shadow(
        built, PIXEL_M, spec.look_azimuth, spec.incidence_deg, world.max_object_height
    )
    sigma[layover & ~shadow] += 10.0 ** (LAYOVER_DB / 10.0)

    rng = rng_for(world.params.seed, S_SAR, int(spec.start[:8]), int(spec.start[9:]))
    speckle = rng.gamma(LOOKS, 1.0 / LOOKS, size=sigma.shape).astype(np.float32)
    dn = np.sqrt(sigma * speckle / CAL_FACTOR)
    dn = np.clip(np.round(dn), 1, 65535).astype(np.uint16)
    inside = rasterize(
        [(spec.footprint, 1)], out_shape=local.shape, transform=local.transform, dtype=np.uint8
    ).astype(bool)
    dn[~inside] = 0
    return dn, grid


def wall_foot(buildings: np.ndarray, look_azimuth: float, width_px: int) -> np.ndarray:
    """Ground pixels in front of walls that face the sensor (within ``width_px`` of the wall).

    A pixel is at a wall foot when, stepping away from the sensor along the
    look direction, a building starts within ``width_px`` pixels.
    """
    az = math.radians(look_azimuth)
    d_col, d_row = math.sin(az), -math.cos(az)
    height, width = buildings.shape
    hit = np.zeros_like(buildings)
    for t in range(1, width_px + 1):
        oc, orow = int(round(t * d_col)), int(round(t * d_row))
        dst = (slice(max(0, -orow), height - max(0, orow)), slice(max(0, -oc), width - max(0, oc)))
        src = (slice(max(0, orow), height - max(0, -orow)), slice(max(0, oc), width - max(0, -oc)))
        hit[dst] |= buildings[src]
    return hit & ~buildings


def annotation_xml(spec: SceneSpec, grid: RasterGrid) -> bytes:
    """A main annotation modelled on the TerraSAR-X level-1b product (with ``calFactor``)."""
    import xml.etree.ElementTree as ET

    from pyproj import Transformer

    def sub(parent, tag, text=None, **attrs):
        el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
        if text is not None:
            el.text = str(text)
        return el

    def utc(stamp: str) -> str:
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}.000000Z"

    to_wgs = Transformer.from_crs(WORLD_CRS, "EPSG:4326", always_xy=True)
    root = ET.Element("level1Product")
    header = sub(root, "generalHeader", fileName=f"{spec.name}.xml")
    sub(header, "itemName", "Level 1B Product")
    sub(header, "mission", "TSX-1")
    sub(header, "source", "geosynth demo world (synthetic, not a DLR product)")
    sub(header, "generationTime", utc(spec.stop))
    comps = sub(root, "productComponents")
    ann = sub(comps, "annotation")
    sub(ann, "type", "MAIN")
    loc = sub(sub(ann, "file"), "location")
    sub(loc, "host", ".")
    sub(loc, "path", ".")
    sub(loc, "filename", f"{spec.name}.xml")
    img = sub(comps, "imageData", layerIndex=1)
    sub(img, "polLayer", "HH")
    loc = sub(sub(img, "file"), "location")
    sub(loc, "host", ".")
    sub(loc, "path", "IMAGEDATA")
    sub(loc, "filename", spec.image_name)

    info = sub(root, "productInfo")
    mission = sub(info, "missionInfo")
    sub(mission, "mission", "TSX-1")
    sub(mission, "orbitPhase", 1)
    sub(mission, "absOrbit", spec.abs_orbit)
    sub(mission, "orbitDirection", spec.orbit)
    acq = sub(info, "acquisitionInfo")
    sub(acq, "sensor", "SAR")
    sub(acq, "imagingMode", "SL")
    sub(acq, "lookDirection", "RIGHT")
    sub(acq, "polarisationMode", "SINGLE")
    sub(sub(acq, "polarisationList"), "polLayer", "HH")
    sub(acq, "elevationBeamConfiguration", spec.beam)
    variant = sub(info, "productVariantInfo")
    sub(variant, "productType", "EEC_SE___SL_S_SRA")
    sub(variant, "productVariant", "EEC")
    sub(variant, "projection", "MAP")
    sub(variant, "mapProjection", "UTM")
    sub(variant, "resolutionVariant", "SE")
    sub(variant, "radiometricCorrection", "CALIBRATED")
    data = sub(info, "imageDataInfo")
    raster = sub(data, "imageRaster")
    sub(raster, "numberOfRows", grid.height)
    sub(raster, "numberOfColumns", grid.width)
    sub(raster, "rowSpacing", PIXEL_M, units="m")
    sub(raster, "columnSpacing", PIXEL_M, units="m")
    sub(data, "imageDataFormat", "GEOTIFF")
    sub(data, "imageDataType", "DETECTED")
    sub(data, "imageDataDepth", 16)
    scene = sub(info, "sceneInfo")
    sub(sub(scene, "start"), "timeUTC", utc(spec.start))
    sub(sub(scene, "stop"), "timeUTC", utc(spec.stop))
    c = spec.footprint.centroid
    lon, lat = to_wgs.transform(c.x, c.y)
    centre = sub(scene, "sceneCenterCoord")
    sub(centre, "lat", f"{lat:.6f}")
    sub(centre, "lon", f"{lon:.6f}")
    sub(centre, "incidenceAngle", f"{spec.incidence_deg:.3f}")
    sub(scene, "headingAngle", f"{spec.heading_deg:.3f}")
    for x, y in list(spec.footprint.exterior.coords)[:4]:
        lon, lat = to_wgs.transform(x, y)
        corner = sub(scene, "sceneCornerCoord")
        sub(corner, "lat", f"{lat:.6f}")
        sub(corner, "lon", f"{lon:.6f}")

    geo = sub(sub(root, "productSpecific"), "geocodedImageInfo")
    proj = sub(geo, "mapProjection")
    sub(proj, "geodeticDatum", "WGS84")
    sub(proj, "projection", "UTM")
    sub(proj, "zone", 32)
    sub(proj, "hemisphere", "NORTH")
    spacing = sub(sub(geo, "geoParameter"), "pixelSpacing")
    sub(spacing, "easting", PIXEL_M)
    sub(spacing, "northing", PIXEL_M)

    cal = sub(root, "calibration")
    const = sub(cal, "calibrationConstant", layerIndex=1)
    sub(const, "polLayer", "HH")
    sub(const, "calFactor", f"{CAL_FACTOR:.6e}")
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
