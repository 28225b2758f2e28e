"""The suite's own layout: pytest imports test files by their base name, so each is unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_modules_have_unique_names() -> None:
    # Test folders have no __init__.py: two test_x.py in two folders would
    # be one module to pytest, and the second would fail to collect.
    names = Counter(path.name for path in TESTS.rglob("*.py") if path.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []
