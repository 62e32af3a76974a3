"""``geosynth synthesize``: whole tiles through a trained generator."""

from __future__ import annotations

import click

from geosynth.cli import options


@click.command()
@options.generator_option("Run folder or checkpoint of a trained generator.")
@options.store_option("Store (a path or URL) to read the inputs from.", required=False)
@options.storage_option
@options.tiles_option("Tiles of the store (default: all of --split).")
@options.split_option("test", "Split used when --tiles is not given.")
@options.raster_options
@options.out_folder_option()
@options.window_options
@click.option("--sar-db", is_flag=True, help="Write SAR back in dB (20 log10 amplitude).")
@options.condition_options
@options.sampling_options
@options.device_option
def synthesize(
    generator_run, store, storage_options, tiles, split, seg, dem, sar, out, window, overlap,
    sar_db, season, incidence, orbit, samples, seed, steps, sampler, guidance, device,
):  # fmt: skip
    """Synthesize full tiles with a trained generator, as Cloud-Optimised GeoTIFFs and PNG panels.

    Windows of the training crop size overlap and are blended without seams.
    Each tile gives <tile>_<rgb|sar>.tif with the tile's CRS and transform and
    <tile>_panel.png (inputs, synthesized, and the real image when known).

    A generator trained with --conditions synthesizes under the tile's own
    acquisition conditions, or under --season/--incidence/--orbit; one
    trained with --noise draws --samples N images (<tile>_<out>_sK.tif), the
    same ones for the same --seed. The diffusion generator draws --samples N
    images from seeds --seed, --seed + 1, ... (--steps, --sampler, --guidance).
    """
    from geosynth.ml.synthesis.synthesize import Synthesizer, plan_variants, run_synthesis

    device = options.device_name(device)
    sampling = {"steps": steps, "sampler": sampler, "guidance": guidance}
    synth = Synthesizer.load(generator_run, device=device, sampling=sampling)
    if store and any((seg, dem, sar)):
        raise click.UsageError("give --store or input rasters, not both")
    names = [None]  # the user's own rasters
    if store:
        from geosynth.store import open_store

        s = open_store(store, storage_options=storage_options)
        names = tiles or [s.tile_ids[i] for i in s.tiles(split)]
        if not names:
            raise click.UsageError(f"store {store} has no complete tile in split {split!r}")
    with options.progress_bar("synthesize", "tile", total=len(names)) as progress:
        for done, tile in enumerate(names, 1):
            inputs = options.load_inputs(store, tile, seg, dem, sar, storage_options)
            variants = plan_variants(
                synth.config, inputs.acquisition, f"tile {inputs.name}",
                requests=[options.condition_request(season, incidence, orbit)], samples=samples, seed=seed,
            )  # fmt: skip
            files = run_synthesis(
                synth, inputs, out, window=window, overlap=overlap, sar_db=sar_db, device=device,
                variants=variants,
            )  # fmt: skip
            progress(done, len(names))
            for f in files:
                click.echo(f)


@click.command()
@options.generator_option("Run folder or checkpoint of a generator trained with --conditions.")
@options.store_option("Store (a path or URL) to read the tile from.")
@options.storage_option
@click.option("--tile", required=True, help="The tile to show through the conditions.")
@click.option(
    "--season",
    "seasons",
    help="Days of year START:STOP:STEP or A,B,C (e.g. 80:300:40).",
)
@click.option("--incidence", "incidences", help="Incidence angles START:STOP:STEP or A,B,C.")
@click.option("--orbit", "orbits", help="Orbit directions, e.g. asc,desc.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise vector.")
@options.out_folder_option()
@options.window_options
@options.device_option
def vary(
    generator_run, store, storage_options, tile, seasons, incidences, orbits, seed, out, window,
    overlap, device,
):  # fmt: skip
    """The same tile through the seasons or look angles: one COG per condition, a strip and a GIF.

    Give one of --season, --incidence, --orbit as a range or list; the other
    conditions stay the tile's own. Writes <tile>_<out>_<condition>.tif (as
    synthesize does, georeferenced, tagged with the condition),
    <tile>_vary.png (the strip) and <tile>_vary.gif. Example:

        geosynth vary --generator runs/seasons --store demo.zarr --tile 358_5646
        --season 80:300:40 --out vary/
    """
    from geosynth.errors import UsageError
    from geosynth.ml.data.conditions import parse_orbit, parse_range, parse_season
    from geosynth.ml.synthesis.synthesize import (
        Synthesizer,
        plan_variants,
        run_synthesis,
        save_strip,
    )

    given = [(n, v) for n, v in (("season", seasons), ("incidence", incidences),
                                 ("orbit", orbits)) if v]  # fmt: skip
    if len(given) != 1:
        raise click.UsageError("give exactly one of --season, --incidence, --orbit to vary")
    name, text = given[0]
    try:
        if name == "season":
            values = [parse_season(int(round(v))) for v in parse_range(text, "--season")]
        elif name == "incidence":
            values = parse_range(text, "--incidence")
        else:
            values = [parse_orbit(v) for v in text.split(",") if v.strip()]
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{name}") from None
    device = options.device_name(device)
    synth = Synthesizer.load(generator_run, device=device)
    inputs = options.load_inputs(store, tile, None, None, None, storage_options)
    variants = plan_variants(
        synth.config, inputs.acquisition, f"tile {tile}",
        requests=[{name: v} for v in values], seed=seed,
    )  # fmt: skip
    with options.progress_bar("vary", "image", total=len(variants)) as progress:
        files = []
        for done, variant in enumerate(variants, 1):
            files += run_synthesis(
                synth, inputs, out, window=window, overlap=overlap, device=device,
                variants=[variant], panel=False,
            )  # fmt: skip
            progress(done, len(variants))
    files += save_strip(out, tile, synth.config.output, variants, files, inputs.classes)
    for f in files:
        click.echo(f)
