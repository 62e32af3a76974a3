"""``geosynth download``, ``build-geonrw``, ``import-geonrw`` and ``import-dfc2020``:
raw or published files into stores."""

from __future__ import annotations

import click

from geosynth.cli import options
from geosynth.names import BUILD_MODALITIES, DFC2020_SPLIT_RULES, LAYOUTS, SPLITS

store_out_option = click.option(
    "--out",
    required=True,
    help="Store to write: a path or an s3://, gs://, memory:// URL. An existing store is "
    "resumed: complete tiles are skipped.",
)


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {value!r}") from None


def tile_choice_options(func):
    """``--tiles`` / ``--bbox`` / ``--tiles-from`` / ``--boundary``: which tiles of a region."""
    func = click.option(
        "--boundary",
        type=click.Path(exists=True, dir_okay=False),
        help="Polygon file of the area (its feature with the region's key, else all polygons).",
    )(func)
    func = click.option(
        "--tiles-from",
        type=click.Path(exists=True),
        help="The published GeoNRW (folder or nrw_dataset.tar.gz): its tiles of this city.",
    )(func)
    func = click.option(
        "--bbox", callback=_floats, metavar="L,B,R,T", help="Tiles meeting this box (grid CRS)."
    )(func)
    return options.tiles_option()(func)


@click.command()
@click.option("--region", required=True, help="Catalog region (name or alias), e.g. cologne.")
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default="raw",
    show_default=True,
    help="Folder for the files; each source in a subfolder, manifest.json beside them.",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default=None,
    help="tiles: NRW's per-tile files today (default); packages: the municipality archives "
    "the paper's authors downloaded in 2020.",
)
@tile_choice_options
@click.option("--jobs", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Files downloaded at once.")  # fmt: skip
@click.option("--refresh", is_flag=True, help="Fetch the cached folder listings again.")
@click.option("--with-osm", is_flag=True,
              help="Also fetch the state's OpenStreetMap extract (Geofabrik .osm.pbf, md5 "
              "checked; about 750 MB); without it the build reads OSM files under the source "
              "folder or asks Overpass.")  # fmt: skip
@click.option("--no-extract", is_flag=True, help="Keep the archives packed.")
@click.option("--retries", type=click.IntRange(0, 50), default=5, show_default=True)
@click.option(
    "--vintage", "--year", "vintage", type=click.IntRange(1990, 2100), metavar="YEAR",
    help="Orthophotos of this flight year: from the current folder where it lists the year, "
    "else from the historic folder of that vintage [default: each tile's newest].",
)  # fmt: skip
@click.option(
    "--allow-missing", is_flag=True,
    help="Download the tiles the server has even when some requested tiles have no "
    "orthophoto or point cloud there; the gaps go into dest/manifest.json and the build "
    "report [default: name them and exit 1].",
)  # fmt: skip
@click.option(
    "--mirror", metavar="URL|FOLDER",
    help="Read the provider's server from a mirror: a base URL with the server's paths, or a "
    "folder laid out so (what geosynth demo-world writes), served on 127.0.0.1 meanwhile.",
)  # fmt: skip
def download(region, dest, layout, tiles, bbox, tiles_from, boundary, jobs, refresh, with_osm,
             no_extract, retries, vintage, allow_missing, mirror) -> None:  # fmt: skip
    """Download a region's orthophotos, lidar and land cover from the catalog's hosts.

    In the tiles layout the region's tiles come from --tiles, --bbox,
    --tiles-from or --boundary, else from the municipality's official boundary;
    each tile's file is found in the provider's folder listing (index.json, or
    the folder's XML; fetched once, cached), the newest flight unless --vintage.
    A requested tile without its orthophoto or point cloud fails the download
    (exit 1) unless --allow-missing. Of the state-wide land cover only the
    layers a build needs are read, by range requests into the zip. Several
    files at once; each resumed (HTTP Range), retried (a busy server's
    Retry-After is honoured) and verified; every redirect must stay on a
    catalog host; dest/manifest.json says what came from where. A rerun skips
    what is complete.
    """
    from geosynth.ingest.download import download_region

    with options.progress_bar("download", "B", unit_scale=True, unit_divisor=1024) as progress:
        records, summary = download_region(
            region, dest, layout=layout, tiles=tiles, bbox=bbox, tiles_from=tiles_from,
            boundary=boundary, jobs=jobs, extract=not no_extract, refresh=refresh,
            retries=retries, progress=progress, on_wait=progress.note, with_osm=with_osm,
            vintage=vintage, allow_missing=allow_missing, mirror=mirror,
        )  # fmt: skip
    total = sum(r["bytes"] for r in records)
    chosen = summary["tiles"]
    head = f"{len(chosen)} tile(s) chosen by {summary['chosen_by']}; " if chosen else ""
    click.echo(
        f"{head}{len(records)} file(s), {total:,} bytes in {dest} ({summary['layout']} layout)"
    )
    for line in summary.get("notes") or []:
        click.echo(f"  note: {line}", err=True)
    if summary.get("missing"):
        from geosynth.ingest.download import missing_message

        click.echo(f"  missing (allowed): {missing_message(summary['missing'], len(chosen))}",
                   err=True)  # fmt: skip


@click.command("build-geonrw")
@click.option("--region", required=True, help="Catalog region (name or alias): cologne, demo, ...")
@click.option(
    "--out",
    default=None,
    help="Store to write, a path or an s3://, gs://, memory:// URL (default: <region>.zarr). "
    "An existing store is resumed.",
)
@click.option(
    "--source-dir",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Folder with the region's raw files, e.g. a download; repeatable (the SAR scenes "
    "you bring beside it) [default for demo: the generated demo world].",
)
@options.workers_option()
@options.scheduler_option
@tile_choice_options
@click.option(
    "--modalities",
    callback=options.comma_list,
    help=f"Subset of {','.join(BUILD_MODALITIES)} (default: all; sar when SAR scenes exist).",
)
@click.option(
    "--default-crs",
    help="CRS of lidar files whose header has none or one that does not read (default: files "
    "without a CRS take the grid's EPSG:25832; unreadable ones are refused).",
)
@click.option("--crs", "lidar_crs",
              help="Override the header CRS of every lidar file (a wrong header).")  # fmt: skip
@click.option(
    "--dem-radius",
    type=click.FloatRange(min=0, min_open=True),
    help="DEM as the authors' code made it: mean of the points within R m of each cell "
    "centre (their PDAL default: 1.4142); default: mean per 1 m cell, as the paper says.",
)
@options.class_options
@options.decode_level_option
@click.option(
    "--test-tiles",
    callback=options.comma_list,
    help="The tiles of split test, e.g. 357_5646 (default: the catalog's; a demo world of "
    "another size than the catalog's prints its own).",
)
@options.report_option
@options.storage_option
@click.pass_context
def build_geonrw(
    ctx, region, out, source_dir, workers, scheduler, tiles, bbox, tiles_from, boundary,
    modalities, default_crs, lidar_crs, dem_radius, drop_classes, keep_classes, decode_level,
    test_tiles, report, storage_options,
):  # fmt: skip
    """Build a region's raw files into a GeoNRW Zarr store, tile by tile, in parallel.

    Runs the aerial, dem, landcover and sar stages per tile; tiles already
    complete in the store are skipped, so a killed build finishes on rerun.
    Exits 1 when any tile failed (the report names the file and the reason).
    """
    from geosynth.catalog import load_catalog
    from geosynth.grid import TileId
    from geosynth.ingest.nrw import build_region

    options.check_workers_or_scheduler(ctx, scheduler)
    for t in [*(tiles or []), *(test_tiles or [])]:
        TileId.parse(t)
    catalog = load_catalog()
    chosen = catalog.region(region)
    name = chosen.name
    if not source_dir and chosen.generated:
        from geosynth.cli.demo_cmd import generated_sources

        source_dir = generated_sources(chosen)
    options.run_with_tile_bar(
        f"build {name}",
        lambda on_tile, on_plan: build_region(
            name, out or f"{name}.zarr", source_dir=source_dir, workers=workers,
            scheduler=scheduler, tiles=tiles, bbox=bbox, tiles_from=tiles_from,
            boundary=boundary, modalities=modalities, catalog=catalog,
            report_path=report, progress=on_tile, on_plan=on_plan,
            storage_options=storage_options, lidar_default_crs=default_crs,
            lidar_crs=lidar_crs, dem_radius=dem_radius, drop_classes=drop_classes,
            keep_classes=keep_classes, decode_level=decode_level, test_tiles=test_tiles,
        ),
    )  # fmt: skip


def _assignments(ctx, param, values):
    out = {}
    for value in values:
        city, sep, split = value.partition("=")
        if not sep or not city.strip() or split.strip() not in SPLITS:
            raise click.BadParameter(
                f"expected CITY=train or CITY=test, got {value!r}", ctx=ctx, param=param
            )
        out[city.strip().lower()] = split.strip()
    return out


@click.command("import-geonrw")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@store_out_option
@click.option("--with-sar", is_flag=True, help="Import <E>_<N>_sar.tif too (normalised).")
@click.option(
    "--assign",
    multiple=True,
    callback=_assignments,
    metavar="CITY=SPLIT",
    help="Split of a city folder the catalog does not know (repeatable), e.g. wesel=train.",
)
@click.option(
    "--download",
    is_flag=True,
    help="Fetch and extract the published archive (catalog URL and md5) into ROOT "
    "(default: $GEOSYNTH_CACHE/geonrw) first.",
)
@options.workers_option()
@options.scheduler_option
@options.report_option
@options.storage_option
@click.pass_context
def import_geonrw(
    ctx, root, out, with_sar, assign, download, workers, scheduler, report, storage_options
):
    """Import the published GeoNRW dataset (ROOT/<city>/<E>_<N>_{rgb.jp2,dem.tif,seg.tif})
    into a store.

    The city decides the split (catalog regions); pixels are copied
    bit-exactly (integer DEMs cast to float32 metres); georeferencing comes
    from the files, else from names <E>_<N> in km, else the tile has none.
    Incomplete or inconsistent tiles are excluded and reported. Exits 1 when
    a tile failed.
    """
    from geosynth.ingest.geonrw import download_geonrw, import_geonrw
    from geosynth.io import cache_dir

    options.check_workers_or_scheduler(ctx, scheduler)
    if root is None and not download:
        raise click.UsageError("give ROOT, the GeoNRW folder, or --download")
    if download:
        with options.progress_bar("download", "B", unit_scale=True) as on_bytes:
            root = str(download_geonrw(root or cache_dir() / "geonrw", progress=on_bytes))
    options.run_with_tile_bar(
        "import geonrw",
        lambda progress, on_plan: import_geonrw(
            root, out, with_sar=with_sar, workers=workers, scheduler=scheduler, assign=assign,
            report_path=report, progress=progress, on_plan=on_plan,
            storage_options=storage_options,
        ),
    )  # fmt: skip


@click.command("import-dfc2020")
@click.argument("root", type=click.Path(file_okay=False))
@store_out_option
@options.choice_option(
    "--split-rule",
    choices=DFC2020_SPLIT_RULES,
    default="paper",
    help_text="paper: contest test patches train, validation patches test; code: patches whose "
    "number ends in 9 are test (the code published with the paper).",
)
@options.workers_option()
@options.scheduler_option
@options.report_option
@options.storage_option
@click.pass_context
def import_dfc2020(ctx, root, out, split_rule, workers, scheduler, report, storage_options):
    """Import the DFC2020 patches (ROOT/ROIs0000_{test,validation}/...) into a store.

    S1 becomes sar (VV, VH in [0, 1]), S2 B4/B3/B2 become rgb (uint8), the
    full S2 stack is kept as s2 (uint16), the labels become seg; every tile
    keeps its own UTM CRS. Exits 1 when a patch failed.
    """
    from geosynth.ingest.dfc2020 import import_dfc2020 as run

    options.check_workers_or_scheduler(ctx, scheduler)
    options.run_with_tile_bar(
        "import dfc2020",
        lambda progress, on_plan: run(
            root, out, split_rule=split_rule, workers=workers, scheduler=scheduler,
            report_path=report, progress=progress, on_plan=on_plan,
            storage_options=storage_options,
        ),
    )  # fmt: skip
