"""``geosynth sar-stats``: speckle statistics of real and synthesized SAR, per class.

Sources of SAR intensity, each a set of tiles with their class labels:

* ``real``: the store's ``sar`` array; the dB normalisation is inverted,
  ``A = 10^(divisor x / db_factor)`` (``10^(100 x / 20)``), ``I = A^2``;
  pixels the normalisation clipped (``x = 0``: every ``A <= 1``) stay at the
  clip value and are counted in ``clipped``;
* ``synth``: GeoTIFFs ``<tile>_sar.tif`` that ``geosynth synthesize`` wrote
  (normalised, or dB when tagged ``units=dB``), inverted the same way, over
  the real SAR's valid pixels of the tile when the store has them;
* ``raw``: EEC amplitudes (``DN``, ``I = calFactor DN^2`` where the product's
  annotation gives calFactor) on the scenes' own pixel grid: the store's
  labels are brought onto that grid (nearest), so no resampling touches the
  speckle. A demo world folder (``--world``) gives its scenes and its
  simulated number of looks, which the raw statistics must recover.

The store's SAR is the raw amplitude reprojected with cubic resampling
(1.25 m -> 1 m in the demo world) and averaged over overlapping scenes; both
correlate neighbouring pixels and raise the ENL, so the looks are checked on
``raw``.

Per class and source, over the class mask eroded by ``erode`` pixels (no
class or validity edge, no tile border within it): the statistics of
:func:`geosynth.analysis.speckle.area_stats`. Outputs: ``sar_stats.csv``,
``sar_stats.json`` and ``sar_stats_<class>.png`` per class.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geosynth.analysis.speckle import (
    LAGS,
    AreaStats,
    GammaFit,
    KFit,
    amplitude_from_db,
    amplitude_from_normalised,
    area_stats,
    gamma_pdf,
    homogeneous_masks,
    k_pdf,
)
from geosynth.catalog import load_catalog
from geosynth.demo import read_manifest
from geosynth.errors import DataError, UsageError
from geosynth.figures import save_figure, subplots
from geosynth.io import atomic_path
from geosynth.sources.sar import read_cal_factor, scene_images

log = logging.getLogger(__name__)

KINDS = ("raw", "real", "synth")
DEFAULT_ERODE_PX = 3
MIN_PIXELS = 500  # a class needs this many homogeneous pixels in a source to be reported
OVERALL = "all"  # the class of the pixel-weighted means over classes (class_means)
LOOKS_TOLERANCE = 0.1  # relative: the theory check passes within +-10 % of the simulated looks
INVERSION_NOTE = (
    "real and synthesized SAR are read as the store normalises them, x = db_factor * "
    "log10(A) / divisor clipped to [0, 1]; the statistics use A = 10^(divisor x / db_factor) "
    "(10^(100 x / 20)) and I = A^2, so values the normalisation clipped stay at the clip"
)


@dataclass
class Piece:
    """One image of one source: intensity, labels and validity on one pixel grid."""

    kind: str
    where: str  # the tile (and scene) it comes from, for messages
    intensity: np.ndarray  # (H, W) float64
    labels: np.ndarray  # (H, W) class ids
    valid: np.ndarray  # (H, W) bool
    clipped: np.ndarray | None = None  # (H, W) bool: at a clip of the normalisation


@dataclass
class ClassResult:
    kind: str
    class_id: int
    class_key: str
    stats: AreaStats
    clipped: float
    sample: np.ndarray = field(repr=False)
    gamma: GammaFit = field(repr=False)
    k: KFit = field(repr=False)

    def row(self) -> dict:
        return {
            "source": self.kind,
            "class": self.class_key,
            **self.stats.row(),
            "clipped": self.clipped,
        }


# --------------------------------------------------------------------------- sources


def sar_normalisation(store) -> tuple[float, float, tuple[float, float]]:
    """``(db_factor, divisor, (lo, hi))`` of the store's SAR normalisation (the catalog's
    when the store records none)."""

    attrs = dict(store.attrs.get("geosynth:normalisation", {}).get("sar") or {})
    if not attrs:
        attrs = load_catalog().sar.to_attrs()
    return float(attrs["db_factor"]), float(attrs["divisor"]), tuple(attrs["clip"])


def _tile_indices(store, tiles: Sequence[str] | None, split: str | None) -> list[int]:
    if tiles:
        return [store.index(t) for t in tiles]
    return store.tiles(split, require=("seg",))


def store_pieces(store, tiles: Sequence[str] | None = None, split: str | None = None):
    """``real`` pieces: the store's SAR of the tiles (those with SAR and labels)."""
    norm = sar_normalisation(store)
    have = store.present("sar")
    for i in _tile_indices(store, tiles, split):
        if not have[i]:
            continue
        x = store.read("sar", i)[0]  # (H, W)
        yield normalised_piece(
            "real", store.tile_ids[i], x, store.read("seg", i), store.read("sar_valid", i), norm
        )


def normalised_piece(kind: str, where: str, x, labels, valid, norm) -> Piece:
    """A piece of SAR in the store's normalised form ``x`` (``(H, W)``), its dB normalisation
    inverted; ``norm``: :func:`sar_normalisation`."""
    db_factor, divisor, (lo, hi) = norm
    x = np.asarray(x, dtype=np.float64)
    return Piece(
        kind,
        where,
        amplitude_from_normalised(x, db_factor, divisor) ** 2,
        np.asarray(labels),
        np.asarray(valid, dtype=bool),
        (x <= lo) | (x >= hi),
    )


_SYNTH_NAME = re.compile(r"^(?P<tile>.+?)_sar\.tiff?$")


def synth_pieces(store, paths: Iterable[str | os.PathLike]):
    """``synth`` pieces: ``<tile>_sar.tif`` GeoTIFFs of ``geosynth synthesize`` (band 1), with
    the store's labels of that tile and its real SAR's validity where it has SAR."""
    import rasterio

    db_factor, divisor, (lo, hi) = sar_normalisation(store)
    have = store.present("sar")
    for path in expand_rasters(paths):
        match = _SYNTH_NAME.match(path.name)
        if not match:
            raise UsageError(f"{path}: expected a synthesized SAR file named <tile>_sar.tif")
        i = store.index(match["tile"])
        try:
            with rasterio.open(path) as src:
                values = src.read(1).astype(np.float64)
                units = str(src.tags().get("units", ""))
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{path}: cannot read: {exc}") from exc
        labels = store.read("seg", i)
        if values.shape != labels.shape:
            raise DataError(
                f"{path}: {values.shape[1]} x {values.shape[0]} pixels, but tile "
                f"{match['tile']} has {labels.shape[1]} x {labels.shape[0]}"
            )
        if units.startswith("dB"):
            amplitude = amplitude_from_db(values, db_factor)
            x = values / divisor
        else:
            amplitude = amplitude_from_normalised(values, db_factor, divisor)
            x = values
        valid = (
            store.read("sar_valid", i).astype(bool)
            if have[i]
            else np.ones(labels.shape, dtype=bool)
        )
        yield Piece("synth", match["tile"], amplitude**2, labels, valid, (x <= lo) | (x >= hi))


def expand_rasters(paths: Iterable[str | os.PathLike]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.glob("*_sar.tif*"))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: synthesized SAR not found")
    return out


def raw_pieces(store, scenes: Sequence[str | os.PathLike], tiles=None, split=None):
    """``raw`` pieces: each EEC scene image over each store tile it overlaps, on the scene's
    own pixel grid (labels resampled there by nearest neighbour, no data where DN = 0)."""
    import rasterio
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import Window, from_bounds

    indices = _tile_indices(store, tiles, split)
    for scene in scenes:
        for image in scene_images(scene):
            cal = (
                read_cal_factor(image.annotation, image.polarisation)
                if image.annotation is not None
                else 1.0
            )
            with rasterio.open(image.path) as src:
                for i in indices:
                    transform, crs = store.transform(i), store.tile_crs(i)
                    h, w = store.tile_shape
                    bounds = rasterio.transform.array_bounds(h, w, transform)
                    box = transform_bounds(crs, src.crs, *bounds, densify_pts=21)
                    window = from_bounds(*box, transform=src.transform).round_offsets()
                    window = window.round_lengths().intersection(
                        Window(0, 0, src.width, src.height)
                    ) if _overlaps(box, src.bounds) else None  # fmt: skip
                    if window is None or window.width < 2 or window.height < 2:
                        continue
                    dn = src.read(1, window=window).astype(np.float64)
                    if not (dn > 0).any():
                        continue
                    labels = np.zeros(dn.shape, dtype=np.uint8)  # 0: outside the tile
                    reproject(
                        store.read("seg", i),
                        labels,
                        src_transform=transform,
                        src_crs=crs,
                        dst_transform=src.window_transform(window),
                        dst_crs=src.crs,
                        src_nodata=None,
                        dst_nodata=0,
                        resampling=Resampling.nearest,
                    )
                    yield Piece(
                        "raw",
                        f"{store.tile_ids[i]} in {Path(scene).name}",
                        cal * dn**2,
                        labels,
                        dn > 0,
                        dn >= np.iinfo(np.uint16).max if src.dtypes[0] == "uint16" else None,
                    )


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def world_of_sources(parameters: dict) -> Path | None:
    """The demo world a store was built from: the first of its source folders (the build's
    ``source_dirs``; ``source_dir`` of older stores), or the folder above one (the world's
    ``osm/`` or ``sar/``, or the downloaded copy beside it), that holds a ``world.json`` with
    SAR scenes."""
    folders = parameters.get("source_dirs") or [
        f for f in str(parameters.get("source_dir") or "").split(", ") if f
    ]
    for folder in map(Path, folders):
        for candidate in (folder, folder.parent):
            manifest = read_manifest(candidate)
            if manifest is not None and "sar" in manifest:
                return candidate
    return None


def world_scenes(world: str | os.PathLike) -> tuple[list[Path], float | None]:
    """The SAR product folders of a demo world and its simulated looks (world.json)."""

    manifest = read_manifest(world)
    if manifest is None or "sar" not in manifest:
        raise DataError(f"{world}: not a demo world folder (no world.json with SAR scenes)")
    sar = manifest["sar"]
    scenes = [Path(world) / s["folder"] for s in sar["scenes"]]
    looks = sar.get("looks")
    if looks is None:  # worlds written before the manifest recorded it
        from geosynth.demo.sar import LOOKS

        looks = LOOKS
    return scenes, float(looks)


# --------------------------------------------------------------------------- statistics


def class_stats(
    pieces: Iterable[Piece],
    classes,
    *,
    erode_px: int = DEFAULT_ERODE_PX,
    looks: float | None = None,
    min_pixels: int = MIN_PIXELS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[ClassResult]:
    """Per source kind and class: :func:`area_stats` over the eroded class masks of all pieces.

    Classes with fewer than ``min_pixels`` homogeneous pixels in a source are left out.
    """
    ids = [c.id for c in classes.classes if c.id != 0]
    keys = {c.id: c.key for c in classes.classes}
    pooled: dict[tuple[str, int], list] = {}
    for piece in pieces:
        masks = homogeneous_masks(piece.labels, piece.valid, ids, erode_px)
        for c, mask in masks.items():
            if mask.any():
                pooled.setdefault((piece.kind, c), []).append(
                    (piece.intensity, mask, piece.clipped)
                )
        if progress:
            progress(piece.where)
    results = []
    for kind in KINDS:
        for c in ids:
            parts = pooled.get((kind, c), [])
            n = sum(int(m.sum()) for _, m, _ in parts)
            if n < min_pixels:
                continue
            stats, sample, g, k = area_stats([(i, m) for i, m, _ in parts], looks=looks, seed=seed)
            clipped = sum(int((cl & m).sum()) for _, m, cl in parts if cl is not None) / n
            results.append(ClassResult(kind, c, keys[c], stats, clipped, sample, g, k))
            log.debug("%s %s: %d px, ENL %.2f", kind, keys[c], n, stats.enl)
    return results


def looks_check(
    results: Sequence[ClassResult],
    expected: float,
    kind: str = "raw",
    tolerance: float = LOOKS_TOLERANCE,
) -> dict:
    """The theory check: the pixel-weighted median over classes of the local ENL
    (:func:`geosynth.analysis.speckle.local_enl`) of ``kind`` against the simulated ``expected``
    looks, within ``tolerance`` (relative).

    The local ENL, not the class ENL: within a class the backscatter still varies (slopes,
    hedges, shadows), which the class ENL and the Gamma fit fold into fewer looks; the
    local mean divides it out. The class ENL, Gamma and K looks are reported alongside.
    """
    rows = [r for r in results if r.kind == kind and math.isfinite(r.stats.enl_local)]
    if not rows:
        return {"kind": kind, "expected": expected, "passed": False, "reason": f"no {kind} SAR"}

    def weighted_median(values):
        order = np.argsort(values)
        v = np.asarray(values)[order]
        w = np.asarray([r.stats.pixels for r in rows], dtype=float)[order]
        return float(v[np.searchsorted(np.cumsum(w), w.sum() / 2.0)])

    measured = weighted_median([r.stats.enl_local for r in rows])
    return {
        "kind": kind,
        "expected": expected,
        "measured_enl_local": measured,
        "measured_k_looks": weighted_median([r.stats.k_looks for r in rows]),
        "measured_enl": weighted_median([r.stats.enl for r in rows]),
        "measured_gamma_looks": weighted_median([r.stats.gamma_looks for r in rows]),
        "tolerance": tolerance,
        "classes": len(rows),
        "pixels": int(sum(r.stats.pixels for r in rows)),
        "passed": abs(measured - expected) <= tolerance * expected,
    }


# --------------------------------------------------------------------------- outputs


def write_outputs(
    results: Sequence[ClassResult],
    out: str | os.PathLike,
    *,
    erode_px: int,
    check: dict | None = None,
    figures: bool = True,
) -> list[Path]:
    """``sar_stats.csv``, ``sar_stats.json`` and one ``sar_stats_<class>.png`` per class."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results]
    written = []
    written.append(write_csv(rows, out / "sar_stats.csv"))
    summary = {
        "note": INVERSION_NOTE,
        "erode_px": erode_px,
        "lags_px": list(LAGS),
        "rows": [{k: _json_value(v) for k, v in row.items()} for row in rows],
    }
    if check is not None:
        summary["looks_check"] = check
    json_path = out / "sar_stats.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    written.append(json_path)
    if figures:
        for key in dict.fromkeys(r.class_key for r in results):
            written.append(
                plot_class([r for r in results if r.class_key == key], out / f"sar_stats_{key}.png")
            )
    return written


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Rows of :meth:`ClassResult.row` as CSV (floats to 6 significant digits), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        fields = list(rows[0]) if rows else ["source", "class"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
    return path


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def _json_value(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


COLOURS = {"raw": "tab:green", "real": "tab:blue", "synth": "tab:red"}


def plot_class(rows: Sequence[ClassResult], path: Path) -> Path:
    """Histograms of I / mean with the Gamma (solid) and K (dashed) fits per source, and the
    autocorrelation at lags 1..5."""
    fig, (ax, ac) = subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    draw_histograms(ax, rows)
    for r in rows:
        colour = COLOURS.get(r.kind, "black")
        lags = list(LAGS)
        ac.plot(lags, [r.stats.acf_x[j] for j in range(len(lags))], "o-", color=colour)
        ac.plot(lags, [r.stats.acf_y[j] for j in range(len(lags))], "s--", color=colour)
    ax.set_title(f"{rows[0].class_key}: intensity (homogeneous areas)")
    ac.axhline(0.0, color="grey", lw=0.5)
    ac.set_xlabel("lag (px): o along x, s along y")
    ac.set_ylabel("autocorrelation")
    ac.set_title("normalised intensity")
    return save_figure(fig, path)


def draw_histograms(ax, rows: Sequence[ClassResult]) -> None:
    """On ``ax``: per source, the histogram of I / mean with its Gamma (solid) and K (dashed)
    fits, axis labels and a legend."""
    x = np.linspace(1e-3, 5.0, 300)
    for r in rows:
        colour = COLOURS.get(r.kind, "black")
        mu = r.stats.mean_intensity
        ax.hist(
            r.sample / mu, bins=np.linspace(0, 5, 61), density=True, histtype="step",
            color=colour, label=f"{r.kind} ({r.stats.pixels} px, ENL {r.stats.enl:.2f})",
        )  # fmt: skip
        g = GammaFit(r.gamma.looks, 1.0)
        k = KFit(r.k.looks, r.k.alpha, 1.0, r.k.looks_fixed)
        ax.plot(x, gamma_pdf(x, g), color=colour, lw=1, label=f"Gamma L={g.looks:.2f}")
        ax.plot(
            x, k_pdf(x, k), color=colour, lw=1, ls="--",
            label=f"K L={k.looks:.2f} alpha={k.alpha:.3g}",
        )  # fmt: skip
    ax.set_xlabel("intensity / class mean")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)


def summary_lines(rows: Sequence[dict], check: dict | None = None) -> Iterator[str]:
    """A markdown table of the main figures per class and source (rows of ``sar_stats.json``
    or :meth:`ClassResult.row`), and the check's sentence."""

    def num(v, f):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f % v

    yield (
        "| source | class | pixels | ENL | local ENL | CV(A) | Gamma L | KS | K L | K alpha "
        "| KS | acf(1) |"
    )
    yield "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    order = {k: i for i, k in enumerate(KINDS)}
    for r in sorted(rows, key=lambda r: (r["class"], order.get(r["source"], 9))):
        yield (
            f"| {r['source']} | {r['class']} | {r['pixels']} | {num(r['enl'], '%.2f')} | "
            f"{num(r['enl_local'], '%.2f')} | {num(r['cv_amplitude'], '%.3f')} | "
            f"{num(r['gamma_looks'], '%.2f')} | {num(r['gamma_ks'], '%.3f')} | "
            f"{num(r['k_looks'], '%.2f')} | {num(r['k_alpha'], '%.3g')} | "
            f"{num(r['k_ks'], '%.3f')} | {num(r['acf1'], '%.2f')} |"
        )
    if check is not None:
        yield ""
        yield check_sentence(check)


def plot_pair(store, path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """``sar_pair_<tile>.png``: the tile's real SAR and the synthesized raster ``path`` in dB
    (``20 log10 A``) on one colour scale with a colour bar, and the real SAR's validity mask."""
    (synth,) = synth_pieces(store, [path])
    i = store.index(synth.where)
    db = {"synthesized": 10.0 * np.log10(np.maximum(synth.intensity, 1e-12))}
    valid = synth.valid
    if store.present("sar")[i]:
        (real,) = store_pieces(store, [synth.where])
        db = {"real": 10.0 * np.log10(np.maximum(real.intensity, 1e-12)), **db}
    shown = np.concatenate([v[valid] for v in db.values()])
    lo, hi = np.percentile(shown, [1, 99]) if shown.size else (0.0, 100.0)
    fig, axes = subplots(1, len(db) + 1, figsize=(4.2 * (len(db) + 1), 4.4), dpi=90)
    for ax, (name, values) in zip(axes, db.items(), strict=False):
        im = ax.imshow(np.where(valid, values, np.nan), cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"{name} SAR (dB)")
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="20 log10 A (dB)")
    axes[-1].imshow(valid, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axes[-1].set_title(f"valid SAR ({valid.mean():.0%})")
    axes[-1].axis("off")
    fig.suptitle(f"{synth.where}: real and synthesized SAR")
    return save_figure(fig, Path(out) / f"sar_pair_{synth.where}.png")


def check_sentence(check: dict) -> str:
    if "measured_enl_local" not in check:
        return f"Theory check not possible: {check.get('reason')}."
    verdict = "passes" if check["passed"] else "FAILS"
    return (
        f"Theory check {verdict}: the {check['kind']} SAR was simulated with "
        f"{check['expected']:g} looks; the local ENL recovers "
        f"{check['measured_enl_local']:.2f} (pixel-weighted median over {check['classes']} "
        f"classes, tolerance +-{check['tolerance']:.0%}); over whole classes the ENL is "
        f"{check['measured_enl']:.2f}, the Gamma fit {check['measured_gamma_looks']:.2f} and "
        f"the K fit {check['measured_k_looks']:.2f} looks (backscatter varying within a class "
        "reads as fewer looks)."
    )


# --------------------------------------------------------------------------- geosynth evaluate

SPECKLE_CSV = "speckle.csv"
SPECKLE_PNG = "speckle.png"
FIGURE_CLASSES = 4  # speckle.png shows the classes with the most real homogeneous pixels


def class_means(results: Sequence[ClassResult]) -> list[dict]:
    """Per source: rows like :meth:`ClassResult.row` (class :data:`OVERALL`) whose statistics
    are the pixel-weighted means over the classes' (non-finite values left out, None when
    none is finite) and ``pixels`` their sum. Means over classes, not statistics of the
    classes pooled: backscatter differing between classes would read as fewer looks and as
    correlation."""
    out = []
    for kind in KINDS:
        rows = [r.row() for r in results if r.kind == kind]
        if not rows:
            continue
        mean = {"source": kind, "class": OVERALL, "pixels": sum(r["pixels"] for r in rows)}
        for key in rows[0]:
            if key in mean:
                continue
            pairs = [(r[key], r["pixels"]) for r in rows if math.isfinite(r[key])]
            weight = sum(w for _, w in pairs)
            mean[key] = sum(v * w for v, w in pairs) / weight if weight else math.nan
        out.append(mean)
    return out


def speckle_section(
    results: Sequence[ClassResult], *, erode_px: int, min_pixels: int, tiles: Sequence[str]
) -> dict:
    """The ``speckle`` section of an evaluation's ``metrics.json`` from :func:`class_stats`
    results: per source (``real``, ``synth``) the row of :meth:`ClassResult.row`
    (non-finite values as None) per class key (``classes``) and its pixel-weighted mean over
    the classes (``overall``, :func:`class_means`)."""

    def entry(row: dict) -> dict:
        return {k: _json_value(v) for k, v in row.items() if k not in ("source", "class")}

    classes: dict[str, dict] = {}
    for r in results:
        classes.setdefault(r.class_key, {})[r.kind] = entry(r.row())
    return {
        "note": INVERSION_NOTE,
        "pixels": (
            "the valid SAR pixels of the scored windows, each class's eroded by erode_px "
            "(no class or validity edge, no window border); overall: pixel-weighted means "
            "over the classes"
        ),
        "erode_px": erode_px,
        "min_pixels": min_pixels,
        "lags_px": list(LAGS),
        "tiles": list(tiles),
        "overall": {row["source"]: entry(row) for row in class_means(results)},
        "classes": classes,
    }


def write_speckle(results: Sequence[ClassResult], out: str | os.PathLike) -> list[Path]:
    """``speckle.csv`` (a row per source and class, and class ``all``: :func:`class_means`)
    and ``speckle.png`` (:func:`plot_speckle`) in ``out``, each atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r.row() for r in results] + class_means(results)
    written = [write_csv(rows, out / SPECKLE_CSV)]
    if results:
        written.append(plot_speckle(results, out / SPECKLE_PNG))
    return written


def plot_speckle(
    results: Sequence[ClassResult], path: str | os.PathLike, max_classes: int = FIGURE_CLASSES
) -> Path:
    """Histograms of I / mean with their Gamma and K fits, real against synthesized, of the
    ``max_classes`` classes with the most homogeneous pixels, one panel each."""
    by_key: dict[str, list[ClassResult]] = {}
    for r in results:
        by_key.setdefault(r.class_key, []).append(r)
    size = {k: max(r.stats.pixels for r in rows) for k, rows in by_key.items()}
    keys = sorted(by_key, key=lambda k: -size[k])[:max_classes]
    fig, axes = subplots(1, len(keys), figsize=(4.6 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        draw_histograms(ax, by_key[key])
        ax.set_title(f"{key}: intensity (homogeneous areas)")
    return save_figure(fig, path)
