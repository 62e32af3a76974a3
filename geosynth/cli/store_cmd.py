"""``geosynth info``, ``verify``, ``stats``, ``export`` and ``upgrade-store``: a store as a whole."""

from __future__ import annotations

import json

import click

from geosynth.cli import options
from geosynth.names import EXPORT_LAYOUTS


@click.command()
@options.store_argument
@options.storage_option
@options.json_option
def info(store: str, storage_options, as_json: bool) -> None:
    """Counts per split, region and modality, and the class histogram of STORE."""
    from geosynth.store import open_store, summarize
    from geosynth.store.inspect import summary_lines

    s = open_store(store, storage_options=storage_options)
    summary = summarize(s)
    click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(summary_lines(s, summary)))


@click.command()
@options.store_argument
@options.storage_option
@click.option("--quick", is_flag=True, help="Metadata only: do not decode the chunks.")
@click.option(
    "--repair",
    is_flag=True,
    help="Mark the complete tiles with problems (damaged chunks) planned, so that the next "
    "build or import rewrites them.",
)
def verify(store: str, storage_options, quick: bool, repair: bool) -> None:
    """Check STORE against the store contract; exits 1 listing every problem.

    Decodes every chunk of every complete tile (checksums, frame lengths)
    and lists each damaged chunk with its tile; --quick checks the metadata
    only.
    """
    from geosynth.store import open_store
    from geosynth.store import verify as verify_store
    from geosynth.store.inspect import repair as repair_store

    s = open_store(store, mode="r+" if repair else "r", storage_options=storage_options)
    with options.progress_bar("verify", "tile", total=len(s)) as update:
        problems = verify_store(s, progress=lambda i, n: update(i, n), quick=quick)
    if problems:
        for p in problems:
            click.echo(str(p), err=True)
        marked = repair_store(s, problems) if repair else []
        fixed = (
            f"; {len(marked)} tile(s) marked for rewriting ({', '.join(marked[:5])}"
            f"{' ...' if len(marked) > 5 else ''}): rerun the build or import"
            if marked
            else ""
        )
        raise click.ClickException(f"{len(problems)} problem(s) in {store}{fixed}")
    checked = "metadata only" if quick else "every chunk decoded"
    click.echo(f"{store}: {len(s)} tiles, all complete and consistent ({checked})")


@click.command()
@options.store_argument
@options.storage_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="stats.png",
    show_default=True,
    help="PNG figure; the table goes beside it as .csv.",
)
def stats(store, storage_options, out):
    """Per-class pixel shares by split (the paper's Fig. 2), as a PNG and a CSV."""
    from geosynth.store import open_store
    from geosynth.store.stats import class_shares, plot_class_shares, write_shares_csv

    s = open_store(store, storage_options=storage_options)
    shares = class_shares(s)
    png = plot_class_shares(shares, s.classes, out)
    csv = write_shares_csv(shares, s.classes, png.with_suffix(".csv"))
    options.note(f"wrote {png} and {csv}")


def _jp2_quality(ctx, param, value):
    if value is None or value == "lossless":
        return value
    try:
        quality = int(value)
    except ValueError:
        quality = 0
    if not 1 <= quality <= 100:
        raise click.BadParameter(
            f"expected 1..100 or lossless, got {value!r}", ctx=ctx, param=param
        )
    return quality


@click.command()
@options.store_argument
@options.storage_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@options.choice_option(
    "--layout",
    choices=EXPORT_LAYOUTS,
    default="stac",
    help_text="stac: COGs and a STAC catalog; geonrw: the published GeoNRW folder "
    "(<city>/<E>_<N>_rgb.jp2, _dem.tif, _seg.tif, _sar.tif) that torchgeo's GeoNRW reads.",
)
@options.tiles_option("Only these tiles (default: all complete).")
@click.option(
    "--modalities", callback=options.comma_list, help="Only these modalities (default: all)."
)
@click.option(
    "--jp2-quality",
    callback=_jp2_quality,
    help="geonrw: GDAL's JPEG2000 QUALITY of rgb.jp2 (% of the raw size), or lossless "
    "[default: 25, the release's, lossy].",
)
@options.workers_option("geonrw: processes writing tiles.")
def export(store, storage_options, out, layout, tiles, modalities, jp2_quality, workers):
    """Write STORE's tiles for readers that never import geosynth, with a dataset card.

    --layout stac: one Cloud-Optimised GeoTIFF per tile and modality (nodata
    declared, seg with the class colour table and category names, band
    descriptions) and OUT/catalog.json with one item per tile, for GDAL, QGIS,
    odc-stac and torchgeo's RasterDataset.

    --layout geonrw: the published GeoNRW folder, file formats and city folders
    as the release has them, for torchgeo's GeoNRW, the authors' loaders and
    scripts written for the release.

    Both write DATASET.md and tiles.csv beside the files: sources and flight
    dates per tile, the build's options, the classes, the licences, how to cite.

    Example: geosynth export koeln.zarr --layout geonrw --out geonrw-koeln
    """
    from geosynth.store import open_store

    s = open_store(store, storage_options=storage_options)
    if layout == "geonrw":
        from geosynth.export.geonrw import PUBLISHED_JP2_QUALITY, export_geonrw

        quality = None if jp2_quality == "lossless" else jp2_quality or PUBLISHED_JP2_QUALITY
        with options.progress_bar("export", "tile") as progress:
            result = export_geonrw(
                s, out, tiles=tiles, modalities=modalities, jp2_quality=quality,
                workers=workers, storage_options=storage_options, progress=progress,
            )  # fmt: skip
        click.echo(result.summary())
        return
    if jp2_quality is not None:
        raise click.UsageError("--jp2-quality applies to --layout geonrw")
    from geosynth.export.stac import export_store

    with options.progress_bar("export", "tile") as progress:
        result = export_store(s, out, tiles=tiles, modalities=modalities, progress=progress)
    click.echo(result.summary())


@click.command("upgrade-store")
@click.argument("old")
@click.argument("new")
@options.workers_option()
@options.scheduler_option
@options.storage_option
@click.pass_context
def upgrade_store(ctx, old, new, workers, scheduler, storage_options):
    """Convert the version 1 store OLD into a version 2 store NEW, bit-exactly.

    Every complete tile is copied (pixels, class histograms, georeferencing,
    sources); the attributes are kept and the provenance records the
    conversion. Resumable: rerun to finish an interrupted conversion.
    """
    from geosynth.ingest.upgrade import upgrade_store as run

    options.check_workers_or_scheduler(ctx, scheduler)
    options.run_with_tile_bar(
        "upgrade",
        lambda progress, on_plan: run(
            old, new, workers=workers, scheduler=scheduler, progress=progress, on_plan=on_plan,
            storage_options=storage_options,
        ),
    )  # fmt: skip
