"""torsion: an event-driven networking framework on asyncio.

The packages, lowest layer first: ``torsion.defer`` (Deferreds and
coroutines), ``torsion.internet`` (the reactor, time, threads, names, TCP),
``torsion.testing`` (fake clocks, in-memory transports, the pytest plugin) and
``torsion.application`` (the ``torsion`` command).
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
