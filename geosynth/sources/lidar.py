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
2. CRS, per file (:func:`_resolve_crs`): ``crs`` when given, for every file
   whatever its header says; else the header's CRS (WKT, else GeoTIFF keys);
   header CRS records that do not read (GeoTIFF keys laspy cannot turn into
   a CRS, WKT that does not parse) take ``crs_for_unreadable`` and are
   refused, saying what they held, without it; a file without any CRS record
   (or with an empty WKT string) takes ``default_crs`` (the catalog grid's
   CRS when ``None``). An assumed CRS is logged and recorded in the report.
   A geocentric CRS (EPSG:4978) is refused: its x, y are not map coordinates.
3. Heights in metres: the unit of the vertical CRS when the file's CRS is
   compound; otherwise, when the horizontal CRS is projected in a non-metre
   unit (international or US survey feet), z is taken to be in that unit
   too (common LAS practice) and converted with its factor; otherwise z is
   in metres. No vertical datum is changed.
4. Cell edges: every cell is closed on its west and south edges and open on
   its east and north edges, ``[left, right) x [bottom, top)``, the rule
   :func:`geosynth.grid.tile_of_point` uses for tiles. A point on the edge
   between two cells (or two tiles) therefore counts exactly once: in the
   cell east or north of the edge. With ``radius`` R a point counts instead
   in every cell whose centre lies closer than R (PDAL ``writers.gdal``'s
   rule), in or out of its own cell, and points up to R outside the grid
   count in the cells near its edge.
5. Classes: points of the ``drop_classes`` (by default the catalog's
   ``sources.lidar.drop_classes``: ASPRS 7 low and 18 high noise, NRW's 24 points below the
   ground) never enter the DEM; ``keep_classes`` keeps only the classes it names instead.
   Noise returns are often first returns, so without this a bird or a fog patch becomes a
   spike. The report counts the points dropped per class.
6. Holes: cells without points are filled with GDAL's fill-nodata
   (``rasterio.fill.fillnodata``, inverse-distance interpolation, no
   smoothing) from cells at most ``fill_distance`` pixels away; cells still
   empty stay NaN and are counted in the report.

Which option reproduces what: the paper's text describes the default, the
mean of the first returns per 1 m cell (``returns="first"``, ``stat="mean"``,
no radius). The authors' code (``build_lidar_dem.py``) grids with PDAL's
``writers.gdal``, which averages every point closer than ``radius`` to a cell
centre, with the default radius ``resolution * sqrt(2)``: ``--radius 1.4142``
(``radius=2 ** 0.5``) on the 1 m grid reproduces that; its cells overlap, so
the DEM is smoother and has fewer holes than the per-cell mean. Their code also kept
every first return whatever its class: ``drop_classes=()`` (``--drop-classes none``)
restores that.
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

from geosynth.catalog import load_catalog
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

    With ``radius`` (grid CRS units) a point counts in every cell whose
    centre is closer than ``radius``, as PDAL's ``writers.gdal`` grids: one
    kernel pass visits, per point, the few cells within reach
    (``ceil(radius / res + 1/2)`` cells each way) and accumulates those that
    pass the distance test. :attr:`points_used` counts the points that
    landed in at least one cell.
    """

    def __init__(self, grid: RasterGrid, stat: str = "mean", radius: float | None = None):
        if stat not in STATS:
            raise UsageError(f"unknown statistic {stat!r}; choose one of {', '.join(STATS)}")
        if radius is not None and not (radius > 0 and np.isfinite(radius)):
            raise UsageError(f"radius must be a positive distance, got {radius}")
        t = grid.transform
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise UsageError(f"the dem stage needs a north-up grid, got transform {tuple(t)[:6]}")
        self.grid = grid
        self.stat = stat
        self.radius = None if radius is None else float(radius)
        self.points_used = 0
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
        h, w = self.grid.height, self.grid.width
        if self.radius is not None:
            self.points_used += int(
                self._kernels["radius"](
                    x, y, z, self._left, self._bottom, self._res_x, self._res_y, h, w,
                    self.radius, _RADIUS_MODES[self.stat], self._count, self._acc,
                )
            )  # fmt: skip
            return
        if self._index.size < n:
            self._index = np.empty(max(n, 1024), dtype=np.int64)
        cells = self._index[:n]
        self._kernels["cells"](
            x, y, self._left, self._bottom, self._res_x, self._res_y, h, w, cells
        )
        self._kernels[self.stat](cells, z, self._count, self._acc)
        self.points_used += int(np.count_nonzero(cells >= 0))

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


#: the ``mode`` argument of :func:`_radius_pass` per statistic
_RADIUS_MODES = {"mean": 0, "max": 1, "min": 2}


def _radius_pass(
    x, y, z, left, bottom, res_x, res_y, h, w, radius, mode, counts, acc
):  # pragma: no cover (numba)
    # cells within reach of a point in cell col0: |col - col0| < radius / res + 1/2
    reach_x = int(np.ceil(radius / res_x + 0.5))
    reach_y = int(np.ceil(radius / res_y + 0.5))
    used = 0
    for i in range(x.shape[0]):
        u = (x[i] - left) / res_x
        v = (y[i] - bottom) / res_y
        # out of reach of every cell (NaN included): skipped before int() sees a huge value
        if not (u > -reach_x and u < w + reach_x and v > -reach_y and v < h + reach_y):
            continue
        col0 = int(np.floor(u))
        row0 = int(np.floor(v))  # counted from the south edge
        hit = False
        for rv in range(max(row0 - reach_y, 0), min(row0 + reach_y, h - 1) + 1):
            dy = bottom + (rv + 0.5) * res_y - y[i]
            for cu in range(max(col0 - reach_x, 0), min(col0 + reach_x, w - 1) + 1):
                dx = left + (cu + 0.5) * res_x - x[i]
                if np.sqrt(dx * dx + dy * dy) >= radius:  # strictly closer only, as PDAL
                    continue
                c = (h - 1 - rv) * w + cu
                counts[c] += 1
                value = z[i]
                if mode == 0:
                    acc[c] += value
                elif mode == 1:
                    if value > acc[c] or value != value:
                        acc[c] = value
                elif value < acc[c] or value != value:
                    acc[c] = value
                hit = True
        if hit:
            used += 1
    return used


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
        "radius": jit(_radius_pass),
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


# --------------------------------------------------------------------------- CRS

#: GeoTIFF key names (GeoTIFF 1.0, section 6.2), for messages about keys that do not read
_GEOKEY_NAMES = {
    1024: "GTModelTypeGeoKey",
    1025: "GTRasterTypeGeoKey",
    1026: "GTCitationGeoKey",
    2048: "GeographicTypeGeoKey",
    2049: "GeogCitationGeoKey",
    2050: "GeogGeodeticDatumGeoKey",
    2054: "GeogAngularUnitsGeoKey",
    3072: "ProjectedCSTypeGeoKey",
    3073: "PCSCitationGeoKey",
    3074: "ProjectionGeoKey",
    3075: "ProjCoordTransGeoKey",
    3076: "ProjLinearUnitsGeoKey",
    4096: "VerticalCSTypeGeoKey",
    4097: "VerticalCitationGeoKey",
    4098: "VerticalDatumGeoKey",
    4099: "VerticalUnitsGeoKey",
}
_MODEL_TYPE_KEY, _PROJECTED_CS_KEY = 1024, 3072
_MODEL_TYPE_PROJECTED = 1
_USER_DEFINED = 32767  # a GeoTIFF key value: defined by further keys, not by an EPSG code
_DOUBLE_PARAMS, _ASCII_PARAMS = 34736, 34737  # where a key's value lives when not inline
_GEOKEY_RECORD, _WKT_RECORD = 34735, 2112  # LASF_Projection record ids
#: how a file's CRS was chosen (rule 2), as the report and messages word it
_CRS_ORIGINS = {
    "override": "given with --crs",
    "header": "from the header",
    "unreadable": "given with --default-crs for an unreadable header",
    "default": "assumed, none in the header",
}


@dataclass(frozen=True)
class _HeaderCrs:
    """What a LAS header says about its CRS."""

    crs: object | None  # the pyproj CRS its records give, None when absent or unreadable
    unreadable: str | None = None  # what the records held when none of them reads
    note: str = ""  # why a CRS record was taken for none (an empty WKT string)


def _crs_name(crs) -> str:
    authority = crs.to_authority()
    return ":".join(authority) if authority else crs.name


def _header_crs(header) -> _HeaderCrs:
    """The CRS in a LAS header's ``LASF_Projection`` records: WKT first (as laspy), then GeoTIFF keys.

    Unlike ``LasHeader.parse_crs`` this tells "no CRS" from "CRS records
    laspy cannot read", and a blank WKT string counts as no CRS.
    """
    from laspy.vlrs.known import GeoKeyDirectoryVlr, WktCoordinateSystemVlr
    from pyproj import CRS

    records = list(header.vlrs.get_by_id("LASF_Projection"))
    if header.evlrs is not None:
        records.extend(header.evlrs.get_by_id("LASF_Projection"))
    wkt_crs = keys_crs = None
    problems: list[str] = []
    note = ""
    for rec in records:
        if isinstance(rec, WktCoordinateSystemVlr):
            wkt = rec.string.strip(" \t\r\n\0")
            if not wkt:
                note = "its WKT record is empty"
                continue
            try:
                wkt_crs = wkt_crs or CRS.from_wkt(wkt)
            except Exception as exc:  # pyproj's CRSError, whatever the text holds
                problems.append(f"a WKT record that does not parse ({exc}): {wkt[:80]!r}")
        elif isinstance(rec, GeoKeyDirectoryVlr):
            crs, why = _geokeys_crs(rec)
            if crs is None:
                problems.append(f"GeoTIFF keys {_describe_geokeys(rec, records)} ({why})")
            keys_crs = keys_crs or crs
        elif rec.record_id in (_GEOKEY_RECORD, _WKT_RECORD):  # laspy could not decode it at all
            kind = "GeoTIFF key directory" if rec.record_id == _GEOKEY_RECORD else "WKT"
            problems.append(f"a malformed {kind} record ({len(rec.record_data)} bytes)")
    if wkt_crs is not None or keys_crs is not None:
        return _HeaderCrs(wkt_crs or keys_crs)
    return _HeaderCrs(None, "; ".join(problems) or None, note)


def _geokeys_crs(directory) -> tuple[object | None, str]:
    """laspy's CRS of a GeoTIFF key directory, or None and why not."""
    try:
        crs = directory.parse_crs()
    except Exception as exc:  # pyproj's CRSError for an EPSG code it does not know
        return None, f"not a CRS pyproj knows: {exc}"
    if crs is None:
        return None, "no EPSG code of a CRS among them"
    values = {key.id: key.value_offset for key in directory.geo_keys}
    projected = values.get(_MODEL_TYPE_KEY) == _MODEL_TYPE_PROJECTED or _PROJECTED_CS_KEY in values
    if projected and not crs.is_projected:  # laspy falls back on the geographic base
        return None, f"a projected CRS that laspy reads only as its base {_crs_name(crs)}"
    return crs, ""


def _describe_geokeys(directory, records) -> str:
    """``Name=value, ...`` of a GeoTIFF key directory, values looked up in their records."""
    from laspy.vlrs.known import GeoAsciiParamsVlr, GeoDoubleParamsVlr

    ascii_rec = next((r for r in records if isinstance(r, GeoAsciiParamsVlr)), None)
    double_rec = next((r for r in records if isinstance(r, GeoDoubleParamsVlr)), None)
    parts = []
    for key in directory.geo_keys:
        start, stop = key.value_offset, key.value_offset + key.count
        if key.tiff_tag_location == 0:
            value = str(key.value_offset)
            if key.value_offset == _USER_DEFINED:
                value += " (user-defined)"
        elif key.tiff_tag_location == _ASCII_PARAMS and ascii_rec is not None:
            text = ascii_rec.record_data_bytes()[start:stop].decode("ascii", "replace")
            value = repr(text.rstrip("|\0"))
        elif key.tiff_tag_location == _DOUBLE_PARAMS and double_rec is not None:
            value = ", ".join(f"{d.value:g}" for d in double_rec.doubles[start:stop])
        else:
            value = f"(in missing record {key.tiff_tag_location})"
        parts.append(f"{_GEOKEY_NAMES.get(key.id, f'key {key.id}')}={value}")
    return ", ".join(parts) or "(none)"


def _resolve_crs(found: _HeaderCrs, label: str, crs, default_crs, crs_for_unreadable):
    """(CRS, origin, warning or None) of one file: rule 2 of the module docstring.

    1. ``crs``, the caller's override: every file, whatever its header says.
    2. The header's CRS, when one of its records reads.
    3. CRS records that do not read: ``crs_for_unreadable``; without it a
       :class:`DataError` that says what they held.
    4. No CRS record (or only an empty WKT string): ``default_crs``.
    """
    if crs is not None:
        return crs, "override", None
    if found.crs is not None:
        return found.crs, "header", None
    if found.unreadable is not None:
        if crs_for_unreadable is None:
            raise DataError(
                f"{label}: the header's CRS records do not read: {found.unreadable}. "
                "Give the file's CRS with --default-crs CRS (crs_for_unreadable=), "
                "or override the header with --crs CRS"
            )
        return (
            crs_for_unreadable,
            "unreadable",
            f"{label}: the header's CRS records do not read ({found.unreadable}); "
            f"using {_crs_name(crs_for_unreadable)} as asked",
        )
    note = f" ({found.note})" if found.note else ""
    return (
        default_crs,
        "default",
        f"{label}: no CRS in the header{note}; assuming {_crs_name(default_crs)}",
    )


@dataclass(frozen=True)
class _FileCrs:
    transformer: object | None  # pyproj Transformer to the grid CRS, None when equal
    z_factor: float  # metres per z unit
    crs: str  # for the report
    origin: str  # a key of _CRS_ORIGINS

    @property
    def assumed(self) -> bool:
        return self.origin in ("default", "unreadable")


def _unit_factor(crs) -> float:
    axis = crs.axis_info[0] if crs.axis_info else None
    if axis is None or not axis.unit_conversion_factor:
        return 1.0
    return float(axis.unit_conversion_factor)


def _file_crs(header, label: str, crs, origin: str, grid_crs) -> _FileCrs:
    from pyproj import CRS, Transformer

    (x0, y0), (x1, y1) = header.mins[:2], header.maxs[:2]
    if crs.is_geocentric:
        raise DataError(
            f"{label}: CRS {_crs_name(crs)} ({_CRS_ORIGINS[origin]}) is geocentric (x, y, z "
            "from the earth's centre); the dem stage grids map or geographic coordinates. "
            f"Its coordinates span x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f}: if the "
            f"header CRS is wrong, override it with --crs CRS (crs=), e.g. --crs {grid_crs}"
        )
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
    return _FileCrs(transformer, z_factor, _crs_name(horizontal), origin)


def _user_crs(value, option: str):
    """A CRS the caller gave (``default_crs`` and friends), or a :class:`UsageError` naming the option."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise UsageError(f"{option} {value!r} is not a CRS: {exc}") from exc


def _grid_bounds_of(header, fcrs: _FileCrs) -> tuple[float, float, float, float] | None:
    """The header's bounds in the grid's CRS; None when they do not transform to finite numbers."""
    from pyproj.exceptions import ProjError

    (x0, y0), (x1, y1) = header.mins[:2], header.maxs[:2]
    if fcrs.transformer is None:
        return float(x0), float(y0), float(x1), float(y1)
    try:
        bounds = fcrs.transformer.transform_bounds(x0, y0, x1, y1, densify_pts=21)
    except ProjError:
        return None
    return bounds if np.all(np.isfinite(bounds)) else None


def _overlaps(a, b) -> bool:
    """Closed-interval overlap: a file touching the grid edge is read (its points may lie on it)."""
    if a is None:
        return False
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _describe_file(f: _LidarFile, header, fcrs: _FileCrs) -> str:
    (x0, y0), (x1, y1) = header.mins[:2], header.maxs[:2]
    return (
        f"{f.label} ({header.point_count} points, x {x0:.2f}..{x1:.2f}, y {y0:.2f}..{y1:.2f} "
        f"in {fcrs.crs}, {_CRS_ORIGINS[fcrs.origin]})"
    )


def _selection(chunk, returns: str) -> np.ndarray | None:
    if returns == "all":
        return None
    rn = np.asarray(chunk.return_number)
    if returns == "first":
        return rn == 1
    return (rn == np.asarray(chunk.number_of_returns)) & (rn > 0)


@dataclass(frozen=True)
class ClassFilter:
    """Which point classes enter the DEM: all but ``drop``, or only ``keep``."""

    drop: frozenset[int] = frozenset()
    keep: frozenset[int] | None = None

    @property
    def active(self) -> bool:
        return bool(self.drop) or self.keep is not None

    def dropped(self, classes: np.ndarray) -> np.ndarray:
        """Mask of the points kept out, from their class codes."""
        if self.keep is not None:
            return ~np.isin(classes, list(self.keep))
        return np.isin(classes, list(self.drop))

    def describe(self) -> str:
        if self.keep is not None:
            return f"only classes {', '.join(map(str, sorted(self.keep)))} kept"
        return f"classes {', '.join(map(str, sorted(self.drop)))} dropped"


def class_filter(
    drop_classes: Iterable[int] | None = None, keep_classes: Iterable[int] | None = None
) -> ClassFilter:
    """The class rule of the stage (rule 5): ``keep_classes`` when given, else
    ``drop_classes``, else the catalog's ``sources.lidar.drop_classes``."""
    if keep_classes is not None and drop_classes is not None:
        raise UsageError(
            "give drop_classes or keep_classes (--drop-classes, --keep-classes), not both"
        )
    for value in (*(keep_classes or ()), *(drop_classes or ())):
        if not 0 <= int(value) <= 255:
            raise UsageError(f"point classes are 0..255, got {value}")
    if keep_classes is not None:
        return ClassFilter(keep=frozenset(int(c) for c in keep_classes))
    if drop_classes is None:
        drop_classes = load_catalog().sources["lidar"].drop_classes
    return ClassFilter(drop=frozenset(int(c) for c in drop_classes))


# --------------------------------------------------------------------------- the stage


def dem_stage(
    sources: Iterable[str | os.PathLike],
    grid: RasterGrid,
    *,
    returns: str = "first",
    stat: str = "mean",
    radius: float | None = None,
    fill_distance: float = DEFAULT_FILL_DISTANCE_PX,
    default_crs: str | None = None,
    crs: str | None = None,
    crs_for_unreadable: str | None = None,
    drop_classes: Iterable[int] | None = None,
    keep_classes: Iterable[int] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> StageResult:
    """Grid lidar points (.las/.laz files or zips of them) into a height raster on ``grid``.

    ``drop_classes`` / ``keep_classes``: the point classes kept out of the DEM, or the
    only ones let in (rule 5; default: the catalog's ``sources.lidar.drop_classes``).

    ``radius`` (grid CRS units) takes every point closer than it to a cell
    centre instead of the points inside the cell (rule 4). The CRS options
    follow rule 2: ``crs`` replaces every file's header CRS; ``default_crs``
    is for files without a CRS record (the catalog grid's CRS when ``None``);
    ``crs_for_unreadable`` is for files whose CRS records do not read, which
    are refused without it.

    Returns a :class:`StageResult` with a float32 (1, H, W) array in metres,
    NaN where a cell is still empty after filling (``nodata`` is NaN).
    ``progress(done, total)`` counts points read. Raises :class:`UsageError`
    for bad options and :class:`DataError` naming the file for unreadable or
    truncated files, unusable CRSs, and when no selected point falls inside
    the grid.
    """
    from pyproj.exceptions import CRSError

    if returns not in RETURNS:
        raise UsageError(f"unknown returns {returns!r}; choose one of {', '.join(RETURNS)}")
    if chunk_size < 1:
        raise UsageError(f"chunk_size must be positive, got {chunk_size}")
    if fill_distance < 0:
        raise UsageError(f"fill_distance must be >= 0 pixels, got {fill_distance}")
    gridder = PointGridder(grid, stat, radius)
    classes = class_filter(drop_classes, keep_classes)
    if default_crs is None:
        default_crs = load_catalog().grid.crs
    default = _user_crs(default_crs, "default_crs")
    override = None if crs is None else _user_crs(crs, "crs")
    for_unreadable = (
        None if crs_for_unreadable is None else _user_crs(crs_for_unreadable, "crs_for_unreadable")
    )

    files = _lidar_files(sources)
    left, bottom, right, top = grid.bounds
    reach = gridder.radius or 0.0  # points this far outside the grid still count
    wanted = (left - reach, bottom - reach, right + reach, top + reach)
    plans = []  # (file, header, _FileCrs, _HeaderCrs) of the files that overlap the grid
    skipped: list[str] = []
    misses: list[str] = []  # what the skipped files hold, for the message when all are
    warnings: list[str] = []
    for f in files:
        header = _read_header(f)
        found = _header_crs(header)
        file_crs, origin, warning = _resolve_crs(found, f.label, override, default, for_unreadable)
        try:
            fcrs = _file_crs(header, f.label, file_crs, origin, grid.crs)
        except CRSError as exc:
            raise DataError(f"{f.label}: unusable CRS: {exc}") from exc
        if warning:
            log.warning("%s", warning)
            warnings.append(warning)
        if header.point_count == 0 or not _overlaps(_grid_bounds_of(header, fcrs), wanted):
            skipped.append(f.label)
            empty = header.point_count == 0  # its header bounds mean nothing
            misses.append(f"{f.label} has no points" if empty else _describe_file(f, header, fcrs))
            continue
        plans.append((f, header, fcrs, found))
    if not plans and all(m.endswith(" has no points") for m in misses):
        raise DataError("; ".join(misses[:5]) + ("; ..." if len(misses) > 5 else ""))
    if not plans:
        raise DataError(
            f"none of the {len(files)} lidar file(s) overlaps the grid {grid.crs} {grid.bounds}: "
            + "; ".join(misses[:5])
            + ("; ..." if len(misses) > 5 else "")
            + ". If a header CRS is wrong, override it with --crs CRS (crs=)"
        )

    total = sum(int(h.point_count) for _, h, _, _ in plans)
    counts = {"points_read": 0, "points_selected": 0, "invalid_return_number": 0}
    dropped: dict[int, int] = {}
    file_reports = []
    for f, header, fcrs, found in plans:
        read = _grid_file(f, header, fcrs, gridder, returns, chunk_size, counts, total, progress,
                          classes, dropped)  # fmt: skip
        file_reports.append(
            {
                "file": f.label,
                "points": read,
                "crs": fcrs.crs,
                "crs_source": fcrs.origin,
                "header_crs": None if found.crs is None else _crs_name(found.crs),
                "z_factor": fcrs.z_factor,
                "crs_assumed": fcrs.assumed,
            }
        )

    cell_counts = gridder.counts
    points_in_grid = gridder.points_used
    if points_in_grid == 0 and dropped:
        by_class = ", ".join(f"{n} of class {k}" for k, n in sorted(dropped.items()))
        raise DataError(
            f"{', '.join(f.label for f, _, _, _ in plans)}: every selected point ({returns} "
            f"returns) is of a class kept out of the DEM ({classes.describe()}: {by_class}); "
            "change the rule with --drop-classes/--keep-classes if they are not noise"
        )
    if points_in_grid == 0:
        raise DataError(_no_points_message(plans, grid, returns, counts, chunk_size))
    heights = gridder.values()  # (H, W) float32
    empty = int((cell_counts == 0).sum())
    heights = _fill_holes(heights, cell_counts > 0, fill_distance)
    holes = int(np.isnan(heights).sum())
    if holes:
        log.warning("dem: %d cells stay empty after filling up to %g px", holes, fill_distance)
    report = {
        "sources": [f.label for f, _, _, _ in plans],
        "files": file_reports,
        "skipped_files": skipped,
        "returns": returns,
        "stat": stat,
        "radius": gridder.radius,
        "classes": classes.describe(),
        "dropped_by_class": {str(k): n for k, n in sorted(dropped.items())},
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


def _no_points_message(plans, grid: RasterGrid, returns: str, counts: dict, chunk_size: int) -> str:
    """Why no selected point landed in the grid: the return numbers of the points that are there."""
    head = (
        f"no points ({returns} returns) fall inside the grid {grid.crs} {grid.bounds} "
        f"({counts['points_read']} points read from "
        + ", ".join(f.label for f, _, _, _ in plans)
        + ")"
    )
    if returns == "all":
        return head
    numbers = _return_numbers_in_grid(plans, grid, chunk_size)
    inside = sum(numbers.values())
    if inside == 0:
        return head + "; no point of any return number does either"
    if set(numbers) == {0}:
        why = (
            f"all {inside} points inside the grid have return number 0 "
            "(invalid, left unset by some older writers)"
        )
    else:
        listing = ", ".join(f"{n} with {k}" for k, n in sorted(numbers.items()))
        why = f"the {inside} points inside the grid have return numbers: {listing}"
    return f"{head}: {why}; grid them with --returns all (returns='all')"


def _return_numbers_in_grid(plans, grid: RasterGrid, chunk_size: int) -> dict[int, int]:
    """Return number -> count of the points of any return inside ``grid`` (a second read)."""
    import laspy

    left, bottom, right, top = grid.bounds
    selection = laspy.DecompressionSelection.XY_RETURNS_CHANNEL
    found: dict[int, int] = {}
    for f, _, fcrs, _ in plans:
        with _local_path(f) as path, laspy.open(path, decompression_selection=selection) as reader:
            for chunk in reader.chunk_iterator(chunk_size):
                x, y = np.asarray(chunk.x), np.asarray(chunk.y)
                if fcrs.transformer is not None and len(x):
                    x, y = fcrs.transformer.transform(x, y)
                inside = (x >= left) & (x < right) & (y >= bottom) & (y < top)
                numbers = np.asarray(chunk.return_number)[inside]
                for k, n in zip(*np.unique(numbers, return_counts=True), strict=True):
                    found[int(k)] = found.get(int(k), 0) + int(n)
    return found


def _grid_file(f, header, fcrs, gridder, returns, chunk_size, counts, total, progress,
               classes: ClassFilter, dropped: dict[int, int]) -> int:  # fmt: skip
    """Stream one file's points into ``gridder``; returns the number of points read.
    ``dropped`` counts the selected points ``classes`` kept out, per class."""
    import laspy

    selection = laspy.DecompressionSelection.XY_RETURNS_CHANNEL | laspy.DecompressionSelection.Z
    if classes.active:  # formats 6-10 keep the classes in a layer of their own
        selection |= laspy.DecompressionSelection.CLASSIFICATION
    read = 0
    try:
        with _local_path(f) as path, laspy.open(path, decompression_selection=selection) as reader:
            for chunk in reader.chunk_iterator(chunk_size):
                read += len(chunk)
                rn = np.asarray(chunk.return_number)
                counts["invalid_return_number"] += int(np.count_nonzero(rn == 0))
                keep = _selection(chunk, returns)
                if classes.active:
                    codes = np.asarray(chunk.classification)
                    out = classes.dropped(codes)
                    if keep is not None:
                        out &= keep
                    if out.any():
                        for k, n in enumerate(np.bincount(codes[out])):
                            if n:
                                dropped[k] = dropped.get(k, 0) + int(n)
                        keep = ~out if keep is None else keep & ~out
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
