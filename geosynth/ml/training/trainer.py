"""The training machinery shared by ``train`` (GAN) and ``train-unet``: one loop, two tasks.

:func:`run_training` does everything that does not depend on the networks:
joining the process group, the run folder (refuse or resume), seeding and
determinism, the distributed sampler (``set_epoch``; a resumed epoch skips
the batches it already trained on), the step loop with NaN/inf detection,
images/s, TensorBoard scalars and image grids, ``log.jsonl``, checkpoints
every N steps and at each epoch end, and the PNG sample grid per epoch.

A :class:`Task` supplies the rest: its datasets, networks and optimizers, one
training step, the images to show and an optional validation after each
epoch (:mod:`geosynth.ml.training.train` and :mod:`geosynth.ml.training.train_unet`).

Only rank 0 logs, reports progress and writes files; every rank checks the
same all-reduced losses, so a diverged run stops everywhere at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from geosynth.errors import DataError, GeosynthError, UsageError
from geosynth.ml.training.checkpoint import RunFolder, load_checkpoint, rng_state, set_rng_state
from geosynth.ml.training.config import RunConfig, absolute_store
from geosynth.ml.training.distributed import (
    DistContext,
    SkipSampler,
    all_reduce,
    distributed_context,
    make_sampler,
    per_rank_batch,
    unwrap,
)
from geosynth.ml.training.visual import save_png

log = logging.getLogger(__name__)


class TrainingDiverged(GeosynthError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives (rank 0 only).

    ``kind``: ``"start"`` (``step`` = where the run starts), ``"step"`` after
    every optimisation step, ``"epoch"`` after each epoch (``values`` holds the
    validation metrics, if any) and ``"end"``.
    """

    kind: str
    step: int
    total_steps: int
    epoch: int
    epochs: int
    values: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0


ProgressCallback = Callable[[Progress], None]


@dataclass
class TrainResult:
    """The end of a run: steps done, the newest checkpoint, the last values, the networks."""

    step: int
    epoch: int
    checkpoint: Path | None
    values: dict[str, float]
    models: dict[str, nn.Module]
    complete: bool = False  # a resumed run that was already finished (nothing trained)


class Task(ABC):
    """The network-specific half of a training run (built on every rank)."""

    name: str = ""

    def __init__(self, config: RunConfig, ctx: DistContext):
        self.config = config
        self.ctx = ctx

    @abstractmethod
    def train_dataset(self) -> Dataset:
        """Training samples (random crops; ``set_epoch`` is called each epoch)."""

    @abstractmethod
    def sample_dataset(self) -> Dataset:
        """Deterministic samples for the epoch-end PNG grid."""

    @abstractmethod
    def models(self) -> dict[str, tuple[dict, nn.Module]]:
        """``{name: (network config dict, unwrapped network)}`` to checkpoint."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """``{name: optimizer}``, the same names as :meth:`models`."""

    @abstractmethod
    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar losses."""

    @abstractmethod
    def step_images(self) -> torch.Tensor | None:
        """A ``(3, H, W)`` uint8 grid of the last step's inputs and outputs (rank 0)."""

    @abstractmethod
    def sample_grid(self, batch: dict) -> torch.Tensor:
        """A ``(3, H, W)`` uint8 grid of the networks applied to ``batch`` in eval mode."""

    def learning_rates(self) -> dict[str, float]:
        return {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers().items()}

    def evaluate(self) -> dict[str, float]:
        """Validation metrics after an epoch (on every rank); none by default."""
        return {}

    def validate(self) -> dict[str, float]:
        """Validation metrics every ``val_every`` steps (rank 0 only); none by default."""
        return {}

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        return {
            "models": {n: {"config": c, "state": unwrap(m).state_dict()} for n, (c, m) in self.models().items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers().items()},
        }  # fmt: skip

    def load_state(self, payload: dict[str, Any], source: Path) -> None:
        for name, (cfg, module) in self.models().items():
            entry = payload["models"].get(name)
            if entry is None or entry["config"] != cfg:
                raise DataError(f"{source}: the {name} network differs from this run's config")
            unwrap(module).load_state_dict(entry["state"])
        for name, opt in self.optimizers().items():
            opt.load_state_dict(payload["optimizers"][name])


# --------------------------------------------------------------------------- helpers for tasks


def cpu_bf16_fast() -> bool:
    """Whether this CPU runs bf16 convolutions natively (oneDNN's AVX-512 or AMX kernels).

    Without them (e.g. an AVX2-only CPU) torch falls back to reference kernels:
    a U-Net step at base 16, 128 px, batch 8 took 10 s in bf16 against 0.4 s in
    fp32 on a 2-core AMD EPYC (AVX2), 2026-12-07.
    """
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def autocast(ctx: DistContext, enabled: bool, cpu: bool = False):
    """bf16 autocast on CUDA when ``enabled``; on the CPU too when ``cpu`` and the CPU
    has bf16 kernels (:func:`cpu_bf16_fast`), else a no-op there.

    The training steps pass ``cpu=True``: bf16 on a CPU with AVX-512 BF16 or AMX
    is about 1.5x faster for the GAN step, for the same loss curves
    (``benchmarks/train_step.py``), and 1.7x for the U-Net's (capacity 16, 128
    px crops, batch 8); on a CPU without them it would be 20x slower, so the
    step stays in fp32 there. Evaluation and validation stay in fp32 on the CPU.
    """
    if enabled and ctx.cuda:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if enabled and cpu and ctx.device.type == "cpu" and cpu_bf16_fast():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adam(
    params, lr: float, betas: tuple[float, float], ctx: DistContext, weight_decay=0.0,
    fused: bool = True,
):  # fmt: skip
    """Adam with the fused kernel (one kernel for all tensors) on CPU and CUDA; ``fused``
    False: torch's default implementation, whose updates round as the paper's code's do."""
    return torch.optim.Adam(
        params,
        lr=lr,
        betas=betas,
        weight_decay=weight_decay,
        fused=fused and ctx.device.type in ("cpu", "cuda"),
    )


def to_device(x: torch.Tensor, ctx: DistContext, channels_last: bool) -> torch.Tensor:
    """Move a ``(B, C, H, W)`` batch tensor; channels-last memory layout when asked."""
    x = x.to(ctx.device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def prepare_network(module: nn.Module, config: RunConfig) -> nn.Module:
    """The channels-last memory layout when configured (the module is already on its device)."""
    if config.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def lr_factor(epoch: int, epochs: int, decay_start: int | None) -> float:
    """SPADE's schedule: the factor of the base learning rate in ``epoch`` (0-based).

    1 for the first ``decay_start`` epochs and the next one (SPADE lowers the
    rate after each epoch past ``niter``), then lower by ``1 / (epochs -
    decay_start)`` each epoch: the last epoch trains at ``1 / (epochs -
    decay_start)``, and the rate would reach 0 after it.
    """
    if decay_start is None or epoch < decay_start or decay_start >= epochs:
        return 1.0
    return 1.0 - (epoch - decay_start) / (epochs - decay_start)


def maybe_compile(module: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(module)`` when ``enabled`` (wrap DDP first, then compile)."""
    return torch.compile(module) if enabled else module


# --------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _determinism(enabled: bool, ctx: DistContext) -> Iterator[None]:
    """Deterministic kernels while training when ``enabled``; cudnn autotuning otherwise."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = ctx.cuda and not enabled
    torch.backends.cudnn.deterministic = enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]


@contextlib.contextmanager
def _only_main_logs(ctx: DistContext) -> Iterator[None]:
    root = logging.getLogger("geosynth")
    level = root.level
    if not ctx.is_main:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def _seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


class _Logger:
    """Rank 0's outputs: TensorBoard, ``log.jsonl``, sample grids (no-ops elsewhere)."""

    def __init__(self, folder: RunFolder, config: RunConfig, ctx: DistContext, start_step: int):
        self.folder = folder
        self.on = ctx.is_main
        self.tb = None
        if self.on and config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder.tensorboard), purge_step=start_step or None)
            self.hparams(config)

    def hparams(self, config: RunConfig) -> None:
        """The run's options in TensorBoard's HPARAMS tab, beside the loss scalars (as in
        ``config.yaml``; lists, mappings and None as text)."""
        from torch.utils.tensorboard.summary import hparams

        values = {
            k: v if isinstance(v, bool | int | float | str) else str(v)
            for k, v in config.to_dict().items()
        }
        metrics = {f"loss/{k}": 0.0 for k in ("g_adv", "g_fm", "d_real", "d_fake", "ce")}
        writer = self.tb._get_file_writer()
        for summary in hparams(values, metrics):
            writer.add_summary(summary)

    def scalars(self, step: int, values: dict[str, float], record: dict[str, Any]) -> None:
        if not self.on:
            return
        if self.tb is not None:
            for name, value in values.items():
                self.tb.add_scalar(name, value, step)
        self.folder.append_log(record)

    def image(self, tag: str, image: torch.Tensor | None, step: int) -> None:
        if self.on and self.tb is not None and image is not None:
            self.tb.add_image(tag, image, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _sample_batch(task: Task, count: int) -> dict | None:
    if count < 1:
        return None
    dataset = task.sample_dataset()
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    return default_collate(items) if items else None


def _check_finite(values: dict[str, float], step: int, epoch: int, last: tuple | None) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        where = f"{last[0]} (step {last[1]})" if last else "none (no checkpoint was written yet)"
        names = ", ".join(f"{k} = {v}" for k, v in bad.items())
        raise TrainingDiverged(
            f"training diverged at step {step} (epoch {epoch + 1}): {names}. Last good "
            f"checkpoint: {where}; continue from it with --resume (perhaps with lower "
            "learning rates in a new run)"
        )


def run_training(
    config: RunConfig,
    task_factory: Callable[[RunConfig, DistContext], Task],
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train ``config`` with the task built by ``task_factory`` on this process's rank."""
    from dataclasses import replace

    config = replace(config, store=absolute_store(config.store))  # config.yaml: from anywhere
    with distributed_context(config.device) as ctx, _only_main_logs(ctx):
        folder = RunFolder(Path(config.out))
        start_from = folder.check_start(resume)
        _barrier(ctx)  # every rank has looked at the folder before rank 0 writes to it
        with _determinism(config.deterministic, ctx):
            _seed(config.seed)
            task = task_factory(config, ctx)
            return _Run(config, task, ctx, folder, progress).run(start_from)


class _Run:
    """The state of one training loop on one rank: position, last checkpoint, logging window."""

    def __init__(self, config, task: Task, ctx: DistContext, folder: RunFolder, progress):
        self.config, self.task, self.ctx, self.folder = config, task, ctx, folder
        self.report = progress if (progress is not None and ctx.is_main) else (lambda info: None)
        self.step = self.epoch = self.epoch_step = 0
        self.last: tuple[Path, int] | None = None  # newest checkpoint and its step
        self.values: dict[str, float] = {}
        self._sums: dict[str, float] = {}
        self._window = [0, 0.0]  # steps and seconds since the last log record
        # data: this rank's share of every epoch, resumable in the middle of one
        self.dataset = task.train_dataset()
        self.batch = per_rank_batch(config.batch_size, ctx)
        self.sampler = make_sampler(
            self.dataset, ctx, shuffle=True, seed=config.seed, drop_last=True
        )
        self.steps_per_epoch = len(self.sampler) // self.batch
        if self.steps_per_epoch == 0:
            raise DataError(
                f"store {config.store}: split {config.split!r} has {len(self.dataset)} usable "
                f"tiles, fewer than the batch size {config.batch_size}; lower --batch-size"
            )
        self.skipper = SkipSampler(self.sampler)
        self.loader = DataLoader(
            self.dataset,
            batch_size=self.batch,
            sampler=self.skipper,
            num_workers=config.workers,
            drop_last=True,
            pin_memory=ctx.cuda,
            persistent_workers=config.workers > 0,
        )

    # ------------------------------------------------------------------ checkpoints
    def resume_from(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.ctx.device)
        if payload.get("task") != self.task.name:
            raise DataError(f"{path} holds a {payload.get('task')!r} run, not {self.task.name!r}")
        origin = payload.get("imported") or payload.get("weights_only")
        if origin:
            how = "imported by `geosynth import-weights`" if payload.get("imported") else (
                "written by `geosynth export-weights`"
            )  # fmt: skip
            raise UsageError(
                f"{path} holds networks {how} (from {origin.get('from')}), without optimizer "
                "state: it cannot be resumed; evaluate, synthesize and the edits use it as it is"
            )
        self.task.load_state(payload, path)
        self.step, self.epoch, self.epoch_step = (
            payload["step"], payload["epoch"], payload["epoch_step"],
        )  # fmt: skip
        set_rng_state(payload["rng"])
        self.last = (path, self.step)
        log.info("resuming %s from %s at step %d", self.folder.root, path.name, self.step)

    def save(self, step_file: bool, metrics: dict[str, float]) -> None:
        """Rank 0 writes a checkpoint; every rank waits for it."""
        if self.ctx.is_main:
            payload = {
                "task": self.task.name, "step": self.step, "epoch": self.epoch,
                "epoch_step": self.epoch_step, "config": self.config.to_dict(),
                "rng": rng_state(), "metrics": metrics, **self.task.state(),
            }  # fmt: skip
            keep = self.config.keep_checkpoints
            self.last = (self.folder.save(payload, step_file=step_file, keep=keep), self.step)
        _barrier(self.ctx)

    # ------------------------------------------------------------------ phases
    def after_step(self, losses: dict[str, torch.Tensor], seconds: float, total: int) -> None:
        """Reduce and check the losses; report, log, show images and checkpoint as configured."""
        cfg = self.config
        reduced = all_reduce(torch.stack([v.float() for v in losses.values()]), self.ctx, "mean")
        self.values = dict(zip(losses, reduced.tolist(), strict=True))
        _check_finite(self.values, self.step, self.epoch, self.last)
        self._window[0] += 1
        self._window[1] += seconds
        for k, v in self.values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        ips = cfg.batch_size / max(seconds, 1e-9)
        self.report(Progress("step", self.step, total, self.epoch, cfg.epochs, self.values, ips))
        at_epoch_end = self.epoch_step == self.steps_per_epoch  # that checkpoint comes next
        last = at_epoch_end or self.step >= total  # short runs log too: every epoch and the end
        if (cfg.log_every and self.step % cfg.log_every == 0) or last:
            self.log_window()
        image_due = (cfg.image_every and self.step % cfg.image_every == 0) or last
        if image_due and self.ctx.is_main:
            self.logger.image("train/inputs_output_target", self.task.step_images(), self.step)
        val_every = getattr(cfg, "val_every", 0)
        if val_every and self.step % val_every == 0 and self.ctx.is_main:
            metrics = self.task.validate()
            record = {"step": self.step, "epoch": self.epoch + 1, "validation": True, **metrics}
            self.logger.scalars(self.step, {f"val/{k}": v for k, v in metrics.items()}, record)
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and not at_epoch_end:
            self.save(step_file=True, metrics=self.values)

    def log_window(self) -> None:
        """Mean losses and images/s since the last record: TensorBoard and ``log.jsonl``."""
        n, seconds = self._window
        rate = n * self.config.batch_size / max(seconds, 1e-9)
        means = {k: v / n for k, v in self._sums.items()}
        scalars = {f"loss/{k}": v for k, v in means.items()}
        scalars.update({f"lr/{k}": v for k, v in self.task.learning_rates().items()})
        scalars["perf/images_per_s"] = rate
        record = {"step": self.step, "epoch": self.epoch + 1, **means, "images_per_s": rate}
        self.logger.scalars(self.step, scalars, record)
        self._sums, self._window = {}, [0, 0.0]

    def end_of_epoch(self, samples: dict | None, total: int) -> None:
        """Validation, the PNG sample grid, the epoch record and a checkpoint."""
        metrics = self.task.evaluate()
        epoch = self.epoch + 1
        if self.ctx.is_main:
            if samples is not None:
                grid_image = self.task.sample_grid(samples)
                save_png(self.folder.samples / f"epoch_{epoch:04d}.png", grid_image)
            record = {"step": self.step, "epoch": epoch, "end_of_epoch": True, **metrics}
            self.logger.scalars(self.step, {f"val/{k}": v for k, v in metrics.items()}, record)
            if metrics:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                log.info("epoch %d: %s", epoch, shown)
        self.report(Progress("epoch", self.step, total, self.epoch, self.config.epochs, metrics))
        every = self.config.checkpoint_every
        self.save(
            step_file=bool(every) and self.step % every == 0, metrics={**self.values, **metrics}
        )

    def set_learning_rates(self) -> None:
        """This epoch's learning rates (``lr_decay_start``): the base rate times :func:`lr_factor`."""
        factor = lr_factor(self.epoch, self.config.epochs, self.config.lr_decay_start)
        for opt in self.task.optimizers().values():
            for group in opt.param_groups:
                group.setdefault("base_lr", group["lr"])  # saved with the optimizer's state
                group["lr"] = group["base_lr"] * factor

    # ------------------------------------------------------------------ stopping
    def _command(self) -> str:
        name = {"gan": "train", "unet": "train-unet"}.get(self.task.name, self.task.name)
        return f"geosynth {name} --resume --out {self.folder.root}"

    def complete(self, total: int) -> TrainResult:
        """A resumed run that has nothing left to do: say so and how to extend it."""
        cfg = self.config
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            how = f"--max-steps {cfg.max_steps * 2} (more than {cfg.max_steps})"
        else:
            how = f"--epochs {cfg.epochs * 2} (more than {cfg.epochs})"
        log.warning(
            "%s is complete: %d steps, %d of %d epochs; nothing to do. To train longer: %s %s",
            self.folder.root, self.step, min(self.epoch, cfg.epochs), cfg.epochs,
            self._command(), how,
        )  # fmt: skip
        nets = {name: unwrap(module) for name, (_, module) in self.task.models().items()}
        path = self.last[0] if self.last else None
        return TrainResult(self.step, self.epoch, path, self.values, nets, complete=True)

    def interrupted(self) -> None:
        """Ctrl-C: say what is saved and how to continue."""
        if self.last is None:
            log.warning(
                "interrupted at step %d; no checkpoint was written yet (rerun with --resume "
                "to start again: %s)", self.step, self._command(),
            )  # fmt: skip
            return
        log.warning(
            "interrupted at step %d; saved: %s (step %d). Continue with: %s",
            self.step, self.last[0], self.last[1], self._command(),
        )  # fmt: skip

    # ------------------------------------------------------------------ the loop
    def run(self, start_from: Path | None) -> TrainResult:
        cfg, ctx = self.config, self.ctx
        if start_from is not None:
            self.resume_from(start_from)
        if self.epoch_step >= self.steps_per_epoch:  # resumed at an epoch end
            self.epoch, self.epoch_step = self.epoch + 1, 0
        total = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        if start_from is not None and (self.step >= total or self.epoch >= cfg.epochs):
            return self.complete(total)
        if ctx.is_main:
            self.folder.write_config(cfg)
            self.folder.trim_log(self.step)  # resumed: each step is logged once
        self.logger = _Logger(self.folder, cfg, ctx, self.step)
        samples = _sample_batch(self.task, cfg.samples) if ctx.is_main else None
        log.info(
            "%s: %d tiles, %d steps per epoch, global batch %d on %d process(es), %s",
            self.folder.root, len(self.dataset), self.steps_per_epoch, cfg.batch_size,
            ctx.world_size, ctx.device,
        )  # fmt: skip
        self.report(Progress("start", self.step, total, self.epoch, cfg.epochs))
        last_epoch_end = self.step  # epoch-end work at most every cfg.epoch_gap steps
        try:
            while self.step < total and self.epoch < cfg.epochs:
                self.set_learning_rates()
                self.sampler.set_epoch(self.epoch)
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(self.epoch)
                self.skipper.skip = self.epoch_step * self.batch
                tick = time.perf_counter()
                for data in self.loader:
                    losses = self.task.train_step(data)
                    self.step, self.epoch_step = self.step + 1, self.epoch_step + 1
                    now = time.perf_counter()
                    self.after_step(losses, now - tick, total)
                    tick = now
                    if self.step >= total:
                        break
                if self.epoch_step == self.steps_per_epoch:
                    last = self.epoch + 1 >= cfg.epochs or self.step >= total
                    if last or self.step - last_epoch_end >= cfg.epoch_gap:
                        self.end_of_epoch(samples, total)
                        last_epoch_end = self.step
                    self.epoch, self.epoch_step = self.epoch + 1, 0
                elif self.step >= total:  # stopped by max_steps inside an epoch
                    self.save(step_file=False, metrics=self.values)
        except KeyboardInterrupt:
            self.interrupted()
            raise
        finally:
            self.logger.close()
        self.report(Progress("end", self.step, total, self.epoch, cfg.epochs, self.values))
        nets = {name: unwrap(module) for name, (_, module) in self.task.models().items()}
        return TrainResult(
            self.step, self.epoch, self.last[0] if self.last else None, self.values, nets
        )
