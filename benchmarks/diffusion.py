"""The diffusion generator against the GAN (``ours``) it is an alternative to: training
speed, sampling time and peak memory, side by side in one run.

Both generators take labels and the DEM (``--inputs seg,dem``) and make RGB, at the
same capacity; each contender runs in its own process (its own thread pool and
allocator), and the contenders take turns round by round so that other jobs on the
machine slow all alike; the median round is reported, and the ratio to the GAN.

1. training: images/s of one optimisation step (:meth:`GanTask.train_step`, G + D,
   against :meth:`DiffusionTask.train_step`, the denoiser) at the same crop and batch;
2. sampling one crop: one GAN forward against the diffusion generator's ``--steps``
   (25) DDIM steps on the same crop (256 px);
3. a whole tile (1000 x 1000 px) as ``geosynth synthesize`` makes it
   (:func:`geosynth.ml.synthesis.synthesize.synthesize_array`: overlapping windows of
   the crop, blended; the diffusion generator's windows cut from one noise field);
4. peak memory of each contender: the process's resident set (``ru_maxrss``) over the
   one it had before building the networks (CPU), ``torch.cuda.max_memory_allocated``
   (CUDA).

There is no speed target: the diffusion generator is expected to be slower to sample by
about its step count; the benchmark says by how much, so that users can plan.

CPU (the default): capacity 16, 128 px crops at batch 2 for training, 256 px windows
for sampling. CUDA (``--device cuda``): capacity 64, 256 px crops at batch 8.

Run: python benchmarks/diffusion.py [--device cuda] [--rounds 3] [--tile-rounds 1] [--steps 25]
     [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate
from train_step import make_store  # the GAN step benchmark's store (benchmarks/ is on sys.path)

from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.distributed import DistContext
from geosynth.ml.training.train import task_class

SETTINGS = {
    "cpu": dict(cap=16, crop=128, batch=2, window=256),
    "cuda": dict(cap=64, crop=256, batch=8, window=256),
}
TILE = 1000  # px, a GeoNRW tile
CONTENDERS = ("gan (ours)", "diffusion")
WORK = ("train", "crop", "tile")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _contender(conn, name: str, store: str, out: str, device: str, s: dict, steps: int,
               threads: int | None) -> None:  # fmt: skip
    """One generator in its own process: answers each ``work`` name with its seconds, and
    ``None`` with its peak memory in MB."""
    from geosynth.ml.synthesis.synthesize import synthesize_array
    from geosynth.store import open_store

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    before = _rss_mb()
    kind = "diffusion" if name == "diffusion" else "ours"
    cfg = GanConfig(store=store, out=out, generator=kind, inputs=("seg", "dem"), cap=s["cap"],
                    crop=s["crop"], batch_size=s["batch"], workers=0, tensorboard=False,
                    samples=0, device=device,
                    **({"steps": steps} if kind == "diffusion" else {}))  # fmt: skip
    torch.manual_seed(0)
    task = task_class(cfg)(cfg, DistContext(device=dev))
    batch = default_collate([task.dataset[i % len(task.dataset)] for i in range(s["batch"])])
    opened = open_store(store)
    arrays = {"seg": opened.read("seg", 0), "dem": opened.read("dem", 0)}
    g = task.g_net.eval()
    w = s["window"]
    labels, raster, _ = task._inputs(default_collate([task.dataset[0]]))
    crop_in = [torch.nn.functional.interpolate(t, size=(w, w)) for t in (labels, raster)]

    def run(work: str) -> None:
        if work == "train":
            task.train_step(batch)
        elif work == "crop":
            with torch.no_grad():
                g(*crop_in)
        else:
            synthesize_array(g, task.config, arrays, opened.num_classes, window=w,
                             device=dev, seed=0)  # fmt: skip

    for work in WORK:  # warm-up: kernels, allocator, oneDNN primitives
        run(work)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    conn.send("ready")
    while (work := conn.recv()) is not None:
        _sync(dev)
        start = time.perf_counter()
        run(work)
        _sync(dev)
        conn.send(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else _rss_mb() - before
    conn.send(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tile-rounds", type=int, default=1, help="rounds of the whole tile")
    parser.add_argument("--steps", type=int, default=25, help="diffusion sampling steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    s = SETTINGS[args.device]
    print(f"{args.device}: capacity {s['cap']}, training {s['crop']} px crops at batch "
          f"{s['batch']}, sampling {s['window']} px windows, {args.steps} DDIM steps, "
          f"{args.rounds} rounds ({args.tile_rounds} of the tile); torch {torch.__version__}")  # fmt: skip
    mp = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        store = str(make_store(Path(tmp) / "bench.zarr", TILE))
        pipes, procs = {}, []
        try:
            for name in CONTENDERS:
                parent, child = mp.Pipe()
                proc = mp.Process(target=_contender, args=(child, name, store,
                                  f"{tmp}/{len(procs)}", args.device, s, args.steps,
                                  args.threads))  # fmt: skip
                proc.start()
                pipes[name], procs = parent, [*procs, proc]
                assert parent.recv() == "ready"
            times = {(n, w): [] for n in CONTENDERS for w in WORK}
            for r in range(args.rounds):
                for work in WORK if r < args.tile_rounds else WORK[:2]:
                    order = CONTENDERS[r % 2 :] + CONTENDERS[: r % 2]
                    for name in order:
                        pipes[name].send(work)
                        times[name, work].append(pipes[name].recv())
            peaks = {}
            for name in CONTENDERS:
                pipes[name].send(None)
                peaks[name] = pipes[name].recv()
        finally:
            for pipe in pipes.values():
                with contextlib.suppress(OSError):
                    pipe.close()
            for proc in procs:
                proc.join(timeout=60)
    med = {key: statistics.median(v) for key, v in times.items()}
    gan, diff = CONTENDERS
    rate = {n: s["batch"] / med[n, "train"] for n in CONTENDERS}
    print(f"\n  {'':<34} {gan:>12} {diff:>12}   diffusion / gan")
    print(f"  {'training (images/s)':<34} {rate[gan]:12.2f} {rate[diff]:12.2f}   "
          f"{rate[diff] / rate[gan]:.2f}x")  # fmt: skip
    for work, label in (
        ("crop", f"one {s['window']} px crop (s)"),
        ("tile", f"one {TILE} px tile (s)"),
    ):
        print(f"  {label:<34} {med[gan, work]:12.3f} {med[diff, work]:12.3f}   "
              f"{med[diff, work] / med[gan, work]:.1f}x")  # fmt: skip
    unit = "MB allocated" if args.device == "cuda" else "MB RSS over the start"
    print(f"  {'peak memory (' + unit + ')':<34} {peaks[gan]:12.0f} {peaks[diff]:12.0f}   "
          f"{peaks[diff] / max(peaks[gan], 1e-9):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
