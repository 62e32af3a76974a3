"""Distributed training plumbing: process group, device, DDP wrapping, samplers, launching.

A run is distributed when ``WORLD_SIZE`` > 1 in the environment, as
``torchrun`` sets it (``torchrun --nproc_per_node=N -m geosynth train ...``;
``geosynth train --nproc N`` launches exactly that). Backend and
normalisation follow the device:

- CUDA: ``nccl``, one GPU per process (``LOCAL_RANK``), BatchNorm in the
  generator converted to ``SyncBatchNorm``;
- CPU: ``gloo`` and plain BatchNorm (``SyncBatchNorm`` has no CPU kernel), so
  each process normalises with its own share of the batch.

Every network is its own ``DistributedDataParallel`` module; the global batch
is split evenly across the ranks; only rank 0 logs and writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, Sampler

from geosynth.errors import UsageError
from geosynth.names import DEVICES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: a single process without a process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes."""
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UsageError(f"environment variable {name} must be an integer, got {value!r}") from None


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (refused when torch sees no GPU)."""
    if name not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def init_distributed(device: str = "auto") -> DistContext:
    """Pick the device and, under torchrun (``WORLD_SIZE`` > 1), join the process group.

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; each
    process takes the GPU of its ``LOCAL_RANK``.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    use_cuda = resolve_device(device).type == "cuda"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    backend = None
    if world > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, rank=rank, world_size=world)
        log.debug("rank %d of %d joined the %s process group", rank, world, backend)
    return DistContext(rank, local_rank, world, dev, backend)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_context(device: str = "auto") -> Iterator[DistContext]:
    """:func:`init_distributed` ... :func:`teardown`, also on errors."""
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        teardown(ctx)


def per_rank_batch(global_batch: int, ctx: DistContext) -> int:
    """The share of the global batch one process trains on; it must divide evenly."""
    if global_batch % ctx.world_size:
        raise UsageError(
            f"--batch-size {global_batch} does not split evenly across {ctx.world_size} processes"
        )
    return global_batch // ctx.world_size


def prepare(module: nn.Module, ctx: DistContext, *, sync_bn: bool = False) -> nn.Module:
    """Move to the device; ``SyncBatchNorm`` when ``sync_bn`` in a distributed CUDA run."""
    if sync_bn and ctx.distributed and ctx.cuda:
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module.to(ctx.device)


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """``DistributedDataParallel`` in a distributed run, else the module itself."""
    if not ctx.distributed:
        return module
    device_ids = [ctx.device.index] if ctx.cuda else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain network inside DDP and ``torch.compile`` wrappers (for state dicts)."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def make_sampler(
    dataset, ctx: DistContext, *, shuffle: bool, seed: int, drop_last: bool
) -> DistributedSampler:
    """This rank's share of every epoch; call ``set_epoch`` before each epoch."""
    return DistributedSampler(
        dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )


class SkipSampler(Sampler[int]):
    """A sampler without its first ``skip`` indices: resuming in the middle of an epoch."""

    def __init__(self, sampler: Sampler[int], skip: int = 0):
        self.sampler = sampler
        self.skip = int(skip)

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.sampler):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every sample evaluated once over all ranks, no padding."""

    def __init__(self, length: int, ctx: DistContext):
        self.indices = list(range(ctx.rank, length, ctx.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def all_reduce(tensor: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """Sum (or mean) ``tensor`` over the ranks, in place; unchanged in a single process."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        if op == "mean":
            tensor /= ctx.world_size
    return tensor


# --------------------------------------------------------------------------- launching


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for ``MASTER_PORT``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strip_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (e.g. ``--nproc 2``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m geosynth ARGV``."""
    if nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {nproc}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "geosynth",
        *argv,
    ]
