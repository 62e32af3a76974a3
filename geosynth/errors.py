"""Domain exceptions.

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
