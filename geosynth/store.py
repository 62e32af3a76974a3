"""The geosynth Zarr store contract (``geosynth:store_version`` 1).

A store is one Zarr v3 group per dataset. Everything below is a public
contract: users open stores from their own code with plain ``zarr``.

Arrays with a leading tile axis (``N`` tiles, all ``H x W``):

=============  ================  =========  ====================================
array          shape             dtype      meaning
=============  ================  =========  ====================================
``rgb``        (N, 3, H, W)      uint8      optical image, R, G, B
``dem``        (N, 1, H, W)      float32    heights in metres (NaN = no data)
``seg``        (N, H, W)         uint8      class ids (0 = unlabelled)
``sar``        (N, C, H, W)      float32    SAR normalised to [0, 1]
``sar_valid``  (N, H, W)         bool       where ``sar`` holds data
extras         (N, C, H, W)      any        e.g. ``s2`` (DFC2020's 13 bands)
=============  ================  =========  ====================================

Per-tile 1-D arrays: ``tile_id``, ``region``, ``split`` (str, fixed when the
store is created), ``crs`` (str, "" = the group's ``proj:code``),
``transform`` (N, 6) float64, ``present`` (N, M) bool with the modality order
in its ``geosynth:modalities`` attribute, ``class_hist`` (N, K) int64 pixel
counts per class id, ``sources`` (str, JSON provenance per tile) and
``state`` (N,) uint8: 0 planned, 1 being written, 2 complete.

A tile's transform: ``transform[i]`` holds the coefficients ``(a, b, c, d, e,
f)`` of ``affine.Affine`` (rasterio's order: ``x = a*col + b*row + c``,
``y = d*col + e*row + f``); all NaN where the tile has no georeferencing.
Its CRS: ``crs[i]`` when not empty, else the group attribute ``proj:code``.

Every array carries ``dimension_names``. Group attributes hold the class table
(``geosynth:classes``), normalisation constants, the modality table and the
provenance (geosynth version, catalog version and hash, build parameters).

Writing: the tile list is planned first and every array is sized once; each
per-tile array is chunked one tile at a time, so processes writing different
tiles never touch the same file. A tile counts only once ``state`` is 2, which
is written after all of its arrays; rewriting a tile is idempotent.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from affine import Affine
from zarr.codecs import BloscCodec, ZstdCodec

from geosynth import __version__
from geosynth.errors import DataError, StoreError, UsageError

log = logging.getLogger(__name__)

STORE_VERSION = 1
PLANNED, WRITING, COMPLETE = 0, 1, 2
STATE_NAMES = {PLANNED: "planned", WRITING: "being written", COMPLETE: "complete"}


CODECS = ("blosc-lz4", "blosc-zstd", "zstd", "none")


@dataclass(frozen=True)
class StoreLayout:
    """Chunking and compression of the image arrays: the one named storage setting.

    ``chunk`` is the edge of a spatial chunk in pixels (one tile and all bands
    per chunk); ``codec`` one of :data:`CODECS` (Blosc with byte shuffle, or
    plain Zstandard, or none) at ``level``. Chosen for random 256 x 256
    training crops with ``benchmarks/loader.py``; see the README's performance
    section.
    """

    chunk: int = 128
    codec: str = "blosc-lz4"
    level: int = 5

    def __post_init__(self):
        if self.codec not in CODECS:
            raise UsageError(f"codec must be one of {', '.join(CODECS)}, not {self.codec!r}")
        if self.chunk < 1:
            raise UsageError(f"chunk must be positive, got {self.chunk}")

    def compressors(self) -> tuple | None:
        if self.codec == "none":
            return None
        if self.codec == "zstd":
            return (ZstdCodec(level=self.level),)
        cname = self.codec.split("-", 1)[1]
        return (BloscCodec(cname=cname, clevel=self.level, shuffle="shuffle"),)


STORE_LAYOUT = StoreLayout()


@dataclass(frozen=True)
class ModalitySpec:
    """One image array of the store: name, channel count and dtype."""

    name: str
    channels: int
    dtype: str
    bands: tuple[str, ...] = ()

    @property
    def per_band(self) -> bool:
        """False for ``seg``, stored without a band axis."""
        return self.name != "seg"


STANDARD_DTYPES = {"rgb": "uint8", "dem": "float32", "seg": "uint8", "sar": "float32"}
STANDARD_BANDS = {"rgb": ("red", "green", "blue"), "dem": ("height",)}
FILL_VALUES = {"float32": float("nan"), "float64": float("nan")}


def modality(
    name: str, channels: int | None = None, dtype: str | None = None, bands: Sequence[str] = ()
) -> ModalitySpec:
    """The spec of a standard modality (``rgb``, ``dem``, ``seg``, ``sar``) or an extra one."""
    if name in STANDARD_DTYPES:
        default_channels = {"rgb": 3, "dem": 1, "seg": 1}.get(name, channels or 1)
        channels = channels or default_channels
        if name in ("rgb", "dem", "seg") and channels != default_channels:
            raise UsageError(f"modality {name!r} has {default_channels} channel(s), not {channels}")
        dtype = STANDARD_DTYPES[name]
        bands = tuple(bands) or STANDARD_BANDS.get(
            name, tuple(f"band{i + 1}" for i in range(channels))
        )
    elif channels is None or dtype is None:
        raise UsageError(f"extra modality {name!r} needs channels and dtype")
    return ModalitySpec(name, int(channels), str(np.dtype(dtype)), tuple(bands))


@dataclass(frozen=True)
class TilePlan:
    """One planned tile: id, region (city), split, and georeferencing when known up front."""

    tile_id: str
    region: str
    split: str
    transform: Affine | None = None
    crs: str = ""


@dataclass
class TileData:
    """The arrays of one tile to write. Modalities left as None are recorded as absent."""

    rgb: np.ndarray | None = None  # (3, H, W) uint8
    dem: np.ndarray | None = None  # (1, H, W) or (H, W) float32
    seg: np.ndarray | None = None  # (H, W) uint8
    sar: np.ndarray | None = None  # (C, H, W) float32 in [0, 1]
    sar_valid: np.ndarray | None = None  # (H, W) bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    transform: Affine | None = None
    crs: str | None = None
    sources: Mapping[str, Any] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create_store(
    path: str | os.PathLike,
    tiles: Sequence[TilePlan],
    *,
    tile_shape: tuple[int, int],
    modalities: Sequence[ModalitySpec],
    dataset: str,
    crs: str | None,
    classes: Sequence[Mapping[str, Any]],
    normalisation: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    layout: StoreLayout = STORE_LAYOUT,
) -> GeoStore:
    """Plan a store: create every array at its final size, then move it into place.

    The store is assembled under a temporary name next to ``path`` and renamed
    when complete, so an interrupted creation leaves nothing at ``path``.
    """
    path = Path(path)
    if path.exists():
        raise StoreError(f"store {path} already exists; open it to resume, or remove it first")
    if not tiles:
        raise UsageError("a store needs at least one tile")
    ids = [t.tile_id for t in tiles]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"duplicate tile ids in the plan: {', '.join(dup[:5])}")
    names = [m.name for m in modalities]
    if len(set(names)) != len(names) or not names:
        raise UsageError(f"modalities must be unique and not empty, got {names}")

    tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
    try:
        _create(
            tmp,
            tiles,
            tile_shape,
            modalities,
            dataset,
            crs,
            classes,
            normalisation or {},
            provenance or {},
            layout,
        )
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_store(path, mode="r+")


def _create(
    path,
    tiles,
    tile_shape,
    modalities,
    dataset,
    crs,
    classes,
    normalisation,
    provenance,
    layout: StoreLayout,
) -> None:
    n = len(tiles)
    h, w = (int(v) for v in tile_shape)
    c = layout.chunk
    num_classes = max(int(k["id"]) for k in classes) + 1
    group = zarr.open_group(path, mode="w-")

    def array(name, shape, chunks, dtype, dims, fill, compress=True, attrs=None):
        return group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            dimension_names=dims,
            compressors=layout.compressors() if compress else None,
            attributes=attrs or {},
        )

    for spec in modalities:
        fill = FILL_VALUES.get(spec.dtype, 0)
        attrs = {"geosynth:bands": list(spec.bands)}
        if spec.per_band:
            array(
                spec.name,
                (n, spec.channels, h, w),
                (1, spec.channels, min(c, h), min(c, w)),
                spec.dtype,
                ("tile", "band", "y", "x"),
                fill,
                attrs=attrs,
            )
        else:
            array(
                spec.name,
                (n, h, w),
                (1, min(c, h), min(c, w)),
                spec.dtype,
                ("tile", "y", "x"),
                fill,
            )
        if spec.name == "sar":
            array(
                "sar_valid", (n, h, w), (1, min(c, h), min(c, w)), "bool", ("tile", "y", "x"), False
            )

    # per-tile metadata fixed by the plan: one chunk each
    for name, values in (
        ("tile_id", [t.tile_id for t in tiles]),
        ("region", [t.region for t in tiles]),
        ("split", [t.split for t in tiles]),
    ):
        arr = array(name, (n,), (n,), str, ("tile",), "", compress=False)
        arr[:] = np.array(values, dtype=object)
    # per-tile metadata written with each tile: one chunk per tile
    crs_arr = array("crs", (n,), (1,), str, ("tile",), "", compress=False)
    tr = array(
        "transform",
        (n, 6),
        (1, 6),
        "float64",
        ("tile", "coefficient"),
        float("nan"),
        compress=False,
        attrs={"geosynth:order": ["a", "b", "c", "d", "e", "f"]},
    )
    array(
        "present",
        (n, len(modalities)),
        (1, len(modalities)),
        "bool",
        ("tile", "modality"),
        False,
        compress=False,
        attrs={"geosynth:modalities": [m.name for m in modalities]},
    )
    array(
        "class_hist",
        (n, num_classes),
        (1, num_classes),
        "int64",
        ("tile", "class"),
        0,
        compress=False,
    )
    array("sources", (n,), (1,), str, ("tile",), "", compress=False)
    array(
        "state",
        (n,),
        (1,),
        "uint8",
        ("tile",),
        PLANNED,
        compress=False,
        attrs={"geosynth:states": {str(k): v for k, v in STATE_NAMES.items()}},
    )
    # georeferencing known at plan time (builds on the NRW grid know it; imports may not)
    for i, t in enumerate(tiles):
        if t.transform is not None:
            tr[i] = np.array(t.transform[:6], dtype="float64")
        if t.crs:
            crs_arr[i] = t.crs

    from geosynth.catalog import load_catalog

    try:
        catalog = load_catalog()
        catalog_info = {"catalog_version": catalog.version, "catalog_sha256": catalog.sha256}
    except Exception:  # a store can be written without a readable catalog
        catalog_info = {}
    group.attrs.update(
        {
            "geosynth:store_version": STORE_VERSION,
            "geosynth:dataset": dataset,
            "proj:code": crs,
            "geosynth:tile_shape": [h, w],
            "geosynth:modalities": {
                m.name: {"channels": m.channels, "dtype": m.dtype, "bands": list(m.bands)}
                for m in modalities
            },
            "geosynth:classes": [dict(k) for k in classes],
            "geosynth:unlabelled": 0,
            "geosynth:normalisation": dict(normalisation),
            "geosynth:layout": {
                "chunk": layout.chunk,
                "codec": layout.codec,
                "level": layout.level,
            },
            "geosynth:provenance": {
                "geosynth_version": __version__,
                "created": _now(),
                **catalog_info,
                **dict(provenance),
            },
        }
    )


def open_store(path: str | os.PathLike, mode: str = "r") -> GeoStore:
    """Open a geosynth store for reading (``mode="r"``) or writing tiles (``"r+"``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no store at {path}")
    try:
        group = zarr.open_group(path, mode=mode)
    except Exception as exc:  # zarr raises several types for "not a group"
        raise StoreError(f"{path} is not a Zarr group: {exc}") from exc
    version = group.attrs.get("geosynth:store_version")
    if version is None:
        raise StoreError(
            f"{path} is a Zarr group but not a geosynth store (no geosynth:store_version)"
        )
    if version != STORE_VERSION:
        raise StoreError(
            f"{path} has store version {version}; this geosynth reads version {STORE_VERSION}"
        )
    return GeoStore(path, group)


class GeoStore:
    """Typed access to a geosynth store. Obtain one with :func:`open_store`."""

    def __init__(self, path: Path, group: zarr.Group):
        self.path = path
        self.group = group
        self.attrs = dict(group.attrs)
        self.tile_ids: list[str] = [str(v) for v in group["tile_id"][:]]
        self.regions: list[str] = [str(v) for v in group["region"][:]]
        self.splits: list[str] = [str(v) for v in group["split"][:]]
        self._index = {t: i for i, t in enumerate(self.tile_ids)}
        self.modalities: list[str] = list(group["present"].attrs["geosynth:modalities"])

    # ------------------------------------------------------------------ metadata
    def __len__(self) -> int:
        return len(self.tile_ids)

    def __repr__(self) -> str:
        return f"<GeoStore {self.path} {self.dataset!r}: {len(self)} tiles, {', '.join(self.modalities)}>"

    @property
    def dataset(self) -> str:
        return self.attrs["geosynth:dataset"]

    @property
    def crs(self) -> str | None:
        return self.attrs.get("proj:code")

    @property
    def tile_shape(self) -> tuple[int, int]:
        h, w = self.attrs["geosynth:tile_shape"]
        return int(h), int(w)

    @property
    def classes(self) -> list[dict]:
        return list(self.attrs["geosynth:classes"])

    @property
    def num_classes(self) -> int:
        """Class count including the unlabelled id 0 (11 for GeoNRW)."""
        return max(int(c["id"]) for c in self.classes) + 1

    @property
    def provenance(self) -> dict:
        return dict(self.attrs.get("geosynth:provenance", {}))

    def modality_spec(self, name: str) -> ModalitySpec:
        spec = self.attrs["geosynth:modalities"].get(name)
        if spec is None:
            raise UsageError(
                f"store {self.path} has no modality {name!r} (has: {', '.join(self.modalities)})"
            )
        return ModalitySpec(
            name, int(spec["channels"]), spec["dtype"], tuple(spec.get("bands", ()))
        )

    def index(self, tile_id: str) -> int:
        """Position of a tile on the tile axis; unknown ids name the nearest tiles."""
        try:
            return self._index[str(tile_id)]
        except KeyError:
            raise DataError(
                f"tile {tile_id!r} is not in store {self.path}; nearest: "
                f"{', '.join(self.nearest_tiles(str(tile_id)))}"
            ) from None

    def nearest_tiles(self, tile_id: str, k: int = 5) -> list[str]:
        """Up to ``k`` tile ids of the store nearest to ``tile_id`` (by km grid distance or name)."""
        from geosynth.grid import TileId

        try:
            target = TileId.parse(tile_id)
        except Exception:
            return sorted(self.tile_ids)[:k]

        def distance(other: str) -> float:
            try:
                t = TileId.parse(other)
            except Exception:
                return math.inf
            return math.hypot(t.e_km - target.e_km, t.n_km - target.n_km)

        return sorted(self.tile_ids, key=lambda t: (distance(t), t))[:k]

    def states(self) -> np.ndarray:
        return self.group["state"][:]

    def complete_mask(self) -> np.ndarray:
        return self.states() == COMPLETE

    def present(self, modality_name: str | None = None) -> np.ndarray:
        """``(N, M)`` bool of present modalities, or ``(N,)`` for one modality."""
        table = self.group["present"][:]
        if modality_name is None:
            return table
        if modality_name not in self.modalities:
            return np.zeros(len(self), dtype=bool)
        return table[:, self.modalities.index(modality_name)]

    def tiles(
        self, split: str | None = None, require: Iterable[str] = (), complete: bool = True
    ) -> list[int]:
        """Indices of tiles in ``split`` (all when None) that are complete and have ``require``."""
        mask = self.complete_mask() if complete else np.ones(len(self), dtype=bool)
        if split is not None:
            mask &= np.array([s == split for s in self.splits])
        for name in require:
            mask &= self.present(name)
        return [int(i) for i in np.flatnonzero(mask)]

    def transform(self, index: int) -> Affine | None:
        coeffs = self.group["transform"][index]
        if np.isnan(coeffs).any():
            return None
        return Affine(*(float(v) for v in coeffs))

    def tile_crs(self, index: int) -> str | None:
        value = str(self.group["crs"][index])
        return value or self.crs

    def sources(self, index: int) -> dict:
        text = str(self.group["sources"][index])
        return json.loads(text) if text else {}

    def class_hist(self) -> np.ndarray:
        return self.group["class_hist"][:]

    # ------------------------------------------------------------------ pixels
    def read(self, name: str, index: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """Pixels of one modality of one tile, optionally a ``(rows, cols)`` window."""
        if name not in self.group:
            raise UsageError(f"store {self.path} has no array {name!r}")
        arr = self.group[name]
        rows, cols = window or (slice(None), slice(None))
        if arr.ndim == 4:
            return arr[index, :, rows, cols]
        return arr[index, rows, cols]

    def tile_dataset(self, tile_id: str):
        """One tile as an :class:`xarray.Dataset` with x/y coordinates and its CRS.

        ``x``/``y`` are pixel centres in the tile's CRS (pixel indices when the
        tile has no transform); the CRS is in the ``spatial_ref`` coordinate
        (CF ``crs_wkt``, as rioxarray reads it) and the ``proj:code`` attribute.
        """
        import xarray as xr

        i = self.index(tile_id)
        state = int(self.group["state"][i])
        if state != COMPLETE:
            raise DataError(f"tile {tile_id} of {self.path} is {STATE_NAMES[state]}, not complete")
        h, w = self.tile_shape
        transform = self.transform(i)
        crs = self.tile_crs(i)
        if transform is not None:
            xs = transform.c + transform.a * (np.arange(w) + 0.5)
            ys = transform.f + transform.e * (np.arange(h) + 0.5)
        else:
            xs, ys = np.arange(w, dtype="float64"), np.arange(h, dtype="float64")
        coords: dict[str, Any] = {"x": xs, "y": ys}
        present = self.present()[i]
        data_vars = {}
        for j, name in enumerate(self.modalities):
            if not present[j]:
                continue
            spec = self.modality_spec(name)
            values = self.read(name, i)
            if spec.per_band:
                coords[f"{name}_band"] = list(spec.bands)
                data_vars[name] = ((f"{name}_band", "y", "x"), values)
            else:
                data_vars[name] = (("y", "x"), values)
            if name == "sar":
                data_vars["sar_valid"] = (("y", "x"), self.read("sar_valid", i))
        attrs = {
            "tile_id": tile_id,
            "region": self.regions[i],
            "split": self.splits[i],
            "proj:code": crs or "",
        }
        if transform is not None:
            attrs["transform"] = list(transform)[:6]
        ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
        if crs:
            from pyproj import CRS

            ds = ds.assign_coords(
                spatial_ref=(
                    (),
                    0,
                    {
                        "crs_wkt": CRS.from_user_input(crs).to_wkt(),
                        "spatial_ref": CRS.from_user_input(crs).to_wkt(),
                    },
                )
            )
            for name in data_vars:
                ds[name].attrs["grid_mapping"] = "spatial_ref"
        return ds

    # ------------------------------------------------------------------ writing
    def write_tile(
        self, tile_id: str, data: TileData, progress: Callable[[str], None] | None = None
    ) -> None:
        """Write one tile: state 1, every array, metadata, then state 2 (the completion mark).

        Idempotent: writing the same data again gives the same store. Modalities
        not given are marked absent. ``progress`` is called with each array name
        after it is written.
        """
        i = self.index(tile_id)
        g = self.group
        h, w = self.tile_shape
        given = {
            name: getattr(data, name, None) if name in STANDARD_DTYPES else data.extras.get(name)
            for name in self.modalities
        }
        unknown = set(data.extras) - set(self.modalities)
        if unknown:
            raise UsageError(f"store {self.path} has no modality {sorted(unknown)}")
        arrays = {
            name: self._check(name, value, tile_id)
            for name, value in given.items()
            if value is not None
        }

        g["state"][i] = WRITING
        for name, value in arrays.items():
            g[name][i] = value
            if progress:
                progress(name)
        if "sar" in arrays:
            valid = data.sar_valid
            if valid is None:
                valid = np.ones((h, w), dtype=bool)
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != (h, w):
                raise DataError(
                    f"tile {tile_id}: sar_valid has shape {valid.shape}, expected {(h, w)}"
                )
            g["sar_valid"][i] = valid
            if progress:
                progress("sar_valid")
        hist = np.zeros(self.num_classes, dtype="int64")
        if "seg" in arrays:
            counts = np.bincount(arrays["seg"].ravel(), minlength=self.num_classes)
            hist[:] = counts[: self.num_classes]
        g["class_hist"][i] = hist
        g["present"][i] = np.array([name in arrays for name in self.modalities])
        if data.transform is not None:
            g["transform"][i] = np.array(data.transform[:6], dtype="float64")
        if data.crs is not None:
            g["crs"][i] = data.crs
        g["sources"][i] = json.dumps(dict(data.sources or {}), sort_keys=True, default=str)
        g["state"][i] = COMPLETE

    def mark_planned(self, tile_id: str) -> None:
        """Reset a tile to 'planned' (e.g. before a retry)."""
        self.group["state"][self.index(tile_id)] = PLANNED

    def _check(self, name: str, value: np.ndarray, tile_id: str) -> np.ndarray:
        spec = self.modality_spec(name)
        h, w = self.tile_shape
        value = np.asarray(value)
        if name == "dem" and value.ndim == 2:
            value = value[None]
        expected = (spec.channels, h, w) if spec.per_band else (h, w)
        if value.shape != expected:
            raise DataError(f"tile {tile_id}: {name} has shape {value.shape}, expected {expected}")
        if value.dtype != np.dtype(spec.dtype):
            if np.issubdtype(np.dtype(spec.dtype), np.integer) and np.issubdtype(
                value.dtype, np.floating
            ):
                raise DataError(f"tile {tile_id}: {name} is {value.dtype}, expected {spec.dtype}")
            value = value.astype(spec.dtype)
        return value


# --------------------------------------------------------------------------- inspection


def summarize(store: GeoStore) -> dict:
    """Counts per split, region, modality and state, and the class histogram (of complete tiles)."""
    states = store.states()
    complete = states == COMPLETE
    present = store.present()
    hist = store.class_hist()[complete].sum(axis=0)
    by_split: dict[str, int] = {}
    by_region: dict[str, int] = {}
    for i in np.flatnonzero(complete):
        by_split[store.splits[i]] = by_split.get(store.splits[i], 0) + 1
        by_region[store.regions[i]] = by_region.get(store.regions[i], 0) + 1
    no_transform = [
        store.tile_ids[i]
        for i in np.flatnonzero(complete)
        if np.isnan(store.group["transform"][i]).any()
    ]
    return {
        "path": str(store.path),
        "dataset": store.dataset,
        "store_version": STORE_VERSION,
        "crs": store.crs,
        "tile_shape": list(store.tile_shape),
        "tiles": len(store),
        "states": {STATE_NAMES[s]: int((states == s).sum()) for s in STATE_NAMES},
        "splits": by_split,
        "regions": by_region,
        "modalities": {m: int(present[complete, j].sum()) for j, m in enumerate(store.modalities)},
        "class_hist": {str(k): int(v) for k, v in enumerate(hist)},
        "without_transform": no_transform,
    }


@dataclass(frozen=True)
class Problem:
    tile: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.tile}: {self.message}" if self.tile else self.message


def verify(store: GeoStore, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    """Check a store against the contract; returns the problems found (empty when sound).

    Finds tiles that are not complete, arrays whose shape or dtype break the
    contract, NaN in the DEM, class ids out of range and valid SAR outside [0, 1].
    """
    problems: list[Problem] = []
    g = store.group
    n = len(store)
    h, w = store.tile_shape
    for name in store.modalities:
        spec = store.modality_spec(name)
        arr = g[name]
        expected = (n, spec.channels, h, w) if spec.per_band else (n, h, w)
        if tuple(arr.shape) != expected:
            problems.append(
                Problem(None, f"array {name} has shape {tuple(arr.shape)}, expected {expected}")
            )
        if str(arr.dtype) != spec.dtype:
            problems.append(
                Problem(None, f"array {name} has dtype {arr.dtype}, expected {spec.dtype}")
            )
        if name in STANDARD_DTYPES and spec.dtype != STANDARD_DTYPES[name]:
            problems.append(
                Problem(None, f"modality {name} must be {STANDARD_DTYPES[name]}, not {spec.dtype}")
            )
    for name in ("tile_id", "region", "split", "crs", "sources", "state"):
        if g[name].shape != (n,):
            problems.append(
                Problem(None, f"array {name} has shape {g[name].shape}, expected {(n,)}")
            )
    if problems:
        return problems

    states = store.states()
    present = store.present()
    max_class = store.num_classes - 1
    for i, tile in enumerate(store.tile_ids):
        if progress:
            progress(i, n)
        if states[i] != COMPLETE:
            problems.append(
                Problem(tile, f"incomplete ({STATE_NAMES.get(int(states[i]), states[i])})")
            )
            continue
        row = dict(zip(store.modalities, present[i], strict=True))
        if row.get("dem"):
            nan = int(np.isnan(store.read("dem", i)).sum())
            if nan:
                problems.append(Problem(tile, f"dem has {nan} NaN pixels"))
        if row.get("seg"):
            seg = store.read("seg", i)
            bad = int((seg > max_class).sum())
            if bad:
                problems.append(
                    Problem(
                        tile,
                        f"seg has {bad} pixels with class ids above {max_class} "
                        f"(max {int(seg.max())})",
                    )
                )
        if row.get("sar"):
            sar = store.read("sar", i)
            valid = np.broadcast_to(store.read("sar_valid", i), sar.shape)
            values = sar[valid]
            bad = int(((values < 0) | (values > 1) | ~np.isfinite(values)).sum())
            if bad:
                problems.append(Problem(tile, f"sar has {bad} valid pixels outside [0, 1]"))
    if progress:
        progress(n, n)
    return problems
