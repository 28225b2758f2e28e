"""aiosmtpd as the real server torsion's SMTP client talks to, on the test's own loop.

The server runs on whatever loop the test runs on (asyncio or uvloop), on
127.0.0.1 port 0, with no thread; ``serving`` closes it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

try:
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
except ImportError:  # pragma: no cover - a test dependency
    if os.environ.get("TORSION_REQUIRE_PEERS") == "1":
        raise
    pytest.skip("aiosmtpd is not installed", allow_module_level=True)


@dataclass
class Received:
    """One message the server took."""

    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    login: str | None


@dataclass
class Handler:
    """Accepts every recipient except those named in ``refuse`` (550) and ``defer`` (450)."""

    refuse: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)
    messages: list[Received] = field(default_factory=list)
    data_reply: str = "250 2.0.0 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        if address in self.defer:
            return "450 4.2.1 mailbox busy"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        assert isinstance(envelope.original_content, bytes)
        login = session.auth_data
        self.messages.append(
            Received(
                sender="" if envelope.mail_from in (None, "<>") else envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                data=envelope.original_content,
                tls=session.ssl is not None,
                login=login.decode() if isinstance(login, bytes) else None,
            )
        )
        return self.data_reply


def authenticator(users: dict[str, str]) -> Any:
    """An aiosmtpd authenticator accepting ``users``' passwords."""

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if users.get(user) == password:
                return AuthResult(success=True, auth_data=user.encode())
        return AuthResult(success=False, handled=False)

    return check


@asynccontextmanager
async def serving(
    handler: Handler, *, tls_context: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[int]:
    """Serve aiosmtpd on 127.0.0.1; yield its port."""
    loop = asyncio.get_running_loop()
    protocols: list[SMTP] = []

    def factory() -> SMTP:
        protocol = SMTP(handler, hostname="mx.test", tls_context=tls_context, loop=loop, **options)
        protocols.append(protocol)
        return protocol

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        await server.wait_closed()
        # Let aiosmtpd's handler tasks see their connections end.
        tasks = [p._handler_coroutine for p in protocols if p._handler_coroutine is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
