"""``geosynth catalog``: the regions and sources of data_catalog.yaml."""

from __future__ import annotations

import json

import click

from geosynth.cli import options


@click.command()
@click.argument("region", required=False)
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Read this catalog instead of the installed data_catalog.yaml.",
)
@click.option(
    "--sar",
    is_flag=True,
    help="List the TerraSAR-X scenes of the published GeoNRW (the authors' acquisition list).",
)
@options.json_option
def catalog(region: str | None, catalog_path: str | None, sar: bool, as_json: bool) -> None:
    """List the catalog's regions, or show one REGION (name or alias, e.g. cologne)."""
    from geosynth.catalog import load_catalog

    cat = load_catalog(catalog_path)
    if sar:
        if region is not None:
            raise click.UsageError("--sar lists every scene; give no REGION with it")
        from geosynth.sources.filenames import catalog_scenes

        rows = catalog_scenes(cat)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            click.echo(f"{row['product']}  {row['orbit']}")
        asc = sum(r["orbit"] == "ascending" for r in rows)
        click.echo(
            f"{len(rows)} TerraSAR-X EEC scenes ({asc} ascending, {len(rows) - asc} descending); "
            "not open data: order them from DLR, then build with --source-dir"
        )
        return
    data = cat.listing() if region is None else cat.describe(region)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif region is None:
        click.echo(
            f"catalog {cat.path} (version {cat.version}), grid {cat.grid.crs}, "
            f"{cat.grid.tile_size_m} m tiles at {cat.grid.pixel_size_m:g} m"
        )
        click.echo(f"{'region':<18}{'split':<7}{'AGS':<10}{'aliases':<20}sources")
        for r in data:
            click.echo(
                f"{r['name']:<18}{r['split']:<7}{r['ags']:<10}{r['aliases']:<20}{r['sources']}"
            )
        train, test = len(cat.cities("train")), len(cat.cities("test"))
        click.echo(f"{train + test} GeoNRW cities ({train} train, {test} test)")
    else:
        for key, value in data.items():
            if key == "sources":
                click.echo("sources:")
                for name, src in value.items():
                    if "layouts" not in src:
                        click.echo(f"  {name:<10} {src['url'] or '(provided by the user)'}")
                        continue
                    for layout, url in src["layouts"].items():
                        mark = " (default)" if layout == src["default_layout"] else ""
                        click.echo(f"  {name:<10} {layout}{mark}: {url}")
            elif value not in ([], None, ""):
                click.echo(f"{key}: {value}")
