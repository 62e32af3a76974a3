"""The package's layout: the import contracts hold, the tree stays small at the top, the
architecture diagram names the packages that exist, and every module says what it is for."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "geosynth"
MAX_TOP_MODULES = 8  # modules beside the packages at the top of geosynth/ and of geosynth/ml/


def _packages() -> set[str]:
    return {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }


def test_import_contracts_hold():
    """``lint-imports`` with the contracts of pyproject.toml: layers, no cycles,
    independence, the demo out of production code, torch only under ml, matplotlib only in
    figures. Its output names the import that breaks a contract."""
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    run = subprocess.run(
        [str(linter), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout
    assert run.stdout.count("KEPT") >= 7


@pytest.mark.parametrize("folder", ["geosynth", "geosynth/ml"])
def test_few_modules_at_the_top(folder):
    modules = sorted(
        p.name for p in (REPO / folder).glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert len(modules) <= MAX_TOP_MODULES, f"{folder}: {modules}"


def test_the_architecture_diagram_names_every_package():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = text.split("```mermaid", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"\bgeosynth(?:\.[a-z_]+)*", diagram))
    packages = _packages()
    assert named - packages == set(), "the diagram names packages that do not exist"
    # every package is in it: named, inside a named one (sources.osm), or holding named ones (ml)
    missing = {
        p
        for p in packages - {"geosynth"}
        if not any(p == n or n.startswith(p + ".") or p.startswith(n + ".") for n in named)
    }
    assert missing == set(), f"packages the diagram does not show: {sorted(missing)}"


def test_every_module_says_what_it_is_for():
    for path in PACKAGE.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        first = (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
        assert len(first) >= 20, f"{path.relative_to(REPO)}: no first docstring line"


def test_the_api_reference_covers_every_public_module():
    """Every module but the command line's (docs/cli.md documents the commands) has its
    section in docs/api/."""
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: (geosynth[\w.]*)", pages, flags=re.M))
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        private = any(p.startswith("_") and p != "__init__" for p in parts)
        if parts[-1] == "__main__" or private or parts[:2] == ("geosynth", "cli"):
            continue
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert modules - documented == set()
