"""torsion.application's public surface, and the layering beneath it."""

from __future__ import annotations

import ast
import subprocess
import sys

import torsion.application


def _ruff_order(name: str) -> tuple[int, str]:
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_public_names_exist_are_sorted_and_documented() -> None:
    names = list(torsion.application.__all__)
    assert names == sorted(names, key=_ruff_order)
    assert len(set(names)) == len(names)
    for name in names:
        value = getattr(torsion.application, name)
        assert value.__doc__, f"torsion.application.{name} has no docstring"


def test_application_imports_only_lower_layers() -> None:
    code = (
        "import sys, torsion.application; "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('torsion.')}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    packages = set(ast.literal_eval(loaded))
    assert packages <= {"application", "cred", "defer", "errors", "internet", "protocols"}
