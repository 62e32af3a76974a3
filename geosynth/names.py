"""Every list of allowed values the command line offers, in one torch- and numpy-free module.

The modules that act on these values (the lidar stage, the networks, the
datasets) import them from here, and so does the command line: ``geosynth
--help`` builds its choices without importing numpy or torch, and no list
is written twice.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- data

#: Modalities a region build writes (``build-geonrw --modalities``), in stage order.
BUILD_MODALITIES = ("rgb", "dem", "seg", "sar")
#: Modalities the generators and the U-Net take or give.
NETWORK_MODALITIES = ("seg", "dem", "sar", "rgb")
#: The label modality: one-hot for the generators, class ids for the U-Net.
LABELS = "seg"
#: Rasters a generator can take besides the labels.
RASTER_INPUTS = ("dem", "sar", "rgb")
#: Images a generator synthesizes and the U-Net segments.
IMAGE_OUTPUTS = ("rgb", "sar")
#: Store splits of the catalog's regions.
SPLITS = ("train", "test")

#: Lidar returns kept by the dem stage (``--returns``).
RETURNS = ("first", "last", "all")
#: Height statistic per cell of the dem stage (``--stat``).
STATS = ("mean", "max", "min")

#: How a provider publishes a tiled source (``download --layout``): per-tile files, archives.
LAYOUTS = ("tiles", "packages")
#: How a folder lists its files (the catalog's ``listing_format``): ``auto`` reads
#: ``index.json``, else the folder's own answer (XML or an HTML page); or one of them only,
#: or ``index``: a name (and size) a line.
LISTING_FORMATS = ("auto", "json", "xml", "html", "index")
#: DFC2020 split rules (``import-dfc2020 --split-rule``).
DFC2020_SPLIT_RULES = ("paper", "code")
#: Image-array compression of a store (``StoreLayout.codec``).
CODECS = ("blosc-lz4", "blosc-zstd", "zstd", "none")

# --------------------------------------------------------------------------- networks

#: The GANs: ours, labels only ("Label"), raster only ("DEM"/"SAR"), concatenation, merge.
GAN_KINDS = ("ours", "spade", "pix2pix", "concat", "merge")
#: Every generator kind: the GANs and, beyond the paper, the diffusion generator.
GENERATOR_KINDS = (*GAN_KINDS, "diffusion")
#: What each generator kind consumes: (labels, raster); None: whatever ``--inputs`` give
#: (the diffusion generator takes labels, a raster or both, as the paper's three variants).
KIND_INPUTS: dict[str, tuple[bool | None, bool | None]] = {
    "ours": (True, True),
    "spade": (True, False),
    "pix2pix": (False, True),
    "concat": (True, True),
    "merge": (True, True),
    "diffusion": (None, None),
}
#: The diffusion generator's options (``train --generator diffusion``): what the network
#: predicts, the noise schedule, and the samplers of diffusers it samples with.
DIFFUSION_PREDICTIONS = ("epsilon", "v_prediction")
DIFFUSION_SCHEDULES = ("cosine", "linear")
DIFFUSION_SAMPLERS = ("ddim", "dpm")
#: The rows of the paper's Table III in its order, by the names the recipes give their runs
#: (``pipelines/*.yaml``), with the generator kind of each: the single inputs first.
TABLE3_ROWS = {
    "dem": "pix2pix",
    "label": "spade",
    "concat": "concat",
    "merge": "merge",
    "ours": "ours",
}
#: Spectral-norm placement in G and D.
SPECTRAL_MODES = ("all", "reference", "none")
#: DEM normalisation of the datasets: as stored, per tile, per crop.
DEM_NORMS = ("none", "tile", "crop")
#: Loss of the U-Net scorer (``train-unet --loss``): softmax cross entropy (class 0 ignored),
#: BCE on the one-hot map (class 0 included, the paper's code), or focal (softmax).
UNET_LOSSES = ("ce", "bce", "focal")
UNET_NORMS = ("none", "batch")  # the U-Net scorer: the paper's plain convs, or BatchNorm after each
#: Class weights of the U-Net's loss (``train-unet --class-weights``) from the training histogram.
CLASS_WEIGHTINGS = ("none", "inverse", "median", "sqrt")
#: Acquisition conditions a generator can be conditioned on (``train --conditions``):
#: the orthophoto's day of year (sin, cos) and flight year; the SAR scenes' incidence
#: angle, orbit direction and look direction (see :mod:`geosynth.ml.data.conditions`).
CONDITIONS = ("season", "year", "incidence", "orbit", "look")
#: Named seasons of ``synthesize --season`` and their day of year (mid-season, northern).
SEASON_DAYS = {"winter": 15, "spring": 105, "summer": 196, "autumn": 288}
#: SAR orbit directions (``synthesize --orbit``).
ORBITS = ("asc", "desc")
#: Where networks run (``auto``: CUDA when available).
DEVICES = ("auto", "cpu", "cuda")
#: Evaluation conventions (``evaluate --protocol``): the paper's code (pytorch-ignite) or ours.
EVAL_PROTOCOLS = ("paper", "geosynth")
#: Which fake D's step sees (``train --d-fake``): G's output before its update, or a new one.
D_FAKES = ("reuse", "regenerate")
#: Value range of the images a generator learns, or a U-Net reads (``--image-range``).
IMAGE_RANGES = ("symmetric", "unit")
#: Folder layouts of ``geosynth export``: COGs + STAC, or the published GeoNRW folder.
EXPORT_LAYOUTS = ("stac", "geonrw")
#: Order inside the generators' ResNet blocks (``train --block-order``): geosynth's
#: norm -> ReLU -> pad -> conv, or the paper's code's pad -> norm -> ReLU -> conv.
BLOCK_ORDERS = ("geosynth", "authors")
#: How D enters a training step (``train --d-step``): one forward on fake and real
#: together, losses averaged over D's scales; or the paper's code's step, D called on
#: fake and real apart (four calls per step), losses summed over the scales.
D_STEPS = ("joint", "authors")


def kind_inputs(kind: str, labels: bool, raster: bool) -> tuple[bool, bool]:
    """Whether ``kind`` uses labels and a raster, given what it is offered (a kind with fixed
    inputs ignores the offer; the diffusion generator takes what it gets)."""
    uses_labels, uses_raster = KIND_INPUTS[kind]
    return (labels if uses_labels is None else uses_labels,
            raster if uses_raster is None else uses_raster)  # fmt: skip


def generator_input_problem(kind: str, inputs: tuple[str, ...] | list[str]) -> str | None:
    """Why generator ``kind`` cannot take ``inputs`` (labels and/or rasters), or None."""
    rasters = [n for n in inputs if n != LABELS]
    if KIND_INPUTS[kind] == (None, None):
        return None if inputs else f"--generator {kind} needs --inputs (labels and/or rasters)"
    uses_labels, uses_raster = KIND_INPUTS[kind]
    if uses_labels == (LABELS in inputs) and uses_raster == bool(rasters):
        return None
    needs = " and ".join(
        what
        for what, used in ((LABELS, uses_labels), ("a raster (dem, sar, rgb)", uses_raster))
        if used
    )
    return f"--generator {kind} takes {needs} only; got --inputs {','.join(inputs)}"
