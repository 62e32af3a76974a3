"""A diffusion generator that fuses labels and rasters the paper's way (beyond the paper).

Semantic diffusion models (SDM, Wang et al. 2022) carry SPADE's idea over to
denoising: the noisy image enters a U-Net's encoder, the label map its decoder
through spatially-adaptive normalisation. That is where the paper puts its two
inputs, so the three variants of the paper map onto one network:

- labels only: SPADE in every decoder (and middle) block;
- raster only (DEM or SAR): the raster concatenated to the noisy image at the input;
- both: the two together, the paper's fusion.

The denoising network (:class:`Denoiser`) is ours: a U-Net of ``n_sampling``
downsamplings, widths ``capacity * min(2**i, 4)``, one residual block per level in
the encoder (GroupNorm, SiLU, the timestep's scale and shift) and per level in the
decoder (SPADE on GroupNorm where there are labels, its shared layer
``min(128, 2 * capacity)`` wide: SPADE's 128 at the paper's capacity; skip connections
from the encoder), an embedding of the diffusion timestep (sinusoidal, then an MLP) to which
the acquisition conditions' embedding is added (``--conditions``, as for the GANs).
Noise schedules and samplers come from ``diffusers``: DDPM's forward process for
training, DDIM or DPM-Solver++ for sampling, ``epsilon`` or ``v_prediction``, a
cosine (``squaredcos_cap_v2``) or linear beta schedule.

Classifier-free guidance: training drops the conditioning (labels, raster and
acquisition conditions together, replaced by zeros) for a share of the samples
(``cond_drop`` of the run); sampling with ``guidance`` ``w > 0`` combines
``(1 + w) f(c) - w f(0)``.

Called as every generator, ``G(labels, raster, conditions, noise)`` samples an
image in [-1, 1] (``steps`` steps of ``sampler``): ``noise`` is the starting
noise ``x_T`` (``(B, C, H, W)``; drawn from torch's generator when absent), so that
a seeded field shared by the windows of a tile makes them agree and different
seeds give different samples. :meth:`DiffusionGenerator.training_loss` is the
training objective.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geosynth.errors import UsageError
from geosynth.ml.networks.base import Generator
from geosynth.ml.networks.configs import COND_HIDDEN, GeneratorConfig
from geosynth.ml.networks.layers import SPADE, LabelPyramid

GROUPS = 8  # GroupNorm groups (widths are multiples of 8 from capacity 8 up; fewer below)
SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}


def _groups(channels: int) -> int:
    return math.gcd(GROUPS, channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of integer timesteps ``(B,)`` (Ho et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _twice(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Each tensor twice along the batch (None stays None)."""
    return [None if t is None else torch.cat([t, t]) for t in tensors]


class DenoiseBlock(nn.Module):
    """Residual block: norm, SiLU, 3 x 3 conv; norm with the timestep's scale and shift,
    SiLU, 3 x 3 conv (zero-initialised); a 1 x 1 shortcut when the width changes. The norms
    are SPADE layers on GroupNorm when ``label_channels``, else GroupNorm."""

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int, label_channels: int = 0, hidden: int = 0
    ):
        super().__init__()
        self.spade = bool(label_channels)
        if self.spade:
            self.norm1 = SPADE(in_ch, label_channels, hidden=hidden, groups=_groups(in_ch))
            self.norm2 = SPADE(out_ch, label_channels, hidden=hidden, groups=_groups(out_ch))
        else:
            self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
            self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def _norm(self, norm, x, labels):
        return norm(x, labels) if self.spade else norm(x)

    def forward(self, x, emb, labels: LabelPyramid | None = None):
        h = self.conv1(F.silu(self._norm(self.norm1, x, labels)))  # (B, out, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self._norm(self.norm2, h, labels) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return h + (x if self.shortcut is None else self.shortcut(x))


class Denoiser(nn.Module):
    """The U-Net that predicts the noise (or v) of ``x_t`` given ``t`` and the conditioning."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        cfg = config
        base, n = cfg.capacity, cfg.n_sampling
        widths = [base * min(2**i, 4) for i in range(n + 1)]
        emb_dim = 4 * base
        labels = cfg.label_channels  # SPADE in the decoder
        self.time = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.cond = nn.Linear(COND_HIDDEN, emb_dim) if cfg.condition_dim else None
        self.stem = nn.Conv2d(cfg.output_channels + cfg.raster_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DenoiseBlock(widths[max(i - 1, 0)], widths[i], emb_dim) for i in range(n + 1)
        )
        self.downsample = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1) for i in range(n)
        )
        hidden = cfg.spade_hidden  # SPADE's shared width: min(128, 2 * capacity) by default
        self.middle = DenoiseBlock(widths[n], widths[n], emb_dim, labels, hidden)
        self.up_blocks = nn.ModuleList(
            DenoiseBlock(2 * widths[i], widths[max(i - 1, 0)], emb_dim, labels, hidden)
            for i in reversed(range(n + 1))
        )
        self.upsample = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i], 3, padding=1) for i in reversed(range(n))
        )
        self.out_norm = nn.GroupNorm(_groups(widths[0]), widths[0])
        self.out = nn.Conv2d(widths[0], cfg.output_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.base = base

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        labels: LabelPyramid | None,
        raster: torch.Tensor | None,
        cond: torch.Tensor | None,
    ) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.base))  # (B, 4c)
        if self.cond is not None and cond is not None:
            emb = emb + self.cond(cond)
        h = x_t if raster is None else torch.cat([x_t, raster], dim=1)
        h = self.stem(h)  # (B, c, H, W)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # halves H and W
        h = self.middle(h, emb, labels)
        for i, block in enumerate(self.up_blocks):
            h = block(torch.cat([h, skips.pop()], dim=1), emb, labels)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))  # (B, C_out, H, W)


class DiffusionGenerator(Generator):
    """The denoiser with its noise schedule; ``forward`` samples (module docstring)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.denoiser = Denoiser(config)

    # ------------------------------------------------------------------ schedules
    def _scheduler_config(self) -> dict:
        cfg = self.config
        return {
            "num_train_timesteps": cfg.train_timesteps,
            "beta_schedule": SCHEDULES[cfg.schedule],
            "prediction_type": cfg.prediction,
        }

    def training_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(**self._scheduler_config(), clip_sample=False)

    def sampling_scheduler(self, sampler: str, steps: int):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if not 1 <= steps <= self.config.train_timesteps:
            raise UsageError(
                f"--steps must be in [1, {self.config.train_timesteps}] (the training "
                f"timesteps), got {steps}"
            )
        if sampler == "ddim":  # trailing: the first step at the last timestep (pure noise);
            # x0 clipped to the image range [-1, 1]; the last step returns x0 itself
            scheduler = DDIMScheduler(**self._scheduler_config(), clip_sample=True,
                                      set_alpha_to_one=True, timestep_spacing="trailing")  # fmt: skip
        elif sampler == "dpm":  # lambda clipped where the cosine schedule leaves no signal
            scheduler = DPMSolverMultistepScheduler(**self._scheduler_config(),
                                                    algorithm_type="dpmsolver++",
                                                    lambda_min_clipped=-5.1)  # fmt: skip
        else:
            raise UsageError(f"--sampler must be one of ddim, dpm, not {sampler!r}")
        scheduler.set_timesteps(steps)
        return scheduler

    # ------------------------------------------------------------------ conditioning
    def _conditioning(self, labels, raster, conditions):
        """``(label pyramid or None, raster or None, condition embedding or None)``."""
        ref = labels if labels is not None else raster
        pyramid, plain, _ = self._context(labels, ref, conditions, None)
        cond = None if plain is None else plain.cond  # enters through the timestep's embedding
        return pyramid, raster, cond

    def predict(self, x_t, t, labels, raster, conditions, drop: torch.Tensor | None = None):
        """The denoiser's output for ``x_t`` at timesteps ``t`` ``(B,)``; ``drop`` ``(B,)``
        bool: the samples whose conditioning is dropped (zeros), for classifier-free
        guidance."""
        if drop is not None:
            keep = (~drop).to(x_t.dtype)[:, None, None, None]
            labels = None if labels is None else labels * keep
            raster = None if raster is None else raster * keep
            if conditions is not None:
                conditions = conditions * keep[:, :, 0, 0]
        pyramid, raster, cond = self._conditioning(labels, raster, conditions)
        return self.denoiser(x_t, t, pyramid, raster, cond)

    # ------------------------------------------------------------------ training
    def training_loss(
        self, image, labels, raster, conditions=None, *, cond_drop: float = 0.0, scheduler=None,
        share: tuple[int, int] = (0, 1),
    ) -> torch.Tensor:  # fmt: skip
        """MSE between the denoiser's output and its target (the noise, or v) at random
        timesteps: DDPM's objective, the conditioning dropped for ``cond_drop`` of the
        samples. ``share``: ``(rank, world size)`` of a distributed run: every process draws
        the timesteps, noise and drops of the whole global batch (their random streams stay
        equal, so a resume restores them all) and uses its own slice."""
        self._check_inputs(labels, raster)
        scheduler = scheduler or self.training_scheduler()
        b, (rank, world) = image.shape[0], share
        mine = slice(rank * b, (rank + 1) * b)
        noise = torch.randn((world * b, *image.shape[1:]), device=image.device)[mine]
        noise = noise.to(image.dtype)
        t = torch.randint(0, self.config.train_timesteps, (world * b,), device=image.device)[mine]
        noisy = scheduler.add_noise(image, noise, t)
        target = noise if self.config.prediction == "epsilon" else (
            scheduler.get_velocity(image, noise, t)
        )  # fmt: skip
        drop = None
        if cond_drop:
            drop = (torch.rand(world * b, device=image.device) < cond_drop)[mine]
        out = self.predict(noisy, t, labels, raster, conditions, drop)
        return F.mse_loss(out.float(), target.float())

    # ------------------------------------------------------------------ sampling
    def forward(
        self,
        labels: torch.Tensor | None,
        raster: torch.Tensor | None,
        conditions: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """An image ``(B, C_out, H, W)`` sampled from ``noise`` (``x_T``) in ``steps``."""
        self._check_inputs(labels, raster)
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        guidance = cfg.guidance if guidance is None else float(guidance)
        if guidance < 0:
            raise UsageError(f"--guidance must be >= 0, got {guidance}")
        scheduler = self.sampling_scheduler(sampler or cfg.sampler, steps)
        ref = labels if labels is not None else raster
        b, (h, w) = ref.shape[0], ref.shape[-2:]
        shape = (b, cfg.output_channels, h, w)
        if noise is None:
            noise = torch.randn(shape, device=ref.device, dtype=ref.dtype)
        if tuple(noise.shape) != shape:
            raise UsageError(f"diffusion noise must be {shape} (x_T), got {tuple(noise.shape)}")
        # the trajectory in fp32 (under bf16 autocast the denoiser's outputs are bf16)
        x = noise.to(ref.device, torch.float32) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            tt = torch.full((b,), int(t), device=ref.device, dtype=torch.long)
            x_in = scheduler.scale_model_input(x, t)
            if guidance:  # one batch of 2B: conditioned, then with the conditioning dropped
                drop = torch.arange(2 * b, device=ref.device) >= b
                out, empty = self.predict(*_twice(x_in, tt, labels, raster, conditions),
                                          drop).float().chunk(2)  # fmt: skip
                out = (1 + guidance) * out - guidance * empty
            else:
                out = self.predict(x_in, tt, labels, raster, conditions).float()
            x = scheduler.step(out, t, x).prev_sample
        return x.clamp(-1, 1)
