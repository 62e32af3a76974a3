"""Run folders and checkpoints: atomic saves, safe loads, exact resumption.

A run folder (``--out runs/NAME``)::

    config.yaml                  the resolved run configuration (written once, at the start)
    checkpoints/last.pt          the newest checkpoint (epoch ends, step checkpoints, the stop)
    checkpoints/step_00001000.pt every ``checkpoint_every`` steps (the newest ``keep_checkpoints``)
    samples/epoch_0001.png       a sample grid at each epoch end
    tensorboard/                 TensorBoard event files (scalars and image grids)
    log.jsonl                    one JSON object per logged step and per epoch

A checkpoint is a ``torch.save`` of a dict of plain values and tensors, so
that it loads with ``torch.load(path, weights_only=True)`` (no pickled code):

=================  =============================================================
key                value
=================  =============================================================
``format``         ``"geosynth-train/1"``
``task``           ``"gan"`` or ``"unet"``
``step``           optimisation steps done
``epoch``          the epoch the run is in (0-based)
``epoch_step``     steps done within that epoch (== steps per epoch: it is over)
``config``         the resolved run configuration (``GanConfig.to_dict()`` ...)
``models``         ``{name: {"config": network config dict, "state": state dict}}``:
                   ``generator`` and ``discriminator``, or ``unet``; unwrapped
                   (no DDP / compile prefixes), BatchNorm keys as in a plain net
``optimizers``     ``{name: optimizer state dict}`` (same names as ``models``)
``rng``            ``{"python", "numpy", "torch", "cuda"}`` generator states
``metrics``        the last logged values (losses, validation mIoU, ...)
=================  =============================================================

Writing is atomic (a temporary file renamed into place), so a killed run
leaves the previous checkpoint intact. An existing run folder is resumed
(``--resume``) or refused, never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from geosynth.errors import DataError, UsageError
from geosynth.io import atomic_path, write_text
from geosynth.ml.networks.configs import GeneratorConfig, UNetConfig
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.unet import build_unet
from geosynth.ml.training.config import GanConfig, RunConfig, UNetRunConfig, config_from_dict

log = logging.getLogger(__name__)

FORMAT = "geosynth-train/1"
LAST = "last.pt"


# --------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA generator states as plain values and tensors."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where devices match)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- files


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` of ``payload`` (with ``format``) to ``path``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint loaded with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or disallowed pickled objects
        raise DataError(f"checkpoint {path} cannot be loaded safely: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise DataError(f"{path} is not a geosynth training checkpoint ({FORMAT}); found {found!r}")
    return payload


def find_checkpoint(run_or_checkpoint: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/last.pt``."""
    path = Path(run_or_checkpoint)
    if path.is_dir():
        last = path / "checkpoints" / LAST
        if not last.is_file():
            raise DataError(f"run folder {path} has no checkpoint ({last} is missing)")
        return last
    if not path.exists():
        raise DataError(f"{path} is neither a run folder nor a checkpoint")
    return path


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` atomically (hard link, else a copy)."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)


# --------------------------------------------------------------------------- run folder


@dataclass
class RunFolder:
    """The files of one training run; see the module docstring for the layout."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def log_path(self) -> Path:
        return self.root / "log.jsonl"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}.pt"

    def is_started(self) -> bool:
        """A run lives here (its config or a checkpoint exists)."""
        return self.config_path.exists() or self.last.exists()

    def has_checkpoint(self) -> bool:
        """Whether any checkpoint (``last.pt`` or ``step_*.pt``) was saved here."""
        return self.last.exists() or any(self.checkpoints.glob("step_*.pt"))

    def check_start(self, resume: bool) -> Path | None:
        """The checkpoint to resume from (None: start at step 0); refuse to overwrite a run."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--out {self.root} exists and is not a folder")
        if not resume:
            if self.is_started() and not self.has_checkpoint():
                # interrupted before its first checkpoint (a killed `geosynth demo`, say): there
                # is nothing to resume and nothing to lose, so a rerun of the command starts over
                log.warning("%s: a run stopped before its first checkpoint; starting it again",
                            self.root)  # fmt: skip
                return None  # the run's log is trimmed to step 0 as it starts
            if self.is_started() or (self.root.is_dir() and any(self.root.iterdir())):
                raise UsageError(
                    f"run folder {self.root} already exists and is not empty; pass --resume to "
                    "continue it or choose another --out"
                )
            return None
        if not self.is_started():
            raise UsageError(f"--resume: {self.root} holds no run (no config.yaml) to resume")
        if not self.last.exists():
            log.warning("%s has no checkpoint yet; starting it again from step 0", self.root)
            return None
        return self.last

    def saved_config(self) -> dict[str, Any]:
        """The ``config.yaml`` of a started run, as plain values."""
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise DataError(f"{self.config_path} is not readable: {exc}") from None
        if not isinstance(data, dict):
            raise DataError(f"{self.config_path} does not hold a mapping")
        return data

    def write_config(self, config: RunConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.config_path) as tmp:
            tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")

    def save(self, payload: dict[str, Any], *, step_file: bool, keep: int) -> Path:
        """Write a checkpoint (as ``step_N.pt`` too when ``step_file``); prune old step files."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        if not step_file:
            return save_checkpoint(self.last, payload)
        path = save_checkpoint(self.step_checkpoint(payload["step"]), payload)
        _link_or_copy(path, self.last)
        for old in sorted(self.checkpoints.glob("step_*.pt"))[:-keep]:
            old.unlink()
        return path

    def trim_log(self, step: int) -> None:
        """Drop the records of ``log.jsonl`` after ``step``, the resumed checkpoint's: the
        resumed run logs those steps again (and a line cut short by a kill)."""
        if not self.log_path.exists():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            at = record.get("step", 0) if isinstance(record, dict) else None
            if isinstance(at, int | float) and at <= step:  # foreign lines are dropped too
                kept.append(line + "\n")
        write_text(self.log_path, "".join(kept))

    def append_log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------- loading networks


def _checkpoint_for(run_or_checkpoint, task: str, map_location) -> tuple[dict, RunConfig, Path]:
    path = find_checkpoint(run_or_checkpoint)
    payload = load_checkpoint(path, map_location=map_location)
    if payload.get("task") != task:
        command = "train-unet" if task == "unet" else "train"
        raise UsageError(  # the wrong run given to an option: a usage error (exit 2)
            f"{path} holds a {payload.get('task')!r} run, not a {task!r} run "
            f"(give a run of geosynth {command})"
        )
    return payload, config_from_dict(payload["config"], source=str(path)), path


def _load_state(module: nn.Module, state: dict, path: Path, name: str) -> nn.Module:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{path}: the {name} weights do not fit its config: {exc}") from None
    return module.eval()


def export_weights(
    run_or_checkpoint: str | os.PathLike, out: str | os.PathLike, *, ema: bool = True
) -> tuple[Path, int, int]:
    """A run's networks without optimizer state or RNG (``weights_only``), for sharing:
    the generator (its moving average with ``--ema`` unless ``ema=False``) or the U-Net.
    Returns ``(path, bytes of the checkpoint, bytes written)``."""
    path = find_checkpoint(run_or_checkpoint)
    payload = load_checkpoint(path)
    models = payload["models"]
    if payload.get("task") == "gan":
        name = "generator_ema" if ema and "generator_ema" in models else "generator"
        models = {"generator": models[name]}
    slim = {
        "task": payload["task"], "step": payload["step"], "epoch": payload["epoch"],
        "epoch_step": payload["epoch_step"], "config": payload["config"], "models": models,
        "optimizers": {}, "rng": {}, "metrics": payload.get("metrics", {}),
        "weights_only": {"from": str(path), "step": payload["step"]},
    }  # fmt: skip
    written = save_checkpoint(out, slim)
    return written, path.stat().st_size, written.stat().st_size


def load_generator(
    run_or_checkpoint: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    ema: bool = True,
) -> tuple[nn.Module, GanConfig]:
    """The trained generator (eval mode) of a run folder or checkpoint, and the run's config.

    The generator's own :class:`~geosynth.ml.networks.generators.GeneratorConfig` is
    ``generator.config``. A run trained with ``--ema`` gives its moving average of
    the weights (``generator_ema``) unless ``ema=False``.
    """

    payload, config, path = _checkpoint_for(run_or_checkpoint, "gan", map_location)
    use_ema = ema and "generator_ema" in payload["models"]
    entry = payload["models"]["generator_ema" if use_ema else "generator"]
    if use_ema:
        log.info("%s: the generator's exponential moving average (--ema)", path)
    generator = build_generator(GeneratorConfig.from_dict(entry["config"]))
    generator = _load_state(generator, entry["state"], path, "generator")
    return generator.to(map_location), config


def load_unet(
    run_or_checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, UNetRunConfig]:
    """The trained U-Net scorer (eval mode) of a run folder or checkpoint, and the run's config."""

    payload, config, path = _checkpoint_for(run_or_checkpoint, "unet", map_location)
    entry = payload["models"]["unet"]
    unet = _load_state(
        build_unet(UNetConfig.from_dict(entry["config"])), entry["state"], path, "unet"
    )
    return unet.to(map_location), config
