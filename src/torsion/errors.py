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
    ├── CannotSpawnError (+OSError)  a child process could not be started
    ├── ProcessExitedError (+ProcessLookupError) a signal was to go to a child
    │                               that had already exited
    ├── ProcessFailedError (+ConnectionError) a child process connected to a
    │                               protocol ended without success
    ├── DNSLookupError (+OSError)    a host name could not be resolved
    ├── TooManyFDsError (+ConnectionError) a peer passed more file descriptors
    │                               than one message may carry
    ├── EndpointStringError (+ValueError) an endpoint string is not valid
    ├── FramingError                the peer's bytes break a framing (lines, netstrings...)
    │   ├── LineTooLongError        a line over the receiver's maximum length
    │   ├── StringTooLongError      a length-prefixed string or netstring over the maximum
    │   └── NetstringParseError     bytes that are not a netstring
    ├── ProxyProtocolError (+ValueError) a PROXY protocol header is malformed
    ├── TLSConfigError (+ValueError) TLS certificates, keys or settings cannot be used
    ├── LoopingCallError (+RuntimeError) a LoopingCall started twice or stopped idle
    ├── LoginError                  a login through a cred Portal did not succeed
    │   ├── UnauthorizedLogin       the credentials were not accepted (unknown
    │   │                           user or wrong secret: never said which)
    │   └── UnhandledCredentials    no checker takes this kind of credentials
    ├── AuthStringError (+ValueError) an --auth string is not valid
    ├── PasswordHashError (+ValueError) a password hash is of an unknown or
    │                               refused scheme, or its library is missing
    └── PasswordFileError (+ValueError) a password or authorized_keys file
                                    cannot be read or has a bad line

    BaseFailureGroup (+BaseExceptionGroup) the same, holding a cancellation
                                    or another non-``Exception`` failure

Errors that belong to one protocol live with it and derive from
``TorsionError`` too: ``SOCKSError`` (and its kinds) in
``torsion.protocols``, ``AmpError`` (and its kinds) in
``torsion.protocols.amp``; the ``torsion`` command's ``UsageError``,
``RunnerError``, ``DeploymentFileError`` and ``PidfileError`` in
``torsion.application``; DNS errors (``ZoneError``, ``DoHError``...) in
``torsion.names``; the HTTP server's ``HTTPProtocolError``,
``InvalidHeaderError`` and ``ResponseStateError``, the client's
``HTTPClientError`` family, ``FormError`` and the others in
``torsion.web``; ``MailboxError`` (and its kinds) and the protocols' errors in
``torsion.mail``.

Make a group with ``BaseFailureGroup(message, errors)``: as with the builtin
``BaseExceptionGroup``, the result is a ``FailureGroup`` (an ``Exception``, so a
``TorsionError`` too) whenever every error in it is an ``Exception``.

Cancellation is :class:`asyncio.CancelledError` and expired timeouts are the
builtin :class:`TimeoutError`, so torsion and asyncio code catch the same
thing.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    # For annotations only: torsion.errors imports nothing of torsion at run time.
    from torsion.internet._process_status import ProcessStatus

__all__ = [
    "AlreadyCalledDelayedError",
    "AlreadyCalledError",
    "AlreadyCancelledError",
    "AuthStringError",
    "BaseFailureGroup",
    "CannotListenError",
    "CannotSpawnError",
    "DNSLookupError",
    "EndpointStringError",
    "FailureGroup",
    "FramingError",
    "LineTooLongError",
    "LoginError",
    "LoopingCallError",
    "NetstringParseError",
    "PasswordFileError",
    "PasswordHashError",
    "ProcessExitedError",
    "ProcessFailedError",
    "ProxyProtocolError",
    "QueueOverflowError",
    "ReactorAlreadyRunningError",
    "ReactorError",
    "ReactorNotRunningError",
    "ReactorThreadError",
    "StringTooLongError",
    "TLSConfigError",
    "TooManyFDsError",
    "TorsionError",
    "UnauthorizedLogin",
    "UnhandledCredentials",
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

    For an IP port, ``interface`` and ``port`` say where; for a Unix socket,
    ``path`` does (and ``interface`` is "", ``port`` 0).

    Attributes:
        interface: The interface asked for ("" means all).
        port: The port asked for.
        path: The Unix socket's path (None for an IP port).
        reason: The error the system gave, or one describing the refusal.
    """

    def __init__(
        self, interface: str, port: int, reason: OSError, *, path: str | None = None
    ) -> None:
        where = repr(path) if path is not None else f"{interface or '*'}:{port}"
        super().__init__(reason.errno, f"cannot listen on {where}: {reason}")
        self.interface = interface
        self.port = port
        self.path = path
        self.reason = reason


class CannotSpawnError(TorsionError, OSError):
    """A child process could not be started.

    The program is missing or not executable, the working directory does not
    exist, the user or group could not be taken on... ``errno`` is the
    system's reason where there is one (``errno.ENOENT``, ...).

    Attributes:
        executable: The program that was to run.
        reason: The error that prevented it.
    """

    def __init__(self, executable: str, reason: BaseException) -> None:
        code = reason.errno if isinstance(reason, OSError) else None
        super().__init__(code, f"cannot run {executable!r}: {reason}")
        self.executable = executable
        self.reason = reason


class ProcessExitedError(TorsionError, ProcessLookupError):
    """A signal was to be sent to a child process that has already exited.

    Attributes:
        pid: The process id it had.
        status: How it ended (None if it was not known yet).
    """

    def __init__(self, pid: int, status: ProcessStatus | None) -> None:
        super().__init__(errno.ESRCH, f"process {pid} has already {status or 'exited'}")
        self.pid = pid
        self.status = status


class ProcessFailedError(TorsionError, ConnectionError):
    """A child process ended without success: a non-zero exit code, or a signal.

    A stream protocol connected to a child (``ProcessEndpoint``) gets it in
    ``connection_lost``; a child that exits with code 0 ends the connection
    cleanly (None) instead.

    Attributes:
        status: How the child ended (``ProcessExited`` or ``ProcessTerminated``).
        pid: The child's process id.
        executable: The program it ran.
    """

    def __init__(self, status: ProcessStatus, *, pid: int, executable: str) -> None:
        super().__init__(f"process {pid} ({executable}) {status}")
        self.status = status
        self.pid = pid
        self.executable = executable


class FramingError(TorsionError):
    """The peer's bytes break the framing: the connection cannot go on."""


class LineTooLongError(FramingError):
    """A line was longer than the decoder's ``max_length``.

    Attributes:
        line: The line, or the part of it received so far if its delimiter
            has not arrived.
        max_length: The longest line allowed.
    """

    def __init__(self, line: bytes, max_length: int) -> None:
        super().__init__(f"line longer than {max_length} bytes")
        self.line = line
        self.max_length = max_length


class StringTooLongError(FramingError):
    """A received string announced a length over the decoder's ``max_length``.

    Attributes:
        length: The length the peer announced.
        max_length: The longest string allowed.
    """

    def __init__(self, length: int, max_length: int) -> None:
        super().__init__(f"string of {length} bytes is longer than {max_length}")
        self.length = length
        self.max_length = max_length


class NetstringParseError(FramingError):
    """The bytes received are not a netstring (a bad length or no comma)."""


class ProxyProtocolError(TorsionError, ValueError):
    """The bytes are not a valid PROXY protocol header.

    Raised for every malformation: not a header at all, a wrong signature,
    version or command, an unknown address family, a header over its length
    limit, addresses or ports that do not parse, a truncated TLV, a CRC32C
    that does not match.
    """


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


class EndpointStringError(TorsionError, ValueError):
    """An endpoint string (``tcp:8080``, ...) is not valid.

    Attributes:
        text: The string.
        problem: What is wrong with it.
    """

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"bad endpoint {text!r}: {problem}")
        self.text = text
        self.problem = problem


class TooManyFDsError(TorsionError, ConnectionError):
    """A peer passed more file descriptors in one message than are accepted.

    The kernel truncated the message's ancillary data (``MSG_CTRUNC``), so
    some descriptors were lost; the connection is closed with this error.

    Attributes:
        limit: How many descriptors one message may carry.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"the peer passed more than {limit} file descriptors in one message")
        self.limit = limit


class TLSConfigError(TorsionError, ValueError):
    """TLS settings cannot be used: a file is missing, unreadable or wrong.

    The message names the file at fault and what is wrong with it (not
    found, not PEM, a key that does not match its certificate, ...).

    Attributes:
        path: The file at fault, or None when the problem is no one file's.
    """

    def __init__(self, problem: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {problem}" if path is not None else problem)
        self.path = path


class LoopingCallError(TorsionError, RuntimeError):
    """A LoopingCall was started while running, or stopped while not running."""


class LoginError(TorsionError):
    """A login through a ``torsion.cred.Portal`` did not succeed."""


class UnauthorizedLogin(LoginError):  # noqa: N818 - the name protocols know it by
    """The credentials were not accepted.

    The message is the same whether the user is unknown or the secret wrong,
    so that a protocol may show it to the client; ``reason`` says which, for
    the server's own log only.

    Attributes:
        reason: Why, for the audit log (never for the client).
    """

    def __init__(self, reason: str = "bad credentials") -> None:
        super().__init__("login failed")
        self.reason = reason


class UnhandledCredentials(LoginError):  # noqa: N818 - the name protocols know it by
    """No checker registered with the portal takes this kind of credentials.

    Attributes:
        kind: The credentials' type name.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(f"no checker takes {kind} credentials")
        self.kind = kind


class AuthStringError(TorsionError, ValueError):
    """An ``--auth`` string (``memory:alice:secret``, ``file:PATH``, ...) is not valid.

    Attributes:
        text: The string, with any password in it masked.
        problem: What is wrong with it.
    """

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"bad --auth {text!r}: {problem}")
        self.text = text
        self.problem = problem


class PasswordHashError(TorsionError, ValueError):
    """A password hash cannot be made or checked.

    Its scheme is unknown, refused (unsalted or legacy, unless allowed), its
    parameters are out of bounds, or the library it needs is not installed.
    """


class PasswordFileError(TorsionError, ValueError):
    """A password file or an authorized_keys file cannot be used.

    Attributes:
        path: The file (None for text that came from elsewhere).
        line: The line at fault, counted from 1 (None for the whole file).
        problem: What is wrong.
    """

    def __init__(self, problem: str, *, path: str | None = None, line: int | None = None) -> None:
        where = "".join(
            [path if path is not None else "<text>", f":{line}" if line is not None else ""]
        )
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


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
