"""OSM PBF (and the other formats pyosmium reads) -> the mapped OSM features, streamed.

Two ways in:

* :func:`cut_osm`: one streaming read of a state-wide extract (Geofabrik's
  ``nordrhein-westfalen-latest.osm.pbf``) that keeps the features near a set
  of tiles and writes them into one GeoPackage, the *OSM cut*. A region build
  cuts once and hands the cut to every tile's landcover stage
  (``landcover_stage(grid, osm=[cut])``), which reads only the features near
  its own grid through the cut's spatial index (:func:`read_osm_cut`);
* :func:`read_osm_pbf`: the features near one grid straight from a PBF (what
  ``landcover --osm x.osm.pbf`` does for one tile: it streams the whole file).

Geometries are built as ``osmnx.features_from_xml`` builds them, so a PBF and
the same data as XML give the same land cover:

1. tagged nodes -> Point;
2. ways -> LineString; a closed way (first node id = last node id) not tagged
   ``area=no`` is a Polygon when one of its tags is a polygon tag of
   :data:`POLYGON_FEATURES` (osmnx's table): ``building=*`` and ``area=*``
   always, ``highway`` and ``railway`` only for a few values (``rest_area``,
   ``platform``, ...), so a closed ``highway=service`` loop stays a line and a
   ``highway=pedestrian`` square needs ``area=yes``;
3. multipolygon (and boundary) relations -> Polygon or MultiPolygon with
   holes (courtyards), assembled by osmium's area assembler;
4. every geometry is made valid (``shapely.make_valid``) as osmnx does. Ways
   with nodes the file lacks and relations osmium cannot assemble are dropped
   (osmnx drops them too) and counted in the cut's report.

Only objects with a catalog tag (:func:`~geosynth.sources.osm.base.osm_tags`) reach
Python (an osmium ``KeyFilter`` in C++). Features go out in batches of
:data:`BATCH_SIZE`; nothing holds the whole extract. What stays in memory for a
whole read: the node-location index, osmium's area manager (the member ways of
multipolygon relations that carry a catalog tag, until their relation is
complete) and, for a cut, the tile polygons.

Node locations (``locations=``, any of osmium's index types):

* ``flex_mem`` (default): in RAM, about 16 bytes per node of an extract
  (switching to a dense array for planet-sized inputs); the fastest, and
  fine for a state (NRW: some GB) on a build machine;
* ``sparse_file_array``: the same 16 bytes per node in a temporary file
  (``tmpdir=``; for a cut, the output's folder), paged by the OS: for
  machines short of RAM;
* ``dense_file_array``: 8 bytes per possible node id in a temporary file:
  planet-sized inputs only.

Reading takes two passes over the file, as osmium's area assembly needs: the
first reads only relations (the multipolygon candidates: relations with a
catalog tag), the second reads everything once and yields the features; of
the areas osmium assembles, only those of the candidates reach Python.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosynth.catalog import OsmRules
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.sources.osm.base import (
    WGS84,
    boxes_wgs84,
    grid_polygon_wgs84,
    max_half_width,
    osm_tags,
)

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

Bounds = tuple[float, float, float, float]  # (left, bottom, right, top)
Progress = Callable[[int, int | None], None]

CUT_LAYER = "osm_cut"  # the features (WGS84, with an R-tree); its presence marks a cut
CUT_TILES_LAYER = "osm_cut_tiles"  # one row per tile: name, left, bottom, right, top
CUT_INFO_LAYER = "osm_cut_info"  # key, value (JSON): format, crs, margin_m, tags, sources
CUT_SUFFIX = ".osmcut.gpkg"  # the suggested name; a cut is recognised by it or by CUT_LAYER
CUT_FORMAT = "geosynth-osm-cut/1"
OSMIUM_SUFFIXES = (".o5m", ".o5c", ".opl", ".gz")  # besides .pbf: what only pyosmium reads
LARGE_FILE_BYTES = 256 * 2**20  # a PBF this big read for one grid gets a "cut it" warning

BATCH_SIZE = 20_000  # features per GeoPackage write
CUT_SLACK_M = 1.0  # kept beyond the margin, so reprojection round-off never drops a feature
DEFAULT_LOCATIONS = "flex_mem"
FILE_LOCATIONS = ("sparse_file_array", "dense_file_array")  # indexes that need a file
EXTRA_TAGS = ("area",)  # kept besides the catalog's tags: why a closed way is a polygon
ELEMENT, OSM_ID = "osm_element", "osm_id"  # the cut's id columns; osmnx's index: element, id

PBF_MAGIC = b"\x0a\x09OSMHeader"  # a PBF's first BlobHeader (after its 4-byte length)
SQLITE_MAGIC = b"SQLite format 3\x00"

# osmnx's rules (osmnx.features._POLYGON_FEATURES, from Overpass turbo's polygon
# features): a closed way is a polygon when one of its tags is listed here and
# the rule admits its value ("all", a passlist or a blocklist of values).
# tests/test_osm_pbf.py checks this table against the installed osmnx.
POLYGON_FEATURES: dict[str, tuple[str, frozenset[str]]] = {
    "aeroway": ("blocklist", frozenset({"taxiway"})),
    "amenity": ("all", frozenset()),
    "area": ("all", frozenset()),
    "area:highway": ("all", frozenset()),
    "barrier": (
        "passlist",
        frozenset({"city_wall", "ditch", "hedge", "retaining_wall", "spikes"}),
    ),
    "boundary": ("all", frozenset()),
    "building": ("all", frozenset()),
    "building:part": ("all", frozenset()),
    "craft": ("all", frozenset()),
    "golf": ("all", frozenset()),
    "highway": ("passlist", frozenset({"elevator", "escape", "rest_area", "services"})),
    "historic": ("all", frozenset()),
    "indoor": ("all", frozenset()),
    "landuse": ("all", frozenset()),
    "leisure": ("all", frozenset()),
    "man_made": ("blocklist", frozenset({"cutline", "embankment", "pipeline"})),
    "military": ("all", frozenset()),
    "natural": ("blocklist", frozenset({"arete", "cliff", "coastline", "ridge", "tree_row"})),
    "office": ("all", frozenset()),
    "place": ("all", frozenset()),
    "power": ("passlist", frozenset({"generator", "plant", "substation", "transformer"})),
    "public_transport": ("all", frozenset()),
    "railway": ("passlist", frozenset({"platform", "roundhouse", "station", "turntable"})),
    "ruins": ("all", frozenset()),
    "shop": ("all", frozenset()),
    "tourism": ("all", frozenset()),
    "waterway": ("passlist", frozenset({"boatyard", "dam", "dock", "riverbank"})),
}


@dataclass(frozen=True)
class CutReport:
    """What :func:`cut_osm` wrote: features per element type, what it dropped and why."""

    path: Path
    tiles: int
    features: Mapping[str, int]  # written, per element type (node, way, relation)
    outside: int  # features read that are near no tile
    dropped: Mapping[str, int] = field(default_factory=dict)  # per reason (no geometry, ...)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.features.values())


# --------------------------------------------------------------------------- formats


def file_head(path: str | os.PathLike, size: int = 64) -> bytes:
    """The first bytes of a file; empty when it cannot be read (its reader then names the error)."""
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def is_pbf_head(head: bytes) -> bool:
    """Whether a file starting with ``head`` is an OSM PBF (its first blob is an ``OSMHeader``)."""
    return head[4 : 4 + len(PBF_MAGIC)] == PBF_MAGIC


def is_osm_cut(path: str | os.PathLike, head: bytes | None = None) -> bool:
    """Whether ``path`` is an OSM cut: named ``*.osmcut.gpkg`` or a GeoPackage with ``osm_cut``."""
    if str(path).lower().endswith(CUT_SUFFIX):
        return True
    head = file_head(path) if head is None else head
    if not head.startswith(SQLITE_MAGIC):
        return False
    import pyogrio

    try:
        return CUT_LAYER in {str(name) for name, _ in pyogrio.list_layers(path)}
    except Exception:  # pyogrio.errors.DataSourceError: not a GeoPackage after all
        return False


def _osmium_file(path: Path):
    """An ``osmium.io.File``: PBF by content (whatever the suffix), otherwise by suffix."""
    import osmium

    fmt = "pbf" if is_pbf_head(file_head(path)) or path.suffix.lower() == ".pbf" else ""
    return osmium.io.File(str(path), fmt)


# --------------------------------------------------------------------------- features


def tag_columns(rules: OsmRules) -> list[str]:
    """The tag columns of the frames and the cut: the catalog's tags, then ``area``."""
    return list(dict.fromkeys([*osm_tags(rules), *EXTRA_TAGS]))


def _polygon_rule(key: str, value: str) -> bool:
    rule = POLYGON_FEATURES.get(key)
    if rule is None:
        return False
    kind, values = rule
    return kind == "all" or (kind == "passlist") == (value in values)


def _closed_way_is_polygon(known: Mapping[str, str | None], tags) -> bool:
    """osmnx's rule for a closed way: not ``area=no`` and one polygon tag with an admitted value.

    ``known`` holds the values of the frame's tag columns (``area`` among
    them), which decide most ways (every building); the way's other tags
    (``amenity``, ``landuse``, ...) are looked at only when they do not.
    """
    if known.get("area") == "no":
        return False
    if any(v is not None and _polygon_rule(k, v) for k, v in known.items()):
        return True
    return any(tag.k not in known and _polygon_rule(tag.k, tag.v) for tag in tags)


def _rings_to_polygons(lines: np.ndarray) -> np.ndarray:
    """Closed LineStrings -> Polygons, as osmnx's ``Polygon(coords)`` makes them.

    Rings of 4 or more points in one vectorised call; the degenerate rest
    one by one, as shapely's ``Polygon`` takes them (a 3-point ring is padded
    and then made valid into a line, fewer points fail: empty, dropped).
    """
    import shapely

    out = np.empty(len(lines), dtype=object)
    counts = shapely.get_num_coordinates(lines)
    ok = np.flatnonzero(counts >= 4)
    if len(ok):
        coords, index = shapely.get_coordinates(lines[ok], return_index=True)
        out[ok] = shapely.polygons(shapely.linearrings(coords, indices=index))
    for i in np.flatnonzero(counts < 4):
        try:
            out[i] = shapely.Polygon(shapely.get_coordinates(lines[i]))
        except (ValueError, shapely.errors.GEOSException):
            out[i] = shapely.Polygon()
    return out


class _Batch:
    """Features collected from osmium objects (which live only until the next one)."""

    def __init__(self, columns: Sequence[str]):
        self.columns = list(columns)
        self.element: list[str] = []
        self.ids: list[int] = []
        self.wkb: list[str] = []
        self.polygon: list[bool] = []
        self.tags: dict[str, list[str | None]] = {c: [] for c in self.columns}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, element: str, osm_id: int, wkb: str, polygon: bool, tags: Mapping) -> None:
        """One feature; ``tags`` maps the tag columns to values (None where absent)."""
        self.element.append(element)
        self.ids.append(osm_id)
        self.wkb.append(wkb)
        self.polygon.append(polygon)
        for column, values in self.tags.items():
            values.append(tags[column])

    def frame(self, dropped: Counter) -> gpd.GeoDataFrame:
        """The batch as a WGS84 frame (id columns, tags, geometry), geometries as osmnx has them."""
        import geopandas as gpd
        import shapely

        geoms = shapely.from_wkb(np.asarray(self.wkb, dtype=object))
        polygon = np.asarray(self.polygon, dtype=bool)
        if polygon.any():
            geoms[polygon] = _rings_to_polygons(geoms[polygon])
        # osmium assembles relations as MultiPolygon; osmnx's union gives a Polygon for one part
        single = (shapely.get_type_id(geoms) == 6) & (shapely.get_num_geometries(geoms) == 1)
        geoms[single] = shapely.get_geometry(geoms[single], 0)
        empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
        if empty.any():
            dropped["way without a geometry (too few nodes)"] += int(empty.sum())
        keep = ~empty
        data: dict[str, Any] = {
            ELEMENT: np.asarray(self.element, dtype=object)[keep],
            OSM_ID: np.asarray(self.ids, dtype=np.int64)[keep],
        }
        for column, values in self.tags.items():
            data[column] = np.asarray(values, dtype=object)[keep]
        return gpd.GeoDataFrame(data, geometry=shapely.make_valid(geoms[keep]), crs=WGS84)


class _NearTiles:
    """Which geometries intersect one of the tiles' WGS84 polygons (an STRtree over the tiles)."""

    def __init__(self, polygons: np.ndarray):
        import shapely

        self.tree = shapely.STRtree(polygons)

    def __call__(self, geoms) -> np.ndarray:
        hits = self.tree.query(np.asarray(geoms), predicate="intersects")[0]
        mask = np.zeros(len(geoms), dtype=bool)
        mask[hits] = True
        return mask


class _RelationIds:
    """An osmium handler that notes the ids of the relations it sees."""

    def __init__(self):
        self.ids: list[int] = []

    def relation(self, relation) -> None:
        self.ids.append(relation.id)


@contextlib.contextmanager
def _location_index(kind: str, tmpdir: str | os.PathLike | None) -> Iterator[Any]:
    """An osmium node-location index; file-backed kinds get a temp file, removed afterwards."""
    import osmium

    if kind not in osmium.index.map_types():
        known = ", ".join(osmium.index.map_types())
        raise UsageError(f"unknown node-location index {kind!r}; osmium has: {known}")
    if kind not in FILE_LOCATIONS:
        yield osmium.index.create_map(kind)
        return
    fd, name = tempfile.mkstemp(prefix="geosynth-osm-nodes-", suffix=".idx", dir=tmpdir)
    os.close(fd)
    try:
        yield osmium.index.create_map(f"{kind},{name}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def iter_feature_batches(
    path: str | os.PathLike,
    rules: OsmRules,
    *,
    near: Callable[[Any], np.ndarray] | None = None,
    locations: str = DEFAULT_LOCATIONS,
    tmpdir: str | os.PathLike | None = None,
    batch_size: int = BATCH_SIZE,
    counts: Counter | None = None,
    progress: Progress | None = None,
) -> Iterator[gpd.GeoDataFrame]:
    """Stream the mapped features of one OSM file as WGS84 frames of at most ``batch_size`` rows.

    ``near(geometries) -> bool mask`` keeps features (``None``: all). ``counts``
    (a Counter) receives ``read`` (features streamed), ``outside`` (not near)
    and one entry per reason a feature was dropped. ``progress(read, None)`` is
    called per batch. Raises :class:`DataError` naming the file when osmium
    cannot read it.
    """
    import osmium

    path = Path(path)
    counts = Counter() if counts is None else counts
    tags = list(osm_tags(rules))
    columns = tag_columns(rules)
    factory = osmium.geom.WKBFactory()
    batch = _Batch(columns)

    def flush() -> gpd.GeoDataFrame:
        nonlocal batch
        frame = batch.frame(counts)
        batch = _Batch(columns)
        if near is not None and len(frame):
            mask = near(frame.geometry.values)
            counts["outside"] += int((~mask).sum())
            frame = frame[mask]
        if progress:
            progress(counts["read"], None)
        return frame

    def add(obj) -> None:
        kind = obj.type_str()
        if kind == "r" or (kind == "a" and obj.from_way()):
            return  # relations come back as areas; a closed way is its own feature
        tags = obj.tags
        known = {column: tags.get(column) for column in columns}
        try:
            if kind == "n":
                batch.add("node", obj.id, factory.create_point(obj), False, known)
            elif kind == "w":
                line = factory.create_linestring(obj, use_nodes=osmium.geom.ALL)
                polygon = obj.is_closed() and _closed_way_is_polygon(known, tags)
                batch.add("way", obj.id, line, polygon, known)
            else:
                polygon = factory.create_multipolygon(obj)
                batch.add("relation", obj.orig_id(), polygon, False, known)
        except osmium.InvalidLocationError:
            counts[f"{_ELEMENT_NAMES[kind]} with nodes missing from the file"] += 1
            return
        except RuntimeError as exc:  # osmium's geometry_error: too few points, empty area
            counts[f"{_ELEMENT_NAMES[kind]} without a geometry ({str(exc).split(' (')[0]})"] += 1
            return
        counts["read"] += 1

    try:
        with _location_index(locations, tmpdir) as index:
            # the handlers must outlive the readers: osmium's iterators keep no references
            areas = osmium.area.AreaManager()
            relation_filter = osmium.filter.KeyFilter(*tags)
            candidates = _RelationIds()
            # pass 1: relations with a catalog tag are the multipolygon candidates
            with osmium.io.Reader(_osmium_file(path), osmium.osm.RELATION) as reader:
                osmium.apply(reader, relation_filter, candidates, areas.first_pass_handler())
            # pass 2: node locations and areas see every object; Python only the tagged
            # ones, and of the areas only the relations' (osmium also makes one per closed
            # way; an area's id is 2 * relation id + 1)
            area_filter = osmium.filter.IdFilter(2 * i + 1 for i in candidates.ids)
            area_filter.enable_for(osmium.osm.AREA)
            assembled = osmium.BufferIterator(area_filter)
            node_locations = osmium.NodeLocationsForWays(index)
            node_locations.ignore_errors()
            area_handler = areas.second_pass_to_buffer(assembled)
            object_filter = osmium.filter.KeyFilter(*tags)
            with osmium.io.Reader(_osmium_file(path)) as reader:
                objects = osmium.OsmFileIterator(
                    reader, node_locations, area_handler, object_filter
                )
                for obj in objects:
                    add(obj)
                    while assembled:
                        for area in assembled:
                            add(area)
                    if len(batch) >= batch_size:
                        yield flush()
            while assembled:  # the areas completed by the last objects
                for area in assembled:
                    add(area)
    except RuntimeError as exc:  # osmium's io_error, pbf_error, xml_error ...
        raise DataError(f"{path}: not a readable OSM file: {exc}") from exc
    if len(batch):
        yield flush()


_ELEMENT_NAMES = {"n": "node", "w": "way", "a": "relation"}


def _osmnx_frame(frame: gpd.GeoDataFrame, columns: Sequence[str]) -> gpd.GeoDataFrame:
    """Cut columns -> osmnx's shape: indexed by (element, id), geometry and tag columns, WGS84."""
    import geopandas as gpd

    frame = frame.rename(columns={ELEMENT: "element", OSM_ID: "id"})
    frame = frame.set_index(["element", "id"]).sort_index()
    frame = frame[[c for c in ("geometry", *columns) if c in frame.columns]]
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=WGS84)


def _empty_features(columns: Sequence[str]) -> gpd.GeoDataFrame:
    import geopandas as gpd

    data = {ELEMENT: np.array([], dtype=object), OSM_ID: np.array([], dtype=np.int64)}
    data |= {c: np.array([], dtype=object) for c in columns}
    return gpd.GeoDataFrame(data, geometry=np.array([], dtype=object), crs=WGS84)


def read_osm_pbf(
    path: str | os.PathLike,
    rules: OsmRules,
    grid: RasterGrid | None = None,
    *,
    locations: str = DEFAULT_LOCATIONS,
    tmpdir: str | os.PathLike | None = None,
) -> gpd.GeoDataFrame:
    """The mapped features of a PBF (or o5m, opl, .osm.gz), shaped as osmnx's (WGS84).

    With ``grid``, only the features within the largest catalog half width
    of it (what :func:`~geosynth.sources.osm.features.osm_shapes` uses); without, all.
    Streams the whole file every call: for many tiles, :func:`cut_osm` once.
    """
    import pandas as pd

    path = Path(path)
    near = None
    if grid is not None:
        margin = max_half_width(rules) + CUT_SLACK_M
        near = _NearTiles(boxes_wgs84([grid.bounds], grid.crs, margin))
        with contextlib.suppress(OSError):
            if path.stat().st_size > LARGE_FILE_BYTES:
                log.warning(
                    "%s: streaming %.0f MB of OSM for one grid; for many tiles cut it once "
                    "(geosynth.sources.osm.pbf.cut_osm) and pass the cut instead",
                    path,
                    path.stat().st_size / 2**20,
                )
    columns = tag_columns(rules)
    counts: Counter = Counter()
    frames = list(
        iter_feature_batches(
            path, rules, near=near, locations=locations, tmpdir=tmpdir, counts=counts
        )
    )
    _log_dropped(path, counts)
    frames = [f for f in frames if len(f)] or [_empty_features(columns)]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _osmnx_frame(frame, columns)


def _log_dropped(path: Path, counts: Counter) -> None:
    dropped = {k: n for k, n in counts.items() if k not in ("read", "outside")}
    if dropped:
        log.info("%s: OSM features without a geometry (dropped, as osmnx does): %s", path, dropped)


# --------------------------------------------------------------------------- the cut


def _tile_bounds(
    tiles: Mapping[str, Bounds | RasterGrid], crs: str | None
) -> tuple[list[str], np.ndarray, str]:
    """Tile names, their bounds (N, 4) and the CRS, from bounds tuples or RasterGrids."""
    if not tiles:
        raise UsageError("cut_osm needs at least one tile")
    names, bounds, crss = [], [], set()
    for name, tile in tiles.items():
        names.append(str(name))
        if isinstance(tile, RasterGrid):
            bounds.append(tile.bounds)
            crss.add(tile.crs)
        else:
            bounds.append(tuple(float(v) for v in tile))
    crs = crs or (crss.pop() if len(crss) == 1 else None)
    if crs is None or len(crss) > 1:
        raise UsageError("cut_osm: give the tiles' crs (one CRS for all tiles)")
    array = np.asarray(bounds, dtype=float).reshape(-1, 4)  # (N, 4)
    if not (np.all(array[:, 0] < array[:, 2]) and np.all(array[:, 1] < array[:, 3])):
        raise UsageError("cut_osm: tile bounds must be (left, bottom, right, top)")
    return names, array, crs


def cut_osm(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    tiles: Mapping[str, Bounds | RasterGrid],
    crs: str | None,
    rules: OsmRules,
    out: str | os.PathLike,
    *,
    margin_m: float | None = None,
    locations: str = DEFAULT_LOCATIONS,
    tmpdir: str | os.PathLike | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> CutReport:
    """Cut the mapped OSM features near ``tiles`` out of ``paths`` into one GeoPackage, ``out``.

    ``tiles`` maps a tile name to its ``(left, bottom, right, top)`` in
    ``crs`` (or to a :class:`RasterGrid`; then ``crs`` may be None). A feature
    is kept when its geometry intersects a tile widened by ``margin_m``
    (default: the largest catalog half width, so every buffered road that
    reaches a tile is there). Several inputs (neighbouring extracts) are read
    one after another; a feature in more than one is written once.

    ``out`` (suggested suffix ``.osmcut.gpkg``) gets the layer ``osm_cut``
    (WGS84; geometry, ``osm_element``, ``osm_id``, the catalog's tag columns
    and ``area``; an R-tree), ``osm_cut_tiles`` and ``osm_cut_info``. It is
    written in batches into a temporary file beside ``out`` and renamed into
    place when complete. ``progress(features_read, None)`` is called per batch.
    Raises :class:`DataError` naming an input osmium cannot read.
    """
    import pandas as pd
    import pyogrio

    started = time.perf_counter()
    paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    names, bounds, crs = _tile_bounds(tiles, crs)
    margin = max_half_width(rules) if margin_m is None else float(margin_m)
    near = _NearTiles(boxes_wgs84(bounds, crs, margin + CUT_SLACK_M))
    columns = tag_columns(rules)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.part.gpkg")
    part.unlink(missing_ok=True)

    counts: Counter = Counter()
    written: Counter = Counter()
    seen: set[tuple[str, int]] | None = set() if len(paths) > 1 else None
    exists = False

    def write(frame: gpd.GeoDataFrame) -> None:
        nonlocal exists
        pyogrio.write_dataframe(
            frame,
            part,
            layer=CUT_LAYER,
            driver="GPKG",
            geometry_type="Unknown",
            promote_to_multi=False,
            append=exists,
        )
        exists = True
        written.update(frame[ELEMENT].tolist())

    try:
        for path in paths:
            if not path.is_file():
                raise DataError(f"{path}: OSM file not found")
            log.info("cutting %s for %d tiles", path, len(names))
            for frame in iter_feature_batches(
                path,
                rules,
                near=near,
                locations=locations,
                tmpdir=tmpdir or out.parent,
                batch_size=batch_size,
                counts=counts,
                progress=progress,
            ):
                if seen is not None:
                    keys = list(zip(frame[ELEMENT], frame[OSM_ID].tolist(), strict=True))
                    fresh = np.array([k not in seen for k in keys], dtype=bool)
                    seen.update(keys)
                    frame = frame[fresh]
                if len(frame):
                    write(frame)
            _log_dropped(path, counts)
        if not exists:
            write(_empty_features(columns))
        tiles_frame = pd.DataFrame(
            {
                "name": names,
                "left": bounds[:, 0],
                "bottom": bounds[:, 1],
                "right": bounds[:, 2],
                "top": bounds[:, 3],
            }
        )
        pyogrio.write_dataframe(tiles_frame, part, layer=CUT_TILES_LAYER, driver="GPKG")
        info = {
            "format": CUT_FORMAT,
            "crs": crs,
            "margin_m": margin,
            "tags": columns,
            "features": dict(written),
            "sources": _source_stats(paths),
        }
        info_frame = pd.DataFrame(
            {"key": list(info), "value": [json.dumps(v) for v in info.values()]}
        )
        pyogrio.write_dataframe(info_frame, part, layer=CUT_INFO_LAYER, driver="GPKG")
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)

    dropped = {k: n for k, n in counts.items() if k not in ("read", "outside")}
    return CutReport(
        path=out,
        tiles=len(names),
        features=dict(written),
        outside=counts["outside"],
        dropped=dropped,
        seconds=time.perf_counter() - started,
    )


def _source_stats(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [
        {"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
        for p in paths
    ]


def ensure_osm_cut(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    tiles: Mapping[str, Bounds | RasterGrid],
    crs: str | None,
    rules: OsmRules,
    out: str | os.PathLike,
    **options: Any,
) -> Path:
    """``out``, cut with :func:`cut_osm` unless it already is a current cut for these tiles.

    Current: cut from the same files (path, size, modification time), in the
    same CRS, with the catalog's tag columns, at least the margin asked for,
    holding every tile of ``tiles``. A rerun of a region build thus reuses
    its cut; a new extract or more tiles cut again. ``options`` go to :func:`cut_osm`.
    """
    out = Path(out)
    paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if out.exists():
        try:
            info = cut_info(out)
            _, bounds, tile_crs = _tile_bounds(tiles, crs)
            margin = options.get("margin_m")
            margin = max_half_width(rules) if margin is None else float(margin)
            have = {tuple(np.round(b, 6)) for b in info.tile_bounds}
            current = (
                [{k: s.get(k) for k in ("path", "bytes", "mtime_ns")} for s in info.sources]
                == _source_stats(paths)
                and info.crs == tile_crs
                and set(tag_columns(rules)) <= set(info.tags)
                and info.margin_m + 1e-9 >= margin
                and all(tuple(np.round(b, 6)) in have for b in bounds)
            )
        except (DataError, OSError):
            current = False
        if current:
            log.info("%s: OSM cut is current for %d tiles; not cutting again", out, len(tiles))
            return out
    cut_osm(paths, tiles, crs, rules, out, **options)
    return out


@dataclass(frozen=True, eq=False)
class CutInfo:
    """An OSM cut's metadata: the tiles it covers, their CRS, its margin and tag columns."""

    crs: str
    margin_m: float
    tags: tuple[str, ...]
    tile_names: tuple[str, ...]
    tile_bounds: np.ndarray  # (N, 4) left, bottom, right, top in crs
    sources: tuple[dict, ...]

    def covers(self, grid: RasterGrid) -> bool:
        """Whether the grid's bounds lie inside the union of the cut's tiles."""
        import shapely
        from rasterio.warp import transform_bounds

        bounds = grid.bounds
        if grid.crs != self.crs:
            bounds = transform_bounds(grid.crs, self.crs, *bounds, densify_pts=21)
        target = shapely.box(*bounds)
        tiles = shapely.box(*self.tile_bounds.T)
        near = tiles[shapely.STRtree(tiles).query(target)]
        tolerance = 1e-6 * max(1.0, abs(bounds[2] - bounds[0]))
        return bool(len(near)) and shapely.union_all(near).buffer(tolerance).covers(target)


def cut_info(path: str | os.PathLike) -> CutInfo:
    """The metadata of the OSM cut at ``path``; :class:`DataError` naming it when it is not one."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read OSM cut: {exc.strerror or exc}") from exc
    return _cut_info_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cut_info_cached(path: str, size: int, mtime_ns: int) -> CutInfo:
    import pyogrio

    try:
        layers = {str(name) for name, _ in pyogrio.list_layers(path)}
        if not {CUT_LAYER, CUT_TILES_LAYER, CUT_INFO_LAYER} <= layers:
            raise DataError(
                f"{path}: not an OSM cut (layers {CUT_LAYER}, {CUT_TILES_LAYER}, {CUT_INFO_LAYER} "
                f"expected; found: {', '.join(sorted(layers)) or 'none'})"
            )
        info_rows = pyogrio.read_dataframe(path, layer=CUT_INFO_LAYER)
        tiles = pyogrio.read_dataframe(path, layer=CUT_TILES_LAYER)
    except DataError:
        raise
    except Exception as exc:  # pyogrio.errors.DataSourceError and friends
        raise DataError(f"{path}: cannot read OSM cut: {exc}") from exc
    info = {k: json.loads(v) for k, v in zip(info_rows["key"], info_rows["value"], strict=True)}
    if info.get("format") != CUT_FORMAT:
        raise DataError(f"{path}: unknown OSM cut format {info.get('format')!r}, want {CUT_FORMAT}")
    return CutInfo(
        crs=info["crs"],
        margin_m=float(info["margin_m"]),
        tags=tuple(info["tags"]),
        tile_names=tuple(str(n) for n in tiles["name"]),
        tile_bounds=tiles[["left", "bottom", "right", "top"]].to_numpy(dtype=float),
        sources=tuple(info.get("sources", ())),
    )


def read_osm_cut(
    path: str | os.PathLike, grid: RasterGrid | None, rules: OsmRules
) -> gpd.GeoDataFrame:
    """The features of an OSM cut near ``grid`` (all of them without a grid), shaped as osmnx's.

    Reads through the cut's R-tree only the features whose bounding box
    meets the grid widened by the largest catalog half width. Raises
    :class:`DataError` naming the cut when it does not cover the grid, when it
    was cut with a smaller margin than the catalog's widths need, or without
    a tag the catalog maps (then cut again).
    """
    import pyogrio

    path = Path(path)
    info = cut_info(path)
    missing = [t for t in osm_tags(rules) if t not in info.tags]
    if missing:
        raise DataError(f"{path}: OSM cut has no {', '.join(missing)} column; cut again")
    bbox = None
    if grid is not None:
        if info.margin_m + 1e-9 < max_half_width(rules):
            raise DataError(
                f"{path}: OSM cut has a {info.margin_m:g} m margin; the catalog's widest road "
                f"needs {max_half_width(rules):g} m: cut again"
            )
        if not info.covers(grid):
            raise DataError(
                f"{path}: OSM cut of {len(info.tile_names)} tiles does not cover the grid "
                f"{tuple(round(v, 3) for v in grid.bounds)} ({grid.crs}): cut again with it"
            )
        bbox = tuple(grid_polygon_wgs84(grid, max_half_width(rules)).bounds)
    columns = list(info.tags)
    try:
        frame = pyogrio.read_dataframe(
            path, layer=CUT_LAYER, bbox=bbox, columns=[ELEMENT, OSM_ID, *columns]
        )
    except Exception as exc:
        raise DataError(f"{path}: cannot read OSM cut: {exc}") from exc
    if len(frame) == 0:
        frame = _empty_features(columns)
    return _osmnx_frame(frame.set_crs(WGS84, allow_override=True), columns)
