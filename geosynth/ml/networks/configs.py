"""The networks' configs: frozen dataclasses saved with every checkpoint, and the paper's defaults.

The one home of the networks' default sizes (capacity 64, the 256 px training crop, the
U-Net's 64 base channels): training options, parameter counts and the command line read
them from here. Plain Python: the training configuration and ``geosynth --help`` import it
without torch; the modules that build the networks re-export their configs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from geosynth.errors import UsageError
from geosynth.names import GENERATOR_KINDS, KIND_INPUTS, SPECTRAL_MODES, UNET_NORMS

PAPER_CROP = 256  # the training crop of the paper (px, square): two discriminator scales
SPADE_HIDDEN = 128  # width of SPADE's shared MLP layer (Park et al.; the paper's code)
COND_HIDDEN = 64  # width of the condition embedding the FiLM layers read


def check_spectral_mode(mode: str) -> str:
    if mode not in SPECTRAL_MODES:
        raise UsageError(f"spectral_norm must be one of {', '.join(SPECTRAL_MODES)}, not {mode!r}")
    return mode


def default_num_scales(crop: int) -> int:
    """Discriminator scales for a crop size: 2 up to 256 px (Table II), 3 from 512 px."""
    return 2 if crop < 512 else 3


DEFAULT_BLOCKS = {"spade": 2}  # ResNet blocks before the decoder; 9 for the others


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; saved with its checkpoints.

    ``label_channels`` counts the one-hot classes incl. unlabelled (11 for
    GeoNRW) and ``raster_channels`` the auxiliary raster's bands (1 for a DEM);
    a kind that does not use an input must have 0 for it. ``output_channels``
    is 3 (RGB), 1 (single-pol SAR) or 2 (dual-pol SAR). ``capacity`` is the
    width of the first layer (64 in the paper); all widths scale with it.
    """

    kind: str = "ours"
    label_channels: int = 11
    raster_channels: int = 1
    output_channels: int = 3
    capacity: int = 64
    n_sampling: int = 4
    n_blocks: int | None = None
    spade_hidden: int = SPADE_HIDDEN
    norm_affine: bool = True
    spectral_norm: str = "all"
    merge_ratio: float = 0.75
    condition_dim: int = 0
    noise_channels: int = 0

    def __post_init__(self):
        if self.kind not in GENERATOR_KINDS:
            raise UsageError(
                f"generator kind must be one of {', '.join(GENERATOR_KINDS)}, not {self.kind!r}"
            )
        check_spectral_mode(self.spectral_norm)
        uses_labels, uses_raster = KIND_INPUTS[self.kind]
        for name, used, value in (
            ("label_channels", uses_labels, self.label_channels),
            ("raster_channels", uses_raster, self.raster_channels),
        ):
            if used and value < 1:
                raise UsageError(f"generator {self.kind!r} needs {name} >= 1, got {value}")
            if not used and value != 0:
                raise UsageError(
                    f"generator {self.kind!r} does not use {name}; set it to 0, not {value}"
                )
        if self.output_channels < 1:
            raise UsageError(f"output_channels must be >= 1, got {self.output_channels}")
        if self.capacity < 1 or self.n_sampling < 1:
            raise UsageError(
                f"capacity and n_sampling must be >= 1, got {self.capacity}, {self.n_sampling}"
            )
        if self.n_blocks is None:
            object.__setattr__(self, "n_blocks", DEFAULT_BLOCKS.get(self.kind, 9))
        if not 0 < self.merge_ratio <= 1:
            raise UsageError(f"merge_ratio must be in (0, 1], got {self.merge_ratio}")
        if self.condition_dim < 0 or self.noise_channels < 0:
            raise UsageError(
                f"condition_dim and noise_channels must be >= 0, got "
                f"{self.condition_dim}, {self.noise_channels}"
            )

    @property
    def cond_width(self) -> int:
        """Width of the condition embedding the FiLM layers read (0: unconditioned)."""
        return COND_HIDDEN if self.condition_dim else 0

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.n_sampling

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"unknown generator config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Everything needed to rebuild a discriminator; saved with its checkpoints.

    ``condition_channels``: the generator's input channels (one-hot labels plus
    raster bands); ``output_channels``: the image's. ``n_layers`` counts the
    convolutions before the final one-channel conv (4 in the paper).
    """

    condition_channels: int
    output_channels: int
    num_scales: int = 2
    capacity: int = 64
    n_layers: int = 4
    spectral_norm: str = "all"
    condition_dim: int = 0

    def __post_init__(self):
        check_spectral_mode(self.spectral_norm)
        if self.condition_channels < 0 or self.output_channels < 1:
            raise UsageError(
                f"discriminator needs condition_channels >= 0 and output_channels >= 1, got "
                f"{self.condition_channels}, {self.output_channels}"
            )
        if self.condition_dim < 0:
            raise UsageError(f"condition_dim must be >= 0, got {self.condition_dim}")
        if self.num_scales < 1 or self.n_layers < 2 or self.capacity < 1:
            raise UsageError(
                f"num_scales >= 1, n_layers >= 2 and capacity >= 1 required, got "
                f"{self.num_scales}, {self.n_layers}, {self.capacity}"
            )

    @property
    def in_channels(self) -> int:
        return self.condition_channels + self.output_channels + self.condition_dim

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DiscriminatorConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise UsageError(f"unknown discriminator config keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def for_generator(cls, generator_config, num_scales: int = 2, **options) -> DiscriminatorConfig:
        """The discriminator matching a :class:`~geosynth.ml.networks.generators.GeneratorConfig`."""
        g = generator_config
        return cls(
            condition_channels=g.label_channels + g.raster_channels,
            output_channels=g.output_channels,
            num_scales=num_scales,
            condition_dim=getattr(g, "condition_dim", 0),
            **options,
        )


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a U-Net; saved with its checkpoints."""

    in_channels: int = 3
    num_classes: int = 11
    base_channels: int = 64
    depth: int = 4
    norm: str = "none"  # "none" (the paper's scorer) or "batch"

    def __post_init__(self):
        if min(self.in_channels, self.num_classes, self.base_channels, self.depth) < 1:
            raise UsageError(f"U-Net sizes must be >= 1: {self}")
        if self.norm not in UNET_NORMS:
            raise UsageError(
                f"U-Net norm must be one of {', '.join(UNET_NORMS)}, got {self.norm!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise UsageError(f"unknown U-Net config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


def generator_config_for(
    kind: str, label_channels: int, raster_channels: int, output_channels: int, **options
) -> GeneratorConfig:
    """A config for ``kind`` from the data's channel counts, zeroing the inputs it does not use."""
    if kind not in KIND_INPUTS:
        raise UsageError(
            f"generator kind must be one of {', '.join(GENERATOR_KINDS)}, not {kind!r}"
        )
    uses_labels, uses_raster = KIND_INPUTS[kind]
    return GeneratorConfig(
        kind=kind,
        label_channels=label_channels if uses_labels else 0,
        raster_channels=raster_channels if uses_raster else 0,
        output_channels=output_channels,
        **options,
    )
