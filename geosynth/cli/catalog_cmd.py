"""``geosynth catalog``: the regions and sources of data_catalog.yaml."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import json_option


@click.command()
@click.argument("region", required=False)
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Read this catalog instead of the installed data_catalog.yaml.",
)
@json_option
def catalog(region: str | None, catalog_path: str | None, as_json: bool) -> None:
    """List the catalog's regions, or show one REGION (name or alias, e.g. cologne)."""
    from geosynth.catalog import load_catalog

    cat = load_catalog(catalog_path)
    if region is None:
        rows = [
            (
                r.name,
                r.split,
                r.ags,
                ", ".join(r.aliases),
                "generated offline" if r.generated else "dop, lidar, landcover, osm",
            )
            for r in cat.regions.values()
        ]
        if as_json:
            click.echo(
                json.dumps(
                    [
                        dict(zip(("name", "split", "ags", "aliases", "sources"), row, strict=True))
                        for row in rows
                    ],
                    indent=2,
                )
            )
            return
        click.echo(
            f"catalog {cat.path} (version {cat.version}), grid {cat.grid.crs}, "
            f"{cat.grid.tile_size_m} m tiles at {cat.grid.pixel_size_m:g} m"
        )
        click.echo(f"{'region':<18}{'split':<7}{'AGS':<10}{'aliases':<20}sources")
        for name, split, ags, aliases, sources in rows:
            click.echo(f"{name:<18}{split:<7}{ags:<10}{aliases:<20}{sources}")
        train = len(cat.cities("train"))
        test = len(cat.cities("test"))
        click.echo(f"{train + test} GeoNRW cities ({train} train, {test} test)")
        return

    r = cat.region(region)
    info = {
        "name": r.name,
        "split": r.split,
        "ags": r.ags,
        "package": r.package,
        "aliases": list(r.aliases),
        "generated": r.generated,
        "test_tiles": list(r.test_tiles),
        "sources": {
            name: {"url": r.source_url(s), "description": s.description}
            for name, s in cat.sources.items()
        },
    }
    if r.generated:
        info["origin_km"] = list(r.origin_km or ())
        info["tiles"] = list(r.tiles or ())
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if key == "sources":
            click.echo("sources:")
            for name, src in value.items():
                click.echo(f"  {name:<10} {src['url'] or '(provided by the user)'}")
        elif value not in ([], None, ""):
            click.echo(f"{key}: {value}")
