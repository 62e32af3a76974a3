"""Opening and reading a store: :func:`open_store`, :class:`GeoStore` and the one window reader.

Every read of pixels, by training, evaluation, synthesis, editing or
inspection, goes through :class:`WindowReader`. zarr-python 3 routes each
read through its asyncio event loop and thread pool; for a training crop that
touches a few small chunks that costs several milliseconds, more than
decoding them. The tile arrays this package writes have a simple layout (a
regular chunk grid of all bands and ``layout.chunk`` pixels per chunk,
default ``c/...`` chunk keys, the ``bytes`` codec and optionally Blosc or
Zstandard), so on a local store the reader opens those chunk files and
decodes them directly, synchronously. Anything else (other codecs or
chunkings, stores on object storage or in memory) is read through zarr; both
paths return the same values (tested).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import struct
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from affine import Affine

from geosynth.catalog import ClassTable
from geosynth.errors import DataError, GeosynthError, StoreError, UsageError
from geosynth.grid import TileId
from geosynth.store.contract import (
    COMPLETE,
    PLANNED,
    STORE_VERSION,
    ModalitySpec,
    StoreLayout,
    class_table,
    tile_group_path,
)
from geosynth.store.inspect import tile_dataset
from geosynth.store.location import StoreLocation, locate, storage_errors
from geosynth.store.write import write_tile

log = logging.getLogger(__name__)


def open_store(path, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> GeoStore:
    """Open a geosynth store for reading (``mode="r"``) or writing tiles (``"r+"``).

    ``path``: a local path, a ``file://``, ``s3://``, ``gs://`` or ``memory://`` URL
    (:mod:`geosynth.store.location`), or an open :class:`zarr.Group`.
    """
    import zarr

    if isinstance(path, zarr.Group):
        return _checked_store(_location_of(path), path)
    location = locate(path, storage_options)
    if not location.exists():
        raise DataError(f"no store at {location}")
    try:
        with storage_errors(location.url):
            group = zarr.open_group(
                location.zarr_store(read_only=mode == "r"), mode=mode, use_consolidated=False
            )
    except DataError:
        raise
    except Exception as exc:  # zarr raises several types for "not a group"
        raise StoreError(f"{location} is not a Zarr group: {exc}") from exc
    return _checked_store(location, group)


def _location_of(group) -> StoreLocation:
    """The location of an open group (its store's root; a group inside a store is refused)."""
    from zarr.storage import FsspecStore, LocalStore

    if group.path:
        raise UsageError(f"open the store's root group, not its member {group.path!r}")
    store = group.store
    if isinstance(store, LocalStore):
        return StoreLocation(str(store.root), {}, store.root)
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        protocol = protocol[0] if isinstance(protocol, tuple | list) else protocol
        return StoreLocation(f"{protocol}://{store.path}", dict(store.fs.storage_options), None)
    raise UsageError(f"stores of type {type(store).__name__} are not supported; open it by URL")


def _checked_store(location: StoreLocation, group) -> GeoStore:
    version = group.attrs.get("geosynth:store_version")
    if version is None:
        raise StoreError(
            f"{location} is a Zarr group but not a geosynth store (no geosynth:store_version)"
        )
    if version == 1:
        raise StoreError(
            f"{location} is a version 1 store; this geosynth reads version {STORE_VERSION}: "
            f"convert it with `geosynth upgrade-store {location} NEW` (bit-exact, resumable)"
        )
    if version != STORE_VERSION:
        raise StoreError(
            f"{location} has store version {version}; this geosynth reads version {STORE_VERSION}"
        )
    return GeoStore(location, group)


class GeoStore:
    """Typed access to a geosynth store. Obtain one with :func:`open_store`.

    ``location`` is where it lives; ``path`` the same as text (a local path or a URL).
    """

    def __init__(self, location: StoreLocation, group):
        self.location = location
        self.path = location.url
        self.group = group
        self.attrs = dict(group.attrs)
        self.tile_ids: list[str] = [str(v) for v in self.root_values("tile_id")]
        self.regions: list[str] = [str(v) for v in self.root_values("region")]
        self.splits: list[str] = [str(v) for v in self.root_values("split")]
        self._index = {t: i for i, t in enumerate(self.tile_ids)}
        self.modalities: list[str] = list(self.root_array("present").attrs["geosynth:modalities"])
        try:
            self.classes: ClassTable = class_table(self.attrs["geosynth:classes"])
        except (KeyError, TypeError, ValueError, GeosynthError) as exc:
            raise StoreError(
                f"{location}: unreadable class table (geosynth:classes): {exc}"
            ) from exc
        self.layout = StoreLayout.from_attrs(self.attrs.get("geosynth:layout"))
        self._readers: dict[str, WindowReader] = {}
        self._tile_groups: dict[int, Any] = {}
        self.batch_writes = False  # True in a build's or import's writers: consolidated at the end
        self.unconsolidated = False

    # ------------------------------------------------------------------ metadata
    def root_array(self, name: str):
        """One array of the root's tile index (``state``, ``present``, ...); a missing or
        unreadable one is a :class:`StoreError` naming it."""
        try:
            with storage_errors(self.path):
                return self.group[name]
        except KeyError:
            raise StoreError(
                f"{self.path}: the tile index array {name!r} is missing ({name}/zarr.json); "
                "the store cannot be read, build or import it anew"
            ) from None
        except (ValueError, TypeError) as exc:  # a damaged zarr.json
            raise StoreError(
                f"{self.path}: the tile index array {name!r} is unreadable: {exc}"
            ) from exc

    def root_values(self, name: str, index: Any = slice(None)) -> np.ndarray:
        """``root_array(name)[index]``; a damaged chunk is a :class:`StoreError` naming it."""
        array = self.root_array(name)
        try:
            with storage_errors(self.path):
                return array[index]
        except (ValueError, RuntimeError, TypeError) as exc:
            raise StoreError(
                f"{self.path}: damaged chunk of the tile index array {name!r}: {exc}"
            ) from exc

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
    def num_classes(self) -> int:
        """Class count including the unlabelled id 0 (11 for GeoNRW)."""
        return self.classes.num_classes

    @property
    def provenance(self) -> dict:
        return dict(self.attrs.get("geosynth:provenance", {}))

    def modality_spec(self, name: str) -> ModalitySpec:
        spec = self.attrs["geosynth:modalities"].get(name)
        if spec is None:
            raise UsageError(
                f"store {self.path} has no modality {name!r} (has: {', '.join(self.modalities)})"
            )
        return ModalitySpec.from_attrs(name, spec)

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
        return self.root_values("state")

    def complete_mask(self) -> np.ndarray:
        return self.states() == COMPLETE

    def present(self, modality_name: str | None = None) -> np.ndarray:
        """``(N, M)`` bool of present modalities, or ``(N,)`` for one modality."""
        table = self.root_values("present")
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
        coeffs = self.root_values("transform", index)
        if np.isnan(coeffs).any():
            return None
        return Affine(*(float(v) for v in coeffs))

    def tile_crs(self, index: int) -> str | None:
        value = str(self.root_values("crs", index))
        return value or self.crs

    def sources(self, index: int) -> dict:
        text = str(self.root_values("sources", index))
        return json.loads(text) if text else {}

    def acquisition(self, index: int) -> dict:
        """When and how a tile's modalities were acquired (flight date of the orthophoto, the
        SAR scenes' times, orbit directions and incidence angles), as its build recorded it."""
        return dict(self.tile_group(index).attrs.get("geosynth:acquisition", {}))

    def class_hist(self) -> np.ndarray:
        return self.root_values("class_hist")

    # ------------------------------------------------------------------ pixels
    def tile_group(self, index: int):
        """The zarr group of one written tile (``tiles/<tile_id>``)."""
        import zarr

        if index not in self._tile_groups:
            path = tile_group_path(self.tile_ids[index])
            try:
                with storage_errors(self.path):
                    self._tile_groups[index] = zarr.open_group(
                        self.location.zarr_store(), path=path, mode="r"
                    )
            except (FileNotFoundError, KeyError) as exc:
                raise StoreError(
                    f"tile {self.tile_ids[index]} of {self.path} has no group {path}"
                ) from exc
        return self._tile_groups[index]

    def forget_tile(self, index: int) -> None:
        """Drop what was cached of a tile (after it was rewritten)."""
        self._tile_groups.pop(index, None)
        for reader in self._readers.values():
            reader.forget(index)

    def tile_array(self, name: str, index: int):
        """The zarr array of one modality (or ``sar_valid``) of one tile."""
        group = self.tile_group(index)
        if name not in group:
            raise DataError(
                f"tile {self.tile_ids[index]} of {self.path} has no {name!r} "
                f"(present: {', '.join(sorted(group.array_keys()))})"
            )
        return group[name]

    def reader(self, name: str) -> WindowReader:
        """The window reader of one image array (``rgb``, ``dem``, ``seg``, ``sar_valid``, ...)."""
        if name not in self._readers:
            if name not in (*self.modalities, "sar_valid") or (
                name == "sar_valid" and "sar" not in self.modalities
            ):
                raise UsageError(f"store {self.path} has no array {name!r}")
            self._readers[name] = WindowReader(self, name)
        return self._readers[name]

    def read(self, name: str, index: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """Pixels of one modality of one tile, optionally a ``(rows, cols)`` window."""
        rows, cols = window or (slice(None), slice(None))
        return self.reader(name).read(index, rows, cols)

    def read_windows(self, names, index: int, rows: slice, cols: slice) -> dict[str, np.ndarray]:
        """One window of several arrays of one tile. Arrays read through zarr (remote stores)
        are fetched concurrently, in one round of zarr's asyncio partial reads."""
        readers = {name: self.reader(name) for name in names}
        remote = [n for n, r in readers.items() if not r.decides_direct(index)]
        out = {n: r.read(index, rows, cols) for n, r in readers.items() if n not in remote}
        if len(remote) == 1:
            out[remote[0]] = readers[remote[0]].read(index, rows, cols)
        elif remote:
            import asyncio

            from zarr.core.sync import sync

            arrays = [readers[n]._array(index).async_array for n in remote]

            async def fetch():
                return await asyncio.gather(*(a.getitem((..., rows, cols)) for a in arrays))

            try:
                with storage_errors(self.path):
                    out.update(zip(remote, sync(fetch()), strict=True))
            except (ValueError, RuntimeError, TypeError):  # a damaged chunk: name it
                for n in remote:
                    out[n] = readers[n].read(index, rows, cols)
        return out

    def tile_dataset(self, tile_id: str):
        """One tile as an :class:`xarray.Dataset` (see :func:`geosynth.store.inspect.tile_dataset`)."""
        return tile_dataset(self, tile_id)

    # ------------------------------------------------------------------ writing
    def write_tile(self, tile_id: str, data, progress=None) -> None:
        """Write one tile (:func:`geosynth.store.write.write_tile`)."""
        write_tile(self, tile_id, data, progress)

    def mark_planned(self, tile_id: str) -> None:
        """Reset a tile to 'planned' (e.g. before a retry)."""
        self.group["state"][self.index(tile_id)] = PLANNED


# --------------------------------------------------------------------------- window reads


def _direct_layout(array) -> str | None:
    """Why ``array`` cannot be read directly from its chunk files, or None when it can."""
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ZstdCodec
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
    from zarr.storage import LocalStore

    meta = array.metadata
    if getattr(meta, "zarr_format", None) != 3:
        return "not a Zarr v3 array"
    if not isinstance(array.store_path.store, LocalStore):
        return "not a local store"
    if not isinstance(meta.chunk_grid, RegularChunkGrid):
        return "not a regular chunk grid"
    key = meta.chunk_key_encoding
    if not isinstance(key, DefaultChunkKeyEncoding) or key.separator != "/":
        return "not the default '/' chunk keys"
    chunks, shape = meta.chunk_grid.chunk_shape, array.shape
    if array.ndim not in (2, 3) or (array.ndim == 3 and chunks[0] != shape[0]):
        return "chunks are not all bands of a tile"
    codecs = list(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return "first codec is not 'bytes'"
    rest = codecs[1:]
    if rest and isinstance(rest[-1], Crc32cCodec):
        rest = rest[:-1]
    if any(not isinstance(c, ZstdCodec | BloscCodec) for c in rest) or len(rest) > 1:
        return f"codecs {[type(c).__name__ for c in codecs]}"
    return None


_BLOSC_HEADER = 16  # bytes


class DamagedChunk(Exception):
    """A chunk file that cannot be decoded into its chunk: ``key`` (e.g. ``c/0/1/0``), ``reason``."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"chunk {key}: {reason}")
        self.key, self.reason = key, reason


class _ChunkDecoder:
    """Decodes the chunk files of one tile array layout directly (see the module docstring).

    Every chunk is checked before it counts as data: its crc32c checksum where the array has
    one, the length of the compressed frame against the file's and the decoded length
    against the chunk's (a Blosc frame cut short otherwise decodes without error, the rest
    filled from outside the buffer). A chunk failing a check raises :class:`DamagedChunk`.
    """

    def __init__(self, array):
        from numcodecs import blosc, zstd
        from zarr.codecs import Crc32cCodec, ZstdCodec

        meta = array.metadata
        self.chunk = tuple(meta.chunk_grid.chunk_shape)
        self.shape = tuple(array.shape)
        endian = getattr(meta.codecs[0], "endian", None)
        dtype = np.dtype(array.dtype)
        if dtype.itemsize > 1 and endian is not None:
            dtype = dtype.newbyteorder(
                "<" if str(getattr(endian, "value", endian)) == "little" else ">"
            )
        self.dtype, self.out_dtype = dtype, np.dtype(array.dtype)
        self.fill = np.asarray(meta.fill_value, dtype=array.dtype)
        codecs = list(meta.codecs[1:])
        self.checksum = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
        compressor = codecs[0] if codecs and not isinstance(codecs[0], Crc32cCodec) else None
        # Blosc frames describe themselves; numcodecs decodes them as zarr wrote them
        self.blosc = compressor is not None and not isinstance(compressor, ZstdCodec)
        # numcodecs' module functions: its codecs' decoding without their argument checks
        # (a 256 px training crop is 27 chunks; Python's overhead per chunk counts)
        self._decompress = (
            None if compressor is None else (blosc.decompress if self.blosc else zstd.decompress)
        )  # fmt: skip
        self.chunk_bytes = int(np.prod(self.chunk)) * dtype.itemsize
        # a chunk file is at most this long: one read takes it, a second one sees its end
        self._read_size = self.chunk_bytes + _BLOSC_HEADER + 64 + 4
        self._local = threading.local()

    def chunk_grid(self) -> list[tuple[int, int]]:
        """``(row, col)`` of every chunk of the array's plane."""
        ch, cw = self.chunk[-2:]
        rows, cols = -(-self.shape[-2] // ch), -(-self.shape[-1] // cw)
        return [(bi, bj) for bi in range(rows) for bj in range(cols)]

    def key(self, bi: int, bj: int) -> str:
        """The chunk's key under its array, e.g. ``c/0/1/2`` (all bands of a tile: band 0)."""
        return "/".join(["c", *(["0"] if len(self.shape) > 2 else []), str(bi), str(bj)])

    def read(self, folder: str, rows: slice, cols: slice) -> np.ndarray:
        """The window of the array whose chunk files are under ``folder`` (its zarr.json's)."""
        r0, r1, _ = rows.indices(self.shape[-2])
        c0, c1, _ = cols.indices(self.shape[-1])
        ch, cw = self.chunk[-2:]
        bands = self.shape[:-2]  # (C,) or ()
        out = np.empty((*bands, r1 - r0, c1 - c0), dtype=self.out_dtype)
        for bi in range(r0 // ch, (r1 - 1) // ch + 1):
            y0, y1 = max(r0, bi * ch), min(r1, (bi + 1) * ch)
            for bj in range(c0 // cw, (c1 - 1) // cw + 1):
                x0, x1 = max(c0, bj * cw), min(c1, (bj + 1) * cw)
                target = out[..., y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
                block = self.chunk_at(folder, bi, bj)
                if block is None:  # never written: all fill value (zarr skips empty chunks)
                    target[...] = self.fill
                else:
                    target[...] = block[
                        ..., y0 - bi * ch : y1 - bi * ch, x0 - bj * cw : x1 - bj * cw
                    ]
        return out

    def chunk_at(self, folder: str, bi: int, bj: int) -> np.ndarray | None:
        """One decoded chunk, a view of this thread's reused buffer; None if never written."""
        key = self.key(bi, bj)
        data = self._read_file(folder + os.sep + key, key)
        if data is None:
            return None
        return np.frombuffer(self._decoded(key, data), dtype=self.dtype).reshape(self.chunk)

    def _read_file(self, path: str, key: str) -> bytes | None:
        """The chunk file's bytes (``os.read``, no file object); None if it does not exist."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DamagedChunk(key, f"unreadable ({exc.strerror or exc})") from exc
        try:
            data = os.read(fd, self._read_size)
            # until end of file: a longer file (damaged) is read whole, and a network file
            # system may return less than asked before the end
            while part := os.read(fd, self._read_size):
                data += part
        except OSError as exc:
            raise DamagedChunk(key, f"unreadable ({exc.strerror or exc})") from exc
        finally:
            os.close(fd)
        return data

    def _decoded(self, key: str, data: bytes):
        if self.checksum:
            import google_crc32c

            if len(data) < 4:
                raise DamagedChunk(key, f"{len(data)} bytes, too short for its checksum")
            stored = int.from_bytes(data[-4:], "little")
            data = np.frombuffer(data, dtype=np.uint8)[:-4]
            if google_crc32c.value(data) != stored:
                raise DamagedChunk(key, "checksum mismatch (crc32c)")
        if self._decompress is None:
            if len(data) != self.chunk_bytes:
                raise DamagedChunk(key, f"{len(data)} bytes, expected {self.chunk_bytes}")
            return data
        if self.blosc:
            self._check_blosc_frame(key, data)
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = np.empty(self.chunk_bytes, dtype=np.uint8)
        try:
            decoded = self._decompress(data, buffer)
        except Exception as exc:  # numcodecs raises RuntimeError/ValueError for bad frames
            raise DamagedChunk(key, f"cannot be decoded ({exc})") from exc
        if len(memoryview(decoded).cast("B")) != self.chunk_bytes:
            raise DamagedChunk(key, f"decodes to the wrong size, expected {self.chunk_bytes}")
        return decoded

    def _check_blosc_frame(self, key: str, data) -> None:
        """The Blosc header's sizes against the file's and the chunk's (the 16-byte header:
        version, format, flags, type size, then little-endian uint32 nbytes, blocksize and
        cbytes)."""
        if len(data) < _BLOSC_HEADER:
            raise DamagedChunk(key, f"{len(data)} bytes, shorter than a Blosc header")
        nbytes, _, cbytes = struct.unpack_from("<3I", data, 4)
        if cbytes != len(data):
            raise DamagedChunk(key, f"Blosc frame of {cbytes} bytes in a file of {len(data)}")
        if nbytes != self.chunk_bytes:
            raise DamagedChunk(key, f"Blosc frame of {nbytes} bytes, expected {self.chunk_bytes}")


class WindowReader:
    """``read(tile, rows, cols)`` of one modality: ``(C, h, w)`` or ``(h, w)`` of one tile.

    On a local store of this package's layout it decodes chunk files directly (the layout
    is checked on the first tile read and shared by every tile's array, as the writer
    makes them); elsewhere it reads through zarr. Each thread decodes into a buffer of its
    own, so one reader serves several threads; datasets open the store anew in each worker
    process.
    """

    def __init__(self, store: GeoStore, name: str):
        self.store, self.name = store, name
        self._decoder: _ChunkDecoder | None = None
        self._direct: bool | None = None  # decided on the first read
        self._chunk_folders: dict[int, str] = {}  # tile -> its array's chunk folder (direct path)
        self._arrays: dict[int, Any] = {}  # tile -> zarr array (zarr path)

    def forget(self, tile: int) -> None:
        self._chunk_folders.pop(tile, None)
        self._arrays.pop(tile, None)

    def decides_direct(self, tile: int) -> bool:
        """Whether reads go straight to the chunk files (decided on the first call, from the
        array's metadata)."""
        if self._direct is None:
            array = self._array(int(tile))
            reason = _direct_layout(array)
            self._direct = reason is None
            if self._direct:
                self._decoder = _ChunkDecoder(array)
            else:
                log.debug("%s of %s: reading through zarr (%s)", self.name, self.store, reason)
        return bool(self._direct)

    def read(self, tile: int, rows: slice, cols: slice) -> np.ndarray:
        tile = int(tile)
        if not self.decides_direct(tile):
            with self._damage_named(tile, f"window rows {_span(rows)}, cols {_span(cols)}"):
                return self._array(tile)[..., rows, cols]
        folder = self._folder(tile)
        try:
            return self._decoder.read(folder, rows, cols)
        except DamagedChunk as exc:
            raise self.damaged(tile, exc.key, exc.reason) from exc

    def damaged(self, tile: int, key: str, reason: str) -> StoreError:
        """The error of a damaged chunk: store, array, tile and chunk (``key``, or the window
        read when zarr did not say which chunk) named."""
        tile_id = self.store.tile_ids[tile]
        where = f"/{key}" if key.startswith("c/") else f" ({key})"
        return StoreError(
            f"{self.store.path}: damaged chunk {tile_group_path(tile_id)}/{self.name}{where} "
            f"(array {self.name}, tile {tile_id}): {reason}; `geosynth verify --repair` marks "
            "the tile for rewriting"
        )

    def damaged_chunks(self, tile: int) -> list[tuple[str, str]]:
        """``(chunk key, reason)`` of every chunk of a tile's array that fails to decode."""
        tile = int(tile)
        self.decides_direct(tile)
        if self._direct:
            folder = self._folder(tile)
            found = []
            for bi, bj in self._decoder.chunk_grid():
                try:
                    self._decoder.chunk_at(folder, bi, bj)
                except DamagedChunk as exc:
                    found.append((exc.key, exc.reason))
            return found
        array = self._array(tile)
        ch, cw = array.chunks[-2:]
        found = []
        for bi in range(-(-array.shape[-2] // ch)):
            for bj in range(-(-array.shape[-1] // cw)):
                key = "/".join(["c", *(["0"] * (array.ndim - 2)), str(bi), str(bj)])
                try:
                    array[..., bi * ch : (bi + 1) * ch, bj * cw : (bj + 1) * cw]
                except (ValueError, RuntimeError, TypeError) as exc:
                    found.append((key, f"cannot be decoded ({exc})"))
        return found

    def _folder(self, tile: int) -> str:
        folder = self._chunk_folders.get(tile)
        if folder is None:
            folder = os.path.join(
                str(self.store.location.local),
                tile_group_path(self.store.tile_ids[tile]),
                self.name,
            )
            if not os.path.isfile(os.path.join(folder, "zarr.json")):
                self._array(tile)  # raises, naming the tile
            self._chunk_folders[tile] = folder
        return folder

    @contextlib.contextmanager
    def _damage_named(self, tile: int, where: str):
        """Decoding errors of reads through zarr (checksum mismatches, bad frames) as a
        :class:`StoreError` naming the store, array, tile and window."""
        try:
            yield
        except (ValueError, RuntimeError, TypeError) as exc:
            raise self.damaged(tile, where, str(exc)) from exc

    def _array(self, tile: int):
        """The tile's zarr array (through zarr; its metadata must be readable)."""
        if tile not in self._arrays:
            self._arrays[tile] = self.store.tile_array(self.name, tile)
        return self._arrays[tile]


def _span(s: slice) -> str:
    return f"{s.start or 0}:{'' if s.stop is None else s.stop}"
