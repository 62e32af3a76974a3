"""Pipelines: recipes of geosynth commands, skipped when done, stopped on failure."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.pipeline.recipe import bundled_pipeline, load_pipeline, run_pipeline
from geosynth.store import TileData, TilePlan, create_store, modality


@pytest.fixture
def store(tmp_path, geonrw_classes):
    path = tmp_path / "s.zarr"
    s = create_store(
        path,
        [TilePlan("1_1", "demo", "train"), TilePlan("2_1", "demo", "test")],
        tile_shape=(16, 16),
        modalities=[modality("seg")],
        dataset="t",
        crs="EPSG:25832",
        classes=geonrw_classes,
    )
    for t in ("1_1", "2_1"):
        s.write_tile(t, TileData(seg=np.full((16, 16), 3, np.uint8)))
    return path


def recipe(tmp_path, steps, vars_=None):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "t", "vars": {"out": str(tmp_path / "out"), **(vars_ or {})}, "steps": steps}
        )
    )
    return path


def test_runs_then_skips_then_reruns_a_changed_step(tmp_path, store):
    steps = [
        {
            "name": "stats",
            "run": f"geosynth -q stats {store} --out {{out}}/a.png",
            "outputs": ["{out}/a.png"],
        },
        {
            "name": "info",
            "run": f"geosynth -q stats {store} --out {{out}}/{{name}}.png",
            "outputs": ["{out}/{name}.png"],
        },
    ]
    path = recipe(tmp_path, steps, {"name": "b"})
    first = run_pipeline(load_pipeline(path))
    assert [s.status for s in first.steps] == ["ran", "ran"]
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "b.csv").exists()
    again = run_pipeline(load_pipeline(path))
    assert [s.status for s in again.steps] == ["skipped", "skipped"]
    changed = run_pipeline(load_pipeline(path, {"name": "c"}))
    assert [s.status for s in changed.steps] == ["skipped", "ran"]
    # a deleted output reruns its step
    (tmp_path / "out" / "a.png").unlink()
    rerun = run_pipeline(load_pipeline(path, {"name": "c"}))
    assert [s.status for s in rerun.steps] == ["ran", "skipped"]


def test_failure_names_the_step_and_stops(tmp_path):
    steps = [
        {"name": "bad", "run": "geosynth info {out}/missing.zarr", "outputs": ["{out}/x"]},
        {"name": "never", "run": "geosynth catalog", "outputs": ["{out}/y"]},
    ]
    with pytest.raises(DataError, match=r"step 'bad' failed \(exit code 1\)"):
        run_pipeline(load_pipeline(recipe(tmp_path, steps)))
    steps = [{"name": "noout", "run": "geosynth catalog", "outputs": ["{out}/never.txt"]}]
    with pytest.raises(DataError, match="did not produce"):
        run_pipeline(load_pipeline(recipe(tmp_path, steps)))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"name": "x", "run": "rm -rf /", "outputs": ["a"]}], "may only call geosynth"),
        ([{"name": "x", "run": "geosynth catalog {nope}", "outputs": ["a"]}], "unknown variable"),
        ([{"name": "x", "run": "geosynth catalog"}], "outputs"),
        (
            [
                {"name": "x", "run": "geosynth catalog", "outputs": ["a"]},
                {"name": "x", "run": "geosynth catalog", "outputs": ["b"]},
            ],
            "duplicate step",
        ),
        ([], "non-empty list"),
    ],
)
def test_bad_recipes(tmp_path, steps, message):
    with pytest.raises((DataError, UsageError), match=message):
        load_pipeline(recipe(tmp_path, steps))


def test_unknown_override_is_a_usage_error(tmp_path):
    path = recipe(tmp_path, [{"name": "x", "run": "geosynth catalog", "outputs": ["a"]}])
    with pytest.raises(UsageError, match="--set cap"):
        load_pipeline(path, {"cap": "3"})
    result = CliRunner().invoke(cli, ["pipeline", "run", str(path), "--set", "cap"])
    assert result.exit_code == 2


@pytest.mark.parametrize("name", ["demo", "table3_geonrw", "table3_dfc2020", "sar_geonrw"])
def test_bundled_recipes_parse(name):
    p = load_pipeline(bundled_pipeline(name))
    assert p.steps and all(s.outputs for s in p.steps)
    assert p.steps[-1].name in ("table", "report")


def test_several_steps_run_in_the_recipes_order(tmp_path):
    steps = [
        {"name": name, "run": f"geosynth -q catalog --json > {{out}}/{name}", "outputs": ["x"]}
        for name in ("a", "b", "c")
    ]
    path = recipe(tmp_path, steps)
    result = CliRunner().invoke(
        cli, ["pipeline", "run", str(path), "--dry-run", "--step", "c", "--step", "a"]
    )
    assert result.exit_code == 0, result.output
    shown = [line.split("]")[1].split(":")[0].strip() for line in result.output.splitlines()
             if line.startswith("[t]")]  # fmt: skip
    assert shown == ["a", "c"]  # both, in the recipe's order; b left out
    bad = CliRunner().invoke(cli, ["pipeline", "run", str(path), "--step", "a", "--step", "zz"])
    assert bad.exit_code == 2 and "zz" in bad.output and "[t] a" not in bad.output


def test_a_missing_input_folder_names_the_variable_and_how_to_fetch_it(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump({
            "name": "t",
            "vars": {"out": str(tmp_path / "out"), "root": str(tmp_path / "nrw_dataset")},
            "inputs": {"root": "geosynth import-geonrw {root} --download"},
            "steps": [{"name": "import", "run": "geosynth info {root}", "outputs": ["{out}/x"]}],
        })
    )  # fmt: skip
    result = CliRunner().invoke(cli, ["pipeline", "run", str(path)])
    assert result.exit_code == 2
    assert "step 'import' reads" in result.output and "--set root=PATH" in result.output
    assert f"geosynth import-geonrw {tmp_path / 'nrw_dataset'} --download" in result.output
    assert not (tmp_path / "out").exists()  # nothing ran
    assert load_pipeline(bundled_pipeline("table3_geonrw")).inputs["root"]


def test_bundled_recipes_by_name_and_list(tmp_path, monkeypatch):
    """A wheel install has no pipelines/ folder beside the user: a bare name, or the README's
    pipelines/demo.yaml, finds the bundled recipe; `pipeline list` names them all."""
    monkeypatch.chdir(tmp_path)  # no pipelines/ here
    listed = CliRunner().invoke(cli, ["pipeline", "list"])
    assert listed.exit_code == 0 and "demo " in listed.output and "table3_geonrw" in listed.output
    for name in ("demo", "demo.yaml", "pipelines/demo.yaml"):
        result = CliRunner().invoke(cli, ["pipeline", "run", name, "--dry-run"])
        assert result.exit_code == 0, result.output
        assert "[demo] world: dry-run" in result.output
    missing = CliRunner().invoke(cli, ["pipeline", "run", "nosuch"])
    assert missing.exit_code == 2 and "bundled: augment_demo, demo," in missing.output
    (tmp_path / "demo.yaml").write_text(
        "name: mine\nsteps:\n  - name: hello\n    run: geosynth --help\n    outputs: [x]\n"
    )
    own = CliRunner().invoke(cli, ["pipeline", "run", "demo.yaml", "--dry-run"])
    assert "[mine] hello: dry-run" in own.output  # a file of that name wins
