"""The torch side of geosynth: datasets over stores and the networks of the paper.

Only this subpackage imports torch. Networks are built from small frozen
configs that are saved with checkpoints:

>>> from geosynth.ml import GeneratorConfig, build_generator
>>> g = build_generator(GeneratorConfig(kind="ours", capacity=8))
"""

from geosynth.ml.data import SynthesisDataset, generator_inputs
from geosynth.ml.discriminator import (
    DiscriminatorConfig,
    DiscriminatorOutput,
    MultiscaleDiscriminator,
    build_discriminator,
    default_num_scales,
    generator_condition,
)
from geosynth.ml.generators import (
    GENERATOR_KINDS,
    KIND_INPUTS,
    Generator,
    GeneratorConfig,
    build_generator,
    generator_config_for,
)
from geosynth.ml.info import count_parameters, on_meta, parts
from geosynth.ml.unet import UNet, UNetConfig, UNetOutput, build_unet

__all__ = [
    "GENERATOR_KINDS",
    "KIND_INPUTS",
    "DiscriminatorConfig",
    "DiscriminatorOutput",
    "Generator",
    "GeneratorConfig",
    "MultiscaleDiscriminator",
    "SynthesisDataset",
    "UNet",
    "UNetConfig",
    "UNetOutput",
    "build_discriminator",
    "build_generator",
    "build_unet",
    "count_parameters",
    "default_num_scales",
    "generator_condition",
    "generator_config_for",
    "generator_inputs",
    "on_meta",
    "parts",
]
