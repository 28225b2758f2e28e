"""Fixtures for the cred tests."""

from __future__ import annotations

import pytest
from cred_fakes import InlineThreads


@pytest.fixture
def threads() -> InlineThreads:
    """A thread runner that runs each job at once, in the test's thread."""
    return InlineThreads()
