"""``geosynth train`` and ``geosynth train-unet``: resolve the configuration, run the library.

Options default to "not given": the value comes from the command line, else
the ``--config`` YAML file, else the resumed run's ``config.yaml`` or the
defaults of :mod:`geosynth.ml.training.config` (shown in ``--help``; reading them
imports torch, so only a command's own ``--help`` does).
"""

from __future__ import annotations

import subprocess
import sys

import click

from geosynth import names
from geosynth.cli import options

CONFIG_MODULE = "geosynth.ml.training.config"


class ConfigOption(click.Option):
    """An option whose default lives in a config dataclass, shown in ``--help`` only."""

    def __init__(self, *args, config_class: str, **kwargs):
        kwargs.setdefault("default", None)
        super().__init__(*args, **kwargs)
        self.config_class = config_class

    def get_help_record(self, ctx):
        record = super().get_help_record(ctx)
        if record is None:
            return None
        import importlib

        module = importlib.import_module(CONFIG_MODULE)
        try:
            default = module.default_of(getattr(module, self.config_class), self.name)
        except KeyError:
            return record
        if default is None or default == "":
            return record
        if isinstance(default, tuple):
            default = ",".join(str(v) for v in default)
        if isinstance(default, bool) and self.secondary_opts:
            default = (self.opts if default else self.secondary_opts)[0].lstrip("-")
        return record[0], f"{record[1]}  [default: {default}]"


def _options(config_class: str, specs) -> callable:
    """Decorate a command with ``(flags, help, click kwargs)`` options of ``config_class``."""

    def decorate(func):
        for flags, help_text, kwargs in reversed(specs):
            func = click.option(
                *flags, cls=ConfigOption, config_class=config_class, help=help_text, **kwargs
            )(func)
        return func

    return decorate


POS = click.IntRange(1)


def _storage_options(ctx, param, values):
    from geosynth.cli.options import _storage_options as parse

    return parse(ctx, param, values) or None  # not given: the config file's or the run's


COMMON = [
    (("--store",), "Zarr store to train on: a path or an s3://, gs://, memory:// URL.", {}),
    (("--storage-option", "storage_options"),
     "fsspec option of a remote store, KEY=VALUE (repeatable).",
     {"multiple": True, "callback": _storage_options, "metavar": "KEY=VALUE"}),
    (("--out",), "Run folder (config, checkpoints, samples, TensorBoard).", {"type": click.Path()}),
    (("--split",), "Store split to train on.", {}),
    (("--crop",), "Random crop edge in pixels.", {"type": click.IntRange(16)}),
    (("--resize",), "Resize crops to this edge.", {"type": click.IntRange(16)}),
    (("--batch-size",), "Global batch, split across processes.", {"type": POS}),
    (("--epochs",), "Epochs to train.", {"type": POS}),
    (("--max-steps",), "Stop after this many steps in total.", {"type": POS}),
    (("--seed",), "Seed of initialisation, crops and order.", {"type": int}),
    (("--workers",), "DataLoader worker processes [default: 4, or the cores if fewer].",
     {"type": click.IntRange(0)}),
    (("--device",), "auto: CUDA when available.", {"type": click.Choice(names.DEVICES)}),
    (("--amp/--no-amp",), "bf16 autocast of the training step, on CUDA and on the CPU (there about 1.5x faster for the GAN, 1.7x for the U-Net).", {}),
    (("--channels-last/--no-channels-last",), "channels-last memory layout.", {}),
    (("--compile/--no-compile",), "torch.compile the networks.", {}),
    (("--deterministic/--no-deterministic",), "Deterministic kernels.", {}),
    (("--checkpoint-every",), "Checkpoint every N steps (0: epoch ends only).", {"type": click.IntRange(0)}),
    (("--keep-checkpoints",), "Step checkpoints kept.", {"type": POS}),
    (("--log-every",), "Scalars (TensorBoard, log.jsonl) every N steps, and at every epoch end.", {"type": click.IntRange(0)}),
    (("--image-every",), "TensorBoard image grid every N steps, and at every epoch end.", {"type": click.IntRange(0)}),
    (("--samples",), "Rows of the sample grids.", {"type": click.IntRange(0)}),
    (("--samples-per-epoch",), "Crops per epoch [default: one per tile].", {"type": POS}),
    (("--tensorboard/--no-tensorboard",), "Write TensorBoard events.", {}),
    (("--lr-decay-start",), "SPADE's schedule: learning rates constant for N epochs, then "
     "linear to 0 at the end [default: constant].", {"type": click.IntRange(0)}),
    (("--epoch-gap",), "Epoch-end validation, sample grid, record and checkpoint at most every "
     "N steps, and at the last epoch (tiny epochs do not multiply them; 0: every epoch).",
     {"type": click.IntRange(0)}),
]  # fmt: skip
GAN = [
    (("--inputs",), f"Generator inputs, comma-separated ({', '.join(names.NETWORK_MODALITIES)}).", {}),
    (("--output",), "Image to synthesize.", {"type": click.Choice(names.IMAGE_OUTPUTS)}),
    (("--generator",), "ours, spade (labels only), pix2pix (raster only), concat, merge, or "
     "diffusion (beyond the paper: labels through SPADE in the denoiser's decoder, rasters at "
     "its input; whatever --inputs give).", {"type": click.Choice(names.GENERATOR_KINDS)}),
    (("--cap",), "Generator capacity (width of its first layer).", {"type": POS}),
    (("--d-cap",), "Discriminator capacity [default: --cap].", {"type": POS}),
    (("--d-scales",), "Discriminator scales [default: 2 below 512 px, else 3].", {"type": POS}),
    (("--spectral-norm",), "Spectral norm placement.", {"type": click.Choice(names.SPECTRAL_MODES)}),
    (("--dem-norm",), "DEM normalisation: none = metres as stored (absolute heights); crop = "
     "each crop standardised by its own mean and std (relative relief; what the demo and the "
     "recipes use: a region's altitude does not shift the inputs); tile = by the whole tile's.",
     {"type": click.Choice(names.DEM_NORMS)}),
    (("--lr-g",), "Generator learning rate.", {"type": float}),
    (("--lr-d",), "Discriminator learning rate.", {"type": float}),
    (("--lambda-fm",), "Weight of the feature-matching loss.", {"type": float}),
    (("--d-fake",), "D's step on the fake of G's step (reuse) or on a new one after G's update "
     "(regenerate, the paper's code).", {"type": click.Choice(names.D_FAKES)}),
    (("--d-step",), "joint: one D forward on fake and real, losses averaged over D's scales; "
     "authors: D called on fake and real apart and the losses summed over the scales, as the "
     "paper's code (needs --d-fake regenerate).", {"type": click.Choice(names.D_STEPS)}),
    (("--block-order",), "Inside G's ResNet blocks: geosynth (norm, ReLU, pad, conv) or authors "
     "(pad, norm, ReLU, conv: BatchNorm counts the padded border and SPADE's labels shift by "
     "up to one cell, as the paper's code).", {"type": click.Choice(names.BLOCK_ORDERS)}),
    (("--flip/--no-flip",), "Random horizontal flips of the training crops.", {}),
    (("--image-range",), "Images in [-1, 1] (symmetric) or targets in [0, 1] under the tanh "
     "output (unit, the paper's code).", {"type": click.Choice(names.IMAGE_RANGES)}),
    (("--ema",), "Keep an exponential moving average of G's weights with this decay (e.g. "
     "0.999); evaluate, synthesize and the edits use it [default: none].",
     {"type": click.FloatRange(0, 1, min_open=True, max_open=True)}),
    (("--val-every",), "Validate every N steps (0: never): L1 to the real images and, with "
     "--unet, the U-Net's mIoU of the fakes, on fixed crops; TensorBoard val/ and log.jsonl.",
     {"type": click.IntRange(0)}),
    (("--val-split",), "Split of the validation crops ('none': all tiles).", {}),
    (("--val-crops",), "Validation crops (centre crops of the first N tiles).", {"type": POS}),
    (("--unet",), "A train-unet run that scores the validation fakes (mIoU).",
     {"type": click.Path(exists=True)}),
    (("--conditions",), f"Acquisition conditions fed to G and D, comma-separated "
     f"({', '.join(names.CONDITIONS)}) [default: none, the paper's networks].", {}),
    (("--noise",), "Width of the OASIS-style noise vector (0: deterministic generator).",
     {"type": click.IntRange(0)}),
    (("--prediction",), "diffusion: what the denoiser predicts.",
     {"type": click.Choice(names.DIFFUSION_PREDICTIONS)}),
    (("--schedule",), "diffusion: the noise schedule (betas).",
     {"type": click.Choice(names.DIFFUSION_SCHEDULES)}),
    (("--sampler",), "diffusion: the sampler of validation and synthesis (ddim, or dpm: "
     "DPM-Solver++).", {"type": click.Choice(names.DIFFUSION_SAMPLERS)}),
    (("--steps",), "diffusion: sampling steps.", {"type": click.IntRange(1)}),
    (("--guidance",), "diffusion: classifier-free guidance scale w, (1 + w) f(c) - w f(0) "
     "(0: none).", {"type": click.FloatRange(0)}),
    (("--cond-drop",), "diffusion: share of training samples without their conditioning "
     "(classifier-free guidance needs it > 0).", {"type": click.FloatRange(0, 1, max_open=True)}),
]  # fmt: skip
UNET = [
    (("--input",), "Image to segment.", {"type": click.Choice(names.IMAGE_OUTPUTS)}),
    (("--lr",), "Learning rate.", {"type": float}),
    (("--weight-decay",), "Adam weight decay.", {"type": float}),
    (("--base-channels",), "U-Net width.", {"type": POS}),
    (("--norm",), "none: the paper's scorer; batch: BatchNorm after every conv (converges "
     "several times faster on short runs).", {"type": click.Choice(names.UNET_NORMS)}),
    (("--image-range",), "What the U-Net's first conv sees: images in [-1, 1] (symmetric) or "
     "[0, 1] (unit, the paper's scorer).", {"type": click.Choice(names.IMAGE_RANGES)}),
    (("--val-split",), "Split scored after each epoch ('none': no validation).", {}),
    (("--val-crop",), "Centre crop of validation tiles [default: largest multiple of 16].",
     {"type": click.IntRange(16)}),
    (("--val-tiles",), "Validate on the first N tiles of --val-split (evaluate scores them "
     "all).", {"type": click.IntRange(1)}),
    (("--loss",), "ce: cross entropy (class 0 ignored); bce: BCE on the one-hot map (the paper's code); focal: focal cross entropy.",
     {"type": click.Choice(names.UNET_LOSSES)}),
    (("--focal-gamma",), "Focal loss exponent (0: cross entropy).", {"type": click.FloatRange(0)}),
    (("--class-weights",), "Class weights from the training split's class histogram.",
     {"type": click.Choice(names.CLASS_WEIGHTINGS)}),
    (("--extra-store",), "A second store (e.g. of `geosynth augment`) mixed into training.", {}),
    (("--mix",), "Share of each epoch's samples drawn from --extra-store.",
     {"type": click.FloatRange(0, 1)}),
]  # fmt: skip
RUN_OPTIONS = [
    click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of options."
    ),
    click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt."),
    click.option(
        "--nproc",
        type=POS,
        default=None,
        help="Launch N processes with torchrun (one per GPU; gloo processes on CPU).",
    ),
]


def _run_options(func):
    for option in reversed(RUN_OPTIONS):
        func = option(func)
    return func


def _given(params: dict) -> dict:
    """The options given on the command line (not None), keyed as in the config."""
    return {k: v for k, v in params.items() if v is not None}


def _resolve(config_class_name: str, params: dict, config_file, resume: bool):
    """1. command line, 2. --config file, 3. the resumed run's config.yaml or the defaults."""
    from pathlib import Path

    from geosynth.errors import UsageError
    from geosynth.ml.training import config as cfg_module
    from geosynth.ml.training.checkpoint import RunFolder

    cls = getattr(cfg_module, config_class_name)
    cli = _given(params)
    if cli.get("val_split") in ("none", ""):
        cli["val_split"] = None
    base = None
    if resume:
        out = cli.get("out")
        if not out and config_file:
            out = cfg_module.read_yaml(config_file).get("out")
        if not out:
            raise UsageError("--resume needs --out (the run folder to continue)")
        folder = RunFolder(Path(out))
        if not folder.config_path.is_file():
            raise UsageError(f"--resume: {out} holds no run (no config.yaml) to resume")
        base = folder.saved_config()
        if isinstance(base.get("store"), str):  # relative paths: against the run folder
            base["store"] = cfg_module.absolute_store(base["store"], folder.root)
        if base.get("task") != cls.task:
            command = {"gan": "train", "unet": "train-unet"}.get(base.get("task"), "?")
            raise UsageError(f"{out} is a {base.get('task')!r} run; resume it with {command}")
    return cfg_module.resolve_config(cls, cli, config_file, base=base)


def _launch(nproc: int) -> None:
    """Re-run this command line under torchrun with ``nproc`` processes (without --nproc)."""
    from geosynth.ml.training.distributed import strip_option, torchrun_command

    command = torchrun_command(nproc, strip_option(sys.argv[1:], "--nproc"))
    click.echo(f"launching: {' '.join(command)}", err=True)
    code = subprocess.call(command)
    if code:
        raise click.exceptions.Exit(code)


class _Bar:
    """A tqdm bar of steps with the losses and images/s (rank 0; epoch metrics are logged)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, info) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if info.kind == "start":
            self.bar = tqdm(
                total=info.total_steps, initial=info.step, unit="step", dynamic_ncols=True
            )
        elif info.kind == "step" and self.bar is not None:
            shown = {k: f"{v:.3f}" for k, v in info.values.items()}
            self.bar.set_postfix(**shown, img_s=f"{info.images_per_s:.1f}", refresh=False)
            self.bar.set_description(f"epoch {info.epoch + 1}/{info.epochs}")
            self.bar.update(1)
        elif info.kind == "end" and self.bar is not None:
            self.bar.close()


def _train(config_class: str, params: dict, config_file, resume: bool, nproc) -> None:
    from geosynth.io import check_writable

    config = _resolve(config_class, params, config_file, resume)  # usage errors before launching
    check_writable(config.out, f"the run folder {config.out}")
    if nproc is not None:
        if config.batch_size % nproc:
            raise click.BadParameter(
                f"--batch-size {config.batch_size} does not split evenly across {nproc} processes",
                param_hint="--nproc",
            )
        _launch(nproc)
        return
    if config.task == "gan":
        from geosynth.ml.training.train import train_gan as run
    else:
        from geosynth.ml.training.train_unet import train_unet as run
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[logging.getLogger("geosynth")]):  # logs above the bar
        result = run(config, resume=resume, progress=_Bar(options.progress_enabled()))
    if result.checkpoint is not None:
        click.echo(f"{result.step} steps; checkpoint {result.checkpoint}", err=True)


@click.command("train")
@_run_options
@_options("GanConfig", COMMON + GAN)
def train(config_file, resume, nproc, **params) -> None:
    """Train a generator and its discriminator on a store (the paper's GAN recipe).

    Adam (0, 0.9), learning rates 1e-4 (G) and 4e-4 (D), hinge loss, L1
    feature matching (--lambda-fm 5), spectral norm everywhere. Example:

        geosynth train --store geonrw.zarr --inputs seg,dem --output rgb
        --generator ours --cap 64 --crop 256 --batch-size 32 --epochs 200
        --out runs/ours_dem

    Every option can also come from --config FILE.yaml (the command line
    wins). An existing run folder is continued with --resume, never
    overwritten. Distributed: --nproc N, or torchrun --nproc_per_node N -m
    geosynth train ...
    """
    _train("GanConfig", params, config_file, resume, nproc)


@click.command("train-unet")
@_run_options
@_options("UNetRunConfig", COMMON + UNET)
def train_unet(config_file, resume, nproc, **params) -> None:
    """Train the U-Net scorer that segments real or synthesized images (rgb or sar).

    Adam (0.9, 0.999), learning rate 2e-4, cross entropy with class 0
    (unlabelled) ignored, 100 epochs; validation mIoU after each epoch.
    Checkpoints, --resume, --config and --nproc as in ``geosynth train``.
    Class imbalance: --class-weights inverse|median, --loss focal. Synthesized
    training data: --extra-store synth.zarr --mix 0.5.

        geosynth train-unet --store geonrw.zarr --input rgb --out runs/unet_rgb
    """
    _train("UNetRunConfig", params, config_file, resume, nproc)
