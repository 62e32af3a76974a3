"""Members of a zip on a web server, fetched by HTTP range requests: not the whole archive.

NRW publishes its land cover as one state-wide shapefile package of several GB; a build
needs a handful of its layers. :func:`fetch_zip_members` reads the zip's central directory
from its end (the standard library's :class:`zipfile.ZipFile` over :class:`RangeReader`, a
seekable file whose reads are ``Range`` requests through the download module's host checks),
then streams only the wanted members:

1. every member is verified by zip's own CRC-32 as it is read, and written under a
   temporary name that is renamed into place only when complete;
2. a member already on disk with its size and CRC is kept, so a rerun fetches only what is
   missing (resumable per member);
3. the server must answer a range with ``206 Partial Content``; one that ignores ranges
   (``200`` with the whole body) is detected on the first read and the caller falls back to
   downloading the whole archive, with a warning.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

from geosynth.errors import DataError
from geosynth.io import atomic_path

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # bytes read from a member at a time
READ_AHEAD = 1 << 16  # bytes a range request asks for at least: zipfile reads headers in pieces
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


class RangesIgnored(DataError):
    """The server answered a range request with the whole file."""


class RangeReader(io.RawIOBase):
    """A read-only, seekable view of ``url`` whose reads are HTTP ``Range`` requests.

    ``open_range(url, start, end)`` returns ``(status, headers, body bytes)`` for the bytes
    ``start..end`` inclusive (the download module's opener, which checks every redirect's
    host). The size comes from the first answer's ``Content-Range``.
    """

    def __init__(self, url: str, open_range: Callable[[str, int, int], tuple[int, dict, bytes]]):
        super().__init__()
        self.url = url
        self._open_range = open_range
        self._pos = 0
        self._size: int | None = None
        self._cache = (0, b"")  # (start, bytes) of the last answer, served from memory
        self.requests = 0
        self.bytes_read = 0

    @property
    def size(self) -> int:
        if self._size is None:
            self._fetch(0, 0)
        return self._size

    def _fetch(self, start: int, end: int) -> bytes:
        status, headers, body = self._open_range(self.url, start, end)
        self.requests += 1
        if status != 206:
            raise RangesIgnored(f"{self.url}: the server ignores range requests (HTTP {status})")
        content_range = headers.get("Content-Range", "")
        total = content_range.rsplit("/", 1)[-1]
        if not total.isdigit():
            raise DataError(
                f"{self.url}: a partial answer without the file size ({content_range!r})"
            )
        self._size = int(total)
        self.bytes_read += len(body)
        return body

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = self.size + offset
        else:
            raise ValueError(f"whence {whence}")
        if self._pos < 0:
            raise OSError(f"{self.url}: seek before the start")
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        start, cached = self._cache
        if not (start <= self._pos and end <= start + len(cached)):
            stop = min(self.size, max(end, self._pos + READ_AHEAD))
            body = self._fetch(self._pos, stop - 1)
            if len(body) != stop - self._pos:
                raise DataError(
                    f"{self.url}: asked for {stop - self._pos} bytes at {self._pos}, got "
                    f"{len(body)}"
                )
            self._cache = start, cached = self._pos, body
        data = cached[self._pos - start : end - start]
        self._pos = end
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def wanted_members(names: Iterable[str], layers: Sequence[str]) -> dict[str, list[str]]:
    """Layer -> the members of a shapefile package that make it up (``<layer>.shp``, ``.shx``,
    ``.dbf``, ``.prj``, ``.cpg`` anywhere in the archive, case-insensitive)."""
    by_layer: dict[str, list[str]] = {layer: [] for layer in layers}
    lower = {layer.lower(): layer for layer in layers}
    for name in names:
        path = PurePosixPath(name)
        layer = lower.get(path.stem.lower())
        if layer is not None and path.suffix.lower() in SHAPEFILE_PARTS:
            by_layer[layer].append(name)
    return by_layer


def _crc_ok(path: Path, info: zipfile.ZipInfo) -> bool:
    if not path.is_file() or path.stat().st_size != info.file_size:
        return False
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            crc = zlib.crc32(block, crc)
    return crc == info.CRC


def extract_members(
    archive,
    source: str,
    layers: Sequence[str],
    dest: str | os.PathLike,
    progress: Callable[[int, int | None], None] | None = None,
) -> dict:
    """Write the members of ``layers`` from the zip ``archive`` (a path or a seekable file,
    e.g. a :class:`RangeReader`) into ``dest``, flat; ``source`` names it in errors.

    Returns ``{"files": [{"path", "bytes"}], "layers": found, "absent": layers not in the
    archive}``. None of ``layers`` in the archive is a :class:`DataError` naming
    ``source`` and the layers it expected.
    """
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{source}: not a zip archive ({exc})") from None
    with zf:
        by_layer = wanted_members(zf.namelist(), layers)
        found = [layer for layer, members in by_layer.items() if members]
        if not found:
            raise DataError(
                f"{source}: none of the land-cover layers {', '.join(layers)} is in the archive "
                f"(expected <layer>.shp with .shx and .dbf, e.g. {layers[0]}.shp)"
            )
        infos = [zf.getinfo(n) for layer in found for n in by_layer[layer]]
        total = sum(i.file_size for i in infos)
        done = 0
        files = []
        dest.mkdir(parents=True, exist_ok=True)
        for info in infos:
            target = dest / PurePosixPath(info.filename).name
            if not _crc_ok(target, info):
                with atomic_path(target) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
                    while block := src.read(BLOCK):  # zipfile checks the CRC at the end
                        out.write(block)
                        if progress:
                            progress(done + out.tell(), total)
            done += info.file_size
            if progress:
                progress(done, total)
            files.append({"path": target, "bytes": info.file_size})
    absent = [layer for layer in layers if layer not in found]
    return {"files": files, "layers": found, "absent": absent}
