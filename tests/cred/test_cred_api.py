"""torsion.cred's public surface, and what importing it does not pull in."""

from __future__ import annotations

import subprocess
import sys

import torsion.cred


def _isort_order(name: str) -> tuple[int, str]:
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_public_names_exist_and_are_sorted() -> None:
    names = list(torsion.cred.__all__)
    assert names == sorted(names, key=_isort_order)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(torsion.cred, name), name
    assert {"Portal", "Realm", "Checker", "UnauthorizedLogin", "UnhandledCredentials"} <= set(
        names
    )


def test_optional_libraries_and_higher_layers_are_not_imported() -> None:
    code = (
        "import sys, torsion.cred; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('cryptography', 'bcrypt', 'argon2', 'pam') or m.startswith('torsion.application')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert loaded.strip() == "[]"
