"""``geosynth import-weights``: the paper's published networks as geosynth run folders.

The code published with the paper (gbaier/rs_img_synth) saves, per GAN run, a
folder with ``config.yml`` (``model``: ``model_cap``, ``n_sampling``,
``n_scales``, ``concat``; ``training``: ``crop``, ``batch_size``, ...;
``dataset``: ``name``, ``input``, ``output``), ``model_gnet.pt`` and
``model_dnet.pt``: state dicts of the DDP-wrapped networks (keys prefixed
``module.``), with ``torch.nn.utils.spectral_norm``'s ``weight_orig``,
``weight_u`` and ``weight_v``. Its U-Net scorer is saved as a pickled module,
which only that code can unpickle: :func:`read_state_dict` refuses it and says
how to export its state dict.

Each of the authors' tensors is renamed to geosynth's module path by the
rules below and must then match a tensor of geosynth's network of the same
shape: every tensor on both sides is accounted for, never matched by position.
Two inputs are concatenated in another order: the discriminator's (and the
``concat`` generator's) input channels follow the authors' ``dataset.input``
order (e.g. ``[dem, seg]``, then the image), geosynth's are labels first,
then the rasters. The imported networks keep the authors' weights as they are
and read their inputs in that order (``condition_order`` and ``input_order``
of their configs), so that every sum runs in the same order as there.

The run folder gets the options under which geosynth computes what the
authors' code computes (``block_order: authors``, ``spectral_norm:
reference``, ``d_step: authors``, ``image_range: unit``, D 64 wide with the
config's scales; the U-Net: ``image_range: unit``), so ``evaluate``,
``synthesize`` and the edits use it as they use a run of ``geosynth train``.
An imported run has no optimizer state: it cannot be resumed.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from geosynth.errors import DataError, UsageError
from geosynth.ml.networks.configs import (
    DiscriminatorConfig,
    UNetConfig,
    generator_config_for,
)
from geosynth.ml.networks.discriminator import build_discriminator
from geosynth.ml.networks.generators import build_generator
from geosynth.ml.networks.unet import build_unet
from geosynth.ml.training.checkpoint import RunFolder, save_checkpoint
from geosynth.ml.training.config import GanConfig, UNetRunConfig
from geosynth.names import IMAGE_OUTPUTS, LABELS, NETWORK_MODALITIES

AUTHORS_CONFIG = "config.yml"
AUTHORS_GENERATOR = "model_gnet.pt"
AUTHORS_DISCRIMINATOR = "model_dnet.pt"
AUTHORS_D_CAP = 64  # PatchGAN(init_nc=64) for every run of the authors' code
#: Channels per input of the authors' datasets (``N_CHANNELS`` in their datasets/nrw.py and
#: datasets/dfc.py; seg: 10 classes + unlabelled, one-hot)
AUTHORS_CHANNELS = {
    "nrw": {"rgb": 3, "sar": 1, "dem": 1, "seg": 11},
    "dfc": {"rgb": 3, "sar": 2, "seg": 11},
}

Rule = tuple[str, str | Callable[[re.Match], str]]

# the authors' module paths -> geosynth's (applied in order, each where it matches)
SPECTRAL_RULES: list[Rule] = [
    (r"\.weight_orig$", ".parametrizations.weight.original"),
    (r"\.weight_u$", ".parametrizations.weight.0._u"),
    (r"\.weight_v$", ".parametrizations.weight.0._v"),
]
GENERATOR_RULES: list[Rule] = [
    (r"^encoder\.init_conv\.", "encoder.stem."),
    (r"^init_conv\.", "embed.conv."),  # SPADEGenerator
    (r"^encoder\.down(\d+)\.", r"encoder.down.\1."),
    (r"^(?:body|head)\.body(\d+)\.", r"body.blocks.\1."),
    (r"^decoder\.up(\d+)\.", r"decoder.stages.\1."),
    (r"^decoder\.final_conv\.", "to_image."),
    (r"\.mlp_shared\.", ".shared."),
    (r"\.mlp_gamma\.", ".gamma."),
    (r"\.mlp_beta\.", ".beta."),
]
DISCRIMINATOR_RULES: list[Rule] = [
    (r"^disc_(\d+)\.init_conv\.0\.", r"scales.\1.layers.0.0."),
    (r"^disc_(\d+)\.conv_(\d+)\.0\.", lambda m: f"scales.{m[1]}.layers.{int(m[2]) + 1}.0."),
    (r"^disc_(\d+)\.final_conv\.", r"scales.\1.final."),
]
UNET_RULES: list[Rule] = [
    (r"^down_path\.", "down."),
    (r"^body\.", "bottom."),
    (r"^upsamplers\.", "up."),
    (r"^up_path\.", "up_conv."),
    (r"^last\.", "head."),
]

EXPORT_HINT = (
    "export its state dict with the code that wrote it, in that repository: python -c "
    "\"import torch; torch.save(torch.load('{path}', weights_only=False).state_dict(), "
    "'{stem}_state.pt')\", then import {stem}_state.pt"
)


# --------------------------------------------------------------------------- reading


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` through ``torch.load(weights_only=True)``, DDP's
    ``module.`` prefixes removed; a pickled module is refused with the way to export it."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found[1]})" if found else ""
        raise DataError(
            f"{path} holds a pickled object{what} that only the code which wrote it can load, "
            "not a state dict; " + EXPORT_HINT.format(path=path.name, stem=path.stem)
        ) from None
    except Exception as exc:  # truncated file, not a torch file
        raise DataError(f"{path} is not a readable torch file: {exc}") from None
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise DataError(f"{path} does not hold a state dict (names -> tensors)")
    return {k.removeprefix("module."): v for k, v in data.items()}


def read_authors_config(folder: Path) -> dict[str, Any]:
    """The authors' ``config.yml`` of a run folder (``yaml.safe_load``)."""
    path = folder / AUTHORS_CONFIG
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path} is not readable: {exc}") from None
    if not isinstance(data, dict) or not {"model", "dataset"} <= set(data):
        raise DataError(f"{path} is not a config.yml of the paper's code (model, dataset)")
    return data


# --------------------------------------------------------------------------- mapping


def rename(name: str, rules: list[Rule]) -> str:
    """The authors' tensor name in geosynth's module paths."""
    for pattern, repl in [*rules, *SPECTRAL_RULES]:
        name = re.sub(pattern, repl, name)
    return name


def channel_order(authors_inputs: list[str], channels: Mapping[str, int]) -> list[int]:
    """For each channel of the authors' concatenation (their input order), the index of the
    same channel in geosynth's (labels first, then the rasters in the given order): the
    ``condition_order`` / ``input_order`` of the imported networks."""
    start, offsets = 0, {}
    ours = [LABELS] if LABELS in authors_inputs else []
    ours += [name for name in authors_inputs if name != LABELS]
    for name in ours:
        offsets[name] = start
        start += channels[name]
    return [offsets[name] + i for name in authors_inputs for i in range(channels[name])]


def transplant(
    module: torch.nn.Module, theirs: Mapping[str, torch.Tensor], rules: list[Rule], source: Path
) -> dict[str, torch.Tensor]:
    """``theirs`` renamed to ``module``'s tensor names, each checked for its shape; every tensor
    of either side must have its counterpart. Returns the renamed state (not loaded yet)."""
    ours = module.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    unmatched, wrong = [], []
    for name, tensor in theirs.items():
        target = rename(name, rules)
        if target not in ours:
            unmatched.append(name)
        elif ours[target].shape != tensor.shape:
            wrong.append(f"{name} {tuple(tensor.shape)} -> {target} {tuple(ours[target].shape)}")
        else:
            renamed[target] = tensor.to(ours[target].dtype)
    missing = sorted(set(ours) - set(renamed) - {rename(n, rules) for n in unmatched})
    problems = []
    if unmatched:
        problems.append(f"no counterpart for {', '.join(unmatched[:5])}")
    if wrong:
        problems.append(f"shapes differ: {'; '.join(wrong[:5])}")
    if missing:
        problems.append(f"geosynth's {', '.join(missing[:5])} not in the file")
    if problems:
        more = sum(len(p) for p in (unmatched, wrong, missing))
        raise DataError(
            f"{source}: the weights do not fit {type(module).__name__} ({more} tensor(s)): "
            + "; ".join(problems)
        )
    return renamed


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    module.load_state_dict(state, strict=True)
    return module.eval()


# --------------------------------------------------------------------------- GAN runs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _authors_kind(inputs: list[str], concat: bool) -> str:
    """The authors' ``get_generator``: seg alone SPADE, no seg pix2pix, ``--concat``
    concatenation, else SPADE everywhere (``ours``)."""
    if inputs == [LABELS]:
        return "spade"
    if LABELS not in inputs:
        return "pix2pix"
    return "concat" if concat else "ours"


def _channels(dataset: str, source: Path) -> dict[str, int]:
    if dataset not in AUTHORS_CHANNELS:
        raise DataError(
            f"{source}: dataset {dataset!r} is not one of the paper's code's "
            f"({', '.join(AUTHORS_CHANNELS)})"
        )
    return AUTHORS_CHANNELS[dataset]


def import_gan_run(
    source: Path,
    out: Path,
    store: str,
    *,
    inputs: list[str] | None = None,
    output: str | None = None,
    concat: bool | None = None,
    dataset: str | None = None,
) -> Path:
    """The authors' GAN run folder ``source`` as the geosynth run folder ``out``."""
    g_path = source / AUTHORS_GENERATOR
    d_path = source / AUTHORS_DISCRIMINATOR
    config = read_authors_config(source) if (source / AUTHORS_CONFIG).is_file() else None
    model = (config or {}).get("model", {})
    data = (config or {}).get("dataset", {})
    training = (config or {}).get("training", {})
    inputs = inputs or data.get("input")
    output = output or data.get("output")
    if not inputs or not output:
        raise UsageError(
            f"{source} has no {AUTHORS_CONFIG}: give --inputs (in the order of the run's "
            "--input) and --output"
        )
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    for name in inputs:
        if name not in NETWORK_MODALITIES:
            raise DataError(
                f"{source}: input {name!r} is not one of {', '.join(NETWORK_MODALITIES)}"
            )
    if output not in IMAGE_OUTPUTS:
        raise DataError(f"{source}: output {output!r} is not one of {', '.join(IMAGE_OUTPUTS)}")
    concat = bool(model.get("concat", False) if concat is None else concat)
    kind = _authors_kind(inputs, concat)
    dataset = dataset or data.get("name", "nrw")
    channels = _channels(dataset, source)
    for name in [*inputs, output]:
        if name not in channels:
            raise DataError(f"{source}: the paper's code has no {name!r} for dataset {dataset!r}")

    g_state = read_state_dict(g_path)
    first = g_state.get("encoder.init_conv.1.weight_orig", g_state.get("init_conv.1.weight_orig"))
    if first is None:
        raise DataError(f"{g_path}: no initial convolution (encoder.init_conv / init_conv)")
    n_sampling = int(model.get("n_sampling", 4))
    cap = first.shape[0] // (2**n_sampling if kind == "spade" else 1)
    if model.get("model_cap") not in (None, cap):
        raise DataError(
            f"{g_path}: width {cap} differs from config.yml's model_cap {model['model_cap']}"
        )
    crop = training.get("crop", 256)
    crop = int(crop[0] if isinstance(crop, list) else crop)
    n_scales = int(model.get("n_scales", 2))

    labels = channels[LABELS] if LABELS in inputs else 0
    rasters = sum(channels[name] for name in inputs if name != LABELS)
    order = tuple(channel_order(inputs, channels))
    identity = order == tuple(range(len(order)))
    g_config = generator_config_for(
        kind, labels, rasters, channels[output], capacity=cap, n_sampling=n_sampling,
        spectral_norm="reference", block_order="authors",
        input_order=None if kind != "concat" or identity else order,
    )  # fmt: skip
    generator = build_generator(g_config)
    _load(generator, transplant(generator, g_state, GENERATOR_RULES, g_path))

    d_config = DiscriminatorConfig.for_generator(
        g_config, num_scales=n_scales, capacity=AUTHORS_D_CAP, spectral_norm="reference",
        condition_order=None if identity else order,
    )  # fmt: skip
    models = {"generator": {"config": g_config.to_dict(), "state": generator.state_dict()}}
    files = {AUTHORS_GENERATOR: _sha256(g_path)}
    if d_path.is_file():
        discriminator = build_discriminator(d_config)
        d_state = read_state_dict(d_path)
        _load(discriminator, transplant(discriminator, d_state, DISCRIMINATOR_RULES, d_path))
        models["discriminator"] = {
            "config": d_config.to_dict(),
            "state": discriminator.state_dict(),
        }
        files[AUTHORS_DISCRIMINATOR] = _sha256(d_path)

    run = GanConfig(
        store=store, out=str(out), inputs=tuple(inputs), output=output, generator=kind,
        cap=cap, d_cap=AUTHORS_D_CAP, d_scales=n_scales, spectral_norm="reference",
        block_order="authors", d_step="authors", d_fake="regenerate", image_range="unit",
        flip=dataset != "dfc", crop=crop,
        batch_size=int(training.get("batch_size", 32)), epochs=int(training.get("epochs", 200)),
        amp=False,
    )  # fmt: skip
    return _write_run(out, run, models, source, files)


def import_unet(source: Path, out: Path, store: str, *, image: str = "rgb") -> Path:
    """The authors' U-Net state dict ``source`` (exported, see :data:`EXPORT_HINT`) as the
    geosynth run folder ``out`` (``train-unet`` layout)."""
    state = read_state_dict(source)
    head = state.get("last.weight")
    first = state.get("down_path.0.0.weight")
    if head is None or first is None:
        raise DataError(f"{source}: not the paper's U-Net (no down_path.0.0 / last weights)")
    depth = len({k.split(".")[1] for k in state if k.startswith("down_path.")})
    u_config = UNetConfig(
        in_channels=first.shape[1], num_classes=head.shape[0], base_channels=first.shape[0],
        depth=depth, input_range="unit",
    )  # fmt: skip
    unet = build_unet(u_config)
    _load(unet, transplant(unet, state, UNET_RULES, source))
    run = UNetRunConfig(store=store, out=str(out), input=image, loss="bce", image_range="unit",
                        amp=False)  # fmt: skip
    models = {"unet": {"config": u_config.to_dict(), "state": unet.state_dict()}}
    return _write_run(out, run, models, source, {source.name: _sha256(source)})


def _write_run(out: Path, run, models: dict, source: Path, files: dict) -> Path:
    folder = RunFolder(out)
    folder.check_start(resume=False)
    folder.write_config(run)
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    payload = {
        "task": run.task, "step": 0, "epoch": 0, "epoch_step": 0, "config": run.to_dict(),
        "models": models, "optimizers": {}, "rng": {}, "metrics": {},
        "imported": {"from": str(source), "sha256": files},
    }  # fmt: skip
    return save_checkpoint(folder.last, payload)


def import_weights(
    source: Path,
    out: Path,
    store: str,
    *,
    inputs: list[str] | None = None,
    output: str | None = None,
    concat: bool | None = None,
    dataset: str | None = None,
    image: str = "rgb",
) -> tuple[str, Path]:
    """``(what, checkpoint)``: a GAN run folder of the authors' code (``config.yml``,
    ``model_gnet.pt``) or a U-Net state dict file, as the geosynth run folder ``out``.
    ``inputs``, ``output``, ``concat``, ``dataset``: a GAN run's, where its config.yml lacks
    them; ``image``: what the U-Net segments."""
    if source.is_dir():
        if (source / AUTHORS_GENERATOR).is_file():
            gan = dict(inputs=inputs, output=output, concat=concat, dataset=dataset)
            return "gan", import_gan_run(source, out, store, **gan)
        pickles = sorted(source.glob("*.pt"))
        if len(pickles) == 1:  # the U-Net run folder of train_unet.py
            return "unet", import_unet(pickles[0], out, store, image=image)
        raise DataError(
            f"{source} holds neither {AUTHORS_GENERATOR} (a GAN run of the paper's code) nor "
            "one U-Net .pt file"
        )
    if not source.exists():
        raise DataError(f"{source} does not exist")
    state = read_state_dict(source)
    if "last.weight" in state:
        return "unet", import_unet(source, out, store, image=image)
    raise UsageError(
        f"{source} is not a U-Net state dict; for a GAN give the run folder of the paper's "
        f"code (with {AUTHORS_GENERATOR} and {AUTHORS_CONFIG})"
    )
