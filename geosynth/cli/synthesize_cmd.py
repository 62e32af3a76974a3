"""``geosynth synthesize``: whole tiles through a trained generator."""

from __future__ import annotations

import click

from geosynth.cli.options import (
    comma_list,
    device_name,
    device_option,
    load_inputs,
    out_folder_option,
    progress_bar,
    raster_options,
    storage_option,
)


@click.command()
@click.option(
    "--generator",
    "generator_run",
    required=True,
    type=click.Path(exists=True),
    help="Run folder or checkpoint of a trained generator.",
)
@click.option("--store", help="Store (a path or URL) to read the inputs from.")
@storage_option
@click.option("--tiles", callback=comma_list, help="Tiles of the store (default: all of --split).")
@click.option(
    "--split", default="test", show_default=True, help="Split used when --tiles is not given."
)
@raster_options
@out_folder_option()
@click.option("--window", type=click.IntRange(min=16), help="Window size (default: training crop).")
@click.option(
    "--overlap", type=click.IntRange(min=0), help="Window overlap (default: window/4, at most 32)."
)
@click.option("--sar-db", is_flag=True, help="Write SAR back in dB (20 log10 amplitude).")
@device_option
def synthesize(
    generator_run, store, storage_options, tiles, split, seg, dem, sar, out, window, overlap,
    sar_db, device,
):  # fmt: skip
    """Synthesize full tiles with a trained generator, as Cloud-Optimised GeoTIFFs and PNG panels.

    Windows of the training crop size overlap and are blended without seams.
    Each tile gives <tile>_<rgb|sar>.tif with the tile's CRS and transform and
    <tile>_panel.png (inputs, synthesized, and the real image when known).
    """
    from geosynth.ml.synthesize import Synthesizer, run_synthesis

    device = device_name(device)
    synth = Synthesizer.load(generator_run, device=device)
    if store and any((seg, dem, sar)):
        raise click.UsageError("give --store or input rasters, not both")
    names = [None]  # the user's own rasters
    if store:
        from geosynth.store import open_store

        s = open_store(store, storage_options=storage_options)
        names = tiles or [s.tile_ids[i] for i in s.tiles(split)]
        if not names:
            raise click.UsageError(f"store {store} has no complete tile in split {split!r}")
    with progress_bar("synthesize", "tile", total=len(names)) as progress:
        for done, tile in enumerate(names, 1):
            inputs = load_inputs(store, tile, seg, dem, sar, storage_options)
            files = run_synthesis(
                synth, inputs, out, window=window, overlap=overlap, sar_db=sar_db, device=device
            )
            progress(done, len(names))
            for f in files:
                click.echo(f)
