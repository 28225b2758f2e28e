"""Deferreds and coroutines: results that arrive later, and what waits for them.

``Deferred`` is the callback chain; ``ensure_deferred`` runs an ``async def``
coroutine on Deferreds with no event loop needed; the combinators gather and
race several, and the synchronisation primitives share resources among them.
Every Deferred can be awaited from torsion coroutines and asyncio tasks alike.
"""

from torsion.defer._combinators import (
    Failed,
    Outcome,
    Succeeded,
    gather,
    race,
    settle,
    timeout,
)
from torsion.defer._coroutines import awaitable_deferred, ensure_deferred, maybe_deferred
from torsion.defer._deferred import CancelledError, Deferred, fail, succeed
from torsion.defer._sync import DeferredLock, DeferredQueue, DeferredSemaphore
from torsion.errors import (
    AlreadyCalledError,
    BaseFailureGroup,
    FailureGroup,
    QueueOverflowError,
)

__all__ = [
    "AlreadyCalledError",
    "BaseFailureGroup",
    "CancelledError",
    "Deferred",
    "DeferredLock",
    "DeferredQueue",
    "DeferredSemaphore",
    "Failed",
    "FailureGroup",
    "Outcome",
    "QueueOverflowError",
    "Succeeded",
    "awaitable_deferred",
    "ensure_deferred",
    "fail",
    "gather",
    "maybe_deferred",
    "race",
    "settle",
    "succeed",
    "timeout",
]
