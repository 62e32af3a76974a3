"""Domain exceptions, and the exit code the command line gives each (usage 2, data 1).

Library code raises these; only the command-line edge (``geosynth.cli``) turns
them into exit codes: :class:`UsageError` exits 2 (like click's own usage
errors), every other :class:`GeosynthError` exits 1.
"""

from __future__ import annotations


class GeosynthError(Exception):
    """Base class of all expected geosynth errors (exit code 1 at the CLI)."""

    exit_code = 1


class UsageError(GeosynthError):
    """The caller asked for something impossible (bad option value, unknown name)."""

    exit_code = 2


class CatalogError(GeosynthError):
    """``data_catalog.yaml`` is malformed; the message names the key path."""


class DataError(GeosynthError):
    """An input file or store is missing, unreadable or inconsistent."""


class StoreError(DataError):
    """A Zarr store does not follow the geosynth store contract."""


class OutputError(DataError):
    """An output cannot be written: read-only folder, disk full, held by another process."""


#: errno -> what a user reads; the causes of failed writes that are not bugs
_WRITE_FAILURES = {
    "ENOSPC": "no space left on the device (disk full)",
    "EDQUOT": "disk quota exceeded",
    "EFBIG": "file too large for the file system or the process's file size limit (disk full)",
    "EROFS": "read-only file system",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
}


def write_failure(exc: BaseException, where: object = None) -> str | None:
    """One line naming the path and the cause of a failed write (disk full, read-only, no
    permission), or None for other errors. ``where`` names the output when the error
    does not (zarr's writes name no file)."""
    import errno

    if not isinstance(exc, OSError) or exc.errno is None:
        return None
    cause = _WRITE_FAILURES.get(errno.errorcode.get(exc.errno, ""))
    if cause is None:
        return None
    path = exc.filename or where or "output"
    return f"{path}: {cause}"
