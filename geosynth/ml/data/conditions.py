"""Acquisition conditions: the small vector a conditioned generator receives per sample.

The store keeps, per tile, how its images were acquired (the attribute
``geosynth:acquisition``: the orthophoto's flight date and year, the SAR
scenes' orbit and look direction and incidence angle). A run trained with
``--conditions season,incidence,orbit`` turns them into a vector of floats,
in the order of :data:`~geosynth.names.CONDITIONS`, each value near [-1, 1]:

- ``season`` (2 values): sin and cos of ``2 pi (day of year - 1) / 365.25``
  of the flight date;
- ``year`` (1): ``(year - 2020) / 5`` of the flight;
- ``incidence`` (1): ``(incidence angle - 35 deg) / 10 deg``;
- ``orbit`` (1): +1 ascending, -1 descending;
- ``look`` (1): +1 right-looking, -1 left-looking.

A tile whose SAR comes from several scenes gets the mean of their SAR
values, weighted by the pixels each gave its image (``used_pixels`` of the
sar stage; a scene that gave none does not count). The sar stage averages
only scenes of one geometry and mosaics the others, the best-covering first,
so most tiles get one geometry's values exactly. This module imports neither numpy nor torch.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence

from geosynth.errors import DataError, UsageError
from geosynth.names import CONDITIONS, ORBITS, SEASON_DAYS

WIDTH = {"season": 2, "year": 1, "incidence": 1, "orbit": 1, "look": 1}
YEAR_REF, YEAR_SCALE = 2020.0, 5.0
INCIDENCE_REF, INCIDENCE_SCALE = 35.0, 10.0
OPTICAL = ("season", "year")
SAR = ("incidence", "orbit", "look")


def parse_conditions(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"season,orbit"`` -> ``("season", "orbit")`` in the canonical order; () for none."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items if str(v).strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise UsageError(
            f"conditions must be among {', '.join(CONDITIONS)}, not {', '.join(unknown)}"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"conditions must be distinct, got {value!r}")
    return tuple(n for n in CONDITIONS if n in names)


def condition_width(names: Sequence[str]) -> int:
    """Length of the vector of ``names``."""
    return sum(WIDTH[n] for n in names)


def day_of_year(date: str | dt.date) -> int:
    """1..366 of an ISO date (``2022-05-06``; a time after it is ignored)."""
    if isinstance(date, str):
        date = dt.date.fromisoformat(date[:10])
    return date.timetuple().tm_yday


def season_values(doy: float) -> tuple[float, float]:
    angle = 2 * math.pi * (float(doy) - 1) / 365.25
    return math.sin(angle), math.cos(angle)


def doy_of_values(sin_value: float, cos_value: float) -> float:
    """The day of year (1..366.25) of a ``season`` pair (inverse of :func:`season_values`)."""
    angle = math.atan2(sin_value, cos_value) % (2 * math.pi)
    return 1 + angle * 365.25 / (2 * math.pi)


def parse_season(text: str | int) -> int:
    """``spring``/``summer``/``autumn``/``winter`` or a day of year 1..366."""
    key = str(text).strip().lower()
    if key in SEASON_DAYS:
        return SEASON_DAYS[key]
    try:
        doy = int(key)
    except ValueError:
        raise UsageError(
            f"--season must be a day of year 1..366 or one of {', '.join(SEASON_DAYS)}, "
            f"not {text!r}"
        ) from None
    if not 1 <= doy <= 366:
        raise UsageError(f"--season must be a day of year 1..366, got {doy}")
    return doy


def parse_range(text: str, option: str) -> list[float]:
    """``START:STOP:STEP`` (inclusive of STOP when it falls on a step) or ``A,B,C``."""
    text = str(text).strip()
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            return [start + i * step for i in range(count)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"{option} must be START:STOP:STEP (STEP > 0) or comma-separated values, not {text!r}"
        ) from None


def parse_orbit(text: str) -> float:
    key = str(text).strip().lower()
    aliases = {"asc": "asc", "ascending": "asc", "desc": "desc", "descending": "desc"}
    if key not in aliases:
        raise UsageError(f"--orbit must be one of {', '.join(ORBITS)}, not {text!r}")
    return 1.0 if aliases[key] == "asc" else -1.0


def _sar_scene_values(scene: Mapping, where: str) -> dict[str, float]:
    out = {}
    if "incidence_deg" in scene:
        out["incidence"] = (float(scene["incidence_deg"]) - INCIDENCE_REF) / INCIDENCE_SCALE
    orbit = str(scene.get("orbit", "")).lower()
    if orbit:
        out["orbit"] = parse_orbit(orbit) if orbit[:3] in ("asc", "des") else math.nan
    look = str(scene.get("look", "")).lower()
    if look:
        out["look"] = {"right": 1.0, "left": -1.0}.get(look, math.nan)
    bad = [k for k, v in out.items() if math.isnan(v)]
    if bad:
        raise DataError(f"{where}: SAR scene {scene.get('product', '?')} has an unknown {bad[0]}")
    return out


def tile_conditions(acquisition: Mapping, names: Sequence[str], where: str) -> list[float]:
    """The vector of ``names`` from a tile's ``geosynth:acquisition``; errors name ``where``."""
    values: list[float] = []
    rgb = acquisition.get("rgb") or {}
    scenes = acquisition.get("sar") or []
    sar: dict[str, float] = {}
    if any(n in SAR for n in names):
        # the pixels each scene gave the tile's image (older stores: equal weights)
        weights = [int(s.get("used_pixels", s.get("valid_pixels", 1))) for s in scenes]
        per_scene = [_sar_scene_values(s, where) for s in scenes]
        for key in SAR:
            pairs = [
                (v[key], w) for v, w in zip(per_scene, weights, strict=True) if key in v and w > 0
            ]
            if pairs:
                sar[key] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs)
    for name in names:
        if name == "season":
            if not rgb.get("date"):
                raise DataError(f"{where}: no orthophoto flight date for --conditions season")
            values.extend(season_values(day_of_year(rgb["date"])))
        elif name == "year":
            year = rgb.get("year") or (int(str(rgb["date"])[:4]) if rgb.get("date") else None)
            if year is None:
                raise DataError(f"{where}: no orthophoto flight year for --conditions year")
            values.append((float(year) - YEAR_REF) / YEAR_SCALE)
        else:
            if name not in sar:
                raise DataError(f"{where}: no SAR {name} in the tile's acquisition metadata")
            values.append(sar[name])
    return values


def override_conditions(
    names: Sequence[str],
    base: Sequence[float],
    *,
    season: int | float | None = None,
    year: int | float | None = None,
    incidence: float | None = None,
    orbit: float | None = None,
    look: float | None = None,
) -> list[float]:
    """``base`` (a tile's own vector) with the given conditions replaced (raw units).

    ``season`` a day of year, ``year`` a calendar year, ``incidence`` degrees,
    ``orbit`` / ``look`` +1 or -1. Asking for a condition the run was not
    trained on is a usage error.
    """
    given = {
        "season": None if season is None else season_values(season),
        "year": None if year is None else ((float(year) - YEAR_REF) / YEAR_SCALE,),
        "incidence": None
        if incidence is None
        else ((float(incidence) - INCIDENCE_REF) / INCIDENCE_SCALE,),
        "orbit": None if orbit is None else (float(orbit),),
        "look": None if look is None else (float(look),),
    }
    lacking = [k for k, v in given.items() if v is not None and k not in names]
    if lacking:
        trained = ",".join(names) or "no conditions"
        raise UsageError(f"the generator was trained with {trained}; it cannot take --{lacking[0]}")
    out, pos = [], 0
    for name in names:
        width = WIDTH[name]
        out.extend(given[name] if given[name] is not None else base[pos : pos + width])
        pos += width
    return [float(v) for v in out]


def describe(names: Sequence[str], vector: Sequence[float]) -> dict[str, float]:
    """Readable values of a vector: day of year, year, incidence in degrees, orbit, look."""
    out, pos = {}, 0
    for name in names:
        v = vector[pos : pos + WIDTH[name]]
        pos += WIDTH[name]
        if name == "season":
            out["day_of_year"] = round(doy_of_values(v[0], v[1]), 1)
        elif name == "year":
            out["year"] = round(v[0] * YEAR_SCALE + YEAR_REF, 2)
        elif name == "incidence":
            out["incidence_deg"] = round(v[0] * INCIDENCE_SCALE + INCIDENCE_REF, 2)
        else:
            out[name] = round(float(v[0]), 3)
    return out
