"""``geosynth info`` and ``geosynth verify``: inspect a store."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import json_option, progress_enabled, store_argument


@click.command()
@store_argument
@json_option
def info(store: str, as_json: bool) -> None:
    """Counts per split, region and modality, and the class histogram of STORE."""
    from geosynth.store import open_store, summarize

    s = open_store(store)
    summary = summarize(s)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    names = {str(c["id"]): c["name"] for c in s.classes}
    names.setdefault("0", "unlabelled")
    click.echo(
        f"{summary['path']}: {summary['dataset']} store v{summary['store_version']}, "
        f"CRS {summary['crs'] or 'per tile'}, tiles {summary['tile_shape'][0]} x {summary['tile_shape'][1]} px"
    )
    click.echo("tiles: " + ", ".join(f"{v} {k}" for k, v in summary["states"].items()))
    click.echo(
        "splits: " + (", ".join(f"{k} {v}" for k, v in sorted(summary["splits"].items())) or "-")
    )
    click.echo(
        "regions: " + (", ".join(f"{k} {v}" for k, v in sorted(summary["regions"].items())) or "-")
    )
    click.echo("modalities: " + ", ".join(f"{k} {v}" for k, v in summary["modalities"].items()))
    if summary["without_transform"]:
        n = len(summary["without_transform"])
        click.echo(
            f"without georeferencing: {n} tile(s): {', '.join(summary['without_transform'][:10])}"
        )
    total = sum(summary["class_hist"].values())
    click.echo("classes (share of labelled pixels of complete tiles):")
    for cid, count in summary["class_hist"].items():
        share = count / total if total else 0.0
        click.echo(f"  {cid:>3} {names.get(cid, '?'):<36} {share:7.2%} {count:>14,}")


@click.command()
@store_argument
def verify(store: str) -> None:
    """Check STORE against the store contract; exits 1 listing every problem."""
    from tqdm import tqdm

    from geosynth.store import open_store
    from geosynth.store import verify as verify_store

    s = open_store(store)
    with tqdm(total=len(s), desc="verify", unit="tile", disable=not progress_enabled()) as bar:
        problems = verify_store(s, progress=lambda i, n: bar.update(i - bar.n))
    if problems:
        for p in problems:
            click.echo(str(p), err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in {store}")
    click.echo(f"{store}: {len(s)} tiles, all complete and consistent")
