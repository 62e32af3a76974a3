"""Creating a store (every array sized once, moved into place when complete) and reopening one
to resume it, with the one set of checks that a resumed build or import fits the store."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from glob import escape as glob_escape
from typing import Any

import numpy as np

from geosynth import __version__
from geosynth.catalog import load_catalog
from geosynth.errors import StoreError, UsageError
from geosynth.io import atomic_path
from geosynth.store.contract import (
    PLANNED,
    STATE_NAMES,
    STORE_LAYOUT,
    STORE_VERSION,
    TILES_GROUP,
    UNLABELLED,
    ClassesLike,
    ModalitySpec,
    StoreLayout,
    TilePlan,
    class_attrs,
    class_table,
)
from geosynth.store.location import StoreLocation, locate, storage_errors
from geosynth.store.read import GeoStore, open_store
from geosynth.store.write import consolidate

log = logging.getLogger(__name__)


def create_store(
    path,
    tiles: Sequence[TilePlan],
    *,
    tile_shape: tuple[int, int],
    modalities: Sequence[ModalitySpec],
    dataset: str,
    crs: str | None,
    classes: ClassesLike,
    normalisation: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    layout: StoreLayout = STORE_LAYOUT,
    storage_options: Mapping[str, Any] | None = None,
) -> GeoStore:
    """Plan a store: the root's tile index sized for ``tiles``, its attributes, an empty
    ``tiles`` group (each tile's group is written with the tile).

    ``path``: a local path or a URL (:func:`~geosynth.store.location.locate`). A local store
    is assembled under a temporary name beside ``path`` and renamed when complete; a remote
    one gets ``geosynth:store_version`` last, so an interrupted creation is never taken for
    a store (a rerun replaces it).
    """
    location = locate(path, storage_options)
    _check_plan(tiles, modalities)
    table = class_table(classes)
    attrs = _group_attrs(
        dataset, crs, tile_shape, modalities, table, normalisation, provenance, layout
    )
    if location.is_local:
        if location.local.exists():
            raise StoreError(
                f"store {location} already exists; open it to resume, or remove it first"
            )
        _remove_stale_creations(location.local)
        with atomic_path(location.local, tag="creating") as tmp:
            _write_root(StoreLocation(str(tmp), {}, tmp), tiles, modalities, table, attrs, layout)
    else:
        with storage_errors(location.url):
            if location.exists():
                if _is_store(location):
                    raise StoreError(
                        f"store {location} already exists; open it to resume, or remove it first"
                    )
                log.warning("%s: removing an unfinished store creation", location)
                location.remove()
            _write_root(location, tiles, modalities, table, attrs, layout)
    return open_store(location, mode="r+")


def _remove_stale_creations(path) -> None:
    """Remove ``.<name>.creating-*`` beside ``path``: creations of this store by a process
    killed before it finished (a producer holds the store's lock, so none is running)."""
    import shutil

    for stale in path.parent.glob(f".{glob_escape(path.name)}.creating-*"):
        log.warning("%s: removing an unfinished store creation", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _is_store(location: StoreLocation) -> bool:
    import zarr

    try:
        group = zarr.open_group(
            location.zarr_store(read_only=True), mode="r", use_consolidated=False
        )
    except Exception:
        return False
    return "geosynth:store_version" in group.attrs


def _write_root(location, tiles, modalities, table, attrs, layout) -> None:
    """The root group: tile index arrays, an empty ``tiles`` group, the attributes (the store
    version last), the consolidated metadata."""
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="w-")
    arrays = _ArrayMaker(group, layout, len(tiles))
    arrays.tile_metadata(tiles, modalities, table.num_classes)
    group.create_group(TILES_GROUP)
    version = {"geosynth:store_version": attrs.pop("geosynth:store_version")}
    group.attrs.update(attrs)
    group.attrs.update(version)
    consolidate(location)


def _check_plan(tiles: Sequence[TilePlan], modalities: Sequence[ModalitySpec]) -> None:
    if not tiles:
        raise UsageError("a store needs at least one tile")
    ids = [t.tile_id for t in tiles]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"duplicate tile ids in the plan: {', '.join(dup[:5])}")
    names = [m.name for m in modalities]
    if len(set(names)) != len(names) or not names:
        raise UsageError(f"modalities must be unique and not empty, got {names}")


class _ArrayMaker:
    """Creates the root's tile index: one row per tile, one chunk per tile where tiles write."""

    def __init__(self, group, layout: StoreLayout, n: int):
        self.group, self.layout, self.n = group, layout, n

    def array(self, name, shape, chunks, dtype, dims, fill, attrs=None):
        return self.group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            dimension_names=dims,
            compressors=self.layout.checksums() or None,
            attributes=attrs or {},
        )

    def tile_metadata(
        self, tiles: Sequence[TilePlan], modalities: Sequence[ModalitySpec], num_classes: int
    ) -> None:
        n, m = self.n, len(modalities)
        # fixed by the plan: one chunk each
        for name, values in (
            ("tile_id", [t.tile_id for t in tiles]),
            ("region", [t.region for t in tiles]),
            ("split", [t.split for t in tiles]),
        ):
            self.array(name, (n,), (n,), str, ("tile",), "")[:] = np.array(values, dtype=object)
        # written with each tile: one chunk per tile, so writers of different tiles never meet
        crs = self.array("crs", (n,), (1,), str, ("tile",), "")
        transform = self.array(
            "transform", (n, 6), (1, 6), "float64", ("tile", "coefficient"), float("nan"),
            attrs={"geosynth:order": ["a", "b", "c", "d", "e", "f"]},
        )  # fmt: skip
        self.array(
            "present", (n, m), (1, m), "bool", ("tile", "modality"), False,
            attrs={"geosynth:modalities": [s.name for s in modalities]},
        )  # fmt: skip
        self.array("class_hist", (n, num_classes), (1, num_classes), "int64", ("tile", "class"), 0)
        self.array("sources", (n,), (1,), str, ("tile",), "")
        self.array(
            "state", (n,), (1,), "uint8", ("tile",), PLANNED,
            attrs={"geosynth:states": {str(k): v for k, v in STATE_NAMES.items()}},
        )  # fmt: skip
        # georeferencing known at plan time (builds on the NRW grid know it; imports may not)
        for i, t in enumerate(tiles):
            if t.transform is not None:
                transform[i] = np.array(t.transform[:6], dtype="float64")
            if t.crs:
                crs[i] = t.crs


def _group_attrs(
    dataset, crs, tile_shape, modalities, table, normalisation, provenance, layout
) -> dict[str, Any]:

    try:
        catalog = load_catalog()
        catalog_info = {"catalog_version": catalog.version, "catalog_sha256": catalog.sha256}
    except Exception:  # a store can be written without a readable catalog
        catalog_info = {}
    return {
        "geosynth:store_version": STORE_VERSION,
        "geosynth:dataset": dataset,
        "proj:code": crs,
        "geosynth:tile_shape": [int(v) for v in tile_shape],
        "geosynth:modalities": {m.name: m.to_attrs() for m in modalities},
        "geosynth:classes": class_attrs(table),
        "geosynth:unlabelled": UNLABELLED,
        "geosynth:normalisation": dict(normalisation or {}),
        "geosynth:layout": layout.to_attrs(),
        "geosynth:tiles": TILES_GROUP,
        "geosynth:provenance": {
            "geosynth_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **catalog_info,
            **dict(provenance or {}),
        },
    }


def open_for_resume(
    path,
    plans: Sequence[TilePlan],
    modalities: Sequence[str],
    *,
    dataset: str,
    catalog_sha256: str,
    verb: str = "build",
    storage_options: Mapping[str, Any] | None = None,
) -> GeoStore:
    """Reopen an existing store after checking it was planned for this run: the same dataset,
    catalog, tiles (a superset of ``plans``) in the same splits, and arrays for ``modalities``.

    Every producer (region build, importers) resumes through this; ``verb`` words the advice.
    """
    store = open_store(path, mode="r+", storage_options=storage_options)
    path = store.location
    advice = f"{verb} into a new store"
    if store.dataset != dataset:
        raise StoreError(f"store {path} holds dataset {store.dataset!r}, not {dataset!r}")
    built_with = store.provenance.get("catalog_sha256")
    if built_with != catalog_sha256:
        raise StoreError(
            f"store {path} was written with another catalog version (sha256 "
            f"{str(built_with)[:12]}, this catalog {catalog_sha256[:12]}); {advice}"
        )
    tile_ids = [p.tile_id for p in plans]
    missing = sorted(set(tile_ids) - set(store.tile_ids))
    if missing:
        raise UsageError(
            f"store {path} was planned without tile(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; {advice}"
        )
    for plan in plans:
        stored = store.splits[store.index(plan.tile_id)]
        if stored != plan.split:
            raise UsageError(
                f"store {path} holds tile {plan.tile_id} in split {stored!r}, this {verb} puts "
                f"it in {plan.split!r}; {advice}"
            )
    extra = [m for m in modalities if m not in store.modalities]
    if extra:
        raise UsageError(f"store {path} has no array for {', '.join(extra)}; {advice}")
    gone = sorted(set(store.tile_ids) - set(tile_ids))
    if gone:
        log.warning(
            "%d tile(s) of %s are not part of this %s, e.g. %s", len(gone), path, verb, gone[0]
        )
    return store
