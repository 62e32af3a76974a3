"""Results read and drawn without torch: Table III files, speckle statistics, augmentation scores.

What the torch side (:mod:`geosynth.ml`) computes lands in files; these modules read,
tabulate and plot them, so ``geosynth table``, the pipeline report and a user's own
notebook need neither torch nor a GPU.

- :mod:`~geosynth.analysis.results`: an evaluation's ``metrics.json``, Table III rows, CSV,
  per-class IoU chart;
- :mod:`~geosynth.analysis.speckle`: speckle estimators and fits (ENL, coefficient of
  variation, Gamma and K fits, autocorrelation);
- :mod:`~geosynth.analysis.sar_stats`: ``geosynth sar-stats``, speckle statistics of real
  and synthesized SAR per class;
- :mod:`~geosynth.analysis.augment_scores`: the augmentation experiment's table and figure
  from many ``scores.json``.
"""
