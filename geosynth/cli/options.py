"""Options shared by several commands, defined once."""

from __future__ import annotations

import click


def progress_enabled(ctx: click.Context | None = None) -> bool:
    """Progress bars are shown unless ``-q`` was given."""
    ctx = ctx or click.get_current_context(silent=True)
    obj = (ctx.find_root().obj if ctx else None) or {}
    return obj.get("verbosity", 0) >= 0


def comma_list(ctx, param, value):
    """Callback: ``"a, b,c"`` -> ``["a", "b", "c"]`` (None when the option is absent)."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


store_argument = click.argument("store", type=click.Path(path_type=str))
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


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


def run_with_tile_bar(desc: str, run):
    """Call ``run(progress, on_plan)`` with a tqdm bar (off under -q); print the summary."""
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


device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when available.",
)
