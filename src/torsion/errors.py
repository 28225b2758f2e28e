"""The exceptions torsion raises, rooted at one class.

Families by meaning, so that callers can catch what they can act on::

    TorsionError
    ├── AlreadyCalledError          a Deferred was fired twice
    ├── AlreadyCancelledError       a DelayedCall was cancelled or reset after cancel
    ├── AlreadyCalledDelayedError   a DelayedCall was cancelled or reset after it ran
    ├── ReactorError
    │   ├── ReactorNotRunningError  stop() on a reactor that is not running
    │   ├── ReactorAlreadyRunningError
    │   └── ReactorThreadError      a call that would deadlock the reactor's thread
    ├── QueueOverflowError          a bounded DeferredQueue refused more
    ├── FailureGroup (+ExceptionGroup) several awaited things failed
    ├── CannotListenError (+OSError) a listening socket could not be bound
    ├── DNSLookupError (+OSError)    a host name could not be resolved
    └── LoopingCallError (+RuntimeError) a LoopingCall started twice or stopped idle

    BaseFailureGroup (+BaseExceptionGroup) the same, holding a cancellation
                                    or another non-``Exception`` failure

Make a group with ``BaseFailureGroup(message, errors)``: as with the builtin
``BaseExceptionGroup``, the result is a ``FailureGroup`` (an ``Exception``, so a
``TorsionError`` too) whenever every error in it is an ``Exception``.

Cancellation is :class:`asyncio.CancelledError` and expired timeouts are the
builtin :class:`TimeoutError`, so torsion and asyncio code catch the same
thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

__all__ = [
    "AlreadyCalledDelayedError",
    "AlreadyCalledError",
    "AlreadyCancelledError",
    "BaseFailureGroup",
    "CannotListenError",
    "DNSLookupError",
    "FailureGroup",
    "LoopingCallError",
    "QueueOverflowError",
    "ReactorAlreadyRunningError",
    "ReactorError",
    "ReactorNotRunningError",
    "ReactorThreadError",
    "TorsionError",
]


class TorsionError(Exception):
    """The root of every exception torsion defines."""


class AlreadyCalledError(TorsionError):
    """A Deferred was given a result when it already had one."""


class AlreadyCancelledError(TorsionError):
    """A DelayedCall was cancelled (or reset) after it had been cancelled."""


class AlreadyCalledDelayedError(TorsionError):
    """A DelayedCall was cancelled (or reset) after it had already run."""


class ReactorError(TorsionError):
    """The reactor was asked to do something its state does not allow."""


class ReactorNotRunningError(ReactorError):
    """The reactor is not running."""


class ReactorAlreadyRunningError(ReactorError):
    """The reactor (or its event loop) is already running."""


class QueueOverflowError(TorsionError):
    """A bounded queue is full and its backlog of waiters is too."""


class CannotListenError(TorsionError, OSError):
    """A listening socket could not be bound to the address asked for.

    Attributes:
        interface: The interface asked for ("" means all).
        port: The port asked for.
    """

    def __init__(self, interface: str, port: int, reason: OSError) -> None:
        super().__init__(reason.errno, f"cannot listen on {interface or '*'}:{port}: {reason}")
        self.interface = interface
        self.port = port
        self.reason = reason


class ReactorThreadError(ReactorError):
    """A call was made on the reactor's own thread that must come from another.

    ``blocking_call_from_thread`` waits for the reactor thread to run a
    function; called on that thread, it would wait for itself forever.
    """


class DNSLookupError(TorsionError, OSError):
    """A host name could not be resolved to an address.

    Attributes:
        host: The name that was looked up.
    """

    def __init__(self, host: str, reason: str = "no address found") -> None:
        super().__init__(f"cannot resolve {host!r}: {reason}")
        self.host = host


class LoopingCallError(TorsionError, RuntimeError):
    """A LoopingCall was started while running, or stopped while not running."""


class BaseFailureGroup(BaseExceptionGroup[BaseException]):
    """Several things that were awaited together failed; here is every error.

    ``race`` fails with one when every contender failed, ``gather`` with
    ``fail_fast=False`` when any input did. The errors are in input order.
    Constructing ``BaseFailureGroup`` gives a ``FailureGroup`` when every error
    is an ``Exception``; this class itself only remains when one is not (a
    ``CancelledError``, say), just as with the builtin ``BaseExceptionGroup``.
    """

    def __new__(cls, message: str, exceptions: Sequence[BaseException]) -> Self:
        """Make the group, as a ``FailureGroup`` when every error allows it."""
        if cls is BaseFailureGroup and all(isinstance(e, Exception) for e in exceptions):
            cls = FailureGroup  # type: ignore[assignment]
        return super().__new__(cls, message, exceptions)


class FailureGroup(  # noqa: N818 - named after ExceptionGroup, which it is
    BaseFailureGroup, ExceptionGroup[Exception], TorsionError
):
    """A ``BaseFailureGroup`` whose errors are all ``Exception``s.

    It is an ``ExceptionGroup`` and a ``TorsionError``, so ``except*`` picks
    its members apart and ``except TorsionError`` catches it whole.
    """
