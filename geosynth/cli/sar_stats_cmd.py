"""``geosynth sar-stats``: speckle statistics of real and synthesized SAR, per class."""

from __future__ import annotations

import json

import click

from geosynth.cli import options


@click.command("sar-stats")
@options.store_option("Store with labels (seg) and, for real SAR, sar.")
@options.storage_option
@options.tiles_option("Only these tiles (default: the split's).")
@options.split_option("all", "Store split whose tiles count ('all': every complete tile).")
@click.option(
    "--synth",
    "synth",
    multiple=True,
    type=click.Path(exists=True),
    help="Synthesized SAR: <tile>_sar.tif files of `geosynth synthesize`, or folders of them "
    "(repeatable).",
)
@click.option(
    "--raw",
    multiple=True,
    type=click.Path(exists=True),
    help="Raw EEC scenes (product folders or GeoTIFFs of amplitude DN), measured on their own "
    "pixel grid (repeatable).",
)
@click.option(
    "--world",
    help="A demo world folder ('store': the one the store was built from): its SAR scenes "
    "count as --raw and its simulated looks are checked (exit 1 when not recovered).",
)
@click.option("--no-real", is_flag=True, help="Leave out the store's own SAR.")
@options.int_option(
    "--erode",
    minimum=0,
    default=3,
    help_text="Pixels removed from every class edge, validity edge and tile border.",
)
@click.option(
    "--looks",
    type=click.FloatRange(min=0.01),
    help="Fix the K fit's looks L (default: L and the texture alpha both fitted).",
)
@options.out_folder_option("Folder for sar_stats.csv, sar_stats.json and a PNG per class.")
@options.json_option
def sar_stats(
    store, storage_options, tiles, split, synth, raw, world, no_real, erode, looks, out, as_json
):
    """Speckle statistics per class over homogeneous areas, real against synthesized SAR.

    For each source (raw scenes, the store's SAR, synthesized rasters) and
    class: ENL, local ENL, CV of amplitude, Gamma and K fits with their
    Kolmogorov-Smirnov distances, and the autocorrelation at lags 1..5. The
    store's normalised SAR is inverted with A = 10^(100 x / 20).

    Example: geosynth sar-stats --store demo.zarr --synth synth/ --out sar-stats
    """
    from geosynth.analysis import sar_stats as ss
    from geosynth.errors import UsageError
    from geosynth.store import open_store

    s = open_store(store, storage_options=storage_options)
    split = None if split == "all" else split
    scenes, expected = list(raw), None
    if world == "store":
        parameters = s.provenance.get("parameters", {})
        world = ss.world_of_sources(parameters)
        if world is None:
            built_from = parameters.get("source_dir") or "no source folder"
            raise UsageError(
                f"--world store: {store} was built from {built_from}, and no demo world "
                "(world.json with SAR scenes) is there or one folder up; give --world FOLDER"
            )
    if world:
        found, expected = ss.world_scenes(world)
        scenes += [str(p) for p in found]

    def pieces():
        if scenes:
            yield from ss.raw_pieces(s, scenes, tiles, split)
        if not no_real and "sar" in s.modalities:
            yield from ss.store_pieces(s, tiles, split)
        if synth:
            yield from ss.synth_pieces(s, synth)

    results = ss.class_stats(pieces(), s.classes, erode_px=erode, looks=looks)
    if not results:
        raise UsageError(
            "no SAR to measure: no class has enough homogeneous pixels in any source "
            "(give --raw, --world or --synth, or a store with sar)"
        )
    check = ss.looks_check(results, expected) if expected is not None else None
    written = ss.write_outputs(results, out, erode_px=erode, check=check)
    written += [ss.plot_pair(s, path, out) for path in ss.expand_rasters(synth)]
    if as_json:
        click.echo(json.dumps(json.loads(written[1].read_text()), indent=2))
    else:
        click.echo(ss.INVERSION_NOTE + ".")
        for line in ss.summary_lines([r.row() for r in results], check):
            click.echo(line)
        click.echo(
            f"wrote {written[0].name}, {written[1].name} and {len(written) - 2} figure(s) in {out}"
        )
    if check is not None and not check["passed"]:
        raise click.ClickException(ss.check_sentence(check))
