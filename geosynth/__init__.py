"""geosynth: synthesize optical and SAR imagery from land-cover maps and auxiliary rasters.

The package follows the data flow: raw provider files -> per-source stages
(``geosynth.sources``) -> tiles on one grid (``geosynth.grid``) -> a Zarr store
(``geosynth.store``) -> torch datasets and models (``geosynth.ml``).
"""

__version__ = "0.1.0"
