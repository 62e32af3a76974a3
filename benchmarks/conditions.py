"""Condition fidelity and sample diversity of a season-conditioned, noise-taking generator
(issue 21), on a demo store; tiny networks for a shared 2-core CPU.

1. A season classifier (:class:`geosynth.ml.fidelity.ConditionNet`) is trained
   on 64 px crops of the *real* orthophotos of every tile but the held-out
   one (a test tile), classes = the flights' seasons. Its accuracy on the
   held-out tile's real crops is the real-image level; chance is 1 / classes.
2. A generator (``--generator``, default ``spade``: labels only) is trained
   with ``--conditions season --noise 8`` on the train split, then
   synthesizes the held-out tile's centre under every season, ``--samples``
   times each; the classifier's accuracy on those crops is the condition
   fidelity.
3. A tiny U-Net trained on the real train tiles gives every sample's mIoU
   (fidelity to the label map) and the mean pairwise distance of the
   samples' U-Net features (diversity).

Writes OUT/conditions.json and OUT/conditions.png. Run:

    python benchmarks/conditions.py --store demo.zarr --out runs/conditions
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tile", help="held-out tile (default: the first test tile)")
    p.add_argument("--generator", default="spade")
    p.add_argument("--cap", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--gan-steps", type=int, default=300)
    p.add_argument("--unet-steps", type=int, default=200)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="edge of the synthesized centre")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run(args, out)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "conditions.json").write_text(json.dumps(result, indent=2) + "\n")
    figure(result, out / "conditions.png")
    print(json.dumps(result, indent=2))


def run(args, out: Path) -> dict:
    from geosynth.ml.conditions import day_of_year
    from geosynth.ml.config import GanConfig, UNetRunConfig
    from geosynth.ml.fidelity import (
        crops,
        pairwise_feature_distance,
        predict,
        season_class,
        train_classifier,
    )
    from geosynth.ml.metrics import confusion_matrix, segmentation_scores
    from geosynth.ml.synthesize import plan_variants, synthesize_array
    from geosynth.ml.train import train_gan
    from geosynth.ml.train_unet import train_unet
    from geosynth.store import open_store

    store = open_store(args.store)
    tiles = {store.tile_ids[i]: i for i in store.tiles(None)}
    test = [store.tile_ids[i] for i in store.tiles("test")]
    held = args.tile or test[0]
    doys = {t: day_of_year(store.acquisition(i)["rgb"]["date"]) for t, i in tiles.items()}
    centres = sorted(set(doys.values()))
    k = len(centres)

    # 1. the season classifier on real crops of every tile but the held-out one
    def real_crops(tile):
        rgb = store.read("rgb", tiles[tile]).astype(np.float32) / 127.5 - 1
        return torch.from_numpy(crops(rgb, 64, 60))

    xs, ys = [], []
    for t in tiles:
        if t != held:
            c = real_crops(t)
            xs.append(c)
            ys.append(torch.full((len(c),), season_class(doys[t], centres)))
    clf = train_classifier(torch.cat(xs), torch.cat(ys), k, steps=400, seed=args.seed)
    held_real = real_crops(held)
    real_acc = float((predict(clf, held_real) == season_class(doys[held], centres)).float().mean())

    # 2. the generator, season-conditioned with noise, on the train split
    run_dir = out / "gan"
    gan_cfg = GanConfig(
        store=args.store, out=str(run_dir), inputs=("seg",), output="rgb",
        generator=args.generator, cap=args.cap, crop=args.crop, batch_size=4, workers=0,
        epochs=10_000, max_steps=args.gan_steps, samples_per_epoch=64, tensorboard=False,
        conditions=("season",), noise=8, seed=args.seed, checkpoint_every=0, samples=2,
    )  # fmt: skip
    if not (run_dir / "checkpoints" / "last.pt").exists():
        train_gan(gan_cfg)
    from geosynth.ml.checkpoint import load_generator, load_unet

    g, gan_cfg = load_generator(run_dir)
    unet_dir = out / "unet"
    unet_cfg = UNetRunConfig(
        store=args.store, out=str(unet_dir), input="rgb", base_channels=8, crop=args.crop,
        batch_size=4, workers=0, epochs=10_000, max_steps=args.unet_steps, samples_per_epoch=64,
        tensorboard=False, val_split=None, seed=args.seed, checkpoint_every=0, samples=0,
    )  # fmt: skip
    if not (unet_dir / "checkpoints" / "last.pt").exists():
        train_unet(unet_cfg)
    unet, _ = load_unet(unet_dir)
    unet.eval()

    # 3. the held-out tile's centre under every season, several samples each
    i = tiles[held]
    h, w = store.tile_shape
    y0, x0, s = (h - args.size) // 2, (w - args.size) // 2, args.size
    seg = store.read("seg", i)[y0 : y0 + s, x0 : x0 + s]
    real = store.read("rgb", i)[:, y0 : y0 + s, x0 : x0 + s].astype(np.float32) / 127.5 - 1
    variants = plan_variants(
        gan_cfg, store.acquisition(i), f"tile {held}",
        requests=[{"season": c} for c in centres], samples=args.samples, seed=args.seed,
    )  # fmt: skip
    n = store.num_classes
    per_season, shown = [], {}

    def miou(image: np.ndarray) -> float:
        with torch.no_grad():
            logits = unet(torch.from_numpy(image)[None].float()).logits
        counts = confusion_matrix(logits.argmax(1), torch.from_numpy(seg)[None].long(), n)
        return float(segmentation_scores(counts.numpy())["miou"])

    for c_index, centre in enumerate(centres):
        images = []
        for v in variants[c_index * args.samples : (c_index + 1) * args.samples]:
            images.append(
                synthesize_array(
                    g, gan_cfg, {"seg": seg}, n, conditions=v.conditions, noise=v.noise
                )
            )
        batch = torch.from_numpy(np.stack(images)).float()  # (S, 3, s, s)
        pieces = torch.cat([torch.from_numpy(crops(im, 64, 60)) for im in images]).float()
        acc = float((predict(clf, pieces) == c_index).float().mean())
        per_season.append(
            {
                "day_of_year": centre,
                "classifier_accuracy": round(acc, 4),
                "diversity": round(pairwise_feature_distance(unet, batch), 4),
                "miou_per_sample": [round(miou(im), 4) for im in images],
            }
        )
        shown[centre] = images[:2]
    result = {
        "store": str(args.store),
        "held_out_tile": held,
        "held_out_real_season_doy": doys[held],
        "season_classes_doy": centres,
        "chance_accuracy": round(1 / k, 4),
        "real_image_accuracy_held_out": round(real_acc, 4),
        "synthesized": per_season,
        "mean_synthesized_accuracy": round(
            float(np.mean([p["classifier_accuracy"] for p in per_season])), 4
        ),
        "real_image_miou": round(miou(real), 4),
        "setup": {
            "generator": args.generator,
            "cap": args.cap,
            "gan_crop": gan_cfg.crop,
            "unet_crop": args.crop,
            "gan_steps": args.gan_steps,
            "unet_steps": args.unet_steps,
            "unet_base": 8,
            "noise": 8,
            "samples": args.samples,
            "seed": args.seed,
            "size": args.size,
            "note": "tiny networks and a few hundred steps on a shared 2-core CPU",
        },  # fmt: skip
    }
    np.savez_compressed(out / "samples.npz", **{f"doy{c}": np.stack(v) for c, v in shown.items()})
    return result


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = np.load(path.parent / "samples.npz")
    per = result["synthesized"]
    fig, axes = plt.subplots(2, len(per) + 1, figsize=(3 * (len(per) + 1), 6))
    for col, p in enumerate(per):
        for row in range(2):
            im = samples[f"doy{p['day_of_year']}"][row]
            axes[row, col].imshow(np.clip((np.moveaxis(im, 0, -1) + 1) / 2, 0, 1))
            axes[row, col].axis("off")
        axes[0, col].set_title(f"day {p['day_of_year']}: acc {p['classifier_accuracy']:.2f}")
    ax = axes[0, -1]
    ax.bar(
        ["chance", "real\n(held out)", "synth\n(mean)"],
        [result["chance_accuracy"], result["real_image_accuracy_held_out"],
         result["mean_synthesized_accuracy"]],
    )  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_title("season classifier accuracy")
    ax = axes[1, -1]
    for p in per:
        ax.scatter([p["diversity"]] * len(p["miou_per_sample"]), p["miou_per_sample"], s=14,
                   label=f"day {p['day_of_year']}")  # fmt: skip
    ax.axhline(result["real_image_miou"], color="k", ls="--", lw=1, label="real image")
    ax.set_xlabel("diversity (mean pairwise U-Net feature distance)")
    ax.set_ylabel("U-Net mIoU per sample")
    ax.legend(fontsize=7)
    fig.suptitle(f"held-out tile {result['held_out_tile']}; {result['setup']['note']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
