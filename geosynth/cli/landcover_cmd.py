"""``geosynth landcover`` and ``geosynth sar``: two build stages on arbitrary inputs."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import grid_options, json_option, progress_enabled, resolve_grid

out_option = click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output GeoTIFF (written atomically; replaced if it exists).",
)


def _bar(desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, disable=not progress_enabled(), leave=False)


def _update(bar):
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


@click.command()
@click.option(
    "--vectors",
    "vectors",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Land-cover vector file (ATKIS OBJART_TXT attribute); repeatable.",
)
@click.option(
    "--osm",
    "osm",
    multiple=True,
    help="OSM XML file (.osm, .osm.bz2), or 'overpass' to query the Overpass API "
    "(cached by osmnx); repeatable.",
)
@click.option(
    "--overpass-cache",
    type=click.Path(file_okay=False),
    help="osmnx cache folder for Overpass responses "
    "[default: $GEOSYNTH_CACHE/osmnx or ~/.cache/geosynth/osmnx].",
)
@grid_options
@out_option
@json_option
def landcover(vectors, osm, overpass_cache, tile, like, out, as_json) -> None:
    """Burn land-cover polygons and OSM buildings, roads and railways into a class map.

    Object types map to the 10 GeoNRW classes through data_catalog.yaml and are
    burned in its burn order (later classes win; a pixel takes a shape's class
    when its centre lies inside). Types the catalog does not map are counted
    in the report, not burned. Writes a uint8 GeoTIFF with a colour table.
    """
    from geosynth.catalog import load_catalog
    from geosynth.sources.landcover import landcover_stage, write_class_map

    if not vectors and not osm:
        raise click.UsageError("give at least one of --vectors FILE or --osm FILE|overpass")
    grid = resolve_grid(tile, like)
    catalog = load_catalog()
    with _bar("landcover", "input") as bar:
        result = landcover_stage(
            grid,
            vectors=vectors,
            osm=list(osm) or None,
            catalog=catalog,
            progress=_update(bar),
            overpass_cache=overpass_cache,
        )
    write_class_map(out, result, catalog.classes)
    report = result.report
    if as_json:
        click.echo(json.dumps({"out": out, **report}, indent=2))
        return
    total = grid.width * grid.height
    click.echo(
        f"{out}: {grid.width} x {grid.height} px, "
        f"{sum(report['features'].values())} features burned"
    )
    for key, n in report["pixels"].items():
        click.echo(f"  {key:<14}{n / total:8.2%}")
    if report["unmapped"]:
        click.echo(
            "not mapped by the catalog (not burned): "
            + ", ".join(f"{k} x{n}" for k, n in report["unmapped"].items()),
            err=True,
        )


@click.command()
@click.argument("scenes", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--calibrate",
    is_flag=True,
    help="Convert DN to sqrt(beta0), beta0 = calFactor * DN^2 (from the annotation).",
)
@click.option(
    "--polarisation", help="Use this polarisation (e.g. HH) of multi-polarisation products."
)
@grid_options
@out_option
@json_option
def sar(scenes, calibrate, polarisation, tile, like, out, as_json) -> None:
    """Reproject TerraSAR-X EEC SCENES onto a grid, average them and normalise.

    SCENES are EEC product folders (IMAGEDATA/IMAGE_*.tif plus annotation) or
    GeoTIFFs. Resampling is cubic with amplitude 0 as no-data; overlapping
    scenes are averaged in amplitude over valid pixels; values are
    clip(20 log10(A) / 100, 0, 1). Band 1 of the output is the normalised
    SAR; its GDAL mask marks valid pixels (no nodata value: 0 is data).
    When the valid fraction is below the catalog minimum (0.7) no file is
    written and the command says why, exiting 0 (the tile is skipped, not failed).
    """
    from geosynth.catalog import load_catalog
    from geosynth.sources.sar import sar_stage, write_sar_geotiff

    grid = resolve_grid(tile, like)
    with _bar("sar", "image") as bar:
        result = sar_stage(
            scenes,
            grid,
            calibrate=calibrate,
            catalog=load_catalog(),
            progress=_update(bar),
            polarisation=polarisation,
        )
    report = {"out": None if result.skipped else out, "skipped": result.skipped, **result.report}
    if not result.skipped:
        write_sar_geotiff(out, result)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif result.skipped:
        click.echo(f"sar: skipped, no file written: {result.skipped}", err=True)
    else:
        click.echo(
            f"{out}: {grid.width} x {grid.height} px from {len(report['scenes'])} image(s), "
            f"{report['valid_fraction']:.1%} valid"
        )
