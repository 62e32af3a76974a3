"""``geosynth demo-world`` and ``geosynth demo``: the procedural demo region, and the whole
system run on it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geosynth.cli import options
from geosynth.cli.pipeline_cmd import run_recipe, set_option


def _pair(sep: str, example: str):
    """Callback parsing ``A<sep>B`` into two integers (None when absent)."""

    def parse(ctx, param, text):
        if text is None:
            return None
        parts = text.lower().replace(" ", "").split(sep)
        try:
            if len(parts) != 2:
                raise ValueError
            return int(parts[0]), int(parts[1])
        except ValueError:
            raise click.BadParameter(
                f"expected two integers as A{sep}B, e.g. {example}; got {text!r}",
                ctx=ctx,
                param=param,
            ) from None

    return parse


def generated_sources(region) -> Path:
    """The raw files of a generated catalog region (the demo world) in geosynth's cache
    folder (the region's ``sources_folder``), generated now when absent or incomplete."""
    from geosynth.demo import ensure_world
    from geosynth.io import cache_dir

    folder = cache_dir() / region.sources_folder
    with options.progress_bar("demo world", "step", leave=False) as progress:
        ensure_world(folder, tiles=region.tiles, origin=region.origin_km, progress=progress)
    return folder


@click.command("demo-world")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to create (must not exist or be empty, unless --overwrite).",
)
@click.option(
    "--tiles",
    callback=_pair("x", "2x2"),
    help="W x H tiles of 1 km, e.g. 2x2 [default: the catalog's demo region, 4x2]; a world of "
    "another size chooses its own test tiles and prints them.",
)
@options.int_option(
    "--seed",
    minimum=0,
    default=0,
    help_text="Seed of the world; one seed always gives the same bytes.",
)
@click.option(
    "--origin",
    callback=_pair(",", "356,5645"),
    help="E,N of the south-west tile in km, e.g. 356,5645 (default: the catalog's).",
)
@click.option(
    "--dop-resolution",
    type=float,
    default=0.5,
    show_default=True,
    help="Orthophoto pixel size in m (NRW's own: 0.1); must divide 1000 m evenly.",
)
@click.option(
    "--lidar-density", type=float, default=4.0, show_default=True, help="Lidar pulses per m^2."
)
@click.option(
    "--layout",
    type=click.Choice(["tiles", "packages"]),
    default="tiles",
    show_default=True,
    help="How orthophotos and lidar are published: per-tile files with folder listings "
    "(NRW today) or per-municipality zips (the paper's authors, 2020).",
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False),
    help="Also draw all modalities side by side into this PNG.",
)
@click.option("--overwrite", is_flag=True, help="Replace the folder if it holds files.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes rendering tiles (default 1; each needs about 1 GB).",
)
@options.json_option
def demo_world(
    out_dir, tiles, seed, origin, dop_resolution, lidar_density, layout, preview, overwrite,
    workers, as_json,
):  # fmt: skip
    """Generate the demo world: a procedural NRW-like region written as the providers' raw files.

    Orthophotos (JPEG2000, R G B NIR) and lidar (LAZ, LAS 1.2) one file per
    tile with the folder listings and flight-date metadata NRW publishes
    (--layout packages: zipped per municipality as in 2020), ATKIS-like land-cover areas (GeoPackage), OpenStreetMap
    XML and TerraSAR-X EEC scenes, all rendered from one latent scene, plus
    its ground truth under truth/ and a manifest world.json. The default
    world (the catalog's demo region at 0.5 m and 4 pts/m^2) takes about a
    minute. `geosynth build-geonrw --region demo` generates it on its own
    when needed.
    """
    import time

    from geosynth.demo import check_out_dir, generate_world, world_params, world_summary

    # bad values: exit 2
    params = world_params(tiles, seed, origin, dop_resolution, lidar_density, layout)
    check_out_dir(out_dir, overwrite)
    started = time.perf_counter()
    with options.progress_bar("demo world", "step", leave=False) as progress:
        manifest = generate_world(
            out_dir, params.tiles, seed, params.origin, dop_resolution, lidar_density,
            progress=progress, overwrite=overwrite, workers=workers, layout=layout,
        )  # fmt: skip
    if preview:
        from geosynth.demo.preview import draw_preview

        draw_preview(out_dir, preview)
    s = world_summary(manifest, out_dir, time.perf_counter() - started, preview)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    nx, ny = params.tiles
    click.echo(
        f"demo world: {nx} x {ny} tiles from {s['tiles'][0]}, {s['files']} files, "
        f"{s['bytes'] / 1e6:.0f} MB in {out_dir} ({s['seconds']:.1f} s)"
    )
    test = ",".join(s["test_tiles"])
    default = catalog_world(params)
    if test and not default:  # the catalog's test tiles are of its own world
        click.echo(f"test tiles (class shares closest to the rest): {test}; build with "
                   f"--test-tiles {test}")  # fmt: skip
    elif not test:
        click.echo("one tile: no test split (train-unet needs --val-split none)")
    if preview:
        click.echo(f"preview: {preview}")


def catalog_world(params) -> bool:
    """Whether ``params`` make the catalog's own demo world (whose test tiles it lists)."""
    from geosynth.catalog import load_catalog

    region = load_catalog().region("demo")
    return tuple(params.origin) == tuple(region.origin_km or ()) and tuple(params.tiles) == tuple(
        region.tiles or ()
    )


@click.command()
@click.option(
    "--out",
    default="demo-run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for everything the demo makes.",
)
@set_option
@click.option("--force", is_flag=True, help="Rerun steps whose outputs exist.")
def demo(out, overrides, force):
    """The whole system on the offline demo world, on CPU, in at most 12 minutes on 2 cores.

    Generates the demo world (OUT/world), builds its store, trains a short
    U-Net and three short generators (label-only, DEM-only, ours), evaluates
    them (Table III), probes where the DEM carries what the labels lack (the
    paper's Fig. 7, from the world's truth rasters), synthesizes a test tile,
    floods it, trains a short SAR generator (labels + DEM -> SAR) whose speckle
    `sar-stats` compares with the real SAR's, and writes OUT/report.md and
    OUT/report.html. Every step shows its own progress; rerunning skips
    finished steps. pipelines/demo_long.yaml tells the same story with 3 seeds.
    """
    from geosynth.pipeline.recipe import bundled_pipeline

    run_recipe(bundled_pipeline("demo"), {"out": out, **overrides}, force, None, False)
    click.echo(f"report: {out}/report.md (and report.html)")
