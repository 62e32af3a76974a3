"""``geosynth import-geonrw`` and ``geosynth import-dfc2020``: published datasets -> stores."""

from __future__ import annotations

import click

from geosynth.cli.options import progress_enabled, run_with_tile_bar

workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes.",
)
report_option = click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="JSON import report (default: <out>.report.json).",
)
out_option = click.option(
    "--out",
    type=click.Path(),
    required=True,
    help="Store to write. An existing store is resumed: complete tiles are skipped.",
)


def _assignments(ctx, param, values):
    out = {}
    for value in values:
        city, sep, split = value.partition("=")
        if not sep or not city.strip() or split.strip() not in ("train", "test"):
            raise click.BadParameter(
                f"expected CITY=train or CITY=test, got {value!r}", ctx=ctx, param=param
            )
        out[city.strip().lower()] = split.strip()
    return out


@click.command("import-geonrw")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@out_option
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
@workers_option
@report_option
def import_geonrw(root, out, with_sar, assign, download, workers, report):
    """Import the published GeoNRW dataset (ROOT/<city>/<E>_<N>_{rgb.jp2,dem.tif,seg.tif})
    into a store.

    The city decides the split (catalog regions); pixels are copied
    bit-exactly (integer DEMs cast to float32 metres); georeferencing comes
    from the files, else from names <E>_<N> in km, else the tile has none.
    Incomplete or inconsistent tiles are excluded and reported. Exits 1 when
    a tile failed.
    """
    from geosynth.build import default_cache_dir
    from geosynth.importers.geonrw import download_geonrw, import_geonrw

    if root is None and not download:
        raise click.UsageError("give ROOT, the GeoNRW folder, or --download")
    if download:
        from tqdm import tqdm

        dest = root or str(default_cache_dir() / "geonrw")
        with tqdm(
            desc="download", unit="B", unit_scale=True, disable=not progress_enabled()
        ) as bar:

            def on_bytes(done, total):
                bar.total = total
                bar.update(done - bar.n)

            root = str(download_geonrw(dest, progress=on_bytes))
    run_with_tile_bar(
        "import geonrw",
        lambda progress, on_plan: import_geonrw(
            root,
            out,
            with_sar=with_sar,
            workers=workers,
            assign=assign,
            report_path=report,
            progress=progress,
            on_plan=on_plan,
        ),
    )


@click.command("import-dfc2020")
@click.argument("root", type=click.Path(file_okay=False))
@out_option
@click.option(
    "--split-rule",
    type=click.Choice(["paper", "code"]),
    default="paper",
    show_default=True,
    help="paper: contest test patches train, validation patches test; code: patches whose "
    "number ends in 9 are test (the code published with the paper).",
)
@workers_option
@report_option
def import_dfc2020(root, out, split_rule, workers, report):
    """Import the DFC2020 patches (ROOT/ROIs0000_{test,validation}/...) into a store.

    S1 becomes sar (VV, VH in [0, 1]), S2 B4/B3/B2 become rgb (uint8), the
    full S2 stack is kept as s2 (uint16), the labels become seg; every tile
    keeps its own UTM CRS. Exits 1 when a patch failed.
    """
    from geosynth.importers.dfc2020 import import_dfc2020 as run

    run_with_tile_bar(
        "import dfc2020",
        lambda progress, on_plan: run(
            root,
            out,
            split_rule=split_rule,
            workers=workers,
            report_path=report,
            progress=progress,
            on_plan=on_plan,
        ),
    )
