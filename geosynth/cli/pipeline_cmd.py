"""``geosynth pipeline run`` and ``geosynth report``: recipes of geosynth commands."""

from __future__ import annotations

import click

from geosynth.cli import options


def _sets(ctx, param, values):
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        out[key.strip()] = value.strip()
    return out


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    callback=_sets,
    metavar="KEY=VALUE",
    help="Override a variable of the recipe (repeatable).",
)


def run_recipe(path, overrides, force, step, dry_run) -> None:
    """Run a recipe, printing each step's status and a summary.

    ``step``: None (all steps), one step's name or several (run in the recipe's order).
    """
    from geosynth.pipeline.recipe import load_pipeline, resolve_recipe, run_pipeline

    pipeline = load_pipeline(resolve_recipe(path), overrides)

    def on_step(s, status):
        shown = f"  ({s.command})" if status in ("running", "dry-run") else ""
        click.echo(f"[{pipeline.name}] {s.name}: {status}{shown}", err=True)

    names = [s.name for s in pipeline.steps]
    chosen = [step] if step is None or isinstance(step, str) else list(dict.fromkeys(step))
    chosen.sort(key=lambda n: -1 if n is None or n not in names else names.index(n))
    results = [
        run_pipeline(pipeline, force=force, only=name, dry_run=dry_run, on_step=on_step)
        for name in (chosen or [None])
    ]
    ran = sum(s.status == "ran" for r in results for s in r.steps)
    skipped = sum(s.status == "skipped" for r in results for s in r.steps)
    click.echo(f"pipeline {pipeline.name}: {ran} step(s) ran, {skipped} skipped")


@click.group()
def pipeline():
    """Run declarative recipes of geosynth commands (pipelines/*.yaml)."""


@pipeline.command("run")
@click.argument("recipe")
@set_option
@click.option("--force", is_flag=True, help="Rerun steps whose outputs exist.")
@click.option("--step", multiple=True, help="Run only this step (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the steps without running them.")
def pipeline_run(recipe, overrides, force, step, dry_run):
    """Run RECIPE step by step; a step whose outputs exist from a successful run is skipped.

    RECIPE: a YAML file, or the name of a bundled recipe (`geosynth pipeline list`), e.g.
    `geosynth pipeline run demo --dry-run`.
    """
    run_recipe(recipe, overrides, force, step, dry_run)


@pipeline.command("list")
def pipeline_list():
    """The recipes bundled with geosynth: name, file and the first line of their comment."""
    from geosynth.pipeline.recipe import bundled_pipelines

    for name, path in bundled_pipelines().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        about = next((ln.lstrip("# ").strip() for ln in lines if ln.startswith("#")), "")
        click.echo(f"{name:16s} {about}")
        click.echo(f"{'':16s} {path}")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--title", default="geosynth demo", show_default=True)
def report(folder, title):
    """Write FOLDER/report.md and report.html from a pipeline's outputs (table, figures)."""
    from geosynth.pipeline.report import write_report

    md, page = write_report(folder, title=title)
    options.note(f"wrote {md} and {page}")
