"""Small I/O helpers: the cache folder, atomic output files and the one GeoTIFF writer.

Every file the package writes goes through :func:`atomic_path` (or the
helpers built on it): the content is written under a temporary name beside
the target and renamed into place only when complete, so nothing
half-written is ever left at the target.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from geosynth.errors import DataError, OutputError, write_failure
from geosynth.grid import RasterGrid

log = logging.getLogger(__name__)

#: Tiling of every GeoTIFF the package writes (and of COG overviews).
BLOCK = 256


def cache_dir() -> Path:
    """``$GEOSYNTH_CACHE`` or ``~/.cache/geosynth``: the demo world, Overpass answers, downloads."""
    return Path(os.environ.get("GEOSYNTH_CACHE") or Path.home() / ".cache" / "geosynth")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, tag: str = "tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Works for files and folders. Nothing half-written is ever left at
    ``path``: on an exception the temporary file (or folder) is removed.
    ``tag`` names the temporary (:func:`temporary_name`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, tag)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


@contextlib.contextmanager
def removing_new_empty_folders(root: str | os.PathLike) -> Iterator[Path]:
    """On an exception inside the block, remove the folders under ``root`` (``root`` too)
    that the block created and left empty; folders with files (a partial download that a
    rerun resumes) stay."""
    root = Path(root)
    watched = root  # the highest folder that does not exist yet: mkdir(parents=True) makes it
    while not watched.exists() and not watched.parent.exists() and watched.parent != watched:
        watched = watched.parent
    before = {watched, *watched.rglob("*")} if watched.is_dir() else set()
    existed = {p for p in before if p.is_dir()}
    try:
        yield root
    except BaseException:
        if watched.is_dir():
            created = [p for p in [*watched.rglob("*"), watched] if p.is_dir() and p not in existed]
            for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):  # not empty: keep it
                    folder.rmdir()
        raise


def temporary_name(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """``.<name>.<tag>-<pid>-<random>`` beside ``path``: a temporary that
    :func:`remove_stale_temporaries` can tell from those of a running process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_temporaries(folder: str | os.PathLike, name: str = "*", tag: str = "tmp") -> None:
    """Remove the temporaries of outputs ``name`` (a glob) in ``folder`` that a killed process
    left (:func:`temporary_name`, with GDAL's side files such as ``<tmp>.ovr.tmp``).

    Only names of that pattern whose process is gone are touched: a running writer's
    temporaries, and every other file, stay.
    """
    import re

    folder = Path(folder)
    if not folder.is_dir():
        return
    own = re.compile(rf"\.{re.escape(tag)}-(\d+)-[0-9a-f]{{8}}(\.|$)")
    for stale in folder.glob(f".{name}.{tag}-*"):
        match = own.search(stale.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        log.warning("%s: removing the temporary of an interrupted run", stale)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no PID this system can have
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def check_writable(folder: str | os.PathLike, what: object = None) -> None:
    """Refuse, before any work, an output ``folder`` (or its nearest existing parent, where
    it is still to be made) that cannot take a new file: read-only, no permission, full.

    Raises :class:`~geosynth.errors.OutputError` naming ``what`` (default: the folder), the
    folder and the cause.
    """

    folder = Path(folder)
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return  # a file in the way: the write itself names it
    probe = target / f".geosynth-write-check-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        exc.filename = str(target)
        cause = write_failure(exc) or exc
        raise OutputError(f"cannot write {what or folder}: {cause}") from exc


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_result(
    path: str | os.PathLike, filename: str, what: str, formats: str | tuple[str, ...]
) -> dict:
    """A JSON result of a geosynth command (``path``: the file, or a folder holding
    ``filename``) whose ``format`` is one of ``formats``; errors name the path and ``what``
    it should have been."""
    import json

    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    path = Path(path)
    path = path / filename if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable {what}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in formats:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{path} is not a geosynth {what} (format {found!r}, expected {formats[-1]})"
        )
    return data


def write_geotiff(
    path: str | os.PathLike,
    array: np.ndarray,
    grid: RasterGrid | None,
    *,
    nodata: float | int | None = None,
    descriptions: tuple[str, ...] = (),
    mask: np.ndarray | None = None,
    colormap: Mapping[int, tuple[int, ...]] | None = None,
    photometric: str | None = None,
    tags: Mapping[str, object] | None = None,
    cog: bool = True,
) -> Path:
    """Write ``array`` ((bands, H, W) or (H, W)) on ``grid`` as a deflated GeoTIFF, atomically.

    A Cloud-Optimised GeoTIFF (GDAL's COG driver: 256 px tiles, overviews) unless ``cog``
    is False (a plain tiled GeoTIFF). ``nodata``: the no-data value (NaN for heights);
    ``mask``: (H, W) valid pixels, written as an internal GDAL mask band (for rasters where
    every value is data, e.g. normalised SAR); ``colormap``: a colour table for band 1
    (class maps). ``grid`` None writes no CRS or transform.
    """
    import rasterio

    data = array[None] if array.ndim == 2 else array
    if data.dtype == bool:
        data = data.astype("uint8")
    if grid is not None and data.shape[1:] != grid.shape:
        raise ValueError(f"array of shape {data.shape[1:]} does not match grid {grid.shape}")
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
    }
    if grid is not None:
        profile.update(crs=grid.crs, transform=grid.transform)
    if photometric:
        profile["photometric"] = photometric

    def fill(dst) -> None:
        dst.write(data)
        for i, desc in enumerate(descriptions, start=1):
            dst.set_band_description(i, desc)
        if colormap is not None:
            dst.write_colormap(1, dict(colormap))
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
        if mask is not None:
            dst.write_mask(np.asarray(mask).astype(np.uint8) * 255)

    with atomic_path(path) as tmp, rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        if not cog:
            with rasterio.open(tmp, "w", **profile) as dst:
                fill(dst)
        else:
            from rasterio.shutil import copy as rio_copy

            # the COG driver copies from a source: write a plain GeoTIFF in memory first
            with rasterio.MemoryFile() as mem:
                with mem.open(**profile) as dst:
                    fill(dst)
                with mem.open() as src:
                    rio_copy(src, tmp, driver="COG", compress="deflate", blocksize=BLOCK)
    return Path(path)
