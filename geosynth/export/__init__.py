"""A store's tiles out of Zarr, for readers that do not read the store.

- :mod:`~geosynth.export.stac`: Cloud-Optimised GeoTIFFs and a STAC catalog
  (``geosynth export``), for GDAL, QGIS, odc-stac and torchgeo's ``RasterDataset``;
- :mod:`~geosynth.export.geonrw`: the published GeoNRW folder (``export --layout
  geonrw``), for torchgeo's ``GeoNRW``, the authors' loaders and scripts for the release;
- :mod:`~geosynth.export.card`: the dataset card both write (``DATASET.md``, ``tiles.csv``).
"""

from geosynth.export.stac import ExportResult, export_store

__all__ = ["ExportResult", "export_store"]
