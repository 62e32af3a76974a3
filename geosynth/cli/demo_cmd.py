"""``geosynth demo-world``: generate the procedural demo region as the providers' raw files."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import json_option, progress_enabled


def _pair(text: str, sep: str, ctx, param) -> tuple[int, int]:
    parts = text.lower().replace(" ", "").split(sep)
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise click.BadParameter(
            f"expected two integers as A{sep}B, e.g. {'3x2' if sep == 'x' else '356,5645'}; got {text!r}",
            ctx=ctx,
            param=param,
        ) from None


def _tiles(ctx, param, value):
    return None if value is None else _pair(value, "x", ctx, param)


def _origin(ctx, param, value):
    return None if value is None else _pair(value, ",", ctx, param)


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
    callback=_tiles,
    help="W x H tiles of 1 km, e.g. 3x2 (default: the catalog's demo region).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the world; one seed always gives the same bytes.",
)
@click.option(
    "--origin",
    callback=_origin,
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
@json_option
def demo_world(
    out_dir,
    tiles,
    seed,
    origin,
    dop_resolution,
    lidar_density,
    preview,
    overwrite,
    workers,
    as_json,
):
    """Generate the demo world: a procedural NRW-like region written as the providers' raw files.

    Orthophotos (JPEG2000, R G B NIR) and lidar (LAZ, LAS 1.2) zipped like
    NRW's packages, ATKIS-like land-cover areas (GeoPackage), OpenStreetMap
    XML and TerraSAR-X EEC scenes, all rendered from one latent scene, plus
    its ground truth under truth/ and a manifest world.json. The default
    world (3 x 2 tiles, 0.5 m, 4 pts/m^2) takes well under a minute.
    `geosynth build-geonrw --region demo` generates it on its own when needed.
    """
    import time

    from tqdm import tqdm

    from geosynth.catalog import load_catalog
    from geosynth.demo import check_out_dir, generate_world, world_params

    region = load_catalog().region("demo")
    tiles = tiles or tuple(region.tiles or (3, 2))
    origin = origin or tuple(region.origin_km or (356, 5645))
    world_params(tiles, seed, origin, dop_resolution, lidar_density)  # bad values exit 2 now
    check_out_dir(out_dir, overwrite)
    started = time.perf_counter()
    with tqdm(desc="demo world", unit="step", disable=not progress_enabled(), leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        manifest = generate_world(
            out_dir,
            tiles=tiles,
            seed=seed,
            origin=origin,
            dop_resolution=dop_resolution,
            lidar_density=lidar_density,
            progress=progress,
            overwrite=overwrite,
            workers=workers,
        )
    seconds = time.perf_counter() - started
    if preview:
        from geosynth.demo.preview import draw_preview

        draw_preview(out_dir, preview)
    size = sum(f["bytes"] for f in manifest["files"].values())
    summary = {
        "out": str(out_dir),
        "tiles": [t["id"] for t in manifest["tiles"]],
        "test_tiles": [t["id"] for t in manifest["tiles"] if t["split"] == "test"],
        "files": len(manifest["files"]),
        "bytes": size,
        "seconds": round(seconds, 1),
        "preview": str(preview) if preview else None,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    nx, ny = manifest["params"]["tiles"]
    click.echo(
        f"demo world: {nx} x {ny} tiles from {summary['tiles'][0]}, "
        f"{summary['files']} files, {size / 1e6:.0f} MB in {out_dir} ({seconds:.1f} s)"
    )
    if preview:
        click.echo(f"preview: {preview}")
