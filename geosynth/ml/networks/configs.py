"""The networks' configs: frozen dataclasses saved with every checkpoint, and the paper's defaults.

The one home of the networks' default sizes (capacity 64, the 256 px training crop, the
U-Net's 64 base channels): training options, parameter counts and the command line read
them from here. Plain Python: the training configuration and ``geosynth --help`` import it
without torch; the modules that build the networks re-export their configs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from geosynth.errors import UsageError
from geosynth.names import (
    BLOCK_ORDERS,
    DIFFUSION_PREDICTIONS,
    DIFFUSION_SAMPLERS,
    DIFFUSION_SCHEDULES,
    GENERATOR_KINDS,
    IMAGE_RANGES,
    KIND_INPUTS,
    SPECTRAL_MODES,
    UNET_NORMS,
    kind_inputs,
)

PAPER_CROP = 256  # the training crop of the paper (px, square): two discriminator scales
SPADE_HIDDEN = 128  # width of SPADE's shared MLP layer (Park et al.; the paper's code)
COND_HIDDEN = 64  # width of the condition embedding the FiLM layers read


def check_spectral_mode(mode: str) -> str:
    if mode not in SPECTRAL_MODES:
        raise UsageError(f"spectral_norm must be one of {', '.join(SPECTRAL_MODES)}, not {mode!r}")
    return mode


def check_input_order(order, channels: int, name: str) -> tuple[int, ...] | None:
    """``order`` as a tuple, checked to be a permutation of ``range(channels)`` (None: none)."""
    if order is None:
        return None
    order = tuple(int(i) for i in order)
    if sorted(order) != list(range(channels)):
        raise UsageError(f"{name} must be a permutation of 0..{channels - 1}, got {list(order)}")
    return order


def check_diffusion(config) -> None:
    """The diffusion options of a generator config or a run config, each named when wrong."""
    for name, value, allowed in (
        ("prediction", config.prediction, DIFFUSION_PREDICTIONS),
        ("schedule", config.schedule, DIFFUSION_SCHEDULES),
        ("sampler", config.sampler, DIFFUSION_SAMPLERS),
    ):
        if value not in allowed:
            raise UsageError(f"--{name} must be one of {', '.join(allowed)}, not {value!r}")
    if not (isinstance(config.steps, int) and config.steps >= 1):
        raise UsageError(f"--steps must be a whole number >= 1, got {config.steps!r}")
    if not (float(config.guidance) >= 0):
        raise UsageError(f"--guidance must be >= 0, got {config.guidance!r}")
    timesteps = getattr(config, "train_timesteps", 1000)
    if not (isinstance(timesteps, int) and timesteps >= config.steps):
        raise UsageError(
            f"--steps must be in [1, {timesteps}] (the training timesteps), got {config.steps}"
        )


def default_num_scales(crop: int) -> int:
    """Discriminator scales for a crop size: 2 up to 256 px (Table II), 3 from 512 px."""
    return 2 if crop < 512 else 3


def default_spade_hidden(kind: str, capacity: int) -> int:
    """Width of SPADE's shared layer: 128 for the GANs (SPADE's and the paper's code); for
    the diffusion generator ``min(128, 2 * capacity)``, the width of its full-resolution
    decoder block's input, so 128 at the paper's capacity 64 and narrower below. The
    denoiser runs once per sampling step (25 by default) and at the full resolution its
    SPADE layers cost ~40x its own convolutions with 128 hidden channels at capacity 8."""
    return min(SPADE_HIDDEN, 2 * capacity) if kind == "diffusion" else SPADE_HIDDEN


DEFAULT_BLOCKS = {"spade": 2}  # ResNet blocks before the decoder; 9 for the others


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; saved with its checkpoints.

    ``label_channels`` counts the one-hot classes incl. unlabelled (11 for
    GeoNRW) and ``raster_channels`` the auxiliary raster's bands (1 for a DEM);
    a kind that does not use an input must have 0 for it. ``output_channels``
    is 3 (RGB), 1 (single-pol SAR) or 2 (dual-pol SAR). ``capacity`` is the
    width of the first layer (64 in the paper); all widths scale with it.
    ``block_order``: ``geosynth`` (norm -> ReLU -> pad -> conv) or ``authors``
    (pad -> norm -> ReLU -> conv, the paper's code) inside every ResNet block
    (:mod:`geosynth.ml.networks.layers`). ``input_order`` (``concat`` only): the
    channel of ``cat[labels, raster]`` that each input channel of the first conv
    reads (None: that order); networks imported from the paper's code read its
    order (e.g. ``[dem, seg]``), so that their sums run as there.
    """

    kind: str = "ours"
    label_channels: int = 11
    raster_channels: int = 1
    output_channels: int = 3
    capacity: int = 64
    n_sampling: int = 4
    n_blocks: int | None = None
    spade_hidden: int | None = None  # None: SPADE_HIDDEN; the diffusion generator's: see below
    norm_affine: bool = True
    spectral_norm: str = "all"
    merge_ratio: float = 0.75
    condition_dim: int = 0
    noise_channels: int = 0
    block_order: str = "geosynth"
    input_order: tuple[int, ...] | None = None
    prediction: str = "epsilon"
    schedule: str = "cosine"
    train_timesteps: int = 1000
    sampler: str = "ddim"
    steps: int = 25
    guidance: float = 0.0

    def __post_init__(self):
        if self.kind not in GENERATOR_KINDS:
            raise UsageError(
                f"generator kind must be one of {', '.join(GENERATOR_KINDS)}, not {self.kind!r}"
            )
        check_spectral_mode(self.spectral_norm)
        if self.block_order not in BLOCK_ORDERS:
            raise UsageError(
                f"block_order must be one of {', '.join(BLOCK_ORDERS)}, not {self.block_order!r}"
            )
        uses_labels, uses_raster = kind_inputs(
            self.kind, self.label_channels > 0, self.raster_channels > 0
        )
        if not (uses_labels or uses_raster):
            raise UsageError(f"generator {self.kind!r} needs labels or a raster as input")
        check_diffusion(self)
        if self.kind == "diffusion" and self.noise_channels:
            raise UsageError("the diffusion generator draws its own noise: noise_channels 0")
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
        if self.spade_hidden is None:  # the denoiser's runs 25 times per sample: it scales
            object.__setattr__(self, "spade_hidden", default_spade_hidden(self.kind, self.capacity))
        if self.spade_hidden < 1:
            raise UsageError(f"spade_hidden must be >= 1, got {self.spade_hidden}")
        if self.input_order is not None and self.kind != "concat":
            raise UsageError(f"input_order applies to the concat generator, not {self.kind!r}")
        channels = self.label_channels + self.raster_channels
        order = check_input_order(self.input_order, channels, "input_order")
        object.__setattr__(self, "input_order", order)
        if not 0 < self.merge_ratio <= 1:
            raise UsageError(f"merge_ratio must be in (0, 1], got {self.merge_ratio}")
        if self.condition_dim < 0 or self.noise_channels < 0:
            raise UsageError(
                f"condition_dim and noise_channels must be >= 0, got "
                f"{self.condition_dim}, {self.noise_channels}"
            )

    @property
    def pad_first(self) -> bool:
        """ResNet blocks pad before their norms (``block_order="authors"``)."""
        return self.block_order == "authors"

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
    ``condition_order``: the channel of the condition (labels first, then the
    rasters) that each condition input of the first conv reads (None: that
    order); a discriminator imported from the paper's code reads its order.
    """

    condition_channels: int
    output_channels: int
    num_scales: int = 2
    capacity: int = 64
    n_layers: int = 4
    spectral_norm: str = "all"
    condition_dim: int = 0
    condition_order: tuple[int, ...] | None = None

    def __post_init__(self):
        check_spectral_mode(self.spectral_norm)
        order = check_input_order(self.condition_order, self.condition_channels, "condition_order")
        object.__setattr__(self, "condition_order", order)
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
    input_range: str = "symmetric"  # what the first conv sees: [-1, 1], or "unit": [0, 1]

    def __post_init__(self):
        if min(self.in_channels, self.num_classes, self.base_channels, self.depth) < 1:
            raise UsageError(f"U-Net sizes must be >= 1: {self}")
        if self.input_range not in IMAGE_RANGES:
            raise UsageError(
                f"U-Net input_range must be one of {', '.join(IMAGE_RANGES)}, "
                f"got {self.input_range!r}"
            )
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
    uses_labels, uses_raster = kind_inputs(kind, label_channels > 0, raster_channels > 0)
    return GeneratorConfig(
        kind=kind,
        label_channels=label_channels if uses_labels else 0,
        raster_channels=raster_channels if uses_raster else 0,
        output_channels=output_channels,
        **options,
    )
