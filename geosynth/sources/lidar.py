"""The dem stage: airborne lidar point clouds (LAS/LAZ) -> a height raster on the output grid.

The paper's DEM is the mean height of the first and only returns per 1 m
cell. :func:`dem_stage` streams the points of every file in chunks (laspy's
``chunk_iterator``; memory does not grow with the point count), keeps the
chosen returns, reprojects them onto the grid's CRS, accumulates one
statistic per cell, then fills small holes.

Rules, in order:

1. Returns: ``first`` keeps ``return_number == 1`` (first *and* only
   returns), ``last`` keeps ``return_number == number_of_returns``, ``all``
   keeps every point. Points with the invalid return number 0 are kept only
   by ``all`` and are counted in the report.
2. CRS: the file's header CRS (GeoTIFF keys or WKT). A file without one
   takes ``default_crs`` (the catalog grid's CRS when ``None``); a warning is
   logged and recorded in the report.
3. Heights in metres: the unit of the vertical CRS when the file's CRS is
   compound; otherwise, when the horizontal CRS is projected in a non-metre
   unit (international or US survey feet), z is taken to be in that unit
   too (common LAS practice) and converted with its factor; otherwise z is
   in metres. No vertical datum is changed.
4. Cell edges: every cell is closed on its west and south edges and open on
   its east and north edges, ``[left, right) x [bottom, top)``, the rule
   :func:`geosynth.grid.tile_of_point` uses for tiles. A point on the edge
   between two cells (or two tiles) therefore counts exactly once: in the
   cell east or north of the edge.
5. Holes: cells without points are filled with GDAL's fill-nodata
   (``rasterio.fill.fillnodata``, inverse-distance interpolation, no
   smoothing) from cells at most ``fill_distance`` pixels away; cells still
   empty stay NaN and are counted in the report.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.names import RETURNS, STATS
from geosynth.sources import StageResult
from geosynth.sources.aerial import zip_members

log = logging.getLogger(__name__)

LIDAR_SUFFIXES = (".las", ".laz")
#: Default hole-filling distance in output pixels (10 m on the 1 m NRW grid):
#: bridges gaps between scan lines and under small objects, not lakes.
DEFAULT_FILL_DISTANCE_PX = 10.0
DEFAULT_CHUNK_SIZE = 1_000_000

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- gridding


class PointGridder:
    """Accumulates one statistic of point heights per cell of a north-up grid.

    Cells follow rule 4 of the module docstring (closed west and south
    edges); points outside the grid, or with a NaN coordinate, are dropped.
    :meth:`add` runs a numba kernel in two passes over the points: the cell
    of every point (``floor``, bounds check), then the accumulation, in point
    order: sum and count for mean, running max or min (a NaN height wins, as
    with ``np.maximum``) plus count. Splitting the passes keeps many cache
    misses of the scattered accumulation in flight at once. The kernels are
    compiled on first use and cached on disk (numba ``cache=True``).
    """

    def __init__(self, grid: RasterGrid, stat: str = "mean"):
        if stat not in STATS:
            raise UsageError(f"unknown statistic {stat!r}; choose one of {', '.join(STATS)}")
        t = grid.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise UsageError(f"the dem stage needs a north-up grid, got transform {tuple(t)[:6]}")
        self.grid = grid
        self.stat = stat
        self._res_x, self._res_y = float(t.a), float(-t.e)
        left, bottom, _, _ = grid.bounds
        self._left, self._bottom = float(left), float(bottom)
        self._kernels = _kernels()
        size = grid.width * grid.height
        fill = {"mean": 0.0, "max": -np.inf, "min": np.inf}[stat]
        self._count = np.zeros(size, dtype=np.int64)  # (H * W,) points per cell
        self._acc = np.full(size, fill, dtype=np.float64)  # (H * W,) sum, max or min
        self._index = np.empty(0, dtype=np.int64)  # cell index per point, reused across chunks

    def add(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        """Add points (1-D arrays in the grid's CRS, heights in metres)."""
        x, y, z = (np.ascontiguousarray(a, dtype=np.float64) for a in (x, y, z))
        if not (x.ndim == y.ndim == z.ndim == 1 and len(x) == len(y) == len(z)):
            raise ValueError(
                f"x, y, z must be 1-D of one length, got {x.shape} {y.shape} {z.shape}"
            )
        n = len(x)
        if n == 0:
            return
        if self._index.size < n:
            self._index = np.empty(max(n, 1024), dtype=np.int64)
        cells = self._index[:n]
        h, w = self.grid.height, self.grid.width
        self._kernels["cells"](
            x, y, self._left, self._bottom, self._res_x, self._res_y, h, w, cells
        )
        self._kernels[self.stat](cells, z, self._count, self._acc)

    @property
    def counts(self) -> np.ndarray:
        """Points per cell, (H, W) int64 (a view, updated by :meth:`add`)."""
        return self._count.reshape(self.grid.shape)

    def values(self) -> np.ndarray:
        """The statistic per cell, (H, W) float32, NaN where a cell has no point."""
        out = np.empty(self._count.size, dtype=np.float32)
        self._kernels["values"](self._count, self._acc, self.stat == "mean", out)
        return out.reshape(self.grid.shape)


# The kernels, plain Python until _kernels() compiles them. cells[i] is the
# linear index (row * W + col, row 0 at the north) of point i, or -1 outside.
# (u, v) are the cell coordinates from the west and south edges; the float
# comparisons u >= 0 and u < W equal floor(u) in [0, W) and also drop NaN;
# int() truncates, which is floor for u >= 0.


def _cell_pass(x, y, left, bottom, res_x, res_y, h, w, cells):  # pragma: no cover (numba)
    for i in range(x.shape[0]):
        u = (x[i] - left) / res_x
        v = (y[i] - bottom) / res_y
        if u >= 0.0 and u < w and v >= 0.0 and v < h:
            cells[i] = (h - 1 - int(v)) * w + int(u)
        else:
            cells[i] = -1


def _mean_pass(cells, z, counts, acc):  # pragma: no cover (numba)
    for i in range(cells.shape[0]):
        c = cells[i]
        if c >= 0:
            counts[c] += 1
            acc[c] += z[i]


def _max_pass(cells, z, counts, acc):  # pragma: no cover (numba)
    for i in range(cells.shape[0]):
        c = cells[i]
        if c >= 0:
            counts[c] += 1
            value = z[i]
            if value > acc[c] or value != value:  # a NaN wins, as in np.maximum
                acc[c] = value


def _min_pass(cells, z, counts, acc):  # pragma: no cover (numba)
    for i in range(cells.shape[0]):
        c = cells[i]
        if c >= 0:
            counts[c] += 1
            value = z[i]
            if value < acc[c] or value != value:  # a NaN wins, as in np.minimum
                acc[c] = value


def _values_pass(counts, acc, mean, out):  # pragma: no cover (numba)
    for c in range(counts.shape[0]):
        n = counts[c]
        if n == 0:
            out[c] = np.nan
        elif mean:
            out[c] = acc[c] / n
        else:
            out[c] = acc[c]


@functools.cache
def _kernels() -> dict[str, Callable]:
    """The compiled kernels; numba is imported here, on first use, not with the module.

    ``cache=True`` keeps the machine code next to this file (``__pycache__``)
    or, where that is read-only, in numba's user cache dir (``NUMBA_CACHE_DIR``
    or ``~/.cache/numba``); with no writable place at all it compiles each run.
    Compilation itself is lazy: a kernel compiles (or loads) on its first call.
    """
    import numba

    def jit(func):
        try:
            return numba.njit(cache=True, nogil=True)(func)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            log.debug("numba cannot cache %s (%s); compiling without a cache", func.__name__, exc)
            return numba.njit(nogil=True)(func)

    return {
        "cells": jit(_cell_pass),
        "mean": jit(_mean_pass),
        "max": jit(_max_pass),
        "min": jit(_min_pass),
        "values": jit(_values_pass),
    }


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _LidarFile:
    label: str  # for messages and the report: a path or "archive.zip!member"
    archive: Path | None
    member: str | None
    path: Path | None


def _lidar_files(sources: Iterable[str | os.PathLike]) -> list[_LidarFile]:
    files: list[_LidarFile] = []
    for source in sources:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if path.suffix.lower() == ".zip":
            members = zip_members(path, LIDAR_SUFFIXES)
            if not members:
                raise DataError(f"{path}: zip archive holds no .las/.laz file")
            files.extend(_LidarFile(f"{path}!{m}", path, m, None) for m in members)
        else:
            files.append(_LidarFile(str(path), None, None, path))
    if not files:
        raise DataError("dem: no lidar files given")
    return files


def _read_header(f: _LidarFile):
    import laspy

    try:
        if f.archive is None:
            with laspy.open(f.path) as reader:
                return reader.header
        with zipfile.ZipFile(f.archive) as zf, zf.open(f.member) as stream:
            return laspy.LasHeader.read_from(stream)
    except (laspy.errors.LaspyException, OSError, ValueError, RuntimeError, EOFError) as exc:
        raise DataError(f"{f.label}: not a readable LAS/LAZ file: {exc}") from exc


@contextlib.contextmanager
def _local_path(f: _LidarFile) -> Iterator[Path]:
    """A file path laspy can stream from: the file itself, or a zip member extracted to a temp dir."""
    if f.archive is None:
        yield f.path
        return
    with tempfile.TemporaryDirectory(prefix="geosynth-lidar-") as tmp:
        # the member's own name is never used as a path: nothing lands outside tmp
        target = Path(tmp) / ("member" + Path(f.member).suffix.lower())
        with zipfile.ZipFile(f.archive) as zf, zf.open(f.member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        yield target


@dataclass(frozen=True)
class _FileCrs:
    transformer: object | None  # pyproj Transformer to the grid CRS, None when equal
    z_factor: float  # metres per z unit
    crs: str  # for the report
    assumed: bool  # True when the default CRS was taken


def _unit_factor(crs) -> float:
    axis = crs.axis_info[0] if crs.axis_info else None
    if axis is None or not axis.unit_conversion_factor:
        return 1.0
    return float(axis.unit_conversion_factor)


def _file_crs(header, label: str, default_crs, grid_crs) -> _FileCrs:
    from pyproj import CRS, Transformer

    try:
        crs = header.parse_crs()
    except Exception as exc:  # laspy/pyproj raise many kinds on bad GeoTIFF keys
        raise DataError(f"{label}: cannot parse the CRS in its header: {exc}") from exc
    assumed = crs is None
    if assumed:
        crs = CRS.from_user_input(default_crs)
    horizontal = crs
    z_factor = 1.0
    if crs.is_compound:
        horizontal, vertical = crs.sub_crs_list[0], crs.sub_crs_list[-1]
        z_factor = _unit_factor(vertical)
    elif crs.is_projected:
        z_factor = _unit_factor(crs)  # rule 3: z in the horizontal unit
    target = CRS.from_user_input(grid_crs)
    transformer = None
    if not horizontal.equals(target, ignore_axis_order=True):
        transformer = Transformer.from_crs(horizontal, target, always_xy=True)
    authority = horizontal.to_authority()
    name = ":".join(authority) if authority else horizontal.name
    return _FileCrs(transformer, z_factor, name, assumed)


def _grid_bounds_of(header, fcrs: _FileCrs) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = header.mins[:2], header.maxs[:2]
    if fcrs.transformer is None:
        return float(x0), float(y0), float(x1), float(y1)
    return fcrs.transformer.transform_bounds(x0, y0, x1, y1, densify_pts=21)


def _overlaps(a, b) -> bool:
    """Closed-interval overlap: a file touching the grid edge is read (its points may lie on it)."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _selection(chunk, returns: str) -> np.ndarray | None:
    if returns == "all":
        return None
    rn = np.asarray(chunk.return_number)
    if returns == "first":
        return rn == 1
    return (rn == np.asarray(chunk.number_of_returns)) & (rn > 0)


# --------------------------------------------------------------------------- the stage


def dem_stage(
    sources: Iterable[str | os.PathLike],
    grid: RasterGrid,
    *,
    returns: str = "first",
    stat: str = "mean",
    fill_distance: float = DEFAULT_FILL_DISTANCE_PX,
    default_crs: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> StageResult:
    """Grid lidar points (.las/.laz files or zips of them) into a height raster on ``grid``.

    Returns a :class:`StageResult` with a float32 (1, H, W) array in metres,
    NaN where a cell is still empty after filling (``nodata`` is NaN).
    ``progress(done, total)`` counts points read. Raises :class:`UsageError`
    for bad options and :class:`DataError` naming the file for unreadable or
    truncated files, and when no selected point falls inside the grid.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if returns not in RETURNS:
        raise UsageError(f"unknown returns {returns!r}; choose one of {', '.join(RETURNS)}")
    if chunk_size < 1:
        raise UsageError(f"chunk_size must be positive, got {chunk_size}")
    if fill_distance < 0:
        raise UsageError(f"fill_distance must be >= 0 pixels, got {fill_distance}")
    gridder = PointGridder(grid, stat)
    if default_crs is None:
        from geosynth.catalog import load_catalog

        default_crs = load_catalog().grid.crs
    try:
        CRS.from_user_input(default_crs)
    except CRSError as exc:
        raise UsageError(f"default_crs {default_crs!r} is not a CRS: {exc}") from exc

    files = _lidar_files(sources)
    plans = []  # (file, header, crs) of the files that overlap the grid
    skipped: list[str] = []
    warnings: list[str] = []
    for f in files:
        header = _read_header(f)
        try:
            fcrs = _file_crs(header, f.label, default_crs, grid.crs)
        except CRSError as exc:
            raise DataError(f"{f.label}: unusable CRS: {exc}") from exc
        if fcrs.assumed:
            msg = f"{f.label}: no CRS in the header; assuming {default_crs}"
            log.warning(msg)
            warnings.append(msg)
        if header.point_count == 0 or not _overlaps(_grid_bounds_of(header, fcrs), grid.bounds):
            skipped.append(f.label)
            continue
        plans.append((f, header, fcrs))
    if not plans:
        raise DataError(
            f"none of the {len(files)} lidar file(s) overlaps the grid {grid.crs} {grid.bounds}: "
            + ", ".join(f.label for f in files[:5])
        )

    total = sum(int(h.point_count) for _, h, _ in plans)
    counts = {"points_read": 0, "points_selected": 0, "invalid_return_number": 0}
    file_reports = []
    for f, header, fcrs in plans:
        read = _grid_file(f, header, fcrs, gridder, returns, chunk_size, counts, total, progress)
        file_reports.append(
            {
                "file": f.label,
                "points": read,
                "crs": fcrs.crs,
                "z_factor": fcrs.z_factor,
                "crs_assumed": fcrs.assumed,
            }
        )

    cell_counts = gridder.counts
    points_in_grid = int(cell_counts.sum())
    if points_in_grid == 0:
        raise DataError(
            f"no points ({returns} returns) fall inside the grid {grid.crs} {grid.bounds} "
            f"({counts['points_read']} points read from "
            + ", ".join(f.label for f, _, _ in plans)
            + ")"
        )
    heights = gridder.values()  # (H, W) float32
    empty = int((cell_counts == 0).sum())
    heights = _fill_holes(heights, cell_counts > 0, fill_distance)
    holes = int(np.isnan(heights).sum())
    if holes:
        log.warning("dem: %d cells stay empty after filling up to %g px", holes, fill_distance)
    report = {
        "sources": [f.label for f, _, _ in plans],
        "files": file_reports,
        "skipped_files": skipped,
        "returns": returns,
        "stat": stat,
        **counts,
        "points_in_grid": points_in_grid,
        "cells_with_points": int(cell_counts.size - empty),
        "fill_distance_px": float(fill_distance),
        "filled_pixels": empty - holes,
        "holes": holes,
        "warnings": warnings,
    }
    return StageResult(
        array=heights[None],  # (1, H, W)
        grid=grid,
        nodata=float("nan"),
        report=report,
        descriptions=(f"height_{stat}_{returns}",),
    )


def _grid_file(f, header, fcrs, gridder, returns, chunk_size, counts, total, progress) -> int:
    """Stream one file's points into ``gridder``; returns the number of points read."""
    import laspy

    selection = laspy.DecompressionSelection.XY_RETURNS_CHANNEL | laspy.DecompressionSelection.Z
    read = 0
    try:
        with _local_path(f) as path, laspy.open(path, decompression_selection=selection) as reader:
            for chunk in reader.chunk_iterator(chunk_size):
                read += len(chunk)
                rn = np.asarray(chunk.return_number)
                counts["invalid_return_number"] += int(np.count_nonzero(rn == 0))
                keep = _selection(chunk, returns)
                x, y, z = np.asarray(chunk.x), np.asarray(chunk.y), np.asarray(chunk.z)
                if keep is not None:
                    x, y, z = x[keep], y[keep], z[keep]
                counts["points_selected"] += len(x)
                if fcrs.transformer is not None and len(x):
                    x, y = fcrs.transformer.transform(x, y)
                if fcrs.z_factor != 1.0:
                    z = z * fcrs.z_factor
                gridder.add(x, y, z)
                counts["points_read"] += len(chunk)
                if progress is not None:
                    progress(counts["points_read"], total)
    except (laspy.errors.LaspyException, OSError, ValueError, RuntimeError, EOFError) as exc:
        raise DataError(f"{f.label}: cannot read points (truncated or corrupt?): {exc}") from exc
    if read < header.point_count:
        raise DataError(
            f"{f.label}: truncated: header announces {header.point_count} points, file holds {read}"
        )
    return read


def _fill_holes(heights: np.ndarray, has_points: np.ndarray, distance: float) -> np.ndarray:
    """Fill NaN cells from cells with points at most ``distance`` pixels away (GDAL fill-nodata)."""
    if distance <= 0 or has_points.all():
        return heights
    from rasterio.fill import fillnodata

    filled = fillnodata(
        heights.copy(),
        mask=has_points.astype(np.uint8),
        max_search_distance=float(distance),
        smoothing_iterations=0,
    )
    return filled.astype(np.float32, copy=False)
