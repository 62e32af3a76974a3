"""``geosynth edit-flood`` and ``geosynth edit-classes``: edit a tile's inputs and show what the
sensor would see before and after."""

from __future__ import annotations

import click

from geosynth.cli import options


def edit_options(func):
    """The tile (``--store/--tile`` or rasters), the generators to synthesize with, ``--out``."""
    func = options.device_option(func)
    func = options.out_folder_option()(func)
    func = click.option(
        "--sar-generator",
        "sar_run",
        type=click.Path(exists=True),
        help="A second generator, e.g. for SAR, synthesized as well.",
    )(func)
    func = options.generator_option(
        "Generator run (RGB or SAR) to synthesize before and after.", required=False
    )(func)
    func = options.raster_options(func)
    func = click.option("--tile", help="Tile id in the store, e.g. 356_5645.")(func)
    func = options.storage_option(func)
    return click.option("--store", help="Store (a path or URL) holding the tile.")(func)


def _synths(generator_run, sar_run, device: str):
    from geosynth.ml.synthesis.synthesize import Synthesizer

    return [Synthesizer.load(run, device=device) for run in (generator_run, sar_run) if run]


def _echo_report(report, what: str) -> None:
    for tag in report.tags:
        click.echo(
            f"{what}: {report.fraction_before:.2%} before, {report.fraction_after[tag]:.2%} "
            f"after ({tag})"
        )
    for f in report.files:
        click.echo(f)


@click.command("edit-flood")
@edit_options
@click.option(
    "--hmin",
    required=True,
    help="Water level in the DEM's units, or START:STOP:STEP for a rising sequence.",
)
@options.int_option(
    "--erosion",
    minimum=0,
    default=3,
    help_text="Size of the square that erodes the flood mask (drops small perturbations).",
)
@click.option(
    "--connected",
    is_flag=True,
    help="Flood only areas connected to existing water (the paper does not).",
)
@click.option(
    "--unet",
    "unet_run",
    type=click.Path(exists=True),
    help="U-Net on RGB: report the share of the new water it classifies as water "
    "(OUT/water_rate.json; needs --generator).",
)
def edit_flood(
    store, storage_options, tile, seg, dem, sar, generator_run, sar_run, out, device, hmin,
    erosion, connected, unet_run,
):  # fmt: skip
    """Raise the water level to HMIN and show what the sensor would see (the paper's Fig. 9).

    The mask is DEM < HMIN, eroded; it becomes water and its DEM exactly HMIN.
    Writes the edited inputs (GeoTIFF), the synthesized images before and after
    (COG), a before/after PNG panel per level and, for a sequence, an animated GIF.
    """
    from geosynth.edit.rules import parse_levels
    from geosynth.ml.synthesis.editing import flood_run

    levels = parse_levels(hmin)
    inputs = options.load_inputs(store, tile, seg, dem, sar, storage_options)
    device = options.device_name(device)
    report = flood_run(
        inputs, levels, out, synths=_synths(generator_run, sar_run, device), erosion=erosion,
        connected=connected, device=device, unet_run=unet_run,
    )  # fmt: skip
    _echo_report(report, "water")


@click.command("edit-classes")
@edit_options
@click.option(
    "--from", "from_class", required=True, help="Class key or name to replace, e.g. forest."
)
@click.option(
    "--to", "to_class", required=True, help="Class key or name to put, e.g. agricultural."
)
@click.option(
    "--where",
    type=click.Path(exists=True, dir_okay=False),
    help="Only inside these polygons (GeoJSON, GeoPackage, ...).",
)
def edit_classes(
    store, storage_options, tile, seg, dem, sar, generator_run, sar_run, out, device,
    from_class, to_class, where,
):  # fmt: skip
    """Replace one class by another (e.g. forest by agricultural); the DEM follows.

    Where the replaced class stands above the ground (forest, buildings) the
    DEM inside the edit becomes the ground interpolated from the surrounding
    heights, never higher than before.
    """
    from geosynth.edit.rules import area_mask
    from geosynth.ml.synthesis.editing import classes_run

    inputs = options.load_inputs(store, tile, seg, dem, sar, storage_options)
    area = area_mask(where, inputs.grid, inputs.name) if where else None
    device = options.device_name(device)
    report = classes_run(
        inputs, from_class, to_class, out, area=area,
        synths=_synths(generator_run, sar_run, device), device=device,
    )  # fmt: skip
    _echo_report(report, from_class)
