"""How NRW publishes its tiled sources, as the catalog describes it: folder listings of
per-tile files, per-municipality packages, the tiles of a region, per-tile flight dates.

* :func:`parse_listing` reads a folder listing (NRW's ``index.json`` or ``index.xml``, a
  web server's HTML index page, or an index file of one name a line) into the files and
  subfolders it names;
* :func:`listing_tiles` keeps the files following a layout's member pattern, by tile
  (a tile's year differs from tile to tile, so its URL comes from the listing; a tile
  listed in two years takes the newest, or the year asked for);
* :func:`region_tiles` decides which tiles a region has, by precedence:
  1. ``tiles`` given; 2. a ``bbox``; 3. ``tiles_from``: the tile list of the published
  GeoNRW for the region's city (a folder or the archive); 4. a ``boundary`` polygon file;
  5. a generated region's extent in the catalog (``origin_km``, ``tiles``); 6. the
  municipality's boundary from the catalog's official source (``sources.boundary``);
  the tiles of 2, 4 and 5 are those whose interior meets the area;
* :func:`read_flight_dates` reads NRW's per-tile metadata (``dop_nw.csv``: ``Kachelname``,
  ``Aktualitaet``, ``Bildflugnummer``) into flight dates by tile.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from geosynth.catalog import Catalog, Region, SourceLayout
from geosynth.errors import DataError, UsageError
from geosynth.grid import TILE_IN_NAME, TileId, tiles_covering
from geosynth.names import LISTING_FORMATS
from geosynth.sources.filenames import GEONRW_FILE, GEONRW_TILE_STEM, pattern_regex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListedFile:
    """One file a listing names: its name, absolute URL and, where the listing says, its size
    in bytes and timestamp."""

    name: str
    url: str
    size: int | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class Listing:
    """What a folder listing names: its files, and the subfolders (absolute URLs, ending in
    ``/``) it points to."""

    files: tuple[ListedFile, ...]
    folders: tuple[str, ...] = ()


class _Anchors(HTMLParser):
    """The anchors of an index page, and the size in bytes a table row gives beside one."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.sizes: dict[str, int] = {}
        self._row: list[str] | None = None  # hrefs of the open table row
        self._cells: list[str] = []

    def handle_starttag(self, tag, attrs):
        tag = tag.lower()
        if tag == "tr":
            self._row, self._cells = [], []
        elif tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)
                if self._row is not None:
                    self._row.append(href)

    def handle_data(self, data):
        if self._row is not None and data.strip():
            self._cells.append(data.strip())

    def handle_endtag(self, tag):
        if tag.lower() == "tr" and self._row is not None:
            numbers = [c for c in self._cells if c.isdigit()]
            if len(self._row) == 1 and len(numbers) == 1:
                self.sizes[self._row[0]] = int(numbers[0])
            self._row = None


def listing_format_of(text: str) -> str:
    """Which listing ``text`` is: ``json`` (an object), ``xml`` (an XML document that is not
    an HTML page) or ``html``; '' when it is none of them (a plain ``index`` of names is
    read only when the catalog says so)."""
    head = text.lstrip("\ufeff \t\r\n")[:512].lower()
    if head.startswith("{"):
        return "json"
    if head.startswith(("<!doctype html", "<html")) or "<html" in head:
        return "html"
    if head.startswith("<"):
        return "xml"
    return ""


def _json_entries(text: str, url: str) -> tuple[list[dict], list[str]]:
    """The files of an ``index.json`` (``datasets`` -> ``files`` -> ``name``, ``size``,
    ``timestamp``, as NRW's folders publish it) and the folders it names."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{url}: not a readable JSON listing: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
        raise DataError(
            f"{url}: an index.json without 'datasets' (expected datasets -> files -> name, "
            "as NRW's folders list their files)"
        )
    entries = [
        f for dataset in data["datasets"] if isinstance(dataset, dict)
        for f in dataset.get("files") or [] if isinstance(f, dict) and f.get("name")
    ]  # fmt: skip
    folders = [
        str(f.get("name") if isinstance(f, dict) else f)
        for key in ("folders", "directories")
        for f in data.get(key) or []
    ]
    return entries, folders


def _xml_entries(text: str, url: str) -> tuple[list[dict], list[str]]:
    """The ``<file name=".." size=".." timestamp=".."/>`` and ``<folder name=".."/>`` elements
    of an XML listing (NRW's ``index.xml`` and its folders' own answer)."""
    from xml.etree import ElementTree

    if "<!DOCTYPE" in text[:2048] or "<!ENTITY" in text:
        raise DataError(f"{url}: an XML listing with a DOCTYPE or entities is refused")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise DataError(f"{url}: not a readable XML listing: {exc}") from None
    entries = [dict(e.attrib) for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "file"]
    folders = [e.get("name", "") for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "folder"]
    return [e for e in entries if e.get("name")], [f for f in folders if f]


def _size(value) -> int | None:
    try:
        return int(value) if value is not None and str(value).strip() else None
    except (TypeError, ValueError):
        return None


def parse_listing(text: str, base_url: str, listing_format: str = "auto") -> Listing:
    """The files (absolute URLs; query strings left out) and subfolders a folder listing
    names, with each file's size and timestamp where the listing gives them.

    Formats (:data:`geosynth.names.LISTING_FORMATS`): ``json``, NRW's ``index.json``;
    ``xml``, NRW's ``index.xml`` (what its folder URLs answer with); ``html``, a web
    server's index page (its anchors; a table row with one anchor and one number in bytes
    gives the size); ``index``, ``name [size]`` a line; ``auto`` tells them apart by the
    content. A listing that is none of them is a :class:`~geosynth.errors.DataError`
    naming ``base_url``.
    """
    fmt = listing_format_of(text) if listing_format == "auto" else listing_format
    entries: list[dict] = []
    folder_names: list[str] = []
    if fmt == "json":
        entries, folder_names = _json_entries(text, base_url)
    elif fmt == "xml":
        entries, folder_names = _xml_entries(text, base_url)
    elif fmt == "index":
        for line in text.splitlines():
            parts = line.split()
            if parts:
                entries.append({"name": parts[0], "size": parts[1] if len(parts) > 1 else None})
    elif fmt == "html":
        parser = _Anchors()
        parser.feed(text)
        entries = [{"name": h, "size": parser.sizes.get(h)} for h in parser.hrefs]
    elif listing_format == "auto":
        raise DataError(
            f"{base_url}: the listing is neither JSON (index.json), XML (index.xml) nor an HTML "
            f"page; it begins {text.strip()[:60]!r}"
        )
    else:
        raise UsageError(
            f"unknown listing format {listing_format!r}; known: {', '.join(LISTING_FORMATS)}"
        )
    base = base_url if base_url.endswith("/") else base_url + "/"
    files, folders, seen = [], [], set()
    for entry in entries:
        href = str(entry["name"])
        url = urljoin(base, href)
        path = urlsplit(url).path
        name = unquote(path.rsplit("/", 1)[-1])
        if "?" in href:  # an index page's sort links
            continue
        if path.endswith("/"):
            if url.startswith(base) and url != base:
                folders.append(url)
            continue
        if not name or name in seen:
            continue
        seen.add(name)
        files.append(ListedFile(name, url, _size(entry.get("size")), entry.get("timestamp")))
    folders += [urljoin(base, f.rstrip("/") + "/") for f in folder_names]
    return Listing(tuple(files), tuple(dict.fromkeys(folders)))


def listing_tiles(
    files: Iterable[ListedFile], layout: SourceLayout, year: int | None = None
) -> dict[str, ListedFile]:
    """Tile id -> the listed file of that tile: of ``year`` when given (tiles without a file
    of that year are left out), else the newest when several years are listed."""
    regexes = [pattern_regex(layout.member_pattern)]
    if layout.member_pattern.lower().endswith(".laz"):
        regexes.append(pattern_regex(layout.member_pattern[:-4] + ".las"))
    best: dict[str, tuple[int, ListedFile]] = {}
    for f in files:
        match = next((m for r in regexes if (m := r.match(f.name))), None)
        if not match:
            continue
        tile = str(TileId.from_match(match))
        file_year = int(match.groupdict().get("year") or 0)
        if year is not None and file_year != year:
            continue
        if tile not in best or file_year > best[tile][0]:
            best[tile] = (file_year, f)
    return {tile: f for tile, (_, f) in sorted(best.items())}


# --------------------------------------------------------------------------- a region's tiles


def geonrw_tiles(path: str | os.PathLike, city: str) -> list[str]:
    """The tile ids of one city of the published GeoNRW: from its folder ``<root>/<city>/`` or
    the archive (``nrw_dataset.tar.gz``; only member names are read)."""
    path = Path(path)
    names: list[str] = []
    if path.is_dir():
        folder = path / city if (path / city).is_dir() else path
        if folder.name.lower() != city.lower():
            raise DataError(f"{path}: no folder {city}/ of the published GeoNRW")
        names = [p.name for p in folder.iterdir()]
    elif path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            names = [
                Path(m.name).name
                for m in archive
                if m.isfile() and Path(m.name).parent.name.lower() == city.lower()
            ]
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [
                Path(n).name
                for n in archive.namelist()
                if Path(n).parent.name.lower() == city.lower()
            ]
    else:
        raise DataError(f"{path}: neither a GeoNRW folder nor its archive")
    stems = {m["stem"] for n in names if (m := GEONRW_FILE.match(n))}
    tiles = sorted({str(TileId.from_match(m)) for s in stems if (m := GEONRW_TILE_STEM.match(s))})
    if not tiles:
        raise DataError(f"{path}: no <E>_<N>_rgb.jp2 files of the city {city!r}")
    return tiles


def area_tiles(geometry, catalog: Catalog) -> list[str]:
    """The grid tiles whose interior meets ``geometry`` (in the grid's CRS)."""
    from shapely.geometry import box

    found = []
    for tile in tiles_covering(geometry.bounds, catalog.grid):
        left, bottom = tile.e_km * 1000.0, tile.n_km * 1000.0
        size = float(catalog.grid.tile_size_m)
        cell = box(left, bottom, left + size, bottom + size)
        if cell.intersection(geometry).area > 0:
            found.append(str(tile))
    return found


def read_boundary(path: str | os.PathLike, catalog: Catalog, region: Region | None = None):
    """The polygon of a boundary file in the grid's CRS: the feature with the region's key
    (the catalog's ``sources.boundary.key_field``) where the file has that field, else the
    union of all its polygons."""
    import geopandas as gpd

    spec = catalog.sources.get("boundary")
    try:
        layers = None
        if spec is not None and spec.layer:
            import pyogrio

            layers = [name for name, _ in pyogrio.list_layers(path)]
        layer = spec.layer if layers and spec.layer in layers else None
        frame = gpd.read_file(path, layer=layer)
    except Exception as exc:
        raise DataError(f"{path}: cannot read boundary polygons: {exc}") from exc
    if frame.crs is None:
        raise DataError(f"{path}: the boundary file has no CRS")
    frame = frame.to_crs(catalog.grid.crs)
    key = spec.key_field if spec is not None else None
    if region is not None and key and key in frame.columns:
        keys = frame[key].astype(str).str.strip()
        frame = frame[(keys == region.ags) | (keys == region.ags.lstrip("0"))]
        if frame.empty:
            raise DataError(f"{path}: no feature with {key} = {region.ags} ({region.name})")
    polygons = [g for g in frame.geometry if g is not None and not g.is_empty]
    if not polygons:
        raise DataError(f"{path}: no polygons")
    from shapely import union_all

    return union_all(polygons)


def region_tiles(
    region: Region,
    catalog: Catalog,
    *,
    tiles: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    tiles_from: str | os.PathLike | None = None,
    boundary: str | os.PathLike | None = None,
    official_boundary: str | os.PathLike | None = None,
) -> tuple[list[str], str]:
    """The tiles of ``region`` by the precedence of the module docstring, and how they were
    chosen. ``official_boundary``: the downloaded file of ``sources.boundary``."""
    if tiles:
        return sorted({str(TileId.parse(t)) for t in tiles}), "--tiles"
    if bbox:
        if len(bbox) != 4:
            raise UsageError(
                f"--bbox takes left,bottom,right,top in {catalog.grid.crs}, got {bbox}"
            )
        return [
            str(t) for t in tiles_covering(tuple(float(v) for v in bbox), catalog.grid)
        ], "--bbox"
    if tiles_from:
        return geonrw_tiles(tiles_from, region.name), f"the published GeoNRW tiles of {region.name}"
    if boundary:
        return area_tiles(
            read_boundary(boundary, catalog, region), catalog
        ), f"--boundary {boundary}"
    if region.origin_km and region.tiles:
        e0, n0 = region.origin_km
        extent = [
            f"{e0 + i}_{n0 + j}" for i in range(region.tiles[0]) for j in range(region.tiles[1])
        ]
        return sorted(extent), f"the catalog's extent of {region.name}"
    if official_boundary:
        shape = read_boundary(official_boundary, catalog, region)
        return area_tiles(shape, catalog), f"the boundary of {region.name} (AGS {region.ags})"
    raise UsageError(
        f"the tiles of {region.name} need --tiles, --bbox, --tiles-from or --boundary, "
        "or the catalog's boundary source"
    )


# --------------------------------------------------------------------------- flight dates


_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%Y%m%d", "%Y/%m/%d")


def _iso_date(text: str) -> str | None:
    """``YYYY-MM-DD`` of a date as NRW's metadata writes it (ISO or ``DD.MM.YYYY``); an
    unreadable date is kept as written, an empty one is None."""
    import datetime as dt

    if not text:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text[:10], fmt).date().isoformat()
        except ValueError:
            continue
    return text


def read_flight_dates(path: str | os.PathLike) -> dict[str, dict]:
    """Tile id -> ``{"date", "flight", "name"}`` from NRW's orthophoto metadata (``dop_nw.csv``,
    or the ``dop_meta.zip`` holding it): semicolon-separated, a few lines of preamble,
    then a header with ``Kachelname``, ``Aktualitaet`` and ``Bildflugnummer``."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not members:
                raise DataError(f"{path}: no CSV file inside")
            raw = archive.read(members[0])
    else:
        raw = path.read_bytes()
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("Kachelname")), None)
    if header is None:
        raise DataError(f"{path}: no header line starting with 'Kachelname'")
    out = {}
    name_re = re.compile(rf"_{TILE_IN_NAME}_")
    for row in csv.DictReader(io.StringIO("\n".join(lines[header:])), delimiter=";"):
        name = (row.get("Kachelname") or "").strip()
        match = name_re.search(name)
        if not match:
            continue
        tile = str(TileId.from_match(match))
        out[tile] = {
            "name": name,
            "date": _iso_date((row.get("Aktualitaet") or "").strip()),
            "flight": (row.get("Bildflugnummer") or "").strip() or None,
        }
    return out
