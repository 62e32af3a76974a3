"""``geosynth build-geonrw`` and ``geosynth stats``."""

from __future__ import annotations

import click

from geosynth.cli.options import comma_list, run_with_tile_bar


@click.command("build-geonrw")
@click.option("--region", required=True, help="Catalog region (name or alias): cologne, demo, ...")
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Store to write (default: <region>.zarr). An existing store is resumed.",
)
@click.option(
    "--source-dir",
    type=click.Path(file_okay=False),
    help="Folder with the region's raw files (default for demo: the generated demo world).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes.",
)
@click.option("--scheduler", help="dask.distributed scheduler address (instead of --workers).")
@click.option("--tiles", callback=comma_list, help="Only these tiles, e.g. 356_5645,357_5645.")
@click.option(
    "--modalities",
    callback=comma_list,
    help="Subset of rgb,dem,seg,sar (default: all; sar when SAR scenes exist).",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="JSON build report (default: <out>.report.json).",
)
@click.pass_context
def build_geonrw(ctx, region, out, source_dir, workers, scheduler, tiles, modalities, report):
    """Build a region's raw files into a GeoNRW Zarr store, tile by tile, in parallel.

    Runs the aerial, dem, landcover and sar stages per tile; tiles already
    complete in the store are skipped, so a killed build finishes on rerun.
    Exits 1 when any tile failed (the report names the file and the reason).
    """
    from geosynth.build import build_region
    from geosynth.catalog import load_catalog
    from geosynth.grid import TileId

    if scheduler and ctx.get_parameter_source("workers").name != "DEFAULT":
        raise click.UsageError("give --workers or --scheduler, not both")
    for t in tiles or []:
        TileId.parse(t)
    catalog = load_catalog()
    name = catalog.region(region).name
    out = out or f"{name}.zarr"
    run_with_tile_bar(
        f"build {name}",
        lambda on_tile, on_plan: build_region(
            name,
            out,
            source_dir=source_dir,
            workers=workers,
            scheduler=scheduler,
            tiles=tiles,
            modalities=modalities,
            catalog=catalog,
            report_path=report,
            progress=on_tile,
            on_plan=on_plan,
        ),
    )


@click.command()
@click.argument("store", type=click.Path())
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="stats.png",
    show_default=True,
    help="PNG figure; the table goes beside it as .csv.",
)
def stats(store, out):
    """Per-class pixel shares by split (the paper's Fig. 2), as a PNG and a CSV."""
    from geosynth.stats import class_shares, plot_class_shares, write_shares_csv
    from geosynth.store import open_store

    s = open_store(store)
    shares = class_shares(s)
    png = plot_class_shares(shares, s.classes, out)
    csv = write_shares_csv(shares, s.classes, png.with_suffix(".csv"))
    click.echo(f"wrote {png} and {csv}")
