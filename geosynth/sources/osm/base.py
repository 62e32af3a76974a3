"""What both OSM readers share: the tag filter, how far a buffered way reaches, tile boxes in WGS84.

:mod:`~geosynth.sources.osm.features` (XML, Overpass and the classification) and
:mod:`~geosynth.sources.osm.pbf` (streamed PBF, OSM cuts) both import these.
"""

from __future__ import annotations

import numpy as np

from geosynth.catalog import OsmRules
from geosynth.grid import RasterGrid

WGS84 = "EPSG:4326"


def osm_tags(rules: OsmRules) -> dict[str, bool]:
    """The OSM tag filter for the features the catalog maps."""
    return {rules.building_tag: True, rules.highways.tag: True, rules.railways.tag: True}


def max_half_width(rules: OsmRules) -> float:
    """Half the widest catalog width: how far a buffered line reaches beyond its centre line."""
    return max([*rules.highways.widths_m.values(), *rules.railways.widths_m.values(), 0.0]) / 2


def grid_polygon_wgs84(grid: RasterGrid, margin: float = 0.0):
    """The grid's bounds widened by ``margin`` (grid units) as a densified WGS84 polygon."""
    return boxes_wgs84([grid.bounds], grid.crs, margin)[0]


def boxes_wgs84(bounds, crs: str, margin: float = 0.0) -> np.ndarray:
    """Boxes ``(left, bottom, right, top)`` in ``crs``, widened by ``margin``, as WGS84 polygons.

    Each box is densified to a vertex every 1/20 of its longer side, so the
    polygon follows the box's curved image in WGS84; one transform call for
    all boxes (a region cut passes thousands of tiles).
    """
    import shapely
    from pyproj import Transformer

    bounds = np.asarray(bounds, dtype=float).reshape(-1, 4)  # (N, 4)
    left, bottom, right, top = bounds.T
    boxes = shapely.box(left - margin, bottom - margin, right + margin, top + margin)
    boxes = shapely.segmentize(boxes, np.maximum(right - left, top - bottom) / 20)
    to_wgs84 = Transformer.from_crs(crs, WGS84, always_xy=True)
    return shapely.transform(
        boxes, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
    )
