"""OpenStreetMap for the landcover stage: buildings, roads and railways from files or Overpass.

- :mod:`~geosynth.sources.osm.features`: reading OSM XML and Overpass, telling file formats
  apart, and turning features into the shapes the landcover stage burns;
- :mod:`~geosynth.sources.osm.pbf`: PBF (and what else pyosmium reads) streamed once, and
  OSM cuts: the features near many tiles in one GeoPackage;
- :mod:`~geosynth.sources.osm.base`: what both share (the tag filter, buffer reach, WGS84
  boxes).
"""

from geosynth.sources.osm.base import (
    WGS84,
    boxes_wgs84,
    grid_polygon_wgs84,
    max_half_width,
    osm_tags,
)
from geosynth.sources.osm.features import (
    OVERPASS,
    default_cache_folder,
    osm_file_format,
    osm_shapes,
    read_osm_file,
    read_overpass,
)
from geosynth.sources.osm.pbf import cut_osm, ensure_osm_cut, read_osm_cut, read_osm_pbf

__all__ = [
    "OVERPASS",
    "WGS84",
    "boxes_wgs84",
    "cut_osm",
    "default_cache_folder",
    "ensure_osm_cut",
    "grid_polygon_wgs84",
    "max_half_width",
    "osm_file_format",
    "osm_shapes",
    "osm_tags",
    "read_osm_cut",
    "read_osm_file",
    "read_osm_pbf",
    "read_overpass",
]
