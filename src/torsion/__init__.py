"""torsion: an event-driven networking framework on asyncio.

The packages, lowest layer first: ``torsion.defer`` (Deferreds and
coroutines), ``torsion.internet`` (the reactor: time, threads, names, TCP),
``torsion.testing`` (fake clocks, in-memory transports, the pytest plugin),
``torsion.protocols`` (small reusable protocols) and ``torsion.application``
(the ``torsion`` command). ``torsion.react(main, argv)`` runs a program.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torsion.internet import react

__version__ = "0.1.0.dev0"

__all__ = ["__version__", "react"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``import torsion.defer`` stays light.
    if name == "react":
        from torsion.internet import react

        return react
    raise AttributeError(f"module 'torsion' has no attribute {name!r}")
