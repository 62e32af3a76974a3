"""A demo world on disk: its parameters, generating it, and checking that it is complete.

The rendering itself is :mod:`geosynth.demo.generate`; this module validates the
parameters, writes the world under a temporary name, reads back its ``world.json`` and
regenerates what is absent or stale (:func:`ensure_world`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from geosynth.catalog import load_catalog
from geosynth.demo.generate import (
    GENERATOR_VERSION,
    MANIFEST,
    file_sha256,
    forget_worlds,
    generate_into,
)
from geosynth.demo.scene import WorldParams
from geosynth.errors import UsageError
from geosynth.io import atomic_path

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def world_params(
    tiles: tuple[int, int] | None = None,
    seed: int = 0,
    origin: tuple[int, int] | None = None,
    dop_resolution: float = 0.5,
    lidar_density: float = 4.0,
    layout: str = "tiles",
):
    """Validated :class:`~geosynth.demo.scene.WorldParams` (a bad value is a UsageError naming it).

    ``tiles`` and ``origin`` default to the extent of the catalog's region ``demo``.
    """

    if tiles is None or origin is None:
        region = load_catalog().region("demo")
        tiles = region.tiles if tiles is None else tiles
        origin = region.origin_km if origin is None else origin
    try:
        tiles = (int(tiles[0]), int(tiles[1]))
        origin = (int(origin[0]), int(origin[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise UsageError(f"tiles and origin take two integers each ({exc})") from exc
    return WorldParams(
        tiles=tiles,
        origin=origin,
        seed=int(seed),
        dop_resolution=float(dop_resolution),
        lidar_density=float(lidar_density),
        layout=layout,
    )


def generate_world(
    out_dir: str | os.PathLike,
    tiles: tuple[int, int] | None = None,
    seed: int = 0,
    origin: tuple[int, int] | None = None,
    dop_resolution: float = 0.5,
    lidar_density: float = 4.0,
    progress: Progress | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    layout: str = "tiles",
) -> dict:
    """Generate the demo world's raw files in ``out_dir``; returns the manifest (also ``world.json``).

    ``tiles`` and ``origin`` default to the catalog's region ``demo``.
    ``out_dir`` must not exist or be empty unless ``overwrite``. Generation
    happens in a hidden sibling folder that replaces ``out_dir`` at the end.
    ``workers`` > 1 renders tiles in that many processes (about 1 GB each at
    the default resolution); the files are the same whatever the number.
    """
    params = world_params(tiles, seed, origin, dop_resolution, lidar_density, layout)
    out = check_out_dir(out_dir, overwrite)
    trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        with atomic_path(out) as tmp:
            tmp.mkdir()
            try:
                manifest = generate_into(tmp, params, progress=progress, workers=workers)
            finally:
                forget_worlds()
            if out.exists():  # os.replace cannot replace a folder that holds files
                os.replace(out, trash)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    return manifest


def world_summary(manifest: dict, out_dir, seconds: float, preview=None) -> dict:
    """What ``geosynth demo-world`` reports about a generated world (``--json``)."""
    return {
        "out": str(out_dir),
        "tiles": [t["id"] for t in manifest["tiles"]],
        "test_tiles": [t["id"] for t in manifest["tiles"] if t["split"] == "test"],
        "files": len(manifest["files"]),
        "bytes": sum(f["bytes"] for f in manifest["files"].values()),
        "seconds": round(seconds, 1),
        "preview": str(preview) if preview else None,
    }


def check_out_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """``out_dir`` as a Path, if a world may be generated there."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"--out {out}: folder exists and is not empty (use --overwrite to replace it)"
        )
    return out


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The ``world.json`` of a demo world folder, or ``None`` when absent or unreadable."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def world_problems(
    folder: str | os.PathLike, manifest: dict, check_hashes: bool = False
) -> list[str]:
    """What is missing or altered in a generated world (empty when complete)."""
    folder = Path(folder)
    problems = []
    for rel, meta in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != meta["bytes"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, expected {meta['bytes']}")
        elif check_hashes and file_sha256(path) != meta["sha256"]:
            problems.append(f"{rel}: content differs from the manifest")
    return problems


def ensure_world(
    cache_dir: str | os.PathLike,
    tiles: tuple[int, int] | None = None,
    seed: int = 0,
    origin: tuple[int, int] | None = None,
    dop_resolution: float = 0.5,
    lidar_density: float = 4.0,
    progress: Progress | None = None,
    layout: str = "tiles",
) -> dict:
    """The manifest of the demo world in ``cache_dir``, generating it when absent or incomplete.

    A world counts as present when its ``world.json`` records the same
    parameters and generator version and every listed file exists with its
    recorded size. Anything else is regenerated from scratch.
    """
    params = world_params(tiles, seed, origin, dop_resolution, lidar_density, layout)
    manifest = read_manifest(cache_dir)
    if manifest is not None:
        same = (
            manifest.get("params") == params.as_dict()
            and manifest.get("generator_version") == GENERATOR_VERSION
        )
        problems = world_problems(cache_dir, manifest) if same else ["different parameters"]
        if not problems:
            log.debug("demo world in %s is complete", cache_dir)
            return manifest
        log.info(
            "demo world in %s is incomplete or stale (%s); regenerating", cache_dir, problems[0]
        )
    else:
        log.info("generating the demo world in %s", cache_dir)
    started = time.perf_counter()
    manifest = generate_world(
        cache_dir,
        params.tiles,
        params.seed,
        params.origin,
        params.dop_resolution,
        params.lidar_density,
        progress=progress,
        overwrite=True,
        layout=params.layout,
    )
    log.info("demo world generated in %.1f s", time.perf_counter() - started)
    return manifest


def tile_file(folder: str | os.PathLike, manifest: dict, tile: dict, source: str) -> str:
    """What GDAL or laspy opens for one tile's ``source`` ("dop" or "lidar") of a generated
    world: the file itself (tiles layout) or its ``/vsizip/`` path in the package."""
    folder = Path(folder).resolve()
    member = tile[f"{source}_member"]
    package = manifest[source].get("package")
    if package:
        return f"/vsizip/{folder / package}/{member}"
    return str(folder / manifest[source]["folder"] / member)


def read_tile_file(folder: str | os.PathLike, manifest: dict, tile: dict, source: str) -> bytes:
    """The bytes of :func:`tile_file` (read from the package where there is one)."""
    import zipfile

    path = tile_file(folder, manifest, tile, source)
    if path.startswith("/vsizip/"):
        archive, member = path[len("/vsizip/") :].rsplit("/", 1)
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    return Path(path).read_bytes()
