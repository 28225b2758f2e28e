"""The public surface of torsion.protocols.amp."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import torsion.protocols.amp as amp

MODULES = ["__init__", "_arguments", "_box", "_command", "_errors", "_protocol"]


def _isort_order(name: str) -> tuple[int, str]:
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_public_names_exist_are_sorted_and_documented() -> None:
    names = list(amp.__all__)
    assert names == sorted(names, key=_isort_order)
    assert len(set(names)) == len(names)
    # From the sources: a module compiled with mypyc keeps no docstrings.
    documented = set()
    defined = set()
    for module in MODULES:
        tree = ast.parse(Path(amp.__file__).with_name(f"{module}.py").read_text())
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                defined.add(node.name)
                if ast.get_docstring(node):
                    documented.add(node.name)
    for name in names:
        assert hasattr(amp, name), name
        if name in defined:
            assert name in documented, f"{name} has no docstring"
    assert {"AMP", "BoxParser", "Command", "encode_box"} <= documented


def test_the_surface_holds_what_users_need() -> None:
    assert set(amp.__all__) >= {
        "AMP",
        "Command",
        "CommandLocator",
        "Integer",
        "String",
        "Unicode",
        "Boolean",
        "Float",
        "Decimal",
        "DateTime",
        "ListOf",
        "AmpList",
        "BoxParser",
        "encode_box",
        "RemoteAmpError",
        "UnknownRemoteError",
        "UnhandledCommandError",
        "ConnectionLostError",
    }


@pytest.mark.parametrize("module", MODULES)
def test_every_module_says_what_it_is_for(module: str) -> None:
    path = Path(amp.__file__).with_name(f"{module}.py")
    assert ast.get_docstring(ast.parse(path.read_text()))


def test_the_errors_are_torsion_errors() -> None:
    from torsion.errors import TorsionError

    for name in amp.__all__:
        value = getattr(amp, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, TorsionError), name


def test_importing_it_pulls_in_no_higher_layer() -> None:
    import subprocess
    import sys

    code = (
        "import sys, torsion.protocols.amp; "
        "print([m for m in sys.modules if m.startswith(('torsion.application', 'twisted'))])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
    importlib.import_module("torsion.protocols.amp")
