"""The store contract as types: version, tile states, layout, modalities, tile plans, class table,
and the georeferencing attributes of a tile group (CF for xarray/rioxarray, GeoZarr conventions).

Pure definitions (numpy only): what a store holds and how its attributes
read back. Creating, reading and inspecting stores live beside this module
(:mod:`~geosynth.store.create`, :mod:`~geosynth.store.read`,
:mod:`~geosynth.store.inspect`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine

from geosynth.catalog import ClassDef, ClassTable
from geosynth.errors import UsageError
from geosynth.names import CODECS, LABELS

STORE_VERSION = 2
PLANNED, WRITING, COMPLETE = 0, 1, 2
STATE_NAMES = {PLANNED: "planned", WRITING: "being written", COMPLETE: "complete"}
UNLABELLED = 0  # the class id of unlabelled pixels in every store

#: Per-tile 1-D arrays of the root's tile index.
TILE_ARRAYS = ("tile_id", "region", "split", "crs", "sources", "state")
#: The group holding one group per tile: ``tiles/<tile_id>/``.
TILES_GROUP = "tiles"


def tile_group_path(tile_id: str) -> str:
    """Path of a tile's group inside the store, e.g. ``tiles/356_5645``."""
    return f"{TILES_GROUP}/{tile_id}"


def band_dimension(name: str) -> str:
    """The band dimension of a modality (``rgb_band``, ``dem_band``, ...): each its own length."""
    return f"{name}_band"


#: GeoZarr convention registrations (``zarr_conventions``) of the tile groups.
SPATIAL_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial",
    "description": "Spatial coordinate information",
}
PROJ_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj",
    "description": "Coordinate reference system information for geospatial data",
}


@dataclass(frozen=True)
class StoreLayout:
    """Chunking and compression of the image arrays: the one named storage setting.

    ``chunk`` is the edge of a spatial chunk in pixels (one tile and all bands
    per chunk); ``codec`` one of :data:`~geosynth.names.CODECS` (Blosc with
    byte shuffle, or plain Zstandard, or none) at ``level``. Chosen for random
    256 x 256 training crops with ``benchmarks/loader.py``; see the store layout in
    docs/performance-history.md. ``checksum``: Zarr v3's ``crc32c`` codec ends every chunk's
    codec chain (of every array of the store), so a flipped or missing byte fails the
    read instead of passing as data. Stores written before checksums have none
    (:meth:`from_attrs`) and stay readable.
    """

    chunk: int = 128
    codec: str = "blosc-lz4"
    level: int = 5
    checksum: bool = True

    def __post_init__(self):
        if self.codec not in CODECS:
            raise UsageError(f"codec must be one of {', '.join(CODECS)}, not {self.codec!r}")
        if self.chunk < 1:
            raise UsageError(f"chunk must be positive, got {self.chunk}")

    def compressors(self) -> tuple | None:
        """The bytes-to-bytes codecs of the image arrays: compression, then the checksum."""
        from zarr.codecs import BloscCodec, ZstdCodec

        if self.codec == "none":
            codecs: tuple = ()
        elif self.codec == "zstd":
            codecs = (ZstdCodec(level=self.level),)
        else:
            cname = self.codec.split("-", 1)[1]
            codecs = (BloscCodec(cname=cname, clevel=self.level, shuffle="shuffle"),)
        return (codecs + self.checksums()) or None

    def checksums(self) -> tuple:
        """The codecs of the uncompressed arrays (tile index, coordinates): the checksum."""
        from zarr.codecs import Crc32cCodec

        return (Crc32cCodec(),) if self.checksum else ()

    def to_attrs(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk,
            "codec": self.codec,
            "level": self.level,
            "checksum": self.checksum,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any] | None) -> StoreLayout:
        """The layout recorded in a store's ``geosynth:layout``; one recorded before checksums
        existed (no ``checksum`` key) has none, so that tiles rewritten into it match."""
        attrs = dict(attrs or {})
        attrs.setdefault("checksum", False)
        return cls(**attrs)


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
        return self.name != LABELS

    def to_attrs(self) -> dict[str, Any]:
        return {"channels": self.channels, "dtype": self.dtype, "bands": list(self.bands)}

    @classmethod
    def from_attrs(cls, name: str, attrs: Mapping[str, Any]) -> ModalitySpec:
        return cls(name, int(attrs["channels"]), str(attrs["dtype"]), tuple(attrs.get("bands", ())))


STANDARD_DTYPES = {"rgb": "uint8", "dem": "float32", "seg": "uint8", "sar": "float32"}
STANDARD_CHANNELS = {"rgb": 3, "dem": 1, "seg": 1}  # sar: 1 (GeoNRW) or 2 (DFC2020)
STANDARD_BANDS = {"rgb": ("red", "green", "blue"), "dem": ("height",)}
FILL_VALUES = {"float32": float("nan"), "float64": float("nan")}


def modality(
    name: str, channels: int | None = None, dtype: str | None = None, bands: Sequence[str] = ()
) -> ModalitySpec:
    """The spec of a standard modality (``rgb``, ``dem``, ``seg``, ``sar``) or an extra one."""
    if name in STANDARD_DTYPES:
        default_channels = STANDARD_CHANNELS.get(name, channels or 1)
        channels = channels or default_channels
        if name in STANDARD_CHANNELS and channels != default_channels:
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
    # when and how each modality was acquired, e.g. {"rgb": {"date": "2022-06-23", ...},
    # "sar": [{"start": ..., "orbit": "ascending", "incidence_deg": 38.2}, ...]}
    acquisition: Mapping[str, Any] | None = None


# --------------------------------------------------------------------------- class table


ClassesLike = ClassTable | Iterable[ClassDef | Mapping[str, Any]]


def class_table(classes: ClassesLike) -> ClassTable:
    """A typed class table from a catalog table, class definitions or the store's attributes."""
    if isinstance(classes, ClassTable):
        return classes
    defs = tuple(
        c
        if isinstance(c, ClassDef)
        else ClassDef(int(c["id"]), str(c["key"]), str(c["name"]), str(c.get("color", "#808080")))
        for c in classes
    )
    if not defs:
        raise UsageError("a store needs at least one class")
    return ClassTable(unlabelled=UNLABELLED, classes=defs, burn_order=())


def class_attrs(classes: ClassesLike) -> list[dict[str, Any]]:
    """The ``geosynth:classes`` attribute: ``[{"id", "key", "name", "color"}, ...]``."""
    return [
        {"id": c.id, "key": c.key, "name": c.name, "color": c.color}
        for c in class_table(classes).classes
    ]


# --------------------------------------------------------------------------- georeferencing


def crs_attrs(crs: str) -> dict[str, str]:
    """``proj:code`` (``EPSG:<n>`` where the CRS has one) or ``proj:wkt2``."""
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    return {"proj:code": f"EPSG:{epsg}"} if epsg else {"proj:wkt2": parsed.to_wkt()}


def tile_georef_attrs(transform: Affine | None, crs: str | None, shape: tuple[int, int]) -> dict:
    """The GeoZarr attributes of a tile group (``zarr_conventions``, ``spatial:*``, ``proj:*``).

    ``spatial:transform`` holds rasterio's ``(a, b, c, d, e, f)``; a tile without a
    transform gets none of these.
    """
    if transform is None:
        return {}
    h, w = shape
    a, b, c, d, e, f = tuple(transform)[:6]
    xs = [c + a * col + b * row for col, row in ((0, 0), (w, 0), (0, h), (w, h))]
    ys = [f + d * col + e * row for col, row in ((0, 0), (w, 0), (0, h), (w, h))]
    attrs: dict = {
        "zarr_conventions": [SPATIAL_CONVENTION] + ([PROJ_CONVENTION] if crs else []),
        "spatial:dimensions": ["y", "x"],
        "spatial:transform_type": "affine",
        "spatial:transform": [float(v) for v in tuple(transform)[:6]],
        "spatial:shape": [int(h), int(w)],
        "spatial:bbox": [min(xs), min(ys), max(xs), max(ys)],
        "spatial:registration": "pixel",
    }
    if crs:
        attrs.update(crs_attrs(crs))
    return attrs


def grid_mapping_attrs(transform: Affine | None, crs: str) -> dict:
    """CF attributes of the ``spatial_ref`` variable as rioxarray and GDAL read them: the CRS
    as WKT2 (``crs_wkt``), the grid mapping name and GDAL's ``GeoTransform``."""
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    attrs = {"crs_wkt": parsed.to_wkt()}
    name = parsed.to_cf().get("grid_mapping_name")
    if name:
        attrs["grid_mapping_name"] = name
    if transform is not None:
        a, b, c, d, e, f = tuple(transform)[:6]
        attrs["GeoTransform"] = " ".join(repr(float(v)) for v in (c, a, b, f, d, e))
    return attrs


def pixel_centres(transform: Affine | None, shape: tuple[int, int]) -> tuple:
    """``(x, y)`` coordinates of the pixel centres (pixel indices without a transform)."""
    h, w = shape
    if transform is None:
        return np.arange(w, dtype="float64"), np.arange(h, dtype="float64")
    x = transform.c + transform.a * (np.arange(w) + 0.5)
    y = transform.f + transform.e * (np.arange(h) + 0.5)
    return x.astype("float64"), y.astype("float64")


def label_attrs(classes: ClassesLike) -> dict:
    """CF ``flag_values``/``flag_meanings`` of the ``seg`` array (names and colours: the
    root's ``geosynth:classes``)."""
    table = class_table(classes)
    ids = [UNLABELLED] + [c.id for c in table.classes]
    meanings = ["unlabelled"] + [c.key for c in table.classes]
    return {"flag_values": ids, "flag_meanings": " ".join(meanings), "long_name": "class id"}
