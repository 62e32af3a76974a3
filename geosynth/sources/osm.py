"""OpenStreetMap buildings, roads and railways for the landcover stage.

OSM comes from OSM XML files (``.osm``, ``.osm.bz2``; read with
``osmnx.features_from_xml``) or, for real regions, from the Overpass API
(``osmnx.features_from_polygon`` with osmnx's response cache). Either way the
features arrive in WGS84 and are reprojected to the output grid's CRS here.

Which features become which class is catalog data (``osm:`` in
``data_catalog.yaml``):

1. buildings: every feature with a ``building`` tag whose value is not
   excluded (``building=no``), polygons and multipolygon relations; holes
   (inner rings, e.g. courtyards) stay holes;
2. highways: lines buffered by half the catalog's full width for their
   ``highway`` value; the class per value comes from ``osm.highways.classes``
   (default ``roads``); closed areas (``area=yes`` squares) are burned as
   they are, without a buffer;
3. railways: likewise with ``osm.railways``.

Lines are buffered with round caps and joins (shapely's default), so ways
that meet at a junction join without notches.

Values without a catalog width (``highway=footway``, ``railway=platform``,
...) are *not* burned: they are counted in the report under ``unmapped`` as
``"highway=footway"``. Point features (turning circles, level crossings) are
counted under ``ignored`` and never burned.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosynth.catalog import OsmRules
from geosynth.errors import DataError
from geosynth.grid import RasterGrid

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

OVERPASS = "overpass"  # the --osm value that queries Overpass instead of reading a file
WGS84 = "EPSG:4326"


def osm_tags(rules: OsmRules) -> dict[str, bool]:
    """The OSM tag filter for the features the catalog maps."""
    return {rules.building_tag: True, rules.highways.tag: True, rules.railways.tag: True}


def default_cache_folder() -> Path:
    """Where Overpass responses are cached: ``$GEOSYNTH_CACHE/osmnx`` or ``~/.cache/geosynth/osmnx``."""
    root = os.environ.get("GEOSYNTH_CACHE") or Path.home() / ".cache" / "geosynth"
    return Path(root) / "osmnx"


# --------------------------------------------------------------------------- reading


def read_osm_file(path: str | os.PathLike, rules: OsmRules) -> gpd.GeoDataFrame:
    """The mapped OSM features of one XML file (WGS84); an empty frame if it holds none.

    Raises :class:`DataError` naming the file when it is missing or not OSM XML.
    Parsed files are cached in-process by path, size and modification time, so
    a region build reading one file for many tiles parses it once (and builds
    its spatial index once): treat the returned frame as read-only.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read OSM file: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise DataError(f"{path}: OSM input is not a file")
    tags = tuple(sorted(osm_tags(rules)))
    return _read_osm_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, tags)


@functools.lru_cache(maxsize=2)
def _read_osm_cached(path: str, size: int, mtime_ns: int, tags: tuple[str, ...]):
    import xml.sax
    from xml.etree.ElementTree import ParseError

    import osmnx as ox
    from osmnx._errors import InsufficientResponseError

    log.debug("parsing OSM XML %s (%d bytes)", path, size)
    try:
        return ox.features_from_xml(path, tags=dict.fromkeys(tags, True))
    except InsufficientResponseError:
        return _empty_frame()
    except (ParseError, xml.sax.SAXException, UnicodeDecodeError, EOFError, OSError) as exc:
        # OSError covers a truncated or corrupt .bz2 stream
        raise DataError(f"{path}: not a readable OSM XML file: {exc}") from exc
    except (KeyError, ValueError) as exc:  # e.g. a node without lat/lon
        raise DataError(f"{path}: malformed OSM XML: {exc!r}") from exc


def _empty_frame() -> gpd.GeoDataFrame:
    import geopandas as gpd

    return gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs=WGS84)


@contextlib.contextmanager
def _osmnx_settings(**values: Any) -> Iterator[None]:
    """Set osmnx's global settings for one query and restore them afterwards."""
    import osmnx as ox

    old = {key: getattr(ox.settings, key) for key in values}
    try:
        for key, value in values.items():
            setattr(ox.settings, key, value)
        yield
    finally:
        for key, value in old.items():
            setattr(ox.settings, key, value)


def read_overpass(
    polygon_wgs84,
    rules: OsmRules,
    *,
    cache_folder: str | os.PathLike | None = None,
    overpass_url: str | None = None,
) -> gpd.GeoDataFrame:
    """Query Overpass (through osmnx) for the mapped features inside a WGS84 polygon.

    Responses are cached by osmnx under ``cache_folder`` (default
    :func:`default_cache_folder`), so rebuilding a tile makes no new request.
    ``overpass_url`` overrides osmnx's endpoint (e.g. a local Overpass
    instance). Network failures raise :class:`DataError`.
    """
    import osmnx as ox
    from osmnx._errors import InsufficientResponseError

    settings: dict[str, Any] = {
        "use_cache": True,
        "cache_folder": str(cache_folder or default_cache_folder()),
    }
    if overpass_url:
        settings["overpass_url"] = overpass_url.rstrip("/")
    log.info("querying Overpass for OSM features in %s", polygon_wgs84.bounds)
    try:
        with _osmnx_settings(**settings):
            return ox.features_from_polygon(polygon_wgs84, tags=osm_tags(rules))
    except InsufficientResponseError:
        return _empty_frame()
    except Exception as exc:  # requests' ConnectionError, HTTPError, ... (osmnx re-raises them)
        raise DataError(
            f"Overpass query for bounds {tuple(round(v, 5) for v in polygon_wgs84.bounds)} "
            f"failed: {exc}"
        ) from exc


# --------------------------------------------------------------------------- classification


def _tag_value(row, tag: str) -> str | None:
    value = row.get(tag) if hasattr(row, "get") else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def max_half_width(rules: OsmRules) -> float:
    """Half the widest catalog width: how far a buffered line reaches beyond its centre line."""
    return max([*rules.highways.widths_m.values(), *rules.railways.widths_m.values(), 0.0]) / 2


def grid_polygon_wgs84(grid: RasterGrid, margin: float = 0.0):
    """The grid's bounds widened by ``margin`` (grid units) as a densified WGS84 polygon."""
    from pyproj import Transformer
    from shapely.geometry import Polygon, box

    left, bottom, right, top = grid.bounds
    ring = box(left - margin, bottom - margin, right + margin, top + margin).exterior
    ring = ring.segmentize(max(right - left, top - bottom) / 20)
    to_wgs84 = Transformer.from_crs(grid.crs, WGS84, always_xy=True)
    xs, ys = to_wgs84.transform(*np.asarray(ring.coords).T)
    return Polygon(zip(xs, ys, strict=True))


def osm_shapes(
    gdf: gpd.GeoDataFrame, rules: OsmRules, grid: RasterGrid
) -> tuple[list[tuple[Any, str]], dict[str, Counter]]:
    """Classify and shape OSM features for burning: ``[(geometry in the grid CRS, class_key)], report``.

    Only features within the largest half width of the grid are used: they
    are picked with the WGS84 frame's spatial index, then reprojected. The
    report has three counters: ``features`` per class key, ``unmapped`` per
    ``"tag=value"`` and ``ignored`` per reason.
    """
    import shapely

    features: Counter = Counter()
    unmapped: Counter = Counter()
    ignored: Counter = Counter()
    report = {"features": features, "unmapped": unmapped, "ignored": ignored}
    if gdf is None or len(gdf) == 0:
        return [], report

    near = gdf.sindex.query(grid_polygon_wgs84(grid, max_half_width(rules)), predicate="intersects")
    columns = [
        c
        for c in ("geometry", rules.building_tag, rules.highways.tag, rules.railways.tag)
        if c in gdf.columns
    ]
    projected = gdf.iloc[np.sort(near)][columns].to_crs(grid.crs)
    projected = projected[projected.geometry.notna()]

    shapes: list[tuple[Any, str]] = []
    for row in projected.itertuples(index=False):
        attrs = row._asdict()
        geom = attrs["geometry"]
        if geom is None or geom.is_empty:
            continue
        polygonal = geom.geom_type in ("Polygon", "MultiPolygon")
        lineal = geom.geom_type in ("LineString", "MultiLineString", "LinearRing")

        building = _tag_value(attrs, rules.building_tag)
        if building is not None and building not in rules.building_exclude:
            if polygonal:
                shapes.append(
                    (geom if geom.is_valid else shapely.make_valid(geom), rules.building_class)
                )
                features[rules.building_class] += 1
            else:
                ignored[f"{rules.building_tag} as {geom.geom_type}"] += 1
            continue

        for rule in (rules.highways, rules.railways):
            value = _tag_value(attrs, rule.tag)
            if value is None:
                continue
            if not (polygonal or lineal):
                ignored[f"{rule.tag} as {geom.geom_type}"] += 1
            elif value not in rule.widths_m:
                unmapped[f"{rule.tag}={value}"] += 1
            else:
                cls = rule.classes.get(value, rule.default_class)
                shape = geom if polygonal else geom.buffer(rule.widths_m[value] / 2)
                shapes.append((shape, cls))
                features[cls] += 1
            break
    return shapes, report
