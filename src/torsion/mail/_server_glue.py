"""The connection glue the POP3 and IMAP servers share.

Both servers log users in through a cred ``Portal`` whose avatar is a
``MailStore``, offer the SASL mechanisms its checkers can verify, upgrade
with STARTTLS/STLS from certificates given as an ``ssl.SSLContext`` or a
``ServerTLS``, pause reading while an answer is awaited, and log the user
out when the connection is lost. ``MailServerFactory`` and
``MailServerProtocol`` hold those pieces; the protocols themselves (their
state machines, replies and limits) stay in their packages.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable

from torsion.cred import CramMD5, Portal, UsernamePassword
from torsion.internet import Clock, ServerTLS
from torsion.internet import Protocol as BaseProtocol

__all__ = ["PLAINTEXT_MECHANISMS", "MailServerFactory", "MailServerProtocol", "sasl_mechanisms"]

#: The SASL mechanisms that send the password itself: refused in clear
#: unless the server is told to take them (RFC 2595 sections 2.1 and 3.2).
PLAINTEXT_MECHANISMS = ("PLAIN", "LOGIN")


def sasl_mechanisms(portal: Portal) -> tuple[str, ...]:
    """Return the SASL mechanisms ``portal``'s checkers can verify, strongest first.

    CRAM-MD5 needs a checker of ``CramMD5`` credentials; PLAIN and LOGIN
    one of ``UsernamePassword``.
    """
    types = portal.credential_types
    mechanisms: list[str] = []
    if any(issubclass(CramMD5, t) for t in types):
        mechanisms.append("CRAM-MD5")
    if any(issubclass(UsernamePassword, t) for t in types):
        mechanisms += PLAINTEXT_MECHANISMS
    return tuple(mechanisms)


class MailServerFactory:
    """What the POP3 and IMAP factories are made of.

    Args:
        portal: Logs credentials in; the avatar is asked for as a ``MailStore``.
        clock: Tells the time (the reactor), for the idle timeouts.
        hostname: The server's name (the machine's FQDN if None).
        tls: Certificates for STARTTLS/STLS; None: no upgrade offered.
        plaintext_without_tls: Take passwords before TLS.

    Attributes:
        tls_context: The TLS settings for the upgrade, or None.
        auth_mechanisms: The SASL mechanisms the portal's checkers can verify.
    """

    def __init__(
        self,
        portal: Portal,
        *,
        clock: Clock,
        hostname: str | None,
        tls: ssl.SSLContext | ServerTLS | None,
        plaintext_without_tls: bool,
    ) -> None:
        self.portal = portal
        self.clock = clock
        self.hostname = hostname if hostname is not None else socket.getfqdn()
        self.tls_context = tls.context if isinstance(tls, ServerTLS) else tls
        self.plaintext_without_tls = plaintext_without_tls
        self.auth_mechanisms = sasl_mechanisms(portal)


class MailServerProtocol(BaseProtocol):
    """What the POP3 and IMAP server protocols share: reading held back, TLS, logout.

    Subclasses call ``_set_reading_paused`` with what their state says,
    run the upgrade with ``_server_handshake`` and end the login with
    ``_log_out``; ``_gone`` is theirs to set once the connection is lost.
    """

    _reading_paused = False
    _handshaking = False
    _gone = False
    _logout: Callable[[], object] | None = None

    def _set_reading_paused(self, pause: bool) -> None:
        """Pause or resume reading from the transport, if that changes anything."""
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    async def _server_handshake(
        self, context: ssl.SSLContext, log: logging.Logger, what: str
    ) -> bool:
        """Run the server's side of the TLS upgrade; return whether it succeeded.

        ``start_tls`` closes the connection when the handshake fails: that
        is the client's affair and no error of ours, logged at debug level
        as ``what`` (``"IMAP STARTTLS"``) only.
        """
        self._handshaking = True
        try:
            await self.start_tls(context, server_side=True)
        except Exception as exc:
            log.debug("%s handshake failed: %s", what, exc)
            return False
        finally:
            self._handshaking = False
        return True

    def _log_out(self) -> None:
        """End the login, if any (once)."""
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()
