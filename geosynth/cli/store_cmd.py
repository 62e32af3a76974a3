"""``geosynth info``, ``verify`` and ``stats``: inspect a store."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import json_option, progress_bar, storage_option, store_argument


@click.command()
@store_argument
@storage_option
@json_option
def info(store: str, storage_options, as_json: bool) -> None:
    """Counts per split, region and modality, and the class histogram of STORE."""
    from geosynth.store import open_store, summarize
    from geosynth.store.inspect import summary_lines

    s = open_store(store, storage_options=storage_options)
    summary = summarize(s)
    click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(summary_lines(s, summary)))


@click.command()
@store_argument
@storage_option
def verify(store: str, storage_options) -> None:
    """Check STORE against the store contract; exits 1 listing every problem."""
    from geosynth.store import open_store
    from geosynth.store import verify as verify_store

    s = open_store(store, storage_options=storage_options)
    with progress_bar("verify", "tile", total=len(s)) as update:
        problems = verify_store(s, progress=lambda i, n: update(i, n))
    if problems:
        for p in problems:
            click.echo(str(p), err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in {store}")
    click.echo(f"{store}: {len(s)} tiles, all complete and consistent")


@click.command()
@store_argument
@storage_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="stats.png",
    show_default=True,
    help="PNG figure; the table goes beside it as .csv.",
)
def stats(store, storage_options, out):
    """Per-class pixel shares by split (the paper's Fig. 2), as a PNG and a CSV."""
    from geosynth.stats import class_shares, plot_class_shares, write_shares_csv
    from geosynth.store import open_store

    s = open_store(store, storage_options=storage_options)
    shares = class_shares(s)
    png = plot_class_shares(shares, s.classes, out)
    csv = write_shares_csv(shares, s.classes, png.with_suffix(".csv"))
    click.echo(f"wrote {png} and {csv}")
