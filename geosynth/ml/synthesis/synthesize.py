"""Synthesis of whole tiles with a trained generator, and georeferenced outputs.

Generators are trained on crops (256 x 256 in the paper); a 1000 x 1000 tile
is synthesized window by window. Windows of the training crop size overlap
by ``overlap`` pixels and are blended with weights that ramp linearly from
the window's border over the overlap, so no seam shows: every pixel is a
weighted mean of the windows covering it, and the weights of a window are
highest in its centre, where the generator sees the most context.

Each window is prepared from the stored pixels by
:func:`geosynth.ml.data.tensors.prepare_window`, exactly as training prepares its
crops (one-hot labels, DEM holes filled from the window, DEM in metres or
standardised per tile or per window as the run's ``dem_norm`` says, rasters
in [-1, 1]).

Beyond the paper: a generator trained with ``--conditions`` synthesizes a tile
under the tile's own acquisition conditions or under requested ones (another
season, incidence angle or orbit: :class:`Variant`), and one trained with
``--noise`` draws several images per tile, each from one noise vector shared
by all windows of the tile (so the windows blend into one image), drawn from
a seeded generator: the same seed gives the same images.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from geosynth.errors import DataError, UsageError
from geosynth.figures import save_panel, to_display
from geosynth.io import atomic_path, remove_stale_temporaries, write_geotiff
from geosynth.ml.data.conditions import (
    condition_width,
    describe,
    override_conditions,
    tile_conditions,
)
from geosynth.ml.data.tensors import (
    dem_stats,
    from_generator,
    generator_inputs,
    prepare_window,
    to_stored,
)
from geosynth.ml.training.checkpoint import load_generator
from geosynth.ml.training.config import GanConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One image to synthesize: a name for its files, its condition vector and noise vector."""

    label: str = ""  # file suffix ("" for the plain image)
    conditions: tuple[float, ...] | None = None
    noise: tuple[float, ...] | None = None
    info: dict = field(default_factory=dict)  # readable conditions and sample, for tags
    seed: int | None = None  # the diffusion generator's: its tile-wide starting noise


def plan_variants(
    config: GanConfig,
    acquisition: Mapping | None,
    where: str,
    *,
    requests: Sequence[Mapping] = ({},),
    samples: int = 1,
    seed: int = 0,
) -> list[Variant]:
    """The images to synthesize for one tile: every request (``{"season": DOY, "incidence":
    deg, "orbit": +-1, ...}``; ``{}`` = the tile's own conditions) times ``samples`` noise draws.

    Without ``--conditions`` in the run a request must be empty; without ``--noise``
    ``samples`` must be 1. Conditions the tile's metadata lacks must all be requested.
    """

    names = tuple(config.conditions)
    diffusion = config.generator == "diffusion"  # samples from seeded noise by construction
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    if samples > 1 and not config.noise and not diffusion:
        raise UsageError(
            "the generator was trained without --noise: it draws one image per input; "
            "--samples needs a generator trained with --noise N (or the diffusion generator)"
        )
    noise = [None] * samples
    if config.noise:
        gen = torch.Generator().manual_seed(int(seed))
        noise = [tuple(torch.randn(config.noise, generator=gen).tolist()) for _ in range(samples)]
    base = None
    if names:
        try:
            base = tile_conditions(acquisition or {}, names, where)
        except DataError:
            base = None
    out = []
    for request in requests:
        vector = None
        if names or request:
            if base is None and names:
                covered = {"season", "year", "incidence", "orbit", "look"} & set(request)
                if not set(names) <= covered:
                    lacking = ", ".join(sorted(set(names) - covered))
                    raise DataError(
                        f"{where}: no acquisition metadata for {lacking}; request them "
                        "(--season, --incidence, --orbit) to synthesize this tile"
                    )
            start = base if base is not None else [0.0] * condition_width(names)
            vector = tuple(override_conditions(names, start, **request))
        info = describe(names, vector) if vector is not None else {}
        parts = [_short(k, v) for k, v in sorted(request.items())]
        for k, z in enumerate(noise):
            label = "_".join(parts + ([f"s{k + 1}"] if samples > 1 else []))
            extra = {"sample": k + 1, "seed": int(seed)} if config.noise or diffusion else {}
            draw = noise_seed(seed, k + 1) if diffusion else None  # sample k: its own noise
            out.append(Variant(label, vector, z, {**info, **extra}, draw))
    return out


def noise_seed(*parts: object) -> int:
    """A 32-bit seed from ``parts`` (a seed and a sample; a tile): different seeds, samples
    and tiles draw different starting noise, the same ones the same."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def _short(name: str, value: float) -> str:
    """A file-name part: ``season080``, ``incidence27p5``, ``asc``/``desc``, ``right``/``left``."""
    value = float(value)
    if name == "orbit":
        return "asc" if value > 0 else "desc"
    if name == "look":
        return "right" if value > 0 else "left"
    if name == "season":
        return f"season{int(round(value)):03d}"
    return f"{name}{value:g}".replace(".", "p")


@dataclass
class Synthesizer:
    """A loaded generator and its run config, with the check that it fits a tile or an edit."""

    generator: torch.nn.Module
    config: GanConfig
    run: str
    sampling: Mapping[str, object] = field(default_factory=dict)  # diffusion: steps, ...

    @classmethod
    def load(
        cls, run: str | os.PathLike, device: str = "cpu", sampling: Mapping | None = None
    ) -> Synthesizer:
        """The generator of ``run``; ``sampling``: the diffusion generator's ``steps``,
        ``sampler`` and ``guidance`` instead of its run's (refused for a GAN)."""
        generator, config = load_generator(run, map_location=device)
        sampling = {k: v for k, v in (sampling or {}).items() if v is not None}
        if sampling and config.generator != "diffusion":
            names = ", ".join(f"--{k}" for k in sampling)
            raise UsageError(f"{names}: options of the diffusion generator; {run} is a GAN's")
        if sampling.get("guidance") and not config.cond_drop:
            raise UsageError(
                f"--guidance needs a run trained with --cond-drop > 0 (its unconditional "
                f"prediction); {run} was trained with --cond-drop 0"
            )
        return cls(generator, config, str(run), sampling)

    def check(self, edited: Sequence[str], available: Sequence[str]) -> None:
        """Refuse an edit of inputs the generator does not take, or a tile lacking its inputs."""
        inputs = tuple(self.config.inputs)
        lacking = [name for name in edited if name not in inputs]
        if lacking:
            raise UsageError(
                f"generator {self.run} was trained on {','.join(inputs)} without "
                f"{', '.join(lacking)}: it cannot show this edit (it changes {', '.join(edited)})"
            )
        missing = [name for name in inputs if name not in available]
        if missing:
            raise UsageError(
                f"generator {self.run} needs {', '.join(missing)}, which the tile lacks"
            )

    def __call__(
        self, arrays: Mapping[str, np.ndarray], num_classes: int, device: str = "cpu", **kwargs
    ) -> np.ndarray:
        """Stored input pixels of one tile -> the synthesized image in the store's form."""
        image = synthesize_array(
            self.generator, self.config, arrays, num_classes, device=device,
            sampling=self.sampling or None, **kwargs,
        )  # fmt: skip
        return to_stored(self.config.output, image)


def band_descriptions(kind: str, bands: int) -> tuple[str, ...]:
    """Band names of a synthesized image: red, green, blue for rgb; sar1, sar2, ... for sar."""
    if kind == "rgb":
        return ("red", "green", "blue")[:bands]
    return tuple(f"{kind}{i + 1}" for i in range(bands))


def _ramp(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights: rising linearly over ``overlap`` px at both ends, 1 inside."""
    i = np.arange(size, dtype=np.float64)
    if overlap <= 0:
        return np.ones(size)
    return np.clip(np.minimum(i + 0.5, size - i - 0.5) / overlap, 1e-3, 1.0)


def _starts(length: int, window: int, stride: int) -> list[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def _padded(arrays: Mapping[str, np.ndarray], window: int) -> dict[str, np.ndarray]:
    """Tiles smaller than one window, edge-padded to it (the statistics stay alike)."""
    out = {}
    for name, values in arrays.items():
        h, w = values.shape[-2:]
        pad = [(0, 0)] * (values.ndim - 2) + [(0, max(0, window - h)), (0, max(0, window - w))]
        out[name] = np.pad(values, pad, mode="edge") if any(p[1] for p in pad[-2:]) else values
    return out


@torch.no_grad()
def synthesize_array(
    generator: torch.nn.Module,
    config: GanConfig,
    arrays: Mapping[str, np.ndarray],
    num_classes: int,
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    where: str = "the input",
    conditions: Sequence[float] | None = None,
    noise: Sequence[float] | None = None,
    seed: int | None = None,
    sampling: Mapping[str, object] | None = None,
) -> np.ndarray:
    """Generator output ``(C, H, W)`` in [-1, 1] for the stored input pixels of a tile.

    ``arrays``: the generator's inputs as stored (``seg`` ``(H, W)`` ids, ``dem``
    ``(1, H, W)`` metres, ``sar`` with ``sar_valid``, ...); any size.
    ``window`` defaults to the training crop, ``overlap`` to a quarter of it (at most 32 px);
    ``where`` names the tile in errors. ``conditions`` / ``noise``: the vectors of a
    conditioned / noise-taking generator, the same for every window. The diffusion
    generator starts every window from its crop of ONE noise field of the tile, drawn from
    ``seed`` (0 when None) and ``where`` (the tile), so that overlapping windows agree where
    they overlap and seeds and tiles give different samples; ``sampling``: its ``steps``, ``sampler``, ``guidance``
    for this call.
    """
    diffusion = getattr(generator.config, "kind", None) == "diffusion"
    if sampling and not diffusion:
        raise UsageError(f"{', '.join(f'--{k}' for k in sampling)}: the diffusion generator's")
    missing = [name for name in config.inputs if name not in arrays]
    if missing:
        raise UsageError(
            f"the generator was trained on {','.join(config.inputs)}; missing {', '.join(missing)}"
        )
    window = int(window or config.crop)
    overlap = int(min(window // 4, 32) if overlap is None else overlap)
    if not 0 <= overlap < window:
        raise UsageError(f"overlap must be in [0, {window}), got {overlap}")
    size = config.resize or window  # the network's input size
    multiple = 2 ** getattr(generator.config, "n_sampling", 4)
    if size % multiple:
        raise UsageError(f"window {size} must be a multiple of {multiple}")
    names = [n for n in (*config.inputs, "sar_valid") if n in arrays]
    h, w = arrays[config.inputs[0]].shape[-2:]
    stats = dem_stats(arrays["dem"]) if "dem" in config.inputs else None
    raw = _padded({n: arrays[n] for n in names}, window)
    H, W = raw[config.inputs[0]].shape[-2:]
    stride = window - overlap
    boxes = [(y, x) for y in _starts(H, window, stride) for x in _starts(W, window, stride)]
    weight = torch.from_numpy(np.outer(_ramp(window, overlap), _ramp(window, overlap))).float()
    out = None
    norm = torch.zeros(H, W)
    generator = generator.to(device).eval()
    field, scale = None, size / window
    if diffusion:  # the tile's noise at the network's scale (--resize: i.i.d. noise there too)
        draw = torch.Generator().manual_seed(noise_seed(int(seed or 0), where))
        shape = (generator.config.output_channels, math.ceil(H * scale), math.ceil(W * scale))
        field = torch.randn(shape, generator=draw)

    def at(v: int, n: int) -> int:  # a window's start on the field's grid
        return min(round(v * scale), n - size)

    for first in range(0, len(boxes), batch_size):
        batch_boxes = boxes[first : first + batch_size]
        windows = [
            prepare_window(
                {n: v[..., y : y + window, x : x + window] for n, v in raw.items()},
                config.inputs,
                num_classes,
                dem_norm=config.dem_norm,
                dem_stats=stats,
                resize=(size, size),
                where=where,
            )
            for y, x in batch_boxes
        ]
        batch = {n: torch.stack([s[n] for s in windows]).to(device) for n in config.inputs}
        extra = {}
        for name, values in (("conditions", conditions), ("noise", noise)):
            if values is not None:
                row = torch.as_tensor(values, dtype=torch.float32, device=device)
                extra[name] = row.expand(len(windows), -1)
        if field is not None:  # each window's crop of the tile's noise field
            fh, fw = field.shape[-2:]
            crops = [field[:, at(y, fh) :, at(x, fw) :][:, :size, :size] for y, x in batch_boxes]
            extra["noise"] = torch.stack(crops).to(device)
            extra.update(sampling or {})
        fake = generator(*generator_inputs(batch, config.inputs), **extra).float().cpu()
        fake = from_generator(config, fake)  # [-1, 1] also for image_range unit
        if size != window:
            fake = F.interpolate(fake, size=(window, window), mode="bilinear", align_corners=False)
        if out is None:
            out = torch.zeros(fake.shape[1], H, W)
        for k, (y, x) in enumerate(batch_boxes):
            out[:, y : y + window, x : x + window] += fake[k] * weight
            norm[y : y + window, x : x + window] += weight
        if progress:
            progress(min(first + batch_size, len(boxes)), len(boxes))
    result = (out / norm).numpy()[:, :h, :w]
    return np.clip(result, -1.0, 1.0)


def run_synthesis(
    synth: Synthesizer,
    inputs,
    out: str | os.PathLike,
    *,
    window: int | None = None,
    overlap: int | None = None,
    sar_db: bool = False,
    device: str = "cpu",
    variants: Sequence[Variant] | None = None,
    panel: bool = True,
) -> list[Path]:
    """Synthesize one tile (:class:`~geosynth.edit.tile.TileInputs`) and write its COG and panel.

    With ``variants`` (:func:`plan_variants`): one COG per variant,
    ``<tile>_<output>_<label>.tif``, tagged with its conditions and noise sample,
    and one panel with all of them.
    """
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for outputs in ("*.tif", "*_panel.png"):  # what a killed run of ours left half-written
        remove_stale_temporaries(out, outputs)

    synth.check((), tuple(inputs.arrays))
    config = synth.config
    if variants is None:
        variants = plan_variants(config, inputs.acquisition, f"tile {inputs.name}")
    written, images = [], []
    for variant in variants:
        image = synth(
            inputs.arrays, inputs.num_classes, device, window=window, overlap=overlap,
            where=inputs.name, conditions=variant.conditions, noise=variant.noise,
            seed=variant.seed,
        )  # fmt: skip
        images.append(image)
        data = image
        descriptions = band_descriptions(config.output, image.shape[0])
        # the run's folder name, never an absolute path (the file may travel)
        tags = {
            "geosynth_generator": Path(synth.run).name,
            "geosynth_inputs": ",".join(config.inputs),
        }
        if variant.info:
            tags["geosynth_conditions"] = json.dumps(variant.info, sort_keys=True)
        if config.output == "sar" and sar_db:
            from geosynth.catalog import load_catalog

            data = (image * load_catalog().sar.divisor).astype(np.float32)  # 20 log10(A), dB
            tags["units"] = "dB (20 log10 amplitude), clipped to the normalisation range"
        suffix = f"_{variant.label}" if variant.label else ""
        written.append(
            write_geotiff(
                out / f"{inputs.name}_{config.output}{suffix}.tif",
                data,
                inputs.grid,
                descriptions=descriptions,
                tags=tags,
                cog=True,
            )
        )
    if not panel:
        return written
    columns = [(name, name, inputs.arrays[name]) for name in config.inputs]
    for variant, image in zip(variants, images, strict=True):
        name = f"synthesized {config.output}" + (f" {variant.label}" if variant.label else "")
        columns.append((name, config.output, image))
    if config.output in inputs.arrays:
        columns.append((f"real {config.output}", config.output, inputs.arrays[config.output]))
    written.append(
        save_panel(
            out / f"{inputs.name}_panel.png",
            columns,
            classes=inputs.classes,
            title=f"{inputs.name}: {synth.run}",
            rows=max(1, int(np.ceil(len(columns) / 6))),
        )
    )
    return written


def save_strip(
    out: str | os.PathLike,
    tile: str,
    output: str,
    variants: Sequence[Variant],
    files: Sequence[Path],
    classes=None,
) -> list[Path]:
    """``<tile>_vary.png`` (the images side by side, titled with their conditions) and
    ``<tile>_vary.gif`` (one frame per condition) from the COGs ``files`` of ``variants``."""
    import rasterio
    from PIL import Image

    out = Path(out)
    columns, frames = [], []
    for variant, path in zip(variants, files, strict=True):
        with rasterio.open(path) as src:
            image = src.read()
        title = ", ".join(f"{k} {v}" for k, v in variant.info.items() if k not in ("seed",))
        columns.append((title or variant.label, output, image))
        shown, _ = to_display(output, image, classes)
        if shown.ndim == 2:  # sar in [0, 1]
            shown = np.repeat((np.clip(shown, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
        frames.append(Image.fromarray(np.ascontiguousarray(shown.astype(np.uint8))))
    strip = save_panel(out / f"{tile}_vary.png", columns, classes=classes, title=tile)
    gif = out / f"{tile}_vary.gif"
    with atomic_path(gif) as tmp:
        frames[0].save(
            tmp, format="GIF", save_all=True, append_images=frames[1:], duration=700, loop=0
        )
    return [strip, gif]
