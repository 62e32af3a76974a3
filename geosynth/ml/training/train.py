"""``geosynth train``: the GAN of the paper, one generator step and one discriminator step per batch.

The recipe (Baier et al. 2021, after SPADE): Adam with betas (0, 0.9),
learning rates 1e-4 for G and 4e-4 for D, hinge loss, L1 feature matching on
D's intermediate features with weight ``lambda_fm`` (5), spectral norm in
every convolution of G and D.

One step on a batch (``labels``, ``raster`` -> ``real``)::

    fake = G(labels, raster)                          one G forward
    out = D(cat[cond, cond], cat[fake, real])         one D forward
    loss_G = hinge_G(fake part) + lambda * L1(D-features fake, real.detach())
    loss_D = hinge(real part) + hinge(fake part)
    loss_G backward into G's parameters only, loss_D into D's only; both steps

D sees fake and real in ONE forward (as SPADE does). With ``d_fake: reuse``
(the default, as pix2pixHD) G's and D's losses come from that same forward:
D's weights do not change between them and D's step sees the fake of G's
forward, taken before G's update, so a second D forward would compute the same
thing again. Each backward pass is restricted to its own network's
parameters (``backward(inputs=...)``), which is what freezing D for G's step
and detaching the fake for D's step achieve. The code published with the
paper (``d_fake: regenerate``) steps G first with D frozen (its parameters do
not require gradients, and D's DDP wrapper stays out of it), then makes a new
fake with the updated G (without gradients) for a second D forward and D's
step. G and D are separate DDP modules. ``d_step: authors`` goes all the way
to that code's step: D called on fake and real apart (D(fake), D(real) for G's
step; D(real), D(new fake) for D's), so each call runs its own spectral-norm
power iteration, and the losses summed over D's scales.

``image_range: unit`` (the paper's code) scales the real images to [0, 1]
before D sees them, so G's tanh output learns [0, 1];
:func:`~geosynth.ml.data.tensors.from_generator` maps its output back to [-1, 1]
wherever an image leaves the generator. ``flip`` turns the random
horizontal flips of the training crops on or off.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.utils.data import default_collate

from geosynth.errors import UsageError
from geosynth.ml.data.conditions import condition_width
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.data.tensors import expand_compact, from_generator, generator_inputs, quantize
from geosynth.ml.metrics import ConfusionMatrix, predict_classes, segmentation_scores
from geosynth.ml.networks.configs import (
    DiscriminatorConfig,
    default_num_scales,
    generator_config_for,
)
from geosynth.ml.networks.discriminator import build_discriminator, generator_condition
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.training.checkpoint import load_unet
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.distributed import DistContext, prepare, wrap_ddp
from geosynth.ml.training.losses import (
    d_hinge,
    feature_l1,
    feature_matching_loss,
    g_hinge,
    hinge_d_loss,
    hinge_g_loss,
)
from geosynth.ml.training.trainer import (
    ProgressCallback,
    Task,
    TrainResult,
    adam,
    autocast,
    maybe_compile,
    prepare_network,
    run_training,
    to_device,
)
from geosynth.ml.training.visual import colorize, grid, image_to_uint8, palette, raster_to_uint8
from geosynth.names import LABELS
from geosynth.store import open_store

log = logging.getLogger(__name__)


class GanTask(Task):
    """Generator and discriminator of one run, their optimizers and the step above."""

    name = "gan"

    def __init__(self, config: GanConfig, ctx: DistContext):
        super().__init__(config, ctx)
        store = open_store(config.store, storage_options=config.storage_options)
        self.colors = palette(store.classes)
        self.dataset = self._dataset(train=True)
        self.g_config = generator_config_for(
            config.generator,
            *self.dataset.generator_channels,  # labels, raster, output
            capacity=config.cap,
            spectral_norm=config.spectral_norm,
            condition_dim=condition_width(config.conditions),
            noise_channels=config.noise,
            block_order=config.block_order,
        )
        multiple = self.g_config.size_multiple
        if config.size % multiple:
            raise UsageError(
                f"--crop/--resize {config.size} must be a multiple of {multiple} for the generator"
            )
        self.d_config = DiscriminatorConfig.for_generator(
            self.g_config,
            num_scales=config.d_scales or default_num_scales(config.size),
            capacity=config.d_cap or config.cap,
            spectral_norm=config.spectral_norm,
        )
        # plain networks (checkpointed), then layout, DDP and compile for the step
        self.g_net = prepare(build_generator(self.g_config), ctx, sync_bn=True)
        self.d_net = prepare(build_discriminator(self.d_config), ctx)
        g_run = prepare_network(self.g_net, config)
        d_run = prepare_network(self.d_net, config)
        self.g = maybe_compile(wrap_ddp(g_run, ctx), config.compile)
        self.d = maybe_compile(wrap_ddp(d_run, ctx), config.compile)
        self.d_frozen = maybe_compile(d_run, config.compile)  # G step: no DDP, no D gradients
        # --ema: a moving average of G's weights (checkpointed; evaluation and synthesis use it)
        self.g_ema = None
        if config.ema is not None:
            self.g_ema = copy.deepcopy(self.g_net).eval().requires_grad_(False)
        # d_step authors: torch's default Adam, as the paper's code (the step then rounds as there)
        fused = config.d_step != "authors"
        self.opt_g = adam(self.g_net.parameters(), config.lr_g, config.betas, ctx, fused=fused)
        self.opt_d = adam(self.d_net.parameters(), config.lr_d, config.betas, ctx, fused=fused)
        self._g_params = [p for p in self.g_net.parameters() if p.requires_grad]
        self._d_params = [p for p in self.d_net.parameters() if p.requires_grad]
        self._last: tuple | None = None
        self._val: dict | None = None  # the fixed validation crops (--val-every), read once
        self._unet = None
        if config.unet and config.val_every:  # a bad --unet fails now, not at step N
            self._unet = load_unet(config.unet, map_location=ctx.device)[0]

    def _dataset(self, train: bool) -> SynthesisDataset:
        cfg = self.config
        return SynthesisDataset(
            cfg.store,
            cfg.split,
            inputs=cfg.inputs,
            output=cfg.output,
            crop=cfg.crop,
            resize=cfg.resize,
            flip=train and cfg.flip,
            seed=cfg.seed,
            train=train,
            dem_norm=cfg.dem_norm,
            samples_per_epoch=cfg.samples_per_epoch if train else None,
            storage_options=cfg.storage_options,
            compact=True,  # uint8 across the DataLoader; expanded on the device in _inputs
            conditions=cfg.conditions,
        )

    # ------------------------------------------------------------------ Task
    def train_dataset(self) -> SynthesisDataset:
        return self.dataset

    def sample_dataset(self) -> SynthesisDataset:
        return self._dataset(train=False)

    def models(self) -> dict:
        models = {
            "generator": (self.g_config.to_dict(), self.g_net),
            "discriminator": (self.d_config.to_dict(), self.d_net),
        }
        if self.g_ema is not None:
            models["generator_ema"] = (self.g_config.to_dict(), self.g_ema)
        return models

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * weights``; buffers (BN statistics, spectral-norm
        vectors) copied."""
        ema, net = self.g_ema, self.g_net
        torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - self.config.ema)
        for mine, theirs in zip(ema.buffers(), net.buffers(), strict=True):
            mine.copy_(theirs)

    def optimizers(self) -> dict:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def _inputs(self, batch: dict) -> tuple:
        cl = self.config.channels_last
        batch = expand_compact(batch, self.dataset.num_classes, self.ctx.device)
        labels, raster = generator_inputs(batch, self.config.inputs)
        labels, raster = (
            None if t is None else to_device(t, self.ctx, cl) for t in (labels, raster)
        )
        real = to_device(batch[self.config.output], self.ctx, cl)
        return labels, raster, real  # (B, L, H, W), (B, R, H, W), (B, C_out, H, W)

    def _conditions(self, batch: dict) -> torch.Tensor | None:
        """The batch's acquisition conditions ``(B, D)`` (``--conditions``), else None."""
        c = batch.get("conditions")
        return None if c is None else c.to(self.ctx.device)

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        cfg, amp = self.config, self.config.amp
        labels, raster, image = self._inputs(batch)  # image in [-1, 1]
        real = (image + 1) / 2 if cfg.image_range == "unit" else image  # G's target range
        n = real.shape[0]
        cond = generator_condition(labels, raster)  # (B, C_cond, H, W)
        cond2 = torch.cat([cond, cond])  # (2B, C_cond, H, W): fake half, real half
        c = self._conditions(batch)  # (B, D) acquisition conditions or None
        c2 = None if c is None else torch.cat([c, c])
        with autocast(self.ctx, amp, cpu=True):
            fake = self.g(labels, raster, c)  # (B, C_out, H, W)

        if cfg.d_step == "authors":
            g_adv, g_fm, d_real, d_fake = self._authors_steps(labels, raster, c, cond, fake, real)
        elif cfg.d_fake == "reuse":
            g_adv, g_fm, d_real, d_fake = self._shared_d_step(cond2, fake, real, c2, n)
        else:
            g_adv, g_fm, d_real, d_fake = self._alternating_steps(
                labels, raster, c, cond2, fake, real, c2, n
            )

        if self.ctx.is_main and cfg.image_every and cfg.samples:
            k = min(cfg.samples, n)
            shown = (labels, raster, from_generator(cfg, fake), image)
            self._last = tuple(None if t is None else t[:k].detach() for t in shown)
        losses = {"g_adv": g_adv, "g_fm": g_fm, "d_real": d_real, "d_fake": d_fake}
        return {k: v.detach() for k, v in losses.items()}

    def _g_losses(self, out, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.config
        g_adv = hinge_g_loss(out, n)
        g_fm = feature_matching_loss(out, n) if cfg.lambda_fm else torch.zeros_like(g_adv)
        return g_adv, g_fm, g_adv + cfg.lambda_fm * g_fm

    def _shared_d_step(self, cond2, fake, real, c2, n: int):
        """``d_fake: reuse``: G's step and D's step see D with the same weights and the same
        fake, so ONE D forward on ``cat[fake, real]`` serves both losses (as pix2pixHD
        computes both from one pass); two backward passes, each restricted to its network's
        parameters: G's loss reaches no D weight, D's loss no G weight."""
        amp = self.config.amp
        with autocast(self.ctx, amp, cpu=True):
            out = self.d(cond2, torch.cat([fake, real]), c2)
            g_adv, g_fm, g_loss = self._g_losses(out, n)
            d_real, d_fake = hinge_d_loss(out, n)
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        g_loss.backward(inputs=self._g_params, retain_graph=True)
        (d_real + d_fake).backward(inputs=self._d_params)
        self.opt_g.step()
        if self.g_ema is not None:
            self._update_ema()
        self.opt_d.step()
        return g_adv, g_fm, d_real, d_fake

    def _alternating_steps(self, labels, raster, c, cond2, fake, real, c2, n: int):
        """``d_fake: regenerate`` (the paper's code): G's step with D frozen, then a new fake
        from the updated G for D's step; a D forward in each."""
        amp = self.config.amp
        self.d_net.requires_grad_(False)
        with autocast(self.ctx, amp, cpu=True):
            out = self.d_frozen(cond2, torch.cat([fake, real]), c2)
            g_adv, g_fm, g_loss = self._g_losses(out, n)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        if self.g_ema is not None:
            self._update_ema()
        self.d_net.requires_grad_(True)
        with torch.no_grad(), autocast(self.ctx, amp, cpu=True):
            fake = self.g(labels, raster, c)
        with autocast(self.ctx, amp, cpu=True):
            out = self.d(cond2, torch.cat([fake, real]), c2)
            d_real, d_fake = hinge_d_loss(out, n)
        self.opt_d.zero_grad(set_to_none=True)
        (d_real + d_fake).backward()
        self.opt_d.step()
        return g_adv, g_fm, d_real, d_fake

    def _authors_steps(self, labels, raster, c, cond, fake, real):
        """``d_step: authors``: the paper's code's ``Trainer``. G's step: D on the fake, then on
        the real image (feature matching); D's step: a new fake from the updated G, D on the
        real image, then on the fake. Four D forwards, each with its own spectral-norm power
        iteration; the losses summed over D's scales."""
        amp, lam = self.config.amp, self.config.lambda_fm
        self.d_net.requires_grad_(False)  # as discarding D's gradients of G's step
        with autocast(self.ctx, amp, cpu=True):
            out_fake = self.d_frozen(cond, fake, c)
            g_adv = g_hinge(out_fake.final, "sum")
            g_fm = torch.zeros_like(g_adv)
            if lam:
                out_real = self.d_frozen(cond, real, c)
                g_fm = feature_l1(out_fake.features, out_real.features, "sum")
        self.opt_g.zero_grad(set_to_none=True)
        (g_adv + lam * g_fm).backward()
        self.opt_g.step()
        if self.g_ema is not None:
            self._update_ema()
        self.d_net.requires_grad_(True)
        with torch.no_grad(), autocast(self.ctx, amp, cpu=True):
            fake = self.g(labels, raster, c)
        with autocast(self.ctx, amp, cpu=True):
            scores_real = self.d(cond, real, c).final
            scores_fake = self.d(cond, fake, c).final
            d_real, d_fake = d_hinge(scores_real, scores_fake, "sum")
        self.opt_d.zero_grad(set_to_none=True)
        (d_real + d_fake).backward()
        self.opt_d.step()
        return g_adv, g_fm, d_real, d_fake

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """L1 of the fakes to the real images and, with ``--unet``, the mIoU of the U-Net's
        segmentation of the fakes against the labels, on fixed validation crops."""
        cfg = self.config
        if self._val is None:
            dataset = SynthesisDataset(
                cfg.store, cfg.val_split, inputs=cfg.inputs, output=cfg.output, crop=cfg.crop,
                resize=cfg.resize, flip=False, seed=cfg.seed, train=False,
                dem_norm=cfg.dem_norm, storage_options=cfg.storage_options, compact=True,
                conditions=cfg.conditions,
            )  # fmt: skip
            count = min(cfg.val_crops, len(dataset))
            self._val = default_collate([dataset[i] for i in range(count)])
        generator = self.g_net if self.g_ema is None else self.g_ema
        was_training = generator.training
        generator.eval()
        l1, n, confusion = 0.0, 0, ConfusionMatrix(self.dataset.num_classes)
        try:
            total = len(self._val["tile"])
            for start in range(0, total, cfg.batch_size):
                part = {
                    k: v[start : start + cfg.batch_size] for k, v in self._val.items()
                }  # fmt: skip
                labels, raster, real = self._inputs(part)
                with autocast(self.ctx, cfg.amp, cpu=True):
                    noise = self._val_noise(start, real)
                    fake = generator(labels, raster, self._conditions(part), noise).float()
                l1 += float((fake - real).abs().mean()) * real.shape[0]
                n += real.shape[0]
                if self._unet is not None and labels is not None:
                    pred = predict_classes(self._unet(quantize(cfg.output, fake)).logits)
                    confusion.update(pred, labels.argmax(1))  # (B, H, W) class ids
        finally:
            generator.train(was_training)
        metrics = {"l1": l1 / max(n, 1)}
        if self._unet is not None:
            metrics["miou"] = segmentation_scores(confusion.counts)["miou"]
        return metrics

    def _val_noise(self, start: int, real: torch.Tensor) -> torch.Tensor | None:
        """The noise of the validation crops from ``start`` on (None: the generator draws its
        own: a GAN's noise channels are off by default)."""
        return None

    def _grid(self, labels, raster, fake, real) -> torch.Tensor:
        columns, headers = [], []
        if labels is not None:
            columns.append(colorize(labels, self.colors))
            headers.append("labels")
        if raster is not None:
            columns.append(raster_to_uint8(raster))
            rasters = [name for name in self.config.inputs if name != LABELS]
            headers.append(rasters[0])  # band 1, stretched per sample
        columns += [image_to_uint8(fake), image_to_uint8(real)]
        headers += [f"synthetic {self.config.output}", f"real {self.config.output}"]
        return grid(columns, headers)

    def step_images(self) -> torch.Tensor | None:
        return None if self._last is None else self._grid(*self._last)

    @torch.no_grad()
    def sample_grid(self, batch: dict) -> torch.Tensor:
        labels, raster, real = self._inputs(batch)
        self.g_net.eval()
        try:
            with autocast(self.ctx, self.config.amp, cpu=True):
                g = self.g_net if self.g_ema is None else self.g_ema
                fake = from_generator(self.config, g(labels, raster, self._conditions(batch)))
        finally:
            self.g_net.train()
        return self._grid(labels, raster, fake, real)


class DenoisingLoss(nn.Module):
    """The diffusion generator's training objective as a module's forward, so that DDP (which
    synchronises the gradients of a module's forward) and ``torch.compile`` wrap it."""

    def __init__(self, generator: nn.Module, cond_drop: float, share: tuple[int, int] = (0, 1)):
        super().__init__()
        self.generator, self.cond_drop, self.share = generator, cond_drop, share
        self.scheduler = generator.training_scheduler()

    def forward(self, image, labels, raster, conditions=None) -> torch.Tensor:
        return self.generator.training_loss(
            image, labels, raster, conditions, cond_drop=self.cond_drop,
            scheduler=self.scheduler, share=self.share,
        )  # fmt: skip


class DiffusionTask(GanTask):
    """``generator: diffusion``: the denoiser of :mod:`geosynth.ml.networks.diffusion`, one
    optimisation step of DDPM's objective per batch (no discriminator). Checkpoints hold it
    as ``generator`` (and ``generator_ema`` with ``--ema``), so evaluation, synthesis and the
    edits load it as a GAN's generator. Adam with betas (0.9, 0.999) and ``lr_g``: the
    GANs' betas (0, 0.9) are theirs."""

    def __init__(self, config: GanConfig, ctx: DistContext):
        Task.__init__(self, config, ctx)
        store = open_store(config.store, storage_options=config.storage_options)
        self.colors = palette(store.classes)
        self.dataset = self._dataset(train=True)
        self.g_config = generator_config_for(
            "diffusion",
            *self.dataset.generator_channels,  # labels, raster, output
            capacity=config.cap,
            condition_dim=condition_width(config.conditions),
            prediction=config.prediction,
            schedule=config.schedule,
            sampler=config.sampler,
            steps=config.steps,
            guidance=config.guidance,
        )
        if config.size % self.g_config.size_multiple:
            raise UsageError(
                f"--crop/--resize {config.size} must be a multiple of "
                f"{self.g_config.size_multiple} for the generator"
            )
        self.g_net = prepare(build_generator(self.g_config), ctx)
        share = (ctx.rank, ctx.world_size)  # each process its slice of the noise
        run = prepare_network(DenoisingLoss(self.g_net, config.cond_drop, share), config)
        self.loss = maybe_compile(wrap_ddp(run, ctx), config.compile)
        self.g = self.g_net  # sampling (validation, sample grids)
        self.g_ema = None
        if config.ema is not None:
            self.g_ema = copy.deepcopy(self.g_net).eval().requires_grad_(False)
        self.opt_g = adam(self.g_net.parameters(), config.lr_g, (0.9, 0.999), ctx)
        self._last: tuple | None = None
        self._val: dict | None = None
        self._unet = None
        if config.unet and config.val_every:
            self._unet = load_unet(config.unet, map_location=ctx.device)[0]

    def models(self) -> dict:
        models = {"generator": (self.g_config.to_dict(), self.g_net)}
        if self.g_ema is not None:
            models["generator_ema"] = (self.g_config.to_dict(), self.g_ema)
        return models

    def optimizers(self) -> dict:
        return {"generator": self.opt_g}

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        cfg = self.config
        labels, raster, image = self._inputs(batch)  # image in [-1, 1]
        c = self._conditions(batch)
        with autocast(self.ctx, cfg.amp, cpu=True):
            loss = self.loss(image, labels, raster, c)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.g_ema is not None:
            self._update_ema()
        if self.ctx.is_main and cfg.image_every and cfg.samples:
            k = min(cfg.samples, image.shape[0])  # sampled only when the image is due
            self._last = tuple(
                None if t is None else t[:k].detach() for t in (labels, raster, c, image)
            )
        return {"mse": loss.detach()}

    def _val_noise(self, start: int, real: torch.Tensor) -> torch.Tensor:
        """The same starting noise at every validation (seeded by the run's seed and the
        crop), so that the L1 and mIoU of two validations differ by the weights alone."""
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + start)
        return torch.randn(real.shape, generator=generator).to(real.device)

    @torch.no_grad()
    def step_images(self) -> torch.Tensor | None:
        """The last batch's first inputs, a short sampling (at most 10 steps) and the targets."""
        if self._last is None:
            return None
        labels, raster, c, image = self._last
        fake = self.g_net(labels, raster, c, steps=min(self.config.steps, 10))
        return self._grid(labels, raster, fake, image)


def task_class(config: GanConfig) -> type[GanTask]:
    """The task that trains ``config``'s generator: a GAN's, or the diffusion generator's."""
    return DiffusionTask if config.generator == "diffusion" else GanTask


def train_gan(
    config: GanConfig, *, resume: bool = False, progress: ProgressCallback | None = None
) -> TrainResult:
    """Train a generator (and its discriminator) as ``config`` says (under torchrun:
    distributed); ``generator: diffusion`` trains the diffusion generator."""
    return run_training(config, task_class(config), resume=resume, progress=progress)
