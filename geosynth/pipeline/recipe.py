"""Declarative pipelines: YAML recipes of geosynth commands, run step by step.

A recipe (see ``pipelines/*.yaml``)::

    name: demo
    vars:                      # {name} is replaced in every run line and output
      out: demo-run
      store: "{out}/demo.zarr"
    steps:
      - name: build
        run: geosynth build-geonrw --region demo --out {store}
        outputs: ["{store}"]

Rules:

1. every ``run`` line calls ``geosynth`` (nothing else: recipes hold no logic);
2. a step is skipped when all its outputs exist and its last run, with the
   same command line, succeeded (a stamp in ``<state>/<step>.done``);
   ``--force`` reruns everything;
3. a step that exits non-zero, or does not produce its outputs, stops the
   pipeline with a message naming the step;
4. variables resolve in order, may use earlier ones, and are overridden from
   the command line (``--set cap=32``);
5. ``inputs`` maps variables that name input folders to how to get them
   (``inputs: {root: "geosynth import-geonrw --download"}``): a step whose
   command line holds such a path that does not exist is refused before it
   runs, naming the variable to ``--set`` and the command that fetches it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from geosynth import bundled_path
from geosynth.errors import DataError, UsageError

log = logging.getLogger(__name__)

#: what a step may be called: it names ``<state>/<step>.done``
STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]  # after "geosynth"
    outputs: tuple[str, ...]

    @property
    def command(self) -> str:
        return "geosynth " + shlex.join(self.args)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.command.encode()).hexdigest()[:16]


@dataclass
class Pipeline:
    name: str
    path: Path
    vars: dict[str, str]
    steps: list[Step]
    state_dir: Path
    inputs: dict[str, str] = field(default_factory=dict)  # variable -> how to fetch it


@dataclass
class StepResult:
    name: str
    status: str  # "ran", "skipped", "failed"
    seconds: float = 0.0
    message: str = ""


@dataclass
class PipelineResult:
    pipeline: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)


def _format(text: str, values: Mapping[str, str], where: str) -> str:
    try:
        return str(text).format_map(values)
    except KeyError as exc:
        raise UsageError(f"{where}: unknown variable {{{exc.args[0]}}}") from None
    except (ValueError, IndexError) as exc:
        raise UsageError(f"{where}: bad placeholder in {text!r}: {exc}") from None


def load_pipeline(path: str | os.PathLike, overrides: Mapping[str, str] | None = None) -> Pipeline:
    """Read and check a recipe; ``overrides`` replace its variables (``--set``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read pipeline {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise DataError(f"{path}: a pipeline is a mapping with a non-empty list 'steps'")
    raw_vars = data.get("vars") or {}
    if not isinstance(raw_vars, dict):
        raise DataError(f"{path}: vars: expected a mapping")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(raw_vars))
    if unknown:
        raise UsageError(
            f"--set {unknown[0]}: {path} has no variable {unknown[0]!r} "
            f"(has: {', '.join(raw_vars)})"
        )
    # values: the text of each variable; words: how it is written in a run line, where a
    # --set value is one argument (shell-quoted) and the recipe's own text may hold several
    values: dict[str, str] = {}
    words: dict[str, str] = {}
    for key, value in raw_vars.items():
        if key in overrides:
            values[str(key)] = _format(str(overrides[key]), values, f"--set {key}")
            words[str(key)] = shlex.quote(values[str(key)])
            continue
        values[str(key)] = _format(str(value), values, f"{path}: vars.{key}")
        words[str(key)] = _format(str(value), words, f"{path}: vars.{key}")
    steps, names = [], set()
    for k, item in enumerate(data["steps"]):
        where = f"{path}: steps[{k}]"
        if not isinstance(item, dict) or "run" not in item or "name" not in item:
            raise DataError(f"{where}: each step needs 'name' and 'run'")
        name = str(item["name"])
        if not STEP_NAME.fullmatch(name) or ".." in name:
            raise UsageError(
                f"{where}: step name {name!r} is not allowed (it names the step's file in the "
                "pipeline state folder): use letters, digits, '-', '_' and '.'"
            )
        if name in names:
            raise DataError(f"{where}: duplicate step name {name!r}")
        names.add(name)
        run = item["run"]
        args = (
            shlex.split(_format(run, words, f"{where}.run"))
            if isinstance(run, str)
            else [_format(a, values, f"{where}.run") for a in run]
        )
        if not args or args[0] != "geosynth":
            raise DataError(f"{where}.run: steps may only call geosynth commands, got {args[:1]}")
        outputs = item.get("outputs") or []
        if not isinstance(outputs, list) or not outputs:
            raise DataError(f"{where}.outputs: list the files or folders the step produces")
        steps.append(
            Step(
                name,
                tuple(args[1:]),
                tuple(_format(o, values, f"{where}.outputs") for o in outputs),
            )
        )
    state = Path(values.get("out", ".")) / ".pipeline" / str(data.get("name", path.stem))
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, dict) or not set(inputs) <= set(values):
        raise DataError(f"{path}: inputs: expected a mapping of variables to how to fetch them")
    inputs = {str(k): _format(str(v), values, f"{path}: inputs.{k}") for k, v in inputs.items()}
    return Pipeline(str(data.get("name", path.stem)), path, values, steps, state, inputs)


def _check_inputs(pipeline: Pipeline, step: Step) -> None:
    """Refuse a step that reads a missing input folder, saying how to provide it (rule 5)."""
    for var, fetch in pipeline.inputs.items():
        value = pipeline.vars[var]
        if value in step.args and not Path(value).exists():
            raise UsageError(
                f"pipeline {pipeline.name}: step {step.name!r} reads {value}, which does not "
                f"exist: point the recipe at it with --set {var}=PATH, or fetch it: {fetch}"
            )


def _done(pipeline: Pipeline, step: Step) -> bool:
    stamp = pipeline.state_dir / f"{step.name}.done"
    if not all(Path(o).exists() for o in step.outputs) or not stamp.exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("digest") == step.digest
    except ValueError:
        return False


def run_pipeline(
    pipeline: Pipeline,
    *,
    force: bool = False,
    only: str | None = None,
    dry_run: bool = False,
    on_step: Callable[[Step, str], None] | None = None,
) -> PipelineResult:
    """Run the steps in order (see the module docstring); stops at the first failure."""
    result = PipelineResult(pipeline.name)
    if only is not None and only not in [s.name for s in pipeline.steps]:
        raise UsageError(
            f"--step {only}: no such step (steps: {', '.join(s.name for s in pipeline.steps)})"
        )
    for step in pipeline.steps:
        if only is not None and step.name != only:
            continue
        if not force and _done(pipeline, step):
            result.steps.append(StepResult(step.name, "skipped", message="outputs exist"))
            if on_step:
                on_step(step, "skipped")
            continue
        if not dry_run:
            _check_inputs(pipeline, step)
        if on_step:
            on_step(step, "dry-run" if dry_run else "running")
        if dry_run:
            result.steps.append(StepResult(step.name, "planned"))
            continue
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "geosynth", *step.args])
        seconds = time.perf_counter() - started
        missing = [o for o in step.outputs if not Path(o).exists()]
        if code != 0 or missing:
            why = f"exit code {code}" if code else f"did not produce {', '.join(missing)}"
            result.steps.append(StepResult(step.name, "failed", seconds, why))
            raise DataError(
                f"pipeline {pipeline.name}: step {step.name!r} failed ({why}): {step.command}"
            )
        pipeline.state_dir.mkdir(parents=True, exist_ok=True)
        (pipeline.state_dir / f"{step.name}.done").write_text(
            json.dumps({"digest": step.digest, "command": step.command, "seconds": seconds})
        )
        result.steps.append(StepResult(step.name, "ran", seconds))
    return result


def bundled_pipelines() -> dict[str, Path]:
    """The recipes shipped with geosynth by name (``pipelines/<name>.yaml``; in the package
    when installed from a wheel, at the top of a source checkout otherwise)."""
    return {p.stem: p for p in sorted(bundled_path("pipelines").glob("*.yaml"))}


def bundled_pipeline(name: str) -> Path:
    """A recipe shipped with geosynth by name (:func:`bundled_pipelines`)."""
    found = bundled_pipelines().get(name)
    if found is None:
        known = ", ".join(bundled_pipelines()) or "none"
        raise UsageError(f"no bundled pipeline {name!r} (bundled: {known})")
    return found


def resolve_recipe(recipe: str | os.PathLike) -> Path:
    """A recipe file as given, else a bundled recipe of that name (``demo``, ``demo.yaml`` or
    ``pipelines/demo.yaml`` as the README writes it, also from a wheel install)."""
    path = Path(recipe)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if name in bundled_pipelines() and (path.parent in (Path("."), Path("pipelines"))):
        return bundled_pipelines()[name]
    known = ", ".join(bundled_pipelines()) or "none"
    raise UsageError(
        f"cannot read pipeline {recipe}: no such file, and no bundled recipe of that name "
        f"(bundled: {known}; `geosynth pipeline list`)"
    )
