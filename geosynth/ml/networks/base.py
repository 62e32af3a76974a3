"""The interface every generator shares: ``G(labels, raster, conditions, noise)``, its config,
the checks of its inputs, and the context its layers read (label pyramid, condition embedding).
"""

from __future__ import annotations

import torch
from torch import nn

from geosynth.errors import UsageError
from geosynth.ml.networks.configs import GeneratorConfig
from geosynth.ml.networks.layers import ConditionEmbedding, LabelPyramid
from geosynth.names import kind_inputs


class Generator(nn.Module):
    """Common interface: ``forward(labels, raster)``, ``config``, input checks."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        if config.condition_dim:
            self.cond_embed = ConditionEmbedding(config.condition_dim)

    def _context(
        self,
        labels: torch.Tensor | None,
        ref: torch.Tensor,
        conditions: torch.Tensor | None,
        noise: torch.Tensor | None,
    ) -> tuple[LabelPyramid | None, LabelPyramid | None, torch.Tensor | None]:
        """``(label pyramid or None, conditions-only pyramid or None, noise map or None)``.

        The label pyramid holds the labels with the noise map concatenated; both
        pyramids carry the condition embedding.
        """
        cfg = self.config
        b, (h, w) = ref.shape[0], ref.shape[-2:]
        cond = None
        if cfg.condition_dim:
            if conditions is None:
                raise UsageError(
                    f"this generator is conditioned on {cfg.condition_dim} acquisition values; "
                    "give conditions"
                )
            if conditions.shape != (b, cfg.condition_dim):
                raise UsageError(
                    f"conditions must be (batch, {cfg.condition_dim}), got {tuple(conditions.shape)}"
                )
            cond = self.cond_embed(conditions.to(ref.dtype))  # (B, COND_HIDDEN)
        elif conditions is not None:
            raise UsageError("this generator takes no conditions (trained without --conditions)")
        noise_map = None
        if cfg.noise_channels:
            if noise is None:
                noise = torch.randn(b, cfg.noise_channels, device=ref.device, dtype=ref.dtype)
            if noise.shape != (b, cfg.noise_channels):
                raise UsageError(
                    f"noise must be (batch, {cfg.noise_channels}), got {tuple(noise.shape)}"
                )
            noise_map = noise.to(ref.dtype)[:, :, None, None].expand(-1, -1, h, w)
        elif noise is not None:
            raise UsageError("this generator takes no noise (trained without --noise)")
        pyramid = None
        if labels is not None:
            full = labels if noise_map is None else torch.cat([labels, noise_map], dim=1)
            pyramid = LabelPyramid(full, cond)
        plain = None if cond is None else LabelPyramid(None, cond)
        return pyramid, plain, noise_map

    def _check_inputs(self, labels: torch.Tensor | None, raster: torch.Tensor | None) -> None:
        cfg = self.config
        uses_labels, uses_raster = kind_inputs(
            cfg.kind, cfg.label_channels > 0, cfg.raster_channels > 0
        )
        for name, used, value, channels in (
            ("labels", uses_labels, labels, cfg.label_channels),
            ("raster", uses_raster, raster, cfg.raster_channels),
        ):
            if used and value is None:
                raise UsageError(f"generator {cfg.kind!r} needs {name}")
            if used and value.shape[1] != channels:
                raise UsageError(
                    f"generator {cfg.kind!r} expects {channels} {name} channels, got {value.shape[1]}"
                )
        ref = labels if labels is not None else raster
        h, w = ref.shape[-2:]
        m = cfg.size_multiple
        if h % m or w % m:
            raise UsageError(f"input size {h} x {w} is not a multiple of {m} (2 ** n_sampling)")
