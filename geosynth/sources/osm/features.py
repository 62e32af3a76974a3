"""OpenStreetMap buildings, roads and railways for the landcover stage.

OSM comes from files or, for real regions, from the Overpass API
(``osmnx.features_from_polygon`` with osmnx's response cache). Files, told
apart by their content first and their suffix second (:func:`osm_file_format`):

1. ``.osm.pbf`` (PBF magic bytes or a ``.pbf`` suffix), and the other formats
   pyosmium reads (``.o5m``, ``.opl``, ``.osm.gz``): streamed with pyosmium
   (:mod:`geosynth.sources.osm.pbf`), keeping only the features near the grid;
2. an OSM cut (a GeoPackage with an ``osm_cut`` layer, written by
   :func:`geosynth.sources.osm.pbf.cut_osm` for many tiles in one pass): only
   the features near the grid are read, through its spatial index;
3. anything else is OSM XML (``.osm``, ``.osm.bz2``), read with
   ``osmnx.features_from_xml``.

Every reader gives the same frame for the same data (geometries as osmnx
builds them), so the classification below does not depend on the source.
The features arrive in WGS84 and are reprojected to the output grid's CRS here.

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
from geosynth.sources.osm import pbf as osm_pbf
from geosynth.sources.osm.base import WGS84, grid_polygon_wgs84, max_half_width, osm_tags

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

OVERPASS = "overpass"  # the --osm value that queries Overpass instead of reading a file


def default_cache_folder() -> Path:
    """Where Overpass responses are cached: ``$GEOSYNTH_CACHE/osmnx`` or ``~/.cache/geosynth/osmnx``."""
    root = os.environ.get("GEOSYNTH_CACHE") or Path.home() / ".cache" / "geosynth"
    return Path(root) / "osmnx"


# --------------------------------------------------------------------------- reading


def osm_file_format(path: str | os.PathLike) -> str:
    """Which reader an OSM file needs: ``"pbf"``, ``"osm_cut"``, ``"osmium"`` or ``"xml"``.

    In this order:

    1. ``"pbf"``: the PBF magic bytes (a first ``BlobHeader`` of type
       ``OSMHeader``) or a ``.pbf`` suffix (a corrupt PBF then fails in the
       PBF reader, naming the file);
    2. ``"osm_cut"``: a name ending ``.osmcut.gpkg``, or a GeoPackage with an
       ``osm_cut`` layer (:func:`~geosynth.sources.osm.pbf.cut_osm`);
    3. ``"osmium"``: a suffix only pyosmium reads (``.o5m``, ``.o5c``, ``.opl``,
       ``.gz`` as in ``.osm.gz``);
    4. ``"xml"``: anything else, OSM XML (plain or ``.bz2``) for osmnx.
    """
    path = Path(path)
    head = osm_pbf.file_head(path)
    suffix = path.suffix.lower()
    if osm_pbf.is_pbf_head(head) or suffix == ".pbf":
        return "pbf"
    if osm_pbf.is_osm_cut(path, head):
        return "osm_cut"
    if suffix in osm_pbf.OSMIUM_SUFFIXES:
        return "osmium"
    return "xml"


def read_osm_file(
    path: str | os.PathLike, rules: OsmRules, grid: RasterGrid | None = None
) -> gpd.GeoDataFrame:
    """The mapped OSM features of one OSM file (WGS84); an empty frame if it holds none.

    ``path`` is OSM XML, a PBF (or another format pyosmium reads) or an OSM
    cut (see :func:`osm_file_format`). With ``grid``, PBF files and cuts give
    only the features near it (within the largest catalog half width), which
    is all :func:`osm_shapes` uses; XML files are always read whole.

    Raises :class:`DataError` naming the file when it is missing or unreadable.
    Parsed XML files are cached in-process by path, size and modification time,
    so a region build reading one file for many tiles parses it once (and builds
    its spatial index once): treat the returned frame as read-only. A PBF is
    streamed again for every call: cut it once with
    :func:`geosynth.sources.osm.pbf.cut_osm` when many tiles need it.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read OSM file: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise DataError(f"{path}: OSM input is not a file")
    fmt = osm_file_format(path)
    if fmt == "osm_cut":
        return osm_pbf.read_osm_cut(path, grid, rules)
    if fmt in ("pbf", "osmium"):
        return osm_pbf.read_osm_pbf(path, rules, grid)
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
        root = _xml_root(path)
        if root != "osm":  # well-formed XML of another kind (GPX, KML...): not an empty OSM file
            raise DataError(f"{path}: not an OSM XML file: its root element is <{root}>, not <osm>")
        return ox.features_from_xml(path, tags=dict.fromkeys(tags, True))
    except InsufficientResponseError:
        return _empty_frame()
    except (ParseError, xml.sax.SAXException, UnicodeDecodeError, EOFError, OSError) as exc:
        # OSError covers a truncated or corrupt .bz2 stream
        raise DataError(f"{path}: not a readable OSM XML file: {exc}") from exc
    except (KeyError, ValueError) as exc:  # e.g. a node without lat/lon
        raise DataError(f"{path}: malformed OSM XML: {exc!r}") from exc


def _xml_root(path: str) -> str:
    """The tag of the root element of an XML file (plain or ``.bz2``, as osmnx reads it)."""
    import bz2
    from xml.etree.ElementTree import iterparse

    with (bz2.open if path.endswith(".bz2") else open)(path, "rb") as f:
        for _event, element in iterparse(f, events=("start",)):
            return element.tag.rpartition("}")[2]  # without a namespace
    return ""


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
    _check_resolves(settings.get("overpass_url") or ox.settings.overpass_url)
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


def _check_resolves(url: str) -> None:
    """Fail at once where Overpass's host does not resolve (offline): osmnx would pause and
    retry for a minute first."""
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise DataError(
            f"Overpass: cannot resolve {host} ({exc}): no network? Give OpenStreetMap as "
            ".osm.pbf or .osm files with --source-dir instead"
        ) from None


# --------------------------------------------------------------------------- classification


def _tag_value(row, tag: str) -> str | None:
    value = row.get(tag) if hasattr(row, "get") else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


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
