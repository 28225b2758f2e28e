"""Make sure the suite tests the build it means to: compiled or pure Python.

setup.py compiles a few modules with mypyc. An editable install leaves the
compiled modules beside their sources, where they shadow them: after an edit
the suite would test the old code, so a stale compiled module stops the run.
``TORSION_EXPECT_COMPILED=1`` (or ``0``) states which build must be under
test; the Makefile runs the suite once each way.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

_SETUP = Path(__file__).parent.parent / "setup.py"


def _compiled_module_names() -> list[str]:
    """The modules setup.py compiles, read from its COMPILED list."""
    for node in ast.parse(_SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "COMPILED":
            paths: list[str] = ast.literal_eval(node.value)
            return [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


def pytest_configure(config: pytest.Config) -> None:
    expect = os.environ.get("TORSION_EXPECT_COMPILED")
    for name in _compiled_module_names():
        path = Path(importlib.import_module(name).__file__ or "")
        compiled = path.suffix != ".py"
        if expect == "1" and not compiled:
            pytest.exit(f"{name} should be compiled but is {path}", returncode=3)
        if expect == "0" and compiled:
            pytest.exit(f"{name} should be pure Python but is {path}", returncode=3)
        source = path.with_name(path.name.split(".")[0] + ".py")
        if compiled and source.exists() and source.stat().st_mtime > path.stat().st_mtime:
            pytest.exit(
                f"{path.name} is older than {source.name}: rebuild it "
                "(`make test` does, or `pip install -e .`)",
                returncode=3,
            )
