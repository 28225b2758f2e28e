"""What the POP3 server core asks of its glue, and the bounds it keeps.

The core (``POP3ServerConnection``) handles every command it can answer from
the session's own state; what needs the outside world (a login through
cred, a message body from the mailbox, the deletions at QUIT, a TLS
handshake) becomes one of these events, and the session waits, reading
nothing more, until the glue answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torsion.cred import APOP, CramMD5, UsernamePassword

__all__ = [
    "LoginRequested",
    "POP3Event",
    "POP3Limits",
    "RetrieveRequested",
    "STLSRequested",
    "UpdateRequested",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class POP3Limits:
    """Bounds and timeouts of a POP3 server session.

    Attributes:
        max_command_line: Octets in a command line with its CRLF (RFC 2449
            section 4 says 255).
        max_auth_line: Octets in a SASL response line (RFC 5034 section 4
            lifts the command limit for them).
        max_commands: Commands per session before ``-ERR`` and a close.
        max_errors: Refused commands per session before ``-ERR`` and a close.
        max_login_failures: Failed logins per session before the close
            (the portal's limiter also counts them per client address).
        idle_timeout: Seconds without a command before the session ends
            (RFC 1939 section 3: at least 10 minutes).
    """

    max_command_line: int = 255
    max_auth_line: int = 12288
    max_commands: int = 100_000
    max_errors: int = 20
    max_login_failures: int = 3
    idle_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.max_command_line < 255:
            raise ValueError("max_command_line must be at least 255 (RFC 2449 section 4)")
        if self.max_auth_line < self.max_command_line:
            raise ValueError("max_auth_line must be at least max_command_line")
        if min(self.max_commands, self.max_errors, self.max_login_failures) < 1:
            raise ValueError("max_commands, max_errors and max_login_failures must be at least 1")
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginRequested:
    """The client presented credentials: answer ``login_accepted`` or ``login_refused``."""

    credentials: UsernamePassword | APOP | CramMD5


@dataclass(frozen=True, slots=True, kw_only=True)
class STLSRequested:
    """``+OK`` to STLS is written: start TLS, then call ``tls_started``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrieveRequested:
    """RETR or TOP of a message: answer ``message_found`` or ``message_failed``.

    Attributes:
        number: The message's number in the session.
        uid: Its UID in the mailbox.
        size: Its size in octets (CRLF line endings).
        body_lines: For TOP, how many body lines to send after the header;
            None for RETR (the whole message).
    """

    number: int
    uid: int
    size: int
    body_lines: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRequested:
    """QUIT in the TRANSACTION state: remove these messages, then ``update_done``.

    Attributes:
        uids: The UIDs the client deleted (RFC 1939 section 6), ascending.
    """

    uids: tuple[int, ...]


#: Everything the core may ask for.
POP3Event = LoginRequested | STLSRequested | RetrieveRequested | UpdateRequested
