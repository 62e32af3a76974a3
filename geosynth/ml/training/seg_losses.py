"""Losses of the U-Net scorer that cope with class imbalance: class weights and focal loss.

The paper leaves class imbalance "outside the scope"; its Fig. 5 shows IoU
tracking class frequency. Two standard remedies, for both loss families of
the scorer (softmax cross entropy over the classes 1..K-1 with class 0
ignored, and the authors' per-channel binary cross entropy on the one-hot map
with class 0 as a channel):

* **class weights** from the pixel counts ``n_c`` of the training split
  (the store's ``class_hist``), over the classes 1..K-1 that occur:

  - ``inverse``: ``w_c = N / (K' n_c)`` with ``N = sum n_c`` and ``K'`` the
    number of occurring classes (a class of average frequency weighs 1, and
    the pixel-weighted mean of the weights is 1);
  - ``median`` (median frequency balancing, Eigen & Fergus 2015):
    ``w_c = median(f) / f_c`` with ``f_c = n_c / N``;
  - ``sqrt``: the square root of the median weights, ``w_c = sqrt(median(f) / f_c)``:
    a softer balance that keeps common classes from being painted over by rare ones
    on short runs (the demo's scorer);
  - ``none``: every weight 1.

  Class 0 (unlabelled) weighs 0; a class absent from the training split
  weighs 1 (it never is a target of the softmax loss; in the binary family it
  stays an ordinary negative).
* **focal loss** (Lin et al. 2017): every pixel's term is scaled by
  ``(1 - p_t)^gamma`` with ``p_t`` the probability given to its true class
  (softmax) or to its true value of each channel (binary), so well-classified
  pixels count less. ``gamma = 0`` is the plain (weighted) loss.

Reduction: the softmax family divides the weighted sum by the sum of the
weights of the labelled pixels (PyTorch's weighted ``mean``), so weights move
the balance between classes, not the loss scale; the binary family averages
over pixels and channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.errors import DataError, UsageError
from geosynth.names import CLASS_WEIGHTINGS

IGNORE = 0  # unlabelled


def class_weights(hist: Sequence[int] | np.ndarray, mode: str) -> np.ndarray:
    """Weights ``(K,)`` of the classes from their pixel counts ``hist`` (see the module doc)."""
    if mode not in CLASS_WEIGHTINGS:
        raise UsageError(
            f"class weights must be one of {', '.join(CLASS_WEIGHTINGS)}, not {mode!r}"
        )
    counts = np.asarray(hist, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2 or (counts < 0).any():
        raise DataError(f"a class histogram needs >= 2 non-negative counts, got {counts!r}")
    weights = np.ones_like(counts)
    weights[IGNORE] = 0.0
    if mode == "none":
        return weights
    labelled = counts.copy()
    labelled[IGNORE] = 0
    present = labelled > 0
    if not present.any():
        raise DataError("the class histogram has no labelled pixels: no class weights")
    freq = labelled[present] / labelled.sum()
    if mode == "inverse":
        weights[present] = 1.0 / (present.sum() * freq)
    elif mode == "median":  # median frequency balancing
        weights[present] = np.median(freq) / freq
    else:  # "sqrt": its square root, a softer balance (rare classes gain, common ones lose less)
        weights[present] = np.sqrt(np.median(freq) / freq)
    return weights


def split_histogram(store, split: str | None) -> np.ndarray:
    """Pixel counts per class of the complete tiles of ``split`` (the store's ``class_hist``)."""
    rows = store.tiles(split)
    if not rows:
        raise DataError(f"store {store.path} has no complete tile in split {split!r}")
    return store.class_hist()[rows].sum(axis=0)


def focal_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 0.0,
) -> torch.Tensor:
    """Softmax family: ``-w_t (1 - p_t)^gamma log p_t`` over the labelled pixels (class 0 ignored).

    ``logits`` (B, K, H, W), ``target`` (B, H, W) class ids. ``gamma = 0`` with no
    weight is ``F.cross_entropy(..., ignore_index=0)``; 0 (not NaN) for a batch
    without labelled pixels.
    """
    logp = F.log_softmax(logits.float(), dim=1)  # (B, K, H, W)
    labelled = target != IGNORE  # (B, H, W)
    safe = torch.where(labelled, target, torch.zeros_like(target))
    logp_t = logp.gather(1, safe[:, None])[:, 0]  # (B, H, W)
    w = labelled.float()
    if weight is not None:
        w = w * weight.to(logits.device, torch.float32)[safe]
    term = -logp_t
    if gamma:
        term = term * (1 - logp_t.exp()).clamp_min(0) ** gamma
    return (w * term).sum() / w.sum().clamp_min(torch.finfo(torch.float32).tiny)


def focal_binary_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    gamma: float = 0.0,
) -> torch.Tensor:
    """Binary family: per-channel BCE on the one-hot map (class 0 a channel, as the authors').

    ``target``: class ids (B, H, W) or the one-hot map (B, K, H, W). The term of
    channel ``c`` is scaled by ``weight[c]`` where the pixel is of class ``c``
    (the positives; negatives weigh 1) and by ``(1 - p_t)^gamma``. Mean over
    pixels and channels; ``gamma = 0`` with no weight is
    ``F.binary_cross_entropy_with_logits``. Class 0 is a channel here, so its
    positives weigh 1 whatever ``weight[0]`` says.
    """
    logits = logits.float()
    k = logits.shape[1]
    if target.dim() == 3:
        target = F.one_hot(target, k).permute(0, 3, 1, 2)  # (B, K, H, W)
    target = target.float()
    term = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma:
        p_t = torch.exp(-term)  # the probability of the true value of each channel
        term = term * (1 - p_t).clamp_min(0) ** gamma
    if weight is not None:
        w = weight.to(logits.device, torch.float32).clone()
        w[IGNORE] = 1.0
        term = term * (1 + target * (w.view(1, k, 1, 1) - 1))
    return term.mean()


class SegmentationLoss:
    """The U-Net's loss as configured: ``kind`` (ce, focal, ...), class weights, focal gamma."""

    def __init__(self, kind: str, weight: torch.Tensor | None = None, gamma: float = 2.0):
        if kind not in LOSS_FAMILIES:
            raise UsageError(f"loss must be one of {', '.join(LOSS_FAMILIES)}, not {kind!r}")
        family, focal = LOSS_FAMILIES[kind]
        self.kind = kind
        self.fn = family
        self.weight = weight
        self.gamma = float(gamma) if focal else 0.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, target, self.weight, self.gamma)


#: ``--loss`` -> (family, focal): the softmax family with class 0 ignored, plain or focal,
#: and the authors' binary family (their BCE; class weights apply to its positives).
LOSS_FAMILIES = {
    "ce": (focal_cross_entropy, False),
    "bce": (focal_binary_cross_entropy, False),
    "focal": (focal_cross_entropy, True),
}
