"""``geosynth upgrade-store OLD NEW``: a version 1 store converted to version 2, bit-exactly.

Version 1 kept every modality in one array with a leading tile axis (``rgb`` of shape
``(N, 3, H, W)``, ...); version 2 keeps one group per tile (:mod:`geosynth.store`). The
conversion plans the new store from the old one's tile index and attributes (dataset,
classes, modalities, layout, normalisation and provenance, with ``upgraded_from`` added)
and copies every complete tile through the ingest runner: it resumes, runs in processes or
on dask and reports like a build. Pixels, class histograms, georeferencing and sources are
copied unchanged; tiles that were not complete in the old store stay planned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from affine import Affine

from geosynth.errors import StoreError
from geosynth.ingest import run
from geosynth.store import TileData, create_store
from geosynth.store.contract import COMPLETE, ModalitySpec, StoreLayout, TilePlan
from geosynth.store.location import locate, storage_errors
from geosynth.store.lock import locks_store


@dataclass(frozen=True)
class UpgradeTask(run.TileTask):
    """One tile to copy: its row in the old store."""

    source: str
    index: int


def _open_v1(old, storage_options):
    import zarr

    location = locate(old, storage_options)
    if not location.exists():
        raise StoreError(f"no store at {location}")
    with storage_errors(location.url):
        group = zarr.open_group(location.zarr_store(read_only=True), mode="r")
    version = group.attrs.get("geosynth:store_version")
    if version != 1:
        raise StoreError(f"{location} is not a version 1 store (store version {version!r})")
    return location, group


def upgrade_tile(task: UpgradeTask, record: run.Record) -> None:
    """Copy one tile of a version 1 store into the new store."""

    _, old = _open_v1(task.source, task.storage_options)
    i = task.index
    names = list(old["present"].attrs["geosynth:modalities"])
    present = dict(zip(names, old["present"][i], strict=True))
    standard = {"rgb", "dem", "seg", "sar"}
    data = TileData(
        transform=task.plan.transform,
        crs=task.plan.crs or None,
        sources=json.loads(str(old["sources"][i]) or "{}"),
    )
    for name in names:
        if not present[name]:
            continue
        values = np.asarray(old[name][i])
        if name in standard:
            setattr(data, name, values)
        else:
            data.extras[name] = values
    if present.get("sar"):
        data.sar_valid = np.asarray(old["sar_valid"][i])
    run.writable_store(task).write_tile(task.tile_id, data)


@locks_store("new")
def upgrade_store(
    old,
    new,
    **runner,
) -> run.IngestReport:
    """Convert (or resume converting) the version 1 store ``old`` into the new store ``new``.

    ``runner``: how its tiles run (:class:`~geosynth.ingest.run.RunOptions`).
    """

    options = run.RunOptions(**runner)
    storage_options = options.storage_options
    source, group = _open_v1(old, storage_options)
    attrs = dict(group.attrs)
    n = group["tile_id"].shape[0]
    plans = []
    for i in range(n):
        coeffs = group["transform"][i]
        plans.append(
            TilePlan(
                str(group["tile_id"][i]),
                str(group["region"][i]),
                str(group["split"][i]),
                None if np.isnan(coeffs).any() else Affine(*(float(v) for v in coeffs)),
                str(group["crs"][i]),
            )
        )
    specs = [ModalitySpec.from_attrs(name, m) for name, m in attrs["geosynth:modalities"].items()]
    provenance = dict(attrs.get("geosynth:provenance", {}))
    target = locate(new, storage_options)
    run.open_or_create(
        target, plans, [s.name for s in specs],
        lambda: create_store(
            target,
            plans,
            tile_shape=tuple(attrs["geosynth:tile_shape"]),
            modalities=specs,
            dataset=attrs["geosynth:dataset"],
            crs=attrs.get("proj:code"),
            classes=attrs["geosynth:classes"],
            normalisation=attrs.get("geosynth:normalisation", {}),
            provenance={**provenance, "upgraded_from": {"store": source.url, "store_version": 1}},
            layout=StoreLayout(**{**attrs.get("geosynth:layout", {}), "checksum": True}),
        ),
        dataset=attrs["geosynth:dataset"], catalog_sha256=provenance.get("catalog_sha256"),
        verb="upgrade",
    )  # fmt: skip
    states = group["state"][:]
    tasks = [
        UpgradeTask(
            store=target.url,
            plan=plan,
            source=source.url,
            index=i,
            storage_options=dict(storage_options or {}),
        )  # fmt: skip
        for i, plan in enumerate(plans)
        if states[i] == COMPLETE
    ]
    report = run.IngestReport(
        region=attrs["geosynth:dataset"],
        dataset=attrs["geosynth:dataset"],
        store=target.url,
        source=source.url,
        tiles_planned=len(tasks),
        verb="upgraded",
        excluded={
            p.tile_id: "not complete in the version 1 store"
            for p, s in zip(plans, states, strict=True)
            if s != COMPLETE
        },
    )
    return run.run_ingest(report, tasks, upgrade_tile, options)
