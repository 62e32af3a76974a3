"""Options and helpers shared by several commands, defined once.

Choices come from :mod:`geosynth.names` (torch- and numpy-free), so that
``geosynth --help`` imports nothing heavy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click

from geosynth.names import DEVICES


def progress_enabled(ctx: click.Context | None = None) -> bool:
    """Progress bars are shown unless ``-q`` was given."""
    ctx = ctx or click.get_current_context(silent=True)
    obj = (ctx.find_root().obj if ctx else None) or {}
    return obj.get("verbosity", 0) >= 0


@contextlib.contextmanager
def progress_bar(desc: str, unit: str, **kwargs) -> Iterator[Callable[[int, int | None], None]]:
    """A tqdm bar (hidden under -q) as a ``progress(done, total)`` callback for the library."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, disable=not progress_enabled(), **kwargs)

    def update(done: int, total: int | None) -> None:
        bar.total = total
        bar.update(done - bar.n)

    update.note = bar.set_postfix_str  # a word on the bar, e.g. why it waits
    try:
        yield update
    finally:
        bar.close()


def note(text: str) -> None:
    """An informational line (``wrote ...``): printed unless ``-q``."""
    if progress_enabled():
        click.echo(text)


def comma_list(ctx, param, value):
    """Callback: ``"a, b,c"`` -> ``["a", "b", "c"]`` (None when the option is absent)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


store_argument = click.argument("store")


def _storage_options(ctx, param, values):
    from geosynth.errors import UsageError
    from geosynth.store.location import parse_storage_options

    try:
        return parse_storage_options(values)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


storage_option = click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    callback=_storage_options,
    metavar="KEY=VALUE",
    help="Option of the store's fsspec filesystem for s3://, gs:// URLs (repeatable), e.g. "
    "endpoint_url=http://127.0.0.1:9000 [default: the AWS_* environment variables].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="auto: CUDA when available.",
)


def _writable_file(ctx, param, value):
    """Callback: the folder of an output file takes new files (checked before any work)."""
    from pathlib import Path

    from geosynth.io import check_writable

    if value is not None:
        check_writable(Path(value).parent, value)
    return value


def _writable_folder(ctx, param, value):
    """Callback: an output folder (or where it is to be made) takes new files."""
    from geosynth.io import check_writable

    if value is not None:
        check_writable(value, f"the output folder {value}")
    return value


def out_file_option(help_text: str = "Output GeoTIFF (written atomically; replaced if it exists)."):
    return click.option(
        "--out", "out", required=True, type=click.Path(dir_okay=False), help=help_text,
        callback=_writable_file,
    )  # fmt: skip


def out_folder_option(help_text: str = "Output folder."):
    return click.option(
        "--out", required=True, type=click.Path(file_okay=False), help=help_text,
        callback=_writable_folder,
    )  # fmt: skip


def generator_option(help_text: str = "Run folder or checkpoint of a trained generator.",
                     required: bool = True):  # fmt: skip
    """``--generator RUN`` (the run folder or a checkpoint of `geosynth train`) as
    ``generator_run``."""
    return click.option(
        "--generator", "generator_run", required=required, type=click.Path(exists=True),
        help=help_text,
    )  # fmt: skip


def choice_option(*decls: str, choices, default: str, help_text: str):
    """An option taking one of ``choices`` (a tuple of :mod:`geosynth.names`), default shown."""
    return click.option(
        *decls, type=click.Choice(choices), default=default, show_default=True, help=help_text
    )


def int_option(*decls: str, default: int, help_text: str, minimum: int = 0):
    """A whole-number option of at least ``minimum``, default shown."""
    return click.option(
        *decls, type=click.IntRange(min=minimum), default=default, show_default=True,
        help=help_text,
    )  # fmt: skip


def _decode_level(ctx, param, value):
    if value is None or value == "auto":
        return value
    try:
        level = int(value)
    except ValueError:
        level = -1
    if level < 0:
        raise click.BadParameter(f"expected auto or a level 0, 1, 2, ...; got {value!r}")
    return level


decode_level_option = click.option(
    "--decode-level", callback=_decode_level, metavar="auto|N", default="0", show_default=True,
    help="Read the orthophotos at a reduced resolution of JPEG2000 (level N: 2^N times the "
    "pixel size; auto: the coarsest that keeps two of its pixels per output pixel); 0 reads "
    "the full image. Faster, within a few grey levels (docs: Performance).",
)  # fmt: skip


def _classes(ctx, param, value):
    """Callback: ``"7,18"`` -> ``(7, 18)``, ``none`` -> ``()``; None when absent."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return ()
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected class codes like 7,18 or none, got {value!r}") from None


def class_options(func):
    """``--drop-classes`` / ``--keep-classes``: the lidar point classes of a DEM."""
    func = click.option(
        "--keep-classes", callback=_classes, metavar="LIST",
        help="Only points of these classes enter the DEM, e.g. 2,20 (instead of --drop-classes).",
    )(func)  # fmt: skip
    return click.option(
        "--drop-classes", callback=_classes, metavar="LIST|none",
        help="Point classes kept out of the DEM; none keeps every class (as the authors' code) "
        "[default: the catalog's noise classes, 7,18,24].",
    )(func)  # fmt: skip


def store_option(help_text: str = "Store: a path or an s3://, gs://, memory:// URL.",
                 required: bool = True):  # fmt: skip
    """``--store``: a store read by the command (a path or an fsspec URL)."""
    return click.option("--store", required=required, help=help_text)


def unet_option(help_text: str = "U-Net run folder (or checkpoint) of `geosynth train-unet`.",
                required: bool = True):  # fmt: skip
    """``--unet RUN`` as ``unet_run``: the scorer of `geosynth train-unet`."""
    return click.option(
        "--unet", "unet_run", required=required, type=click.Path(exists=True), help=help_text
    )


def split_option(default: str = "test", help_text: str = "Store split ('all': every tile)."):
    return click.option("--split", default=default, show_default=True, help=help_text)


def tiles_option(help_text: str = "Only these tiles, e.g. 356_5645,357_5645."):
    """``--tiles E_N,...`` as a list (None when absent)."""
    return click.option("--tiles", callback=comma_list, help=help_text)


def window_options(func):
    """``--window`` and ``--overlap`` of windowed synthesis (:mod:`geosynth.ml.synthesis`)."""
    func = click.option(
        "--overlap",
        type=click.IntRange(min=0),
        help="Window overlap (default: window/4, at most 32).",
    )(func)
    return click.option(
        "--window", type=click.IntRange(min=16), help="Window size (default: training crop)."
    )(func)


def batch_size_option(default: int = 4, help_text: str = "Tiles per forward pass."):
    return click.option(
        "--batch-size", type=click.IntRange(1), default=default, show_default=True, help=help_text
    )


def workers_option(help_text: str = "Local worker processes."):
    return click.option(
        "--workers", type=click.IntRange(min=1), default=1, show_default=True, help=help_text
    )


scheduler_option = click.option(
    "--scheduler", help="dask.distributed scheduler address (instead of --workers)."
)
report_option = click.option(
    "--report", type=click.Path(dir_okay=False), help="JSON report (default: <out>.report.json)."
)


def _tile_callback(ctx, param, value):
    if value is None:
        return None
    from geosynth.errors import UsageError
    from geosynth.grid import TileId

    try:
        return TileId.parse(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def grid_options(func):
    """``--tile E_N`` / ``--like ref.tif``: the output grid of a stage command (exactly one)."""
    func = click.option(
        "--like",
        type=click.Path(exists=True, dir_okay=False),
        help="Use the grid (CRS, transform, size) of this raster.",
    )(func)
    func = click.option(
        "--tile",
        callback=_tile_callback,
        help="NRW tile id E_N in km, e.g. 356_5645 (1 km, 1 m pixels).",
    )(func)
    return func


def resolve_grid(tile, like):
    """The :class:`~geosynth.grid.RasterGrid` chosen by ``--tile`` or ``--like``."""
    from geosynth.catalog import load_catalog
    from geosynth.grid import RasterGrid

    if (tile is None) == (like is None):
        raise click.UsageError("give exactly one of --tile E_N or --like ref.tif")
    if tile is not None:
        return RasterGrid.for_tile(tile, load_catalog().grid)
    return RasterGrid.like(like)


# --------------------------------------------------------------------------- generator inputs


def raster_options(func):
    """``--seg/--dem/--sar``: the user's own rasters as generator inputs."""
    for name, what in reversed(
        [
            ("--seg", "Your own label map (GeoTIFF, class ids)."),
            ("--dem", "Your own DEM (GeoTIFF, metres)."),
            ("--sar", "Your own SAR raster (GeoTIFF, normalised to [0, 1])."),
        ]
    ):
        func = click.option(name, type=click.Path(exists=True, dir_okay=False), help=what)(func)
    return click.option(
        "--crs",
        expose_value=False,
        callback=lambda ctx, param, value: ctx.meta.__setitem__("geosynth.input_crs", value),
        help="CRS of input rasters that have a transform but none (e.g. EPSG:25832); "
        "without it such inputs are refused.",
    )(func)


def load_inputs(store, tile, seg, dem, sar, storage_options=None):
    """One tile's inputs from ``--store/--tile`` or from the user's own rasters (with the
    command's ``--crs``)."""
    from geosynth.catalog import load_catalog
    from geosynth.edit.tile import from_files, from_store

    files = {"seg": seg, "dem": dem, "sar": sar}
    if store or tile:
        if not (store and tile):
            raise click.UsageError("--store and --tile go together")
        if any(files.values()):
            raise click.UsageError("give --store/--tile or input rasters, not both")
        return from_store(store, tile, storage_options=storage_options)
    ctx = click.get_current_context(silent=True)
    crs = ctx.meta.get("geosynth.input_crs") if ctx else None
    return from_files(load_catalog().classes, crs=crs, **files)


def device_name(device: str) -> str:
    from geosynth.ml.training.distributed import resolve_device

    return resolve_device(device).type


def check_workers_or_scheduler(ctx: click.Context, scheduler: str | None) -> None:
    if scheduler and ctx.get_parameter_source("workers").name != "DEFAULT":
        raise click.UsageError("give --workers or --scheduler, not both")


def run_with_tile_bar(desc: str, run):
    """Call ``run(progress, on_plan)`` with a tqdm bar of tiles (off under -q); print the summary.

    A run with failed tiles exits 1.
    """
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="tile", disable=not progress_enabled())

    def on_plan(n):
        bar.total = n
        bar.refresh()

    def on_tile(record):
        bar.update(1)
        bar.set_postfix_str(f"{record['tile']} {record['status']}")

    try:
        result = run(on_tile, on_plan)
    finally:
        bar.close()
    click.echo(result.summary())
    if not result.ok:
        raise click.ClickException(f"{len(result.failed)} tile(s) failed; see the report")


def _parse_with(parser, option: str):
    def callback(ctx, param, value):
        if value is None:
            return None
        from geosynth.errors import UsageError

        try:
            return parser(value)
        except UsageError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None

    return callback


def _season(text):
    from geosynth.ml.data.conditions import parse_season

    return parse_season(text)


def _orbit(text):
    from geosynth.ml.data.conditions import parse_orbit

    return parse_orbit(text)


def condition_options(func):
    """``--season``, ``--incidence``, ``--orbit``, ``--samples``, ``--seed`` of a generator trained
    with ``--conditions`` and/or ``--noise``."""
    options = [
        click.option(
            "--season",
            callback=_parse_with(_season, "--season"),
            help="Synthesize in this season: a day of year or winter, spring, summer, autumn "
            "(generators trained with --conditions season).",
        ),
        click.option(
            "--incidence",
            type=click.FloatRange(0, 90, min_open=True, max_open=True),
            help="SAR incidence angle in degrees (--conditions incidence).",
        ),
        click.option(
            "--orbit",
            callback=_parse_with(_orbit, "--orbit"),
            help="SAR orbit direction: asc or desc (--conditions orbit).",
        ),
        click.option(
            "--samples",
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help="Images per input, each from its own noise (generators trained with --noise; "
            "the diffusion generator).",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of the noise vectors."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def sampling_options(func):
    """``--steps``, ``--sampler``, ``--guidance``: how the diffusion generator samples
    [default: its run's]."""
    from geosynth.names import DIFFUSION_SAMPLERS

    options = [
        click.option("--steps", type=click.IntRange(1),
                     help="Diffusion generator: sampling steps [default: its run's]."),
        click.option("--sampler", type=click.Choice(DIFFUSION_SAMPLERS),
                     help="Diffusion generator: ddim, or dpm (DPM-Solver++) [default: its run's]."),
        click.option("--guidance", type=click.FloatRange(0),
                     help="Diffusion generator: classifier-free guidance scale [default: its run's]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def condition_request(season, incidence, orbit) -> dict:
    """The conditions given on the command line, as :func:`plan_variants` takes them."""
    given = {"season": season, "incidence": incidence, "orbit": orbit}
    return {k: v for k, v in given.items() if v is not None}
