"""Condition fidelity and sample diversity of conditioned generators, on a demo store.

``--modality rgb`` (the season of the flight):

1. A season classifier (:class:`geosynth.ml.evaluation.fidelity.ColourClassifier`: a
   linear classifier on the mean colour of each land-cover class in a 64 px
   crop) is fitted to the *real* orthophotos of every tile but the held-out
   one (a test tile); classes = the flights' seasons. Its accuracy on the
   held-out tile's real crops is the real-image level; chance is 1 / classes.
2. A generator (``--generator``, default ``spade``: labels only) is trained
   with ``--conditions season --noise 8`` on the train split, then
   synthesizes the held-out tile's centre under every season, ``--samples``
   times each; the classifier's accuracy on those crops is the condition
   fidelity (and its confusion shows what it took them for).
3. A U-Net trained on the real train tiles (or ``--unet RUN``) gives every
   sample's mIoU (fidelity to the label map) and the mean pairwise distance
   of the samples' U-Net features (diversity).

``--modality sar`` (the orbit direction):

1. An orbit classifier (:class:`geosynth.ml.evaluation.fidelity.ConditionNet` without
   flips, classes drawn equally often) is trained on real SAR crops of every
   tile but the held-out one; the store's only descending tile gives its top
   half to training and its bottom half to the real-image level, beside the
   held-out (ascending) tile.
2. ``ours`` (seg + DEM -> SAR) trained with ``--conditions orbit`` synthesizes
   the held-out tile's centre as seen ascending and descending; the
   classifier's accuracy on those crops is the condition fidelity.
3. The shadow side, measured geometrically (:func:`geosynth.ml.evaluation.fidelity.shadow_side`:
   is the image darker where the DSM casts an eastward or a westward radar
   shadow?), of the real images of both orbits and of both synthesized ones.

Writes OUT/conditions_<modality>.json and .png. Run:

    python benchmarks/conditions.py --store demo.zarr --out runs/conditions [--modality sar]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

CROP, STRIDE = 64, 60  # classifier crops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--modality", choices=["rgb", "sar"], default="rgb")
    p.add_argument("--tile", help="held-out tile (default: the first test tile with the modality)")
    p.add_argument("--generator", help="default: spade for rgb, ours for sar")
    p.add_argument("--cap", type=int, default=16)
    p.add_argument("--crop", type=int, default=64, help="generator training crop")
    p.add_argument("--gan-steps", type=int, default=2000)
    p.add_argument("--unet", help="a U-Net run on the store's rgb (default: train one)")
    p.add_argument("--unet-steps", type=int, default=400)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument(
        "--size", type=int, default=992, help="edge of the synthesized centre (most of a tile: "
        "the shadow side needs many buildings, the season classifier many crops)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = (run_season if args.modality == "rgb" else run_orbit)(args, out)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (out / f"conditions_{args.modality}.json").write_text(json.dumps(result, indent=2) + "\n")
    (season_figure if args.modality == "rgb" else orbit_figure)(
        result, out / f"conditions_{args.modality}.png"
    )
    print(json.dumps(result, indent=2))


def train_generator(args, out: Path, **options):
    from geosynth.ml.training.checkpoint import load_generator
    from geosynth.ml.training.config import GanConfig
    from geosynth.ml.training.train import train_gan

    run_dir = out / f"gan_{args.modality}"
    cfg = GanConfig(
        store=args.store, out=str(run_dir), cap=args.cap, crop=args.crop, batch_size=4,
        workers=0, epochs=10_000, max_steps=args.gan_steps, samples_per_epoch=64,
        tensorboard=False, seed=args.seed, checkpoint_every=0, samples=2, **options,
    )  # fmt: skip
    if not (run_dir / "checkpoints" / "last.pt").exists():
        train_gan(cfg)
    return load_generator(run_dir)


def window(array: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` of ``(..., H, W)``."""
    h, w = array.shape[-2:]
    y0, x0 = (h - size) // 2, (w - size) // 2
    return array[..., y0 : y0 + size, x0 : x0 + size]


# --------------------------------------------------------------------------- season (rgb)


def run_season(args, out: Path) -> dict:
    from geosynth.ml.data.conditions import day_of_year
    from geosynth.ml.evaluation.fidelity import (
        crops,
        pairwise_feature_distance,
        predict_colours,
        season_class,
        train_colour_classifier,
    )
    from geosynth.ml.metrics import confusion_matrix, segmentation_scores
    from geosynth.ml.synthesis.synthesize import plan_variants, synthesize_array
    from geosynth.store import open_store

    store = open_store(args.store)
    tiles = {store.tile_ids[i]: i for i in store.tiles(None, require=("rgb", "seg"))}
    test = [store.tile_ids[i] for i in store.tiles("test", require=("rgb", "seg"))]
    held = args.tile or test[0]
    doys = {t: day_of_year(store.acquisition(i)["rgb"]["date"]) for t, i in tiles.items()}
    centres = sorted(set(doys.values()))
    k = len(centres)
    classes = list(range(1, store.num_classes))  # class 0: unlabelled

    def real_crops(tile):
        rgb = store.read("rgb", tiles[tile]).astype(np.float32) / 127.5 - 1
        seg = store.read("seg", tiles[tile])[None]
        return torch.from_numpy(crops(rgb, CROP, STRIDE)), torch.from_numpy(
            crops(seg, CROP, STRIDE)[:, 0].astype(np.int64)
        )

    # 1. the season classifier on real crops of every tile but the held-out one
    xs, ls, ys = [], [], []
    for t in tiles:
        if t != held:
            x, lab = real_crops(t)
            xs.append(x)
            ls.append(lab)
            ys.append(torch.full((len(x),), season_class(doys[t], centres)))
    clf = train_colour_classifier(
        torch.cat(xs), torch.cat(ls), torch.cat(ys), k, classes, seed=args.seed
    )
    held_x, held_l = real_crops(held)
    held_class = season_class(doys[held], centres)
    real_acc = float((predict_colours(clf, held_x, held_l) == held_class).float().mean())

    # 2. the generator, season-conditioned with noise, on the train split
    g, gan_cfg = train_generator(
        args, out, inputs=("seg",), output="rgb", generator=args.generator or "spade",
        conditions=("season",), noise=8,
    )  # fmt: skip
    unet = scorer(args, out)

    # 3. the held-out tile's centre under every season, several samples each
    i = tiles[held]
    seg = window(store.read("seg", i), args.size)
    real = window(store.read("rgb", i), args.size).astype(np.float32) / 127.5 - 1
    variants = plan_variants(
        gan_cfg, store.acquisition(i), f"tile {held}",
        requests=[{"season": c} for c in centres], samples=args.samples, seed=args.seed,
    )  # fmt: skip
    n = store.num_classes
    seg_crops = torch.from_numpy(crops(seg[None], CROP, STRIDE)[:, 0].astype(np.int64))

    def miou(image: np.ndarray) -> float:
        with torch.no_grad():
            logits = unet(torch.from_numpy(image)[None].float()).logits
        counts = confusion_matrix(logits.argmax(1), torch.from_numpy(seg)[None].long(), n)
        return float(segmentation_scores(counts.numpy())["miou"])

    per_season, shown = [], {}
    for c_index, centre in enumerate(centres):
        images = [
            synthesize_array(g, gan_cfg, {"seg": seg}, n, conditions=v.conditions, noise=v.noise)
            for v in variants[c_index * args.samples : (c_index + 1) * args.samples]
        ]
        pieces = torch.cat([torch.from_numpy(crops(im, CROP, STRIDE)) for im in images]).float()
        labels = seg_crops.repeat(len(images), 1, 1)
        predicted = predict_colours(clf, pieces, labels)
        per_season.append(
            {
                "day_of_year": centre,
                "classifier_accuracy": round(float((predicted == c_index).float().mean()), 4),
                "predicted_share": [
                    round(float((predicted == j).float().mean()), 3) for j in range(k)
                ],
                "diversity": round(
                    pairwise_feature_distance(unet, torch.from_numpy(np.stack(images)).float()), 4
                ),
                "miou_per_sample": [round(miou(im), 4) for im in images],
            }
        )
        shown[centre] = images[:2]
    np.savez_compressed(
        out / "samples_rgb.npz", real=real, **{f"doy{c}": np.stack(v) for c, v in shown.items()}
    )
    return {
        "modality": "rgb",
        "condition": "season",
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
        "setup": setup(args, gan_cfg, noise=8, classifier="ColourClassifier (class colours)"),
    }


def scorer(args, out: Path):
    """The U-Net that scores samples: ``--unet`` or one trained here on the store's rgb."""
    from geosynth.ml.training.checkpoint import load_unet
    from geosynth.ml.training.config import UNetRunConfig
    from geosynth.ml.training.train_unet import train_unet

    unet_dir = Path(args.unet) if args.unet else out / "unet"
    if not args.unet and not (unet_dir / "checkpoints" / "last.pt").exists():
        cfg = UNetRunConfig(
            store=args.store, out=str(unet_dir), input="rgb", base_channels=16, crop=128,
            batch_size=8, workers=0, epochs=10_000, max_steps=args.unet_steps,
            samples_per_epoch=160, lr=3e-3, norm="batch", loss="focal", class_weights="sqrt",
            tensorboard=False, val_split=None, seed=args.seed, checkpoint_every=0, samples=0,
        )  # fmt: skip
        train_unet(cfg)
    unet, _ = load_unet(unet_dir)
    return unet.eval()


def setup(args, gan_cfg, **extra) -> dict:
    return {
        "generator": gan_cfg.generator,
        "inputs": list(gan_cfg.inputs),
        "cap": args.cap,
        "gan_crop": gan_cfg.crop,
        "gan_steps": args.gan_steps,
        "unet": args.unet or f"base 16, {args.unet_steps} steps",
        "samples": args.samples,
        "seed": args.seed,
        "size": args.size,
        **extra,
    }


# --------------------------------------------------------------------------- orbit (sar)


def run_orbit(args, out: Path) -> dict:
    from geosynth.ml.data.conditions import describe, tile_conditions
    from geosynth.ml.data.tensors import to_network
    from geosynth.ml.evaluation.fidelity import crops, predict, shadow_side, train_classifier
    from geosynth.ml.synthesis.synthesize import plan_variants, synthesize_array
    from geosynth.store import open_store

    store = open_store(args.store)
    tiles = {store.tile_ids[i]: i for i in store.tiles(None, require=("sar", "seg", "dem"))}
    test = [store.tile_ids[i] for i in store.tiles("test", require=("sar", "seg", "dem"))]
    held = args.tile or test[0]
    geometry = {
        t: describe(("incidence", "orbit"), tile_conditions(store.acquisition(i), ("incidence", "orbit"), t))
        for t, i in tiles.items()
    }  # fmt: skip
    orbit = {t: (0 if g["orbit"] > 0 else 1) for t, g in geometry.items()}  # 0 asc, 1 desc
    names = ("ascending", "descending")
    incidence = {
        c: float(np.mean([g["incidence_deg"] for t, g in geometry.items() if orbit[t] == c]))
        for c in (0, 1)
        if any(orbit[t] == c for t in tiles)
    }
    if len(incidence) < 2:
        raise SystemExit(f"{args.store}: the SAR tiles are seen from one orbit direction only")
    h = store.tile_shape[0]

    def sar_crops(tile, rows=slice(None)):
        i = tiles[tile]
        sar = to_network("sar", store.read("sar", i), 0)[:, rows]
        valid = store.read("sar_valid", i)[None, rows].astype(np.float32)
        x, v = crops(sar, CROP, STRIDE), crops(valid, CROP, STRIDE)
        return torch.from_numpy(x[v.reshape(len(v), -1).min(1) == 1])  # fully valid crops

    # 1. the orbit classifier; the one descending tile lends half of itself to each side
    desc = [t for t in tiles if orbit[t] == 1 and t != held]
    if not desc:
        raise SystemExit(f"{args.store}: no descending tile besides --tile {held} to learn from")
    xs, ys = [], []
    for t in tiles:
        if t == held:
            continue
        rows = slice(0, h // 2) if t == desc[0] else slice(None)
        x = sar_crops(t, rows)
        xs.append(x)
        ys.append(torch.full((len(x),), orbit[t]))
    clf = train_classifier(
        torch.cat(xs), torch.cat(ys), 2, steps=600, seed=args.seed, flip=False, balance=True
    )
    real_levels = {
        f"{held} ({names[orbit[held]]}, held out)": (sar_crops(held), orbit[held]),
        f"{desc[0]} bottom half ({names[1]})": (sar_crops(desc[0], slice(h // 2, None)), 1),
    }
    real_acc = {
        k: round(float((predict(clf, x) == c).float().mean()), 4)
        for k, (x, c) in real_levels.items()
    }

    # 2. ours, orbit-conditioned, seg + DEM -> SAR
    g, gan_cfg = train_generator(
        args, out, inputs=("seg", "dem"), output="sar", generator=args.generator or "ours",
        conditions=("orbit",), dem_norm="crop",
    )  # fmt: skip
    i = tiles[held]
    seg = window(store.read("seg", i), args.size)
    dem = window(store.read("dem", i), args.size)
    variants = plan_variants(
        gan_cfg, store.acquisition(i), f"tile {held}",
        requests=[{"orbit": 1.0}, {"orbit": -1.0}], samples=1, seed=args.seed,
    )  # fmt: skip
    images = [
        synthesize_array(
            g, gan_cfg, {"seg": seg, "dem": dem}, store.num_classes, conditions=v.conditions
        )
        for v in variants
    ]

    # 3. classifier and shadow side on both synthesized images, and on the real ones
    def side(image: np.ndarray, dsm: np.ndarray, c: int) -> dict:
        where, ratio = shadow_side((image[0] + 1) / 2, dsm[0], incidence[c], 1.0)
        return {"shadow_side": where, "west_over_east": round(ratio, 3)}

    synthesized = []
    for c, image in enumerate(images):
        pieces = torch.from_numpy(crops(image, CROP, STRIDE)).float()
        synthesized.append(
            {
                "orbit": names[c],
                "classifier_accuracy": round(float((predict(clf, pieces) == c).float().mean()), 4),
                "expected_shadow_side": "east" if c == 0 else "west",
                **side(image, dem, c),
            }
        )
    real_sides = {}
    for t in (held, desc[0]):
        j = tiles[t]
        sar = window(to_network("sar", store.read("sar", j), 0), args.size)
        real_sides[f"{t} ({names[orbit[t]]})"] = side(
            sar, window(store.read("dem", j), args.size), orbit[t]
        )
    real = window(to_network("sar", store.read("sar", i), 0), args.size)
    np.savez_compressed(out / "samples_sar.npz", real=real, asc=images[0], desc=images[1])
    return {
        "modality": "sar",
        "condition": "orbit",
        "store": str(args.store),
        "held_out_tile": held,
        "tiles_per_orbit": {n: sum(1 for t in tiles if orbit[t] == c) for c, n in enumerate(names)},
        "incidence_deg_per_orbit": {names[c]: v for c, v in incidence.items()},
        "chance_accuracy": 0.5,
        "real_image_accuracy": real_acc,
        "synthesized": synthesized,
        "mean_synthesized_accuracy": round(
            float(np.mean([s["classifier_accuracy"] for s in synthesized])), 4
        ),
        "real_shadow_side": real_sides,
        "setup": setup(args, gan_cfg, classifier="ConditionNet, no flips, balanced"),
    }


# --------------------------------------------------------------------------- figures


def save(fig, path: Path, result: dict, about_tile: str = "") -> None:
    """Title (tile, generator, steps, seed), then the PNG."""
    import matplotlib.pyplot as plt

    s = result["setup"]
    fig.suptitle(
        f"held-out tile {result['held_out_tile']}{about_tile}; {s['generator']} cap {s['cap']}, "
        f"{s['gan_steps']} steps, seed {s['seed']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def season_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = np.load(path.parent / "samples_rgb.npz")
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
    save(fig, path, result, f" (real: day {result['held_out_real_season_doy']})")


def orbit_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = np.load(path.parent / "samples_sar.npz")
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    panels = [("real", "real (ascending)")] + [
        (key, f"synthesized {s['orbit']}: acc {s['classifier_accuracy']:.2f}, shadows "
              f"{s['shadow_side']}")
        for key, s in zip(("asc", "desc"), result["synthesized"], strict=True)
    ]  # fmt: skip
    for ax, (key, title) in zip(axes, panels, strict=False):
        ax.imshow((samples[key][0] + 1) / 2, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    ax = axes[-1]
    labels = ["chance", *[k.split(" (")[0][:12] for k in result["real_image_accuracy"]], "synth"]
    values = [result["chance_accuracy"], *result["real_image_accuracy"].values(),
              result["mean_synthesized_accuracy"]]  # fmt: skip
    ax.bar(range(len(values)), values)
    ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_title("orbit classifier accuracy")
    save(fig, path, result)


if __name__ == "__main__":
    main()
