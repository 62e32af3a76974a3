"""The generators of the paper (Table I) and its baselines, built from a frozen config.

Every generator is called as ``G(labels, raster)`` with a one-hot label map
``(B, L, H, W)`` and/or an auxiliary raster ``(B, R, H, W)`` (DEM or SAR), and
returns an image ``(B, output_channels, H, W)`` in [-1, 1] (tanh). ``H`` and
``W`` must be multiples of ``2 ** n_sampling`` (16).

Kinds (``GeneratorConfig.kind``):

- ``ours``: pix2pixHD encoder-decoder with SPADE in every norm layer. The
  raster enters the encoder (7 x 7 conv, four stride-2 convs); the label map
  enters every SPADE layer; nine SPADE ResNet blocks at ``16 * capacity``;
  four (nearest 2x upsample, SPADE ResNet block) decoder stages; 3 x 3 conv
  and tanh.
- ``spade``: labels only (the paper's "Label"): a 3 x 3 conv embeds the label
  map downsampled to ``H/16``, two SPADE ResNet blocks, the same decoder.
- ``pix2pix``: the ``ours`` architecture with BatchNorm instead of SPADE,
  raster only (the paper's "DEM" / "SAR").
- ``concat``: ``pix2pix`` fed the one-hot labels concatenated with the raster.
- ``merge``: a ``pix2pix`` branch for the raster and a ``spade`` branch for the
  labels at ``merge_ratio`` (75 %) of the capacity; a third decoder fuses them
  at every stage: upsample its own features, concatenate the two branches'
  decoder features of that stage, one plain ResNet block. The code published
  with the paper has no merge generator; this is our reading of the paper.

Parity with the code published with the paper (capacity 64, 11 classes, one
DEM channel, RGB output): ours 240,263,491, spade 64,209,731, pix2pix
186,306,499 and concat 186,340,995 parameters, matched exactly with the
defaults. With ``block_order="authors"`` and ``spectral_norm="reference"``
they compute what the published code computes (its weights transplanted,
outputs within float rounding: ``geosynth import-weights``); the defaults
differ in what changes no parameter count: BatchNorm statistics exclude the
reflection-padded border and SPADE's label map sits on the features' own grid
(the published code pads first), spectral norm covers every conv and starts
from 15 power iterations (see :mod:`geosynth.ml.networks.layers`).
``norm_affine=False`` gives SPADE's parameter-free BatchNorm (the published
code keeps the affine parameters).

Beyond the paper (both off by default, and then not one module is added):

- ``condition_dim`` > 0: the generator takes an acquisition condition vector
  ``(B, condition_dim)`` (:mod:`geosynth.ml.data.conditions`: season, year,
  incidence, orbit, look), embedded once by an MLP and applied as a FiLM
  scale and shift in every normalisation layer (added to SPADE's modulation;
  after BatchNorm in the encoders, bodies, decoders and merge's fusion).
- ``noise_channels`` > 0: OASIS-style noise (Schoenfeld et al. 2021): a
  vector ``z`` per image, ``(B, noise_channels)``, replicated over the image
  and concatenated to the label map every SPADE layer sees (``ours``,
  ``spade``, ``merge``'s label branch), or to the encoder's input for
  ``pix2pix`` and ``concat``. We chose it over SPADE's style encoder
  because it needs no extra network or KL term, works for all five kinds,
  and a per-image vector keeps a whole tile synthesized window by window
  consistent when every window gets the same ``z``. Not given, ``z`` is
  drawn from torch's generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.ml.networks.base import Generator
from geosynth.ml.networks.configs import DEFAULT_BLOCKS, GeneratorConfig
from geosynth.ml.networks.diffusion import DiffusionGenerator
from geosynth.ml.networks.layers import (
    SPADE,
    Downsample,
    LabelPyramid,
    ResBlock,
    SPADEResBlock,
    stem,
    to_image,
)

# --------------------------------------------------------------------------- parts


class Encoder(nn.Module):
    """Stem conv (no norm) and ``n_sampling`` stride-2 downsamplers doubling the width."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        n_sampling: int,
        label_channels: int,
        hidden: int,
        affine: bool,
        spectral_mode: str,
        stem_kernel: int = 7,
        cond: int = 0,
        pad_first: bool = False,  # no ResNet block here: the downsamplers pad in their conv
    ):
        super().__init__()
        self.stem = stem(in_channels, width, stem_kernel, spectral_mode)
        self.down = nn.ModuleList(
            Downsample(
                width * 2**i,
                width * 2 ** (i + 1),
                label_channels=label_channels,
                hidden=hidden,
                affine=affine,
                spectral_mode=spectral_mode,
                cond=cond,
            )
            for i in range(n_sampling)
        )

    def forward(self, x: torch.Tensor, labels: LabelPyramid | None) -> torch.Tensor:
        x = self.stem(x)  # (B, width, H, W)
        for down in self.down:
            x = down(x, labels)  # halves H and W, doubles C
        return x  # (B, width * 2**n, H / 2**n, W / 2**n)


def _block(
    in_channels: int,
    out_channels: int,
    label_channels: int,
    hidden: int,
    affine: bool,
    spectral_mode: str,
    cond: int = 0,
    pad_first: bool = False,
) -> nn.Module:
    if label_channels:
        return SPADEResBlock(
            in_channels,
            out_channels,
            label_channels,
            hidden=hidden,
            affine=affine,
            spectral_mode=spectral_mode,
            cond=cond,
            pad_first=pad_first,
        )
    return ResBlock(
        in_channels, out_channels, spectral_mode=spectral_mode, cond=cond, pad_first=pad_first
    )


class Body(nn.Module):
    """``n_blocks`` ResNet blocks at constant width (SPADE blocks when ``label_channels``)."""

    def __init__(
        self,
        width: int,
        n_blocks: int,
        label_channels: int,
        hidden: int,
        affine: bool,
        spectral_mode: str,
        cond: int = 0,
        pad_first: bool = False,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            _block(width, width, label_channels, hidden, affine, spectral_mode, cond, pad_first)
            for _ in range(n_blocks)
        )

    def forward(self, x: torch.Tensor, labels: LabelPyramid | None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, labels)
        return x


class Decoder(nn.Module):
    """``n_sampling`` stages of nearest 2x upsampling and a ResNet block halving the width."""

    def __init__(
        self,
        width: int,
        n_sampling: int,
        label_channels: int,
        hidden: int,
        affine: bool,
        spectral_mode: str,
        cond: int = 0,
        pad_first: bool = False,
    ):
        super().__init__()
        self.stages = nn.ModuleList(
            _block(
                width // 2**i,
                width // 2 ** (i + 1),
                label_channels,
                hidden,
                affine,
                spectral_mode,
                cond,
                pad_first,
            )
            for i in range(n_sampling)
        )

    def forward(self, x: torch.Tensor, labels: LabelPyramid | None) -> list[torch.Tensor]:
        """The features after every stage, coarse to fine."""
        outs = []
        for stage in self.stages:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, 2H, 2W)
            x = stage(x, labels)  # (B, C/2, 2H, 2W)
            outs.append(x)
        return outs


class LabelEmbedding(nn.Module):
    """The SPADE generator's start: the label map downsampled ``2**n`` times, 3 x 3 conv, ReLU."""

    def __init__(self, label_channels: int, width: int, n_sampling: int, spectral_mode: str):
        super().__init__()
        self.factor = 2**n_sampling
        self.conv = stem(label_channels, width, 3, spectral_mode)

    def forward(self, labels: LabelPyramid) -> torch.Tensor:
        h, w = labels.labels.shape[-2:]
        return self.conv(labels.at((h // self.factor, w // self.factor)))  # (B, width, h, w)


# --------------------------------------------------------------------------- generators


class EncoderDecoderGenerator(Generator):
    """``ours`` (SPADE everywhere), ``pix2pix`` (raster only) and ``concat`` (labels + raster)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        cfg = config
        spade_labels = cfg.label_channels + cfg.noise_channels if cfg.kind == "ours" else 0
        in_channels = cfg.raster_channels + (cfg.label_channels if cfg.kind == "concat" else 0)
        if cfg.kind != "ours":
            in_channels += cfg.noise_channels  # pix2pix, concat: noise enters with the input
        bottleneck = cfg.capacity * 2**cfg.n_sampling
        common = dict(
            label_channels=spade_labels,
            hidden=cfg.spade_hidden,
            affine=cfg.norm_affine,
            spectral_mode=cfg.spectral_norm,
            cond=cfg.cond_width,
            pad_first=cfg.pad_first,
        )
        self.encoder = Encoder(in_channels, cfg.capacity, cfg.n_sampling, **common)
        self.body = Body(bottleneck, cfg.n_blocks, **common)
        self.decoder = Decoder(bottleneck, cfg.n_sampling, **common)
        self.to_image = to_image(cfg.capacity, cfg.output_channels, cfg.spectral_norm)

    def forward(
        self,
        labels: torch.Tensor | None,
        raster: torch.Tensor | None,
        conditions: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_inputs(labels, raster)
        ours = self.config.kind == "ours"
        pyramid, plain, noise_map = self._context(
            labels if ours else None, raster, conditions, noise
        )
        if not ours:
            pyramid = plain
        x = raster if self.config.kind != "concat" else torch.cat([labels, raster], dim=1)
        if self.config.input_order is not None:  # concat: the first conv's channel order
            x = x[:, list(self.config.input_order)]
        if noise_map is not None and not ours:
            x = torch.cat([x, noise_map], dim=1)
        x = self.encoder(x, pyramid)  # (B, 16c, H/16, W/16)
        x = self.body(x, pyramid)
        x = self.decoder(x, pyramid)[-1]  # (B, c, H, W)
        return self.to_image(x)  # (B, out, H, W)


class SPADEGenerator(Generator):
    """Labels only: embedding at ``H/16``, SPADE ResNet blocks, SPADE decoder."""

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        cfg = config
        width = cfg.capacity * 2**cfg.n_sampling
        labels = cfg.label_channels + cfg.noise_channels
        common = dict(
            label_channels=labels,
            hidden=cfg.spade_hidden,
            affine=cfg.norm_affine,
            spectral_mode=cfg.spectral_norm,
            cond=cfg.cond_width,
            pad_first=cfg.pad_first,
        )
        self.embed = LabelEmbedding(labels, width, cfg.n_sampling, cfg.spectral_norm)
        self.body = Body(width, cfg.n_blocks, **common)
        self.decoder = Decoder(width, cfg.n_sampling, **common)
        self.to_image = to_image(cfg.capacity, cfg.output_channels, cfg.spectral_norm)

    def forward(
        self,
        labels: torch.Tensor | None,
        raster: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_inputs(labels, raster)
        pyramid, _, _ = self._context(labels, labels, conditions, noise)
        x = self.embed(pyramid)  # (B, 16c, H/16, W/16)
        x = self.body(x, pyramid)
        x = self.decoder(x, pyramid)[-1]  # (B, c, H, W)
        return self.to_image(x)


class MergeGenerator(Generator):
    """Raster branch (pix2pix) + label branch (SPADE), fused stage by stage in a third decoder."""

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        cfg = config
        n = cfg.n_sampling
        width = max(1, round(cfg.capacity * cfg.merge_ratio))
        bottleneck = width * 2**n
        plain = dict(
            label_channels=0,
            hidden=cfg.spade_hidden,
            affine=cfg.norm_affine,
            spectral_mode=cfg.spectral_norm,
            cond=cfg.cond_width,
            pad_first=cfg.pad_first,
        )
        labels = cfg.label_channels + cfg.noise_channels
        spade = dict(plain, label_channels=labels)
        # raster branch: pix2pix without its output layer
        self.raster_encoder = Encoder(cfg.raster_channels, width, n, **plain)
        self.raster_body = Body(bottleneck, cfg.n_blocks, **plain)
        self.raster_decoder = Decoder(bottleneck, n, **plain)
        # label branch: SPADE generator without its output layer
        self.label_embed = LabelEmbedding(labels, bottleneck, n, cfg.spectral_norm)
        self.label_body = Body(bottleneck, DEFAULT_BLOCKS["spade"], **spade)
        self.label_decoder = Decoder(bottleneck, n, **spade)
        # fusion decoder: stage i sees its upsampled features and both branches' stage-i features
        stages = []
        for i in range(n):
            own = 2 * bottleneck if i == 0 else bottleneck // 2**i
            out = bottleneck // 2 ** (i + 1)
            stages.append(
                ResBlock(
                    own + 2 * out,
                    out,
                    spectral_mode=cfg.spectral_norm,
                    cond=cfg.cond_width,
                    pad_first=cfg.pad_first,
                )
            )
        self.fusion = nn.ModuleList(stages)
        self.to_image = to_image(width, cfg.output_channels, cfg.spectral_norm)

    def forward(
        self,
        labels: torch.Tensor | None,
        raster: torch.Tensor | None,
        conditions: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_inputs(labels, raster)
        pyramid, plain, _ = self._context(labels, raster, conditions, noise)
        r = self.raster_body(self.raster_encoder(raster, plain), plain)  # (B, 16w, H/16, W/16)
        s = self.label_body(self.label_embed(pyramid), pyramid)  # (B, 16w, H/16, W/16)
        r_stages = self.raster_decoder(r, plain)
        s_stages = self.label_decoder(s, pyramid)
        x = torch.cat([r, s], dim=1)  # (B, 32w, H/16, W/16)
        for stage, r_i, s_i in zip(self.fusion, r_stages, s_stages, strict=True):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = stage(torch.cat([x, r_i, s_i], dim=1), plain)  # (B, C_i, H_i, W_i)
        return self.to_image(x)


_CLASSES = {
    "ours": EncoderDecoderGenerator,
    "pix2pix": EncoderDecoderGenerator,
    "concat": EncoderDecoderGenerator,
    "spade": SPADEGenerator,
    "merge": MergeGenerator,
    "diffusion": DiffusionGenerator,
}


def build_generator(config: GeneratorConfig) -> Generator:
    """The generator described by ``config``.

    With ``block_order="authors"`` SPADE's gamma and beta run as two convolutions, as in
    the paper's code, so that their gradients are summed in the same order as there.
    """
    generator = _CLASSES[config.kind](config)
    if config.pad_first:
        for module in generator.modules():
            if isinstance(module, SPADE):
                module.fused = False
    return generator
