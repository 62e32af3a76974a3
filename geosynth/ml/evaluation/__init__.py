"""Scoring generators: Table III, the fusion probe, condition fidelity, the scorer on real images.

- :mod:`~geosynth.ml.metrics`: confusion matrices, mIoU, Frechet distance;
- :mod:`~geosynth.ml.evaluation.evaluate`: ``geosynth evaluate`` (Table III, Fig. 5);
- :mod:`~geosynth.ml.evaluation.probe`: ``geosynth fusion-probe`` (Fig. 7);
- :mod:`~geosynth.ml.evaluation.fidelity`: does a conditioned generator obey its condition;
- :mod:`~geosynth.ml.evaluation.score_unet`: a U-Net on the real images of a split.

The files they write are read without torch by :mod:`geosynth.analysis`.
"""
