"""The sar stage: TerraSAR-X EEC scenes -> normalised SAR on the output grid.

Inputs are EEC product folders (``TSX1_SAR__EEC_.../`` with
``IMAGEDATA/IMAGE_<POL>_*.tif`` and the annotation XML that holds
``calFactor``) or GeoTIFF paths directly. Per output grid:

1. each image is reprojected onto the grid with cubic resampling, amplitude 0
   being the source no-data (GDAL leaves a grid pixel empty where its nearest
   source pixel is no-data; cubic weights use valid pixels only);
2. with ``calibrate``, amplitudes are scaled to ``sqrt(beta0)`` where
   ``beta0 = calFactor * DN**2`` (calFactor read from the annotation for the
   image's polarisation);
3. overlapping scenes *of one acquisition geometry* (orbit direction, look
   direction and incidence angle within 1 degree, from the annotations) are
   averaged *in amplitude* over their valid pixels (the GeoNRW paper is read
   as averaging amplitudes; averaging intensities or dB would give slightly
   different values where scenes overlap). Scenes of different geometries are
   not averaged, since a mean of an ascending and a descending look holds the
   shadows and layover of both, which no sensor sees: the geometry that covers
   most of the grid supplies every pixel it covers, the next one fills what is
   left, and so on. Images without an annotation form one geometry. Each
   scene's ``used_pixels`` in the report counts the pixels it contributed to;
4. the catalog rule ``clip(20 * log10(A) / 100, 0, 1)`` normalises; a pixel
   is valid where at least one scene covers it. Invalid pixels hold 0 in the
   array and are ALWAYS marked by ``valid`` (0 is also a legitimate value:
   every amplitude <= 1 maps to 0);
5. if the valid fraction is below ``normalisation.geonrw_sar.min_valid_fraction``
   the result carries ``skipped`` with the reason and must not be written.

A scene whose footprint does not overlap the grid is an error naming it; use
:func:`select_scenes` first when scenes cover a larger area than one tile.
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosynth.catalog import Catalog, SarNorm, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.io import write_geotiff
from geosynth.sources import StageResult
from geosynth.sources.filenames import parse_tsx_name

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_POL = re.compile(r"IMAGE_([HV]{2})_", re.IGNORECASE)
_TIFF = (".tif", ".tiff")


@dataclass(frozen=True)
class SceneImage:
    """One SAR image file, with its product's annotation XML (if found) and polarisation."""

    path: Path
    annotation: Path | None
    polarisation: str | None


# --------------------------------------------------------------------------- finding scenes


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_annotation(product: Path) -> Path | None:
    """The product's main annotation: ``<product>/<product name>.xml``, else a root XML with calFactor."""
    main = product / f"{product.name}.xml"
    if main.is_file():
        return main
    candidates = sorted(product.glob("*.xml")) + sorted(product.glob("ANNOTATION/*.xml"))
    for xml in candidates:
        try:
            if b"calFactor" in xml.read_bytes():
                return xml
        except OSError:
            continue
    return None


def scene_images(scene: str | os.PathLike, polarisation: str | None = None) -> list[SceneImage]:
    """The image files of one scene argument (a product folder or a GeoTIFF path).

    A folder yields its ``IMAGEDATA/IMAGE_*.tif`` files, filtered to
    ``polarisation`` when given; a folder with several polarisations and no
    choice is a :class:`UsageError`.
    """
    path = Path(scene)
    if path.is_dir():
        images = sorted(
            p for p in (path / "IMAGEDATA").glob("IMAGE_*") if p.suffix.lower() in _TIFF
        )
        if not images:
            raise DataError(f"{path}: no IMAGEDATA/IMAGE_*.tif in this SAR product folder")
        annotation = _find_annotation(path)
        found = [SceneImage(p, annotation, _polarisation(p)) for p in images]
        if polarisation:
            found = [s for s in found if (s.polarisation or "").upper() == polarisation.upper()]
            if not found:
                raise DataError(f"{path}: no image with polarisation {polarisation.upper()}")
        pols = sorted({s.polarisation or "?" for s in found})
        if len(pols) > 1:
            raise UsageError(
                f"{path}: product holds polarisations {', '.join(pols)}; "
                "choose one (--polarisation)"
            )
        return found
    if not path.is_file():
        raise DataError(f"{path}: SAR scene not found")
    product = path.parent.parent if path.parent.name.upper() == "IMAGEDATA" else None
    annotation = _find_annotation(product) if product is not None else None
    return [SceneImage(path, annotation, _polarisation(path))]


def _polarisation(path: Path) -> str | None:
    match = _POL.search(path.name)
    return match.group(1).upper() if match else None


def read_cal_factor(annotation: Path, polarisation: str | None) -> float:
    """``calFactor`` from a TerraSAR-X annotation, for ``polarisation`` when it lists several.

    Looks for ``calFactor`` elements; where one sits beside a ``polLayer``
    (``calibration/calibrationConstant`` in TSX products) that names the
    polarisation, that one is taken.
    """
    try:
        root = ET.parse(annotation).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{annotation}: cannot read SAR annotation XML: {exc}") from exc
    factors: list[tuple[str | None, str]] = []
    for parent in root.iter():
        children = {_local(c.tag): c for c in parent}
        if "calFactor" in children:
            pol = children.get("polLayer")
            factors.append(
                (
                    pol.text.strip().upper() if pol is not None and pol.text else None,
                    (children["calFactor"].text or "").strip(),
                )
            )
    if not factors:
        raise DataError(f"{annotation}: no calFactor in this annotation")
    chosen = [f for p, f in factors if polarisation and p == polarisation.upper()]
    if not chosen:
        if len({f for _, f in factors}) > 1:
            raise DataError(
                f"{annotation}: several calFactor values and none for "
                f"polarisation {polarisation or '(unknown)'}"
            )
        chosen = [factors[0][1]]
    try:
        value = float(chosen[0])
    except ValueError as exc:
        raise DataError(f"{annotation}: calFactor {chosen[0]!r} is not a number") from exc
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"{annotation}: calFactor {value} must be a positive number")
    return value


def read_acquisition(annotation: Path) -> dict:
    """Start and stop time (UTC), orbit direction, look direction, incidence angle at the
    scene centre and heading of a TerraSAR-X annotation (fields it lacks are left out)."""
    try:
        root = ET.parse(annotation).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{annotation}: cannot read SAR annotation XML: {exc}") from exc
    found: dict = {}
    for parent in root.iter():
        tag = _local(parent.tag)
        children = {_local(c.tag): c for c in parent}
        if tag in ("start", "stop") and "timeUTC" in children:
            found.setdefault(tag, (children["timeUTC"].text or "").strip())
        elif tag == "orbitDirection" and parent.text:
            found.setdefault("orbit", parent.text.strip().lower())
        elif tag == "lookDirection" and parent.text:
            found.setdefault("look", parent.text.strip().lower())
        elif tag == "sceneCenterCoord" and "incidenceAngle" in children:
            found.setdefault("incidence_deg", float(children["incidenceAngle"].text))
        elif tag == "headingAngle" and parent.text:
            found.setdefault("heading_deg", float(parent.text))
    return found


def _footprint(src, crs: str) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    return transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def select_scenes(
    scenes: Sequence[str | os.PathLike], grid: RasterGrid, polarisation: str | None = None
) -> list[Path]:
    """The scene arguments with at least one image whose footprint overlaps ``grid``."""
    chosen = []
    for scene in scenes:
        for image in scene_images(scene, polarisation):
            with _open(image.path) as src:
                if _overlaps(_footprint(src, grid.crs), grid.bounds):
                    chosen.append(Path(scene))
                    break
    return chosen


def scene_coverage(
    scenes: Sequence[str | os.PathLike],
    grids: Mapping[str, RasterGrid],
    catalog: Catalog | None = None,
) -> list[dict]:
    """Which tiles each scene covers, and whether it is one of the catalog's listed scenes
    (the authors' ``tsx_aquisitions.txt``): ``[{"product", "listed", "orbit", "tiles"}]``.
    Reads only the images' footprints."""
    from rasterio.warp import transform_bounds

    catalog = catalog or load_catalog()
    listed = {s.product: s for s in catalog.tsx_scenes}
    out = []
    for scene in scenes:
        name = Path(scene).name
        footprints = []
        for image in scene_images(scene, None):
            with _open(image.path) as src:
                footprints.append((src.crs, src.bounds))
        tiles = []
        for tile, grid in grids.items():
            if any(
                _overlaps(transform_bounds(crs, grid.crs, *bounds, densify_pts=21), grid.bounds)
                for crs, bounds in footprints
            ):
                tiles.append(tile)
        entry = {"product": name, "listed": name in listed, "tiles": tiles}
        if name in listed:
            entry["orbit"] = listed[name].orbit
        out.append(entry)
    return out


def coverage_lines(coverage: Sequence[Mapping]) -> list[str]:
    """One line per scene of :func:`scene_coverage`, for reports."""
    lines = []
    for c in coverage:
        where = (
            f"covers {len(c['tiles'])} tile(s): {', '.join(c['tiles'][:8])}"
            + (" ..." if len(c["tiles"]) > 8 else "")
            if c["tiles"]
            else "covers none of the tiles"
        )
        status = "listed" if c["listed"] else "NOT in the catalog's scene list"
        lines.append(f"SAR {c['product']} ({status}) {where}")
    return lines


def _open(path: Path):
    import rasterio

    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path}: cannot open SAR image: {exc}") from exc
    if src.crs is None:
        src.close()
        raise DataError(
            f"{path}: SAR image has no CRS (an EEC product is geocoded; is this a SSC/MGD product?)"
        )
    return src


# --------------------------------------------------------------------------- processing


def normalise(amplitude: np.ndarray, norm: SarNorm) -> np.ndarray:
    """The catalog rule ``clip(db_factor * log10(A) / divisor, lo, hi)`` as float32.

    Amplitudes <= 0 (cubic overshoot next to dark pixels) map to the lower clip.
    """
    lo, hi = norm.clip
    with np.errstate(divide="ignore", invalid="ignore"):
        db = norm.db_factor * np.log10(amplitude.astype(np.float64))
    out = np.clip(db / norm.divisor, lo, hi)
    return np.where(amplitude > 0, out, lo).astype(np.float32)


def reproject_image(image: SceneImage, grid: RasterGrid, nodata: float) -> np.ndarray:
    """One image reprojected (cubic) onto ``grid``: (H, W) float32 amplitude, NaN where no data."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    out = np.full(grid.shape, np.nan, dtype=np.float32)  # (H, W)
    with _open(image.path) as src:
        footprint = _footprint(src, grid.crs)
        if not _overlaps(footprint, grid.bounds):
            raise DataError(
                f"{image.path}: SAR scene does not overlap the output grid "
                f"(scene bounds {tuple(round(v) for v in footprint)} vs. grid bounds "
                f"{tuple(round(v) for v in grid.bounds)} in {grid.crs})"
            )
        src_nodata = src.nodata if src.nodata is not None else nodata
        try:
            reproject(
                rasterio.band(src, 1),
                out,
                src_nodata=src_nodata,
                dst_nodata=np.nan,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                resampling=Resampling.cubic,
            )
        except rasterio.errors.RasterioError as exc:
            raise DataError(f"{image.path}: cannot read SAR image data: {exc}") from exc
    return out


def geometry_key(acquisition: Mapping) -> tuple:
    """Scenes with equal keys are averaged: orbit direction, look direction and incidence
    angle to the degree (empty for images without an annotation)."""
    incidence = acquisition.get("incidence_deg")
    return (
        str(acquisition.get("orbit", "")),
        str(acquisition.get("look", "")),
        None if incidence is None else round(float(incidence)),
    )


def sar_stage(
    scenes: Sequence[str | os.PathLike],
    grid: RasterGrid,
    *,
    calibrate: bool = False,
    catalog: Catalog | None = None,
    progress: Progress | None = None,
    polarisation: str | None = None,
) -> StageResult:
    """Reproject, average and normalise SAR scenes onto ``grid``: (1, H, W) float32 and ``valid``.

    ``calibrate`` converts DN to ``sqrt(beta0)`` with the annotation's
    calFactor. ``polarisation`` picks one from products that hold several.
    ``progress(done, total)`` is called after each image. ``skipped`` is set
    when the valid fraction is below the catalog minimum.
    """
    catalog = catalog or load_catalog()
    norm = catalog.sar
    if not scenes:
        raise UsageError("sar needs at least one SCENE (EEC product folder or GeoTIFF)")
    images = [image for scene in scenes for image in scene_images(scene, polarisation)]

    # per acquisition geometry: the sum of valid amplitudes and the scenes covering each pixel
    sums: dict[tuple, np.ndarray] = {}  # geometry -> (H, W) float64
    counts: dict[tuple, np.ndarray] = {}  # geometry -> (H, W) uint16
    used, coverage = [], []
    for done, image in enumerate(images, start=1):
        entry = {"path": str(image.path), "polarisation": image.polarisation}
        product = (
            image.path.parent.parent if image.path.parent.name.upper() == "IMAGEDATA" else None
        )
        if product is not None and parse_tsx_name(product.name):
            entry["product"] = product.name
            entry["listed"] = product.name in {t.product for t in catalog.tsx_scenes}
        if image.annotation is not None:
            entry.update(read_acquisition(image.annotation))
        if calibrate:
            if image.annotation is None:
                raise DataError(
                    f"{image.path}: calibration needs the product's annotation XML "
                    "with calFactor, and none was found beside IMAGEDATA/"
                )
            entry["cal_factor"] = read_cal_factor(image.annotation, image.polarisation)
        amplitude = reproject_image(image, grid, norm.nodata)  # (H, W), NaN = no data
        if calibrate:
            amplitude *= np.float32(math.sqrt(entry["cal_factor"]))  # sqrt(calFactor * DN^2)
        covered = np.isfinite(amplitude)
        key = geometry_key(entry)
        if key not in sums:
            sums[key] = np.zeros(grid.shape, dtype=np.float64)
            counts[key] = np.zeros(grid.shape, dtype=np.uint16)
        sums[key][covered] += amplitude[covered]
        counts[key] += covered
        entry["valid_pixels"] = int(covered.sum())
        used.append(entry)
        coverage.append((key, covered))
        if progress:
            progress(done, len(images))

    # the geometry covering most pixels first; each later one fills only what is still empty
    order = sorted(sums, key=lambda k: -int(np.count_nonzero(counts[k])))
    mean = np.zeros(grid.shape, dtype=np.float64)
    valid = np.zeros(grid.shape, dtype=bool)  # (H, W)
    chosen: dict[tuple, np.ndarray] = {}
    for key in order:
        take = (counts[key] > 0) & ~valid
        mean[take] = sums[key][take] / counts[key][take]
        valid |= take
        chosen[key] = take
    for entry, (key, covered) in zip(used, coverage, strict=True):
        entry["used_pixels"] = int(np.count_nonzero(covered & chosen[key]))
    array = np.where(valid, normalise(mean, norm), np.float32(0))[None].astype(np.float32)
    fraction = float(valid.mean())
    skipped = None
    if fraction < norm.min_valid_fraction:
        skipped = (
            f"valid SAR fraction {fraction:.3f} is below the minimum "
            f"{norm.min_valid_fraction} (normalisation.geonrw_sar.min_valid_fraction)"
        )
        log.info("sar: %s", skipped)
    report = {
        "scenes": used,
        "valid_fraction": round(fraction, 6),
        "min_valid_fraction": norm.min_valid_fraction,
        "calibrated": calibrate,
        "averaging": "amplitude mean over valid pixels of one acquisition geometry; "
        "geometries mosaicked, the one covering most pixels first",
        "rule": norm.rule,
    }
    return StageResult(
        array=array,
        grid=grid,
        nodata=None,
        valid=valid,
        skipped=skipped,
        report=report,
        descriptions=("SAR normalised",),
    )


def write_sar_geotiff(path: str | os.PathLike, result: StageResult) -> Path:
    """Write band 1 (normalised SAR, float32) with ``valid`` as the GDAL dataset mask, atomically.

    The mask is internal to the GeoTIFF (no ``.msk`` file); read it with
    ``src.dataset_mask()`` or ``src.read(1, masked=True)``. No nodata value is
    set, because 0 is a legitimate normalised value.
    """

    if result.array is None or result.valid is None:
        raise ValueError("write_sar_geotiff needs a result with array and valid")
    return write_geotiff(
        path,
        result.array.astype(np.float32),
        result.grid,
        descriptions=result.descriptions,
        mask=result.valid,
        tags={
            "valid_fraction": result.report.get("valid_fraction"),
            "rule": result.report.get("rule"),
        },
    )
