"""Images/s of one full G + D training step of ``ours``: our step against the paper's code's way.

CPU (the default): capacity 16, 128 x 128 crops, batch 2, side by side in
one run, each contender in its own process (its own thread pool and
allocator), interleaved in rounds so that other jobs on the
machine slow all alike; the median round of each is reported.

(a) ours: :class:`geosynth.ml.training.train.GanTask.train_step`, i.e. one G forward,
    one D forward on ``cat([fake, real])`` serving the G and the D loss (two
    backward passes, each restricted to its network's parameters), the label
    map downsampled once per resolution, SPADE's gamma and beta as one
    convolution, spectral norm scaling by 1 / sigma, fused Adam; in bf16 autocast
    (the CPU default), in fp32 (``--no-amp``), with ``--channels-last`` and, with
    ``--compile``, ``torch.compile``d;
(b) the code published with the paper, rebuilt on our networks: the label
    map resized with ``F.interpolate`` inside every SPADE layer, SPADE's
    gamma and beta as two convolutions (ours: one, weights concatenated),
    torch's spectral norm dividing by sigma (ours: multiplying by 1 / sigma), contiguous
    NCHW, fp32, its spectral-norm placement, separate D forwards for fake and
    real (four per step, plus a second G forward for the D step), D's weight
    gradients computed in the G step, the for-loop Adam.

Target: (a) in its default at >= 2x (b).

Then the DataLoader (256 x 256 crops of seg + dem + rgb, batch 8): today's
float samples (one-hot labels, scaled RGB) through one worker against the
compact samples (uint8 ids and RGB, expanded in the training process by
:func:`geosynth.ml.data.tensors.expand_compact`, on one torch thread as in
training) through 0, 1 and 2 workers.
Target: 2 workers compact >= 3x 1 worker float.

``--curves N`` trains N steps in bf16 and in fp32 from the same seed and
prints the mean losses of the last quarter; the curves go to ``--curves-png``.

CUDA (``--device cuda``): capacity 64, 256 x 256, batch 8; our step in bf16
autocast against fp32, and the ratio.

Run: python benchmarks/train_step.py [--device cuda] [--rounds 5] [--steps 3] [--threads N]
     [--compile] [--curves 200]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, default_collate

import geosynth.ml.networks.generators as generators
import geosynth.ml.networks.layers as layers
from geosynth.catalog import load_catalog
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.data.tensors import expand_compact
from geosynth.ml.networks.configs import DiscriminatorConfig, GeneratorConfig
from geosynth.ml.networks.discriminator import build_discriminator, generator_condition
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.layers import SPADE, LabelPyramid
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.distributed import DistContext
from geosynth.ml.training.train import GanTask
from geosynth.ml.training.trainer import cpu_bf16_fast
from geosynth.store import TileData, TilePlan, create_store, modality

PAPER = "paper's code"
TARGET_RATIO = 2.0  # ours against the paper's code, CPU
LOADER_TARGET = 3.0  # 2 workers, compact samples, against 1 worker with today's float samples
LOADER_TILE, LOADER_CROP, LOADER_BATCH = 512, 256, 8
QUIET_S = 1.0  # seconds between two loaders' turns
SETTINGS = {
    "cpu": dict(cap=16, crop=128, batch=2),
    "cuda": dict(cap=64, crop=256, batch=8),
}


def make_store(path: Path, size: int, tiles: int = 2) -> Path:
    """A few tiles of blocky classes, a DEM ramp and an RGB image."""
    classes = load_catalog().classes
    plans = [TilePlan(f"{356 + i}_5645", "demo", "train") for i in range(tiles)]
    store = create_store(
        path, plans, tile_shape=(size, size),
        modalities=[modality("rgb"), modality("dem"), modality("seg")],
        dataset="bench", crs="EPSG:25832", classes=classes,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for plan in plans:
        blocks = rng.integers(1, 11, (-(-size // 16), -(-size // 16)))  # any size: cut below
        seg = np.kron(blocks, np.ones((16, 16), dtype=np.int64))[:size, :size].astype(np.uint8)
        rgb = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
        dem = (100 + np.linspace(0, 30, size, dtype=np.float32))[None, None, :].repeat(size, 1)
        store.write_tile(plan.tile_id, TileData(rgb=rgb, dem=dem, seg=seg))
    return path


class UncachedLabels(LabelPyramid):
    """The paper's code: the full label map resized again in every SPADE layer."""

    def at(self, size):
        return F.interpolate(self.labels, size=(int(size[0]), int(size[1])), mode="nearest")


@contextlib.contextmanager
def paper_spade_layers():
    """The paper's code: labels resized in every SPADE layer, gamma and beta as two convs."""
    original = generators.LabelPyramid
    generators.LabelPyramid = UncachedLabels
    SPADE.fused = False
    try:
        yield
    finally:
        generators.LabelPyramid = original
        SPADE.fused = True


class DividingSpectralNorm(layers.SpectralNorm):
    """torch's ``spectral_norm`` as the paper's code uses it: ``W / sigma`` (ours: ``W * (1 / sigma)``)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        matrix = weight.flatten(1)
        if self.training:
            self._power_method(matrix, self.n_power_iterations)
        return weight / torch.vdot(self._u.clone(), torch.mv(matrix, self._v.clone()))


@contextlib.contextmanager
def torch_spectral_norm():
    original = layers.SpectralNorm
    layers.SpectralNorm = DividingSpectralNorm
    try:
        yield
    finally:
        layers.SpectralNorm = original


class PaperStep:
    """One G step and one D step the way ``trainer.py`` of the code published with the paper does."""

    def __init__(self, g_config: GeneratorConfig, d_config: DiscriminatorConfig, lam: float):
        with torch_spectral_norm():
            self.g = build_generator(replace(g_config, spectral_norm="reference"))
            self.d = build_discriminator(replace(d_config, spectral_norm="reference"))
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=1e-4, betas=(0.0, 0.9))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=4e-4, betas=(0.0, 0.9))
        self.lam = lam

    def __call__(self, labels, raster, real) -> None:
        cond = generator_condition(labels, raster)
        with paper_spade_layers():
            # G step: D forwards on fake and on real, separately; D's gradients computed too
            self.opt_g.zero_grad()
            fake = self.g(labels, raster)
            out_fake = self.d(cond, fake)
            loss = sum(-f.mean() for f in out_fake.final)
            out_real = self.d(cond, real)
            feats = zip(out_fake.features, out_real.features, strict=True)
            loss = loss + self.lam * sum(
                F.l1_loss(a, b) for fa, fb in feats for a, b in zip(fa, fb, strict=True)
            )
            loss.backward()
            self.opt_g.step()
            # D step: a new G forward (graph built, then detached), D on real and on fake
            self.opt_d.zero_grad()
            fake = self.g(labels, raster).detach()
            real_final = self.d(cond, real).final
            fake_final = self.d(cond, fake).final
            loss = sum(
                F.relu(1 - r).mean() + F.relu(1 + f).mean()
                for r, f in zip(real_final, fake_final, strict=True)
            )
            loss.backward()
            self.opt_d.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_s(step, batch: int, steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def interleaved(contenders: dict, batch: int, rounds: int, steps: int, device) -> dict:
    """``(median, best)`` images/s of each contender over ``rounds`` rounds in rotating order.

    The best round is the one least disturbed by other jobs on the machine.
    """
    for step in contenders.values():  # warm-up: kernels, allocator, oneDNN primitives
        step()
        step()
    results = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(images_per_s(contenders[name], batch, steps, device))
    return {name: (statistics.median(v), max(v)) for name, v in results.items()}


def print_rates(rates: dict, base: str) -> None:
    med0, best0 = rates[base]
    print(f"  {'':<22} {'median':>8} {'best':>8}   (images/s; ratios to {base})")
    for name, (med, best) in rates.items():
        print(f"  {name:<22} {med:8.2f} {best:8.2f}   {med / med0:5.2f}x {best / best0:5.2f}x")


def our_task(store: Path, out: Path, device: str, s: dict, **options) -> tuple[GanTask, dict]:
    cfg = GanConfig(
        store=str(store), out=str(out), cap=s["cap"], crop=s["crop"], batch_size=s["batch"],
        workers=0, tensorboard=False, samples=0, device=device, **options,
    )  # fmt: skip
    ctx = DistContext(device=torch.device(device))
    torch.manual_seed(0)
    task = GanTask(cfg, ctx)
    batch = default_collate([task.dataset[i % len(task.dataset)] for i in range(s["batch"])])
    return task, batch


CPU_CONTENDERS = {  # name: GanConfig options of our step (None: the paper's code)
    PAPER: None,
    "ours (bf16, default)": {},
    "ours --no-amp (fp32)": dict(amp=False),
    "ours --channels-last": dict(channels_last=True),
}


def _cpu_contender(conn, name: str, options, store: Path, out: Path, threads) -> None:
    """One contender in its own process (its own thread pool and allocator, as in training:
    one model per process); runs ``steps`` steps whenever the parent sends a number and
    answers with the images/s."""
    if threads:
        torch.set_num_threads(threads)
    s = SETTINGS["cpu"]
    if options is None:
        task, batch = our_task(store, out, "cpu", s)  # for its inputs only
        paper = PaperStep(task.g_config, task.d_config, lam=5.0)
        labels, raster, real = task._inputs(batch)

        def step():
            paper(labels, raster, real)
    else:
        task, batch = our_task(store, out, "cpu", s, **options)

        def step():
            task.train_step(batch)

    start = time.perf_counter()
    step()  # warm-up: kernels, allocator, oneDNN primitives (and compilation)
    first = time.perf_counter() - start
    step()
    conn.send(first)
    while steps := conn.recv():
        conn.send(images_per_s(step, s["batch"], steps, torch.device("cpu")))


def take_turns(pipes: dict, rounds: int, work: int, pause: float = 0.0) -> dict[str, list]:
    """Each round, every contender process in turn (the order rotating from round to round)
    does ``work`` and answers with a rate; ``pause`` seconds after each turn."""
    results = {name: [] for name in pipes}
    names = list(pipes)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            pipes[name].send(work)
            results[name].append(pipes[name].recv())
            time.sleep(pause)
    return results


def stop_contenders(pipes: dict, procs: list) -> None:
    """Tell every contender to stop (a 0) and wait for it."""
    for pipe in pipes.values():
        with contextlib.suppress(OSError):
            pipe.send(0)
    for proc in procs:
        proc.join(timeout=60)


def run_cpu(args, store: Path, tmp: Path) -> None:
    s = SETTINGS["cpu"]
    contenders = dict(CPU_CONTENDERS)
    if args.compile:
        contenders["ours --compile"] = dict(compile=True)
    mp = multiprocessing.get_context("spawn")
    pipes, procs = {}, []
    try:
        for i, (name, options) in enumerate(contenders.items()):
            parent, child = mp.Pipe()
            proc = mp.Process(
                target=_cpu_contender,
                args=(child, name, options, store, tmp / f"run{i}", args.threads),
            )
            proc.start()
            procs.append(proc)
            pipes[name] = parent
            first = parent.recv()  # one at a time: start-up does not overlap the others
            if name == "ours --compile":
                print(f"  torch.compile: first step (compilation) {first:.0f} s")
        results = take_turns(pipes, args.rounds, args.steps)
    finally:
        stop_contenders(pipes, procs)
    rates = {name: (statistics.median(v), max(v)) for name, v in results.items()}
    print(
        f"CPU, {args.threads or torch.get_num_threads()} threads: ours generator, capacity "
        f"{s['cap']}, {s['crop']} x {s['crop']}, batch {s['batch']}; each contender in its own "
        f"process, median of {args.rounds} interleaved rounds of {args.steps} steps"
    )
    print_rates(rates, PAPER)
    if not cpu_bf16_fast():
        print("  note: this CPU has no bf16 kernels (AVX-512/AMX): the default step runs in fp32")
    med, paper_med = rates["ours (bf16, default)"][0], rates[PAPER][0]
    fp32_med = rates["ours --no-amp (fp32)"][0]
    print(
        f"  ours / paper's code (median): {med / paper_med:.2f}x (target {TARGET_RATIO}x); "
        f"bf16 / fp32: {med / fp32_med:.2f}x"
    )


def _loader_contender(conn, store: Path, compact: bool, workers: int) -> None:
    """One DataLoader in its own process (spawned, as a training run's is): answers each
    number of batches the parent sends with the steady-state samples/s, expanded on the
    (CPU) device as training does. The batches its workers prefetched while it waited are
    taken first, untimed: they would count work done before the clock started."""
    crop, batch = LOADER_CROP, LOADER_BATCH
    ds = SynthesisDataset(
        store, "train", crop=crop, samples_per_epoch=batch * 1_000_000, compact=compact
    )
    loader = iter(
        DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=workers > 0)
    )
    for _ in range(3 * max(workers, 1)):  # worker start-up, first reads, allocator warm-up
        next(loader)
    conn.send(None)
    while batches := conn.recv():
        for _ in range(2 * workers):  # prefetch_factor (2) batches per worker are queued
            next(loader)
        start, n = time.perf_counter(), 0
        for _ in range(batches):
            out = next(loader)
            n += len(out["tile"])
            expand_compact(out, ds.num_classes, "cpu")
        conn.send(n / (time.perf_counter() - start))


def run_loader(args, tmp: Path) -> None:
    """Samples/s through DataLoaders: today's float samples against the compact ones.

    Each loader lives in its own process, and they take turns in a rotating order, so that
    drift on the machine touches them alike; a loader's idle workers refill their prefetch
    queue after its turn, and a pause lets that finish before the next loader is timed.
    """
    store = make_store(tmp / "loader.zarr", LOADER_TILE, tiles=4)
    contenders = {  # name: compact samples, workers
        "float, 1 worker (before)": (False, 1),
        "compact, 0 workers": (True, 0),
        "compact, 1 worker": (True, 1),
        "compact, 2 workers": (True, 2),
    }
    mp = multiprocessing.get_context("spawn")
    pipes, procs = {}, []
    try:
        for name, (compact, workers) in contenders.items():
            parent, child = mp.Pipe()
            proc = mp.Process(target=_loader_contender, args=(child, store, compact, workers))
            proc.start()
            procs.append(proc)
            pipes[name] = parent
            parent.recv()  # one at a time: start-up does not overlap the others
        time.sleep(QUIET_S)
        # a pause after each turn: its workers refill their queues before the next one runs
        results = take_turns(pipes, args.rounds, args.loader_batches, pause=QUIET_S)
    finally:
        stop_contenders(pipes, procs)
    names = list(contenders)
    print(
        f"DataLoader: {LOADER_CROP} x {LOADER_CROP} crops of seg + dem + rgb from {LOADER_TILE} "
        f"px tiles, batch {LOADER_BATCH}; each loader in its own process, median of "
        f"{args.rounds} interleaved rounds of {args.loader_batches} batches"
    )
    base = statistics.median(results[names[0]])
    for name, rates in results.items():
        med = statistics.median(rates)
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        print(f"  {name:<26} {med:8.1f} samples/s ({spread:>9})  {med / base:5.2f}x")
    two = statistics.median(results["compact, 2 workers"])
    print(f"  2 workers compact / 1 worker float: {two / base:.2f}x (target {LOADER_TARGET}x)")


def run_curves(args, store: Path, tmp: Path) -> None:
    """Loss curves of ``--curves`` steps in bf16 and in fp32 on the CPU: same seed, same crops."""
    from geosynth.ml.training.train import train_gan

    s = SETTINGS["cpu"]
    logs = {}
    for name, amp in (("bf16", True), ("fp32", False)):
        out = tmp / f"curve_{name}"
        cfg = GanConfig(
            store=str(store), out=str(out), cap=s["cap"], crop=s["crop"], batch_size=s["batch"],
            workers=0, tensorboard=False, samples=0, device="cpu", amp=amp, log_every=1,
            max_steps=args.curves, samples_per_epoch=s["batch"] * args.curves, epochs=1,
            checkpoint_every=0,
        )  # fmt: skip
        start = time.perf_counter()
        train_gan(cfg)
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        logs[name] = [r for r in records if "g_adv" in r and not r.get("end_of_epoch")]
        print(f"  {name}: {args.curves} steps in {seconds:.0f} s")
    keys = ("g_adv", "g_fm", "d_real", "d_fake")
    tail = max(1, args.curves // 4)
    print(f"Loss curves, {args.curves} steps, seed 0; mean (std) over the last {tail} steps:")
    for key in keys:
        shown = []
        for name, recs in logs.items():
            values = np.array([r[key] for r in recs[-tail:]])
            shown.append(f"{name} {values.mean():.3f} ({values.std():.3f})")
        print(f"  {key:<7} " + "   ".join(shown))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, key in zip(axes, keys, strict=True):
        for name, recs in logs.items():
            ax.plot([r["step"] for r in recs], [r[key] for r in recs], label=name, lw=0.8)
        ax.set_title(key)
        ax.set_xlabel("step")
    axes[0].legend()
    fig.suptitle(f"ours, capacity {s['cap']}, {s['crop']} px, batch {s['batch']}, CPU, seed 0")
    fig.tight_layout()
    args.curves_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.curves_png, dpi=100)
    print(f"  figure: {args.curves_png}")


def run_cuda(args, store: Path, tmp: Path) -> None:
    s = SETTINGS["cuda"]
    bf16, batch = our_task(store, tmp / "a", "cuda", s, channels_last=args.channels_last)
    fp32, _ = our_task(store, tmp / "b", "cuda", s, amp=False, channels_last=args.channels_last)
    torch.backends.cudnn.benchmark = True
    contenders = {"fp32": lambda: fp32.train_step(batch), "bf16": lambda: bf16.train_step(batch)}
    rates = interleaved(contenders, s["batch"], args.rounds, args.steps, torch.device("cuda"))
    print(
        f"CUDA {torch.cuda.get_device_name()}: ours generator, capacity {s['cap']}, "
        f"{s['crop']} x {s['crop']}, batch {s['batch']}, channels_last {args.channels_last}"
    )
    print_rates(rates, "fp32")
    print(f"  bf16 / fp32 (median): {rates['bf16'][0] / rates['fp32'][0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true", help="CUDA: channels-last layout")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--compile", action="store_true", help="CPU: also ours --compile")
    parser.add_argument("--loader-batches", type=int, default=50, help="batches per loader round")
    parser.add_argument("--no-loader", action="store_true", help="skip the DataLoader part")
    parser.add_argument("--loader-only", action="store_true", help="only the DataLoader part")
    parser.add_argument("--curves", type=int, default=0, help="CPU: bf16/fp32 loss curves, N steps")
    parser.add_argument("--curves-png", type=Path, default=Path("bf16_fp32_curves.png"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = SETTINGS[args.device]["crop"]
        store = make_store(tmp / "bench.zarr", size)
        if not args.loader_only:
            (run_cuda if args.device == "cuda" else run_cpu)(args, store, tmp)
        if not args.no_loader:
            run_loader(args, tmp)
        if args.curves and args.device == "cpu":
            run_curves(args, store, tmp)


if __name__ == "__main__":
    main()
