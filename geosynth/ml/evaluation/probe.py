"""The fusion probe (the paper's Fig. 7): does the DEM carry into the image what the labels lack?

The demo world knows its ground truth (``truth/<tile>_{landcover,dsm,dtm}.tif``,
on the store's 1 m tile grid). From it, :func:`truth_masks` marks the pixels
where only the DEM tells what is there:

- ``trees_hedges``: raised objects (DSM - DTM > ``min_height`` m) on pixels the
  labels call something other than forest or buildings: single trees, tree
  rows, hedges (and buildings missing from OSM);
- ``buildings``: pixels labelled buildings: the labels give the footprint, only
  the DEM its height (and so its shadow);
- ``probe``: both; ``elsewhere``: every other labelled pixel (the control).

On the centre window of every tile of a split, each generator synthesizes the
image and the U-Net segments the real and the synthesized one. Per mask the
probe reports the **agreement** (share of pixels where the synthesized image's
segmentation equals the real image's) and the **error** (mean absolute
difference of the 8-bit RGB values, 0-255). The **DEM ablation** runs one
generator (``ablate``, normally ``ours``) again with the objects removed from
its DEM input (DEM - (DSM - DTM) on the probe pixels: the terrain underneath),
on the same pixels. If fusion uses the DEM, the ablated row is worse on
``probe`` and about as good ``elsewhere``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from geosynth.errors import DataError, UsageError
from geosynth.figures import grouped_bars, save_figure, save_panel, subplots
from geosynth.io import read_result, write_text
from geosynth.names import LABELS
from geosynth.store import open_store

log = logging.getLogger(__name__)

FORMAT = "geosynth-probe/1"
PROBE_JSON = "probe.json"
PROBE_PNG = "probe.png"
PANEL_PNG = "probe_panel.png"
MASKS = ("trees_hedges", "buildings", "probe", "elsewhere")
ABLATED = "objects removed"


# --------------------------------------------------------------------------- masks


def truth_masks(
    landcover: np.ndarray, dsm: np.ndarray, dtm: np.ndarray, classes, min_height: float = 2.0
) -> dict[str, np.ndarray]:
    """The probe's boolean masks (module docstring) from one window of the truth rasters."""
    height = np.nan_to_num(dsm - dtm, nan=0.0)
    raised = height > min_height
    forest, buildings = classes.id_of("forest"), classes.id_of("buildings")
    labelled = landcover != classes.unlabelled
    trees = raised & labelled & (landcover != forest) & (landcover != buildings)
    houses = landcover == buildings
    probe = trees | houses
    return {
        "trees_hedges": trees,
        "buildings": houses,
        "probe": probe,
        "elsewhere": labelled & ~probe,
    }


def ablate_dem(dem: np.ndarray, dsm: np.ndarray, dtm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``dem`` with the objects under ``mask`` removed: their height (DSM - DTM) subtracted."""
    height = np.nan_to_num(dsm - dtm, nan=0.0).astype(np.float32)
    out = np.array(dem, dtype=np.float32, copy=True)
    out[..., mask] -= height[mask]
    return out


def read_truth(truth_dir: str | os.PathLike, tile: str, rows: slice, cols: slice) -> dict:
    """``landcover``, ``dsm`` and ``dtm`` of one window of a tile's truth rasters."""
    import rasterio

    out = {}
    for name in ("landcover", "dsm", "dtm"):
        path = Path(truth_dir) / f"{tile}_{name}.tif"
        if not path.is_file():
            raise DataError(f"no truth raster {path} (the demo world's truth/ folder)")
        with rasterio.open(path) as src:
            out[name] = src.read(1)
    shape = out["landcover"].shape
    if any(v.shape != shape for v in out.values()):
        raise DataError(f"truth rasters of tile {tile} in {truth_dir} differ in shape")
    return {name: values[rows, cols] for name, values in out.items()}


# --------------------------------------------------------------------------- the probe


class _Tally:
    """Pixels, agreeing pixels and summed absolute RGB error per mask."""

    def __init__(self):
        self.pixels = dict.fromkeys(MASKS, 0)
        self.agree = dict.fromkeys(MASKS, 0)
        self.error = dict.fromkeys(MASKS, 0.0)

    def update(self, masks, pred_fake, pred_real, fake255, real255) -> None:
        diff = np.abs(fake255.astype(np.float64) - real255.astype(np.float64)).mean(axis=0)
        same = pred_fake == pred_real
        for key in MASKS:
            m = masks[key]
            self.pixels[key] += int(m.sum())
            self.agree[key] += int(same[m].sum())
            self.error[key] += float(diff[m].sum())

    def result(self) -> dict:
        def ratio(a, n):
            return None if n == 0 else a / n

        return {
            "agreement": {k: ratio(self.agree[k], self.pixels[k]) for k in MASKS},
            "error": {k: ratio(self.error[k], self.pixels[k]) for k in MASKS},
        }


def fusion_probe(
    generators: Mapping[str, str | os.PathLike],
    unet_run: str | os.PathLike,
    store: str | os.PathLike,
    truth_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str | None = "test",
    crop: int | None = 512,
    ablate: str | None = "ours",
    min_height: float = 2.0,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the probe (module docstring); writes ``probe.json``, ``probe.png`` and
    ``probe_panel.png`` into ``out`` and returns what ``probe.json`` holds."""
    import torch

    from geosynth.ml.data.tensors import dem_stats, generator_inputs, prepare_window, quantize
    from geosynth.ml.evaluation.evaluate import eval_window
    from geosynth.ml.metrics import predict_classes
    from geosynth.ml.training.checkpoint import load_generator, load_unet
    from geosynth.ml.training.distributed import resolve_device

    if not generators:
        raise UsageError("the fusion probe needs at least one generator")
    if ablate is not None and ablate not in generators:
        raise UsageError(f"--ablate {ablate}: not one of the generators ({', '.join(generators)})")
    dev = resolve_device(device)
    opened = open_store(store)
    unet, ucfg = load_unet(unet_run, map_location=dev)
    nets = {name: load_generator(run, map_location=dev) for name, run in generators.items()}
    multiple = math.lcm(2**unet.config.depth, *(g.config.size_multiple for g, _ in nets.values()))
    h, w = eval_window(crop, opened.tile_shape, multiple)
    th, tw = opened.tile_shape
    rows, cols = slice((th - h) // 2, (th - h) // 2 + h), slice((tw - w) // 2, (tw - w) // 2 + w)
    tiles = opened.tiles(split, require=("rgb", "dem", LABELS))
    if not tiles:
        raise DataError(f"store {opened.path} has no complete tile in split {split!r}")
    readers = {name: opened.reader(name) for name in ("rgb", "dem", LABELS)}
    k = opened.num_classes
    rows_out = [(name, "real") for name in nets]
    if ablate is not None:
        rows_out.append((ablate, ABLATED))
    tallies = {row: _Tally() for row in rows_out}
    panel = None
    for done, index in enumerate(tiles, start=1):
        tile = opened.tile_ids[index]
        raw = {name: r.read(index, rows, cols) for name, r in readers.items()}
        truth = read_truth(truth_dir, tile, slice(None), slice(None))
        if truth["landcover"].shape != (th, tw):
            raise DataError(
                f"truth rasters of {tile} are {truth['landcover'].shape}, the store's tiles "
                f"{(th, tw)}: not the same grid"
            )
        truth = {n: v[rows, cols] for n, v in truth.items()}
        masks = truth_masks(truth["landcover"], truth["dsm"], truth["dtm"], opened.classes,
                            min_height)  # fmt: skip
        whole_dem = readers["dem"].read(index, slice(None), slice(None))
        real = prepare_window(raw, ("rgb",), k)["rgb"][None].to(dev)  # (1, 3, h, w)
        with torch.inference_mode():
            pred_real = predict_classes(unet(real).logits)[0].cpu().numpy()
        real255 = raw["rgb"][:3]
        images = {}
        for name, variant in rows_out:
            generator, gan = nets[name]
            window = dict(raw)
            if variant == ABLATED:
                window["dem"] = ablate_dem(raw["dem"], truth["dsm"], truth["dtm"], masks["probe"])
            stats = dem_stats(whole_dem) if gan.dem_norm == "tile" else None
            names = tuple(dict.fromkeys((*gan.inputs, LABELS)))
            sample = prepare_window(window, names, k, dem_norm=gan.dem_norm, dem_stats=stats)
            labels, raster = generator_inputs({n: v[None] for n, v in sample.items()}, gan.inputs)
            labels, raster = (None if t is None else t.to(dev) for t in (labels, raster))
            with torch.inference_mode():
                torch.manual_seed(0)  # a diffusion generator: the same noise for every variant
                fake = quantize("rgb", generator(labels, raster).float())  # (1, 3, h, w)
                pred_fake = predict_classes(unet(fake).logits)[0].cpu().numpy()
            fake255 = np.round((fake[0].cpu().numpy() + 1) * 127.5).astype(np.uint8)
            tallies[(name, variant)].update(masks, pred_fake, pred_real, fake255, real255)
            images[(name, variant)] = fake255
        if panel is None or masks["probe"].sum() > panel[0]:
            panel = (int(masks["probe"].sum()), tile, real255, masks["probe"], images)
        if progress is not None:
            progress(done, len(tiles))
    pixels = tallies[rows_out[0]].pixels
    result = {
        "format": FORMAT,
        "store": str(opened.path),
        "truth": str(truth_dir),
        "unet": str(unet_run),
        "split": split,
        "tiles": [opened.tile_ids[i] for i in tiles],
        "window": [h, w],
        "min_height_m": min_height,
        "pixels": pixels,
        "rows": [
            {
                "name": name,
                "dem": variant,
                "run": str(generators[name]),
                "inputs": list(nets[name][1].inputs),
                **tallies[(name, variant)].result(),
            }
            for name, variant in rows_out
        ],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_probe(result, out / PROBE_PNG)
    _save_panel(out / PANEL_PNG, panel, rows_out)
    write_text(out / PROBE_JSON, json.dumps(result, indent=2) + "\n")
    log.info("fusion probe: %s", "; ".join(summary_lines(result)))
    return result


def row_label(row: dict) -> str:
    return row["name"] if row["dem"] == "real" else f"{row['name']}, DEM {row['dem']}"


def summary_lines(result: dict) -> list[str]:
    """One line per row: agreement and error on the probe pixels and elsewhere."""

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def num(v):
        return "n/a" if v is None else f"{v:.1f}"

    return [
        f"{row_label(r)}: agreement {pct(r['agreement']['probe'])} on the probe pixels "
        f"({pct(r['agreement']['elsewhere'])} elsewhere), RGB error {num(r['error']['probe'])} "
        f"({num(r['error']['elsewhere'])} elsewhere)"
        for r in result["rows"]
    ]


def read_probe(path: str | os.PathLike) -> dict:
    """A probe's ``probe.json`` (a folder or the file); errors name the path."""
    return read_result(path, PROBE_JSON, "fusion probe", FORMAT)


# --------------------------------------------------------------------------- figures


def plot_probe(result: dict, path: str | os.PathLike) -> Path:
    """Agreement per row on the probe masks and elsewhere, as grouped bars."""
    keys = ("trees_hedges", "buildings", "elsewhere")
    rows = result["rows"]
    fig, ax = subplots(figsize=(8, 3.8))
    x = grouped_bars(ax, [
        (f"{key.replace('_', ' ')} ({result['pixels'][key]} px)",
         [np.nan if r["agreement"][key] is None else 100 * r["agreement"][key] for r in rows],
         {})
        for key in keys
    ])  # fmt: skip
    ax.set_xticks(x, [row_label(r) for r in rows])
    ax.set_ylim(0, 100)
    ax.set_ylabel("agreement with the real image's segmentation (%)")
    ax.set_title("fusion probe: where only the DEM knows what is there", fontsize=10)
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def _save_panel(path: Path, panel, rows_out) -> None:
    if panel is None:
        return
    _, tile, real255, mask, images = panel
    columns = [("real", "rgb", real255), ("probe pixels", "mask", mask)]
    columns += [(row_label({"name": n, "dem": v}), "rgb", images[(n, v)]) for n, v in rows_out]
    save_panel(path, columns, title=f"fusion probe, tile {tile} (centre window)", size=2.8)
