"""``geosynth import-weights``: a network of the code published with the paper as a run folder."""

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
