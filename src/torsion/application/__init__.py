"""Applications and the ``torsion`` command that runs them.

For now the command line (``torsion --help``, ``torsion echo``); service
trees, plugins found through entry points, deployment files and daemons
follow.
"""

from torsion.application._cli import main

__all__ = ["main"]
