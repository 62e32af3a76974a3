"""The one runner of every store producer: plan -> run tile tasks -> record -> report.

The region build (:mod:`~geosynth.ingest.nrw`) and the importers
(:mod:`~geosynth.ingest.geonrw`, :mod:`~geosynth.ingest.dfc2020`) plan their
tiles, create or reopen their store (:func:`geosynth.store.open_for_resume`)
and hand a list of picklable tasks to :func:`run_ingest`, which

1. leaves out the tiles already complete in the store (so every producer
   resumes: a killed run finishes on rerun);
2. runs ``work(task, record)`` for the others, inline (``workers=1``), in a
   spawned local process pool or on a dask.distributed scheduler;
3. records each tile's outcome (done, failed with the error, skipped
   modalities with the reason); data errors never stop the other tiles;
4. writes the JSON report atomically in a ``finally``: an interrupted run
   reports what it finished (``interrupted: true``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from geosynth.errors import GeosynthError, OutputError, UsageError, write_failure
from geosynth.io import write_text
from geosynth.store import open_store
from geosynth.store.contract import TilePlan
from geosynth.store.create import open_for_resume
from geosynth.store.location import locate
from geosynth.store.write import consolidate
from geosynth.workers import exit_with_parent

log = logging.getLogger(__name__)

Record = dict[str, Any]
Progress = Callable[[Record], None]
Work = Callable[[Any, Record], None]


@dataclass(frozen=True)
class RunOptions:
    """How a producer runs its tiles: the keyword arguments every producer (build, imports,
    upgrade) takes and passes on to :func:`run_ingest`.

    ``workers`` local processes, or a dask.distributed ``scheduler`` address;
    ``report_path`` (default: ``<store>.report.json``); ``progress(record)`` after every
    tile; ``on_plan(n)`` once the tiles left to run are known; ``storage_options`` of the
    store's fsspec filesystem (``s3://``, ``gs://``).
    """

    workers: int = 1
    scheduler: str | None = None
    report_path: str | os.PathLike | None = None
    progress: Progress | None = None
    on_plan: Callable[[int], None] | None = None
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise UsageError("--workers must be at least 1")


def open_or_create(
    out, plans: Sequence[TilePlan], modalities: Sequence[str], create: Callable[[], Any], *,
    dataset: str, catalog_sha256: str | None, verb: str, storage_options=None,
) -> None:  # fmt: skip
    """Reopen the store ``out`` after the one set of resume checks
    (:func:`~geosynth.store.create.open_for_resume`), or make it with ``create()``."""
    if locate(out, storage_options).exists():
        open_for_resume(
            out, plans, modalities, dataset=dataset, catalog_sha256=catalog_sha256, verb=verb,
            storage_options=storage_options,
        )  # fmt: skip
    else:
        create()


@dataclass
class IngestReport:
    """What a build or import did; written as ``<store>.report.json``.

    ``region``: the region (build) or the dataset (import); ``verb``: "built"
    or "imported"; ``excluded``: tiles the plan left out, with the reason;
    ``skipped``: per tile, modalities written without, with the reason.
    """

    region: str
    dataset: str
    store: str
    source: str
    tiles_planned: int
    verb: str = "built"
    done: list[str] = field(default_factory=list)
    already_complete: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    records: list[Record] = field(default_factory=list)
    path: str = ""  # where the report was written

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def add(self, record: Record) -> None:
        self.records.append(record)
        if record["status"] == "done":
            self.done.append(record["tile"])
        else:
            self.failed[record["tile"]] = record["error"]
        if record.get("skipped"):
            self.skipped[record["tile"]] = record["skipped"]

    def summary(self) -> str:
        excluded = (
            f"; {len(self.excluded)} excluded" if self.verb == "imported" or self.excluded else ""
        )
        lines = [
            f"{self.region}: {len(self.done)} tile(s) {self.verb}, {len(self.already_complete)} "
            f"already complete, {len(self.failed)} failed, of {self.tiles_planned} planned"
            f"{excluded} ({self.seconds:.1f} s) -> {self.store}"
        ]
        if self.interrupted:
            complete = len(self.done) + len(self.already_complete)
            lines.append(
                f"  interrupted: {complete} of {self.tiles_planned} tiles complete; rerun to resume"
            )
        lines += [f"  note: {n}" for n in self.notes]
        lines += _first(
            [f"  excluded {t}: {r}" for t, r in self.excluded.items()], "excluded", "see the report"
        )
        by_modality: dict[str, list[tuple[str, str]]] = {}
        for tile, reasons in self.skipped.items():
            for modality, reason in reasons.items():
                by_modality.setdefault(modality, []).append((tile, reason))
        for modality, skipped in sorted(by_modality.items()):
            tiles = ", ".join(t for t, _ in skipped[:6]) + (", ..." if len(skipped) > 6 else "")
            lines.append(
                f"  {modality} skipped on {len(skipped)} tile(s) ({tiles}), e.g. {skipped[0][1]}"
            )
        lines += _first(
            [f"  FAILED {t}: {e}" for t, e in self.failed.items()], "failures", "see the report"
        )
        return "\n".join(lines)


def _first(lines: list[str], what: str, where: str, k: int = 10) -> list[str]:
    more = [f"  ... and {len(lines) - k} more {what} ({where})"] if len(lines) > k else []
    return lines[:k] + more


def default_report_path(store, storage_options: Mapping[str, Any] | None = None) -> str:
    """``<store>.report.json`` beside the store (a URL beside a remote store)."""

    return locate(store, storage_options).sibling(".report.json")


def write_report(
    report: IngestReport, path, storage_options: Mapping[str, Any] | None = None
) -> str:
    """The report as JSON at ``path`` (a local path, atomically, or a URL)."""

    fields = {k: v for k, v in asdict(report).items() if k != "path"}
    text = json.dumps(fields, indent=2, sort_keys=True)
    target = locate(path, storage_options)
    if target.is_local:
        return str(write_text(target.local, text))
    fs, inner = target.filesystem()
    with fs.open(inner, "w") as f:  # one PUT: never half there
        f.write(text)
    return target.url


# --------------------------------------------------------------------------- one tile


@dataclass(frozen=True)
class TileTask:
    """What every producer's task holds (picklable): the store it writes (a path or URL, with
    its storage options) and the tile's plan.

    Producers subclass it with what their worker needs (source files, shapes, norms).
    """

    store: str
    plan: TilePlan
    storage_options: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    @property
    def tile_id(self) -> str:
        return self.plan.tile_id


def tile_record(work: Work, task: TileTask) -> Record:
    """Run ``work(task, record)`` for one tile; errors become a failed record, never a raise."""
    started = time.perf_counter()
    record: Record = {"tile": task.tile_id, "status": "done", "skipped": {}, "notes": []}
    try:
        work(task, record)
    except GeosynthError as exc:
        record.update(status="failed", error=str(exc))
    except OSError as exc:
        failure = write_failure(exc, task.store)
        if failure is None:
            log.exception("tile %s failed unexpectedly", task.tile_id)
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        else:  # disk full, read-only: every other tile would fail the same way
            record.update(status="failed", error=failure, fatal=True)
    except Exception as exc:  # a bug or an unexpected library error: report it, keep going
        log.exception("tile %s failed unexpectedly", task.tile_id)
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


_STORES: dict[tuple[str, int, int], Any] = {}


def writable_store(task: TileTask):
    """The store of ``task`` opened for writing, once per process (and per store creation:
    a store removed and created again at the same place is opened anew)."""

    location = locate(task.store, task.storage_options)
    if location.is_local:
        meta = os.stat(location.local / "zarr.json")
        key = (location.url, os.getpid(), meta.st_ino, meta.st_mtime_ns)
    else:
        key = (location.url, os.getpid())
    if key not in _STORES:
        _STORES.clear()
        _STORES[key] = open_store(location, mode="r+")
        _STORES[key].batch_writes = True  # run_ingest consolidates the store when it ends
    return _STORES[key]


# --------------------------------------------------------------------------- running


def run_ingest(
    report: IngestReport, tasks: Sequence[Any], work: Work, run: RunOptions
) -> IngestReport:
    """Run ``work`` on the tasks of tiles not yet complete in ``report.store``; write the report
    and refresh the store's consolidated metadata.

    ``work`` must be a picklable top-level function ``work(task, record)``
    that writes one tile (it may raise :class:`~geosynth.errors.GeosynthError`
    for data errors and fill ``record["skipped"]``); the tasks are
    :class:`TileTask` subclasses.
    """

    store = open_store(report.store, storage_options=run.storage_options)
    complete = {store.tile_ids[i] for i in store.tiles()}
    report.already_complete = sorted({t.tile_id for t in tasks} & complete)
    todo = [t for t in tasks if t.tile_id not in complete]
    if run.on_plan:
        run.on_plan(len(todo))
    started = time.perf_counter()
    fatal: str | None = None
    try:
        records = run_tasks(functools.partial(tile_record, work), todo, run.workers, run.scheduler)
        for record in records:
            report.add(record)
            if run.progress:
                run.progress(record)
            if record.get("fatal"):
                fatal = record["error"]
                break  # closes run_tasks: queued tiles are cancelled
    except BaseException:
        report.interrupted = True
        raise
    finally:
        report.seconds = round(time.perf_counter() - started, 2)
        report.done.sort()
        report.interrupted = report.interrupted or fatal is not None
        if fatal:
            report.notes.append(f"stopped: {fatal}")
        _finish(report, store, run.report_path, run.storage_options)
        if report.interrupted and not fatal:
            log.warning(
                "interrupted: %d of %d tiles complete in %s; rerun the same command to resume",
                len(report.done) + len(report.already_complete), report.tiles_planned, report.store,
            )  # fmt: skip
    if fatal:
        complete = len(report.done) + len(report.already_complete)
        raise OutputError(
            f"{fatal}; stopped after {complete} of {report.tiles_planned} tiles complete "
            f"(report: {report.path}); free space, then rerun to resume"
        )
    return report


def _finish(report: IngestReport, store, report_path, storage_options) -> None:
    """Consolidate the store's metadata and write the report; neither failing hides the other
    (on a full disk the report may still fit; an unwritable report is logged)."""

    failure = None
    if report.done:
        try:
            consolidate(store.location)
        except Exception as exc:
            failure = exc
            report.notes.append(f"store metadata not consolidated: {write_failure(exc) or exc}")
    path = report_path or default_report_path(report.store, storage_options)
    try:
        report.path = write_report(report, path, storage_options)
    except OSError as exc:
        log.error("the report %s could not be written: %s", path, write_failure(exc) or exc)
        if failure is None and not report.interrupted:
            raise
    if failure is not None and not report.interrupted:
        raise failure


def run_tasks(
    func: Callable[[Any], Record],
    tasks: Sequence[Any],
    workers: int = 1,
    scheduler: str | None = None,
):
    """Yield ``func(task)`` for every task as they finish: inline (``workers=1``), in a
    spawned process pool, or on a dask.distributed scheduler.

    ``func`` must be picklable and never raise for data errors; every task
    needs a ``tile_id`` (dask keys are named after it).
    """
    if not tasks:
        return
    if scheduler:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed

        # a dask worker runs one task per thread: each task gets one thread per library
        run = functools.partial(_with_threads, func, 1)
        with Client(scheduler) as client:
            futures = client.map(
                run, tasks, pure=False, key=[f"geosynth-tile-{t.tile_id}" for t in tasks]
            )
            for future in dask_completed(futures):
                yield future.result()
        return
    if workers == 1:
        for task in tasks:
            yield func(task)
        return
    import multiprocessing

    # spawn, not fork: zarr's event loop and thread pool do not survive a fork
    # GDAL, lazrs and zarr use every core by default: share the cores out instead
    run = functools.partial(_with_threads, func, max(1, (os.cpu_count() or 1) // workers))
    # each worker exits when this process dies (kill -9 too): no orphans writing tiles
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        futures = [pool.submit(run, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()
    finally:  # stopped early (disk full, Ctrl-C): the queued tiles never start
        pool.shutdown(wait=True, cancel_futures=True)


def _with_threads(func: Callable[[Any], Record], threads: int, task: Any) -> Record:
    """Run ``func(task)`` with this worker's libraries limited to ``threads`` threads each.

    GDAL (JPEG2000 decoding), lazrs (LAZ decompression, a rayon pool sized at
    first use) and zarr (chunk compression) would each use every core. A worker process
    started by multiprocessing (a pool's, a dask nanny's) exits when its parent dies.
    """
    import multiprocessing

    import zarr

    if multiprocessing.parent_process() is not None:  # a pool's or a dask nanny's worker
        exit_with_parent()
    os.environ["GDAL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    zarr.config.set({"threading.max_workers": threads})
    return func(task)
