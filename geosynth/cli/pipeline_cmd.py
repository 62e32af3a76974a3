"""``geosynth pipeline run``, ``table``, ``report`` and ``demo``."""

from __future__ import annotations

import click


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


def _run(path, overrides, force, step, dry_run):
    from geosynth.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(path, overrides)

    def on_step(s, status):
        click.echo(
            f"[{pipeline.name}] {s.name}: {status}"
            + (f"  ({s.command})" if status in ("running", "dry-run") else ""),
            err=True,
        )

    result = run_pipeline(pipeline, force=force, only=step, dry_run=dry_run, on_step=on_step)
    ran = sum(s.status == "ran" for s in result.steps)
    skipped = sum(s.status == "skipped" for s in result.steps)
    click.echo(f"pipeline {pipeline.name}: {ran} step(s) ran, {skipped} skipped")
    return pipeline


@click.group()
def pipeline():
    """Run declarative recipes of geosynth commands (pipelines/*.yaml)."""


@pipeline.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@set_option
@click.option("--force", is_flag=True, help="Rerun steps whose outputs exist.")
@click.option("--step", help="Run only this step.")
@click.option("--dry-run", is_flag=True, help="Print the steps without running them.")
def pipeline_run(recipe, overrides, force, step, dry_run):
    """Run RECIPE step by step; a step whose outputs exist from a successful run is skipped."""
    _run(recipe, overrides, force, step, dry_run)


@click.command()
@click.argument("evals", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Markdown file.")
def table(evals, out):
    """Assemble Table III (Markdown) from evaluation folders (their metrics.json), in order."""
    from pathlib import Path

    from geosynth.io import atomic_path
    from geosynth.ml.evaluate import markdown_table, read_metrics

    text = markdown_table([read_metrics(Path(e) / "metrics.json") for e in evals])
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    click.echo(text, nl=False)


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--title", default="geosynth demo", show_default=True)
def report(folder, title):
    """Write FOLDER/report.md and report.html from a pipeline's outputs (table, figures)."""
    from geosynth.report import write_report

    md, page = write_report(folder, title=title)
    click.echo(f"wrote {md} and {page}")


@click.command()
@click.option(
    "--out",
    default="demo-run",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for everything the demo makes.",
)
@set_option
@click.option("--force", is_flag=True, help="Rerun steps whose outputs exist.")
def demo(out, overrides, force):
    """The whole system on the offline demo world, on CPU, in about 10 minutes on 2 cores.

    Generates the demo world, builds its store, trains a short U-Net and three
    short generators (label-only, DEM-only, ours), evaluates them (Table III),
    synthesizes the test tiles, floods one and writes OUT/report.md and
    OUT/report.html. Rerunning skips finished steps.
    """
    from geosynth.pipeline import bundled_pipeline

    overrides = {"out": out, **overrides}
    _run(bundled_pipeline("demo"), overrides, force, None, False)
    click.echo(f"report: {out}/report.md (and report.html)")
