"""Fast window reads from the image arrays of a local geosynth store.

zarr-python 3 routes every read through its asyncio event loop and thread
pool: for a training crop that touches a few small chunks of three arrays
that costs several milliseconds, more than decoding the chunks. The arrays
of a store written by :func:`geosynth.store.create_store` have a simple,
documented layout (a regular chunk grid of one tile and all bands per chunk,
default ``c/...`` chunk keys, the ``bytes`` codec and optionally Blosc or Zstandard),
so :class:`WindowReader` reads those chunk files and decodes them directly,
synchronously. Anything else (sharding, other codecs or chunkings, remote
stores) is read through zarr; both paths return the same values (tested).

A reader reuses one decode buffer: use one reader per process and thread,
as :class:`~geosynth.ml.data.SynthesisDataset` does.
"""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)


def _direct_layout(array) -> str | None:
    """Why ``array`` cannot be read directly, or None when it can."""
    from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec
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
    if array.ndim not in (3, 4) or chunks[0] != 1 or (array.ndim == 4 and chunks[1] != shape[1]):
        return "chunks are not one tile with all its bands"
    codecs = list(meta.codecs)
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return "first codec is not 'bytes'"
    if any(not isinstance(c, ZstdCodec | BloscCodec) for c in codecs[1:]) or len(codecs) > 2:
        return f"codecs {[type(c).__name__ for c in codecs]}"
    return None


class WindowReader:
    """``read(tile, rows, cols)`` of one array: ``(C, h, w)`` or ``(h, w)`` pixels of one tile."""

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)
        reason = _direct_layout(array)
        self.direct = reason is None
        if not self.direct:
            log.debug("%s: reading through zarr (%s)", array.path, reason)
            return
        from numcodecs import Blosc, Zstd
        from zarr.codecs import ZstdCodec

        meta = array.metadata
        self.chunk = tuple(meta.chunk_grid.chunk_shape)
        endian = getattr(meta.codecs[0], "endian", None)
        dtype = np.dtype(array.dtype)
        if dtype.itemsize > 1 and endian is not None:
            dtype = dtype.newbyteorder(
                "<" if str(getattr(endian, "value", endian)) == "little" else ">"
            )
        self.dtype = dtype
        self.fill = np.asarray(meta.fill_value, dtype=array.dtype)
        compressor = meta.codecs[1] if len(meta.codecs) > 1 else None
        # Blosc frames describe themselves; numcodecs decodes them as zarr wrote them
        self.decoder = (
            None
            if compressor is None
            else (Zstd() if isinstance(compressor, ZstdCodec) else Blosc())
        )
        self.root = os.path.join(str(array.store_path.store.root), array.store_path.path, "c")
        self._buffer = np.empty(int(np.prod(self.chunk[1:])) * dtype.itemsize, dtype=np.uint8)

    def read(self, tile: int, rows: slice, cols: slice) -> np.ndarray:
        if not self.direct:
            if len(self.shape) == 4:
                return self.array[tile, :, rows, cols]
            return self.array[tile, rows, cols]
        r0, r1, _ = rows.indices(self.shape[-2])
        c0, c1, _ = cols.indices(self.shape[-1])
        ch, cw = self.chunk[-2:]
        bands = self.shape[1:-2]  # (C,) or ()
        out = np.empty((*bands, r1 - r0, c1 - c0), dtype=self.array.dtype)
        tile_dir = os.path.join(self.root, str(int(tile)), *(["0"] if bands else []))
        for bi in range(r0 // ch, (r1 - 1) // ch + 1):
            y0, y1 = max(r0, bi * ch), min(r1, (bi + 1) * ch)
            for bj in range(c0 // cw, (c1 - 1) // cw + 1):
                x0, x1 = max(c0, bj * cw), min(c1, (bj + 1) * cw)
                target = out[..., y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
                block = self._chunk(os.path.join(tile_dir, str(bi), str(bj)))
                if block is None:  # never written: all fill value (zarr skips empty chunks)
                    target[...] = self.fill
                else:
                    target[...] = block[
                        ..., y0 - bi * ch : y1 - bi * ch, x0 - bj * cw : x1 - bj * cw
                    ]
        return out

    def _chunk(self, path: str) -> np.ndarray | None:
        """One decoded chunk ``(C, ch, cw)`` / ``(ch, cw)``, a view of the reused buffer."""
        try:
            with open(path, "rb", buffering=0) as f:  # one read, no Python-level buffer
                data = f.readall()
        except FileNotFoundError:
            return None
        if self.decoder is not None:
            data = self.decoder.decode(data, out=self._buffer)
        return np.frombuffer(data, dtype=self.dtype).reshape(self.chunk[1:])
