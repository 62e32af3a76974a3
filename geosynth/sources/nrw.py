"""How NRW publishes its tiled sources, as the catalog describes it: folder listings of
per-tile files, per-municipality packages, the tiles of a region, per-tile flight dates.

* :func:`parse_listing` reads a folder listing (the HTML anchors of a web server's index
  page, or an index file of one name a line) into the files it names;
* :func:`listing_tiles` keeps the files following a layout's member pattern, by tile
  (a tile's year differs from tile to tile, so its URL comes from the listing);
* :func:`region_tiles` decides which tiles a region has, by precedence:
  1. ``tiles`` given; 2. a ``bbox``; 3. ``tiles_from``: the tile list of the published
  GeoNRW for the region's city (a folder or the archive); 4. a ``boundary`` polygon file;
  5. the municipality's boundary from the catalog's official source (``sources.boundary``);
  the tiles of 2, 4 and 5 are those whose interior meets the area;
* :func:`read_flight_dates` reads NRW's per-tile metadata (``dop_nw.csv``: ``Kachelname``,
  ``Aktualitaet``, ``Bildflugnummer``) into flight dates by tile.
"""

from __future__ import annotations

import csv
import io
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
from geosynth.sources.filenames import GEONRW_FILE, GEONRW_TILE_STEM, pattern_regex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListedFile:
    """One file a listing names: its name, absolute URL and, where the listing says, size."""

    name: str
    url: str
    size: int | None = None


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


def parse_listing(text: str, base_url: str, listing_format: str = "html") -> list[ListedFile]:
    """The files a folder listing names, with absolute URLs (query strings and folders left
    out) and the size where the listing gives one: an HTML index page (its anchors; a
    table row with one anchor and one number in bytes gives the size) or an index file
    (``name [size]`` a line)."""
    sizes: dict[str, int] = {}
    if listing_format == "index":
        hrefs = []
        for line in text.splitlines():
            parts = line.split()
            if parts:
                hrefs.append(parts[0])
                if len(parts) > 1 and parts[1].isdigit():
                    sizes[parts[0]] = int(parts[1])
    elif listing_format == "html":
        parser = _Anchors()
        parser.feed(text)
        hrefs, sizes = parser.hrefs, parser.sizes
    else:
        raise UsageError(f"unknown listing format {listing_format!r}; known: html, index")
    base = base_url if base_url.endswith("/") else base_url + "/"
    files, seen = [], set()
    for href in hrefs:
        url = urljoin(base, href)
        path = urlsplit(url).path
        name = unquote(path.rsplit("/", 1)[-1])
        if not name or path.endswith("/") or "?" in href or name in seen:
            continue
        seen.add(name)
        files.append(ListedFile(name, url, sizes.get(href)))
    return files


def listing_tiles(files: Iterable[ListedFile], layout: SourceLayout) -> dict[str, ListedFile]:
    """Tile id -> the listed file of that tile (the newest year when several are listed)."""
    regexes = [pattern_regex(layout.member_pattern)]
    if layout.member_pattern.lower().endswith(".laz"):
        regexes.append(pattern_regex(layout.member_pattern[:-4] + ".las"))
    best: dict[str, tuple[int, ListedFile]] = {}
    for f in files:
        match = next((m for r in regexes if (m := r.match(f.name))), None)
        if not match:
            continue
        tile = str(TileId.from_match(match))
        year = int(match.groupdict().get("year") or 0)
        if tile not in best or year > best[tile][0]:
            best[tile] = (year, f)
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
