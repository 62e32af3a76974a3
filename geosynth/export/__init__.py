"""A store's tiles out of Zarr, for readers that do not read the store.

- :mod:`~geosynth.export.stac`: Cloud-Optimised GeoTIFFs and a STAC catalog
  (``geosynth export``), for GDAL, QGIS, odc-stac and torchgeo's ``RasterDataset``.
"""

from geosynth.export.stac import ExportResult, export_store

__all__ = ["ExportResult", "export_store"]
