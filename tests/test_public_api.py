"""The top-level package and the layering rule: lower layers never import higher ones."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torsion


def test_react_is_reachable_from_the_top() -> None:
    from torsion.internet import react

    assert torsion.react is react
    with pytest.raises(AttributeError):
        _ = torsion.no_such_thing  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("torsion.defer", ["torsion.internet", "torsion.testing", "torsion.application"]),
        ("torsion.internet", ["torsion.testing", "torsion.protocols", "torsion.application"]),
        ("torsion.protocols", ["torsion.application"]),
        ("torsion.cred", ["torsion.application", "torsion.testing"]),
        ("torsion.names", ["torsion.application", "torsion.testing"]),
        ("torsion.web", ["torsion.application", "torsion.testing"]),
        ("torsion.mail", ["torsion.application", "torsion.testing"]),
    ],
)
def test_layers_import_downward_only(module: str, forbidden: list[str]) -> None:
    code = f"import sys, {module}; print([m for m in sys.modules if m.startswith('torsion.')])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for name in forbidden:
        assert f"'{name}" not in loaded, f"{module} pulls in {name}"


@pytest.mark.parametrize(
    "package",
    [
        "torsion.defer",
        "torsion.internet",
        "torsion.testing",
        "torsion.protocols",
        "torsion.protocols.amp",
        "torsion.protocols.haproxy",
        "torsion.cred",
        "torsion.names",
        "torsion.web",
        "torsion.mail",
        "torsion.mail.smtp",
        "torsion.mail.pop3",
        "torsion.mail.imap",
        "torsion.application",
        "torsion.errors",
    ],
)
def test_public_names_exist_and_are_sorted(package: str) -> None:
    import importlib

    module = importlib.import_module(package)
    names = list(module.__all__)
    # The order ruff keeps (RUF022): CONSTANTS, then Classes, then functions.
    assert names == sorted(names, key=_isort_order)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which is missing"


def _isort_order(name: str) -> tuple[int, list[int | str]]:
    # Ruff's RUF022 order: constants, then classes, then the rest; within
    # each, a natural sort (Int8 before Int16).
    natural: list[int | str] = [
        int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)
    ]
    if name.isupper() and len(name) > 1:
        return (0, natural)
    if name[:1].isupper():
        return (1, natural)
    return (2, natural)


def test_the_defer_surface() -> None:
    import torsion.defer

    assert set(torsion.defer.__all__) >= {
        "Deferred",
        "succeed",
        "fail",
        "maybe_deferred",
        "ensure_deferred",
        "gather",
        "settle",
        "race",
        "timeout",
        "DeferredLock",
        "DeferredSemaphore",
        "DeferredQueue",
        "CancelledError",
        "AlreadyCalledError",
    }


def test_every_module_says_what_it_is_for() -> None:
    # Read from the sources: a module compiled with mypyc has no __doc__.
    root = Path(torsion.__file__).parent
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root)
        if path.parent != root and path.name != "__init__.py":
            assert path.name.startswith("_"), f"{where} should be private"
        assert ast.get_docstring(ast.parse(path.read_text())), f"{where} has no docstring"
