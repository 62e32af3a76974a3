"""``geosynth score-unet``: a trained U-Net segmenting the *real* images of a split.

The augmentation experiment asks whether synthesized training data helps a
segmentation model on real images; this scores one such model. Every tile of
the split is cut to its centre window (:func:`~geosynth.ml.evaluation.evaluate.eval_window`,
as ``geosynth evaluate`` does), segmented (classes 1..K-1, never the
unlabelled 0) and counted against the ground truth over the labelled pixels:
mIoU over the classes present in target or prediction, pixel accuracy and
the IoU of every class. ``scores.json`` (written atomically) holds them with
what the U-Net was trained with (loss, class weights, extra store and mix,
seed); :mod:`geosynth.analysis.augment_scores` tabulates and plots many of them.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from geosynth import __version__
from geosynth.analysis.augment_scores import SCORES_FORMAT, SCORES_JSON
from geosynth.errors import UsageError
from geosynth.io import write_text
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.evaluation.evaluate import eval_window
from geosynth.ml.metrics import ConfusionMatrix, predict_classes, segmentation_scores
from geosynth.ml.training.checkpoint import find_checkpoint, load_unet
from geosynth.ml.training.distributed import resolve_device
from geosynth.names import LABELS
from geosynth.store import open_store

log = logging.getLogger(__name__)


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@torch.inference_mode()
def score_unet(
    unet_run: str | os.PathLike,
    store,
    split: str | None,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    crop: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    storage_options: dict | None = None,
) -> dict:
    """Score ``unet_run`` on the real images of ``split`` of ``store``; write ``out/scores.json``."""
    import json

    out = Path(out)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    unet, ucfg = load_unet(unet_run, map_location=dev)
    unet.eval()
    opened = open_store(store, storage_options=storage_options)
    if unet.config.num_classes != opened.num_classes:
        raise UsageError(
            f"the U-Net {unet_run} has {unet.config.num_classes} classes, store {opened.path} "
            f"{opened.num_classes}"
        )
    window = eval_window(crop, opened.tile_shape, 2**unet.config.depth)
    dataset = SynthesisDataset(
        opened, split, inputs=(LABELS,), output=ucfg.input, crop=window, flip=False,
        train=False, one_hot=False,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    conf = ConfusionMatrix(opened.num_classes)
    for batch in loader:
        logits = unet(batch[ucfg.input].to(dev)).logits.float()
        conf.update(predict_classes(logits).cpu(), batch[LABELS])
    s = segmentation_scores(conf.counts)
    table = {c.id: c.key for c in opened.classes.classes}
    scores = {
        "format": SCORES_FORMAT,
        "name": name or out.resolve().name,
        "unet": {
            "run": str(unet_run),
            "checkpoint": str(find_checkpoint(unet_run)),
            "input": ucfg.input,
            "seed": ucfg.seed,
            "loss": getattr(ucfg, "loss", "ce"),
            "focal_gamma": getattr(ucfg, "focal_gamma", None),
            "class_weights": getattr(ucfg, "class_weights", "none"),
            "extra_store": getattr(ucfg, "extra_store", None),
            "mix": getattr(ucfg, "mix", None) if getattr(ucfg, "extra_store", None) else 0.0,
            "train_store": ucfg.store,
        },
        "store": str(opened.path),
        "split": split,
        "window": list(window),
        "tiles": list(dataset.tile_ids),
        "miou": _finite(s["miou"]),
        "pixel_acc": _finite(s["pixel_acc"]),
        "pixels": s["pixels"],
        "iou": {table.get(i, f"class{i}"): _finite(s["iou"][i]) for i in range(1, len(s["iou"]))},
        "confusion": conf.counts.tolist(),
        "geosynth_version": __version__,
    }
    write_text(out / SCORES_JSON, json.dumps(scores, indent=1))
    log.debug("%s: mIoU %.3f, pixel accuracy %.3f", scores["name"], s["miou"], s["pixel_acc"])
    return scores
