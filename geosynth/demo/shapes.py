"""Small shapely helpers of the demo world's layout (pieces of geometries, rotated boxes)."""

from __future__ import annotations

from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Polygon, box


def polygons(geom) -> list[Polygon]:
    """The non-empty polygons of any geometry."""
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]


def lines(geom) -> list[LineString]:
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, LineString):
        return [geom]
    out = []
    for g in getattr(geom, "geoms", []):
        out.extend(lines(g))
    return out


def rotated_box(cx: float, cy: float, length: float, width: float, angle: float) -> Polygon:
    """A rectangle ``length`` along direction ``angle`` (radians from east), ``width`` across."""
    return affinity.rotate(
        box(cx - length / 2, cy - width / 2, cx + length / 2, cy + width / 2),
        angle,
        origin=(cx, cy),
        use_radians=True,
    )
