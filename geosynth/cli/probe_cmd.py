"""``geosynth fusion-probe``: the paper's Fig. 7 measured on the demo world's ground truth."""

from __future__ import annotations

import click

from geosynth.cli import options


def _named_runs(ctx, param, values):
    runs = {}
    for item in values:
        name, sep, run = item.partition("=")
        if not sep or not name or not run:
            raise click.BadParameter(f"expected NAME=RUN, got {item!r}", ctx=ctx, param=param)
        runs[name.strip()] = run.strip()
    return runs


@click.command("fusion-probe")
@click.option(
    "--generator",
    "generators",
    multiple=True,
    required=True,
    callback=_named_runs,
    metavar="NAME=RUN",
    help="A generator run folder of `geosynth train`, named (repeatable), e.g. ours=runs/ours.",
)
@options.unet_option("U-Net run folder of `geosynth train-unet` (real RGB).")
@options.store_option("The demo store.")
@click.option(
    "--truth",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The demo world's truth/ folder (<tile>_landcover.tif, _dsm.tif, _dtm.tif).",
)
@options.split_option("test", "Store split to probe.")
@click.option("--crop", type=click.IntRange(16), default=512, show_default=True,
              help="Edge of the centre window probed per tile.")  # fmt: skip
@click.option("--ablate", default="ours", show_default=True,
              help="Generator run again with the objects removed from its DEM ('' : none).")  # fmt: skip
@click.option("--min-height", type=float, default=2.0, show_default=True,
              help="Objects: DSM - DTM above this many metres.")  # fmt: skip
@options.out_folder_option("Folder for probe.json, probe.png, probe_panel.png.")
@options.device_option
def fusion_probe(generators, unet_run, store, truth, split, crop, ablate, min_height, out, device):
    """Where the DEM carries what the labels lack (single trees, hedges, building heights):
    how close each generator's image is to the real one there, and a DEM ablation.

    The masks come from the demo world's truth rasters; see geosynth.ml.evaluation.probe.
    """
    from geosynth.ml.evaluation.probe import fusion_probe as run
    from geosynth.ml.evaluation.probe import summary_lines

    with options.progress_bar("fusion probe", "tile") as progress:
        result = run(
            generators, unet_run, store, truth, out, split=split, crop=crop,
            ablate=ablate or None, min_height=min_height, device=device, progress=progress,
        )  # fmt: skip
    click.echo("\n".join(summary_lines(result)))
