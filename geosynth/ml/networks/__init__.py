"""The networks of the paper, built from small frozen configs.

- :mod:`~geosynth.ml.networks.layers`: SPADE, the ResNet blocks, spectral norm;
- :mod:`~geosynth.ml.networks.generators`: ours, spade, pix2pix, concat, merge (Table I);
- :mod:`~geosynth.ml.networks.discriminator`: the multiscale PatchGAN (Table II);
- :mod:`~geosynth.ml.networks.unet`: the U-Net scorer;
- :mod:`~geosynth.ml.networks.info`: parameter counts without allocating a network.
"""
