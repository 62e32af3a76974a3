"""``geosynth aerial`` and ``geosynth dem``: the image and height stages on arbitrary inputs."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import grid_options, json_option, progress_enabled, resolve_grid

# the same tuples as geosynth.sources.lidar.RETURNS / STATS (kept literal so that
# `geosynth --help` imports no numpy; tests/test_dem.py checks they agree)
RETURN_CHOICES = ("first", "last", "all")
STAT_CHOICES = ("mean", "max", "min")

out_option = click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output GeoTIFF (written atomically; replaced if it exists).",
)


def _progress_bar(desc: str, unit: str, unit_scale: bool = False):
    """A tqdm bar (hidden under -q) and a ``progress(done, total)`` callback feeding it."""
    from tqdm import tqdm

    bar = tqdm(
        desc=desc, unit=unit, unit_scale=unit_scale, disable=not progress_enabled(), leave=False
    )

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update


@click.command()
@click.argument("sources", nargs=-1, required=True)
@grid_options
@click.option("--nir", is_flag=True, help="Keep band 4 (near infrared) as a fourth band.")
@out_option
@json_option
def aerial(sources, tile, like, nir, out, as_json) -> None:
    """Mosaic orthophotos SOURCES onto the grid at its resolution with lanczos.

    SOURCES are GDAL rasters (JPEG2000, GeoTIFF, ...), zip archives of them
    or /vsizip/ paths; resolution and CRS come from the files, sources that
    miss the grid are not read. Bands 1-3 are red, green, blue; band 4 is
    NIR. Where sources overlap the first one wins. Pixels no source covers
    are 0 and masked (GDAL mask band). Writes a uint8 GeoTIFF.
    """
    from geosynth.sources.aerial import aerial_stage, write_aerial_geotiff

    grid = resolve_grid(tile, like)
    bar, update = _progress_bar("aerial", "file")
    with bar:
        result = aerial_stage(sources, grid, nir=nir, progress=update)
    write_aerial_geotiff(out, result)
    report = result.report
    if as_json:
        click.echo(json.dumps({"out": out, **report}, indent=2))
        return
    click.echo(
        f"{out}: {grid.width} x {grid.height} px, {len(report['bands'])} bands "
        f"from {len(report['sources'])} source(s) ({len(report['skipped_sources'])} outside the grid)"
    )
    if report["uncovered_pixels"]:
        click.echo(f"{report['uncovered_pixels']} pixels covered by no source (masked)", err=True)


@click.command()
@click.argument("sources", nargs=-1, required=True)
@grid_options
@click.option(
    "--returns",
    type=click.Choice(RETURN_CHOICES),
    default="first",
    show_default=True,
    help="first: return number 1 (first and only returns); last; all.",
)
@click.option(
    "--stat",
    type=click.Choice(STAT_CHOICES),
    default="mean",
    show_default=True,
    help="Height statistic per cell (max of first returns ~ DSM, min of last ~ DTM).",
)
@click.option(
    "--fill-distance",
    type=click.FloatRange(min=0),
    default=None,
    help="Fill empty cells from cells at most this many pixels away "
    "(GDAL fill-nodata; 0 = no filling)  [default: 10]",
)
@click.option(
    "--default-crs",
    metavar="CRS",
    help="CRS of files without one in their header [default: the catalog grid's].",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Points read per chunk (memory is bounded by this, not by the file size).",
)
@out_option
@json_option
def dem(
    sources, tile, like, returns, stat, fill_distance, default_crs, chunk_size, out, as_json
) -> None:
    """Grid lidar points (.las/.laz files or zips of them) into a height raster.

    Mean height of the first returns per cell by default. Points are
    reprojected to the grid's CRS (heights in feet become metres); a point
    on a cell edge counts in the cell east or north of it. Cells without
    points are filled up to --fill-distance pixels; the rest stay NaN and
    are reported. Writes a float32 GeoTIFF, nodata NaN.
    """
    from geosynth.io import write_geotiff
    from geosynth.sources.lidar import DEFAULT_FILL_DISTANCE_PX, dem_stage

    grid = resolve_grid(tile, like)
    bar, update = _progress_bar("dem", "pt", unit_scale=True)
    with bar:
        result = dem_stage(
            sources,
            grid,
            returns=returns,
            stat=stat,
            fill_distance=DEFAULT_FILL_DISTANCE_PX if fill_distance is None else fill_distance,
            default_crs=default_crs,
            chunk_size=chunk_size,
            progress=update,
        )
    write_geotiff(out, result.array, grid, nodata=result.nodata, descriptions=result.descriptions)
    report = result.report
    if as_json:
        click.echo(json.dumps({"out": out, **report}, indent=2))
        return
    click.echo(
        f"{out}: {grid.width} x {grid.height} px from {report['points_in_grid']} of "
        f"{report['points_read']} points ({returns} returns, {stat}); "
        f"{report['filled_pixels']} cells filled, {report['holes']} left empty (NaN)"
    )
