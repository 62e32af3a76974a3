"""Speckle statistics of SAR intensity over homogeneous areas: the estimators and fits.

SAR intensity over an area of constant backscatter ``mu`` with fully developed
speckle of ``L`` looks is Gamma distributed, ``I ~ Gamma(L, mu / L)``: its
equivalent number of looks ``ENL = mean^2 / var`` equals ``L`` and the
amplitude ``A = sqrt(I)`` has the coefficient of variation
:func:`cv_amplitude_theory`. Where the backscatter itself varies (texture,
``mu * tau`` with ``tau ~ Gamma(alpha, 1 / alpha)``) the intensity is K
distributed with shapes ``L`` and ``alpha``; the K distribution is symmetric in
the two shapes, so a fit with both free returns them unordered and this module
reports the smaller one as the looks (texture weaker than speckle, ``alpha >=
L``, true of homogeneous areas); give ``looks`` to fix ``L`` and fit ``alpha``
alone.

Fits: the Gamma by maximum likelihood (``L`` from ``log L - digamma(L) =
log mean - mean log``), the K by the method of log-cumulants (Nicolas 2002:
``var log I = trigamma(L) + trigamma(alpha)``, third cumulant with tetragamma),
goodness of fit by the Kolmogorov-Smirnov distance (the K cdf by
generalised Gauss-Laguerre quadrature over the texture). The spatial
autocorrelation of the standardised intensity at lags 1..5 tells white
speckle (near 0 beyond lag 0) from smoothed images.

numpy and scipy only; no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage, optimize, special

from geosynth.catalog import load_catalog

MAX_SHAPE = 1000.0  # shapes beyond this are reported as this (the K is then a Gamma)
KS_SAMPLE = 20000  # pixels drawn (seeded) for the KS distances and the log-cumulant fits
QUADRATURE_NODES = 64
LAGS = (1, 2, 3, 4, 5)
LOCAL_WINDOW_PX = 11  # window of the local mean that local_enl divides by


# --------------------------------------------------------------------------- amplitude and dB


def amplitude_from_normalised(
    x: np.ndarray, db_factor: float | None = None, divisor: float | None = None
) -> np.ndarray:
    """Invert the store's SAR normalisation ``x = db_factor * log10(A) / divisor``:
    ``A = 10 ** (divisor * x / db_factor)``, float64; constants not given are the catalog's
    (``normalisation.geonrw_sar``: ``10^(100 x / 20)``).

    Values clipped by the normalisation do not come back: ``x = 0`` returns ``A = 1``
    for every amplitude <= 1, ``x = 1`` returns ``10^5`` for every larger one.
    """
    norm = load_catalog().sar
    db_factor = norm.db_factor if db_factor is None else db_factor
    divisor = norm.divisor if divisor is None else divisor
    return np.power(10.0, divisor * np.asarray(x, dtype=np.float64) / db_factor)


def amplitude_from_db(db: np.ndarray, db_factor: float | None = None) -> np.ndarray:
    """``A = 10 ** (dB / db_factor)`` (dB as ``20 log10 A``, what ``synthesize --sar-db`` writes;
    ``db_factor`` not given: the catalog's)."""
    db_factor = load_catalog().sar.db_factor if db_factor is None else db_factor
    return np.power(10.0, np.asarray(db, dtype=np.float64) / db_factor)


# --------------------------------------------------------------------------- masks


def homogeneous_masks(
    labels: np.ndarray, valid: np.ndarray | None, classes, erode_px: int
) -> dict[int, np.ndarray]:
    """Per class id: its pixels that are ``valid`` and at least ``erode_px`` pixels (city
    block) away from any other class, from invalid pixels and from the image border."""
    labels = np.asarray(labels)
    ok = np.ones(labels.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    out = {}
    for c in classes:
        mask = (labels == c) & ok
        if erode_px > 0 and mask.any():
            mask = ndimage.binary_erosion(mask, iterations=erode_px, border_value=0)
        out[int(c)] = mask
    return out


# --------------------------------------------------------------------------- moments


def enl(intensity: np.ndarray) -> float:
    """Equivalent number of looks ``mean^2 / var`` of intensity (NaN for fewer than 2 pixels)."""
    values = np.asarray(intensity, dtype=np.float64).ravel()
    if values.size < 2:
        return math.nan
    var = values.var()
    return float(values.mean() ** 2 / var) if var > 0 else math.inf


def local_ratio(image: np.ndarray, mask: np.ndarray, window: int = LOCAL_WINDOW_PX):
    """``I / local mean of I`` over ``window`` x ``window`` squares lying wholly in ``mask``
    (the pixels whose square leaves the mask are left out): a slowly varying backscatter
    (slopes, gradual texture) divides out, the speckle stays."""
    image = np.asarray(image, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    inside = ndimage.minimum_filter(m, size=window, mode="constant", cval=0) & m
    if not inside.any():
        return np.zeros(0)
    local = ndimage.uniform_filter(np.where(m, image, 0.0), size=window, mode="constant")
    return image[inside] / local[inside]


def local_enl(pieces, window: int = LOCAL_WINDOW_PX) -> float:
    """ENL of :func:`local_ratio` pooled over ``[(image, mask)]``: the looks of the speckle
    alone where the class ENL also counts the variation of the backscatter within a class.
    The local mean of ``N = window^2`` pixels includes the pixel itself, which biases this
    estimate by about ``1 / N`` (under 1 % for 11 x 11)."""
    ratios = [local_ratio(i, m, window) for i, m in pieces]
    ratios = [r[np.isfinite(r)] for r in ratios if r.size]
    return enl(np.concatenate(ratios)) if ratios else math.nan


def cv_amplitude(amplitude: np.ndarray) -> float:
    """Coefficient of variation ``std / mean`` of amplitude."""
    values = np.asarray(amplitude, dtype=np.float64).ravel()
    if values.size < 2 or values.mean() <= 0:
        return math.nan
    return float(values.std() / values.mean())


def cv_amplitude_theory(looks: float) -> float:
    """CV of the amplitude of ``looks``-look Gamma speckle:
    ``sqrt(L Gamma(L)^2 / Gamma(L + 1/2)^2 - 1)`` (0.523 for one look)."""
    log_ratio = 2.0 * (special.gammaln(looks) - special.gammaln(looks + 0.5)) + math.log(looks)
    return math.sqrt(math.expm1(log_ratio))


# --------------------------------------------------------------------------- Gamma


@dataclass(frozen=True)
class GammaFit:
    looks: float  # shape L
    mean: float  # mu; the scale is mu / L


def fit_gamma(intensity: np.ndarray) -> GammaFit:
    """Maximum-likelihood Gamma fit of positive intensities (``looks`` capped at MAX_SHAPE)."""
    values = _positive(intensity)
    mean = float(values.mean())
    s = math.log(mean) - float(np.log(values).mean())  # >= 0 by Jensen
    if s <= 1.0 / (2.0 * MAX_SHAPE):
        return GammaFit(MAX_SHAPE, mean)
    lo, hi = 1e-3, MAX_SHAPE
    looks = optimize.brentq(lambda k: math.log(k) - special.digamma(k) - s, lo, hi)
    return GammaFit(float(looks), mean)


def gamma_cdf(x: np.ndarray, fit: GammaFit) -> np.ndarray:
    return special.gammainc(fit.looks, fit.looks * np.asarray(x, dtype=np.float64) / fit.mean)


def gamma_pdf(x: np.ndarray, fit: GammaFit) -> np.ndarray:
    from scipy import stats

    return stats.gamma.pdf(x, fit.looks, scale=fit.mean / fit.looks)


# --------------------------------------------------------------------------- K


@dataclass(frozen=True)
class KFit:
    looks: float  # L, speckle shape
    alpha: float  # texture shape (MAX_SHAPE: no texture, the K is a Gamma)
    mean: float  # mu
    looks_fixed: bool


def _inverse(f, target: float, lo: float = 1e-3, hi: float = MAX_SHAPE) -> float:
    """x in [lo, hi] with decreasing f(x) == target (clamped to the ends)."""
    if target >= f(lo):
        return lo
    if target <= f(hi):
        return hi
    return float(optimize.brentq(lambda x: f(x) - target, lo, hi))


def fit_k(intensity: np.ndarray, looks: float | None = None) -> KFit:
    """K distribution by the method of log-cumulants; ``looks`` fixes L (else both shapes free,
    the smaller reported as L)."""
    values = _positive(intensity)
    mean = float(values.mean())
    logs = np.log(values)
    k2 = float(logs.var())
    trigamma = lambda x: float(special.polygamma(1, x))  # noqa: E731 (decreasing in x)
    if looks is not None:
        alpha = _inverse(trigamma, k2 - trigamma(looks)) if k2 > trigamma(looks) else MAX_SHAPE
        return KFit(float(looks), alpha, mean, True)
    k3 = float(((logs - logs.mean()) ** 3).mean())
    tetragamma = lambda x: float(special.polygamma(2, x))  # noqa: E731 (negative, increasing)
    # L in (l_gamma, l_sym]: l_gamma alone explains k2 (alpha infinite), l_sym = alpha
    l_gamma = _inverse(trigamma, k2)
    l_sym = _inverse(trigamma, k2 / 2.0)

    def alpha_of(lk: float) -> float:
        rest = k2 - trigamma(lk)
        return _inverse(trigamma, rest) if rest > 0 else MAX_SHAPE

    def third(lk: float) -> float:
        return tetragamma(lk) + tetragamma(alpha_of(lk)) - k3

    a, b = l_gamma * (1 + 1e-9), l_sym
    if b <= a or third(a) * third(b) > 0:
        # no root: the log-cumulants do not ask for texture (or ask for more than symmetric)
        if b > a and abs(third(b)) < abs(third(a)):
            return KFit(b, b, mean, False)
        return KFit(l_gamma, MAX_SHAPE, mean, False)
    lk = float(optimize.brentq(third, a, b))
    return KFit(lk, alpha_of(lk), mean, False)


def _texture_nodes(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture values tau (mean 1) and their probability weights for tau ~ Gamma(alpha, 1/alpha)."""
    with np.errstate(over="ignore", invalid="ignore"):
        x, w = special.roots_genlaguerre(QUADRATURE_NODES, alpha - 1.0)
        w = w / w.sum()
    if not np.isfinite(w).all():  # weights overflow for large alpha: the texture is nil
        return np.ones(1), np.ones(1)
    return x / alpha, w


def k_cdf(x: np.ndarray, fit: KFit) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if fit.alpha >= MAX_SHAPE:
        return gamma_cdf(x, GammaFit(fit.looks, fit.mean))
    tau, w = _texture_nodes(fit.alpha)
    out = np.zeros_like(x)
    for t, weight in zip(tau, w, strict=True):
        out += weight * special.gammainc(fit.looks, fit.looks * x / (fit.mean * t))
    return out


def k_pdf(x: np.ndarray, fit: KFit) -> np.ndarray:
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    if fit.alpha >= MAX_SHAPE:
        return gamma_pdf(x, GammaFit(fit.looks, fit.mean))
    tau, w = _texture_nodes(fit.alpha)
    out = np.zeros_like(x)
    for t, weight in zip(tau, w, strict=True):
        out += weight * stats.gamma.pdf(x, fit.looks, scale=fit.mean * t / fit.looks)
    return out


def ks_distance(values: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov distance of the sample ``values`` from the callable ``cdf``."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        return math.nan
    f = cdf(x)
    upper = np.arange(1, n + 1) / n - f
    lower = f - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


# --------------------------------------------------------------------------- autocorrelation


def autocorrelation(pieces, lags=LAGS) -> tuple[list[float], list[float]]:
    """Autocorrelation of the intensity standardised over the masks (mean 0, variance 1), at
    ``lags`` along rows (x) and columns (y), over the pixel pairs with both ends in a mask.

    ``pieces``: ``[(image, mask)]`` 2-D pairs (e.g. one per tile), pooled; pairs never span
    two pieces.
    """
    pieces = [(np.asarray(i, dtype=np.float64), np.asarray(m, dtype=bool)) for i, m in pieces]
    values = np.concatenate([i[m] for i, m in pieces]) if pieces else np.zeros(0)
    nan = [math.nan] * len(lags)
    if values.size < 2 or values.std() == 0:
        return nan, list(nan)
    mean, std = values.mean(), values.std()
    sums = np.zeros((2, len(lags)))
    counts = np.zeros((2, len(lags)))
    for image, mask in pieces:
        z = np.where(mask, (image - mean) / std, 0.0)
        for j, k in enumerate(lags):
            for d, (a, b) in enumerate(
                (
                    ((slice(None), slice(None, -k)), (slice(None), slice(k, None))),  # along x
                    ((slice(None, -k), slice(None)), (slice(k, None), slice(None))),  # along y
                )
            ):
                both = mask[a] & mask[b]
                sums[d, j] += (z[a] * z[b])[both].sum()
                counts[d, j] += both.sum()
    acf = np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)
    return acf[0].tolist(), acf[1].tolist()


# --------------------------------------------------------------------------- one area


@dataclass(frozen=True)
class AreaStats:
    pixels: int
    mean_intensity: float
    enl: float
    enl_local: float
    cv_amplitude: float
    gamma_looks: float
    gamma_ks: float
    k_looks: float
    k_alpha: float
    k_ks: float
    acf_x: tuple[float, ...]
    acf_y: tuple[float, ...]

    def row(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("acf_x", "acf_y")}
        for k, (x, y) in enumerate(zip(self.acf_x, self.acf_y, strict=True), start=1):
            out[f"acf{k}"] = (x + y) / 2.0
        return out


def area_stats(
    pieces,
    *,
    looks: float | None = None,
    seed: int = 0,
    sample: int = KS_SAMPLE,
) -> tuple[AreaStats, np.ndarray, GammaFit, KFit]:
    """Statistics of intensity over masks, ``pieces`` = ``[(image, mask)]`` 2-D pairs pooled
    (e.g. one class over several tiles); also returns the (seeded) sample the fits and KS
    distances used, and the fits. ENL, CV and autocorrelation use every masked pixel. Pixels
    <= 0 are left out of the fits (log of 0)."""
    values = np.concatenate([np.asarray(i, dtype=np.float64)[m] for i, m in pieces])
    positive = values[values > 0]
    rng = np.random.default_rng(seed)
    drawn = positive if positive.size <= sample else rng.choice(positive, sample, replace=False)
    g = fit_gamma(drawn)
    k = fit_k(drawn, looks)
    ax, ay = autocorrelation(pieces)
    stats = AreaStats(
        pixels=int(values.size),
        mean_intensity=float(values.mean()),
        enl=enl(values),
        enl_local=local_enl(pieces),
        cv_amplitude=cv_amplitude(np.sqrt(np.maximum(values, 0.0))),
        gamma_looks=g.looks,
        gamma_ks=ks_distance(drawn, lambda x: gamma_cdf(x, g)),
        k_looks=k.looks,
        k_alpha=k.alpha,
        k_ks=ks_distance(drawn, lambda x: k_cdf(x, k)),
        acf_x=tuple(ax),
        acf_y=tuple(ay),
    )
    return stats, drawn, g, k


def _positive(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[values > 0]
    if values.size < 2:
        raise ValueError("need at least two positive intensities")
    return values
