"""The portal: where a protocol logs credentials in and gets an avatar back.

Four roles stay apart. A *protocol* (POP3, HTTP, a line protocol of your
own) receives credentials and asks ``Portal.login`` for an object
implementing the interface it talks to (a mailbox, a resource tree). A
*checker* (``Checker``) verifies one or more kinds of credentials and names
the avatar they belong to; it knows nothing of protocols. A *realm*
(``Realm``) turns that name into the backend object (Maildir, a database
row) and knows nothing of how it was proved. *Deployment* builds a portal
from a realm and checkers and hands it to the protocol's factory.

The call order for one login::

    Portal.login -> [limiter: blocked? answer a failure later, unchecked]
                 -> Checker.request_avatar_id   (each fitting checker in turn)
                 -> [failure: count it, answer after the limiter's delay]
                 -> Realm.request_avatar -> (interface, avatar, logout)
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

from torsion.cred._audit import AuditLog
from torsion.cred._limiter import LoginLimiter
from torsion.defer import Deferred, ensure_deferred, maybe_deferred
from torsion.errors import UnauthorizedLogin, UnhandledCredentials
from torsion.internet import Address, Clock, defer_later
from torsion.protocols import client_key

__all__ = ["ANONYMOUS", "Checker", "Login", "Portal", "Realm"]

ANONYMOUS: typing.Final = ""
"""The avatar id an anonymous login gets: the empty name, which no user has."""


class Login(NamedTuple):
    """What a successful login gives the protocol.

    Attributes:
        interface: Which of the interfaces asked for the avatar implements.
        avatar: The backend object, for the protocol to talk to.
        logout: Call it once when the session ends (the connection is lost).
    """

    interface: type
    avatar: Any
    logout: Callable[[], object]


class Checker(typing.Protocol):
    """Something that verifies credentials and names whose they are.

    A checker declares the credential classes it takes; the portal gives it
    only instances of those. It knows nothing of protocols or backends, so
    one checker serves every protocol of a deployment.
    """

    @property
    def credential_types(self) -> tuple[type, ...]:
        """The credential classes this checker takes (instances of subclasses too)."""
        ...

    def request_avatar_id(self, credentials: Any, client: Address | None, /) -> Awaitable[str]:
        """Verify ``credentials``; return (a Deferred of) the avatar id they prove.

        Args:
            credentials: An instance of one of ``credential_types``.
            client: The client's address, when the protocol knows it (for
                address rules such as authorized_keys ``from=``).

        Raises:
            UnauthorizedLogin: They are not accepted. Its message must not
                tell an unknown user from a wrong secret; its ``reason`` may.
        """
        ...


class Realm(typing.Protocol):
    """Turns an avatar id into the backend object a protocol talks to.

    It knows nothing of how the id was proved.
    """

    def request_avatar(
        self, avatar_id: str, mind: Any, /, *interfaces: type
    ) -> Login | tuple[type, Any, Callable[[], object]] | Awaitable[Login]:
        """Return the avatar for ``avatar_id``, implementing one of ``interfaces``.

        Args:
            avatar_id: Whose avatar (``ANONYMOUS`` for an anonymous login).
            mind: Whatever the protocol passed to ``login`` (a reference back
                to the client, or None).
            *interfaces: The interfaces the protocol can talk to, in its order
                of preference.

        Returns:
            ``(interface, avatar, logout)``, or a Deferred or coroutine of it.

        Raises:
            NotImplementedError: The realm has no avatar for any of them.
        """
        ...


class Portal:
    """Logs credentials in through checkers and a realm.

    Checkers are chosen by the credentials' type. Several may take the same
    type: they are tried in the order registered and the first to accept
    wins (a wrong password for the first is no failure while another may
    still accept). Every login goes through the limiter and the audit log.

    Args:
        realm: Turns avatar ids into avatars.
        checkers: The checkers, in the order to try them.
        clock: Tells the time, for the limiter's delays.
        limiter: Counts failures and delays their answers (a
            ``LoginLimiter(clock)`` if None; ``base_delay=0`` turns delays off).
        audit: Logs every login (an ``AuditLog(clock)`` if None).
    """

    def __init__(
        self,
        realm: Realm,
        checkers: Iterable[Checker] = (),
        *,
        clock: Clock,
        limiter: LoginLimiter | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.realm = realm
        self._clock = clock
        self.limiter = limiter if limiter is not None else LoginLimiter(clock)
        self.audit = audit if audit is not None else AuditLog(clock)
        self._checkers: list[tuple[Checker, tuple[type, ...]]] = []
        for checker in checkers:
            self.register_checker(checker)

    def register_checker(self, checker: Checker, *credential_types: type) -> None:
        """Add a checker, for the types it declares or for ``credential_types``."""
        types = credential_types or tuple(checker.credential_types)
        if not types:
            raise ValueError(f"{checker!r} takes no credential types")
        self._checkers.append((checker, types))

    @property
    def credential_types(self) -> tuple[type, ...]:
        """Every credential class some checker takes (for protocols to offer)."""
        seen: dict[type, None] = {}
        for _, types in self._checkers:
            seen.update(dict.fromkeys(types))
        return tuple(seen)

    def login(
        self, credentials: object, mind: Any, /, *interfaces: type, client: Address | None = None
    ) -> Deferred[Login]:
        """Log ``credentials`` in; fire with ``(interface, avatar, logout)``.

        Args:
            credentials: What the client presented (``UsernamePassword``...).
            mind: Passed to the realm as it is (a reference to the client, or None).
            *interfaces: The interfaces the protocol can talk to.
            client: The client's address: failures are counted and logged
                per address as well as per user name.

        Returns:
            A Deferred of the ``Login``. It fails with ``UnauthorizedLogin``
            when the credentials are not accepted (after the limiter's
            delay), ``UnhandledCredentials`` when no checker takes their
            type, or whatever the realm raised. Cancelling it (the client
            went away) cancels the checks and the delay.
        """
        if not interfaces:
            raise TypeError("login() needs at least one interface")
        return ensure_deferred(self._login(credentials, mind, interfaces, client))

    async def _login(
        self,
        credentials: object,
        mind: Any,
        interfaces: tuple[type, ...],
        client: Address | None,
    ) -> Login:
        kind = type(credentials).__name__
        checkers = [c for c, types in self._checkers if isinstance(credentials, types)]
        if not checkers:
            self.audit.unhandled(kind=kind, client=client)
            raise UnhandledCredentials(kind)
        username = _username_of(credentials)
        wait = self.limiter.blocked_for(client)
        if wait > 0 and client is not None:
            key = client_key(client, ipv6_prefix=self.limiter.ipv6_prefix)
            self.audit.refused(kind=kind, client=client, key=key)
            await defer_later(self._clock, wait)
            raise UnauthorizedLogin("client blocked after failures; not checked")
        try:
            avatar_id = await self._check(checkers, credentials, client, username, kind)
        except UnauthorizedLogin as exc:
            delay = self.limiter.failed(username, client)
            self.audit.failed(
                username=username, kind=kind, client=client, reason=exc.reason, delay=delay
            )
            if delay > 0:
                await defer_later(self._clock, delay)
            raise
        self.limiter.succeeded(username, client)
        result = await maybe_deferred(self.realm.request_avatar, avatar_id, mind, *interfaces)
        login = Login(*result)
        if login.interface not in interfaces:
            login.logout()
            raise TypeError(
                f"{self.realm!r} answered with {login.interface!r}, "
                f"which is not one of the interfaces asked for"
            )
        self.audit.succeeded(username=username, avatar_id=avatar_id, kind=kind, client=client)
        return login

    async def _check(
        self,
        checkers: list[Checker],
        credentials: object,
        client: Address | None,
        username: str | None,
        kind: str,
    ) -> str:
        failure: UnauthorizedLogin | None = None
        for checker in checkers:
            try:
                avatar_id = await maybe_deferred(checker.request_avatar_id, credentials, client)
            except UnauthorizedLogin as exc:
                failure = exc
                continue
            except Exception as exc:
                # A broken checker (an unreadable file, a bug) is the
                # server's problem: log it, and refuse without saying why.
                self.audit.error(username=username, kind=kind, client=client)
                raise UnauthorizedLogin(f"checker error: {type(exc).__name__}") from exc
            if not isinstance(avatar_id, str):
                raise TypeError(f"{checker!r} named a {type(avatar_id).__name__}, not a str")
            return avatar_id
        assert failure is not None
        raise failure

    def __repr__(self) -> str:
        kinds = ", ".join(t.__name__ for t in self.credential_types)
        return f"<Portal realm={self.realm!r} credentials=[{kinds}]>"


def _username_of(credentials: object) -> str | None:
    username = getattr(credentials, "username", None)
    return username if isinstance(username, str) else None
