"""The exceptions of AMP, under torsion's ``TorsionError``.

::

    TorsionError
    └── AmpError
        ├── RemoteAmpError              an error answer: raise one in a responder
        │   │                           to answer with any code; a call fails
        │   │                           with one when the code is undeclared
        │   ├── UnknownRemoteError      the peer's responder failed unexpectedly
        │   │                           (UNKNOWN), or a code the command does
        │   │                           not declare
        │   └── UnhandledCommandError   the peer has no responder (UNHANDLED)
        ├── TooLongError (+ValueError)  a key or value longer than the wire
        │                               format allows, refused before sending
        ├── InvalidSignatureError (+TypeError)
        │                               arguments the command does not declare,
        │                               or required ones missing
        ├── BadArgumentsError (+ValueError)
        │                               a box's values do not decode as the
        │                               command declares (or one is missing)
        ├── AmpProtocolError (+ConnectionError)
        │                               the peer broke the wire format; the
        │                               connection is closed
        └── ConnectionLostError (+ConnectionError)
                                        the connection ended before the answer
"""

from __future__ import annotations

from torsion.errors import TorsionError

__all__ = [
    "AmpError",
    "AmpProtocolError",
    "BadArgumentsError",
    "ConnectionLostError",
    "InvalidSignatureError",
    "RemoteAmpError",
    "TooLongError",
    "UnhandledCommandError",
    "UnknownRemoteError",
]


class AmpError(TorsionError):
    """The root of the errors AMP raises."""


class RemoteAmpError(AmpError):
    """An error answer, coming from the peer or going to it.

    A call fails with one (or a subclass) when the peer answered with an
    error code the command does not declare. A responder may raise one to
    answer with a code of its choosing.

    Args:
        code: The error code (``_error_code``), bytes on the wire.
        description: The text that goes with it (``_error_description``).
        fatal: When raised by a responder: close the connection after
            sending the answer.

    Attributes:
        code: The error code.
        description: Its description.
        fatal: Whether the connection closes after it is sent.
    """

    def __init__(self, code: bytes, description: str, *, fatal: bool = False) -> None:
        super().__init__(f"{code.decode('ascii', 'replace')}: {description}")
        self.code = code
        self.description = description
        self.fatal = fatal


class UnknownRemoteError(RemoteAmpError):
    """The peer failed to answer for a reason the command does not declare.

    The peer's responder raised an unexpected exception (code ``UNKNOWN``),
    or the peer answered with a code that the command's ``errors`` and
    ``fatal_errors`` do not list.
    """


class UnhandledCommandError(RemoteAmpError):
    """The peer has no responder for the command (code ``UNHANDLED``)."""


class TooLongError(AmpError, ValueError):
    """A key or a value is longer than AMP's wire format can carry.

    Keys are 1 to 255 bytes long and values at most 65,535. Raised before
    anything of the box is written.

    Attributes:
        key: The key concerned.
        length: The length that was refused.
    """

    def __init__(self, key: bytes, length: int, *, is_key: bool) -> None:
        what = "key" if is_key else f"value of {key!r}"
        limit = "1 to 255" if is_key else "at most 65535"
        super().__init__(f"the {what} is {length} bytes long; AMP allows {limit}")
        self.key = key
        self.length = length


class InvalidSignatureError(AmpError, TypeError):
    """A call names arguments its command does not declare, or lacks required ones."""


class BadArgumentsError(AmpError, ValueError):
    """The values in a box do not decode as the command declares them.

    A required key is missing, or a value is not in its type's encoding (an
    Integer that is not decimal digits, a Unicode that is not UTF-8, ...).
    """


class AmpProtocolError(AmpError, ConnectionError):
    """The peer broke AMP's wire format, so the connection was closed.

    A key too long, a box with too many keys or bytes or a key twice, a box
    that is neither a command nor an answer, an answer to a call never made.

    Attributes:
        boxes: When ``BoxParser.receive_data`` raises it, the boxes that the
            same data completed before the error, in order (else empty).
    """

    def __init__(self, message: str, *, boxes: list[dict[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.boxes = boxes if boxes is not None else []


class ConnectionLostError(AmpError, ConnectionError):
    """The connection ended before the call was answered.

    The reason the connection ended, when there was one, is the exception's
    ``__cause__``.
    """
