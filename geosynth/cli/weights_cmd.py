"""``geosynth import-weights`` and ``export-weights``: networks in and out of run folders."""

from __future__ import annotations

from pathlib import Path

import click

from geosynth.cli import options
from geosynth.names import IMAGE_OUTPUTS


@click.command("import-weights")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@options.store_option("Store the imported networks will be evaluated on (recorded in the run).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New run folder.")
@click.option(
    "--inputs",
    callback=options.comma_list,
    help="A GAN run without config.yml: its --input, in that order (e.g. dem,seg).",
)
@click.option(
    "--output",
    type=click.Choice(IMAGE_OUTPUTS),
    help="A GAN run without config.yml: its --output.",
)
@click.option(
    "--concat/--no-concat",
    default=None,
    help="A GAN run without config.yml: trained with --concat.",
)
@click.option(
    "--dataset",
    type=click.Choice(["nrw", "dfc"]),
    help="A GAN run without config.yml: its --dataset [default: nrw].",
)
@click.option(
    "--image",
    type=click.Choice(IMAGE_OUTPUTS),
    default="rgb",
    show_default=True,
    help="A U-Net: the image it segments.",
)
def import_weights(source, store, out, inputs, output, concat, dataset, image):
    """Turn a network of the paper's code (gbaier/rs_img_synth) into a geosynth run folder.

    SOURCE: the folder of one of its GAN runs (config.yml, model_gnet.pt and
    model_dnet.pt), or a state dict of its U-Net scorer (that code saves the
    U-Net as a pickled module, which is refused with the command that exports
    its state dict). Every tensor is mapped by name and shape; the run folder
    gets the switches under which geosynth computes what that code computes
    (--block-order authors, --spectral-norm reference, --d-step authors,
    --image-range unit), for evaluate, synthesize and the edits.
    """
    from geosynth.ml.training.import_weights import import_weights as run

    what, checkpoint = run(
        source, out, store, inputs=inputs, output=output, concat=concat, dataset=dataset,
        image=image,
    )  # fmt: skip
    click.echo(f"{source}: the paper's {what} networks in {out} ({checkpoint.name})")


@click.command("export-weights")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The weights file to write (.pt).")  # fmt: skip
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="A GAN trained with --ema: its moving average of the weights.")  # fmt: skip
def export_weights(run, out, ema):
    """Write RUN's networks alone, for sharing: no Adam state, no discriminator.

    RUN: a run folder (or checkpoint) of train or train-unet. A checkpoint holds
    Adam's two moments per weight and, for a GAN, the discriminator: resuming
    needs them, sharing does not. evaluate, synthesize and the edits read the
    file as they read the run (--generator FILE, --unet FILE); it cannot be
    resumed.
    """
    from geosynth.ml.training.checkpoint import export_weights as run_export

    path, before, after = run_export(run, out, ema=ema)
    click.echo(f"{path}: {after / 1e6:.1f} MB (the checkpoint: {before / 1e6:.1f} MB)")
