"""The ``geosynth`` command line: a thin click layer over the library.

Commands live in one module per group, named after its commands
(``stages_cmd``: aerial, dem, landcover, sar; ``ingest_cmd``: download,
build-geonrw, import-*; ``store_cmd``: info, verify, stats; ...). Heavy
imports (rasterio, zarr, torch, osmnx) happen inside command bodies so that
``geosynth --help`` stays instant. Domain errors (:mod:`geosynth.errors`) are
turned into exit codes here and only here: usage errors exit 2, data and
runtime errors exit 1, with a traceback only under ``-v``.
"""

from __future__ import annotations

import logging
import sys

import click

from geosynth import __version__
from geosynth.errors import GeosynthError

log = logging.getLogger("geosynth")

# command name -> (module, attribute); one module per group of commands, named after them
COMMANDS = {
    "catalog": ("geosynth.cli.catalog_cmd", "catalog"),
    "demo-world": ("geosynth.cli.demo_cmd", "demo_world"),
    "demo": ("geosynth.cli.demo_cmd", "demo"),
    "download": ("geosynth.cli.ingest_cmd", "download"),
    "build-geonrw": ("geosynth.cli.ingest_cmd", "build_geonrw"),
    "import-geonrw": ("geosynth.cli.ingest_cmd", "import_geonrw"),
    "import-dfc2020": ("geosynth.cli.ingest_cmd", "import_dfc2020"),
    "aerial": ("geosynth.cli.stages_cmd", "aerial"),
    "dem": ("geosynth.cli.stages_cmd", "dem"),
    "landcover": ("geosynth.cli.stages_cmd", "landcover"),
    "sar": ("geosynth.cli.stages_cmd", "sar"),
    "info": ("geosynth.cli.store_cmd", "info"),
    "verify": ("geosynth.cli.store_cmd", "verify"),
    "stats": ("geosynth.cli.store_cmd", "stats"),
    "export": ("geosynth.cli.store_cmd", "export"),
    "upgrade-store": ("geosynth.cli.store_cmd", "upgrade_store"),
    "model-info": ("geosynth.cli.model_info_cmd", "model_info"),
    "train": ("geosynth.cli.train_cmd", "train"),
    "train-unet": ("geosynth.cli.train_cmd", "train_unet"),
    "evaluate": ("geosynth.cli.evaluate_cmd", "evaluate"),
    "table": ("geosynth.cli.evaluate_cmd", "table"),
    "synthesize": ("geosynth.cli.synthesize_cmd", "synthesize"),
    "vary": ("geosynth.cli.synthesize_cmd", "vary"),
    "edit-flood": ("geosynth.cli.edit_cmd", "edit_flood"),
    "edit-classes": ("geosynth.cli.edit_cmd", "edit_classes"),
    "pipeline": ("geosynth.cli.pipeline_cmd", "pipeline"),
    "report": ("geosynth.cli.pipeline_cmd", "report"),
}


class GeosynthGroup(click.Group):
    """A click group that turns :class:`GeosynthError` into clean exits."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GeosynthError as exc:
            verbose = (ctx.obj or {}).get("verbosity", 0) > 0
            if verbose:
                log.error("traceback", exc_info=True)
            if exc.exit_code == 2:
                raise click.UsageError(
                    str(exc), ctx=click.get_current_context(silent=True) or ctx
                ) from exc
            raise click.ClickException(str(exc)) from exc


def _configure_logging(verbosity: int) -> None:
    level = logging.INFO
    if verbosity > 0:
        level = logging.DEBUG
    elif verbosity < 0:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity > 0 else "%(message)s")
    )
    root = logging.getLogger("geosynth")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=GeosynthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="geosynth")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug and tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """geosynth: build GeoNRW-style datasets and synthesize optical and SAR imagery.

    Data preparation turns raw NRW open data (or the offline demo world) into
    Zarr stores; the bundled torch models train on those stores, synthesize
    and edit. See README.md for the store contract.
    """
    verbosity = -1 if quiet else verbose
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = verbosity
    _configure_logging(verbosity)


def _register() -> None:
    import importlib

    for name, (module, attr) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attr)
        cli.add_command(command, name)


_register()


def main() -> None:
    cli(prog_name="geosynth")
