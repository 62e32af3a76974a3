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
* :func:`download_region` fetches a catalog region's files: per tile from the folder
  listings (``index.json``, the folder's XML, or an HTML page), the newest flight or the
  ``vintage`` asked for; every requested tile without its orthophoto or point cloud is named
  and fails the download unless ``allow_missing``; the land cover's needed layers only,
  by range requests into the state-wide zip (:mod:`~geosynth.ingest.remote_zip`).

A server that answers 429 or 503 with ``Retry-After`` is waited for (at most
:data:`MAX_RETRY_AFTER` seconds a time, said in the log and on the progress line); one that
drops the connection mid-file is resumed by ``Range``; one that ignores ``Range`` restarts
the file.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import re
import socket
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from geosynth.catalog import Catalog, load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.ingest.mirror import mirrored
from geosynth.io import atomic_path, removing_new_empty_folders, write_text
from geosynth.sources.nrw import ListedFile, listing_tiles, parse_listing, region_tiles

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_MAX_UNPACKED = 200 * 2**30  # 200 GiB: larger than any NRW package
USER_AGENT = "geosynth (https://github.com/geosynth)"
MAX_RETRY_AFTER = 300.0  # seconds: a server asking to wait longer fails the download
BUSY = (429, 503)  # Too Many Requests, Service Unavailable: wait as Retry-After says


def catalog_hosts(catalog: Catalog) -> set[str]:
    """Hosts that downloads may come from: those of every URL of the catalog (sources, their
    layouts' listings, packages and metadata, state extracts, published datasets) and the
    catalog's ``redirect_hosts`` (where those hosts send a download on)."""
    urls = []
    for source in catalog.sources.values():
        urls += [source.url, source.extract]
        for layout in source.layouts.values():
            urls += [layout.listing, layout.url, layout.metadata]
    urls += [p.url for p in catalog.published.values()]
    hosts = {urlsplit(u.replace("{ags}", "0").replace("{package}", "x")).netloc for u in urls if u}
    return hosts | set(catalog.redirect_hosts)


class RefusedHost(DataError):
    """A redirect to a host the catalog does not name (never retried)."""


class _AllowedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a catalog host: every hop is checked, not only the first."""

    def __init__(self, allowed: set[str]):
        super().__init__()
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        host = urlsplit(newurl).netloc
        if host not in self.allowed:
            raise RefusedHost(
                f"refusing the redirect of {req.full_url} to {newurl}: {host!r} is not a host "
                "of the data catalog"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, allowed: set[str], timeout: float, headers: dict | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.build_opener(_AllowedRedirects(allowed)).open(request, timeout=timeout)


class IntegrityError(DataError):
    """A complete download whose size or checksum is wrong (not retried)."""


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    resumed_from: int
    attempts: int
    final_url: str = ""  # after redirects


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
    on_wait: Callable[[str], None] | None = None,
) -> Fetched:
    """Download ``url`` to ``dest`` (resumable, retried, verified, atomic).

    An existing ``dest`` whose size and checksum verify is kept as it is.
    ``progress(done_bytes, total_bytes_or_None)`` is called as data arrives;
    ``on_wait(text)`` when a busy server makes it wait (429/503 with ``Retry-After``).
    """
    dest = Path(dest)
    allowed = set(allowed_hosts)
    host = urlsplit(url).netloc
    if host not in allowed:
        raise UsageError(
            f"refusing to download from {host!r}: not a host of the data catalog ({url})"
        )
    if dest.exists():
        try:
            _verify(dest, size, md5, sha256, url)
            log.info("%s already downloaded", dest.name)
            return Fetched(dest, dest.stat().st_size, 0, 0, url)
        except IntegrityError:
            log.warning("%s exists but does not verify; downloading again", dest)
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    resumed_from = part.stat().st_size if part.exists() else 0
    last_error: Exception | None = None
    for attempt in range(1, retries + 2):
        try:
            total, final = _fetch_once(url, part, timeout, progress, allowed)
            if total is not None and part.stat().st_size != total:
                raise DataError(f"{url}: got {part.stat().st_size} of {total} bytes")
            _verify(part, size, md5, sha256, url)
            os.replace(part, dest)
            return Fetched(dest, dest.stat().st_size, resumed_from, attempt, final)
        except IntegrityError:
            part.unlink(missing_ok=True)  # a complete but wrong file: start over next time
            raise
        except RefusedHost:
            part.unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, DataError) as exc:
            if _permanent(exc):
                raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if unresolved(exc):
                raise unresolved_error(url, exc) from exc
            last_error = exc
        if attempt <= retries:
            _pause(url, last_error, attempt, retries, backoff, on_wait)
    raise DataError(f"{url}: download failed after {retries + 1} attempts: {last_error}")


def _permanent(exc: Exception) -> bool:
    """An HTTP error no retry mends: a 4xx other than 416 (range) and 429 (busy)."""
    return (
        isinstance(exc, urllib.error.HTTPError)
        and 400 <= exc.code < 500
        and exc.code not in (416, 429)
    )


def unresolved(exc: Exception) -> bool:
    """A host name that does not resolve (no network, no DNS, a typo): no retry mends it."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, socket.gaierror)


def unresolved_error(url: str, exc: Exception) -> DataError:
    host = urlsplit(url).hostname
    return DataError(f"{url}: cannot resolve {host} ({getattr(exc, 'reason', exc)}): no network?")


def retry_after(exc: Exception) -> float | None:
    """The seconds a busy server (429, 503) asks to wait in ``Retry-After`` (seconds or an
    HTTP date), else None."""
    if not isinstance(exc, urllib.error.HTTPError) or exc.code not in BUSY:
        return None
    value = (exc.headers or {}).get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _pause(url, error, attempt, retries, backoff, on_wait=None) -> None:
    """Sleep before retry ``attempt``: as long as a busy server asks (bounded), else
    exponentially longer."""
    wait = retry_after(error)
    if wait is not None:
        if wait > MAX_RETRY_AFTER:
            raise DataError(
                f"{url}: the server is busy (HTTP {error.code}) and asks to wait {wait:.0f} s, "
                f"more than {MAX_RETRY_AFTER:.0f} s; try again later"
            )
        text = f"server busy (HTTP {error.code}): waiting {wait:.0f} s as it asks"
        log.warning("%s: %s (retry %d/%d)", url, text, attempt, retries)
        if on_wait:
            on_wait(text)
        time.sleep(wait)
        return
    delay = min(backoff * 2 ** (attempt - 1), 60.0)
    log.warning("%s: %s; retry %d/%d in %.1f s", url, error, attempt, retries, delay)
    time.sleep(delay)


def _fetch_once(url: str, part: Path, timeout: float, progress, allowed: set[str]):
    """Append the rest of ``url`` to ``part``; returns ``(full size when the server says it,
    the final URL after redirects)``."""
    have = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, allowed, timeout, {"Range": f"bytes={have}-"} if have else None)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # already complete
            return have, url
        raise
    final = response.geturl()
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
    return total, final


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
    if not name.strip() or not path.parts or path.parts == (".",):
        raise DataError(f"{archive}: a member has an empty name ({name!r}); refusing to extract")
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


@dataclass(frozen=True)
class Download:
    """One file to fetch: its source, URL, where it goes under the destination, its size
    when the listing or the catalog says it, and the tile it belongs to."""

    source: str
    url: str
    path: str  # relative to the destination folder
    size: int | None = None
    tile: str | None = None
    md5: str | None = None


def download_many(
    downloads: Sequence[Download],
    dest: str | os.PathLike,
    *,
    allowed_hosts: Iterable[str],
    jobs: int = 4,
    retries: int = 5,
    backoff: float = 1.0,
    progress: Callable[[int, int | None], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> list[dict]:
    """Fetch many files at once (``jobs`` threads), each resumed, retried and verified;
    ``progress(bytes_done, bytes_total)`` over all of them (the total grows as servers tell
    the sizes). Returns one record per file, in the given order, and writes them to
    ``dest/manifest.json`` (what came from where, after redirects)."""
    from concurrent.futures import ThreadPoolExecutor

    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    dest = Path(dest)
    allowed = set(allowed_hosts)
    for item in downloads:  # refuse the whole plan before a byte is fetched
        host = urlsplit(item.url).netloc
        if host not in allowed:
            raise UsageError(
                f"refusing to download from {host!r}: not a host of the data catalog ({item.url})"
            )
    lock = threading.Lock()
    done: dict[int, int] = {}
    totals: dict[int, int | None] = {i: d.size for i, d in enumerate(downloads)}

    def report() -> None:
        if progress:
            known = [t for t in totals.values() if t is not None]
            total = sum(known) if len(known) == len(totals) else None
            progress(sum(done.values()), total)

    def one(i: int, item: Download) -> dict:
        def on_bytes(got: int, total: int | None) -> None:
            with lock:
                done[i] = got
                if total is not None:
                    totals[i] = total
                report()

        got = fetch(item.url, dest / item.path, allowed_hosts=allowed, size=item.size,
                    md5=item.md5, retries=retries, backoff=backoff,
                    progress=on_bytes, on_wait=on_wait)  # fmt: skip
        with lock:
            done[i], totals[i] = got.size, got.size
            report()
        return {
            "source": item.source, "url": item.url, "final_url": got.final_url or item.url,
            "path": item.path, "bytes": got.size, "tile": item.tile,
        }  # fmt: skip

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        records = list(pool.map(one, range(len(downloads)), downloads))
    write_manifest(dest, records)
    return records


MANIFEST = "manifest.json"


def write_manifest(dest: Path, records: Sequence[dict], plan: dict | None = None) -> Path:
    """``dest/manifest.json``: the records of every download into ``dest``, merged by path,
    and the last region plan's summary (its tiles, how they were chosen, the tiles a source
    had no file for)."""
    import json

    path = Path(dest) / MANIFEST
    known, previous = {}, {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            known = {r["path"]: r for r in previous["files"]}
        except (ValueError, KeyError, TypeError):
            log.warning("%s is not readable; writing a new one", path)
    known.update({r["path"]: r for r in records})
    data = {"files": [known[k] for k in sorted(known)]}
    if plan is not None or previous.get("plan") is not None:
        data["plan"] = plan if plan is not None else previous["plan"]
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_text_url(
    url: str,
    *,
    allowed_hosts: Iterable[str],
    timeout: float = 60.0,
    retries: int = 5,
    backoff: float = 1.0,
    on_wait: Callable[[str], None] | None = None,
) -> str:
    """A small text document (a folder listing) from a catalog host, retried as downloads
    are; HTTP 404 raises :class:`NotFound`."""
    allowed = set(allowed_hosts)
    host = urlsplit(url).netloc
    if host not in allowed:
        raise UsageError(f"refusing to read from {host!r}: not a host of the data catalog ({url})")
    last_error: Exception | None = None
    for attempt in range(1, retries + 2):
        try:
            with _open(url, allowed, timeout) as response:
                return response.read().decode("utf-8", errors="replace")
        except RefusedHost:
            raise
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"{url}: HTTP 404 Not Found") from exc
            if _permanent(exc):
                raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            last_error = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if unresolved(exc):
                raise unresolved_error(url, exc) from exc
            last_error = exc
        if attempt <= retries:
            _pause(url, last_error, attempt, retries, backoff, on_wait)
    raise DataError(f"{url}: cannot read the listing after {retries + 1} attempts: {last_error}")


class NotFound(DataError):
    """HTTP 404."""


def _cache_name(url: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")


def folder_listing(
    folder: str,
    dest: Path,
    *,
    listing_format: str = "auto",
    subfolders: Sequence[str] = (),
    allowed_hosts: Iterable[str],
    refresh: bool = False,
    retries: int = 5,
    on_wait: Callable[[str], None] | None = None,
) -> list[ListedFile]:
    """The files a provider's folder lists, and those of the ``subfolders`` it names
    (historic vintages keep their tiles in ``epsg_25832/``). Each listing is fetched once
    and cached under ``dest/.listings/`` (``refresh`` fetches it again).

    ``auto`` (NRW today): ``<folder>index.json``, else the folder's own answer (its
    ``index.xml``, or another server's HTML page); ``json``, ``xml``: that index file;
    ``html``, ``index``: the folder URL.
    """
    folder = folder if folder.endswith("/") else folder + "/"
    cache = dest / ".listings" / f"{_cache_name(folder)}.listing"
    if refresh or not cache.is_file():
        read = functools.partial(
            read_text_url, allowed_hosts=allowed_hosts, retries=retries, on_wait=on_wait
        )
        if listing_format == "auto":
            try:
                text = read(folder + "index.json")
            except NotFound:
                text = read(folder)
        elif listing_format in ("json", "xml"):
            text = read(f"{folder}index.{listing_format}")
        else:
            text = read(folder)
        write_text(cache, text)
    listing = parse_listing(cache.read_text(encoding="utf-8"), folder, listing_format)
    files = list(listing.files)
    wanted = {s.strip("/") for s in subfolders}
    for sub in listing.folders:
        if sub.rstrip("/").rsplit("/", 1)[-1] in wanted:
            files += folder_listing(
                sub, dest, listing_format=listing_format, subfolders=(), refresh=refresh,
                allowed_hosts=allowed_hosts, retries=retries, on_wait=on_wait,
            )  # fmt: skip
    return files


def open_range(url: str, start: int, end: int, *, allowed_hosts: Iterable[str],
               timeout: float = 60.0) -> tuple[int, dict, bytes]:  # fmt: skip
    """``(status, headers, body)`` of a ``Range: bytes=start-end`` request to ``url`` (every
    redirect on a catalog host); a busy server is waited for as :func:`fetch` does."""
    allowed = set(allowed_hosts)
    for attempt in range(1, 7):
        try:
            with _open(url, allowed, timeout, {"Range": f"bytes={start}-{end}"}) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            if retry_after(exc) is None or attempt == 6:
                raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            _pause(url, exc, attempt, 5, 1.0)
    raise AssertionError("unreachable")


def fetch_layers(
    url: str,
    dest: Path,
    layers: Sequence[str],
    *,
    allowed_hosts: Iterable[str],
    retries: int = 5,
    progress: Callable[[int, int | None], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> dict:
    """The members of ``layers`` of the zip at ``url``, read by range requests into
    ``dest/<zip name without .zip>/`` (:mod:`~geosynth.ingest.remote_zip`). A server that
    ignores ranges gets the whole archive downloaded once, with a warning, and the layers
    extracted from it. Returns the extraction's record and how the members came."""
    from geosynth.ingest.remote_zip import RangeReader, RangesIgnored, extract_members

    hosts = set(allowed_hosts)
    name = _file_name(url)
    folder = dest / Path(name).with_suffix("").name
    done = _layers_on_disk(folder, url, layers)
    if done is not None:
        return done
    reader = RangeReader(url, functools.partial(open_range, allowed_hosts=hosts))
    try:
        result = extract_members(reader, url, layers, folder, progress)
        result["how"] = f"range requests: {reader.requests} requests, {reader.bytes_read} bytes"
        return _record_layers(folder, url, layers, result)
    except RangesIgnored:
        log.warning(
            "%s: the server ignores range requests; downloading the whole archive to take "
            "%d layer(s) from it", url, len(layers),
        )  # fmt: skip
        archive = dest / name
        fetch(url, archive, allowed_hosts=hosts, retries=retries, progress=progress,
              on_wait=on_wait)  # fmt: skip
        result = extract_members(archive, url, layers, folder, progress)
        result["how"] = "whole archive (the server ignores range requests)"
        return _record_layers(folder, url, layers, result)


LAYERS_RECORD = ".layers.json"  # beside the fetched members: what came from where


def _record_layers(folder: Path, url: str, layers, result: dict) -> dict:
    """Write ``folder/.layers.json``, so a rerun finds the layers complete without asking the
    server again."""
    import json

    record = {"url": url, "layers": list(layers), "found": result["layers"],
              "absent": result["absent"], "how": result["how"],
              "files": [{"name": f["path"].name, "bytes": f["bytes"]} for f in result["files"]]}  # fmt: skip
    write_text(folder / LAYERS_RECORD, json.dumps(record, indent=2) + "\n")
    return result


def _layers_on_disk(folder: Path, url: str, layers) -> dict | None:
    """The record of an earlier fetch of the same layers from the same URL whose files are all
    there with their sizes, else None."""
    import json

    try:
        record = json.loads((folder / LAYERS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("url") != url or record.get("layers") != list(layers):
        return None
    files = [{"path": folder / f["name"], "bytes": f["bytes"]} for f in record["files"]]
    if not all(f["path"].is_file() and f["path"].stat().st_size == f["bytes"] for f in files):
        return None
    log.info("%s: the land-cover layers are here already", folder)
    return {"files": files, "layers": record["found"], "absent": record["absent"],
            "how": "already here"}  # fmt: skip


def _check_region(region_name: str, catalog: Catalog, mirrored: bool = False):
    region = catalog.region(region_name)
    if region.generated and not mirrored:
        raise UsageError(
            f"region {region.name!r} is generated locally ({region.prepared_by}); nothing to "
            f"download, unless from a mirror of the server: --mirror FOLDER (what "
            f"{region.prepared_by} writes)"
        )
    return region


def region_packages(region_name: str, catalog: Catalog | None = None) -> list[tuple[str, str]]:
    """``(source, url)`` of the packages of a region in the ``packages`` layout (dop, lidar,
    landcover), as the paper's authors downloaded them."""
    catalog = catalog or load_catalog()
    region = _check_region(region_name, catalog)
    packages = []
    for name in ("dop", "lidar", "landcover"):
        url = region.source_url(catalog.sources[name])
        if url:
            packages.append((name, url))
    return packages


def _file_name(url: str) -> str:
    return unquote(Path(urlsplit(url).path).name)


def osm_extract(catalog: Catalog, *, allowed_hosts: Iterable[str]) -> Download:
    """The catalog's state-wide OSM extract (Geofabrik's ``.osm.pbf``) with the md5 that
    Geofabrik publishes beside it (``<file>.md5``, ``<md5>  <name>``)."""
    url = catalog.sources["osm"].extract
    if not url:
        raise UsageError("the catalog names no OSM extract (sources.osm.extract)")
    text = read_text_url(url + ".md5", allowed_hosts=allowed_hosts)
    md5 = text.split()[0].lower() if text.split() else ""
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise DataError(f"{url}.md5: not an md5 checksum: {text[:80]!r}")
    return Download("osm", url, f"osm/{_file_name(url)}", md5=md5)


@dataclass
class RegionPlan:
    """What to download for a region: the files, how the tiles were chosen, the tiles a
    source has no file for, and the land-cover package whose layers are read by range."""

    downloads: list[Download]
    layout: str
    tiles: list[str] | None = None
    chosen_by: str = ""
    missing: dict[str, list[str]] = field(default_factory=dict)
    vintage: int | None = None
    landcover: str | None = None  # the package URL, its layers fetched by range requests
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "layout": self.layout, "tiles": self.tiles, "chosen_by": self.chosen_by,
            "missing": self.missing, "vintage": self.vintage, "notes": self.notes,
        }  # fmt: skip


def _tile_files(source, lay, vintage, dest, hosts, refresh, retries, on_wait) -> dict:
    """Tile -> listed file of one tiled source: the current folder's newest, or of
    ``vintage`` (from the current folder where it lists that year, else the historic one)."""

    def listed(folder):
        return folder_listing(
            folder, dest, listing_format=lay.listing_format or "auto", subfolders=lay.subfolders,
            allowed_hosts=hosts, refresh=refresh, retries=retries, on_wait=on_wait,
        )  # fmt: skip

    current = listed(lay.listing)
    if vintage is None or not lay.history:  # only sources with vintages have a year to pick
        return listing_tiles(current, lay)
    found = listing_tiles(current, lay, year=vintage)
    if lay.history:
        folder = lay.history.format(year=vintage)
        try:
            found = {**listing_tiles(listed(folder), lay, year=vintage), **found}
        except NotFound:
            if not found:
                raise DataError(
                    f"{source}: no vintage {vintage} on the server: neither the current folder "
                    f"lists it nor is there {folder}"
                ) from None
            log.info("%s: no historic folder %s; the current folder's %d tile(s) of %d",
                     source, folder, len(found), vintage)  # fmt: skip
    return found


def plan_region(
    region_name: str,
    dest: str | os.PathLike,
    *,
    catalog: Catalog | None = None,
    layout: str | None = None,
    tiles: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    tiles_from: str | os.PathLike | None = None,
    boundary: str | os.PathLike | None = None,
    vintage: int | None = None,
    refresh: bool = False,
    retries: int = 5,
    with_osm: bool = False,
    on_wait: Callable[[str], None] | None = None,
    mirrored: bool = False,
) -> RegionPlan:
    """What to download for a region, and how its tiles were chosen.

    ``packages``: the municipality archives of dop and lidar (and the state-wide land
    cover). ``tiles`` (the default): the region's tiles (:func:`geosynth.sources.nrw.region_tiles`;
    without an explicit choice the municipality boundary is downloaded first), each tile's
    orthophoto and lidar file as the cached folder listings name them (the newest flight,
    or ``vintage``), the orthophoto metadata (flight dates) and the land cover's layers.
    ``with_osm``: also the state's OSM extract (:func:`osm_extract`).
    """
    catalog = catalog or load_catalog()
    region = _check_region(region_name, catalog, mirrored)
    hosts = catalog_hosts(catalog)
    dest = Path(dest)
    layout = layout or catalog.sources["dop"].default_layout
    land = catalog.sources["landcover"]
    extras = []
    if with_osm:
        extras.append(osm_extract(catalog, allowed_hosts=hosts))
    if layout == "packages":
        if vintage is not None:
            raise UsageError("--vintage picks a year of the tiles layout; packages have one")
        items = [
            Download(source, url, f"{source}/{_file_name(url)}")
            for source, url in region_packages(region.name, catalog)
            if not (source == "landcover" and land.layers)
        ]
        plan = RegionPlan(items + extras, "packages", chosen_by="packages")
        plan.landcover = land.url if land.layers else None
        return plan
    official = None
    if not (tiles or bbox or tiles_from or boundary) and not region.tiles:
        spec = catalog.sources["boundary"]
        item = Download("boundary", spec.url, f"boundary/{_file_name(spec.url)}")
        download_many([item], dest, allowed_hosts=hosts, jobs=1, retries=retries)
        official = dest / item.path
    chosen, how = region_tiles(
        region, catalog, tiles=tiles, bbox=bbox, tiles_from=tiles_from, boundary=boundary,
        official_boundary=official,
    )  # fmt: skip
    plan = RegionPlan([], "tiles", chosen, how, vintage=vintage)
    for source in ("dop", "lidar"):
        lay = catalog.sources[source].layout(layout)
        if vintage is not None and not lay.history:
            plan.notes.append(f"{source}: its files carry no year; --vintage does not apply")
        listed = _tile_files(source, lay, vintage, dest, hosts, refresh, retries, on_wait)
        for tile in chosen:
            if tile in listed:
                f = listed[tile]
                plan.downloads.append(Download(source, f.url, f"{source}/{f.name}", f.size, tile))
            else:
                plan.missing.setdefault(source, []).append(tile)
        if lay.metadata and vintage is None:
            extras.append(Download(source, lay.metadata, f"{source}/{_file_name(lay.metadata)}"))
    if land.url and land.layers:
        plan.landcover = land.url
    elif land.url:
        extras.append(Download("landcover", land.url, f"landcover/{_file_name(land.url)}"))
    plan.downloads += extras
    return plan


def missing_message(missing: dict[str, list[str]], n_tiles: int) -> str:
    """One line per source naming the requested tiles it has no file for."""
    what = {"dop": "orthophoto", "lidar": "point cloud"}
    return "; ".join(
        f"{len(tiles)} of {n_tiles} tile(s) have no {what.get(source, source)} on the server: "
        f"{', '.join(tiles[:10])}{' ...' if len(tiles) > 10 else ''}"
        for source, tiles in missing.items()
    )


def download_region(
    region_name: str,
    dest: str | os.PathLike,
    *,
    catalog: Catalog | None = None,
    layout: str | None = None,
    tiles: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    tiles_from: str | os.PathLike | None = None,
    boundary: str | os.PathLike | None = None,
    vintage: int | None = None,
    allow_missing: bool = False,
    jobs: int = 4,
    extract: bool = True,
    refresh: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    progress: Callable[[int, int | None], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    with_osm: bool = False,
    mirror: str | os.PathLike | None = None,
) -> tuple[list[dict], dict]:
    """Fetch a region's files into ``dest/<source>/`` (:func:`plan_region`), ``jobs`` at a
    time, and by default extract the archives beside themselves; a rerun skips what is
    complete. Returns the manifest records and the plan's summary.

    A requested tile without its orthophoto or point cloud on the server fails the download
    before a byte is fetched (a :class:`DataError` naming the tiles), unless
    ``allow_missing``: then the gaps are recorded in ``dest/manifest.json``, which
    ``geosynth build-geonrw`` reports. ``mirror``: read the provider's server from a mirror
    (:func:`geosynth.ingest.mirror.mirrored`: a base URL, or a folder served on loopback).
    A download that fails removes the folders it made and left empty.
    """
    with mirrored(catalog or load_catalog(), mirror) as catalog, removing_new_empty_folders(dest):
        return _download_region(
            region_name, Path(dest), catalog, layout=layout, tiles=tiles, bbox=bbox,
            tiles_from=tiles_from, boundary=boundary, vintage=vintage,
            allow_missing=allow_missing, jobs=jobs, extract=extract, refresh=refresh,
            retries=retries, backoff=backoff, progress=progress, on_wait=on_wait,
            with_osm=with_osm, mirrored=mirror is not None,
        )  # fmt: skip


def _download_region(region_name, dest, catalog, *, allow_missing, jobs, extract, retries,
                     backoff, progress, on_wait, **plan_options):  # fmt: skip
    hosts = catalog_hosts(catalog)
    plan = plan_region(
        region_name, dest, catalog=catalog, retries=retries, on_wait=on_wait, **plan_options
    )
    if plan.missing and not allow_missing:
        raise DataError(
            f"{missing_message(plan.missing, len(plan.tiles or []))} (--allow-missing downloads "
            "the others and records the gaps)"
        )
    records = download_many(
        plan.downloads, dest, allowed_hosts=hosts, jobs=jobs, retries=retries,
        backoff=backoff, progress=progress, on_wait=on_wait,
    )  # fmt: skip
    if plan.landcover:
        layers = catalog.sources["landcover"].layers
        got = fetch_layers(plan.landcover, dest / "landcover", layers, allowed_hosts=hosts,
                           retries=retries, on_wait=on_wait)  # fmt: skip
        records += [
            {"source": "landcover", "url": plan.landcover, "final_url": plan.landcover,
             "path": f["path"].relative_to(dest).as_posix(), "bytes": f["bytes"], "tile": None,
             "how": got["how"]}
            for f in got["files"]
        ]  # fmt: skip
        if got["absent"]:
            plan.notes.append(
                f"landcover: layer(s) {', '.join(got['absent'])} not in {plan.landcover}"
            )
        write_manifest(dest, records)
    if extract:
        for record in records:
            archive = dest / record["path"]
            if archive.suffix.lower() == ".zip" and record["source"] in (
                "dop",
                "lidar",
                "landcover",
            ):
                folder = archive.with_suffix("")
                if not folder.exists():
                    safe_extract(archive, folder)
                record["extracted"] = str(folder)
    summary = plan.summary()
    write_manifest(dest, records, summary)
    return records, summary
