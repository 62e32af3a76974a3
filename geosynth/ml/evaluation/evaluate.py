"""``geosynth evaluate``: score a generator with the U-Net trained on real images (Table III, Fig. 5).

For every tile of a split (its centre window, the same for every run, so
results are deterministic and comparable), the generator synthesizes the
image from the tile's inputs and the U-Net segments the real and the
synthesized image. Three blocks, as in the paper:

- ``real_gt``: the real image's segmentation vs the ground truth (how good
  the scorer is; the ceiling of the next block);
- ``fake_gt``: the synthesized image's segmentation vs the ground truth;
- ``fake_real``: the synthesized image's segmentation vs the real one's.

Two protocols (:data:`geosynth.ml.metrics.PROTOCOLS`): ``paper`` reproduces
the code published with the paper (pytorch-ignite's conventions: every pixel
counts, the argmax over all classes, absent classes score 0; the window is
the centre crop of the generator's training size, 256 px in the Table III
recipes, as the authors' test transform; the synthesized image unrounded);
``geosynth`` (the default) counts only the pixels labelled in the ground
truth (and, for SAR, those with SAR data) in all three blocks, never
predicts class 0, leaves absent classes out of the mean and scores the
largest centre window that fits, with the synthesized RGB rounded to 8 bits
as ``geosynth synthesize`` writes it.

The Frechet distance is taken between the U-Net encoder features (global
average pool per level, concatenated) of the real and of the synthesized
images, one vector per tile (the authors' way; :mod:`geosynth.ml.metrics`).
With ``fd_grid`` N it is also computed over an N x N grid of windows of the
same size per tile (the centred block of windows): N^2 times the samples, so
the covariances need not be singular. The result files (``metrics.json``,
``metrics.csv``, ``table_row.md``, ``iou_per_class.png``) are written by
:mod:`geosynth.analysis.results`; ``metrics.json`` names the protocol, the window
and the feature set of every number.

For a SAR generator, ``metrics.json`` also holds a ``speckle`` section (and
the folder ``speckle.csv`` and ``speckle.png``): the speckle statistics of
:mod:`geosynth.analysis.sar_stats` (ENL, CV of amplitude, Gamma and K fits with their
KS distances, autocorrelation), per class and pooled, of the real and the
synthesized SAR of the scored windows; :mod:`geosynth.analysis.results` describes
it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from geosynth import __version__
from geosynth.analysis.results import (
    BLOCKS,
    FORMAT,
    METRICS_JSON,
    speckle_line,
    summary,
    write_reports,
)
from geosynth.analysis.sar_stats import (
    DEFAULT_ERODE_PX,
    MIN_PIXELS,
    class_stats,
    normalised_piece,
    sar_normalisation,
    speckle_section,
)
from geosynth.errors import DataError, UsageError
from geosynth.io import check_writable, remove_stale_temporaries
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.data.tensors import from_generator, generator_inputs, quantize, to_stored
from geosynth.ml.metrics import (
    PROTOCOLS,
    ConfusionMatrix,
    FeatureStats,
    Protocol,
    frechet_distance_of,
    pooled_features,
)
from geosynth.ml.training.checkpoint import find_checkpoint, load_generator, load_unet
from geosynth.ml.training.distributed import resolve_device
from geosynth.names import LABELS
from geosynth.store import GeoStore, open_store

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # (batches done, batches in all)


@dataclass(frozen=True)
class EvalResult:
    """The output folder and what ``metrics.json`` holds."""

    out: Path
    metrics: dict[str, Any]


# --------------------------------------------------------------------------- setup


def _role(name: str, gan, generator_run: str) -> str:
    if name == gan.output:
        return f"the output of {generator_run}"
    if name in gan.inputs:
        return f"an input of {generator_run}"
    return "the ground truth"


def check_compatible(
    generator_run: str, generator, gan, unet_run: str, unet, ucfg, store: GeoStore
) -> None:
    """Refuse a generator, U-Net and store that do not fit together, naming what differs.

    ``generator``/``gan`` and ``unet``/``ucfg``: the networks and run configs
    of :func:`~geosynth.ml.training.checkpoint.load_generator` and ``load_unet``.
    """
    if gan.output != ucfg.input:
        raise UsageError(
            f"the generator {generator_run} synthesizes {gan.output!r} but the U-Net {unet_run} "
            f"segments {ucfg.input!r}; score it with a U-Net trained with --input {gan.output}"
        )
    for name in dict.fromkeys((*gan.inputs, gan.output, LABELS)):
        if name not in store.modalities:
            raise UsageError(
                f"store {store.path} has no {name!r} ({_role(name, gan, generator_run)}); "
                f"it has {', '.join(store.modalities)}"
            )
    k = store.num_classes
    gcfg, netcfg = generator.config, unet.config
    if netcfg.num_classes != k:
        raise DataError(
            f"the U-Net {unet_run} has {netcfg.num_classes} classes, store {store.path} {k}"
        )
    if LABELS in gan.inputs and gcfg.label_channels != k:
        raise DataError(
            f"the generator {generator_run} takes {gcfg.label_channels} classes, "
            f"store {store.path} has {k}"
        )
    out_channels = store.modality_spec(gan.output).channels
    for what, channels in (
        (f"the generator {generator_run} writes", gcfg.output_channels),
        (f"the U-Net {unet_run} reads", netcfg.in_channels),
    ):
        if channels != out_channels:
            raise DataError(
                f"{what} {channels} {gan.output} band(s); store {store.path} has {out_channels}"
            )
    raster = sum(store.modality_spec(n).channels for n in gan.inputs if n != LABELS)
    if raster != gcfg.raster_channels:
        raise DataError(
            f"the generator {generator_run} takes {gcfg.raster_channels} raster band(s); "
            f"its inputs {','.join(gan.inputs)} in store {store.path} have {raster}"
        )


def eval_window(crop: int | None, tile_shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The centre window ``(h, w)``: ``crop`` square, or the largest that fits (None).

    Both networks need edges that are multiples of ``multiple``.
    """
    th, tw = tile_shape
    if crop is None:
        h, w = th // multiple * multiple, tw // multiple * multiple
        if not (h and w):
            raise DataError(f"tiles of {th} x {tw} px are smaller than the networks' {multiple} px")
        if (h, w) != (th, tw):
            log.info("scoring the centre %d x %d px of the %d x %d px tiles", h, w, th, tw)
        return h, w
    if crop % multiple:
        raise UsageError(f"--crop {crop} must be a multiple of {multiple} (the networks' stride)")
    if crop > min(th, tw):
        raise UsageError(f"--crop {crop} is larger than the tiles ({th} x {tw} px)")
    return crop, crop


def grid_windows(
    window: tuple[int, int], tile_shape: tuple[int, int], n: int
) -> list[tuple[int, int]]:
    """``(row, col)`` of an ``n`` x ``n`` grid of ``window``-sized windows centred in the tile.

    Row-major order; the grid must fit the tile.
    """
    (h, w), (th, tw) = window, tile_shape
    if n < 1:
        raise UsageError(f"--fd-grid must be >= 1, got {n}")
    if n * h > th or n * w > tw:
        raise UsageError(
            f"--fd-grid {n}: {n} x {n} windows of {h} x {w} px do not fit the {th} x {tw} px tiles"
        )
    top, left = (th - n * h) // 2, (tw - n * w) // 2
    return [(top + i * h, left + j * w) for i in range(n) for j in range(n)]


class GridDataset(SynthesisDataset):
    """Evaluation samples of :func:`grid_windows`: sample ``i`` is window ``i // tiles`` of tile
    ``i % tiles``."""

    def __init__(self, *args, offsets: list[tuple[int, int]], tiles: int, **kwargs):
        super().__init__(*args, samples_per_epoch=tiles * len(offsets), **kwargs)
        self.offsets = list(offsets)

    def window(self, item: int) -> tuple[int, int, int, int, bool]:
        row, col = self.offsets[item // len(self.indices)]
        return row, col, *self.crop, False


@contextlib.contextmanager
def _deterministic_kernels(device: torch.device) -> Iterator[None]:
    """cuDNN without autotuning and with deterministic algorithms, restored afterwards."""
    before = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if device.type == "cuda":
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before


# --------------------------------------------------------------------------- scoring

SPECKLE_PIXELS = 2**23  # the speckle statistics keep at most this many window pixels (memory)


def spread(n: int, k: int) -> list[int]:
    """``min(n, k)`` positions of ``0..n-1`` spread evenly, first and last included (k >= 1)."""
    return np.unique(np.linspace(0, n - 1, min(n, max(k, 1))).round().astype(int)).tolist()


class _SpeckleWindows:
    """The real and synthesized SAR of the scored windows as :class:`~geosynth.analysis.sar_stats.Piece`
    with the ground truth and the validity mask, for :func:`~geosynth.analysis.sar_stats.class_stats`:
    the store's normalised values as the U-Net saw them (real: to float32 rounding;
    synthesized: clipped to [0, 1] as ``synthesize`` writes it), dB normalisation inverted.
    Only the samples ``keep`` (positions in the loader's order) are kept."""

    def __init__(self, store: GeoStore, keep: list[int]):

        self.norm = sar_normalisation(store)
        self.keep = set(keep)
        self.seen = 0
        self.pieces: list = []
        self.tiles: list[str] = []

    def add(self, batch: dict, fake: torch.Tensor) -> None:

        real = to_stored("sar", batch["sar"][:, 0]).numpy()  # (B, H, W) in [0, 1]
        synth = to_stored("sar", fake[:, 0]).cpu().numpy()  # (B, H, W)
        labels = batch[LABELS].argmax(1).to(torch.int16).numpy()  # (B, H, W) class ids
        valid = batch["sar_valid"][:, 0].numpy() if "sar_valid" in batch else labels >= 0
        for b, tile in enumerate(batch["tile"]):
            if self.seen + b in self.keep:
                self.tiles.append(tile)
                for kind, x in (("real", real[b]), ("synth", synth[b])):
                    self.pieces.append(
                        normalised_piece(kind, tile, x, labels[b], valid[b], self.norm)
                    )
        self.seen += len(batch["tile"])

    def section(self, store: GeoStore) -> tuple[dict, list]:
        """The ``speckle`` section of ``metrics.json`` and the per-class results."""

        results = class_stats(
            self.pieces, store.classes, erode_px=DEFAULT_ERODE_PX, min_pixels=MIN_PIXELS
        )
        section = speckle_section(
            results, erode_px=DEFAULT_ERODE_PX, min_pixels=MIN_PIXELS, tiles=self.tiles
        )
        return section, results


class _Scores:
    """The three confusion matrices and the real and synthesized features of one evaluation
    (and, for SAR, its windows for the speckle statistics)."""

    def __init__(self, num_classes: int, protocol: Protocol, speckle: _SpeckleWindows | None):
        self.protocol = protocol
        self.blocks = {key: ConfusionMatrix(num_classes, protocol.ignore) for key in BLOCKS}
        self.real = FeatureStats()
        self.fake = FeatureStats()
        self.speckle = speckle

    def update(self, gt, pred_real, pred_fake, mask, feats_real, feats_fake) -> None:
        self.blocks["real_gt"].update(pred_real, gt, mask)
        self.blocks["fake_gt"].update(pred_fake, gt, mask)
        # the real segmentation is the target (geosynth: only where the ground truth is labelled)
        if self.protocol.mask_unlabelled:
            mask = (gt != 0) if mask is None else (gt != 0) & mask
        self.blocks["fake_real"].update(pred_fake, pred_real, mask)
        self.real.update(feats_real)
        self.fake.update(feats_fake)


def _forward(batch: dict, generator, unet, gan, device: torch.device, protocol: Protocol):
    """The U-Net's outputs on the real and the synthesized images of a batch, and the
    synthesized images ``(B, C, H, W)`` in [-1, 1] as the U-Net saw them."""
    labels, raster = generator_inputs(batch, gan.inputs)  # (B, K, H, W), (B, R, H, W)
    labels, raster = (None if t is None else t.to(device) for t in (labels, raster))
    real = batch[gan.output].to(device)  # (B, C, H, W) in [-1, 1]
    conditions = batch.get("conditions")  # (B, D) when trained with --conditions
    extra = () if conditions is None else (conditions.to(device),)
    fake = from_generator(gan, generator(labels, raster, *extra).float())  # (B, C, H, W)
    if protocol.quantize:
        fake = quantize(gan.output, fake)  # as stored: 8-bit rgb
    return unet(real), unet(fake), fake


@torch.inference_mode()
def _score_batch(batch: dict, generator, unet, gan, device: torch.device, scores: _Scores) -> None:
    protocol = scores.protocol
    gt = batch[LABELS].argmax(1).to(device)  # (B, H, W) class ids from the one-hot
    mask = None
    if protocol.mask_unlabelled and gan.output == "sar":
        mask = batch["sar_valid"][:, 0].to(device)  # (B, H, W)
    out_real, out_fake, fake = _forward(batch, generator, unet, gan, device, protocol)
    if scores.speckle is not None:
        scores.speckle.add(batch, fake)
    scores.update(
        gt,
        protocol.predict(out_real.logits),
        protocol.predict(out_fake.logits),
        mask,
        pooled_features(out_real.features),  # (B, D)
        pooled_features(out_fake.features),
    )


@torch.inference_mode()
def _grid_features(loader, generator, unet, gan, device, protocol) -> tuple:
    """Pooled U-Net features ``(N, D)`` of the real and synthesized images of every window."""
    real, fake = FeatureStats(), FeatureStats()
    for batch in loader:
        out_real, out_fake, _ = _forward(batch, generator, unet, gan, device, protocol)
        real.update(pooled_features(out_real.features))
        fake.update(pooled_features(out_fake.features))
    return real.features, fake.features


def evaluate(
    generator_run: str | os.PathLike,
    unet_run: str | os.PathLike,
    store: str | os.PathLike,
    split: str | None,
    out: str | os.PathLike,
    *,
    crop: int | None = None,
    batch_size: int = 1,
    device: str = "auto",
    workers: int = 0,
    name: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    storage_options: dict | None = None,
    protocol: str = "geosynth",
    fd_grid: int = 0,
) -> EvalResult:
    """Score the generator of ``generator_run`` on ``split`` of ``store`` with ``unet_run``'s U-Net.

    ``protocol``: ``"geosynth"`` or ``"paper"`` (module docstring);
    ``crop``: edge of the centre window scored in every tile (None:
    ``geosynth`` the largest window that fits, a multiple of the networks'
    stride; ``paper`` the generator's training crop); ``fd_grid``: also the
    Frechet distance over an N x N grid of such windows per tile (0: not);
    ``name``: the run's name in the table (default: the folder name of
    ``out``). An ``out`` that already holds results is refused unless
    ``overwrite``. See the module docstring for what is written. A diffusion
    generator samples its images from torch's generator seeded with 0: the same
    evaluation gives the same numbers.
    """
    torch.manual_seed(0)
    out = Path(out)
    if (out / METRICS_JSON).exists() and not overwrite:
        raise UsageError(f"{out} already holds an evaluation ({METRICS_JSON}); pass --overwrite")
    if batch_size < 1 or workers < 0 or fd_grid < 0:
        raise UsageError(
            f"--batch-size must be >= 1, --workers and --fd-grid >= 0, got {batch_size}, "
            f"{workers}, {fd_grid}"
        )
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    proto = PROTOCOLS[protocol]
    check_writable(out, f"the output folder {out}")  # before the work, not after it
    # of a killed evaluation: beside a new --out, or inside an existing one
    remove_stale_temporaries(out.absolute().parent, glob_escape(out.absolute().name))
    remove_stale_temporaries(out, "metrics")
    generator_run, unet_run = str(generator_run), str(unet_run)
    dev = resolve_device(device)
    generator, gan = load_generator(generator_run, map_location=dev)
    unet, ucfg = load_unet(unet_run, map_location=dev)
    opened = open_store(store, storage_options=storage_options)
    check_compatible(generator_run, generator, gan, unet_run, unet, ucfg, opened)
    for run, cfg in ((generator_run, gan), (unet_run, ucfg)):
        if cfg.resize:
            log.warning(
                "%s was trained on crops resized to %d px; scoring at the store's scale",
                run,
                cfg.resize,
            )
    multiple = math.lcm(generator.config.size_multiple, 2**unet.config.depth)
    if crop is None and protocol == "paper":
        crop = gan.crop  # the authors' test transform: the centre crop of the training size
        log.info("protocol paper: scoring the centre %d px of every tile (the training crop)", crop)
    window = eval_window(crop, opened.tile_shape, multiple)
    offsets = grid_windows(window, opened.tile_shape, fd_grid) if fd_grid else []
    inputs = gan.inputs if LABELS in gan.inputs else (LABELS, *gan.inputs)  # + ground truth
    dataset = SynthesisDataset(
        opened, split, inputs=inputs, output=gan.output, crop=window, flip=False,
        train=False, dem_norm=gan.dem_norm, conditions=gan.conditions,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    log.info(
        "evaluating %s (%s, %s -> %s) on %d tiles of split %r, %d x %d px, on %s",
        generator_run, gan.generator, ",".join(gan.inputs), gan.output, len(dataset), split,
        *window, dev,
    )  # fmt: skip
    speckle = None
    if gan.output == "sar":
        keep = spread(len(dataset), SPECKLE_PIXELS // (window[0] * window[1]))
        if len(keep) < len(dataset):
            log.info("speckle statistics on %d of the %d windows", len(keep), len(dataset))
        speckle = _SpeckleWindows(opened, keep)
    scores = _Scores(opened.num_classes, proto, speckle)
    grid = None
    with _deterministic_kernels(dev):
        for done, batch in enumerate(loader, start=1):
            _score_batch(batch, generator, unet, gan, dev, scores)
            if progress is not None:
                progress(done, len(loader))
        if offsets:
            grid_set = GridDataset(
                opened, split, inputs=inputs, output=gan.output, crop=window, flip=False,
                train=False, dem_norm=gan.dem_norm, offsets=offsets, tiles=len(dataset.indices),
            )  # fmt: skip
            log.info("Frechet distance over %d windows per tile", len(offsets))
            grid_loader = DataLoader(grid_set, batch_size=batch_size, num_workers=workers)
            grid = _grid_features(grid_loader, generator, unet, gan, dev, proto)
    metrics = _metrics(
        scores, opened, dataset, window, generator_run, gan, generator, unet_run, ucfg
    )
    metrics["frechet"] = _frechet_entries(metrics, window, grid, fd_grid)
    metrics["name"] = name or out.resolve().name
    extra = None
    if speckle is not None:
        from geosynth.analysis.sar_stats import write_speckle

        metrics["speckle"], speckle_results = speckle.section(opened)
        extra = functools.partial(write_speckle, speckle_results)
    write_reports(out, metrics, extra)
    log.info("%s", summary(metrics))
    if speckle is not None:
        log.info("%s", speckle_line(metrics))
    return EvalResult(out, metrics)


# --------------------------------------------------------------------------- results


def _class_names(store: GeoStore) -> list[dict]:
    """``[{"id", "key", "name"}]`` of the classes 1..K-1 (keys from the store's class table)."""
    table = {c.id: c for c in store.classes.classes}
    return [
        {
            "id": i,
            "key": table[i].key if i in table else f"class{i}",
            "name": table[i].name if i in table else f"class {i}",
        }
        for i in range(1, store.num_classes)
    ]


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


FEATURES = "U-Net encoder levels, each averaged over space, concatenated"


def _fd_entry(real, fake, window, per_tile: int) -> dict:
    return {
        "value": _finite(frechet_distance_of(real, fake)),
        "samples": int(real.shape[0]),
        "feature_dim": int(real.shape[1]),
        "reliable": bool(real.shape[0] > real.shape[1]),
        "window": list(window),
        "windows_per_tile": per_tile,
        "features": FEATURES,
    }


def _tile_frechet(real: np.ndarray, fake: np.ndarray) -> float | None:
    """The Frechet distance over one vector per tile; None (and a warning) for a single tile,
    whose covariance does not exist (``--fd-grid N`` gives N x N windows per tile)."""
    if real.shape[0] < 2:
        log.warning("one tile scored: no Frechet distance (--fd-grid 3 scores 9 windows of it)")
        return None
    return _finite(frechet_distance_of(real, fake))


def _frechet_entries(metrics: dict, window, grid, n: int) -> dict:
    """``{"tile": ..., "grid": ...}``: the Frechet distances with what produced them (the
    tile distance as :func:`_metrics` computed it: once, so its warnings print once)."""
    entries = {"tile": {
        "value": metrics["frechet_distance"], "samples": metrics["fd_samples"],
        "feature_dim": metrics["feature_dim"], "reliable": metrics["fd_reliable"],
        "window": list(window), "windows_per_tile": 1, "features": FEATURES,
    }}  # fmt: skip
    if grid is not None:
        entries["grid"] = _fd_entry(*grid, window, n * n)
    return entries


def _metrics(scores, store, dataset, window, generator_run, gan, generator, unet_run, ucfg) -> dict:
    classes = _class_names(store)
    protocol = scores.protocol
    blocks = {}
    for key, (reference, title) in BLOCKS.items():
        counts = scores.blocks[key].counts
        s = protocol.scores(counts)
        blocks[key] = {
            "title": title,
            "protocol": protocol.name,
            "window": list(window),
            "reference": reference,
            "miou": _finite(s["miou"]),
            "pixel_acc": _finite(s["pixel_acc"]),
            "pixels": s["pixels"],
            "iou": {c["key"]: _finite(s["iou"][c["id"]]) for c in classes},
            "confusion": counts.tolist(),
        }
    real, fake = scores.real.features, scores.fake.features
    return {
        "format": FORMAT,
        "protocol": {"name": protocol.name, "description": protocol.description},
        "generator": {
            "run": generator_run,
            "checkpoint": str(find_checkpoint(generator_run)),
            "kind": gan.generator,
            "inputs": list(gan.inputs),
            "output": gan.output,
            "capacity": generator.config.capacity,
            "dem_norm": gan.dem_norm,
            "image_range": getattr(gan, "image_range", "symmetric"),
        },
        "unet": {
            "run": unet_run,
            "checkpoint": str(find_checkpoint(unet_run)),
            "input": ucfg.input,
            "base_channels": ucfg.base_channels,
            "loss": getattr(ucfg, "loss", "ce"),
        },
        "store": str(store.path),
        "split": dataset.split,
        "window": list(window),
        "tiles": list(dataset.tile_ids),
        "classes": classes,
        "blocks": blocks,
        "frechet_distance": _tile_frechet(real, fake),
        "feature_dim": int(real.shape[1]),
        "fd_samples": int(real.shape[0]),
        "fd_reliable": bool(real.shape[0] > real.shape[1]),
        "geosynth_version": __version__,
    }
