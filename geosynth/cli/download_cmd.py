"""``geosynth download``: fetch a region's provider packages."""

from __future__ import annotations

import click

from geosynth.cli.options import progress_enabled


@click.command()
@click.option("--region", required=True, help="Catalog region (name or alias), e.g. cologne.")
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default="raw",
    show_default=True,
    help="Folder for the packages; each source in a subfolder.",
)
@click.option("--no-extract", is_flag=True, help="Keep the archives packed.")
@click.option("--retries", type=click.IntRange(0, 50), default=5, show_default=True)
def download(region: str, dest: str, no_extract: bool, retries: int) -> None:
    """Download a region's orthophoto, lidar and land-cover packages from the catalog's URLs.

    Resumes interrupted downloads (HTTP Range), retries with backoff, verifies
    sizes and checksums where known and extracts archives safely. A rerun
    skips what is complete.
    """
    from tqdm import tqdm

    from geosynth.download import download_region

    bars: list[tqdm] = []

    def factory(name):
        bar = tqdm(desc=name, unit="B", unit_scale=True, disable=not progress_enabled())
        bars.append(bar)

        def update(done, total):
            bar.total = total
            bar.update(done - bar.n)

        return update

    try:
        records = download_region(
            region, dest, extract=not no_extract, retries=retries, progress_factory=factory
        )
    finally:
        for bar in bars:
            bar.close()
    for r in records:
        click.echo(f"{r['source']:<10} {r['archive']} ({r['bytes']:,} bytes)")
