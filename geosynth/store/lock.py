"""One writer per store: the lock file ``<store>.lock`` beside a local store.

Every producer (build, imports, upgrade) holds it from planning to its report
(:func:`locks_store`). It is an ``fcntl`` lock, so a killed holder releases it
with its last file descriptor (no stale locks); the file holds the holder's PID
and host for the message the next writer reads. Taking it is also the check that
the output folder is writable, before any work starts. Remote stores (object
storage has no locks) are not locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from geosynth.errors import OutputError, write_failure
from geosynth.io import check_writable
from geosynth.store.location import locate

LOCK_SUFFIX = ".lock"


@contextlib.contextmanager
def store_lock(path, storage_options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Hold the write lock of the store at ``path`` (a no-op for remote stores).

    Raises :class:`OutputError` when another process holds it (naming its PID) or the
    folder is not writable (naming the folder and the cause).
    """
    location = locate(path, storage_options)
    if not location.is_local:
        yield
        return
    lock = location.local.with_name(location.local.name + LOCK_SUFFIX)
    fd = _acquire(lock, location.local)
    try:
        _check_store_writable(location.local)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def locks_store(param: str):
    """Decorate a producer so that it runs holding the lock of its store argument ``param``
    (and its ``storage_options``, given by name or among its ``**`` keyword arguments)."""

    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            extra = next((bound.arguments[p.name] for p in signature.parameters.values()
                          if p.kind is p.VAR_KEYWORD and p.name in bound.arguments), {})  # fmt: skip
            options = bound.arguments.get("storage_options", extra.get("storage_options"))
            with store_lock(bound.arguments[param], options):
                return func(*args, **kwargs)

        return run

    return decorate


def _acquire(lock: Path, store: Path) -> int:
    folder = lock.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the store {store}: {write_failure(exc) or exc}") from exc
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            cause = write_failure(exc) or exc
            raise OutputError(f"cannot write the store {store}: {cause}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputError(
                f"store {store} is being written by {holder} (lock {lock}); wait for it to "
                "finish, then rerun to resume"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder removed as we opened it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
    except OSError as exc:
        os.close(fd)
        raise OutputError(f"cannot write the store {store}: {write_failure(exc) or exc}") from exc
    return fd


def _check_store_writable(store: Path) -> None:
    """An existing store must take a new file (a read-only store, or a full disk, fails here,
    before any work)."""

    if store.is_dir():
        check_writable(store, f"the store {store}")
