"""``geosynth evaluate`` and ``geosynth table``: Table III of the paper."""

from __future__ import annotations

import click

from geosynth.cli import options
from geosynth.names import EVAL_PROTOCOLS


@click.command("evaluate")
@options.generator_option("Generator run folder (or checkpoint) of `geosynth train`.")
@options.unet_option(
    "U-Net run folder (or checkpoint) of `geosynth train-unet`, trained on real images."
)
@options.store_option(
    "Zarr store (a path or URL) with the generator's inputs, the real image and seg."
)
@options.storage_option
@options.split_option("test", "Store split to score ('all': every tile).")
@options.out_folder_option(
    "Output folder (metrics.json, metrics.csv, table_row.md, iou_per_class.png; SAR "
    "generators also speckle.csv and speckle.png)."
)
@options.choice_option(
    "--protocol",
    choices=EVAL_PROTOCOLS,
    default="geosynth",
    help_text="paper: the conventions of the code published with the paper (pytorch-ignite; every "
    "pixel, class 0 predicted, absent classes score 0, the training crop's centre window); "
    "geosynth: labelled pixels only, absent classes left out, the largest window.",
)
@click.option(
    "--crop",
    type=click.IntRange(16),
    default=None,
    help="Edge of the centre window scored per tile [default: paper: the generator's training "
    "crop; geosynth: the largest that fits].",
)
@options.int_option(
    "--fd-grid",
    minimum=0,
    default=0,
    help_text="Also the Frechet distance over an N x N grid of windows per tile (N^2 times the "
    "samples; 0: only one vector per tile, as the paper).",
)
@options.batch_size_option(
    default=1,
    help_text="Tiles per forward pass (each whole window through G and the U-Net: memory grows "
    "with it; 1 keeps the peak to one window).",
)
@options.int_option(
    "--workers",
    minimum=0,
    default=0,
    help_text="DataLoader worker processes.",
)
@options.device_option
@click.option(
    "--name", default=None, help="Row name in the table [default: the --out folder name]."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing evaluation in --out.")
def evaluate(
    generator_run, unet_run, store, storage_options, split, out, protocol, crop, fd_grid,
    batch_size, workers, device, name, overwrite,
) -> None:  # fmt: skip
    """Score synthesized images by segmenting them (the paper's Table III and Fig. 5).

    The U-Net segments the real and the synthesized image of every tile of
    --split (a fixed centre window): mIoU and pixel accuracy of real vs
    ground truth, synthesized vs ground truth and synthesized vs the real
    image's segmentation (class 0 ignored), per-class IoU as a bar chart,
    and the Frechet distance between the U-Net encoder features of real and
    synthesized images. The U-Net must segment what the generator
    synthesizes (rgb or sar); for sar also the speckle statistics of the real
    and synthesized SAR (as geosynth sar-stats, per class over homogeneous
    areas). --protocol paper computes every number as the code published
    with the paper does (Table III comparable). Example:

    \b
        geosynth evaluate --generator runs/ours --unet runs/unet_rgb
        --store geonrw.zarr --split test --protocol paper --out eval/ours
    """
    from geosynth.analysis.results import block_lines
    from geosynth.ml.evaluation.evaluate import evaluate as run

    with options.progress_bar("evaluate", "batch", dynamic_ncols=True) as progress:
        result = run(
            generator_run, unet_run, store, None if split == "all" else split, out,
            crop=crop, batch_size=batch_size, device=device, workers=workers, name=name,
            overwrite=overwrite, progress=progress, storage_options=storage_options,
            protocol=protocol, fd_grid=fd_grid,
        )  # fmt: skip
    click.echo("\n".join(block_lines(result.metrics)))
    click.echo(f"results in {result.out}", err=True)


@click.command()
@click.argument("evals", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Markdown file.")
@click.option(
    "--allow-mixed",
    is_flag=True,
    help="Tabulate evaluations of different protocols (each row names its protocol).",
)
def table(evals, out, allow_mixed):
    """Assemble Table III (Markdown) from evaluation folders (their metrics.json), in order.

    Evaluations of different --protocol are refused unless --allow-mixed.
    """
    from geosynth.analysis.results import markdown_table, read_metrics
    from geosynth.io import write_text

    text = markdown_table([read_metrics(e) for e in evals], allow_mixed=allow_mixed)
    write_text(out, text)
    click.echo(text, nl=False)
