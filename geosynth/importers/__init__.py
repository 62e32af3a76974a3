"""Importers of the published datasets into the store contract of :mod:`geosynth.store`.

- :mod:`geosynth.importers.geonrw`: the GeoNRW release (``<city>/<E>_<N>_rgb.jp2``, ...);
- :mod:`geosynth.importers.dfc2020`: the IEEE GRSS Data Fusion Contest 2020 patches;
- :mod:`geosynth.importers.common`: probing, resumable planning, the run loop, the report.

Stores written here read exactly like those of ``geosynth build-geonrw``:
training, evaluation and editing never care where a store came from.
"""
