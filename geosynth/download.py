"""Downloads that resume, retry and verify, and archive extraction that stays in its folder.

* :func:`fetch` downloads one URL to a file: only from hosts the catalog names,
  resumed with HTTP ``Range`` from a ``.part`` file after a dropped connection,
  retried with exponential backoff, verified by size (``Content-Length`` or
  the catalog's) and checksum when known, and renamed into place only when
  complete.
* :func:`safe_extract` unpacks a zip or tar archive and refuses members with
  absolute paths, ``..`` components, links (symbolic or hard) that leave the
  target, and archives whose unpacked size exceeds a cap; it extracts into a
  temporary folder and renames it into place, so a refused archive leaves
  nothing behind.
* :func:`download_region` fetches a catalog region's provider packages.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from geosynth.catalog import Catalog, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.io import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_MAX_UNPACKED = 200 * 2**30  # 200 GiB: larger than any NRW package
USER_AGENT = "geosynth (https://github.com/geosynth)"


def catalog_hosts(catalog: Catalog) -> set[str]:
    """Hosts that downloads may come from: those of the catalog's source and dataset URLs."""
    urls = [s.url for s in catalog.sources.values() if s.url]
    urls += [p.url for p in catalog.published.values()]
    return {urlsplit(u.replace("{ags}", "0").replace("{package}", "x")).netloc for u in urls}


class IntegrityError(DataError):
    """A complete download whose size or checksum is wrong (not retried)."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    resumed_from: int
    attempts: int


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    allowed_hosts: Iterable[str],
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Fetched:
    """Download ``url`` to ``dest`` (resumable, retried, verified, atomic).

    An existing ``dest`` whose size and checksum verify is kept as it is.
    ``progress(done_bytes, total_bytes_or_None)`` is called as data arrives.
    """
    dest = Path(dest)
    host = urlsplit(url).netloc
    if host not in set(allowed_hosts):
        raise UsageError(
            f"refusing to download from {host!r}: not a host of the data catalog ({url})"
        )
    if dest.exists():
        try:
            _verify(dest, size, md5, sha256, url)
            log.info("%s already downloaded", dest.name)
            return Fetched(dest, dest.stat().st_size, 0, 0)
        except IntegrityError:
            log.warning("%s exists but does not verify; downloading again", dest)
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    last_error: Exception | None = None
    for attempt in range(1, retries + 2):
        try:
            total = _fetch_once(url, part, timeout, progress)
            if total is not None and part.stat().st_size != total:
                raise DataError(f"{url}: got {part.stat().st_size} of {total} bytes")
            _verify(part, size, md5, sha256, url)
            os.replace(part, dest)
            return Fetched(dest, dest.stat().st_size, resumed_from, attempt)
        except IntegrityError:
            part.unlink(missing_ok=True)  # a complete but wrong file: start over next time
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, DataError) as exc:
            if (
                isinstance(exc, urllib.error.HTTPError)
                and 400 <= exc.code < 500
                and exc.code != 416
            ):
                raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            last_error = exc
        if attempt <= retries:
            delay = min(backoff * 2 ** (attempt - 1), 60.0)
            log.warning(
                "%s: %s; retry %d/%d in %.1f s", dest.name, last_error, attempt, retries, delay
            )
            time.sleep(delay)
    raise DataError(f"{url}: download failed after {retries + 1} attempts: {last_error}")


def _fetch_once(url: str, part: Path, timeout: float, progress) -> int | None:
    """Append the rest of ``url`` to ``part``; returns the full size when the server says it."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete
            return have
        raise
    with response:
        if have and response.status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # server ignored the range: start over
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            mode = "wb"
        done = have
        with open(part, mode) as out:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")
    return total


def _total_from_content_range(value: str | None) -> int | None:
    # "bytes 100-999/1000"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def _verify(path: Path, size: int | None, md5: str | None, sha256: str | None, url: str) -> None:
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise IntegrityError(f"{url}: expected {size} bytes, got {actual}")
    for name, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            digest = hashlib.new(name)
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(CHUNK), b""):
                    digest.update(block)
            if digest.hexdigest() != expected.lower():
                raise IntegrityError(
                    f"{url}: {name} checksum mismatch (expected {expected}, got {digest.hexdigest()})"
                )


# --------------------------------------------------------------------------- extraction


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in path.parts:
        raise DataError(f"{archive}: member {name!r} leaves the target folder; refusing to extract")
    return path


def _link_stays_inside(member: PurePosixPath, target: str) -> bool:
    resolved = os.path.normpath(os.path.join("/root", str(member.parent), target))
    return not PurePosixPath(target).is_absolute() and resolved.startswith("/root/")


def safe_extract(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_UNPACKED,
) -> list[Path]:
    """Extract a zip or tar archive into ``target`` (created; must not exist yet).

    Every member is checked before anything is written; extraction goes to a
    temporary folder beside ``target`` that is renamed into place at the end.
    Returns the extracted file paths.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise UsageError(f"extraction target {target} already exists")
    with atomic_path(target, tag="extracting") as tmp:
        tmp.mkdir()
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp, max_bytes)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, tmp, max_bytes)
        else:
            raise DataError(f"{archive}: not a zip or tar archive")
    return sorted(p for p in target.rglob("*") if p.is_file())


def _extract_zip(archive: Path, tmp: Path, max_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        declared = 0
        for info in infos:
            _safe_member_path(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DataError(f"{archive}: member {info.filename!r} is a symbolic link; refusing")
            declared += info.file_size
        if declared > max_bytes:
            raise DataError(f"{archive}: unpacks to {declared} bytes, above the cap of {max_bytes}")
        written = 0
        for info in infos:
            dest = tmp / _safe_member_path(info.filename, archive)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                while block := src.read(CHUNK):
                    written += len(block)
                    if written > max_bytes:  # headers can lie: count what really comes out
                        raise DataError(
                            f"{archive}: unpacks to more than the cap of {max_bytes} bytes"
                        )
                    out.write(block)


def _extract_tar(archive: Path, tmp: Path, max_bytes: int) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        total = 0
        for m in members:
            path = _safe_member_path(m.name, archive)
            if m.issym() or m.islnk():
                if not _link_stays_inside(path, m.linkname):
                    raise DataError(
                        f"{archive}: link {m.name!r} -> {m.linkname!r} leaves the target; refusing"
                    )
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: member {m.name!r} is a device or fifo; refusing")
            total += m.size
        if total > max_bytes:
            raise DataError(f"{archive}: unpacks to {total} bytes, above the cap of {max_bytes}")
        tf.extractall(tmp, members=members, filter="data")


# --------------------------------------------------------------------------- regions


def region_packages(region_name: str, catalog: Catalog | None = None) -> list[tuple[str, str]]:
    """``(source, url)`` of the packages to download for a region (dop, lidar, landcover)."""
    catalog = catalog or load_catalog()
    region = catalog.region(region_name)
    if region.generated:
        raise UsageError(
            f"region {region.name!r} is generated offline (geosynth demo-world); nothing to download"
        )
    packages = []
    for name in ("dop", "lidar", "landcover"):
        url = region.source_url(catalog.sources[name])
        if url:
            packages.append((name, url))
    return packages


def download_region(
    region_name: str,
    dest: str | os.PathLike,
    *,
    catalog: Catalog | None = None,
    extract: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    progress_factory: Callable[[str], Callable[[int, int | None], None]] | None = None,
) -> list[dict]:
    """Fetch (and by default extract) a region's packages into ``dest/<source>/``.

    Returns one record per package: url, archive path, extracted folder.
    Completed packages are skipped on a rerun.
    """
    catalog = catalog or load_catalog()
    hosts = catalog_hosts(catalog)
    dest = Path(dest)
    records = []
    for source, url in region_packages(region_name, catalog):
        name = Path(urlsplit(url).path).name
        archive = dest / source / name
        progress = progress_factory(name) if progress_factory else None
        got = fetch(
            url, archive, allowed_hosts=hosts, retries=retries, backoff=backoff, progress=progress
        )
        record = {"source": source, "url": url, "archive": str(got.path), "bytes": got.size}
        if extract:
            folder = archive.with_suffix("")
            if not folder.exists():
                safe_extract(archive, folder)
            record["extracted"] = str(folder)
        records.append(record)
    return records
