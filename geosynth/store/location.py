"""Where a store lives: a local path, a ``file://``, ``s3://``, ``gs://`` or ``memory://`` URL, or
an open :class:`zarr.Group`.

Remote stores go through zarr's fsspec store (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``).
Credentials and endpoints come from the usual environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...) or from
``storage_options`` (``--storage-option key=value`` on the command line, e.g.
``endpoint_url=http://127.0.0.1:9000``). Every error of the storage layer (unknown scheme,
missing package, credentials, unreachable endpoint) becomes a :class:`~geosynth.errors.DataError`
that names the URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from geosynth.errors import DataError, UsageError

#: URL schemes a store can live under; anything else is refused naming the URL.
SCHEMES = ("file", "s3", "gs", "gcs", "memory")
#: The fsspec package each remote scheme needs (install hint in errors).
SCHEME_PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}


@dataclass(frozen=True)
class StoreLocation:
    """A store's address: ``url`` as the user gave it (a plain path for local stores), the
    fsspec ``storage_options`` and, for local stores, the folder (``local``)."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    local: Path | None = None

    def __str__(self) -> str:
        return self.url

    @property
    def is_local(self) -> bool:
        return self.local is not None

    def zarr_store(self, read_only: bool = False):
        """The zarr store object for this location."""
        from zarr.storage import FsspecStore, LocalStore

        if self.local is not None:
            return LocalStore(self.local, read_only=read_only)
        with storage_errors(self.url):
            return FsspecStore.from_url(
                self.url, storage_options=dict(self.storage_options) or None, read_only=read_only
            )

    def filesystem(self):
        """``(fsspec filesystem, path inside it)`` of a remote location."""
        import fsspec

        with storage_errors(self.url):
            return fsspec.core.url_to_fs(self.url, **dict(self.storage_options))

    def exists(self) -> bool:
        """Whether anything (a group or a half-created store) is at this location."""
        if self.local is not None:
            return self.local.exists()
        fs, path = self.filesystem()
        with storage_errors(self.url):
            return bool(fs.exists(f"{path.rstrip('/')}/zarr.json"))

    def join(self, path: str) -> StoreLocation:
        """The location of a group inside this store, e.g. ``tiles/356_5645``."""
        if self.local is not None:
            return StoreLocation(str(self.local / path), self.storage_options, self.local / path)
        return StoreLocation(f"{self.url.rstrip('/')}/{path}", self.storage_options, None)

    def sibling(self, suffix: str) -> str:
        """The address of a file beside the store, e.g. ``<store>.report.json``."""
        if self.local is not None:
            return str(self.local.with_name(self.local.name + suffix))
        return self.url.rstrip("/") + suffix

    def remove(self) -> None:
        """Delete the store (used only for a creation that did not finish)."""
        if self.local is not None:
            import shutil

            shutil.rmtree(self.local, ignore_errors=True)
            return
        fs, path = self.filesystem()
        with storage_errors(self.url):
            if fs.exists(path):
                fs.rm(path, recursive=True)


def locate(target, storage_options: Mapping[str, Any] | None = None) -> StoreLocation:
    """The :class:`StoreLocation` of a path, a URL or a :class:`StoreLocation`.

    Precedence: 1. a :class:`StoreLocation` is returned as it is (``storage_options`` are
    merged into it); 2. ``file://`` URLs and strings without a scheme are local paths;
    3. the schemes of :data:`SCHEMES` are remote; 4. any other scheme is refused.
    """
    options = dict(storage_options or {})
    if isinstance(target, StoreLocation):
        merged = {**dict(target.storage_options), **options}
        return StoreLocation(target.url, merged, target.local)
    if isinstance(target, os.PathLike):
        return StoreLocation(os.fspath(target), options, Path(target))
    text = str(target)
    scheme = urlsplit(text).scheme.lower()
    if not scheme or (len(scheme) == 1 and os.name == "nt"):  # C:\... on Windows
        return StoreLocation(text, options, Path(text))
    if scheme not in SCHEMES:
        raise DataError(
            f"{text}: unknown URL scheme {scheme!r}; a store is a local path or a "
            f"{', '.join(s + '://' for s in SCHEMES)} URL"
        )
    if scheme == "file":
        path = Path(urlsplit(text).path)
        return StoreLocation(text, options, path)
    return StoreLocation(text, options, None)


def parse_storage_options(items) -> dict[str, Any]:
    """``["key=value", ...]`` -> options; values read as JSON where they parse (numbers,
    true/false), else as text: ``endpoint_url=http://...``, ``anon=true``."""
    import json

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--storage-option {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn the storage layer's exceptions into a :class:`DataError` naming ``url``."""
    try:
        yield
    except (DataError, UsageError):
        raise
    except ImportError as exc:
        scheme = urlsplit(url).scheme.lower()
        package = SCHEME_PACKAGES.get(scheme, exc.name or "the fsspec backend")
        raise DataError(f"{url}: reading {scheme}:// stores needs the package {package}") from exc
    except PermissionError as exc:
        raise DataError(f"{url}: access denied ({exc})") from exc
    except Exception as exc:  # botocore, aiohttp and fsspec raise many types
        name = type(exc).__name__
        if "Credential" in name or "credential" in str(exc):
            raise DataError(
                f"{url}: no usable credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or give --storage-option"
            ) from exc
        if "Connect" in name or "Endpoint" in name or "Timeout" in name:
            raise DataError(f"{url}: cannot reach the storage endpoint ({name}: {exc})") from exc
        if name in ("ValueError",) and "protocol" in str(exc).lower():
            raise DataError(f"{url}: {exc}") from exc
        raise
