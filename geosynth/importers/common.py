"""What the dataset importers share: raster probing, the resumable plan, the run loop, the report.

An import runs in three steps, like a region build (:mod:`geosynth.build`):

1. discover the published files and probe their headers (shape, bands,
   dtype, georeferencing) in a thread pool, excluding incomplete or
   inconsistent tiles up front with the reason;
2. create the store sized for the remaining tiles, or reopen it after
   checking that it holds the same dataset, catalog and tiles (resume);
3. write every tile that is not complete yet, inline or in a process pool
   (:func:`geosynth.build.run_tasks`), and write a JSON report atomically.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from geosynth.build import BuildReport, run_tasks, write_report
from geosynth.catalog import Catalog
from geosynth.errors import DataError, GeosynthError, StoreError, UsageError

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]


# --------------------------------------------------------------------------- raster headers


@dataclass(frozen=True)
class RasterInfo:
    """The header of one raster file: what planning needs without reading pixels."""

    path: str
    shape: tuple[int, int]  # (H, W)
    count: int
    dtype: str
    crs: str | None  # "EPSG:<code>" where it has one, else WKT; None without a CRS
    transform: tuple[float, ...] | None  # (a, b, c, d, e, f); None without a geotransform
    nodata: float | None

    @property
    def affine(self) -> Affine | None:
        return None if self.transform is None else Affine(*self.transform)


def crs_string(crs) -> str | None:
    """A rasterio CRS as ``EPSG:<code>`` where it has one, else its WKT; None for no CRS."""
    if crs is None or not crs.to_wkt():
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def probe(path: str | os.PathLike) -> RasterInfo:
    """Read one raster's header. A file without a geotransform (rasterio then reports the
    identity and warns) gets ``transform=None``."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return _probe(path)


def _probe(path: str | os.PathLike) -> RasterInfo:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            transform = src.transform
            georeferenced = not (transform == Affine.identity() and src.crs is None)
            return RasterInfo(
                path=str(path),
                shape=(src.height, src.width),
                count=src.count,
                dtype=src.dtypes[0],
                crs=crs_string(src.crs),
                transform=tuple(transform)[:6] if georeferenced else None,
                nodata=src.nodata,
            )
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable raster: {exc}") from exc


def probe_all(
    paths: Iterable[str], threads: int = 4, progress: Callable[[int, int], None] | None = None
) -> dict[str, RasterInfo | str]:
    """Probe many files in a thread pool (GDAL reads headers without the GIL).

    Returns path -> :class:`RasterInfo`, or the error message for unreadable files.
    """
    from rasterio.errors import NotGeoreferencedWarning

    paths = sorted(set(paths))

    def one(path: str) -> RasterInfo | str:
        try:
            return _probe(path)
        except GeosynthError as exc:
            return str(exc)

    out: dict[str, RasterInfo | str] = {}
    # one filter for all threads: catch_warnings inside threads is not thread-safe
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        for done, (path, info) in enumerate(zip(paths, pool.map(one, paths), strict=True), 1):
            out[path] = info
            if progress:
                progress(done, len(paths))
    return out


def common_shape(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The most frequent ``(H, W)``: the tile shape of the store (ties: the larger tile)."""
    if not shapes:
        raise DataError("no tile to import")
    counts = Counter(shapes)
    return max(counts, key=lambda s: (counts[s], s))


def read_raster(path: str, bands: Sequence[int] | None = None) -> np.ndarray:
    """All bands (or the 1-based ``bands``) of a raster: ``(C, H, W)`` as stored in the file."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.read(list(bands) if bands else None)
    except RasterioError as exc:
        raise DataError(f"{path}: cannot read pixels: {exc}") from exc


def class_table(classes) -> list[dict]:
    """Catalog class definitions -> the store's ``geosynth:classes`` list."""
    return [{"id": c.id, "key": c.key, "name": c.name, "color": c.color} for c in classes]


def check_labels(labels: np.ndarray, max_id: int, path: str) -> np.ndarray:
    """Class ids ``(H, W)`` as uint8; ids outside ``0..max_id`` fail naming the file."""
    if np.issubdtype(labels.dtype, np.floating) and not np.array_equal(labels, np.round(labels)):
        raise DataError(f"{path}: labels are not whole numbers")
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    if low < 0 or high > max_id:
        raise DataError(f"{path}: class ids {low}..{high} outside 0..{max_id}")
    return labels.astype(np.uint8)


# --------------------------------------------------------------------------- the store


_STORES: dict[tuple[str, int, int], Any] = {}


def writable_store(path: str):
    """The store at ``path`` opened for writing, once per process (and per store creation)."""
    from geosynth.store import open_store

    key = (str(path), os.getpid(), os.stat(path).st_ino)
    if key not in _STORES:
        _STORES.clear()
        _STORES[key] = open_store(path, mode="r+")
    return _STORES[key]


def reopen_for_resume(
    out: Path, dataset: str, plans: Sequence[Any], modalities: Sequence[str], catalog: Catalog
):
    """Reopen an existing store after checking it was planned for this import: same dataset,
    catalog, tiles (``plans``: :class:`~geosynth.store.TilePlan`) in the same splits."""
    from geosynth.store import open_store

    store = open_store(out, mode="r+")
    if store.dataset != dataset:
        raise StoreError(f"store {out} holds dataset {store.dataset!r}, not {dataset!r}")
    built_with = store.provenance.get("catalog_sha256")
    if built_with != catalog.sha256:
        raise StoreError(
            f"store {out} was written with another catalog version (sha256 "
            f"{str(built_with)[:12]}, this catalog {catalog.sha256[:12]}); import into a new store"
        )
    tile_ids = [p.tile_id for p in plans]
    missing = sorted(set(tile_ids) - set(store.tile_ids))
    if missing:
        raise UsageError(
            f"store {out} was planned without tile(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; import into a new store"
        )
    for plan in plans:
        stored = store.splits[store.index(plan.tile_id)]
        if stored != plan.split:
            raise UsageError(
                f"store {out} holds tile {plan.tile_id} in split {stored!r}, this import puts "
                f"it in {plan.split!r}; import into a new store"
            )
    extra = [m for m in modalities if m not in store.modalities]
    if extra:
        raise UsageError(
            f"store {out} has no array for {', '.join(extra)}; import into a new store"
        )
    gone = sorted(set(store.tile_ids) - set(tile_ids))
    if gone:
        log.warning(
            "%d tile(s) of %s are no longer among the source files, e.g. %s",
            len(gone),
            out,
            gone[0],
        )
    return store


# --------------------------------------------------------------------------- running


@dataclass
class ImportReport(BuildReport):
    """The JSON report of an import: :class:`~geosynth.build.BuildReport` plus what the
    plan left out (``excluded``: tile -> reason) and notes for the whole import."""

    dataset: str = ""
    source: str = ""
    excluded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.dataset}: {len(self.done)} tile(s) imported, {len(self.already_complete)} "
            f"already complete, {len(self.failed)} failed, of {self.tiles_planned} planned; "
            f"{len(self.excluded)} excluded ({self.seconds:.1f} s) -> {self.store}"
        ]
        lines += [f"  note: {n}" for n in self.notes]
        for tile, reason in list(self.excluded.items())[:10]:
            lines.append(f"  excluded {tile}: {reason}")
        if len(self.excluded) > 10:
            lines.append(f"  ... and {len(self.excluded) - 10} more excluded (see the report)")
        lines += self.problem_lines()
        return "\n".join(lines)


def run_import(
    report: ImportReport,
    store,
    tasks: Sequence[Any],
    func: Callable[[Any], dict],
    *,
    workers: int,
    report_path: Path,
    progress: Progress | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> ImportReport:
    """Run ``func`` on the tasks of tiles not complete in ``store``; write the report."""
    complete = {store.tile_ids[i] for i in store.tiles()}
    planned = [t.tile_id for t in tasks]
    report.already_complete = sorted(set(planned) & complete)
    todo = [t for t in tasks if t.tile_id not in complete]
    if on_plan:
        on_plan(len(todo))
    started = time.perf_counter()
    try:
        for record in run_tasks(func, todo, workers):
            report.records.append(record)
            if record["status"] == "done":
                report.done.append(record["tile"])
            else:
                report.failed[record["tile"]] = record["error"]
            if record.get("skipped"):
                report.skipped[record["tile"]] = record["skipped"]
            if progress:
                progress(record)
    finally:  # an interrupted import still reports what it finished
        report.seconds = round(time.perf_counter() - started, 2)
        report.done.sort()
        write_report(report, report_path)
    return report


def tile_record(tile_id: str, work: Callable[[dict], None]) -> dict[str, Any]:
    """Run ``work(record)`` for one tile; data errors become a failed record, never a raise."""
    started = time.perf_counter()
    record: dict[str, Any] = {"tile": tile_id, "status": "done", "skipped": {}, "notes": []}
    try:
        work(record)
    except GeosynthError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug or an unexpected library error: report it, keep going
        log.exception("tile %s failed unexpectedly", tile_id)
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def default_report_path(out: Path) -> Path:
    return out.with_name(out.name + ".report.json")


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under ``path`` (the benchmark's store and source sizes)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
