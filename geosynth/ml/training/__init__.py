"""Training the GAN and the U-Net scorer: one loop, two tasks.

- :mod:`~geosynth.ml.training.config`: the run configurations (torch-free);
- :mod:`~geosynth.ml.training.trainer`: the shared loop (process group, run folder,
  seeding, resume, TensorBoard);
- :mod:`~geosynth.ml.training.train`: ``geosynth train``, the GAN step;
- :mod:`~geosynth.ml.training.train_unet`: ``geosynth train-unet``;
- :mod:`~geosynth.ml.training.losses`, :mod:`~geosynth.ml.training.seg_losses`: GAN and
  segmentation losses;
- :mod:`~geosynth.ml.training.distributed`: DDP plumbing (gloo/nccl, samplers, torchrun);
- :mod:`~geosynth.ml.training.checkpoint`: run folders, atomic saves, safe loads;
- :mod:`~geosynth.ml.training.visual`: image grids for TensorBoard and PNG.
"""
