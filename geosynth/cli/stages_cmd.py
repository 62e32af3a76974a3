"""``geosynth aerial``, ``dem``, ``landcover`` and ``sar``: one build stage on your own files."""

from __future__ import annotations

import json

import click

from geosynth.cli import options
from geosynth.names import RETURNS, STATS


def _echo(as_json: bool, out, report: dict, line: str) -> None:
    """The stage's report as JSON, or its one-line summary."""
    click.echo(json.dumps({"out": out, **report}, indent=2) if as_json else line)


@click.command()
@click.argument("sources", nargs=-1, required=True)
@options.grid_options
@click.option("--nir", is_flag=True, help="Keep band 4 (near infrared) as a fourth band.")
@options.decode_level_option
@options.out_file_option()
@options.json_option
def aerial(sources, tile, like, nir, decode_level, out, as_json) -> None:
    """Mosaic orthophotos SOURCES onto the grid at its resolution with lanczos.

    SOURCES are GDAL rasters (JPEG2000, GeoTIFF, ...), zip archives of them
    or /vsizip/ paths; resolution and CRS come from the files, sources that
    miss the grid are not read. Bands 1-3 are red, green, blue; band 4 is
    NIR. Where sources overlap the first one wins. Pixels no source covers
    are 0 and masked (GDAL mask band). Writes a uint8 GeoTIFF.
    """
    from geosynth.sources.aerial import aerial_stage, write_aerial_geotiff

    grid = options.resolve_grid(tile, like)
    with options.progress_bar("aerial", "file", leave=False) as update:
        result = aerial_stage(sources, grid, nir=nir, decode_level=decode_level, progress=update)
    write_aerial_geotiff(out, result)
    report = result.report
    _echo(
        as_json, out, report,
        f"{out}: {grid.width} x {grid.height} px, {len(report['bands'])} bands from "
        f"{len(report['sources'])} source(s) ({len(report['skipped_sources'])} outside the grid)",
    )  # fmt: skip
    if report["uncovered_pixels"] and not as_json:
        click.echo(f"{report['uncovered_pixels']} pixels covered by no source (masked)", err=True)


@click.command()
@click.argument("sources", nargs=-1, required=True)
@options.grid_options
@options.choice_option(
    "--returns",
    choices=RETURNS,
    default="first",
    help_text="first: return number 1 (first and only returns); last; all.",
)
@options.choice_option(
    "--stat",
    choices=STATS,
    default="mean",
    help_text="Height statistic per cell (max of first returns ~ DSM, min of last ~ DTM).",
)
@click.option(
    "--radius",
    type=click.FloatRange(min=0, min_open=True),
    metavar="R",
    help="Take the points closer than R (grid CRS units, metres) to each cell centre "
    "instead of those inside the cell, as PDAL's writers.gdal does (its default: "
    "resolution * sqrt(2), 1.4142 on the 1 m grid)  [default: per cell, no radius]",
)
@click.option(
    "--fill-distance",
    type=click.FloatRange(min=0),
    default=None,
    help="Fill empty cells from cells at most this many pixels away "
    "(GDAL fill-nodata; 0 = no filling)  [default: 10]",
)
@click.option(
    "--crs",
    metavar="CRS",
    help="Override the header CRS of every file with CRS (for a wrong header); "
    "unlike --default-crs it applies to files that have one.",
)
@click.option(
    "--default-crs",
    metavar="CRS",
    help="CRS of files without one in their header, and of files whose CRS keys "
    "cannot be read (refused without this option) [default: the catalog grid's, "
    "for files without one].",
)
@options.int_option(
    "--chunk-size",
    minimum=1,
    default=1_000_000,
    help_text="Points read per chunk (memory is bounded by this, not by the file size).",
)
@options.class_options
@options.out_file_option()
@options.json_option
def dem(
    sources, tile, like, returns, stat, radius, fill_distance, crs, default_crs, chunk_size,
    drop_classes, keep_classes, out, as_json,
) -> None:  # fmt: skip
    """Grid lidar points (.las/.laz files or zips of them) into a height raster.

    Mean height of the first returns per cell by default (the paper's
    text); --radius 1.4142 averages the points within that distance of each
    cell centre, as the authors' PDAL pipeline does. Points are reprojected
    to the grid's CRS (heights in feet become metres); a point on a cell
    edge counts in the cell east or north of it. Cells without points are
    filled up to --fill-distance pixels; the rest stay NaN and are reported.
    Noise (classes 7 and 18) and NRW's points below the ground (24) never
    enter it (--drop-classes, --keep-classes). Writes a float32 GeoTIFF,
    nodata NaN.
    """
    from geosynth.io import write_geotiff
    from geosynth.sources.lidar import DEFAULT_FILL_DISTANCE_PX, dem_stage

    grid = options.resolve_grid(tile, like)
    with options.progress_bar("dem", "pt", unit_scale=True, leave=False) as update:
        result = dem_stage(
            sources, grid, returns=returns, stat=stat, radius=radius,
            fill_distance=DEFAULT_FILL_DISTANCE_PX if fill_distance is None else fill_distance,
            crs=crs, default_crs=default_crs, crs_for_unreadable=default_crs,
            drop_classes=drop_classes, keep_classes=keep_classes, chunk_size=chunk_size,
            progress=update,
        )  # fmt: skip
    write_geotiff(out, result.array, grid, nodata=result.nodata, descriptions=result.descriptions)
    r = result.report
    _echo(
        as_json, out, r,
        f"{out}: {grid.width} x {grid.height} px from {r['points_in_grid']} of "
        f"{r['points_read']} points ({returns} returns, {stat}"
        + ("" if radius is None else f" within {radius:g} of each cell centre")
        + f"); "
        f"{r['filled_pixels']} cells filled, {r['holes']} left empty (NaN); "
        f"{sum(r['dropped_by_class'].values())} points of kept-out classes ({r['classes']})",
    )  # fmt: skip


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
@options.grid_options
@options.out_file_option()
@options.json_option
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
    grid = options.resolve_grid(tile, like)
    catalog = load_catalog()
    with options.progress_bar("landcover", "input", leave=False) as update:
        result = landcover_stage(
            grid, vectors=vectors, osm=list(osm) or None, catalog=catalog,
            progress=update, overpass_cache=overpass_cache,
        )  # fmt: skip
    write_class_map(out, result, catalog.classes)
    r = result.report
    total = grid.width * grid.height
    shares = "".join(f"\n  {key:<14}{n / total:8.2%}" for key, n in r["pixels"].items())
    _echo(
        as_json, out, r,
        f"{out}: {grid.width} x {grid.height} px, {sum(r['features'].values())} features burned"
        + shares,
    )  # fmt: skip
    if r["unmapped"] and not as_json:
        unmapped = ", ".join(f"{k} x{n}" for k, n in r["unmapped"].items())
        click.echo(f"not mapped by the catalog (not burned): {unmapped}", err=True)


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
@options.grid_options
@options.out_file_option()
@options.json_option
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

    grid = options.resolve_grid(tile, like)
    with options.progress_bar("sar", "image", leave=False) as update:
        result = sar_stage(
            scenes, grid, calibrate=calibrate, catalog=load_catalog(), progress=update,
            polarisation=polarisation,
        )  # fmt: skip
    report = {"skipped": result.skipped, **result.report}
    if result.skipped:
        if as_json:
            _echo(True, None, report, "")
        else:
            click.echo(f"sar: skipped, no file written: {result.skipped}", err=True)
        return
    write_sar_geotiff(out, result)
    scenes = "".join(
        f"\n  {s['product']}: "
        + ("in the catalog's scene list" if s["listed"] else "NOT in the catalog's scene list")
        for s in report["scenes"]
        if "product" in s
    )
    _echo(
        as_json, out, report,
        f"{out}: {grid.width} x {grid.height} px from {len(report['scenes'])} image(s), "
        f"{report['valid_fraction']:.1%} valid{scenes}",
    )  # fmt: skip
