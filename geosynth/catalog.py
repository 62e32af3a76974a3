"""``data_catalog.yaml`` -> frozen dataclasses.

The catalog is the one place for facts about data: the tile grid, the class
table, how ATKIS object types and OSM tags map to classes, normalisation
constants and the regions with their provider URLs. Every value is checked
while parsing; an error names the key path, e.g.
``data_catalog.yaml: regions.koeln.split: expected one of train, test, got 'tran'``.

Which catalog is read (first match wins):

1. the ``path`` argument of :func:`load_catalog`;
2. the environment variable ``GEOSYNTH_CATALOG``;
3. ``data_catalog.yaml`` installed inside the package (wheel installs);
4. ``data_catalog.yaml`` at the repository root (source checkouts).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geosynth import bundled_path
from geosynth.errors import CatalogError, UsageError
from geosynth.names import LAYOUTS, LISTING_FORMATS

SPLITS = ("train", "test")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def did_you_mean(word: str, choices) -> str:
    """``" (did you mean 'koeln', alias 'cologne'?)"`` for a misspelled name, else ``""``.

    ``choices``: names, or ``{spelling: canonical name}`` (aliases map to their name).
    """
    import difflib

    mapping = choices if isinstance(choices, Mapping) else {c: c for c in choices}
    close = difflib.get_close_matches(str(word).strip().lower(), list(mapping), n=1, cutoff=0.6)
    if not close:
        return ""
    name = mapping[close[0]]
    alias = f", alias {close[0]!r}" if close[0] != name else ""
    return f" (did you mean {name!r}{alias}?)"


@dataclass(frozen=True)
class GridSpec:
    crs: str
    tile_size_m: int
    pixel_size_m: float

    @property
    def tile_pixels(self) -> int:
        return round(self.tile_size_m / self.pixel_size_m)


@dataclass(frozen=True)
class ClassDef:
    id: int
    key: str
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class ClassTable:
    unlabelled: int
    classes: tuple[ClassDef, ...]
    burn_order: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.key for c in self.classes)

    @property
    def num_classes(self) -> int:
        """Number of class ids including the unlabelled 0 (11 for GeoNRW)."""
        return max(c.id for c in self.classes) + 1

    def by_key(self, key: str) -> ClassDef:
        for c in self.classes:
            if c.key == key:
                return c
        raise UsageError(
            f"unknown class {key!r}{did_you_mean(key, self.keys)}; known: {', '.join(self.keys)}"
        )

    def id_of(self, key: str) -> int:
        return self.by_key(key).id

    def lookup(self, key_or_name: str) -> ClassDef:
        """The class with this key or name (as the edit commands accept either)."""
        for c in self.classes:
            if key_or_name in (c.key, c.name):
                return c
        names = {**{c.key: c.key for c in self.classes}, **{c.name: c.key for c in self.classes}}
        hint = did_you_mean(key_or_name, names)
        raise UsageError(f"unknown class {key_or_name!r}{hint}; known: {', '.join(self.keys)}")

    def name_of(self, class_id: int) -> str:
        """The name of a class id; ``unlabelled`` for 0, ``class <id>`` for ids not in the table."""
        for c in self.classes:
            if c.id == class_id:
                return c.name
        return "unlabelled" if class_id == self.unlabelled else f"class {class_id}"

    def palette(self) -> list[tuple[int, int, int]]:
        """RGB colour per class id 0..num_classes-1 (black for unlabelled)."""
        pal = [(0, 0, 0)] * self.num_classes
        for c in self.classes:
            pal[c.id] = c.rgb
        return pal


@dataclass(frozen=True)
class AttributeRule:
    field: str
    values: Mapping[str, str]
    default: str | None


@dataclass(frozen=True)
class AtkisMapping:
    type_field: str
    types: Mapping[str, str]
    by_attribute: Mapping[str, AttributeRule]


@dataclass(frozen=True)
class LineRule:
    """OSM line features of one tag, buffered to a width per tag value."""

    tag: str
    widths_m: Mapping[str, float]
    classes: Mapping[str, str]
    default_class: str


@dataclass(frozen=True)
class OsmRules:
    building_tag: str
    building_exclude: tuple[str, ...]
    building_class: str
    highways: LineRule
    railways: LineRule


@dataclass(frozen=True)
class SarNorm:
    rule: str
    db_factor: float
    divisor: float
    clip: tuple[float, float]
    nodata: float
    min_valid_fraction: float

    def to_attrs(self) -> dict[str, Any]:
        """The store's ``geosynth:normalisation`` entry for SAR."""
        return {
            "rule": self.rule,
            "db_factor": self.db_factor,
            "divisor": self.divisor,
            "clip": list(self.clip),
            "nodata": self.nodata,
            "min_valid_fraction": self.min_valid_fraction,
        }


@dataclass(frozen=True)
class Dfc2020Norm:
    classes: tuple[ClassDef, ...]
    s1_db_clip: tuple[float, float]
    s2_rgb_bands: tuple[int, ...]
    s2_clip: tuple[float, float]


@dataclass(frozen=True)
class SourceLayout:
    """How a provider publishes one tiled source: per-tile files in a listed folder
    (``tiles``) or per-municipality archives (``packages``)."""

    name: str
    member_pattern: str
    listing: str | None = None  # tiles: the folder whose listing names the files
    listing_format: str | None = None  # tiles: one of names.LISTING_FORMATS
    url: str | None = None  # packages: the archive URL, with {ags} and {package}
    metadata: str | None = None  # tiles: per-tile records (flight dates), a zip of CSV
    history: str | None = None  # tiles: the folder of an older vintage, with {year}
    subfolders: tuple[str, ...] = ()  # tiles: folders a listing may keep its tiles in
    record: str = ""  # where the facts come from


@dataclass(frozen=True)
class SourceSpec:
    name: str
    description: str
    url: str | None
    layouts: Mapping[str, SourceLayout] = field(default_factory=dict)
    default_layout: str | None = None
    layer: str | None = None  # boundary: the layer of municipalities
    key_field: str | None = None  # boundary: the field with the 8-digit key
    extract: str | None = None  # osm: where people download a whole state
    drop_classes: tuple[int, ...] = ()  # lidar: point classes never in a surface model
    layers: tuple[str, ...] = ()  # landcover: the members of the package a build needs
    record: str = ""
    licence: str | None = None  # a key of the catalog's ``licences``

    @property
    def member_pattern(self) -> str | None:
        """The file name pattern of the default layout (None for untiled sources)."""
        layout = self.layouts.get(self.default_layout or "")
        return layout.member_pattern if layout else None

    @property
    def member_patterns(self) -> tuple[str, ...]:
        """Every layout's file name pattern, the default first (discovery accepts each)."""
        patterns = [self.member_pattern] + [lay.member_pattern for lay in self.layouts.values()]
        return tuple(dict.fromkeys(p for p in patterns if p))

    def layout(self, name: str | None = None) -> SourceLayout:
        key = name or self.default_layout
        if key not in self.layouts:
            raise UsageError(
                f"source {self.name!r} has no layout {key!r}; it has: {', '.join(self.layouts) or '-'}"
            )
        return self.layouts[key]


@dataclass(frozen=True)
class TsxScene:
    """One TerraSAR-X product of the published GeoNRW SAR tiles (the authors' list)."""

    product: str
    orbit: str  # ascending or descending


@dataclass(frozen=True)
class PublishedDataset:
    name: str
    url: str
    filename: str
    md5: str | None
    licence: str = ""
    cite: str = ""


@dataclass(frozen=True)
class Licence:
    """A licence the sources come under (``licences`` of the catalog)."""

    key: str
    name: str
    url: str | None
    terms: str
    record: str = ""


@dataclass(frozen=True)
class Region:
    name: str
    split: str
    ags: str
    package: str
    aliases: tuple[str, ...] = ()
    generated: bool = False  # its raw files are written locally, not downloaded
    sources_folder: str | None = None  # generated: where, under geosynth's cache folder
    prepared_by: str | None = None  # generated: the command that writes them
    origin_km: tuple[int, int] | None = None
    tiles: tuple[int, int] | None = None
    test_tiles: tuple[str, ...] = ()

    def split_of(self, tile_id: str) -> str:
        """The split of one tile: the region's, unless the tile is listed as test."""
        return "test" if tile_id in self.test_tiles else self.split

    def source_url(self, source: SourceSpec, layout: str = "packages") -> str | None:
        """The region's archive of ``source`` (its ``packages`` layout, or its one URL); the
        package name percent-encoded as URLs need (``Köln`` -> ``K%C3%B6ln``)."""
        from urllib.parse import quote

        pattern = source.layouts[layout].url if layout in source.layouts else source.url
        if pattern is None:
            return None
        return pattern.format(ags=self.ags, package=quote(self.package))


@dataclass(frozen=True)
class Catalog:
    version: int
    grid: GridSpec
    classes: ClassTable
    atkis: AtkisMapping
    osm: OsmRules
    sar: SarNorm
    dfc2020: Dfc2020Norm
    sources: Mapping[str, SourceSpec]
    published: Mapping[str, PublishedDataset]
    regions: Mapping[str, Region]
    tsx_scenes: tuple[TsxScene, ...]
    redirect_hosts: tuple[str, ...]  # where the catalog's hosts redirect downloads to
    path: Path = field(compare=False)
    sha256: str = field(compare=False)
    licences: Mapping[str, Licence] = field(default_factory=dict, compare=False)

    def region(self, name: str) -> Region:
        """Look a region up by name or alias (case-insensitive)."""
        key = name.strip().lower()
        if key in self.regions:
            return self.regions[key]
        for region in self.regions.values():
            if key in region.aliases:
                return region
        names = {n: n for n in self.regions}
        names.update({alias: n for n, r in self.regions.items() for alias in r.aliases})
        known = ", ".join(
            f"{n} ({', '.join(r.aliases)})" if r.aliases else n for n, r in self.regions.items()
        )
        raise UsageError(
            f"unknown region {name!r}{did_you_mean(key, names)}; see `geosynth catalog` "
            f"(known, aliases in brackets: {known})"
        )

    def listing(self) -> list[dict[str, str]]:
        """One row per region for ``geosynth catalog``: name, split, AGS, aliases, sources."""
        return [
            {
                "name": r.name,
                "split": r.split,
                "ags": r.ags,
                "aliases": ", ".join(r.aliases),
                "sources": "generated offline" if r.generated else "dop, lidar, landcover, osm",
            }
            for r in self.regions.values()
        ]

    def describe(self, name: str) -> dict[str, Any]:
        """One region as ``geosynth catalog REGION`` shows it, with its package URLs."""
        r = self.region(name)
        info: dict[str, Any] = {
            "name": r.name,
            "split": r.split,
            "ags": r.ags,
            "package": r.package,
            "aliases": list(r.aliases),
            "generated": r.generated,
            "test_tiles": list(r.test_tiles),
            "sources": {key: self._source_info(r, s) for key, s in self.sources.items()},
        }
        if r.generated:
            info["origin_km"] = list(r.origin_km or ())
            info["tiles"] = list(r.tiles or ())
        return info

    @staticmethod
    def _source_info(region: Region, source: SourceSpec) -> dict[str, Any]:
        info: dict[str, Any] = {"description": source.description}
        if not source.layouts:
            info["url"] = region.source_url(source)
            return info
        info["default_layout"] = source.default_layout
        info["layouts"] = {
            name: (lay.listing if name == "tiles" else region.source_url(source, name))
            for name, lay in source.layouts.items()
        }
        return info

    def cities(self, split: str | None = None) -> list[Region]:
        """The published GeoNRW cities (generated regions such as ``demo`` excluded)."""
        return [
            r
            for r in self.regions.values()
            if not r.generated and (split is None or r.split == split)
        ]


# --------------------------------------------------------------------------- parsing


class _Node:
    """A YAML value with its key path, so every error can say where it is."""

    def __init__(self, value: Any, path: str, file: str):
        self.value = value
        self.path = path
        self.file = file

    def fail(self, message: str) -> CatalogError:
        return CatalogError(f"{self.file}: {self.path or '<root>'}: {message}")

    def child(self, key: str | int, required: bool = True, default: Any = None) -> _Node:
        if isinstance(key, int):  # list item, already bounds-checked by list()
            return _Node(self.value[key], f"{self.path}[{key}]", self.file)
        mapping = self.mapping()
        path = f"{self.path}.{key}" if self.path else key
        if key in mapping:
            return _Node(mapping[key], path, self.file)
        if required:
            raise _Node(None, path, self.file).fail("missing")
        return _Node(default, path, self.file)

    def mapping(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping, got {type(self.value).__name__}")
        return self.value

    def items(self) -> list[tuple[str, _Node]]:
        return [(str(k), self.child(k)) for k in self.mapping()]

    def list(self, length: int | None = None) -> list[_Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {type(self.value).__name__}")
        if length is not None and len(self.value) != length:
            raise self.fail(f"expected {length} items, got {len(self.value)}")
        return [self.child(i) for i in range(len(self.value))]

    def str(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail(f"expected a non-empty string, got {self.value!r}")
        return self.value

    def opt_str(self) -> str | None:
        return None if self.value is None else self.str()

    def int(self) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"expected an integer, got {self.value!r}")
        return self.value

    def number(self, positive: bool = False) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.fail(f"expected a number, got {self.value!r}")
        if positive and self.value <= 0:
            raise self.fail(f"expected a positive number, got {self.value!r}")
        return float(self.value)

    def choice(self, options: tuple[str, ...]) -> str:
        if self.value not in options:
            raise self.fail(f"expected one of {', '.join(options)}, got {self.value!r}")
        return self.value

    def range2(self) -> tuple[float, float]:
        lo, hi = (n.number() for n in self.list(2))
        if lo >= hi:
            raise self.fail(f"expected [low, high] with low < high, got {self.value!r}")
        return lo, hi


def _class_defs(node: _Node) -> tuple[ClassDef, ...]:
    defs = []
    for item in node.list():
        color = item.child("color").str()
        if not _COLOR.match(color):
            raise item.child("color").fail(f"expected a colour like '#2ca02c', got {color!r}")
        defs.append(
            ClassDef(
                id=item.child("id").int(),
                key=item.child("key").str(),
                name=item.child("name").str(),
                color=color,
            )
        )
    ids = [d.id for d in defs]
    keys = [d.key for d in defs]
    if len(set(ids)) != len(ids) or len(set(keys)) != len(keys):
        raise node.fail("class ids and keys must be unique")
    if min(ids) < 1:
        raise node.fail("class ids start at 1 (0 is unlabelled)")
    return tuple(defs)


def _class_key(node: _Node, keys: tuple[str, ...]) -> str:
    return node.choice(keys)


def _parse_grid(node: _Node) -> GridSpec:
    crs = node.child("crs").str()
    if not re.match(r"^EPSG:\d+$", crs):
        raise node.child("crs").fail(f"expected 'EPSG:<code>', got {crs!r}")
    grid = GridSpec(
        crs=crs,
        tile_size_m=node.child("tile_size_m").int(),
        pixel_size_m=node.child("pixel_size_m").number(positive=True),
    )
    if grid.tile_size_m <= 0 or abs(grid.tile_pixels * grid.pixel_size_m - grid.tile_size_m) > 1e-9:
        raise node.fail("tile_size_m must be a positive multiple of pixel_size_m")
    return grid


def _parse_classes(node: _Node) -> ClassTable:
    classes = _class_defs(node.child("items"))
    keys = tuple(c.key for c in classes)
    order_node = node.child("burn_order")
    order = tuple(_class_key(n, keys) for n in order_node.list())
    if sorted(order) != sorted(keys):
        missing = sorted(set(keys) - set(order))
        raise order_node.fail(f"must list every class exactly once (missing: {missing})")
    unlabelled = node.child("unlabelled").int()
    if unlabelled in {c.id for c in classes}:
        raise node.child("unlabelled").fail("must differ from every class id")
    return ClassTable(unlabelled=unlabelled, classes=classes, burn_order=order)


def _parse_atkis(node: _Node, keys: tuple[str, ...]) -> AtkisMapping:
    types = {name: _class_key(n, keys) for name, n in node.child("types").items()}
    rules = {}
    for name, rule in node.child("by_attribute", required=False, default={}).items():
        default = rule.child("default", required=False)
        rules[name] = AttributeRule(
            field=rule.child("field").str(),
            values={str(k): _class_key(v, keys) for k, v in rule.child("values").items()},
            default=None if default.value is None else _class_key(default, keys),
        )
    return AtkisMapping(type_field=node.child("type_field").str(), types=types, by_attribute=rules)


def _parse_line_rule(node: _Node, keys: tuple[str, ...]) -> LineRule:
    widths = {k: v.number(positive=True) for k, v in node.child("widths_m").items()}
    if "class" in node.mapping():
        default = _class_key(node.child("class"), keys)
    else:
        default = _class_key(node.child("default_class"), keys)
    classes = {
        k: _class_key(v, keys) for k, v in node.child("classes", required=False, default={}).items()
    }
    return LineRule(
        tag=node.child("tag").str(), widths_m=widths, classes=classes, default_class=default
    )


def _parse_osm(node: _Node, keys: tuple[str, ...]) -> OsmRules:
    b = node.child("buildings")
    return OsmRules(
        building_tag=b.child("tag").str(),
        building_exclude=tuple(n.str() for n in b.child("exclude_values").list()),
        building_class=_class_key(b.child("class"), keys),
        highways=_parse_line_rule(node.child("highways"), keys),
        railways=_parse_line_rule(node.child("railways"), keys),
    )


def _parse_sar(node: _Node) -> SarNorm:
    fraction = node.child("min_valid_fraction").number()
    if not 0 < fraction <= 1:
        raise node.child("min_valid_fraction").fail(
            f"expected a fraction in (0, 1], got {fraction}"
        )
    return SarNorm(
        rule=node.child("rule").str(),
        db_factor=node.child("db_factor").number(positive=True),
        divisor=node.child("divisor").number(positive=True),
        clip=node.child("clip").range2(),
        nodata=node.child("nodata").number(),
        min_valid_fraction=fraction,
    )


def _parse_dfc(node: _Node) -> Dfc2020Norm:
    bands = tuple(n.int() for n in node.child("s2_rgb_bands").list(3))
    if any(not 1 <= b <= 13 for b in bands):
        raise node.child("s2_rgb_bands").fail("band numbers are 1-based, in 1..13")
    return Dfc2020Norm(
        classes=_class_defs(node.child("classes")),
        s1_db_clip=node.child("s1_db_clip").range2(),
        s2_rgb_bands=bands,
        s2_clip=node.child("s2_clip").range2(),
    )


def _parse_region(name: str, node: _Node) -> Region:
    ags = node.child("ags").str()
    if not re.match(r"^\d{8}$", ags):
        raise node.child("ags").fail(f"expected an 8-digit municipality key, got {ags!r}")
    origin = node.child("origin_km", required=False)
    tiles = node.child("tiles", required=False)
    generated = bool(node.child("generated", required=False, default=False).value)
    return Region(
        name=name,
        split=node.child("split").choice(SPLITS),
        ags=ags,
        package=node.child("package").str(),
        aliases=tuple(
            n.str().lower() for n in node.child("aliases", required=False, default=[]).list()
        ),
        generated=generated,
        sources_folder=node.child("sources_folder", required=generated).opt_str(),
        prepared_by=node.child("prepared_by", required=generated).opt_str(),
        origin_km=None if origin.value is None else tuple(n.int() for n in origin.list(2)),
        tiles=None if tiles.value is None else tuple(n.int() for n in tiles.list(2)),
        test_tiles=tuple(
            n.str() for n in node.child("test_tiles", required=False, default=[]).list()
        ),
    )


def _parse_layout(name: str, node: _Node) -> SourceLayout:
    layout = SourceLayout(
        name=name,
        member_pattern=node.child("member_pattern").str(),
        listing=node.child("listing", required=False).opt_str(),
        listing_format=(
            node.child("listing_format").choice(LISTING_FORMATS)
            if node.child("listing", required=False).value is not None
            else None
        ),
        url=node.child("url", required=False).opt_str(),
        metadata=node.child("metadata", required=False).opt_str(),
        history=node.child("history", required=False).opt_str(),
        subfolders=tuple(
            n.str() for n in node.child("subfolders", required=False, default=[]).list()
        ),
        record=node.child("record", required=False).opt_str() or "",
    )
    if layout.history and "{year}" not in layout.history:
        raise node.child("history").fail("needs {year} where the vintage goes")
    if name == "tiles" and not layout.listing:
        raise node.fail("a tiles layout needs a listing URL")
    if name == "packages" and not layout.url:
        raise node.fail("a packages layout needs a url with {ags} and {package}")
    return layout


def _parse_source(name: str, node: _Node) -> SourceSpec:
    layouts = {
        key: _parse_layout(key, n)
        for key, n in (node.child("layouts", required=False, default={}).items())
    }
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        raise node.child("layouts").fail(
            f"unknown layout(s) {', '.join(unknown)}; known: tiles, packages"
        )
    default = node.child("default_layout", required=False).opt_str()
    if layouts and default not in layouts:
        raise node.child("default_layout", required=False).fail(
            f"expected one of {', '.join(layouts)}, got {default!r}"
        )
    return SourceSpec(
        name=name,
        description=node.child("description").str(),
        url=node.child("url", required=False).opt_str(),
        layouts=layouts,
        default_layout=default,
        layer=node.child("layer", required=False).opt_str(),
        key_field=node.child("key_field", required=False).opt_str(),
        extract=node.child("extract", required=False).opt_str(),
        drop_classes=tuple(
            n.int() for n in node.child("drop_classes", required=False, default=[]).list()
        ),
        layers=tuple(n.str() for n in node.child("layers", required=False, default=[]).list()),
        record=node.child("record", required=False).opt_str() or "",
        licence=node.child("licence", required=False).opt_str(),
    )


def _parse_scenes(node: _Node) -> tuple[TsxScene, ...]:
    scenes = []
    for n in node.list():
        orbit = n.child("orbit").choice(("ascending", "descending"))
        scenes.append(TsxScene(product=n.child("product").str(), orbit=orbit))
    names = [s.product for s in scenes]
    if len(set(names)) != len(names):
        raise node.fail("a scene is listed twice")
    return tuple(scenes)


def parse_catalog(data: Any, file: str = "data_catalog.yaml", path: Path | None = None) -> Catalog:
    """Validate the parsed YAML ``data`` and build a :class:`Catalog`."""
    root = _Node(data, "", file)
    root.mapping()
    classes = _parse_classes(root.child("classes"))
    keys = classes.keys
    norm = root.child("normalisation")
    sources = {name: _parse_source(name, n) for name, n in root.child("sources").items()}
    published = {
        name: PublishedDataset(
            name=name,
            url=n.child("url").str(),
            filename=n.child("filename").str(),
            md5=n.child("md5", required=False).opt_str(),
            licence=n.child("licence", required=False).opt_str() or "",
            cite=n.child("cite", required=False).opt_str() or "",
        )
        for name, n in root.child("published").items()
    }
    licences = {
        key: Licence(
            key=key,
            name=n.child("name").str(),
            url=n.child("url", required=False).opt_str(),
            terms=n.child("terms").str(),
            record=n.child("record", required=False).opt_str() or "",
        )
        for key, n in root.child("licences", required=False, default={}).items()
    }
    for name, spec in sources.items():
        if spec.licence is not None and spec.licence not in licences:
            raise (
                root.child("sources")
                .child(name)
                .child("licence")
                .fail(f"not a key of licences ({', '.join(licences) or 'none'})")
            )
    regions = {name: _parse_region(name, n) for name, n in root.child("regions").items()}
    text = yaml.safe_dump(data, sort_keys=True).encode()
    return Catalog(
        version=root.child("version").int(),
        grid=_parse_grid(root.child("grid")),
        classes=classes,
        atkis=_parse_atkis(root.child("atkis"), keys),
        osm=_parse_osm(root.child("osm"), keys),
        sar=_parse_sar(norm.child("geonrw_sar")),
        dfc2020=_parse_dfc(norm.child("dfc2020")),
        sources=sources,
        published=published,
        regions=regions,
        tsx_scenes=_parse_scenes(root.child("tsx_scenes", required=False, default=[])),
        redirect_hosts=tuple(
            n.str() for n in root.child("redirect_hosts", required=False, default=[]).list()
        ),
        path=path or Path(file),
        sha256=hashlib.sha256(text).hexdigest(),
        licences=licences,
    )


def default_catalog_path() -> Path:
    """Where the catalog is read from when no path is given (see the module docstring)."""
    env = os.environ.get("GEOSYNTH_CATALOG")
    if env:
        return Path(env)
    return bundled_path("data_catalog.yaml")


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """Read and validate a catalog file (default: :func:`default_catalog_path`)."""
    if path is None:
        return _load_default(default_catalog_path())
    return _load(Path(path))


@functools.lru_cache(maxsize=4)
def _load_default(path: Path) -> Catalog:
    return _load(path)


def _load(path: Path) -> Catalog:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    return parse_catalog(data, file=str(path), path=path)
