"""Every shell and Python example of the README and docs/ runs, so that none goes stale.

The Quick start page runs first, top to bottom, in one empty folder (a 2 x 2 demo world,
its store, short runs); every other page's examples then run in the same folder, in page
order, against the installed ``geosynth`` (the one on PATH, as a user's shell finds it).
An example that cannot run here says why in an HTML comment on the line before its
fence:

- ``<!-- needs: network -->``: each of its commands runs offline instead (the catalog's
  hosts moved to an address that does not resolve) and must fail cleanly: exit 1 or 2,
  one ``Error:`` line, nothing left in its folder or geosynth's cache;
- ``<!-- needs: REASON -->``: not run (a fresh virtual environment, the published
  datasets, your own files, GPUs); the reason is the documentation.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FIRST = "docs/quick-start.md"
FENCE = re.compile(r"^```(bash|sh|python)\s*$")
NEEDS = re.compile(r"^<!--\s*needs:\s*(.+?)\s*-->\s*$")

pytestmark = pytest.mark.slow


@dataclass
class Example:
    page: str
    line: int
    language: str
    code: str
    needs: str | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def examples(page: Path) -> list[Example]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, i = i, i + 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        needs = NEEDS.match(previous)
        rel = page.relative_to(REPO).as_posix()
        found.append(Example(rel, start + 1, match[1], "\n".join(body) + "\n",
                             needs[1] if needs else None))  # fmt: skip
        i += 1
    return found


def pages() -> list[Path]:
    others = sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "quick-start.md")
    return [REPO / FIRST, REPO / "README.md", *others]


ALL = [e for page in pages() for e in examples(page)]


def commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def test_every_example_runs_or_says_why_not():
    assert ALL[0].page == FIRST and ALL[0].needs  # the install line, then the steps
    assert sum(e.needs is None for e in ALL) >= 14
    for e in ALL:
        assert e.needs is None or e.needs.strip(), e


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "GEOSYNTH_CACHE": str(cache), "OMP_NUM_THREADS": "2", "NO_COLOR": "1"}  # fmt: skip


def _run(example: Example, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    if example.language == "python":
        argv = [sys.executable, "-c", example.code]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", example.code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def test_the_examples_run_on_the_quick_start_world(tmp_path, env):
    done = []
    for example in (e for e in ALL if e.needs is None):
        result = _run(example, tmp_path, env)
        assert result.returncode == 0, (
            f"{example} failed (exit {result.returncode}):\n{example.code}\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
        done.append(str(example))
    assert done[0].startswith(FIRST)
    # what the quick start promises to be there
    for path in ("demo.zarr", "runs/unet/checkpoints/last.pt", "runs/ours/samples/epoch_0003.png",
                 "eval/ours/table_row.md", "synth/357_5645_rgb.tif", "flood/357_5645_h50.png",
                 "flood_gif/357_5645_flood.gif", "table3.md", "geonrw-demo/DATASET.md"):  # fmt: skip
        assert (tmp_path / path).exists(), path


def _offline_catalog(folder: Path) -> Path:
    """The catalog with every provider host moved to one that never resolves."""
    from geosynth.catalog import default_catalog_path

    data = yaml.safe_load(default_catalog_path().read_text(encoding="utf-8"))

    def move(node):
        if isinstance(node, dict):
            return {k: move(v) for k, v in node.items()}
        if isinstance(node, list):
            return [move(v) for v in node]
        if isinstance(node, str) and re.match(r"https?://", node):
            return re.sub(r"^(https?://)[^/]+", r"\1offline.invalid", node)
        return node

    for key in ("sources", "published"):
        data[key] = move(data[key])
    data["redirect_hosts"] = []
    path = folder / "offline_catalog.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


NETWORK = [e for e in ALL if e.needs == "network"]


@pytest.mark.parametrize("example", NETWORK, ids=str)
def test_network_examples_fail_cleanly_offline(example, tmp_path, env):
    catalog = _offline_catalog(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    offline = {**env, "GEOSYNTH_CATALOG": str(catalog), "GEOSYNTH_CACHE": str(cache)}
    for command in commands(example.code):
        here = tmp_path / "run"
        here.mkdir()
        argv = ["bash", "-c", command]
        result = subprocess.run(argv, cwd=here, env=offline, capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        text = result.stdout + result.stderr
        errors = [ln for ln in text.splitlines() if ln.startswith("Error:")]
        assert result.returncode in (1, 2), f"{example}: {command!r} exited {result.returncode}"
        assert len(errors) == 1, f"{example}: {command!r}:\n{text[-2000:]}"
        left = [p for p in here.rglob("*")] + [p for p in cache.rglob("*")]
        assert left == [], f"{example}: {shlex.quote(command)} left {left[:5]}"
        here.rmdir()
