"""AMP, the Asynchronous Messaging Protocol: typed calls both ways over one connection.

Wire-compatible with Twisted's ``twisted.protocols.amp``: either end may be
Twisted. Declare commands as classes, answer them with responders, call
them with ``call_remote``::

    from torsion.protocols.amp import AMP, Command, Integer

    class Sum(Command):
        arguments = {"a": Integer(), "b": Integer()}
        response = {"total": Integer()}
        errors = {ZeroDivisionError: b"ZERO_DIVISION"}

    class Calculator(AMP):
        @Sum.responder
        def sum(self, a: int, b: int) -> dict[str, int]:
            return {"total": a + b}

    # on a connected AMP protocol, either end:
    answer = await protocol.call_remote(Sum, a=1, b=2)   # {"total": 3}

The box codec (``BoxParser``, ``encode_box``) is sans-IO and usable on its
own; the argument types (``Integer``, ``String``, ``Unicode``, ``Boolean``,
``Float``, ``Decimal``, ``DateTime``, ``ListOf``, ``AmpList``) encode values
as Twisted does.
"""

from torsion.protocols.amp._arguments import (
    AmpList,
    Argument,
    Boolean,
    DateTime,
    Decimal,
    Float,
    Integer,
    ListOf,
    Schema,
    String,
    Unicode,
)
from torsion.protocols.amp._box import (
    ANSWER,
    ASK,
    COMMAND,
    DEFAULT_MAX_BOX_SIZE,
    DEFAULT_MAX_KEYS,
    ERROR,
    ERROR_CODE,
    ERROR_DESCRIPTION,
    MAX_KEY_LENGTH,
    MAX_VALUE_LENGTH,
    UNHANDLED_ERROR_CODE,
    UNKNOWN_ERROR_CODE,
    Box,
    BoxParser,
    encode_box,
)
from torsion.protocols.amp._command import (
    Command,
    CommandLocator,
    Responder,
    ResponderLocator,
)
from torsion.protocols.amp._errors import (
    AmpError,
    AmpProtocolError,
    BadArgumentsError,
    ConnectionLostError,
    InvalidSignatureError,
    RemoteAmpError,
    TooLongError,
    UnhandledCommandError,
    UnknownRemoteError,
)
from torsion.protocols.amp._protocol import AMP, DEFAULT_MAX_PENDING_REQUESTS

__all__ = [
    "AMP",
    "ANSWER",
    "ASK",
    "COMMAND",
    "DEFAULT_MAX_BOX_SIZE",
    "DEFAULT_MAX_KEYS",
    "DEFAULT_MAX_PENDING_REQUESTS",
    "ERROR",
    "ERROR_CODE",
    "ERROR_DESCRIPTION",
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "UNHANDLED_ERROR_CODE",
    "UNKNOWN_ERROR_CODE",
    "AmpError",
    "AmpList",
    "AmpProtocolError",
    "Argument",
    "BadArgumentsError",
    "Boolean",
    "Box",
    "BoxParser",
    "Command",
    "CommandLocator",
    "ConnectionLostError",
    "DateTime",
    "Decimal",
    "Float",
    "Integer",
    "InvalidSignatureError",
    "ListOf",
    "RemoteAmpError",
    "Responder",
    "ResponderLocator",
    "Schema",
    "String",
    "TooLongError",
    "UnhandledCommandError",
    "Unicode",
    "UnknownRemoteError",
    "encode_box",
]
