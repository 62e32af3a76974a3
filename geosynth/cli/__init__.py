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
from pathlib import Path

import click

from geosynth import __version__
from geosynth.errors import GeosynthError, OutputError, write_failure

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
    "sar-stats": ("geosynth.cli.sar_stats_cmd", "sar_stats"),
    "export": ("geosynth.cli.store_cmd", "export"),
    "upgrade-store": ("geosynth.cli.store_cmd", "upgrade_store"),
    "model-info": ("geosynth.cli.model_info_cmd", "model_info"),
    "import-weights": ("geosynth.cli.weights_cmd", "import_weights"),
    "export-weights": ("geosynth.cli.weights_cmd", "export_weights"),
    "train": ("geosynth.cli.train_cmd", "train"),
    "train-unet": ("geosynth.cli.train_cmd", "train_unet"),
    "evaluate": ("geosynth.cli.evaluate_cmd", "evaluate"),
    "table": ("geosynth.cli.evaluate_cmd", "table"),
    "fusion-probe": ("geosynth.cli.probe_cmd", "fusion_probe"),
    "synthesize": ("geosynth.cli.synthesize_cmd", "synthesize"),
    "vary": ("geosynth.cli.synthesize_cmd", "vary"),
    "edit-flood": ("geosynth.cli.edit_cmd", "edit_flood"),
    "edit-classes": ("geosynth.cli.edit_cmd", "edit_classes"),
    "augment": ("geosynth.cli.augment_cmd", "augment"),
    "score-unet": ("geosynth.cli.augment_cmd", "score_unet"),
    "augment-table": ("geosynth.cli.augment_cmd", "augment_table"),
    "pipeline": ("geosynth.cli.pipeline_cmd", "pipeline"),
    "report": ("geosynth.cli.pipeline_cmd", "report"),
}


class GeosynthGroup(click.Group):
    """A click group that turns :class:`GeosynthError` and failed writes (disk full,
    read-only output) into clean one-line exits."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C: the command has logged what is saved; exit 130
            click.echo("interrupted (Ctrl-C)", err=True)
            raise click.exceptions.Exit(130) from None
        except GeosynthError as exc:
            if isinstance(exc, OutputError):
                _quiet_abandoned_writes()
            verbose = (ctx.obj or {}).get("verbosity", 0) > 0
            if verbose:
                log.error("traceback", exc_info=True)
            if exc.exit_code == 2:
                raise click.UsageError(
                    str(exc), ctx=click.get_current_context(silent=True) or ctx
                ) from exc
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # disk full, read-only output: one line, not a traceback
            message = write_failure(exc)
            if message is None:
                raise
            _quiet_abandoned_writes()
            if (ctx.obj or {}).get("verbosity", 0) > 0:
                log.error("traceback", exc_info=True)
            raise click.ClickException(message) from exc


def _quiet_abandoned_writes() -> None:
    """After a failed write (disk full) zarr's event loop still holds the abandoned chunk
    writes; at exit asyncio would log each ('Task was destroyed but it is pending') and
    Python print a traceback per coroutine closed with the loop. The process is exiting
    with the one-line error: those say nothing more."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None


class CommandContext(click.Context):
    """A command's context: usage errors from its body show its own usage, not the group's."""

    def invoke(self, callback, /, *args, **kwargs):
        made = _folders_to_make(self.params.get("out"))
        try:
            return self._invoke(callback, *args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            if not (isinstance(exc, click.exceptions.Exit) and exc.exit_code == 0):
                _remove_empty(made)
            raise

    def _invoke(self, callback, /, *args, **kwargs):
        try:
            return super().invoke(callback, *args, **kwargs)
        except GeosynthError as exc:
            if exc.exit_code != 2 or isinstance(self.command, click.Group):
                raise
            if (self.find_root().obj or {}).get("verbosity", 0) > 0:
                log.error("traceback", exc_info=True)
            raise click.UsageError(str(exc), ctx=self) from exc


def _folders_to_make(out) -> list[Path]:
    """The folders of ``--out`` (itself, for an output folder, and its parents) that do not
    exist yet, innermost first: those a failing command must not leave behind empty."""
    if not isinstance(out, str) or "://" in out:
        return []
    made = []
    path = Path(out).absolute()
    while not path.exists() and path != path.parent:
        made.append(path)
        path = path.parent
    return made


def _remove_empty(folders: list[Path]) -> None:
    """No command leaves an empty output folder on an error (only those this run made)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not made, not empty (the error's own output), or gone
            if folder.is_dir():
                return


def _show_version(ctx: click.Context, param, value) -> None:
    """``--version``: geosynth's and its main libraries' versions (as ``rio --gdal-version``)."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    lines = [f"geosynth {__version__}"]
    try:
        import rasterio

        lines.append(f"GDAL {rasterio.__gdal_version__}")
    except ImportError:  # pragma: no cover (a dependency)
        lines.append("GDAL not installed")
    for package in ("rasterio", "zarr", "torch", "numpy"):
        try:
            lines.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package} not installed")
    click.echo("\n".join(lines))
    ctx.exit()


def _verbosity(ctx: click.Context, param, value: int) -> int:
    if value > 2:
        raise click.BadParameter("at most -vv (-v: debug and tracebacks; -vv: libraries too)")
    return value


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
    if verbosity >= 2:  # -vv: the debug logs of rasterio, zarr, fsspec, urllib3, torch too
        libraries = logging.getLogger()
        libraries.handlers[:] = [handler]
        libraries.setLevel(logging.DEBUG)


@click.group(cls=GeosynthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
    help="Show the versions of geosynth, GDAL, rasterio, zarr, torch and numpy, and exit.",
)  # fmt: skip
@click.option(
    "-v", "--verbose", count=True, callback=_verbosity,
    help="More log output: -v debug logs and tracebacks; -vv also the libraries' debug logs.",
)  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """geosynth: build GeoNRW-style datasets and synthesize optical and SAR imagery.

    Data preparation turns raw NRW open data (or the offline demo world) into
    Zarr stores; the bundled torch models train on those stores, synthesize
    and edit. The manual: docs/ (mkdocs serve), the store contract in docs/store.md.
    """
    verbosity = -1 if quiet else verbose
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = verbosity
    _configure_logging(verbosity)


def _register() -> None:
    import importlib

    def own_context(command: click.Command) -> None:
        command.context_class = CommandContext
        for sub in getattr(command, "commands", {}).values():
            own_context(sub)

    for name, (module, attr) in COMMANDS.items():
        command = getattr(importlib.import_module(module), attr)
        own_context(command)
        cli.add_command(command, name)


_register()


def main() -> None:
    cli(prog_name="geosynth")
