"""Server-side sessions: expiring, bounded, identified by a cookie.

A :class:`SessionStore` hands out :class:`Session` objects under random ids
(256 bits from :mod:`secrets`), forgets a session once it has been idle for
``idle_timeout`` seconds or alive for ``lifetime`` seconds, and holds at most
``max_sessions`` (the least recently used one goes first when full). Expiry
is checked on every lookup, and a single timer on the store's clock sweeps
the rest every ``sweep_interval`` seconds while there are sessions to sweep,
so memory is returned even for sessions nobody asks for again; no timer is
left behind once the store is empty or closed.

The session cookie defaults to ``HttpOnly``, ``SameSite=Lax``, ``Path=/``, no
expiry (the browser forgets it when it closes; the store enforces the
lifetime), and ``Secure`` whenever the request came over TLS. Call
:meth:`SessionStore.rotate` after a login so that an id planted before it
(session fixation) is worth nothing after.

Wiring to a request::

    session = store.from_cookie_header(request.headers.get(b"cookie"))
    if session is None:
        session = store.create()
        response_headers.add(b"set-cookie", store.cookie(session, secure=is_tls))
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any, Final

from torsion.internet import Clock, DelayedCall
from torsion.web._cookies import format_set_cookie, parse_cookie_header

__all__ = ["Session", "SessionStore"]

_log = logging.getLogger("torsion.web.sessions")

DEFAULT_COOKIE_NAME: Final = "TORSION_SESSION"
# token_urlsafe(32) is 43 characters; anything much longer is not one of ours
# and is not worth hashing into the table.
_MAX_ID_LENGTH: Final = 128


class Session:
    """One client's session: an id, timestamps, and data for the application.

    Attributes:
        id: The session's id, as sent in the cookie.
        created: When it was created (the store's clock).
        last_access: When it was last looked up or created.
        data: Anything the application keeps for the client.
    """

    __slots__ = ("_expire_callbacks", "created", "data", "id", "last_access")

    def __init__(self, session_id: str, now: float) -> None:
        self.id = session_id
        self.created = now
        self.last_access = now
        self.data: dict[str, Any] = {}
        self._expire_callbacks: list[Callable[[Session], object]] = []

    def notify_on_expire(self, callback: Callable[[Session], object]) -> None:
        """Call ``callback(session)`` when the session expires or is expired.

        Args:
            callback: Called once; an exception from it is logged.
        """
        self._expire_callbacks.append(callback)

    def __repr__(self) -> str:
        # The id is a credential: keep it out of logs.
        return f"<Session created={self.created} last_access={self.last_access}>"


class SessionStore:
    """Sessions by id, with idle and absolute expiry and a size bound."""

    def __init__(
        self,
        clock: Clock,
        *,
        idle_timeout: float = 30 * 60,
        lifetime: float = 12 * 60 * 60,
        max_sessions: int = 100_000,
        sweep_interval: float | None = 60.0,
        cookie_name: str = DEFAULT_COOKIE_NAME,
    ) -> None:
        """Make an empty store.

        Args:
            clock: The reactor (or a test's ``Clock``): time and the sweep timer.
            idle_timeout: Seconds without a lookup after which a session expires.
            lifetime: Seconds after creation after which a session expires,
                however busy.
            max_sessions: Most sessions held.
            sweep_interval: Seconds between sweeps for expired sessions, or
                None to expire only on lookup and when full.
            cookie_name: The session cookie's name.

        Raises:
            ValueError: A timeout, the size or the interval is not positive.
        """
        if idle_timeout <= 0 or lifetime <= 0 or max_sessions <= 0:
            raise ValueError("timeouts and max_sessions must be positive")
        if sweep_interval is not None and sweep_interval <= 0:
            raise ValueError("sweep_interval must be positive")
        format_set_cookie(cookie_name, "x")  # a bad name fails here, not per request
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._lifetime = lifetime
        self._max_sessions = max_sessions
        self._sweep_interval = sweep_interval
        self.cookie_name = cookie_name
        # Least recently used first: a lookup moves a session to the end.
        self._sessions: dict[str, Session] = {}
        self._sweeper: DelayedCall | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.last_access >= self._idle_timeout
            or now - session.created >= self._lifetime
        )

    def create(self) -> Session:
        """Start a new session (evicting the least recently used one when full).

        Returns:
            The session; send its cookie with :meth:`cookie`.
        """
        now = self._clock.seconds()
        if len(self._sessions) >= self._max_sessions:
            self._sweep_expired(now)
            while len(self._sessions) >= self._max_sessions:
                self._remove(next(iter(self._sessions)))
        session_id = secrets.token_urlsafe(32)
        session = Session(session_id, now)
        self._sessions[session_id] = session
        self._schedule_sweep()
        return session

    def get(self, session_id: str) -> Session | None:
        """Look up a live session and mark it used.

        Args:
            session_id: The id from the client's cookie.

        Returns:
            The session, or None if it does not exist or has expired (an
            expired one is removed now).
        """
        if len(session_id) > _MAX_ID_LENGTH:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock.seconds()
        if self._expired(session, now):
            self._remove(session_id)
            return None
        session.last_access = now
        del self._sessions[session_id]
        self._sessions[session_id] = session
        return session

    def expire(self, session_id: str) -> bool:
        """End a session now (a logout), running its expiry callbacks.

        Args:
            session_id: The session's id.

        Returns:
            Whether there was such a session.
        """
        if session_id not in self._sessions:
            return False
        self._remove(session_id)
        return True

    def rotate(self, session: Session) -> Session:
        """Give a session a new id, keeping its data; the old id stops working.

        Call it when the session's privileges change (a login), so that an id
        an attacker planted or saw before is useless (session fixation).

        Args:
            session: A live session of this store.

        Returns:
            The same session object, under its new id; send the new cookie.

        Raises:
            KeyError: The session is not (or no longer) in this store.
        """
        if self._sessions.get(session.id) is not session:
            raise KeyError("the session is not in this store")
        del self._sessions[session.id]
        session.id = secrets.token_urlsafe(32)
        session.last_access = self._clock.seconds()
        self._sessions[session.id] = session
        return session

    def from_cookie_header(self, header: bytes | None) -> Session | None:
        """The live session a request's ``Cookie`` field names, if any.

        Args:
            header: The request's ``Cookie`` field value, or None.

        Returns:
            The session (marked used), or None.
        """
        if not header:
            return None
        session_id = parse_cookie_header(header).get(self.cookie_name)
        return None if session_id is None else self.get(session_id)

    def cookie(self, session: Session, *, secure: bool, persistent: bool = False) -> bytes:
        """The ``Set-Cookie`` value that gives the client its session id.

        Args:
            session: The session.
            secure: Whether the request came over TLS (adds ``Secure``).
            persistent: Give the cookie a ``Max-Age`` of the remaining
                lifetime, so it outlives the browser's session.

        Returns:
            The field value: ``HttpOnly``, ``SameSite=Lax``, ``Path=/``.
        """
        max_age = None
        if persistent:
            remaining = self._lifetime - (self._clock.seconds() - session.created)
            max_age = max(int(remaining), 0)
        return format_set_cookie(
            self.cookie_name,
            session.id,
            max_age=max_age,
            path="/",
            secure=secure,
            http_only=True,
            same_site="Lax",
        )

    def expired_cookie(self, *, secure: bool) -> bytes:
        """The ``Set-Cookie`` value that makes the client forget its session id.

        Args:
            secure: Whether the request came over TLS.
        """
        return format_set_cookie(
            self.cookie_name,
            "",
            max_age=0,
            path="/",
            secure=secure,
            http_only=True,
            same_site="Lax",
        )

    def close(self) -> None:
        """Expire every session and stop the sweep timer."""
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        for session_id in list(self._sessions):
            self._remove(session_id)

    def _remove(self, session_id: str) -> None:
        """Drop a session and run its expiry callbacks."""
        session = self._sessions.pop(session_id)
        callbacks, session._expire_callbacks = session._expire_callbacks, []
        for callback in callbacks:
            try:
                callback(session)
            except Exception:
                _log.exception("a session expiry callback failed")

    def _sweep_expired(self, now: float) -> None:
        """Remove every expired session."""
        for session_id in [i for i, s in self._sessions.items() if self._expired(s, now)]:
            if session_id in self._sessions:  # a callback may have expired others
                self._remove(session_id)

    def _schedule_sweep(self) -> None:
        """Arm the sweep timer unless it is armed or sweeping is off."""
        if self._sweep_interval is None or self._sweeper is not None:
            return
        self._sweeper = self._clock.call_later(self._sweep_interval, self._sweep)

    def _sweep(self) -> None:
        """The timer's work: expire what is due, and come back while sessions remain."""
        self._sweeper = None
        self._sweep_expired(self._clock.seconds())
        if self._sessions:
            self._schedule_sweep()
