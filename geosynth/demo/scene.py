"""The latent scene of the demo world: one truth that every provider file is rendered from.

This module holds the scene's types and parameters;
:func:`geosynth.demo.layout.build_world` lays out, from one seed, a river with its floodplain
and an oxbow lake, rolling hills with forest, fields and meadows with hedges
and single trees, a town with streets, houses, apartment blocks and
industrial halls, a motorway, main roads, farm tracks and a double-track
railway. Geometry is in EPSG:25832 metres and covers the region plus
:data:`DOMAIN_MARGIN_M` on every side (SAR scenes reach beyond the tiles).

What each modality sees is decided here, on purpose:

* land-cover vectors (ATKIS) are generalised areas: no single trees, no
  hedges, no buildings, fields of one use merged, boundaries simplified;
* OSM has the buildings (but not the garden sheds), roads and tracks;
* the surface (lidar, shadows, SAR) has every object with its true height,
  but the flat classes (water, roads, fields, meadows) all lie on the
  smooth terrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from geosynth.errors import UsageError
from geosynth.grid import TileId
from geosynth.names import LAYOUTS

WORLD_CRS = "EPSG:25832"  # the world's coordinates: the catalog grid's CRS, as NRW publishes
DOMAIN_MARGIN_M = 300.0
MAX_TILES = 100  # a demo world is meant to be small; larger ones take minutes per km^2


class Material(IntEnum):
    """What the ground is made of where no building or tree covers it."""

    NONE = 0
    GRASS = 1
    ARABLE = 2
    FOREST_FLOOR = 3
    SHRUB = 4
    WATER = 5
    GARDEN = 6
    PAVED = 7
    CEMETERY = 8
    SQUARE = 9
    VERGE = 10
    ASPHALT = 11
    TRACK = 12
    BALLAST = 13


# area kind -> (ground material, ATKIS object type, ATKIS object code, VEG)
AREA_KINDS: dict[str, tuple[Material, str, str, str | None]] = {
    "arable": (Material.ARABLE, "AX_Landwirtschaft", "43001", "1010"),
    "grassland": (Material.GRASS, "AX_Landwirtschaft", "43001", "1020"),
    "forest": (Material.FOREST_FLOOR, "AX_Wald", "43002", None),
    "shrub": (Material.SHRUB, "AX_Gehoelz", "43003", None),
    "residential": (Material.GARDEN, "AX_Wohnbauflaeche", "41001", None),
    "industrial": (Material.PAVED, "AX_IndustrieUndGewerbeflaeche", "41002", None),
    "cemetery": (Material.CEMETERY, "AX_Friedhof", "41009", None),  # not in the catalog
    "square": (Material.SQUARE, "AX_Platz", "42009", None),
    "road_corridor": (Material.VERGE, "AX_Strassenverkehr", "42001", None),
    "rail_corridor": (Material.VERGE, "AX_Bahnverkehr", "42010", None),
    "river": (Material.WATER, "AX_Fliessgewaesser", "44001", None),
    "lake": (Material.WATER, "AX_StehendesGewaesser", "44006", None),
}
# the order in which areas are painted (later ones win where generalised shapes overlap)
AREA_ORDER = tuple(AREA_KINDS)

CROPS = ("wheat", "barley", "rapeseed", "maize", "sugar_beet", "bare")
CROP_WEIGHTS = (0.32, 0.16, 0.12, 0.2, 0.1, 0.1)


@dataclass(frozen=True)
class Campaign:
    """One orthophoto flight: the year in the file names and the season of the vegetation.

    The sun of the flight follows from its date and ``hour_utc`` at the region
    (:func:`geosynth.demo.dop.campaign_sun`): low in March and October, long
    shadows; high in June. ``leaf_on``: deciduous crowns in leaf.
    """

    year: int
    month: int
    day: int
    season: str  # "spring", "summer", "leaf_off" (early spring) or "autumn"
    tint: tuple[float, float, float, float]  # radiometric gain of R, G, B, NIR
    flight: str = ""  # the flight number NRW's metadata gives (Bildflugnummer)
    hour_utc: float = 10.5  # mid-morning flights, as aerial surveys fly near noon
    leaf_on: bool = True

    @property
    def date(self) -> str:
        return f"{self.year}-{self.month:02d}-{self.day:02d}"


#: the campaigns whose years have crop tables (one crop rotation year each)
CAMPAIGNS = (
    Campaign(2022, 5, 6, "spring", (1.0, 1.0, 1.0, 1.0), "2022-017"),
    Campaign(2023, 6, 27, "summer", (1.05, 1.02, 0.96, 0.97), "2023-042"),
)
#: every flight of the demo world: the two above, a leaf-off flight in March and an
#: autumn flight in October of the same years (the same crops, another season)
FLIGHTS = (
    *CAMPAIGNS,
    Campaign(2022, 3, 18, "leaf_off", (0.98, 1.0, 1.03, 1.0), "2022-006", leaf_on=False),
    Campaign(2023, 10, 9, "autumn", (1.04, 1.0, 0.94, 0.98), "2023-071"),
)


@dataclass(frozen=True)
class WorldParams:
    """The parameters that fix a demo world (with the seed: every byte of it).

    ``tiles`` (W x H) and ``origin`` (E, N of the south-west tile in km) have
    no defaults here: the default extent is the catalog's region ``demo``
    (:func:`geosynth.demo.world_params`).
    """

    tiles: tuple[int, int]
    origin: tuple[int, int]
    seed: int = 0
    dop_resolution: float = 0.5
    lidar_density: float = 4.0
    layout: str = "tiles"  # how the orthophotos and point clouds are published

    def __post_init__(self):
        nx, ny = self.tiles
        if not (isinstance(nx, int) and isinstance(ny, int)) or nx < 1 or ny < 1:
            raise UsageError(f"--tiles: expected W x H with W, H >= 1, got {nx}x{ny}")
        if nx * ny > MAX_TILES:
            raise UsageError(f"--tiles: at most {MAX_TILES} tiles in a demo world, got {nx}x{ny}")
        if not all(isinstance(v, int) for v in self.origin):
            raise UsageError(f"--origin: expected two integers E,N in km, got {self.origin}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed: expected a non-negative integer, got {self.seed!r}")
        res = float(self.dop_resolution)
        pixels = 1000.0 / res if res > 0 else 0
        if not (0.05 <= res <= 10.0) or abs(pixels - round(pixels)) > 1e-6:
            raise UsageError(
                f"--dop-resolution: expected metres in [0.05, 10] that divide 1000 m evenly, "
                f"got {self.dop_resolution}"
            )
        if self.layout not in LAYOUTS:
            raise UsageError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not (0.1 <= float(self.lidar_density) <= 50.0):
            raise UsageError(
                f"--lidar-density: expected 0.1 to 50 points per m^2, got {self.lidar_density}"
            )

    @property
    def region_bounds(self) -> tuple[float, float, float, float]:
        e, n = self.origin
        nx, ny = self.tiles
        return (e * 1000.0, n * 1000.0, (e + nx) * 1000.0, (n + ny) * 1000.0)

    @property
    def domain_bounds(self) -> tuple[float, float, float, float]:
        left, bottom, right, top = self.region_bounds
        m = DOMAIN_MARGIN_M
        return (left - m, bottom - m, right + m, top + m)

    def tile_ids(self) -> list[TileId]:
        """The tiles, west to east within each row, rows south to north."""
        e, n = self.origin
        nx, ny = self.tiles
        return [TileId(e + i, n + j) for j in range(ny) for i in range(nx)]

    def tile_index(self, tile: TileId) -> tuple[int, int]:
        return tile.e_km - self.origin[0], tile.n_km - self.origin[1]

    def as_dict(self) -> dict:
        return {
            "tiles": list(self.tiles),
            "origin": list(self.origin),
            "seed": self.seed,
            "dop_resolution": float(self.dop_resolution),
            "lidar_density": float(self.lidar_density),
            "layout": self.layout,
        }


@dataclass
class Area:
    """A land-use area of the latent world (precise boundary); ``parcel`` numbers fields."""

    polygon: object  # shapely Polygon
    kind: str
    parcel: int = 0


@dataclass
class Road:
    line: object  # shapely LineString
    highway: str
    width: float  # true paved width (m)
    name: str = ""

    @property
    def material(self) -> Material:
        return Material.TRACK if self.highway == "track" else Material.ASPHALT


@dataclass
class Building:
    """A building: footprint, eave height above terrain and a gable (``rise`` > 0) or flat roof."""

    polygon: object  # shapely Polygon (may have a courtyard)
    eave: float
    rise: float
    ridge: tuple[float, float]  # unit vector along the ridge
    centre: tuple[float, float]
    half_depth: float  # distance from ridge to eave (gable roofs)
    tags: dict = field(default_factory=dict)
    in_osm: bool = True
    tone: float = 0.5  # roof colour, 0..1

    @property
    def height(self) -> float:
        return self.eave + self.rise


@dataclass
class Trees:
    """Tree crowns as arrays: position, top height (m above terrain), crown radius, colour tone."""

    x: np.ndarray
    y: np.ndarray
    height: np.ndarray
    radius: np.ndarray
    tone: np.ndarray
    kind: np.ndarray  # TREE_KINDS index

    @classmethod
    def concat(cls, parts: list[Trees]) -> Trees:
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("x", "y", "height", "radius", "tone", "kind")
            )
        )

    def __len__(self) -> int:
        return len(self.x)


TREE_KINDS = ("forest", "shrub", "hedge", "field", "garden", "street", "riparian")


@dataclass
class AtkisFeature:
    polygon: object
    objart_txt: str
    objart: str
    veg: str | None


@dataclass
class World:
    """The latent scene: everything the writers render from."""

    params: WorldParams
    terrain: object  # geosynth.demo.terrain.Terrain
    river: object  # shapely LineString (centreline, upstream first)
    river_width: float
    floodplain_m: float
    areas: list[Area]
    roads: list[Road]
    railways: list[object]  # track centrelines (LineString)
    ballast: object  # polygon of the track bed
    buildings: list[Building]
    trees: Trees
    atkis: list[AtkisFeature]
    crops: dict[int, np.ndarray]  # campaign year -> crop index per parcel id
    sun_azimuth: float  # degrees clockwise from north
    sun_elevation: float  # degrees above the horizon
    town_centre: tuple[float, float]
    notes: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # derived geometry

    @property
    def max_object_height(self) -> float:
        h = [b.height for b in self.buildings] + [float(self.trees.height.max(initial=0.0))]
        return max(h + [0.0])

    def campaign_of(self, tile: TileId) -> Campaign:
        """The flight of a tile: :data:`FLIGHTS` in turn along each row, every row shifted by
        two (``(i + 2 j) % 4``), so that neighbouring tiles show other seasons and a column
        of tiles is not one season: the default 4 x 2 world's test tiles (columns 358 and
        359 but for 359_5646) then show seasons its training tiles show too."""
        i, j = self.params.tile_index(tile)
        return FLIGHTS[(i + 2 * j) % len(FLIGHTS)]
