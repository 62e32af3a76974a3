"""Evaluation metrics benchmark: our kernels against plain baselines, side by side in one run.

1. Confusion-matrix accumulation over a batch of 1000 x 1000 tiles (11 classes,
   class 0 ignored), CPU tensors: ``geosynth.ml.metrics.confusion_matrix`` (one
   ``np.bincount`` with an extra bin for left-out pixels) against ``np.add.at``
   on the masked pixels (the obvious numpy way) and against the same
   computation in torch (its CUDA path, run on the CPU); the counts must agree.
2. Frechet distance of U-Net features at the paper's width (960 = 64 + 128 +
   256 + 512 pooled channels): ``frechet_distance`` (``scipy.linalg.sqrtm`` of
   the covariance product, float64, as pytorch-fid) against the trace through
   the eigenvalues of the product (``sum(sqrt(eig(S1 S2)))``, as some newer
   libraries do); the two values are printed with their difference.
3. ``geosynth evaluate`` end to end, tiles/s on the CPU with the demo's networks
   (U-Net width 16, generator ``ours`` of capacity 8 trained on 128 px crops,
   weights after one step: the cost does not depend on them) on a store of
   512 px tiles: the ``geosynth`` protocol against the ``paper`` protocol on
   the same 512 px window (what the conventions cost), and the ``paper``
   protocol on its default window (the training crop, 128 px), with ratios.

Medians of interleaved repeats. Other jobs share the CPU: figures are indicative.

Run: python benchmarks/evaluate_metrics.py [--tiles 4] [--dim 960] [--samples 2000] [--repeats 3]
     [--eval-tiles 4] [--skip-eval | --eval-only]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from geosynth.ml.metrics import (
    _counts_torch,
    confusion_matrix,
    frechet_distance,
    gaussian_statistics,
)

K = 11


def numpy_confusion(pred: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    valid = target != 0
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (target[valid], pred[valid]), 1)
    return counts


def eig_frechet(mu1, s1, mu2, s2) -> float:
    eig = np.linalg.eigvals(s1 @ s2)
    trace_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def demo_world(root: Path, tiles: int, size: int = 512) -> dict:
    """A store of ``size`` px tiles (2 train, ``tiles`` test) and the demo's networks, one step."""
    from geosynth.catalog import load_catalog
    from geosynth.ml.training.config import GanConfig, UNetRunConfig
    from geosynth.ml.training.train import train_gan
    from geosynth.ml.training.train_unet import train_unet
    from geosynth.store import TileData, TilePlan, create_store, modality

    plans = [
        TilePlan(f"{356 + i}_5645", "demo", "train" if i < 2 else "test") for i in range(2 + tiles)
    ]
    store = create_store(
        root / "s.zarr", plans, tile_shape=(size, size),
        modalities=[modality("rgb"), modality("dem"), modality("seg")],
        dataset="bench", crs="EPSG:25832", classes=load_catalog().classes,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for plan in plans:
        seg = np.kron(rng.integers(0, K, (size // 16, size // 16)), np.ones((16, 16), np.uint8))
        rgb = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
        dem = (100 + np.linspace(0, 30, size, dtype=np.float32))[None, None, :].repeat(size, 1)
        store.write_tile(plan.tile_id, TileData(rgb=rgb, dem=dem, seg=seg.astype(np.uint8)))
    common = dict(store=str(root / "s.zarr"), crop=128, max_steps=1, workers=0, samples=0,
                  image_every=0, log_every=0, tensorboard=False)  # fmt: skip
    train_gan(GanConfig(out=str(root / "g"), cap=8, batch_size=2, **common))
    train_unet(UNetRunConfig(out=str(root / "u"), base_channels=16, batch_size=2,
                             val_split=None, **common))  # fmt: skip
    return {"store": root / "s.zarr", "g": root / "g", "u": root / "u"}


def bench_evaluate(tiles: int, repeats: int) -> None:
    from geosynth.ml.evaluation.evaluate import evaluate

    runs = {
        "geosynth, 512 px window": dict(protocol="geosynth", crop=512),
        "paper, 512 px window": dict(protocol="paper", crop=512),
        "paper, default window (128 px)": dict(protocol="paper"),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory() as tmp:
        w = demo_world(Path(tmp), tiles)
        for r in range(repeats):
            for i, (label, kw) in enumerate(runs.items()):
                out = Path(tmp) / f"eval_{r}_{i}"
                t, _ = timed(evaluate, w["g"], w["u"], w["store"], "test", out, device="cpu",
                             batch_size=2, **kw)  # fmt: skip
                times[label].append(t)
    print(f"geosynth evaluate, CPU, demo networks, {tiles} test tiles of 512 px, batch 2")
    rate = {k: tiles / statistics.median(v) for k, v in times.items()}
    for label, value in rate.items():
        print(f"  {label:32s} {value:7.3f} tiles/s")
    base = rate["geosynth, 512 px window"]
    print(
        f"  paper / geosynth, same window {rate['paper, 512 px window'] / base:.2f}x; "
        f"paper default window / geosynth {rate['paper, default window (128 px)'] / base:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4)
    parser.add_argument("--dim", type=int, default=960)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-tiles", type=int, default=4)
    parser.add_argument("--skip-eval", action="store_true", help="only the kernels (1, 2)")
    parser.add_argument("--eval-only", action="store_true", help="only the evaluation (3)")
    args = parser.parse_args()
    if args.eval_only:
        bench_evaluate(args.eval_tiles, args.repeats)
        return
    rng = np.random.default_rng(0)

    target = rng.integers(0, K, (args.tiles, 1000, 1000), dtype=np.int64)
    pred = rng.integers(1, K, (args.tiles, 1000, 1000), dtype=np.int64)
    pred_t, target_t = torch.from_numpy(pred), torch.from_numpy(target)
    ours, base, torch_path = [], [], []
    for _ in range(args.repeats):
        t, a = timed(confusion_matrix, pred_t, target_t, K)
        ours.append(t)
        t, b = timed(numpy_confusion, pred, target, K)
        base.append(t)
        t, c = timed(_counts_torch, pred_t, target_t, None, K)
        torch_path.append(t)
        assert np.array_equal(a.numpy(), b) and np.array_equal(c.numpy(), b), "counts differ"
    o, b, c = (statistics.median(x) for x in (ours, base, torch_path))
    mpix = args.tiles
    print(f"confusion matrix, {args.tiles} x 1000 x 1000 px, {K} classes, CPU")
    print(f"  geosynth (np.bincount)    {o * 1e3:8.1f} ms  {mpix / o:7.1f} Mpx/s")
    print(f"  baseline (np.add.at)      {b * 1e3:8.1f} ms  {mpix / b:7.1f} Mpx/s")
    print(f"  torch (the CUDA path)     {c * 1e3:8.1f} ms  {mpix / c:7.1f} Mpx/s")
    print(f"  speed-up vs np.add.at {b / o:.1f}x, vs torch.bincount {c / o:.1f}x")

    d, n = args.dim, args.samples
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    real = rng.gamma(2.0, 1.0, (n, d)) @ mix  # skewed, correlated, like pooled ReLU features
    fake = (rng.gamma(2.0, 1.0, (n, d)) * 1.1 + 0.05) @ mix
    mu1, s1 = gaussian_statistics(real)
    mu2, s2 = gaussian_statistics(fake)
    ours, base = [], []
    for _ in range(args.repeats):
        t, fd = timed(frechet_distance, mu1, s1, mu2, s2)
        ours.append(t)
        t, fd_eig = timed(eig_frechet, mu1, s1, mu2, s2)
        base.append(t)
    o, b = statistics.median(ours), statistics.median(base)
    print(f"Frechet distance, {n} samples x {d} features (float64)")
    print(f"  geosynth (scipy sqrtm)    {o:8.3f} s   FD {fd:.6f}")
    print(f"  eigenvalue trace          {b:8.3f} s   FD {fd_eig:.6f}")
    print(f"  ratio sqrtm / eig {o / b:.1f}x; |difference| {abs(fd - fd_eig):.2e}")
    if not args.skip_eval:
        bench_evaluate(args.eval_tiles, args.repeats)


if __name__ == "__main__":
    main()
