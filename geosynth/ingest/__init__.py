"""Raw or published files -> tiles -> a store: every producer of stores, through one runner.

- :mod:`~geosynth.ingest.download`: a region's raw files and the published archives
  fetched from the catalog's hosts (``geosynth download``), resumed and verified, and
  archives extracted safely;
- :mod:`~geosynth.ingest.nrw`: the region build (``geosynth build-geonrw``): the
  per-provider stages of :mod:`geosynth.sources` on every tile of a region;
- :mod:`~geosynth.ingest.geonrw`: the published GeoNRW release (``import-geonrw``);
- :mod:`~geosynth.ingest.dfc2020`: the DFC2020 patches (``import-dfc2020``);
- :mod:`~geosynth.ingest.upgrade`: a version 1 store rewritten as version 2
  (``upgrade-store``);
- :mod:`~geosynth.ingest.run`: what they share: the resumable run of tile tasks
  (inline, process pool or dask), the tile records and the JSON report;
- :mod:`~geosynth.ingest.rasters`: header probing and pixel reading of published rasters.

Stores written here read the same whatever wrote them: training, evaluation
and editing never care where a store came from.
"""
