"""``geosynth augment``, ``geosynth score-unet`` and ``geosynth augment-table``: synthesized
training data for segmentation, scored on real images."""

from __future__ import annotations

import click

from geosynth.cli import options


def _swap(ctx, param, values):
    pairs = []
    for text in values:
        a, sep, b = text.partition(":")
        if not (sep and a.strip() and b.strip()):
            raise click.BadParameter(f"{text!r}: expected FROM:TO, e.g. forest:grassland")
        pairs.append((a.strip(), b.strip()))
    return pairs


def _floats(ctx, param, value):
    if not value:
        return []
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated numbers") from None


@click.command("augment")
@options.generator_option("Generator run folder (or checkpoint) of `geosynth train`.")
@options.store_option("Real store (a path or URL) whose tiles are edited.")
@options.storage_option
@click.option("--out", required=True, type=click.Path(), help="The synthetic store to write.")
@options.split_option("train", "Split of --store to use.")
@click.option(
    "--resynth/--no-resynth", default=True, show_default=True, help="Each tile's own inputs."
)
@click.option(
    "--swap", "swaps", multiple=True, callback=_swap, metavar="FROM:TO",
    help="Class swap, e.g. forest:grassland (repeatable); the DEM follows.",
)  # fmt: skip
@click.option(
    "--flood", "floods", callback=_floats, metavar="Q,Q,...",
    help="Flood levels as quantiles of each tile's DEM, e.g. 0.1,0.2,0.3.",
)  # fmt: skip
@click.option(
    "--random", "random_edits", type=click.IntRange(0), default=0, show_default=True,
    help="Random plausible edits per tile (a disc of one class turned into a neighbour class).",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random edits.")
@click.option("--tiles", type=click.IntRange(1), help="At most this many tiles of --split.")
@options.window_options
@options.device_option
def augment(
    generator_run, store, storage_options, out, split, resynth, swaps, floods, random_edits,
    seed, tiles, window, overlap, device,
):  # fmt: skip
    """Write a store of synthesized training data: re-synthesized and edited tiles.

    For every tile of --split the generator synthesizes an image from its own
    inputs (--resynth) and from edited inputs: class swaps (--swap), floods
    (--flood) and random plausible edits (--random); labels and DEM are edited
    together. The store has the source's contract, classes and splits; its
    geosynth:dataset is synthetic:<source> and its provenance records the
    generator and the edits. Train on both with

    \b
        geosynth train-unet --store real.zarr --extra-store synth.zarr --mix 0.5 ...
    """
    from geosynth.ml.synthesis.augment import augment as run
    from geosynth.ml.synthesis.augment import plan_edits

    edits = plan_edits(resynth, swaps, floods, random_edits)
    device = options.device_name(device)
    with options.progress_bar("augment", "tile") as progress:
        result = run(
            generator_run, store, out, edits, split=split, seed=seed, tiles=tiles, window=window,
            overlap=overlap, device=device, storage_options=storage_options, progress=progress,
        )  # fmt: skip
    for tag, share in result.changed.items():
        click.echo(f"{tag}: {share:.1%} of the pixels edited on average")
    click.echo(f"{len(result.tiles)} synthesized tiles in {result.out}")


@click.command("score-unet")
@options.unet_option()
@options.store_option("Store with the real images and labels.")
@options.storage_option
@options.split_option("test", "Split to score.")
@options.out_folder_option("Folder of scores.json.")
@click.option("--name", help="Row name in the table [default: the --out folder name].")
@click.option("--crop", type=click.IntRange(16), help="Centre window per tile [default: largest].")
@options.batch_size_option()
@options.device_option
def score_unet(unet_run, store, storage_options, split, out, name, crop, batch_size, device):
    """Score a U-Net on the real images of a split: mIoU, pixel accuracy, per-class IoU."""
    from geosynth.ml.evaluation.score_unet import score_unet as run

    s = run(
        unet_run, store, split, out, name=name, crop=crop, batch_size=batch_size,
        device=device, storage_options=storage_options,
    )  # fmt: skip
    click.echo(f"{s['name']}: mIoU {s['miou']:.3f}, pixel accuracy {s['pixel_acc']:.3f}")


@click.command("augment-table")
@click.argument("scores", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Markdown table.")
@click.option("--figure", type=click.Path(dir_okay=False), help="PNG of the per-class IoU.")
@click.option("--title", default="", help="Figure title.")
def augment_table(scores, out, figure, title):
    """Table (mean ± sd over seeds) and per-class IoU figure of `score-unet` results.

    SCORES: folders of score-unet (or their scores.json), or folders searched for them.
    """
    from geosynth.analysis.augment_scores import (
        collect_scores,
        group_scores,
        markdown_table,
        plot_groups,
    )
    from geosynth.io import write_text

    groups = group_scores(collect_scores(scores))
    text = markdown_table(groups)
    write_text(out, text)
    if figure:
        plot_groups(groups, figure, title)
    click.echo(text, nl=False)
