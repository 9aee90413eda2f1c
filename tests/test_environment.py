"""environment.yml lists the same dependencies (names and version specifiers) as pyproject.toml."""

from __future__ import annotations

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import REPO

yaml = pytest.importorskip("yaml")  # PyYAML comes with papermill (the test extra)


def requirement_map(lines) -> dict[str, str]:
    """{canonical name: specifier} for requirement strings; a name listed twice must agree."""
    out: dict[str, str] = {}
    for line in lines:
        req = Requirement(line)
        name, spec = canonicalize_name(req.name), str(req.specifier)
        assert out.get(name, spec) == spec, f"{name} listed with two specifiers: {out[name]} and {spec}"
        out[name] = spec
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = requirement_map(
        project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    )
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "expected one pip: section"
    pip = [line for line in pip_lists[0] if not line.startswith("-e")]
    assert "-e ." in pip_lists[0], "environment.yml should install paperlib itself (-e .)"
    assert requirement_map(pip) == wanted
    python = [Requirement(d) for d in conda if Requirement(d).name == "python"]
    assert len(python) == 1 and str(python[0].specifier) == project["requires-python"]
    assert "pip" in conda
