"""The torch side of geosynth: datasets over stores, the paper's networks, training, evaluation
and synthesis.

Only this subpackage imports torch, and only where it is needed: the names
below are imported on first use, so ``geosynth.ml.training.config`` (training
options) and ``geosynth.analysis.results`` (evaluation files) load without torch.
Networks are built from small frozen configs that are saved with checkpoints:

>>> from geosynth.ml import GeneratorConfig, build_generator
>>> g = build_generator(GeneratorConfig(kind="ours", capacity=8))

The subpackages, in the order of the data flow:

- :mod:`~geosynth.ml.data`: stores -> samples (tensors, datasets, conditions, mixing);
- :mod:`~geosynth.ml.networks`: the generators, discriminator and U-Net;
- :mod:`~geosynth.ml.training`: configs, the training loop, losses, DDP, checkpoints;
- :mod:`~geosynth.ml.evaluation`: Table III, the fusion probe, condition fidelity;
- :mod:`~geosynth.ml.synthesis`: whole tiles, edits and synthesized stores.

Their results are read without torch by :mod:`geosynth.analysis`.
"""

from __future__ import annotations

import importlib

from geosynth.names import GAN_KINDS, GENERATOR_KINDS, KIND_INPUTS

_EXPORTS = {
    "SynthesisDataset": "data.datasets",
    "generator_inputs": "data.tensors",
    "DiscriminatorConfig": "networks.configs",
    "DiscriminatorOutput": "networks.discriminator",
    "MultiscaleDiscriminator": "networks.discriminator",
    "build_discriminator": "networks.discriminator",
    "default_num_scales": "networks.configs",
    "generator_condition": "networks.discriminator",
    "Generator": "networks.generators",
    "GeneratorConfig": "networks.configs",
    "build_generator": "networks.generators",
    "generator_config_for": "networks.configs",
    "count_parameters": "networks.info",
    "on_meta": "networks.info",
    "parts": "networks.info",
    "UNet": "networks.unet",
    "UNetConfig": "networks.configs",
    "UNetOutput": "networks.unet",
    "build_unet": "networks.unet",
}

__all__ = ["GAN_KINDS", "GENERATOR_KINDS", "KIND_INPUTS", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
