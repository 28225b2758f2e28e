"""The inactivity timer of a mail protocol session (SMTP, POP3, IMAP servers).

A session's timeout is restarted by every command, and a busy session gets
many: the timer is not moved each time. It fires when the period could first
have ended, and sets itself again for what remains if the session was
touched since; only a session left alone for the whole period expires.
While no timeout applies (the server owes the client an answer) a pending
timer is not cancelled: it finds so when it fires and sets no other.
"""

from __future__ import annotations

from collections.abc import Callable

from torsion.internet import Clock, DelayedCall

__all__ = ["SessionTimer"]


class SessionTimer:
    """Calls ``expired`` once a session has been left alone for its timeout.

    Args:
        clock: Gives the time and runs the timer.
        timeout: The session's timeout now, in seconds (it may depend on
            the session's state), or None while none applies.
        expired: Called when the timeout has passed since the last ``touch``.
    """

    def __init__(
        self,
        clock: Clock,
        timeout: Callable[[], float | None],
        expired: Callable[[], object],
    ) -> None:
        self._clock = clock
        self._now = clock.seconds
        self._timeout = timeout
        self._expired = expired
        self._call: DelayedCall | None = None
        self._last = 0.0
        self._stopped = False

    def touch(self) -> None:
        """The session did something: its timeout counts from now."""
        if self._stopped:
            return
        self._last = self._now()
        if self._call is not None:
            # Pending already (it is None once it ran or was cancelled). If
            # no timeout applies any more, it finds so when it fires and
            # does nothing: cheaper than cancelling it at every touch.
            return
        timeout = self._timeout()
        if timeout is not None:
            self._call = self._clock.call_later(timeout, self._check)

    def stop(self) -> None:
        """The session is over: never call ``expired`` (no timer is left)."""
        self._stopped = True
        self._cancel()
        # Let go of the session's callbacks: they are usually its bound
        # methods, and the cycle would keep the session for the cyclic
        # garbage collector rather than free it now.
        self._timeout = _no_timeout
        self._expired = _no_timeout

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _check(self) -> None:
        self._call = None
        timeout = self._timeout()
        if timeout is None or self._stopped:
            return
        left = self._last + timeout - self._clock.seconds()
        if left > 0:
            self._call = self._clock.call_later(left, self._check)
            return
        self._expired()


def _no_timeout() -> None:
    return None
