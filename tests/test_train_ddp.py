"""Distributed training for real: two gloo processes on the CPU, spawned and through torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from geosynth.ml.training.checkpoint import load_checkpoint
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.distributed import DistContext, free_port

WORLD = 2


def _worker(rank: int, port: int, config: dict, out: str) -> None:
    """One rank of a torchrun-style run: the environment torchrun would set, then train."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
    )  # fmt: skip
    torch.set_num_threads(1)
    from geosynth.ml.training.train import train_gan

    result = train_gan(GanConfig.from_dict(config))
    states = {name: dict(m.named_parameters()) for name, m in result.models.items()}
    torch.save({n: {k: v.detach() for k, v in s.items()} for n, s in states.items()},
               Path(out) / f"rank{rank}.pt")  # fmt: skip


@pytest.fixture(scope="module")
def store_path(tiny_store):
    return tiny_store


def _config(store_path, out, **kw) -> GanConfig:
    base = dict(cap=4, crop=32, batch_size=4, epochs=2, workers=0, tensorboard=False, epoch_gap=0,
                samples=1, device="cpu")  # fmt: skip
    return GanConfig(store=str(store_path), out=str(out), **{**base, **kw})


PAPERS_STEP = dict(d_step="authors", d_fake="regenerate", block_order="authors",
                   spectral_norm="reference")  # fmt: skip


@pytest.mark.parametrize(
    "step",
    [{}, PAPERS_STEP, {"generator": "diffusion"}],
    ids=["default", "papers-step", "diffusion"],
)
def test_two_gloo_ranks_keep_identical_weights_that_move(store_path, tmp_path, step):
    """Also the paper's code's step: D (a DDP module) called on real and fake apart before
    one backward pass; and the diffusion generator's denoising step."""
    cfg = _config(store_path, tmp_path / "run", **step)
    mp.spawn(_worker, args=(free_port(), cfg.to_dict(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    # the start: the same seed builds the same networks in this process
    from geosynth.ml.training.train import task_class

    torch.manual_seed(cfg.seed)
    start = task_class(cfg)(cfg, DistContext())
    initial = {"generator": dict(start.g_net.named_parameters())}
    if cfg.generator != "diffusion":
        initial["discriminator"] = dict(start.d_net.named_parameters())
    assert set(ranks[0]) == set(initial)
    for name in initial:
        a, b = ranks[0][name], ranks[1][name]
        assert a.keys() == b.keys() == initial[name].keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs across ranks"
        moved = [k for k in a if not torch.equal(a[k], initial[name][k].detach())]
        # the denoiser's zero-initialised convolutions pass gradients on from their second step
        least = len(a) // 5 if cfg.generator == "diffusion" else len(a) // 2
        assert len(moved) > least, f"{name}: only {len(moved)} of {len(a)} tensors trained"
    # 6 tiles, 3 per rank, 2 per rank and step: one step per epoch; rank 0 alone wrote
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["batch_size"] == 4
    saved = ckpt["models"]["generator"]["state"]
    assert all(torch.equal(saved[k], v) for k, v in ranks[1]["generator"].items())
    assert len(list((tmp_path / "run" / "samples").glob("*.png"))) == 2


@pytest.mark.slow
def test_nproc_launches_torchrun(store_path, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "geosynth", "-q", "train", "--nproc", "2",
           "--store", str(store_path), "--out", str(out), "--cap", "4", "--crop", "32",
           "--batch-size", "4", "--epochs", "1", "--workers", "0", "--no-tensorboard",
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch.distributed.run" in done.stderr and "--nproc_per_node=2" in done.stderr
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["batch_size"] == 4
    # a batch that does not split across the processes is refused before launching
    bad = subprocess.run([*cmd[:-2], "--batch-size", "3", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert bad.returncode == 2 and "does not split evenly across 2 processes" in bad.stderr
