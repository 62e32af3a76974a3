"""Scores of synthesized images: segmentation agreement and the Frechet distance of U-Net features.

Segmentation (the paper's Table III): a :class:`ConfusionMatrix` is
accumulated over every evaluated pixel whose ground-truth class is not 0
(unlabelled); rows are the reference (target) classes, columns the
predicted ones. From it:

- per-class IoU ``TP / (TP + FP + FN)`` for the classes 1..K-1, NaN for a
  class that occurs neither in the target nor in the prediction;
- mIoU: the mean of the IoUs that are not NaN (as the U-Net's validation
  during training, :mod:`geosynth.ml.training.train_unet`);
- pixel accuracy: correct pixels / counted pixels.

That is the ``geosynth`` protocol. The ``paper`` protocol reproduces the
code published with the paper (pytorch-ignite's ``ConfusionMatrix``,
``IoU``/``mIoU`` with ``ignore_index=0`` and ``Accuracy``): every pixel
enters the confusion matrix, ground truth 0 included; the prediction is the
argmax over all K logits (0 included); the IoU of class c is
``TP / (TP + FP + FN + 1e-15)``, so a class that never occurs scores 0;
``ignore_index`` only drops entry 0 from that vector before the mean; pixel
accuracy is the trace over all pixels (:func:`ignite_scores`,
:data:`PROTOCOLS`).

Frechet distance (FID-style, on the scorer U-Net instead of Inception, as the
code published with the paper does): every encoder level of the U-Net is
average-pooled over space and the levels are concatenated, one feature vector
per image; the real and the synthesized vectors are modelled as Gaussians and

    d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)),

computed in float64 with :func:`scipy.linalg.sqrtm` and pytorch-fid's
safeguards: when the product is singular (or its root not finite), ``eps`` is
added to the diagonal of both covariances; a square root with a large
imaginary part is an error, a small one is dropped. With no more samples than
feature dimensions the covariances are singular and the distance is biased:
a warning says so.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg

from geosynth.errors import DataError, UsageError

log = logging.getLogger(__name__)

IGNORE = 0  # class id of unlabelled pixels: never a target, never predicted
FD_EPS = 1e-6  # added to the covariances' diagonal when their product is singular
IMAG_ATOL = 1e-3  # largest imaginary part on the root's diagonal that counts as rounding
IGNITE_EPS = 1e-15  # pytorch-ignite's IoU denominator offset: an absent class scores 0


# --------------------------------------------------------------------------- segmentation


def predict_classes(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` logits -> ``(B, H, W)`` class ids in 1..K-1 (never the unlabelled 0)."""
    return logits[:, 1:].argmax(1) + 1


def predict_all_classes(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` logits -> ``(B, H, W)`` class ids in 0..K-1 (the paper's code: any class)."""
    return logits.argmax(1)


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    mask: torch.Tensor | None = None,
    ignore: int | None = IGNORE,
) -> torch.Tensor:
    """``(K, K)`` int64 pixel counts, rows = target class, columns = predicted class.

    Pixels whose target is ``ignore`` (0, unlabelled; None: no class is left
    out) or where ``mask`` is False are left out. ``pred``, ``target`` and ``mask`` share one shape (any) and device;
    the counts are on that device. CPU tensors are counted with numpy's
    ``bincount`` (several times faster than torch's on the CPU; see
    ``benchmarks/evaluate_metrics.py``).
    """
    if pred.shape != target.shape or (mask is not None and mask.shape != target.shape):
        shapes = [tuple(t.shape) for t in (pred, target, mask) if t is not None]
        raise UsageError(f"prediction, target and mask shapes differ: {shapes}")
    if pred.device.type == "cpu":
        return _counts_numpy(pred, target, mask, int(num_classes), ignore)
    return _counts_torch(pred, target, mask, int(num_classes), ignore)


def _counts_numpy(pred, target, mask, k: int, ignore: int | None = IGNORE) -> torch.Tensor:
    p, t = pred.numpy(), target.numpy()
    _check_ids(p.min(initial=0), p.max(initial=0), t.max(initial=0), k)
    valid = t != (-1 if ignore is None else ignore)
    if mask is not None:
        valid &= mask.numpy().astype(bool, copy=False)
    dump = k * k  # left-out pixels go to one extra bin
    index = np.where(valid, t.astype(np.int64) * k + p, dump)
    counts = np.bincount(index.ravel(), minlength=dump + 1)[:dump]
    return torch.from_numpy(counts.astype(np.int64).reshape(k, k))


def _counts_torch(pred, target, mask, k: int, ignore: int | None = IGNORE) -> torch.Tensor:
    """The same on the tensors' device, without boolean indexing (a device sync)."""
    if pred.numel():
        low, high = torch.aminmax(pred)
        _check_ids(low, high, target.max(), k)
    valid = target != (-1 if ignore is None else ignore)
    if mask is not None:
        valid &= mask.bool()
    dump = k * k
    index = torch.where(valid, target.long() * k + pred.long(), dump)
    counts = torch.bincount(index.reshape(-1), minlength=dump + 1)[:dump]
    return counts.to(torch.int64).reshape(k, k)


def _check_ids(pred_low, pred_high, target_high, num_classes: int) -> None:
    if int(pred_low) < 0 or max(int(pred_high), int(target_high)) >= num_classes:
        raise DataError(f"class ids must lie in 0..{num_classes - 1}")


class ConfusionMatrix:
    """Accumulates :func:`confusion_matrix` counts over batches (on the batches' device).

    ``ignore``: the target class left out (None: every pixel counts, as ignite).
    """

    def __init__(self, num_classes: int, ignore: int | None = IGNORE):
        if num_classes < 2:
            raise UsageError(
                f"num_classes must be >= 2 (unlabelled and one class), got {num_classes}"
            )
        self.num_classes = int(num_classes)
        self.ignore = ignore
        self._counts: torch.Tensor | None = None

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        counts = confusion_matrix(pred, target, self.num_classes, mask, self.ignore)
        self._counts = counts if self._counts is None else self._counts + counts.to(self._counts)

    @property
    def counts(self) -> np.ndarray:
        """``(K, K)`` int64 counts so far."""
        if self._counts is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self._counts.cpu().numpy().astype(np.int64)


def iou_per_class(counts: np.ndarray) -> np.ndarray:
    """``(K,)`` float64 IoU per class id from a confusion matrix; NaN where a class is absent.

    Class 0 (unlabelled) is always NaN.
    """
    conf = np.asarray(counts, dtype=np.float64)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    iou[IGNORE] = np.nan
    return iou


def segmentation_scores(counts: np.ndarray) -> dict:
    """``{"miou", "pixel_acc", "iou" (K,), "pixels"}`` of a confusion matrix (NaN when empty)."""
    conf = np.asarray(counts, dtype=np.int64)
    iou = iou_per_class(conf)
    present = iou[~np.isnan(iou)]
    total = int(conf.sum())
    return {
        "miou": float(present.mean()) if present.size else float("nan"),
        "pixel_acc": float(np.trace(conf) / total) if total else float("nan"),
        "iou": iou,
        "pixels": total,
    }


def ignite_scores(counts: np.ndarray, ignore_index: int = IGNORE) -> dict:
    """The paper's scores of a confusion matrix, as pytorch-ignite computes them.

    ``IoU = diag / (row sums + column sums - diag + 1e-15)`` in float64 for
    every class (an absent class: 0, not NaN); ``miou``: the mean over all
    classes but ``ignore_index``; ``pixel_acc``: trace / all counted pixels.
    The returned ``iou`` is ``(K,)`` with NaN at ``ignore_index`` (no score),
    the same shape as :func:`segmentation_scores`.
    """
    conf = np.asarray(counts, dtype=np.float64)
    inter = np.diag(conf)
    iou = inter / (conf.sum(1) + conf.sum(0) - inter + IGNITE_EPS)
    kept = np.delete(iou, ignore_index)
    iou[ignore_index] = np.nan
    total = int(np.asarray(counts).sum())
    return {
        "miou": float(kept.mean()),
        "pixel_acc": float(np.trace(conf) / total) if total else float("nan"),
        "iou": iou,
        "pixels": total,
    }


@dataclass(frozen=True)
class Protocol:
    """How logits and targets become segmentation scores (``evaluate --protocol``).

    ``predict``: logits -> class ids; ``ignore``: the target class left out of
    the confusion matrix (None: every pixel); ``mask_unlabelled``: whether the
    fake-vs-real block also leaves out pixels unlabelled in the ground truth
    (and SAR pixels without data); ``quantize``: whether the synthesized image
    is rounded as stored (8-bit rgb) before it is segmented; ``scores``: counts
    -> ``{"miou", "pixel_acc", "iou", "pixels"}``; ``description``: for the
    metrics file.
    """

    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    ignore: int | None
    mask_unlabelled: bool
    quantize: bool
    scores: Callable[[np.ndarray], dict]
    description: str


PROTOCOLS = {
    "paper": Protocol(
        "paper", predict_all_classes, None, False, False, ignite_scores,
        "the code published with the paper (pytorch-ignite): every pixel counts, ground "
        "truth 0 included; prediction = argmax over all classes; IoU = TP / (TP + FP + FN + "
        "1e-15), an absent class scores 0 and counts in the mean; mean over classes 1..K-1; "
        "pixel accuracy over all pixels; the synthesized image unrounded",
    ),
    "geosynth": Protocol(
        "geosynth", predict_classes, IGNORE, True, True, segmentation_scores,
        "geosynth: pixels unlabelled in the ground truth (and SAR pixels without data) are "
        "left out; prediction = argmax over classes 1..K-1; IoU = TP / (TP + FP + FN), NaN "
        "for a class absent from target and prediction, left out of the mean; pixel accuracy "
        "over the counted pixels; the synthesized image rounded as stored (8-bit rgb)",
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- features


def pooled_features(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Encoder levels ``[(B, C_i, H_i, W_i), ...]`` -> ``(B, sum C_i)``: spatial means, concatenated."""
    return torch.cat([f.float().mean(dim=(2, 3)) for f in features], dim=1)


class FeatureStats:
    """Collects feature vectors ``(B, D)`` batch by batch in float64 numpy."""

    def __init__(self):
        self._rows: list[np.ndarray] = []

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().double().numpy()
        rows = np.asarray(features, dtype=np.float64)
        if rows.ndim != 2:
            raise UsageError(f"features must be (samples, dims), got shape {rows.shape}")
        self._rows.append(rows)

    @property
    def features(self) -> np.ndarray:
        """``(N, D)`` float64."""
        if not self._rows:
            return np.zeros((0, 0))
        return np.concatenate(self._rows)

    def statistics(self, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(D,)`` and covariance ``(D, D)``; see :func:`gaussian_statistics`."""
        return gaussian_statistics(self.features, name)


def gaussian_statistics(
    features: np.ndarray, name: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` samples, in float64.

    At least two samples are needed; with ``N <= D`` the covariance is
    singular and a warning says the distance will be biased.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataError(f"{name}: the Frechet distance needs at least 2 samples, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise DataError(f"{name}: features hold NaN or infinite values")
    n, d = x.shape
    if n <= d:
        log.warning(
            "%s: %d samples do not exceed the feature dimension %d; the covariance is "
            "singular and the Frechet distance is biased (evaluate more tiles or smaller crops "
            "for a reliable value; compare only distances with the same sample count)",
            name,
            n,
            d,
        )
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrtm(product: np.ndarray) -> tuple[np.ndarray, bool]:
    """``sqrtm(product)`` and whether it is trustworthy (finite, product not singular)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(product)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    return root, bool(np.isfinite(root).all()) and not singular


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = FD_EPS,
) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (float64).

    When ``sigma1 @ sigma2`` is singular or its root not finite, ``eps`` is
    added to both diagonals (logged). A root whose diagonal has an imaginary
    part above 1e-3 raises :class:`DataError` (the covariances are not valid).
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise UsageError(
            f"mismatched statistics: means {mu1.shape}, {mu2.shape}; covariances {s1.shape}, {s2.shape}"
        )
    diff = mu1 - mu2
    covmean, ok = _sqrtm(s1 @ s2)
    if not ok:
        log.warning(
            "the covariance product is singular; adding %g to the diagonal of both covariances", eps
        )
        offset = np.eye(d) * eps
        covmean, _ = _sqrtm((s1 + offset) @ (s2 + offset))
        if not np.isfinite(covmean).all():
            raise DataError("the Frechet distance is not finite even with the epsilon fallback")
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag)
        if not np.allclose(imag, 0, atol=IMAG_ATOL):
            raise DataError(
                f"the square root of the covariance product has an imaginary component of "
                f"{imag.max():.3g} (covariances not positive semi-definite?)"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def frechet_distance_of(real: np.ndarray, fake: np.ndarray, eps: float = FD_EPS) -> float:
    """Frechet distance between two ``(N, D)`` feature samples."""
    mu1, s1 = gaussian_statistics(real, "real features")
    mu2, s2 = gaussian_statistics(fake, "synthesized features")
    return frechet_distance(mu1, s1, mu2, s2, eps)
