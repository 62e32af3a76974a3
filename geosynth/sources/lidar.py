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
from geosynth.sources import StageResult
from geosynth.sources.aerial import zip_members

log = logging.getLogger(__name__)

RETURNS = ("first", "last", "all")
STATS = ("mean", "max", "min")
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
    edges). Internally the grid is padded by one cell on every side: points
    outside the grid are clipped into the padding and dropped at the end, so
    the hot loop needs no boolean masks. Mean uses ``np.bincount`` on linear
    cell indices; max and min use ``np.maximum.at`` / ``np.minimum.at``.
    """

    def __init__(self, grid: RasterGrid, stat: str = "mean"):
        if stat not in STATS:
            raise UsageError(f"unknown statistic {stat!r}; choose one of {', '.join(STATS)}")
        t = grid.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise UsageError(f"the dem stage needs a north-up grid, got transform {tuple(t)[:6]}")
        self.grid = grid
        self.stat = stat
        self._res_x, self._res_y = t.a, -t.e
        left, bottom, _, _ = grid.bounds
        # origin of the padded grid: one cell west and south of the grid
        self._x0 = left - self._res_x
        self._y0 = bottom - self._res_y
        self._h, self._w = grid.height, grid.width
        self._buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        size = (self._h + 2) * (self._w + 2)
        self._counts = np.zeros(size, dtype=np.int64)
        if stat == "mean":
            self._acc = np.zeros(size, dtype=np.float64)
        else:
            fill = -np.inf if stat == "max" else np.inf
            self._acc = np.full(size, fill, dtype=np.float64)

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Work buffers reused across chunks (fresh allocations cost more than the arithmetic)."""
        if self._buffers is None or self._buffers[0].size < n:
            size = max(n, 1024)
            self._buffers = (np.empty(size), np.empty(size, np.intp), np.empty(size, np.intp))
        u, col, index = self._buffers
        return u[:n], col[:n], index[:n]

    def cell_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Linear indices into the padded (H + 2, W + 2) grid, row 0 at the north.

        The returned array is a view of a work buffer, valid until the next call.
        """
        u, col, index = self._scratch(len(x))
        np.subtract(x, self._x0, out=u)
        np.divide(u, self._res_x, out=u)
        np.clip(u, 0, self._w + 1, out=u)  # west / east padding columns 0 and W + 1
        np.copyto(col, u, casting="unsafe")  # truncation = floor for u >= 0
        np.subtract(y, self._y0, out=u)
        np.divide(u, self._res_y, out=u)
        np.clip(u, 0, self._h + 1, out=u)  # counted from the south
        np.copyto(index, u, casting="unsafe")
        np.subtract(self._h + 1, index, out=index)  # padded row, from the north
        index *= self._w + 2
        index += col
        return index

    def add(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        """Add points (1-D arrays in the grid's CRS, heights in metres)."""
        if len(x) == 0:
            return
        index = self.cell_index(x, y)
        size = self._counts.size
        self._counts += np.bincount(index, minlength=size)
        if self.stat == "mean":
            self._acc += np.bincount(index, weights=z, minlength=size)
        elif self.stat == "max":
            np.maximum.at(self._acc, index, z)
        else:
            np.minimum.at(self._acc, index, z)

    def _inner(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape(self._h + 2, self._w + 2)[1:-1, 1:-1]

    @property
    def counts(self) -> np.ndarray:
        """Points per cell, (H, W) int64."""
        return self._inner(self._counts)

    def values(self) -> np.ndarray:
        """The statistic per cell, (H, W) float32, NaN where a cell has no point."""
        counts = self.counts
        acc = self._inner(self._acc)
        out = np.full(counts.shape, np.nan, dtype=np.float32)
        has = counts > 0
        out[has] = acc[has] / counts[has] if self.stat == "mean" else acc[has]
        return out


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
