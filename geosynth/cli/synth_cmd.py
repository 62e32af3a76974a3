"""``geosynth synthesize``, ``edit-flood`` and ``edit-classes``."""

from __future__ import annotations

import click

from geosynth.cli.options import comma_list, device_option, progress_enabled


def input_options(func):
    """``--store S --tile E_N`` or the user's own rasters ``--seg/--dem/--sar``."""
    for option in reversed(
        [
            click.option("--store", type=click.Path(), help="Store holding the tile."),
            click.option("--tile", help="Tile id in the store, e.g. 356_5645."),
            click.option(
                "--seg",
                type=click.Path(exists=True, dir_okay=False),
                help="Your own label map (GeoTIFF, class ids).",
            ),
            click.option(
                "--dem",
                type=click.Path(exists=True, dir_okay=False),
                help="Your own DEM (GeoTIFF, metres).",
            ),
            click.option(
                "--sar",
                type=click.Path(exists=True, dir_okay=False),
                help="Your own SAR raster (GeoTIFF, normalised to [0, 1]).",
            ),
        ]
    ):
        func = option(func)
    return func


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_inputs(store, tile, seg, dem, sar):
    from geosynth.catalog import load_catalog
    from geosynth.inputs import from_files, from_store

    files = {"seg": seg, "dem": dem, "sar": sar}
    if store or tile:
        if not (store and tile):
            raise click.UsageError("--store and --tile go together")
        if any(files.values()):
            raise click.UsageError("give --store/--tile or input rasters, not both")
        return from_store(store, tile)
    classes = [
        {"id": c.id, "key": c.key, "name": c.name, "color": c.color}
        for c in load_catalog().classes.classes
    ]
    return from_files(classes, **files)


@click.command()
@click.option(
    "--generator",
    "generator_run",
    required=True,
    type=click.Path(exists=True),
    help="Run folder or checkpoint of a trained generator.",
)
@click.option("--store", type=click.Path(), help="Store to read the inputs from.")
@click.option("--tiles", callback=comma_list, help="Tiles of the store (default: all of --split).")
@click.option(
    "--split", default="test", show_default=True, help="Split used when --tiles is not given."
)
@click.option("--seg", type=click.Path(exists=True, dir_okay=False), help="Your own label map.")
@click.option("--dem", type=click.Path(exists=True, dir_okay=False), help="Your own DEM.")
@click.option("--sar", type=click.Path(exists=True, dir_okay=False), help="Your own SAR raster.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--window", type=click.IntRange(min=16), help="Window size (default: training crop).")
@click.option(
    "--overlap", type=click.IntRange(min=0), help="Window overlap (default: window/4, at most 32)."
)
@click.option("--sar-db", is_flag=True, help="Write SAR back in dB (20 log10 amplitude).")
@device_option
def synthesize(
    generator_run, store, tiles, split, seg, dem, sar, out, window, overlap, sar_db, device
):
    """Synthesize full tiles with a trained generator, as Cloud-Optimised GeoTIFFs and PNG panels.

    Windows of the training crop size overlap and are blended without seams.
    Each tile gives <tile>_<rgb|sar>.tif with the tile's CRS and transform and
    <tile>_panel.png (inputs, synthesized, and the real image when known).
    """
    from tqdm import tqdm

    from geosynth.ml.editing import Synthesizer
    from geosynth.ml.synthesize import run_synthesis

    synth = Synthesizer.load(generator_run, device=_device(device))
    if store:
        if any((seg, dem, sar)):
            raise click.UsageError("give --store or input rasters, not both")
        from geosynth.store import open_store

        s = open_store(store)
        names = tiles or [s.tile_ids[i] for i in s.tiles(split)]
        if not names:
            raise click.UsageError(f"store {store} has no complete tile in split {split!r}")
        sources = [(store, t) for t in names]
    else:
        sources = [(None, None)]  # the user's own rasters
    with tqdm(
        total=len(sources), desc="synthesize", unit="tile", disable=not progress_enabled()
    ) as bar:
        for path, tile in sources:
            inputs = load_inputs(path, tile, seg, dem, sar)
            files = run_synthesis(
                synth,
                inputs,
                out,
                window=window,
                overlap=overlap,
                sar_db=sar_db,
                device=_device(device),
            )
            bar.update(1)
            for f in files:
                click.echo(f)


@click.command("edit-flood")
@input_options
@click.option(
    "--hmin",
    required=True,
    help="Water level in the DEM's units, or START:STOP:STEP for a rising sequence.",
)
@click.option(
    "--generator",
    "generator_run",
    type=click.Path(exists=True),
    help="Generator run (RGB or SAR) to synthesize before and after.",
)
@click.option(
    "--sar-generator",
    "sar_run",
    type=click.Path(exists=True),
    help="A second generator, e.g. for SAR, synthesized as well.",
)
@click.option(
    "--erosion",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Size of the square that erodes the flood mask (drops small perturbations).",
)
@click.option(
    "--connected",
    is_flag=True,
    help="Flood only areas connected to existing water (the paper does not).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@device_option
def edit_flood(
    store, tile, seg, dem, sar, hmin, generator_run, sar_run, erosion, connected, out, device
):
    """Raise the water level to HMIN and show what the sensor would see (the paper's Fig. 9).

    The mask is DEM < HMIN, eroded; it becomes water and its DEM exactly HMIN.
    Writes the edited inputs (GeoTIFF), the synthesized images before and after
    (COG), a before/after PNG panel per level and, for a sequence, an animated GIF.
    """
    from geosynth.edit import parse_levels

    levels = parse_levels(hmin)
    inputs = load_inputs(store, tile, seg, dem, sar)
    synths = _load_synths(generator_run, sar_run, device)
    from geosynth.ml.editing import flood_run

    report = flood_run(
        inputs,
        levels,
        out,
        synths=synths,
        erosion=erosion,
        connected=connected,
        device=_device(device),
    )
    _echo_report(report, "water")


@click.command("edit-classes")
@input_options
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
@click.option(
    "--generator",
    "generator_run",
    type=click.Path(exists=True),
    help="Generator run to synthesize before and after.",
)
@click.option("--sar-generator", "sar_run", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@device_option
def edit_classes(
    store, tile, seg, dem, sar, from_class, to_class, where, generator_run, sar_run, out, device
):
    """Replace one class by another (e.g. forest by agricultural); the DEM follows.

    Where the replaced class stands above the ground (forest, buildings) the
    DEM inside the edit becomes the ground interpolated from the surrounding
    heights, never higher than before.
    """
    from geosynth.ml.editing import area_mask, classes_run

    inputs = load_inputs(store, tile, seg, dem, sar)
    area = area_mask(where, inputs) if where else None
    synths = _load_synths(generator_run, sar_run, device)
    report = classes_run(
        inputs, from_class, to_class, out, area=area, synths=synths, device=_device(device)
    )
    _echo_report(report, from_class)


def _load_synths(generator_run, sar_run, device):
    from geosynth.ml.editing import Synthesizer

    return [
        Synthesizer.load(run, device=_device(device)) for run in (generator_run, sar_run) if run
    ]


def _echo_report(report, what):
    for tag in report.tags:
        click.echo(
            f"{what}: {report.fraction_before:.2%} before, {report.fraction_after[tag]:.2%} "
            f"after ({tag})"
        )
    for f in report.files:
        click.echo(f)
