"""Per-source build stages: aerial (orthophotos), lidar (DEM), landcover (ATKIS + OSM), sar.

Each stage is a library function that takes its input files and an output
:class:`~geosynth.grid.RasterGrid` and returns a :class:`StageResult`; the
``geosynth <stage>`` commands and the region build (:mod:`geosynth.ingest.nrw`) call
these functions and nothing else.

Beside the stages: :mod:`~geosynth.sources.osm` (OpenStreetMap from files, PBF cuts or
Overpass), :mod:`~geosynth.sources.filenames` (provider file names <-> tile ids) and
:mod:`~geosynth.sources.nrw` (how NRW lists and names its tiled sources).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geosynth.grid import RasterGrid


@dataclass
class StageResult:
    """The output of one stage on one grid.

    ``array`` is (bands, H, W) for images and DEMs, (H, W) for class maps;
    ``valid`` marks pixels holding data where the stage distinguishes them
    (SAR); ``skipped`` gives the reason when the stage decided the grid
    should not be written (e.g. too little valid SAR); ``report`` holds
    counts and notes for the build report (JSON-serialisable).
    """

    array: np.ndarray | None
    grid: RasterGrid
    nodata: float | int | None = None
    valid: np.ndarray | None = None
    skipped: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    descriptions: tuple[str, ...] = ()
