"""Stores -> torch: the samples networks train and run on.

- :mod:`~geosynth.ml.data.tensors`: stored pixels -> network tensors and back (the one
  preparation of a window);
- :mod:`~geosynth.ml.data.datasets`: :class:`~geosynth.ml.data.datasets.SynthesisDataset`,
  crops of a store's tiles;
- :mod:`~geosynth.ml.data.conditions`: the acquisition-condition vector of a sample;
- :mod:`~geosynth.ml.data.mixing`: two stores in one epoch (real and synthesized);
- :mod:`~geosynth.ml.data.geo`: windows by map coordinates and a torchgeo ``GeoDataset``.
"""
