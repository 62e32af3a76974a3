"""Training configurations: frozen dataclasses, YAML files and command-line overrides.

Which value an option takes (the first match wins):

1. an option given on the command line (``--cap 32``);
2. the same key in the YAML file given with ``--config`` (``cap: 32``);
3. the dataclass default below (the paper's recipe).

On ``--resume`` the run's own ``config.yaml`` replaces step 3 and steps 1-2
may only change the keys in :data:`RESUMABLE_KEYS` (paths, how long to
train, how often to log, workers, device and precision settings): anything
that would change the model, the data or the recipe of a half-trained run is
refused, naming the key.

This module imports no torch: the command line builds its ``--help`` from it.
The allowed values of every choice come from :mod:`geosynth.names`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from geosynth.errors import UsageError
from geosynth.ml.data.conditions import parse_conditions
from geosynth.ml.networks.configs import (
    PAPER_CROP,
    GeneratorConfig,
    UNetConfig,
    check_diffusion,
)
from geosynth.names import (
    BLOCK_ORDERS,
    CLASS_WEIGHTINGS,
    D_FAKES,
    D_STEPS,
    DEM_NORMS,
    DEVICES,
    GENERATOR_KINDS,
    IMAGE_OUTPUTS,
    IMAGE_RANGES,
    NETWORK_MODALITIES,
    SPECTRAL_MODES,
    UNET_LOSSES,
    UNET_NORMS,
    generator_input_problem,
)

# options of the GANs' networks and step that the diffusion generator refuses when changed
GAN_ONLY = ("d_cap", "d_scales", "spectral_norm", "lr_d", "lambda_fm", "d_fake", "d_step",
            "block_order")  # fmt: skip

# options of the diffusion generator that the GANs refuse when changed
DIFFUSION_ONLY = ("prediction", "schedule", "sampler", "steps", "guidance", "cond_drop")

# keys a resumed run may change: paths (a run or store may have moved), the length of the
# run, logging, loading and execution settings; not the model, the data or the recipe
RESUMABLE_KEYS = frozenset(
    {
        "store",
        "out",
        "amp",
        "channels_last",
        "deterministic",
        "epochs",
        "max_steps",
        "workers",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "image_every",
        "samples",
        "tensorboard",
        "compile",
        "device",
        "storage_options",
        "val_every",
        "val_crops",
        "val_tiles",
        "epoch_gap",
        "unet",
        "extra_store",
    }
)

C = TypeVar("C", bound="RunConfig")


def default_workers() -> int:
    """DataLoader workers: 4, or the cores this process may use where there are fewer
    (torch warns above them)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


@dataclass(frozen=True)
class RunConfig:
    """Options shared by ``train`` and ``train-unet``.

    ``batch_size`` is the global batch, split evenly across the processes of a
    distributed run. ``max_steps`` stops a run early (``None``: after
    ``epochs``). ``checkpoint_every``, ``log_every`` and ``image_every`` count
    optimisation steps (0 turns the step-wise action off; checkpoints and
    sample grids are written at each epoch end regardless).
    ``lr_decay_start``: SPADE's schedule, the learning rates constant for this
    many epochs, then falling linearly to 0 at the end of ``epochs`` (None:
    constant throughout, the paper's recipe). ``epoch_gap``: the epoch-end work
    (validation, the sample grid, the epoch record, the checkpoint) at most every
    this many steps, and at the last epoch, so that tiny epochs (a few tiles)
    do not multiply it; 0: at every epoch end.
    """

    task: ClassVar[str] = ""

    store: str = ""
    out: str = ""
    split: str = "train"
    crop: int = PAPER_CROP
    resize: int | None = None
    batch_size: int = 32
    epochs: int = 200
    max_steps: int | None = None
    seed: int = 0
    workers: int = field(default_factory=default_workers)
    device: str = "auto"
    amp: bool = True
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    image_every: int = 500
    samples: int = 4
    samples_per_epoch: int | None = None
    tensorboard: bool = True
    storage_options: dict = field(default_factory=dict)
    lr_decay_start: int | None = None
    epoch_gap: int = 50

    def __post_init__(self):
        if not self.store:
            raise UsageError("--store is required (the Zarr store to train on)")
        if not self.out:
            raise UsageError("--out is required (the run folder)")
        if not isinstance(self.storage_options, dict):
            raise UsageError(f"storage_options must be a mapping, got {self.storage_options!r}")
        _choice("device", self.device, DEVICES)
        _at_least("crop", self.crop, 16)
        if self.resize is not None:
            _at_least("resize", self.resize, 16)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("epochs", self.epochs, 1)
        if self.max_steps is not None:
            _at_least("max_steps", self.max_steps, 1)
        _at_least("workers", self.workers, 0)
        for name in ("checkpoint_every", "log_every", "image_every", "samples"):
            _at_least(name, getattr(self, name), 0)
        _at_least("keep_checkpoints", self.keep_checkpoints, 1)
        if self.samples_per_epoch is not None:
            _at_least("samples_per_epoch", self.samples_per_epoch, 1)
        if self.lr_decay_start is not None:
            _at_least("lr_decay_start", self.lr_decay_start, 0)
        _at_least("epoch_gap", self.epoch_gap, 0)

    @property
    def size(self) -> int:
        """Edge of the network's input in pixels (after cropping and resizing)."""
        return self.resize or self.crop

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe values (tuples become lists), with the task name."""
        out = {"task": self.task}
        for key, value in asdict(self).items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], source: str = "") -> C:
        """A config from plain values; errors are prefixed with ``source`` (e.g. a file name)."""
        data = dict(data)
        task = data.pop("task", cls.task)
        if task != cls.task:
            raise UsageError(_where(source, f"a {task!r} configuration, not {cls.task!r}"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(_where(source, f"unknown key(s) {', '.join(unknown)}"))
        values = {k: _coerce(cls, k, v, source) for k, v in data.items()}
        try:
            return cls(**values)
        except UsageError as exc:
            raise UsageError(_where(source, str(exc))) from None


@dataclass(frozen=True)
class GanConfig(RunConfig):
    """``geosynth train``: the paper's recipe (Adam (0, 0.9), 1e-4 / 4e-4, hinge, lambda 5).

    ``cap``: generator capacity (width of its first layer); ``d_cap`` the
    discriminator's (default: ``cap``); ``d_scales``: discriminator scales
    (default: 2 below 512 px crops, else 3); ``lambda_fm``: weight of the
    feature-matching loss; ``ema``: decay of an exponential moving average of
    the generator's weights (None: none), which evaluation and synthesis use;
    ``val_every``: every N steps (0: never), the generator (its average with
    ``ema``) on the centre crops of the first ``val_crops`` tiles of
    ``val_split``: the L1 distance to the real images and, with ``unet`` (a
    ``train-unet`` run), the mIoU of the U-Net's segmentation of the fakes.
    ``conditions``: acquisition conditions fed to G
    and D (:mod:`geosynth.ml.data.conditions`; none: the paper's networks);
    ``noise``: width of the OASIS-style noise vector (0: deterministic G).
    The paper's code, where geosynth differs:
    ``d_fake``: ``reuse`` (D's step sees the fake of G's step, made before
    G's update, as pix2pixHD) or ``regenerate`` (a new G forward after G's
    update, as the paper's code); ``flip``: random horizontal flips of the
    training crops (the paper's code: on GeoNRW, not on DFC2020);
    ``image_range``: ``symmetric`` (images in [-1, 1], as SPADE) or ``unit``
    (targets in [0, 1] under the tanh output, as the paper's code);
    ``block_order``: ``geosynth`` or ``authors`` (pad before the norm in every
    ResNet block of G, the paper's code; :mod:`geosynth.ml.networks.layers`);
    ``d_step``: ``joint`` (one D forward on fake and real together, losses
    averaged over D's scales) or ``authors`` (the paper's code: D called on
    fake and real apart, in its order, losses summed over the scales; needs
    ``d_fake: regenerate``). ``generator: diffusion`` (beyond the paper,
    :mod:`geosynth.ml.networks.diffusion`) trains a denoiser instead of a G and a D:
    ``prediction``, ``schedule``, the sampling defaults ``sampler``, ``steps`` and
    ``guidance``, and ``cond_drop``, the share of samples trained without their
    conditioning (for classifier-free guidance); the GAN options do not apply. Every
    switch the paper's code needs, with
    ``spectral_norm: reference``, ``d_cap: 64`` and ``d_scales: 2``: README,
    "Reproducing the paper".
    """

    task: ClassVar[str] = "gan"

    inputs: tuple[str, ...] = ("seg", "dem")
    output: str = "rgb"
    generator: str = "ours"
    cap: int = GeneratorConfig.capacity
    d_cap: int | None = None
    d_scales: int | None = None
    spectral_norm: str = "all"
    dem_norm: str = "none"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    lambda_fm: float = 5.0
    d_fake: str = "reuse"
    d_step: str = "joint"
    block_order: str = "geosynth"
    flip: bool = True
    image_range: str = "symmetric"
    ema: float | None = None
    val_every: int = 0
    val_split: str | None = "test"
    val_crops: int = 8
    unet: str | None = None
    conditions: tuple[str, ...] = ()
    noise: int = 0
    prediction: str = "epsilon"
    schedule: str = "cosine"
    sampler: str = "ddim"
    steps: int = 25
    guidance: float = 0.0
    cond_drop: float = 0.1

    def __post_init__(self):
        super().__post_init__()

        object.__setattr__(self, "conditions", parse_conditions(self.conditions))
        _at_least("noise", self.noise, 0)
        _choice("d_fake", self.d_fake, D_FAKES)
        _choice("d_step", self.d_step, D_STEPS)
        if self.d_step == "authors" and self.d_fake != "regenerate":
            raise UsageError(
                "d_step 'authors' steps D on a fake made after G's update, as the paper's "
                "code does: add d_fake 'regenerate' (--d-fake regenerate)"
            )
        _choice("block_order", self.block_order, BLOCK_ORDERS)
        _choice("image_range", self.image_range, IMAGE_RANGES)
        check_diffusion(self)
        if not (isinstance(self.cond_drop, int | float) and 0 <= self.cond_drop < 1):
            raise UsageError(f"--cond-drop must be in [0, 1), got {self.cond_drop!r}")
        if self.generator == "diffusion":
            if self.noise:
                raise UsageError(
                    "--noise applies to the GANs: the diffusion generator draws its own noise "
                    "(--samples N in synthesize gives N different images)"
                )
            if self.image_range != "symmetric":
                raise UsageError("--image-range unit applies to the GANs (the paper's code)")
            if self.guidance and not self.cond_drop:
                raise UsageError(
                    "--guidance needs --cond-drop > 0: the unconditional prediction it "
                    "subtracts is learnt from the samples trained without their conditioning"
                )
        foreign = [
            "--" + f.name.replace("_", "-")
            for f in fields(self)
            if f.name in (GAN_ONLY if self.generator == "diffusion" else DIFFUSION_ONLY)
            and getattr(self, f.name) != f.default
        ]
        if foreign and self.generator == "diffusion":
            raise UsageError(
                f"{', '.join(foreign)}: options of the GANs' generator and discriminator; the "
                "diffusion generator has neither a discriminator nor their layers"
            )
        if foreign:
            raise UsageError(
                f"{', '.join(foreign)}: options of the diffusion generator (--generator "
                f"diffusion), not of {self.generator!r}"
            )
        if self.ema is not None and not (isinstance(self.ema, float) and 0 < self.ema < 1):
            raise UsageError(f"ema must be a decay in (0, 1), e.g. 0.999, got {self.ema!r}")
        _at_least("val_every", self.val_every, 0)
        _at_least("val_crops", self.val_crops, 1)
        if self.unet and "seg" not in _names(self.inputs, "inputs"):
            raise UsageError("--unet validation scores the fakes against seg, not an input here")
        object.__setattr__(self, "inputs", _names(self.inputs, "inputs"))
        object.__setattr__(self, "betas", _betas(self.betas))
        for name in self.inputs:
            _choice("inputs", name, NETWORK_MODALITIES)
        _choice("output", self.output, IMAGE_OUTPUTS)
        if self.output in self.inputs:
            raise UsageError(
                f"output {self.output} cannot also be an input (inputs {','.join(self.inputs)})"
            )
        _choice("generator", self.generator, GENERATOR_KINDS)
        problem = generator_input_problem(self.generator, self.inputs)
        if problem:
            raise UsageError(problem)
        _choice("spectral_norm", self.spectral_norm, SPECTRAL_MODES)
        _choice("dem_norm", self.dem_norm, DEM_NORMS)
        _at_least("cap", self.cap, 1)
        if self.d_cap is not None:
            _at_least("d_cap", self.d_cap, 1)
        if self.d_scales is not None:
            _at_least("d_scales", self.d_scales, 1)
        _positive("lr_g", self.lr_g)
        _positive("lr_d", self.lr_d)
        if not (math.isfinite(self.lambda_fm) and self.lambda_fm >= 0):
            raise UsageError(f"lambda_fm must be a finite number >= 0, got {self.lambda_fm}")


@dataclass(frozen=True)
class UNetRunConfig(RunConfig):
    """``geosynth train-unet``: the scorer of the paper (Adam (0.9, 0.999), 2e-4, 100 epochs).

    ``input``: the image the U-Net segments (``rgb`` or ``sar``); the target
    is ``seg`` with class 0 (unlabelled) ignored. ``val_split``: the split
    scored after each epoch (mIoU; ``epoch_gap``), its first ``val_tiles`` tiles
    (None: all; ``geosynth evaluate`` scores the whole split); ``val_crop``: their centre crop (default:
    the largest multiple of 16 that fits the tile). ``weight_decay``: as in
    the code published with the paper.

    ``loss``: ``ce`` (softmax cross entropy, class 0 ignored), ``bce`` (binary
    cross entropy on the one-hot map, class 0 included: the paper's code) or
    ``focal`` (``ce`` with the focal term ``(1 - p_t)^focal_gamma``); ``image_range``:
    ``unit`` has the U-Net's first conv see images in [0, 1], as the paper's code (its
    input still [-1, 1]; :class:`~geosynth.ml.networks.configs.UNetConfig`); ``class_weights``:
    ``none``, ``inverse`` or ``median`` frequency, from the ``class_hist`` of the
    training split (:mod:`geosynth.ml.training.seg_losses`). ``extra_store``: a second
    store (e.g. of ``geosynth augment``) whose ``split`` tiles are mixed in;
    ``mix``: the share of every epoch's samples drawn from it.
    """

    task: ClassVar[str] = "unet"

    input: str = "rgb"
    epochs: int = 100
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    base_channels: int = UNetConfig.base_channels
    norm: str = "none"
    image_range: str = "symmetric"
    val_split: str | None = "test"
    val_crop: int | None = None
    val_tiles: int | None = 32
    loss: str = "ce"
    focal_gamma: float = 2.0
    class_weights: str = "none"
    extra_store: str | None = None
    mix: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "betas", _betas(self.betas))
        _choice("input", self.input, IMAGE_OUTPUTS)
        _choice("loss", self.loss, UNET_LOSSES)
        _choice("class_weights", self.class_weights, CLASS_WEIGHTINGS)
        if not (isinstance(self.focal_gamma, int | float) and 0 <= self.focal_gamma < math.inf):
            raise UsageError(f"focal_gamma must be a finite number >= 0, got {self.focal_gamma!r}")
        if not (isinstance(self.mix, int | float) and 0 <= self.mix <= 1):
            raise UsageError(
                f"mix must lie in [0, 1] (the share of samples from --extra-store), got {self.mix!r}"
            )
        _positive("lr", self.lr)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"weight_decay must be >= 0, got {self.weight_decay}")
        _at_least("base_channels", self.base_channels, 1)
        _choice("norm", self.norm, UNET_NORMS)
        _choice("image_range", self.image_range, IMAGE_RANGES)
        if self.val_crop is not None:
            _at_least("val_crop", self.val_crop, 16)
        if self.val_tiles is not None:
            _at_least("val_tiles", self.val_tiles, 1)


CONFIG_CLASSES: dict[str, type[RunConfig]] = {"gan": GanConfig, "unet": UNetRunConfig}


# --------------------------------------------------------------------------- resolving


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file (``yaml.safe_load``); errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"config file {path} is not readable YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of options, not {type(data)}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve_config(
    cls: type[C],
    cli: Mapping[str, Any],
    yaml_path: str | os.PathLike | None = None,
    base: Mapping[str, Any] | None = None,
) -> C:
    """The config from defaults (or ``base``), a YAML file and the explicit command-line options.

    Precedence (first wins): 1. ``cli``; 2. the YAML file; 3. ``base`` (a
    resumed run's saved config) or the dataclass defaults. With ``base``, only
    :data:`RESUMABLE_KEYS` may differ from it.
    """
    from_yaml = read_yaml(yaml_path) if yaml_path is not None else {}
    source = "" if yaml_path is None else f"options (command line and {yaml_path})"
    merged: dict[str, Any] = dict(base or {})
    merged.update(from_yaml)
    merged.update(cli)
    config = cls.from_dict(merged, source=source)
    if base is not None:
        saved = cls.from_dict(base, source="the run's config.yaml")
        changed = [
            f.name
            for f in fields(cls)
            if getattr(saved, f.name) != getattr(config, f.name) and f.name not in RESUMABLE_KEYS
        ]
        if changed:
            raise UsageError(
                f"cannot change {', '.join(changed)} when resuming {saved.out}; only "
                f"{', '.join(sorted(RESUMABLE_KEYS))} may change (start a new --out instead)"
            )
    return config


def absolute_store(store: str, relative_to: str | os.PathLike | None = None) -> str:
    """A local store path as an absolute path; URLs (``s3://``, ``file://``, ...) as given.

    A relative path is taken relative to ``relative_to`` (a run folder, for a
    ``config.yaml`` that says ``store: ../data.zarr``) when it exists there,
    else to the working directory.
    """
    from urllib.parse import urlsplit

    if not store or len(urlsplit(store).scheme) > 1 or Path(store).is_absolute():
        return store
    if relative_to is not None and (Path(relative_to) / store).exists():
        return str((Path(relative_to) / store).resolve())
    return str(Path(store).resolve())


def default_of(cls: type[RunConfig], name: str) -> Any:
    """The default of one option, for ``--help`` texts."""
    for f in fields(cls):
        if f.name == name:
            return None if f.default is MISSING else f.default
    raise KeyError(name)


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> RunConfig:
    """A :class:`GanConfig` or :class:`UNetRunConfig` by the ``task`` key of ``data``."""
    task = data.get("task")
    if task not in CONFIG_CLASSES:
        raise UsageError(f"{source}: task must be one of {', '.join(CONFIG_CLASSES)}, not {task!r}")
    return CONFIG_CLASSES[task].from_dict(data, source=source)


# --------------------------------------------------------------------------- checks


def _where(source: str, message: str) -> str:
    return f"{source}: {message}" if source else message


def _choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a finite number > 0, got {value!r}")


def _names(value: Any, option: str) -> tuple[str, ...]:
    """``"seg,dem"`` or ``["seg", "dem"]`` -> ``("seg", "dem")``, distinct and not empty."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(v).strip() for v in items if str(v).strip())
    if not names or len(set(names)) != len(names):
        raise UsageError(f"{option} must be distinct comma-separated names, got {value!r}")
    return names


def _betas(value: Any) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UsageError(f"betas must be two numbers, got {value!r}") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise UsageError(f"betas must lie in [0, 1), got {value!r}")
    return b1, b2


def _coerce(cls: type[RunConfig], key: str, value: Any, source: str) -> Any:
    """YAML's ints where floats are expected (``lr: 1``) and numbers written as text (``1e-4``)."""
    annotation = next(str(f.type) for f in fields(cls) if f.name == key)
    if (
        annotation in ("float", "float | None")
        and isinstance(value, str | int)
        and not isinstance(value, bool)
    ):
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"{source}: {key} must be a number, got {value!r}") from None
    return value
