"""``geosynth augment``: a store of synthesized training data, from a generator and a real store.

For every complete tile of a split (``train`` by default) the generator
synthesizes an image from

1. the tile's own inputs (``resynth``: the same labels, a new image);
2. edited inputs, the labels and the DEM edited together by :mod:`geosynth.edit.rules`:

   - ``swap``: every pixel of one class becomes another (``forest:grassland``);
     where the class stands above the ground (forest, buildings) the DEM
     becomes the ground interpolated from around it;
   - ``flood``: the water level raised to a quantile of the tile's DEM
     (``0.2``: the lowest 20 % of the heights, eroded): the flooded pixels
     become water and their DEM exactly the level;
   - ``random``: a disc of random size (an eighth to a third of the tile
     edge), centred on a random pixel of a class, turned into a plausible
     neighbour class (:data:`RANDOM_SWAPS`, e.g. forest to grassland with the
     DEM lowered to the ground), seeded per tile and edit.

The result is a store of the same contract (same classes, tile size,
normalisation and layout; :mod:`geosynth.store`), holding per synthesized
tile its labels, its DEM (when the source store has one), the synthesized
image and every other generator input, under the id ``<tile>.<edit tag>``
in the same split and with the source tile's georeferencing. Its
``geosynth:dataset`` is ``synthetic:<source dataset>``; its provenance records
the generator run and checkpoint, the source store and the edits, and each
tile's ``sources`` its source tile and edit. The store is assembled beside
``out`` and moved into place when complete: an error leaves nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from geosynth.edit.rules import RAISED_CLASSES, EditResult, flood, swap_classes
from geosynth.errors import DataError, UsageError
from geosynth.io import atomic_path
from geosynth.names import LABELS
from geosynth.store import TileData, TilePlan, create_store, open_store, verify

log = logging.getLogger(__name__)

#: Random edits: (from, to) class keys, each a change that happens in a landscape.
RANDOM_SWAPS = (
    ("forest", "grassland"),
    ("forest", "agricultural"),
    ("agricultural", "grassland"),
    ("grassland", "agricultural"),
)
#: Radius of a random edit's disc as a share of the tile edge: (smallest, largest).
RANDOM_RADIUS = (1 / 8, 1 / 3)
SYNTHETIC_PREFIX = "synthetic:"


@dataclass(frozen=True)
class Edit:
    """One way of turning a tile's inputs into new ones: ``kind`` and its parameters."""

    kind: str  # resynth, swap, flood, random
    source: str = ""  # swap: class key to replace
    target: str = ""  # swap: class key to put
    quantile: float = 0.0  # flood: the level as a quantile of the tile's DEM
    index: int = 0  # random: the k-th random edit of a tile

    @property
    def tag(self) -> str:
        if self.kind == "swap":
            return f"{self.source}-to-{self.target}"
        if self.kind == "flood":
            return f"flood-q{round(self.quantile * 100):02d}"
        if self.kind == "random":
            return f"random{self.index}"
        return "resynth"

    @property
    def changes_labels(self) -> bool:
        return self.kind != "resynth"


def plan_edits(
    resynth: bool = True,
    swaps: Sequence[tuple[str, str]] = (),
    floods: Sequence[float] = (),
    random_edits: int = 0,
) -> list[Edit]:
    """The edits of a run in the order their tiles are written; refuses an empty or bad plan."""
    edits = [Edit("resynth")] if resynth else []
    edits += [Edit("swap", source=a, target=b) for a, b in swaps]
    for q in floods:
        if not 0 < q < 1:
            raise UsageError(f"--flood {q:g}: a flood level is a quantile of the DEM in (0, 1)")
        edits.append(Edit("flood", quantile=float(q)))
    if random_edits < 0:
        raise UsageError(f"--random must be >= 0, got {random_edits}")
    edits += [Edit("random", index=k) for k in range(random_edits)]
    if not edits:
        raise UsageError("nothing to synthesize: give --resynth, --swap, --flood or --random")
    tags = [e.tag for e in edits]
    if len(set(tags)) != len(tags):
        raise UsageError(f"an edit is given twice: {', '.join(tags)}")
    return edits


def _random_swap(edit: Edit, hist: np.ndarray, classes, seed: int, tile: int):
    """The (from, to) pair of a random edit of a tile, from the classes it holds, or None."""
    rng = np.random.default_rng([seed, tile, edit.index, 1])
    pairs = [(a, b) for a, b in RANDOM_SWAPS if hist[classes.id_of(a)] > 0]
    if not pairs:
        return None, rng
    return pairs[int(rng.integers(len(pairs)))], rng


def applies(edit: Edit, hist: np.ndarray, classes, seed: int, tile: int, has_dem: bool) -> bool:
    """Whether ``edit`` changes a tile with class histogram ``hist``."""
    if edit.kind == "swap":  # some of the class, and ground around it to estimate from
        return 0 < hist[classes.id_of(edit.source)] < hist.sum()
    if edit.kind == "flood":
        return has_dem
    if edit.kind == "random":
        return _random_swap(edit, hist, classes, seed, tile)[0] is not None
    return True


def apply_edit(
    edit: Edit, seg: np.ndarray, dem: np.ndarray | None, classes, seed: int, tile: int
) -> tuple[EditResult, dict]:
    """The edited labels and DEM ``(H, W)`` of tile number ``tile``, and what the edit did."""
    if edit.kind == "resynth":
        h, w = seg.shape
        same = np.zeros((h, w), bool)
        return EditResult(seg, None if dem is None else dem.reshape(h, w), same), {}
    if dem is None:
        raise DataError(f"the {edit.tag} edit needs a DEM")
    if edit.kind == "flood":
        level = float(np.nanquantile(dem, edit.quantile))
        result = flood(seg, dem, level, water_id=classes.id_of("water"), check_range=False)
        return result, {"hmin": level}
    if edit.kind == "swap":
        pair, area = (edit.source, edit.target), None
    else:
        hist = np.bincount(seg.ravel(), minlength=classes.num_classes)  # as the store's class_hist
        pair, rng = _random_swap(edit, hist, classes, seed, tile)
        if pair is None:
            raise DataError(f"tile {tile} holds none of the classes of the random edits")
        rows, cols = np.nonzero(seg == classes.id_of(pair[0]))
        k = int(rng.integers(len(rows)))
        edge = min(seg.shape)
        radius = float(rng.uniform(*RANDOM_RADIUS)) * edge
        yy, xx = np.ogrid[: seg.shape[0], : seg.shape[1]]
        area = (yy - rows[k]) ** 2 + (xx - cols[k]) ** 2 <= radius**2
    a, b = (classes.id_of(key) for key in pair)
    result = swap_classes(seg, dem, a, b, area=area, lower_dem=pair[0] in RAISED_CLASSES)
    info = {"from": pair[0], "to": pair[1]}
    if area is not None:
        info["disc"] = {"row": int(rows[k]), "col": int(cols[k]), "radius": round(radius, 1)}
    return result, info


@dataclass
class AugmentResult:
    out: Path
    tiles: list[str] = field(default_factory=list)
    edits: list[str] = field(default_factory=list)
    changed: dict[str, float] = field(default_factory=dict)  # tag -> mean share of edited pixels


def augment(
    generator_run: str | os.PathLike,
    store,
    out: str | os.PathLike,
    edits: Sequence[Edit],
    *,
    split: str | None = "train",
    seed: int = 0,
    tiles: int | None = None,
    window: int | None = None,
    overlap: int | None = None,
    device: str = "cpu",
    storage_options: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AugmentResult:
    """Write the synthetic store ``out`` (see the module doc); ``tiles``: at most this many
    source tiles of ``split`` (the first ones), None for all."""
    from geosynth.ml.synthesis.synthesize import Synthesizer

    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} already exists; remove it or choose another --out")
    source = open_store(store, storage_options=storage_options)
    synth = Synthesizer.load(generator_run, device=device)
    synth.check((LABELS,) if any(e.changes_labels for e in edits) else (), tuple(source.modalities))
    config = synth.config
    if LABELS not in source.modalities:
        raise UsageError(f"store {source.path} has no labels (seg) to train a segmentation on")
    classes = source.classes
    for e in edits:
        for key in (e.source, e.target) if e.kind == "swap" else ():
            classes.id_of(key)  # a clear error for an unknown class
    has_dem = "dem" in source.modalities
    needs_dem = [e.tag for e in edits if e.kind in ("flood", "random", "swap")]
    if needs_dem and not has_dem:
        raise UsageError(
            f"store {source.path} has no DEM; the edits {', '.join(needs_dem)} edit it with the labels"
        )
    rows = source.tiles(split, require=(*config.inputs, LABELS))
    if not rows:
        raise DataError(f"store {source.path} has no complete tile in split {split!r} with "
                        f"{', '.join(dict.fromkeys((*config.inputs, LABELS)))}")  # fmt: skip
    rows = rows[:tiles] if tiles else rows
    hist = source.class_hist()
    jobs = [(i, e) for i in rows for e in edits if applies(e, hist[i], classes, seed, i, has_dem)]
    names = list(
        dict.fromkeys((LABELS, *(["dem"] if has_dem else []), *config.inputs, config.output))
    )
    specs = [source.modality_spec(n) for n in names]
    plans = [
        TilePlan(
            f"{source.tile_ids[i]}.{e.tag}",
            source.regions[i],
            source.splits[i],
            source.transform(i),
            source.tile_crs(i) or "",
        )
        for i, e in jobs
    ]
    from geosynth.ml.training.checkpoint import find_checkpoint

    checkpoint = str(find_checkpoint(generator_run))
    provenance = {
        "synthetic": {
            "generator_run": Path(generator_run).name,
            "generator_checkpoint": checkpoint,
            "generator": config.generator,
            "inputs": list(config.inputs),
            "output": config.output,
            "source_store": str(source.path),
            "source_dataset": source.dataset,
            "split": split,
            "seed": int(seed),
            "edits": [dict(asdict(e), tag=e.tag) for e in edits],
        }
    }
    result = AugmentResult(out, edits=[e.tag for e in edits])
    shares: dict[str, list[float]] = {}
    with atomic_path(out, tag="augmenting") as tmp:
        target = create_store(
            tmp,
            plans,
            tile_shape=source.tile_shape,
            modalities=specs,
            dataset=SYNTHETIC_PREFIX + source.dataset,
            crs=source.crs,
            classes=classes,
            normalisation=source.attrs.get("geosynth:normalisation"),
            provenance=provenance,
            layout=source.layout,
        )
        target.batch_writes = True
        for done, ((i, e), plan) in enumerate(zip(jobs, plans, strict=True), start=1):
            arrays = {n: source.read(n, i) for n in names if n != config.output}
            if config.output == "sar" or "sar" in config.inputs:
                arrays["sar_valid"] = source.read("sar_valid", i)
            edited, info = apply_edit(e, arrays[LABELS], arrays.get("dem"), classes, seed, i)
            arrays[LABELS] = edited.seg
            if has_dem:
                arrays["dem"] = edited.dem[None]
            image = synth(arrays, source.num_classes, device, window=window, overlap=overlap,
                          where=plan.tile_id)  # fmt: skip
            data = _tile_data(arrays, image, config.output)
            data.sources = {
                "source_tile": source.tile_ids[i],
                "edit": e.tag,
                "edited_fraction": round(float(edited.mask.mean()), 6),
                **info,
            }
            target.write_tile(plan.tile_id, data)
            shares.setdefault(e.tag, []).append(float(edited.mask.mean()))
            result.tiles.append(plan.tile_id)
            if progress:
                progress(done, len(jobs))
        from geosynth.store.write import consolidate

        consolidate(target.location)
        problems = verify(target)
        if problems:
            raise DataError(f"the synthetic store fails its check: {problems[0]}")
    result.changed = {tag: float(np.mean(v)) for tag, v in shares.items()}
    log.info("%s: %d synthesized tiles from %d tiles of %s", out, len(jobs), len(rows), source.path)
    return result


def _tile_data(arrays: dict, image: np.ndarray, output: str):

    extras = {}
    data = TileData(seg=arrays[LABELS], dem=arrays.get("dem"))
    for name, values in arrays.items():
        if name in (LABELS, "dem", "sar_valid"):
            continue
        if name in ("rgb", "sar"):
            setattr(data, name, values)
        else:
            extras[name] = values
    setattr(data, output, image)
    if output == "sar" or data.sar is not None:
        data.sar_valid = arrays.get("sar_valid", np.ones(image.shape[-2:], bool))
        if output == "sar":
            data.sar_valid = np.ones(image.shape[-2:], bool)  # synthesized everywhere
    data.extras = extras
    return data
