"""The aerial stage: orthophotos -> an 8-bit RGB (optionally RGBI) image on the output grid.

NRW publishes 0.1 m RGBI JPEG2000 orthophotos in 1 km tiles; the paper
resamples them to 1 m. This stage takes any GDAL rasters (JPEG2000, GeoTIFF,
...), zip archives of them or GDAL ``/vsizip/`` paths, and:

1. expands zip archives into their raster members (name order): members
   with a suffix of :data:`RASTER_SUFFIXES`, and members with any other
   suffix a GDAL raster driver registers (``.hgt``, ``.asc``, ...) that GDAL
   opens as a raster (see :func:`raster_members`);
2. opens every source and checks it: a CRS, 8-bit data, at least 3 bands
   (4 with ``nir=True``) besides an alpha band; resolution and CRS are read
   from the files;
3. drops the sources whose footprint does not intersect the grid. The test
   runs both ways: the source's bounds in the grid's CRS, and the grid's
   bounds in the source's CRS (a global EPSG:4326 raster has no meaningful
   bounds in UTM, but the tile has them in degrees); a source is dropped
   only when both transforms succeed and both miss. Where neither can tell,
   the source is warped and dropped when it covers no pixel;
4. warps each remaining source onto the grid with lanczos through GDAL's
   warper, which reads the source in windows (memory stays per tile, bounded
   by GDAL's warp memory limit, however large the source). The source's
   validity comes with it: its alpha band (``src_alpha``), else its GDAL
   mask (nodata value, ``.msk`` or internal mask), so a transparent pixel is
   as uncovered as a pixel outside the source;
5. mosaics them: where sources overlap, the first source that covers a pixel
   wins (rasterio ``merge``'s "first" rule). A pixel is covered by a source
   when its centre falls inside that source's valid area (GDAL's alpha);
   near a source edge the lanczos kernel uses that source's pixels only, as
   ``gdalwarp`` does with several inputs.

Bands: 1-3 of every source are red, green, blue; band 4 is the near
infrared (NRW's ``dop10rgbi`` order). Output no-data: pixels that no source
covers are 0 in every band and ``False`` in ``StageResult.valid`` (``None``
when the whole grid is covered); :func:`write_aerial_geotiff` stores that
mask as a GDAL mask band rather than as a nodata value, so a real black pixel
is never taken for missing data, and the report counts the uncovered pixels.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.io import write_geotiff
from geosynth.sources import StageResult

log = logging.getLogger(__name__)

#: File suffixes always taken from zip archives as raster members (a broken one is an error).
RASTER_SUFFIXES = (".jp2", ".j2k", ".tif", ".tiff", ".vrt", ".img", ".png", ".jpg", ".jpeg")
RGB_BANDS = ("red", "green", "blue")
NIR_BAND = "nir"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Source:
    """One opened-and-checked raster source."""

    path: str  # what GDAL opens (a file or /vsizip/ path)
    crs: str
    overlap: bool | None  # footprint intersects the grid; None: the bounds do not tell
    resolution: tuple[float, float]  # in the source's own CRS units
    count: int
    alpha: int | None  # 1-based index of the alpha band, if any
    overviews: tuple[
        int, ...
    ] = ()  # decimation factors of its reduced resolutions (JPEG2000's levels)


def _safe_member(archive: Path, name: str) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive}: refusing zip member {name!r} (path outside the archive)")


def zip_members(archive: str | os.PathLike, suffixes: Sequence[str]) -> list[str]:
    """Names of the members of ``archive`` ending in one of ``suffixes``, sorted.

    Members whose names would point outside the archive (absolute paths,
    ``..``) are refused with a :class:`DataError` naming the archive.
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: not a readable zip archive: {exc}") from exc
    for name in names:
        _safe_member(archive, name)
    return sorted(n for n in names if n.lower().endswith(tuple(suffixes)))


@functools.cache
def gdal_raster_suffixes() -> tuple[str, ...]:
    """Suffixes (``.hgt``, ``.asc``, ...) that the GDAL raster drivers of this installation register."""
    from rasterio.drivers import raster_driver_extensions

    return tuple(sorted(f".{ext.lower()}" for ext in raster_driver_extensions()))


def raster_members(archive: str | os.PathLike) -> list[str]:
    """GDAL ``/vsizip/`` paths of the rasters in zip ``archive``, in member-name order.

    1. A member ending in one of :data:`RASTER_SUFFIXES` is a raster; a broken
       one fails later, with its name, when it is opened.
    2. A member ending in another suffix that a GDAL raster driver registers
       (:func:`gdal_raster_suffixes`: ``.hgt``, ``.asc``, ``.bil``, ...) is a
       raster when GDAL opens it as one; so an SRTM ``.hgt`` is taken, while a
       ``.aux.xml`` sidecar or a PDF leaflet beside the images is not.
    3. Other members are not rasters.

    Raises :class:`DataError` naming the archive when it holds no raster.
    """
    import rasterio

    archive = Path(archive)
    known = tuple(RASTER_SUFFIXES)
    others = tuple(s for s in gdal_raster_suffixes() if s not in known)
    root = f"/vsizip/{archive.resolve()}"
    paths, refused = [], []
    for member in zip_members(archive, known + others):
        path = f"{root}/{member}"
        if not member.lower().endswith(known):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                    rasterio.open(path).close()
            except rasterio.errors.RasterioIOError as exc:
                log.debug("%s!%s: not a raster GDAL reads (%s)", archive, member, exc)
                refused.append(member)
                continue
        paths.append(path)
    if not paths:
        tried = f"; GDAL cannot read {', '.join(refused[:5])}" if refused else ""
        raise DataError(
            f"{archive}: zip archive holds no raster ({', '.join(known)} or another suffix "
            f"a GDAL raster driver reads{tried})"
        )
    return paths


def expand_sources(sources: Iterable[str | os.PathLike]) -> list[str]:
    """GDAL paths of the rasters in ``sources`` (files, zip archives, ``/vsi...`` paths)."""
    paths: list[str] = []
    for source in sources:
        text = str(source)
        if text.startswith("/vsi"):
            paths.append(text)
            continue
        path = Path(text)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if path.suffix.lower() == ".zip":
            paths.extend(raster_members(path))
        else:
            paths.append(str(path))
    if not paths:
        raise DataError("aerial: no source rasters given")
    return paths


def _open_checked(path: str, grid: RasterGrid, nir: bool) -> _Source:
    import rasterio
    from rasterio.enums import ColorInterp

    try:
        with warnings.catch_warnings():
            # a raster without geotransform warns; it gets a DataError below instead
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            if src.crs is None:
                raise DataError(
                    f"{path}: raster has no CRS; set one (e.g. `rio edit-info --crs EPSG:25832`)"
                )
            if src.transform.is_identity:
                raise DataError(f"{path}: raster has no geotransform (not georeferenced)")
            need = 4 if nir else 3
            if src.count < need:
                what = "RGB plus NIR (--nir)" if nir else "RGB"
                raise DataError(f"{path}: has {src.count} band(s), {what} needs {need}")
            alphas = [i for i, c in enumerate(src.colorinterp, start=1) if c == ColorInterp.alpha]
            alpha = alphas[-1] if alphas else None
            if alpha is not None and alpha <= need:
                what = "near infrared (--nir)" if nir else "colour"
                raise DataError(
                    f"{path}: band {alpha} is an alpha band, not {what}; "
                    f"the aerial stage needs bands 1-{need} to be {'RGBI' if nir else 'RGB'}"
                )
            if src.dtypes[0] != "uint8":
                raise DataError(
                    f"{path}: data type {src.dtypes[0]}; the aerial stage expects 8-bit imagery"
                )
            overlap = _footprint_overlap(src.crs, src.bounds, grid)
            overviews = tuple(src.overviews(1))
            return _Source(path, src.crs.to_string(), overlap, src.res, src.count, alpha, overviews)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path}: cannot open raster: {exc}") from exc


def _transformed_bounds(src_crs, dst_crs, bounds) -> tuple[float, ...] | None:
    """``bounds`` in ``dst_crs``, or None when they do not transform to finite numbers."""
    import rasterio
    from rasterio.warp import transform_bounds

    try:
        out = transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)
    except (ValueError, rasterio.errors.RasterioError, rasterio._err.CPLE_BaseError):
        return None
    return tuple(out) if np.all(np.isfinite(out)) else None


def _footprint_overlap(src_crs, src_bounds, grid: RasterGrid) -> bool | None:
    """Does a source's footprint intersect ``grid``? None when neither bounds transform tells.

    The source's bounds are tried in the grid's CRS, then the grid's bounds
    in the source's CRS: either hit is an overlap (a false one costs only a
    warp that covers nothing); a miss needs both transforms to succeed.
    """
    in_grid_crs = _transformed_bounds(src_crs, grid.crs, src_bounds)
    if in_grid_crs is not None and _intersects(in_grid_crs, grid.bounds):
        return True
    in_src_crs = _transformed_bounds(grid.crs, src_crs, grid.bounds)
    if in_src_crs is not None and _intersects(in_src_crs, tuple(src_bounds)):
        return True
    if in_grid_crs is None or in_src_crs is None:
        return None
    return False


def _intersects(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def decode_level_of(source: _Source, grid: RasterGrid, decode_level: int | str) -> int:
    """The reduced resolution a source is read at: 0 the full image, ``k`` its ``k``-th level
    (JPEG2000 keeps its image at halved resolutions: level ``k`` has 2**k times the pixel
    size). ``auto``: the coarsest level that keeps at least two of its pixels per output
    pixel, so lanczos still downsamples; a level the source lacks falls back to the coarsest
    it has (a GeoTIFF without overviews: the full image)."""
    if decode_level == "auto":
        target = min(abs(grid.transform.a), abs(grid.transform.e))
        finest = min(abs(source.resolution[0]), abs(source.resolution[1]))
        usable = [i + 1 for i, f in enumerate(source.overviews) if finest * f * 2 <= target + 1e-9]
        return max(usable, default=0)
    level = int(decode_level)
    if level < 0:
        raise UsageError(f"--decode-level takes auto or a level >= 0, got {decode_level}")
    return min(level, len(source.overviews))


def _warp(source: _Source, grid: RasterGrid, bands: list[int], level: int = 0) -> np.ndarray:
    """``source`` warped onto ``grid``: (len(bands) + 1, H, W) uint8, the last band GDAL's alpha.

    The source's alpha band, when it has one, is its validity (``src_alpha``);
    otherwise GDAL takes its mask (nodata, ``.msk``, internal mask) itself. ``level`` > 0
    reads that reduced resolution (:func:`decode_level_of`) instead of the full image.
    """
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.warp import Resampling, reproject

    out = np.zeros((len(bands) + 1, grid.height, grid.width), dtype=np.uint8)  # (B+1, H, W)
    options = {"overview_level": level - 1} if level > 0 else {}
    try:
        with rasterio.open(source.path, **options) as src:
            reproject(
                rasterio.band(src, bands),
                out,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                src_alpha=source.alpha or 0,
                dst_alpha=len(bands) + 1,
                resampling=Resampling.lanczos,
            )
    except (RasterioError, rasterio._err.CPLE_BaseError) as exc:
        raise DataError(
            f"{source.path}: cannot read raster data (truncated or corrupt?): {exc}"
        ) from exc
    return out


def aerial_stage(
    sources: Iterable[str | os.PathLike],
    grid: RasterGrid,
    *,
    nir: bool = False,
    decode_level: int | str = 0,
    progress: Progress | None = None,
) -> StageResult:
    """Mosaic and resample orthophotos onto ``grid`` with lanczos.

    ``decode_level``: read each source at a reduced resolution (:func:`decode_level_of`:
    ``auto`` or a level), which for NRW's 0.1 m JPEG2000 onto 1 m decodes a fraction of the
    data; 0 (the default) reads the full image. ``docs/performance.md`` has what it costs.

    Returns a :class:`StageResult` whose array is uint8 (3, H, W) (red,
    green, blue) or (4, H, W) with ``nir``; ``valid`` is ``None`` when every
    pixel is covered, else the (H, W) coverage mask. ``progress(done, total)``
    is called after each source. Raises :class:`DataError` naming the file
    for unreadable, truncated or un-georeferenced sources, and when no source
    intersects the grid.
    """
    paths = expand_sources(sources)
    checked = [_open_checked(p, grid, nir) for p in paths]
    candidates = [s for s in checked if s.overlap is not False]
    for s in checked:
        if s.overlap is False:
            log.debug("aerial: %s does not intersect the grid; not read", s.path)

    bands = [1, 2, 3, 4] if nir else [1, 2, 3]
    image = np.zeros((len(bands), grid.height, grid.width), dtype=np.uint8)  # (B, H, W)
    covered = np.zeros(grid.shape, dtype=bool)  # (H, W)
    used = []
    levels = {s.path: decode_level_of(s, grid, decode_level) for s in candidates}
    for done, source in enumerate(candidates, start=1):
        warped = _warp(source, grid, bands, levels[source.path])  # (B + 1, H, W), alpha last
        valid = warped[-1] > 0
        if valid.any():
            used.append(source)
            take = valid & ~covered  # first source wins
            np.copyto(image, warped[:-1], where=take)
            covered |= take
        else:  # the bounds could not rule it out, the warp does
            log.debug("aerial: %s covers no pixel of the grid", source.path)
        if progress is not None:
            progress(done, len(candidates))
    skipped = [s.path for s in checked if s not in used]
    if not used:
        raise DataError(
            f"none of the {len(checked)} aerial source(s) intersects the grid "
            f"{grid.crs} {grid.bounds}: {', '.join(paths[:5])}{' ...' if len(paths) > 5 else ''}"
        )

    uncovered = int((~covered).sum())
    if uncovered:
        log.warning(
            "aerial: %d of %d pixels are covered by no source (masked)", uncovered, covered.size
        )
    report = {
        "sources": [s.path for s in used],
        "skipped_sources": skipped,
        "source_crs": sorted({s.crs for s in used}),
        "source_resolution": sorted({tuple(float(r) for r in s.resolution) for s in used}),
        "resampling": "lanczos",
        "decode_level": sorted({levels[s.path] for s in used}),
        "bands": [*RGB_BANDS, NIR_BAND][: len(bands)],
        "uncovered_pixels": uncovered,
    }
    return StageResult(
        array=image,
        grid=grid,
        nodata=None,
        valid=None if uncovered == 0 else covered,
        report=report,
        descriptions=tuple(report["bands"]),
    )


def write_aerial_geotiff(path: str | os.PathLike, result: StageResult) -> Path:
    """Write an aerial :class:`StageResult` as a tiled GeoTIFF, atomically.

    Uncovered pixels (``result.valid`` False) go into a GDAL mask band, not
    a nodata value.
    """

    data = result.array  # (B, H, W) uint8
    return write_geotiff(
        path,
        data,
        result.grid,
        descriptions=result.descriptions,
        mask=result.valid,
        photometric="RGB" if data.shape[0] == 3 else "MINISBLACK",
    )
