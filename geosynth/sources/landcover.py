"""The landcover stage: ATKIS land-cover polygons and OSM features -> a class map.

Inputs, each optional (but not both):

* vector files (shapefile, GeoPackage, any OGR format) with the ATKIS object
  type in the attribute ``atkis.type_field`` (``OBJART_TXT``); every layer
  that has that attribute is read, only within the grid's bounds. Types map to
  classes through ``atkis.types``; ``AX_Landwirtschaft`` is split by its
  vegetation attribute (``VEG``) through ``atkis.by_attribute`` (unknown or
  missing values take the rule's default). Types the catalog does not map are
  counted in the report under ``unmapped``, never burned. A file in which no
  layer has the type attribute is an error. A file without a CRS is taken to
  be in the output grid's CRS, with a warning.
* OSM: files (XML, PBF, or an OSM cut that
  :func:`geosynth.sources.osm.pbf.cut_osm` wrote for many tiles) or
  ``"overpass"`` (see :mod:`geosynth.sources.osm.features`); from a PBF or a cut only
  the features near the grid are read.

Burning: every shape carries a class key; shapes are rasterized in the
catalog's ``classes.burn_order`` (later classes overwrite earlier ones) with
``rasterio.features.rasterize(all_touched=False)``, i.e. a pixel takes a
shape's class when the pixel *centre* lies inside the shape (holes excluded;
centres exactly on an edge follow GDAL's scanline rule). Pixels no shape
covers are 0 (unlabelled). Only polygonal geometry is burned: lines and
points in land-cover files are counted under ``ignored``.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geosynth.catalog import AtkisMapping, Catalog, ClassTable, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.io import write_geotiff
from geosynth.sources import StageResult
from geosynth.sources.osm import (
    OVERPASS,
    grid_polygon_wgs84,
    max_half_width,
    osm_shapes,
    read_osm_file,
    read_overpass,
)

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
OsmInput = str | os.PathLike | Sequence[str | os.PathLike] | None


# --------------------------------------------------------------------------- ATKIS vectors


def _polygonal(geom):
    """The polygonal part of a geometry (Polygon/MultiPolygon), or None."""
    import shapely

    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
        return shapely.union_all(parts) if parts else None
    return None


def _attr_text(value: Any) -> str | None:
    """An attribute value as text: 1010, 1010.0 and "1010" all read "1010"; NaN/None -> None."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def classify_atkis(frame, atkis: AtkisMapping) -> tuple[list[str | None], dict[str, Counter]]:
    """The class key per row of ``frame`` (None = not mapped) and counters for the report.

    ``frame`` has the type column ``atkis.type_field`` and, where present, the
    attribute columns of ``atkis.by_attribute``. Counters: ``unmapped`` per
    object type, ``defaulted`` per ``"TYPE FIELD=value"`` that took a rule's default.
    """
    unmapped: Counter = Counter()
    defaulted: Counter = Counter()
    keys: list[str | None] = []
    for _, row in frame.iterrows():
        objart = _attr_text(row.get(atkis.type_field))
        if objart is None:
            unmapped["<no type>"] += 1
            keys.append(None)
        elif objart in atkis.types:
            keys.append(atkis.types[objart])
        elif objart in atkis.by_attribute:
            rule = atkis.by_attribute[objart]
            value = _attr_text(row.get(rule.field))
            if value in rule.values:
                keys.append(rule.values[value])
            elif rule.default is not None:
                defaulted[f"{objart} {rule.field}={value}"] += 1
                keys.append(rule.default)
            else:
                unmapped[f"{objart} {rule.field}={value}"] += 1
                keys.append(None)
        else:
            unmapped[objart] += 1
            keys.append(None)
    return keys, {"unmapped": unmapped, "defaulted": defaulted}


def read_vectors(
    path: str | os.PathLike, grid: RasterGrid, atkis: AtkisMapping
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """The land-cover features of every layer of ``path`` that has the type attribute.

    Reads only features intersecting the grid's bounds, reprojects them to
    the grid CRS and renames attribute columns to the catalog's spelling
    (matched case-insensitively). Returns the frame and the layer names read.
    """
    import geopandas as gpd
    import pandas as pd
    import pyogrio
    from rasterio.warp import transform_bounds

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: land-cover vector file not found")
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio.errors.DataSourceError and friends
        raise DataError(f"{path}: cannot open land-cover vector file: {exc}") from exc

    wanted = [atkis.type_field, *sorted({r.field for r in atkis.by_attribute.values()})]
    frames, read_layers, seen_fields = [], [], set()
    for layer in layers:
        try:
            info = pyogrio.read_info(path, layer=layer)
        except Exception as exc:
            raise DataError(f"{path}: cannot read layer {layer!r}: {exc}") from exc
        by_lower = {str(f).lower(): str(f) for f in info["fields"]}
        seen_fields.update(by_lower.values())
        if atkis.type_field.lower() not in by_lower or not info.get("geometry_type"):
            continue  # a layer without the type attribute, or an attribute-only table
        columns = {by_lower[w.lower()]: w for w in wanted if w.lower() in by_lower}
        crs = info["crs"]
        if crs is None:
            log.warning("%s: layer %r has no CRS; assuming the grid's %s", path, layer, grid.crs)
            crs = grid.crs
        bbox = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)
        try:
            frame = pyogrio.read_dataframe(path, layer=layer, bbox=bbox, columns=list(columns))
        except Exception as exc:
            raise DataError(f"{path}: cannot read layer {layer!r}: {exc}") from exc
        frame = frame.rename(columns=columns).set_crs(crs, allow_override=True)
        frames.append(frame.to_crs(grid.crs))
        read_layers.append(layer)
    if not read_layers:
        raise DataError(
            f"{path}: no layer has the attribute {atkis.type_field!r} that the catalog maps "
            f"(atkis.type_field); attributes found: {', '.join(sorted(seen_fields)) or 'none'}"
        )
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return gpd.GeoDataFrame(merged, geometry="geometry", crs=grid.crs), read_layers


def vector_shapes(
    path: str | os.PathLike, grid: RasterGrid, atkis: AtkisMapping
) -> tuple[list[tuple[Any, str]], dict[str, Any]]:
    """``[(polygon, class_key)]`` of one land-cover file and its report entry."""
    frame, layers = read_vectors(path, grid, atkis)
    keys, counters = classify_atkis(frame, atkis)
    features: Counter = Counter()
    ignored: Counter = Counter()
    shapes = []
    for geom, key in zip(frame.geometry, keys, strict=True):
        if key is None:
            continue
        poly = _polygonal(geom)
        if poly is None:
            ignored[f"{'empty' if geom is None or geom.is_empty else geom.geom_type} geometry"] += 1
            continue
        shapes.append((poly, key))
        features[key] += 1
    if counters["unmapped"]:
        log.warning(
            "%s: object types the catalog does not map (not burned): %s",
            path,
            dict(counters["unmapped"]),
        )
    return shapes, {"features": features, "ignored": ignored, "layers": layers, **counters}


# --------------------------------------------------------------------------- burning


def burn(shapes: Iterable[tuple[Any, str]], grid: RasterGrid, classes: ClassTable) -> np.ndarray:
    """Rasterize ``(geometry, class_key)`` pairs in the catalog's burn order: (H, W) uint8."""
    from rasterio.features import rasterize

    rank = {key: i for i, key in enumerate(classes.burn_order)}
    ordered = sorted(shapes, key=lambda item: rank[item[1]])  # stable: file order within a class
    if not ordered:
        return np.full(grid.shape, classes.unlabelled, dtype=np.uint8)
    return rasterize(
        ((geom, classes.id_of(key)) for geom, key in ordered),
        out_shape=grid.shape,
        transform=grid.transform,
        fill=classes.unlabelled,
        all_touched=False,
        dtype="uint8",
    )  # (H, W)


# --------------------------------------------------------------------------- the stage


def _osm_inputs(osm: OsmInput) -> list[str | Path]:
    if osm is None:
        return []
    if isinstance(osm, str | os.PathLike):
        osm = [osm]
    return [OVERPASS if str(item) == OVERPASS else Path(item) for item in osm]


def _merge(total: dict[str, Counter], part: dict[str, Any]) -> None:
    for name in ("features", "unmapped", "ignored", "defaulted"):
        total.setdefault(name, Counter()).update(part.get(name, {}))


def landcover_stage(
    grid: RasterGrid,
    *,
    vectors: Sequence[str | os.PathLike] = (),
    osm: OsmInput = None,
    catalog: Catalog | None = None,
    progress: Progress | None = None,
    overpass_cache: str | os.PathLike | None = None,
) -> StageResult:
    """Burn land-cover vectors and OSM features onto ``grid``: class ids (H, W) uint8.

    ``osm`` is an OSM file path (XML, PBF, an OSM cut), ``"overpass"``, or a
    sequence of those.
    ``overpass_cache`` is osmnx's cache folder for Overpass responses.
    ``progress(done, total)`` is called after each input and after burning.
    The report holds ``sources``, ``features`` per class, ``unmapped`` object
    types and tag values with counts, ``ignored`` geometries, ``defaulted``
    attribute values and ``pixels`` per class.
    """
    catalog = catalog or load_catalog()
    osm_items = _osm_inputs(osm)
    vectors = [Path(v) for v in vectors]
    if not vectors and not osm_items:
        raise UsageError(
            "landcover needs at least one input: vector files or OSM (--vectors/--osm)"
        )

    total = len(vectors) + len(osm_items) + 1
    shapes: list[tuple[Any, str]] = []
    counters: dict[str, Counter] = {}
    sources: list[dict[str, Any]] = []
    for done, path in enumerate(vectors, start=1):
        part_shapes, part = vector_shapes(path, grid, catalog.atkis)
        shapes += part_shapes
        _merge(counters, part)
        sources.append(
            {
                "kind": "vectors",
                "path": str(path),
                "layers": part["layers"],
                "features": sum(part["features"].values()),
            }
        )
        if progress:
            progress(done, total)

    rules = catalog.osm
    for done, item in enumerate(osm_items, start=len(vectors) + 1):
        if item == OVERPASS:
            area = grid_polygon_wgs84(grid, max_half_width(rules))
            gdf = read_overpass(area, rules, cache_folder=overpass_cache)
        else:
            gdf = read_osm_file(item, rules, grid)
        part_shapes, part = osm_shapes(gdf, rules, grid)
        shapes += part_shapes
        _merge(counters, part)
        sources.append(
            {"kind": "osm", "path": str(item), "features": sum(part["features"].values())}
        )
        if progress:
            progress(done, total)

    array = burn(shapes, grid, catalog.classes)  # (H, W) uint8
    if progress:
        progress(total, total)
    ids, counts = np.unique(array, return_counts=True)
    names = {c.id: c.key for c in catalog.classes.classes} | {
        catalog.classes.unlabelled: "unlabelled"
    }
    report = {
        "sources": sources,
        "features": {
            k: counters["features"][k]
            for k in catalog.classes.burn_order
            if counters["features"][k]
        },
        "unmapped": dict(counters["unmapped"].most_common()),
        "ignored": dict(counters["ignored"].most_common()),
        "defaulted": dict(counters["defaulted"].most_common()),
        "pixels": {
            names.get(int(i), str(int(i))): int(n) for i, n in zip(ids, counts, strict=True)
        },
        "rasterize": "pixel centre inside (all_touched=False), classes.burn_order, later wins",
    }
    return StageResult(
        array=array, grid=grid, nodata=None, report=report, descriptions=("land-cover class id",)
    )


def write_class_map(path: str | os.PathLike, result: StageResult, classes: ClassTable) -> Path:
    """Write a class map as a one-band uint8 GeoTIFF with the catalog's colour table, atomically."""
    import json

    return write_geotiff(
        path,
        result.array.astype(np.uint8),
        result.grid,
        descriptions=("land-cover class id",),
        nodata=classes.unlabelled,
        colormap={i: (*rgb, 255) for i, rgb in enumerate(classes.palette())},
        tags={
            "classes": json.dumps({c.id: c.key for c in classes.classes}),
            "unlabelled": classes.unlabelled,
        },
    )
