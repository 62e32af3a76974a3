"""The torch side of geosynth: datasets over stores, the networks of the paper, training,
evaluation, synthesis and the edits' synthesis.

Only this subpackage imports torch, and only where it is needed: the names
below are imported on first use, so ``geosynth.ml.config`` (training
options) and ``geosynth.ml.results`` (evaluation files) load without torch.
Networks are built from small frozen configs that are saved with checkpoints:

>>> from geosynth.ml import GeneratorConfig, build_generator
>>> g = build_generator(GeneratorConfig(kind="ours", capacity=8))

The modules, in the order of the data flow:

- ``inputs``: stored pixels -> network tensors (the one preparation) and back;
- ``data``: :class:`SynthesisDataset`, crops of a store's tiles;
- ``layers``, ``generators``, ``discriminator``, ``unet``, ``info``: the networks;
- ``losses``, ``distributed``, ``checkpoint``, ``trainer``, ``train``,
  ``train_unet``, ``config``, ``visual``: training;
- ``metrics``, ``evaluate``, ``results``: Table III;
- ``synthesize``, ``editing``: whole tiles and edited inputs through a generator.
"""

from __future__ import annotations

import importlib

from geosynth.names import GENERATOR_KINDS, KIND_INPUTS

_EXPORTS = {
    "SynthesisDataset": "data",
    "generator_inputs": "inputs",
    "DiscriminatorConfig": "discriminator",
    "DiscriminatorOutput": "discriminator",
    "MultiscaleDiscriminator": "discriminator",
    "build_discriminator": "discriminator",
    "default_num_scales": "discriminator",
    "generator_condition": "discriminator",
    "Generator": "generators",
    "GeneratorConfig": "generators",
    "build_generator": "generators",
    "generator_config_for": "generators",
    "count_parameters": "info",
    "on_meta": "info",
    "parts": "info",
    "UNet": "unet",
    "UNetConfig": "unet",
    "UNetOutput": "unet",
    "build_unet": "unet",
}

__all__ = ["GENERATOR_KINDS", "KIND_INPUTS", *sorted(_EXPORTS)]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
