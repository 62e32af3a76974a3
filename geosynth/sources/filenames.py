"""Provider file names <-> tile ids: NRW orthophoto and lidar members, packages, TerraSAR-X products.

NRW names its per-tile files by the tile's south-west corner in km, e.g.
``dop10rgbi_32_356_5645_1_nw_2022.jp2`` (orthophoto, flight year 2022) or
``3dm_32_356_5645_1_nw.laz`` (lidar). The patterns are catalog facts
(``sources.<name>.layouts.<layout>.member_pattern`` in ``data_catalog.yaml``, with
the fields ``{e}``, ``{n}`` and ``{year}``, optional parts in square brackets); this
module turns them into regular expressions and formats names from them, so no name
is spelled in code.
The resolution of an orthophoto is never taken from its name (``dop10``
means 10 cm for the real product but any resolution for the demo world): read
it from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from geosynth.catalog import Catalog, Region, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import TILE_DIGITS, TILE_IN_NAME, TileId

TILED_SOURCES = ("dop", "lidar")

#: The published GeoNRW (Baier et al.; IEEE DataPort and torchgeo's ``GeoNRW``): one folder
#: per city with ``<E>_<N>_rgb.jp2``, ``_dem.tif``, ``_seg.tif`` and, in the SAR edition,
#: ``_sar.tif`` per tile.
GEONRW_MEMBERS = ("rgb", "dem", "seg")
GEONRW_SAR_MEMBER = "sar"
GEONRW_FILE = re.compile(
    r"^(?P<stem>.+)_(?P<kind>rgb|dem|seg|sar)\.(?P<ext>jp2|tif|tiff)$", re.IGNORECASE
)
#: A published tile's stem that names its tile (``356_5645``); other stems are imported as named.
GEONRW_TILE_STEM = re.compile(rf"^{TILE_IN_NAME}$")

# TerraSAR-X / TanDEM-X product folders, e.g.
# TSX1_SAR__EEC_SE___SL_S_SRA_20200412T054213_20200412T054214
_TSX = re.compile(
    r"^(?P<mission>TSX1|TDX1)_SAR__(?P<product>[A-Z]{3})_(?P<variant>\w+?)_"
    r"(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})$"
)


def pattern_regex(pattern: str) -> re.Pattern:
    """``dop10rgbi_32_{e}_{n}_1_nw[_{year}].jp2`` -> a regex with named digit groups e, n,
    year; a part in square brackets is optional."""

    digits = {**TILE_DIGITS, "year": r"\d{4}"}
    any_digits = r"\d+"

    def fields(text: str) -> str:
        parts = re.split(r"\{(\w+)\}", text)
        return "".join(
            re.escape(p) if i % 2 == 0 else f"(?P<{p}>{digits.get(p, any_digits)})"
            for i, p in enumerate(parts)
        )

    pieces = re.split(r"\[([^\]]*)\]", pattern)
    regex = "".join(fields(p) if i % 2 == 0 else f"(?:{fields(p)})?" for i, p in enumerate(pieces))
    return re.compile(f"^{regex}$", re.IGNORECASE)


def format_pattern(pattern: str, **values) -> str:
    """A file name from a pattern: optional ``[...]`` parts appear when their fields are given."""

    def optional(match: re.Match) -> str:
        inner = match.group(1)
        names = re.findall(r"\{(\w+)\}", inner)
        return inner.format(**values) if all(values.get(n) is not None for n in names) else ""

    return re.sub(r"\[([^\]]*)\]", optional, pattern).format(**values)


@dataclass(frozen=True)
class NrwName:
    """A parsed per-tile provider file name."""

    source: str  # "dop" or "lidar"
    tile: TileId
    year: int | None
    name: str

    @property
    def tile_id(self) -> str:
        return str(self.tile)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "tile_id": self.tile_id,
            "e_km": self.tile.e_km,
            "n_km": self.tile.n_km,
            "year": self.year,
            "name": self.name,
        }


def _member_pattern(source: str, catalog: Catalog) -> str:
    if source not in TILED_SOURCES:
        raise UsageError(f"unknown tiled source {source!r}; known: {', '.join(TILED_SOURCES)}")
    pattern = catalog.sources[source].member_pattern
    if not pattern:
        raise DataError(f"{catalog.path}: sources.{source}.member_pattern is missing")
    return pattern


def member_name(
    source: str, tile: TileId | str, year: int | None = None, catalog: Catalog | None = None
) -> str:
    """The provider's file name of one tile, e.g. ``member_name("lidar", "356_5645")``."""
    catalog = catalog or load_catalog()
    pattern = _member_pattern(source, catalog)
    tile = TileId.parse(tile) if isinstance(tile, str) else tile
    mandatory = re.sub(r"\[[^\]]*\]", "", pattern)
    if "{year}" in mandatory and year is None:
        raise UsageError(f"the {source} file name needs a year ({pattern})")
    return format_pattern(pattern, e=tile.e_km, n=tile.n_km, year=year)


def parse_member(filename: str, source: str, catalog: Catalog | None = None) -> NrwName | None:
    """Parse one provider file name of ``source``; ``None`` when it does not follow the pattern.

    Lidar tiles are accepted as ``.laz`` and as uncompressed ``.las``.
    """
    catalog = catalog or load_catalog()
    name = PurePath(filename).name
    _member_pattern(source, catalog)
    candidates = []
    for pattern in catalog.sources[source].member_patterns:
        candidates.append(pattern)
        if source == "lidar" and pattern.lower().endswith(".laz"):
            candidates.append(pattern[:-4] + ".las")
    for candidate in candidates:
        match = pattern_regex(candidate).match(name)
        if match:
            year = match.groupdict().get("year")
            return NrwName(source, TileId.from_match(match), int(year) if year else None, name)
    return None


def parse_nrw_name(filename: str, catalog: Catalog | None = None) -> dict:
    """Parse an NRW orthophoto or lidar file name into ``{source, tile_id, e_km, n_km, year, name}``.

    Raises :class:`DataError` naming the file when it is neither.
    """
    catalog = catalog or load_catalog()
    for source in TILED_SOURCES:
        parsed = parse_member(filename, source, catalog)
        if parsed is not None:
            return parsed.as_dict()
    patterns = ", ".join(_member_pattern(s, catalog) for s in TILED_SOURCES)
    raise DataError(f"{filename}: not an NRW tile file name (expected one of: {patterns})")


def package_name(source: str, region: Region, catalog: Catalog | None = None) -> str:
    """The file name of a region's provider package, from the catalog URL (``dop_<AGS>_<Name>_...zip``)."""
    catalog = catalog or load_catalog()
    if source not in catalog.sources:
        raise UsageError(f"unknown source {source!r}; known: {', '.join(catalog.sources)}")
    url = region.source_url(catalog.sources[source])
    if not url:
        raise UsageError(f"source {source!r} has no package URL in the catalog")
    from urllib.parse import unquote

    return unquote(url.rsplit("/", 1)[-1])


def tsx_product_name(
    start: str,
    stop: str,
    variant: str = "SE___SL_S_SRA",
    mission: str = "TSX1",
    product: str = "EEC",
) -> str:
    """A TerraSAR-X product folder name; ``start``/``stop`` as ``YYYYMMDDTHHMMSS``."""
    name = f"{mission}_SAR__{product}_{variant}_{start}_{stop}"
    if not _TSX.match(name):
        raise UsageError(f"not a valid TerraSAR-X product name: {name!r}")
    return name


def parse_tsx_name(folder: str) -> dict | None:
    """``{mission, product, variant, start, stop}`` of a TerraSAR-X product folder, else ``None``."""
    match = _TSX.match(PurePath(folder).name)
    return match.groupdict() if match else None


def catalog_scenes(catalog: Catalog) -> list[dict[str, str]]:
    """The catalog's TerraSAR-X scene list (``geosynth catalog --sar``): product, orbit, start."""
    rows = []
    for scene in catalog.tsx_scenes:
        parsed = parse_tsx_name(scene.product) or {}
        rows.append({"product": scene.product, "orbit": scene.orbit,
                     "start": parsed.get("start", "")})  # fmt: skip
    return rows
