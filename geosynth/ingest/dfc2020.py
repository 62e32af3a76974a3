"""Import the IEEE GRSS Data Fusion Contest 2020 (DFC2020) patches into a store.

The contest's public layout::

    ROIs0000_validation/s1_validation/ROIs0000_validation_s1_0_p<N>.tif   (2 bands, VV/VH dB)
    ROIs0000_validation/s2_validation/ROIs0000_validation_s2_0_p<N>.tif   (13 bands, uint16)
    ROIs0000_validation/dfc_validation/ROIs0000_validation_dfc_0_p<N>.tif (labels 1..10)
    ROIs0000_test/{s1_0,s2_0,dfc_0}/ROIs0000_test_{s1,s2,dfc}_0_p<N>.tif

986 validation and 5,128 test patches of 256 x 256 px at 10 m, each in its
own UTM zone. Files are found by name anywhere under the root (other files,
e.g. the MODIS ``lc`` labels, are ignored). In the store (dataset
``dfc2020``, tile ids ``ROIs0000_test_p<N>`` / ``ROIs0000_validation_p<N>``,
region = the ROI folder):

- ``sar`` (2, H, W) float32 = S1 VV/VH clipped to ``s1_db_clip`` dB and
  scaled to [0, 1]; ``sar_valid`` where both bands are finite;
- ``rgb`` (3, H, W) uint8 = ``round(255 * clip((DN - lo) / (hi - lo), 0, 1))``
  of S2 bands ``s2_rgb_bands`` (B4, B3, B2) with ``s2_clip`` = [lo, hi];
- ``s2`` (13, H, W) uint16 = the full S2 stack as delivered;
- ``seg`` (H, W) uint8 = the DFC labels with the catalog's DFC2020 class table;
- each tile's own CRS and transform (read from its S2 file).

Splits (``split_rule``):

- ``paper`` (default): as the paper describes it, the contest's 5,128 test
  patches train and its 986 validation patches test;
- ``code``: as the code published with the paper splits, patches whose
  number ends in 9 are test, from both folders; the rest train.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geosynth.catalog import Catalog, Dfc2020Norm, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.ingest import run
from geosynth.ingest.rasters import RasterInfo, check_labels, common_shape, probe_all, read_raster
from geosynth.names import DFC2020_SPLIT_RULES
from geosynth.store import TileData, TilePlan, class_table, create_store, modality
from geosynth.store.lock import locks_store

log = logging.getLogger(__name__)

DATASET = "dfc2020"
ROIS = ("ROIs0000_test", "ROIs0000_validation")
MEMBERS = {"s1": 2, "s2": 13, "dfc": 1}  # kind -> band count
MODALITIES = ("rgb", "seg", "sar", "s2")
S1_BANDS = ("VV", "VH")
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
_FILE = re.compile(
    r"^(?P<roi>ROIs0000_(?:test|validation))_(?P<kind>s1|s2|dfc)_0_p(?P<num>\d+)\.tiff?$",
    re.IGNORECASE,
)
ALIGN_TOLERANCE = 1e-6  # of a pixel: members must share their grid


def _paper_split(roi: str, number: int) -> str:
    return "train" if roi == "ROIs0000_test" else "test"


def _code_split(roi: str, number: int) -> str:
    return "test" if number % 10 == 9 else "train"


SPLIT_RULES: dict[str, Callable[[str, int], str]] = dict(
    zip(DFC2020_SPLIT_RULES, (_paper_split, _code_split), strict=True)
)


def tile_id(roi: str, number: int) -> str:
    return f"{roi}_p{number}"


# --------------------------------------------------------------------------- discovery


@dataclass
class Patch:
    roi: str
    number: int
    files: dict[str, str]

    @property
    def tile_id(self) -> str:
        return tile_id(self.roi, self.number)


def discover_dfc2020(root: str | os.PathLike) -> list[Patch]:
    """The patches under ``root`` by file name, sorted by ROI and number."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"DFC2020 folder {root} does not exist")
    patches: dict[tuple[str, int], Patch] = {}
    for path in sorted(root.rglob("ROIs0000_*")):
        match = _FILE.match(path.name)
        if not match or not path.is_file():
            continue
        roi = next(r for r in ROIS if r.lower() == match["roi"].lower())
        key = (roi, int(match["num"]))
        patch = patches.setdefault(key, Patch(roi, key[1], {}))
        kind = match["kind"].lower()
        if kind in patch.files:
            raise DataError(f"{path}: a second {kind} file for patch {patch.tile_id}")
        patch.files[kind] = str(path)
    if not patches:
        raise DataError(
            f"no DFC2020 patches (ROIs0000_test_s2_0_p<N>.tif, ...) under {root}; expected "
            "ROIs0000_validation/{s1,s2,dfc}_validation/ and ROIs0000_test/{s1,s2,dfc}_0/"
        )
    return [patches[k] for k in sorted(patches)]


def _aligned(a: RasterInfo, b: RasterInfo) -> bool:
    if a.crs != b.crs or a.shape != b.shape or (a.transform is None) != (b.transform is None):
        return False
    if a.transform is None:
        return True
    pixel = max(abs(a.transform[0]), abs(a.transform[4]), 1e-12)
    return np.allclose(a.transform, b.transform, rtol=0, atol=ALIGN_TOLERANCE * pixel)


def check_patch(patch: Patch, infos: Mapping[str, RasterInfo | str]) -> str | None:
    """Why a patch cannot be imported (missing member, band count, grid), or None."""
    missing = [k for k in MEMBERS if k not in patch.files]
    if missing:
        return (
            f"{patch.tile_id}: missing {', '.join(missing)} (have {', '.join(sorted(patch.files))})"
        )
    for kind, bands in MEMBERS.items():
        info = infos[patch.files[kind]]
        if isinstance(info, str):
            return info
        if info.count != bands:
            return f"{info.path}: {info.count} band(s), a DFC2020 {kind} file has {bands}"
    s2 = infos[patch.files["s2"]]
    for kind in ("s1", "dfc"):
        other = infos[patch.files[kind]]
        if not _aligned(s2, other):
            return (
                f"{patch.tile_id}: {kind} and s2 lie on different grids "
                f"({other.shape} {other.crs} vs. {s2.shape} {s2.crs})"
            )
    return None


# --------------------------------------------------------------------------- one tile


@dataclass(frozen=True)
class Dfc2020Task(run.TileTask):
    """One patch to import: its plan and what a worker needs to write it (picklable)."""

    files: tuple[tuple[str, str], ...]  # (kind, path)
    shape: tuple[int, int]
    norm: Dfc2020Norm
    num_classes: int


def s1_to_sar(db: np.ndarray, clip: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """S1 dB (2, H, W) -> [0, 1] float32 (2, H, W) and valid (H, W) where both bands are finite."""
    lo, hi = clip
    valid = np.isfinite(db).all(axis=0)  # (H, W)
    with np.errstate(invalid="ignore"):
        sar = np.clip((db.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    sar[:, ~valid] = 0.0
    return sar.astype(np.float32), valid


def s2_to_rgb(s2: np.ndarray, bands: tuple[int, ...], clip: tuple[float, float]) -> np.ndarray:
    """S2 DN (13, H, W) -> uint8 (3, H, W): ``round(255 * clip((DN - lo) / (hi - lo), 0, 1))``."""
    lo, hi = clip
    picked = s2[[b - 1 for b in bands]].astype(np.float64)  # (3, H, W)
    scaled = np.clip((picked - lo) / (hi - lo), 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def _s2(values: np.ndarray, path: str) -> np.ndarray:
    if values.dtype == np.uint16:
        return values
    if np.issubdtype(values.dtype, np.integer) and values.min() >= 0 and values.max() <= 65535:
        return values.astype(np.uint16)
    raise DataError(f"{path}: S2 of type {values.dtype} does not fit uint16 DN")


def import_dfc2020_tile(task: Dfc2020Task, record: run.Record) -> None:
    """Read one patch's S1, S2 and label files, convert them and write the tile."""

    files = dict(task.files)
    arrays = {}
    for kind, path in files.items():
        values = read_raster(path)  # (C, H, W)
        if values.shape[1:] != task.shape:
            raise DataError(f"{path}: shape {values.shape[1:]} differs from {task.shape}")
        arrays[kind] = values
    s2 = _s2(arrays["s2"], files["s2"])
    sar, valid = s1_to_sar(arrays["s1"], task.norm.s1_db_clip)
    if not valid.any():
        record["notes"].append("no finite S1 pixel")
    data = TileData(
        rgb=s2_to_rgb(s2, task.norm.s2_rgb_bands, task.norm.s2_clip),
        seg=check_labels(arrays["dfc"][0], task.num_classes - 1, files["dfc"]),
        sar=sar,
        sar_valid=valid,
        extras={"s2": s2},
        transform=task.plan.transform,
        crs=task.plan.crs,
        sources={"files": files},
    )
    run.writable_store(task).write_tile(task.tile_id, data)


# --------------------------------------------------------------------------- the import


@locks_store("out")
def import_dfc2020(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split_rule: str = "paper",
    catalog: Catalog | None = None,
    **runner,
) -> run.IngestReport:
    """Import (or resume importing) the DFC2020 folder ``root`` into the store ``out``.

    ``runner``: how its tiles run (:class:`~geosynth.ingest.run.RunOptions`: workers or a
    scheduler, report path, progress callbacks, storage options).
    """
    options = run.RunOptions(**runner)
    storage_options = options.storage_options
    catalog = catalog or load_catalog()
    if split_rule not in SPLIT_RULES:
        raise UsageError(f"unknown split rule {split_rule!r}; choose from {', '.join(SPLIT_RULES)}")
    out = str(out)
    norm = catalog.dfc2020
    patches = discover_dfc2020(root)
    tasks, excluded = plan_dfc2020(
        patches, out, norm, SPLIT_RULES[split_rule], max(4, options.workers), storage_options
    )
    if not tasks:
        raise DataError(
            f"no complete DFC2020 patch under {root} ({len(excluded)} excluded, e.g. "
            f"{next(iter(excluded.values()), '-')})"
        )
    plans = [t.plan for t in tasks]
    run.open_or_create(
        out, plans, MODALITIES,
        lambda: _create(out, plans, tasks[0].shape, norm, root, split_rule, storage_options),
        dataset=DATASET, catalog_sha256=catalog.sha256, verb="import",
        storage_options=storage_options,
    )  # fmt: skip
    report = run.IngestReport(
        region=DATASET,
        dataset=DATASET,
        store=out,
        source=str(root),
        tiles_planned=len(tasks),
        verb="imported",
        excluded=excluded,
        notes=[f"split rule {split_rule!r}: {_rule_text(split_rule)}"],
    )
    return run.run_ingest(report, tasks, import_dfc2020_tile, options)


def plan_dfc2020(
    patches: list[Patch],
    out: str,
    norm: Dfc2020Norm,
    rule,
    threads: int,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[list[Dfc2020Task], dict[str, str]]:
    """Probe the patches' files; the complete ones of the common shape as tasks, the rest excluded."""
    infos = probe_all([p for patch in patches for p in patch.files.values()], threads=threads)
    excluded: dict[str, str] = {}
    good = []
    for patch in patches:
        reason = check_patch(patch, infos)
        if reason:
            excluded[patch.tile_id] = reason
        else:
            good.append(patch)
    if not good:
        return [], excluded
    shape = common_shape([infos[p.files["s2"]].shape for p in good])
    tasks = []
    for patch in good:
        s2 = infos[patch.files["s2"]]
        if s2.shape != shape:
            excluded[patch.tile_id] = (
                f"{patch.tile_id}: {s2.shape} px, the import's patches are {shape}"
            )
            continue
        plan = TilePlan(
            patch.tile_id, patch.roi, rule(patch.roi, patch.number), s2.affine, s2.crs or ""
        )
        tasks.append(
            Dfc2020Task(
                store=str(out),
                storage_options=dict(storage_options or {}),
                plan=plan,
                files=tuple(sorted(patch.files.items())),
                shape=shape,
                norm=norm,
                num_classes=class_table(norm.classes).num_classes,
            )
        )
    return tasks, excluded


def _create(out, plans, shape, norm: Dfc2020Norm, root, split_rule: str, options) -> None:

    lo, hi = norm.s1_db_clip
    s2_lo, s2_hi = norm.s2_clip
    create_store(
        out,
        plans,
        tile_shape=shape,
        modalities=[
            modality("rgb"),
            modality("seg"),
            modality("sar", channels=2, bands=S1_BANDS),
            modality("s2", channels=13, dtype="uint16", bands=S2_BANDS),
        ],
        dataset=DATASET,
        crs=None,  # every tile has its own UTM zone: see the crs array
        classes=norm.classes,
        normalisation={
            "sar": {
                "rule": f"clip((dB - ({lo})) / ({hi} - ({lo})), 0, 1)",
                "s1_db_clip": [lo, hi],
                "bands": list(S1_BANDS),
                "valid": "finite in both bands; invalid pixels hold 0",
            },
            "rgb": {
                "rule": f"round(255 * clip((DN - {s2_lo}) / ({s2_hi} - {s2_lo}), 0, 1))",
                "s2_bands": list(norm.s2_rgb_bands),
                "s2_clip": [s2_lo, s2_hi],
                "dtype": "uint8",
            },
            "s2": "Sentinel-2 DN as delivered (uint16, 13 bands)",
            "seg": "DFC2020 labels as delivered (1..10; 0 = unlabelled)",
        },
        provenance={
            "imported_from": "DFC2020 (IEEE GRSS Data Fusion Contest 2020)",
            "parameters": {"root": str(Path(root)), "split_rule": split_rule},
        },
        storage_options=options,
    )


def _rule_text(rule: str) -> str:
    if rule == "paper":
        return "contest test patches train, validation patches test (the paper)"
    return "patches whose number ends in 9 are test, from both folders (the published code)"
