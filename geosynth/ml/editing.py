"""Edit a tile's inputs and synthesize what the sensor would see before and after.

``edit-flood`` and ``edit-classes`` call these; the edits themselves are in
:mod:`geosynth.edit` (no torch). Outputs in ``out``:

* ``<name>_seg_<tag>.tif``, ``<name>_dem_<tag>.tif``: the edited inputs (GeoTIFF, the tile's grid);
* ``<name>_<rgb|sar>_before.tif`` / ``_<tag>.tif``: synthesized images (COG) when a generator is given;
* ``<name>_<tag>.png``: a before/after panel; ``<name>_flood.gif`` for a sequence of levels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geosynth.edit import RAISED_CLASSES, EditResult, flood, swap_classes
from geosynth.errors import UsageError
from geosynth.figures import save_panel
from geosynth.inputs import TileInputs
from geosynth.io import atomic_path, write_geotiff
from geosynth.ml.synthesize import Synthesizer, band_descriptions

log = logging.getLogger(__name__)


@dataclass
class EditReport:
    """The share of the tile covered by ``measure`` (a class key) before and after each edit."""

    measure: str = "water"
    tags: list[str] = field(default_factory=list)
    fraction_before: float = 0.0
    fraction_after: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _write_inputs(
    out: Path, name: str, tag: str, result: EditResult, inputs: TileInputs, report: EditReport
) -> None:
    if inputs.grid is None:
        log.warning("%s has no georeferencing: edited inputs are written as PNG only", name)
        return
    report.files.append(
        str(
            write_geotiff(
                out / f"{name}_seg_{tag}.tif", result.seg, inputs.grid, descriptions=("class id",)
            )
        )
    )
    report.files.append(
        str(
            write_geotiff(
                out / f"{name}_dem_{tag}.tif",
                result.dem[None],
                inputs.grid,
                descriptions=("height (m)",),
            )
        )
    )


def _synth(
    synths: Sequence[Synthesizer], arrays: dict, inputs: TileInputs, device: str
) -> dict[str, np.ndarray]:
    return {s.config.output: s(arrays, inputs.num_classes, device) for s in synths}


def _write_images(
    out: Path,
    name: str,
    tag: str,
    images: dict[str, np.ndarray],
    inputs: TileInputs,
    report: EditReport,
) -> None:
    for kind, image in images.items():
        path = write_geotiff(
            out / f"{name}_{kind}_{tag}.tif",
            image,
            inputs.grid,
            descriptions=band_descriptions(kind, image.shape[0]),
            cog=True,
        )
        report.files.append(str(path))


def _panel(
    out: Path,
    name: str,
    tag: str,
    title: str,
    before: dict,
    after: dict,
    inputs: TileInputs,
    report: EditReport,
) -> Path:
    columns = []
    for label, arrays in (("before", before), (tag, after)):
        columns += [
            (f"labels {label}", "seg", arrays["seg"]),
            (f"DEM {label}", "dem", arrays["dem"]),
        ]
        for kind in ("rgb", "sar"):
            if kind in arrays:
                columns.append((f"{kind.upper()} {label}", kind, arrays[kind]))
    path = save_panel(
        out / f"{name}_{tag}.png", columns, classes=inputs.classes, title=title, rows=2
    )
    report.files.append(str(path))
    return path


def flood_run(
    inputs: TileInputs,
    levels: Sequence[float],
    out: str | os.PathLike,
    *,
    synths: Sequence[Synthesizer] = (),
    erosion: int = 3,
    connected: bool = False,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> EditReport:
    """Flood ``inputs`` to each level, write the edited inputs, syntheses and panels."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("seg", "dem"):
        if name not in inputs.arrays:
            raise UsageError(f"the flood edit needs {name}; {inputs.name} has none")
    for s in synths:
        s.check(("seg", "dem"), tuple(inputs.arrays))
    water = inputs.classes.id_of("water")
    seg, dem = inputs.arrays["seg"], inputs.arrays["dem"][0]
    lo, hi = float(np.nanmin(dem)), float(np.nanmax(dem))
    outside = [h for h in levels if not lo < h <= hi]
    if outside:
        raise UsageError(
            f"--hmin {outside[0]:g} is outside the DEM range of {inputs.name} "
            f"(minimum {lo:.2f}, maximum {hi:.2f})"
        )
    report = EditReport(fraction_before=float((seg == water).mean()))
    before = {"seg": seg, "dem": inputs.arrays["dem"]}
    before.update(_synth(synths, dict(inputs.arrays), inputs, device))
    _write_images(
        out,
        inputs.name,
        "before",
        {k: v for k, v in before.items() if k in ("rgb", "sar")},
        inputs,
        report,
    )
    frames = []
    for k, level in enumerate(levels):
        tag = f"h{level:g}"
        result = flood(seg, dem, level, water_id=water, erosion=erosion, connected=connected)
        arrays = dict(inputs.arrays, seg=result.seg, dem=result.dem[None])
        after = {
            "seg": result.seg,
            "dem": result.dem[None],
            **_synth(synths, arrays, inputs, device),
        }
        _write_inputs(out, inputs.name, tag, result, inputs, report)
        _write_images(
            out,
            inputs.name,
            tag,
            {k2: v for k2, v in after.items() if k2 in ("rgb", "sar")},
            inputs,
            report,
        )
        frames.append(
            _panel(
                out,
                inputs.name,
                tag,
                f"{inputs.name}: water level {level:g} m "
                f"(water {report.fraction_before:.1%} -> {result.fraction(water):.1%})",
                before,
                after,
                inputs,
                report,
            )
        )
        report.tags.append(tag)
        report.fraction_after[tag] = result.fraction(water)
        if progress:
            progress(k + 1, len(levels))
    if len(frames) > 1:
        report.files.append(str(_gif(out / f"{inputs.name}_flood.gif", frames)))
    return report


def _gif(path: Path, frames: Sequence[Path]) -> Path:
    from PIL import Image

    images = [Image.open(f).convert("RGB") for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=600, loop=0
        )
    return path


def classes_run(
    inputs: TileInputs,
    from_key: str,
    to_key: str,
    out: str | os.PathLike,
    *,
    area: np.ndarray | None = None,
    synths: Sequence[Synthesizer] = (),
    device: str = "cpu",
) -> EditReport:
    """Swap class ``from_key`` for ``to_key`` (inside ``area``), the DEM following; synthesize."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for s in synths:
        s.check(("seg",), tuple(inputs.arrays))
    source, target = inputs.classes.lookup(from_key), inputs.classes.lookup(to_key)
    from_id, to_id = source.id, target.id
    seg, dem = inputs.arrays["seg"], inputs.arrays["dem"][0]
    result = swap_classes(
        seg, dem, from_id, to_id, area=area, lower_dem=source.key in RAISED_CLASSES
    )
    if not result.mask.any():
        raise UsageError(
            f"{inputs.name} has no {from_key} pixels"
            + (" inside --where" if area is not None else "")
        )
    tag = f"{from_key}-to-{to_key}"
    report = EditReport(
        measure=from_key,
        tags=[tag],
        fraction_before=float((seg == from_id).mean()),
        fraction_after={tag: float((result.seg == from_id).mean())},
    )
    before = {
        "seg": seg,
        "dem": inputs.arrays["dem"],
        **_synth(synths, dict(inputs.arrays), inputs, device),
    }
    arrays = dict(inputs.arrays, seg=result.seg, dem=result.dem[None])
    after = {"seg": result.seg, "dem": result.dem[None], **_synth(synths, arrays, inputs, device)}
    _write_inputs(out, inputs.name, tag, result, inputs, report)
    _write_images(
        out,
        inputs.name,
        "before",
        {k: v for k, v in before.items() if k in ("rgb", "sar")},
        inputs,
        report,
    )
    _write_images(
        out,
        inputs.name,
        tag,
        {k: v for k, v in after.items() if k in ("rgb", "sar")},
        inputs,
        report,
    )
    _panel(
        out,
        inputs.name,
        tag,
        f"{inputs.name}: {from_key} -> {to_key}",
        before,
        after,
        inputs,
        report,
    )
    return report
