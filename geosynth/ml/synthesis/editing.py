"""Edit a tile's inputs and synthesize what the sensor would see before and after.

``edit-flood`` and ``edit-classes`` call these; the edits themselves are in
:mod:`geosynth.edit.rules` (numpy only, no torch) and the generators run through
:class:`~geosynth.ml.synthesis.synthesize.Synthesizer`. Outputs in ``out``:

* ``<name>_seg_<tag>.tif``, ``<name>_dem_<tag>.tif``: the edited inputs (GeoTIFF, the tile's grid);
* ``<name>_<rgb|sar>_before.tif`` / ``_<tag>.tif``: synthesized images (COG) when a generator is given;
* ``<name>_<tag>.png``: a before/after panel; ``<name>_flood.gif`` for a sequence of levels;
* ``water_rate.json`` (flood with a U-Net): per level, the share of the new water pixels
  that the U-Net classifies as water in the synthesized RGB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geosynth.edit.rules import RAISED_CLASSES, EditResult, flood, swap_classes
from geosynth.edit.tile import TileInputs
from geosynth.errors import UsageError
from geosynth.figures import save_panel
from geosynth.io import atomic_path, write_geotiff
from geosynth.ml.synthesis.synthesize import Synthesizer, band_descriptions
from geosynth.names import IMAGE_OUTPUTS

log = logging.getLogger(__name__)


@dataclass
class EditReport:
    """The share of the tile covered by ``measure`` (a class key) before and after each edit."""

    measure: str = "water"
    tags: list[str] = field(default_factory=list)
    fraction_before: float = 0.0
    fraction_after: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def _no_folder_left_on_error(run: Callable) -> Callable:
    """An edit that fails removes the output folder it created (nothing half-written stays)."""
    import functools
    import inspect
    import shutil

    signature = inspect.signature(run)

    @functools.wraps(run)
    def wrapper(*args, **kwargs):
        out = Path(signature.bind(*args, **kwargs).arguments["out"])
        existed = out.exists()
        try:
            return run(*args, **kwargs)
        except BaseException:
            if not existed and out.is_dir():
                shutil.rmtree(out, ignore_errors=True)
            raise

    return wrapper


class _EditOutputs:
    """Synthesizes a tile's inputs with every generator and writes the files of one edit run."""

    def __init__(self, inputs: TileInputs, out, synths: Sequence[Synthesizer], device: str):
        self.inputs, self.out, self.synths, self.device = inputs, Path(out), synths, device
        self.name = inputs.name
        self.report = EditReport()
        self.out.mkdir(parents=True, exist_ok=True)

    def view(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``seg``, ``dem`` and what each generator synthesizes from ``arrays``."""
        k = self.inputs.num_classes
        images = {s.config.output: s(arrays, k, self.device, where=self.name) for s in self.synths}
        return {"seg": arrays["seg"], "dem": arrays["dem"], **images}

    def write_images(self, tag: str, view: dict[str, np.ndarray]) -> None:
        for kind in IMAGE_OUTPUTS:
            if kind in view:
                image = view[kind]
                self._add(
                    write_geotiff(
                        self.out / f"{self.name}_{kind}_{tag}.tif",
                        image,
                        self.inputs.grid,
                        descriptions=band_descriptions(kind, image.shape[0]),
                        cog=True,
                    )
                )

    def write_edit(self, tag: str, result: EditResult, title: str, before: dict) -> Path:
        """The edited inputs, what the generators make of them and the before/after panel."""
        after = self.view(dict(self.inputs.arrays, seg=result.seg, dem=result.dem[None]))
        if self.inputs.grid is None:
            log.warning(
                "%s has no georeferencing: edited inputs are written as PNG only", self.name
            )
        else:
            for kind, values, description in (
                ("seg", result.seg, "class id"),
                ("dem", result.dem[None], "height (m)"),
            ):
                path = self.out / f"{self.name}_{kind}_{tag}.tif"
                self._add(
                    write_geotiff(path, values, self.inputs.grid, descriptions=(description,))
                )
        self.write_images(tag, after)
        columns = []
        for label, view in (("before", before), (tag, after)):
            columns += [
                (f"labels {label}", "seg", view["seg"]),
                (f"DEM {label}", "dem", view["dem"]),
            ]
            columns += [(f"{k.upper()} {label}", k, view[k]) for k in IMAGE_OUTPUTS if k in view]
        panel = save_panel(
            self.out / f"{self.name}_{tag}.png",
            columns,
            classes=self.inputs.classes,
            title=title,
            rows=2,
        )
        self.report.tags.append(tag)
        return self._add(panel)

    def _add(self, path: Path) -> Path:
        self.report.files.append(str(path))
        return path


@_no_folder_left_on_error
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
    unet_run: str | os.PathLike | None = None,
) -> EditReport:
    """Flood ``inputs`` to each level, write the edited inputs, syntheses and panels.

    With ``unet_run`` (a U-Net on RGB) and an RGB generator, also ``water_rate.json``.
    """
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
    run = _EditOutputs(inputs, out, synths, device)
    run.report.fraction_before = float((seg == water).mean())
    before = run.view(inputs.arrays)
    run.write_images("before", before)
    frames = []
    rates = {}
    for k, level in enumerate(levels):
        tag = f"h{level:g}"
        result = flood(seg, dem, level, water_id=water, erosion=erosion, connected=connected)
        if unet_run is not None:
            rates[f"{level:g}"] = water_rate(run, result, seg, water, unet_run)
        title = (
            f"{inputs.name}: water level {level:g} m "
            f"(water {run.report.fraction_before:.1%} -> {result.fraction(water):.1%})"
        )
        frames.append(run.write_edit(tag, result, title, before))
        run.report.fraction_after[tag] = result.fraction(water)
        if progress:
            progress(k + 1, len(levels))
    if len(frames) > 1:
        run._add(_gif(run.out / f"{inputs.name}_flood.gif", frames))
    if rates:
        import json

        top = rates[f"{levels[-1]:g}"]
        summary = {"tile": inputs.name, "unet": str(unet_run), "level": levels[-1], **top,
                   "levels": rates}  # fmt: skip
        path = run.out / "water_rate.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
        run._add(path)
    return run.report


def water_rate(run, result: EditResult, seg, water: int, unet_run) -> dict:
    """Share of the new water pixels (water after the edit, not before) that the U-Net
    classifies as water in the image the RGB generator synthesizes from the edited inputs."""
    import torch

    from geosynth.ml.metrics import predict_classes
    from geosynth.ml.training.checkpoint import load_unet

    synth = next((s for s in run.synths if s.config.output == "rgb"), None)
    if synth is None:
        raise UsageError("--unet needs an RGB generator (--generator) to score the flood")
    unet, _ = load_unet(unet_run, map_location=run.device)
    edited_seg = result.seg
    arrays = dict(run.inputs.arrays, seg=edited_seg, dem=result.dem[None])
    image = synth(arrays, run.inputs.num_classes, run.device, where=run.name)  # (3, H, W) uint8
    m = 2**unet.config.depth
    h, w = image.shape[-2] // m * m, image.shape[-1] // m * m
    x = torch.from_numpy(np.asarray(image[:3, :h, :w], dtype=np.float32) / 127.5 - 1)[None]
    with torch.inference_mode():
        pred = predict_classes(unet(x.to(run.device)).logits)[0].cpu().numpy()
    new = (edited_seg[:h, :w] == water) & (seg[:h, :w] != water)
    pixels = int(new.sum())
    rate = float((pred[new] == water).mean()) if pixels else None
    return {"rate": rate, "pixels": pixels}


def _gif(path: Path, frames: Sequence[Path]) -> Path:
    from PIL import Image

    images = [Image.open(f).convert("RGB") for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=600, loop=0
        )
    return path


@_no_folder_left_on_error
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
    for s in synths:
        s.check(("seg",), tuple(inputs.arrays))
    source, target = inputs.classes.lookup(from_key), inputs.classes.lookup(to_key)
    seg, dem = inputs.arrays["seg"], inputs.arrays["dem"][0]
    result = swap_classes(
        seg, dem, source.id, target.id, area=area, lower_dem=source.key in RAISED_CLASSES
    )
    if not result.mask.any():
        raise UsageError(
            f"{inputs.name} has no {from_key} pixels"
            + (" inside --where" if area is not None else "")
        )
    tag = f"{from_key}-to-{to_key}"
    run = _EditOutputs(inputs, out, synths, device)
    run.report.measure = from_key
    run.report.fraction_before = float((seg == source.id).mean())
    run.report.fraction_after[tag] = float((result.seg == source.id).mean())
    before = run.view(inputs.arrays)
    run.write_images("before", before)
    run.write_edit(tag, result, f"{inputs.name}: {from_key} -> {to_key}", before)
    return run.report
