"""A trained generator applied: whole tiles, edited inputs, synthesized training stores.

- :mod:`~geosynth.ml.synthesis.synthesize`: windowed, seamless synthesis of whole tiles,
  COGs and PNG panels (``synthesize``, ``vary``);
- :mod:`~geosynth.ml.synthesis.editing`: ``edit-flood`` and ``edit-classes`` (the edits
  are :mod:`geosynth.edit`);
- :mod:`~geosynth.ml.synthesis.augment`: ``geosynth augment``, a store of synthesized
  training data.
"""
