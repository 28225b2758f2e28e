"""The AMP protocol: calls in both directions over one connection.

Either end calls the other with ``call_remote(Command, **arguments)``,
which returns a Deferred (await it) of the answer's values, and answers the
other's calls with the responders its locator finds. Each call that wants an
answer carries a tag (``_ask``); its answer carries the same tag back
(``_answer``, or ``_error`` with a code and a description), so answers may
come in any order and any number of calls may be under way at once.

What a responder's outcome becomes on the wire:

* a dictionary (or a Deferred or coroutine of one): the answer, encoded by
  the command's ``response``;
* an exception the command declares: that error code, with ``str(error)``
  as the description; a fatal one then closes the connection;
* a ``RemoteAmpError``: its own code and description;
* anything else: the code ``UNKNOWN`` with the description "Unknown
  Error", and the exception is logged (logger ``torsion.protocols.amp``);
* no responder at all: the code ``UNHANDLED``.

The peer's bad input is answered, never logged with a traceback: values
that do not decode get an ``UNKNOWN`` error answer, and a box that breaks
the wire format closes the connection (``AmpProtocolError``, logged at
INFO without traceback). Calls still unanswered when the connection ends
fail with ``ConnectionLostError``.

Answers produced while a chunk of received data is being handled are
written together once the chunk is done, so a peer that sends many calls
at once gets their answers in few writes.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

from torsion.defer import Deferred, awaitable_deferred, fail, succeed
from torsion.internet import Protocol
from torsion.protocols.amp._box import (
    ANSWER,
    ASK,
    COMMAND,
    DEFAULT_MAX_BOX_SIZE,
    DEFAULT_MAX_KEYS,
    END,
    ERROR,
    ERROR_CODE,
    ERROR_DESCRIPTION,
    MAX_VALUE_LENGTH,
    UNHANDLED_ERROR_CODE,
    UNKNOWN_ERROR_CODE,
    Box,
    BoxParser,
    key_prefix,
)
from torsion.protocols.amp._command import Command, CommandLocator, Responder, ResponderLocator
from torsion.protocols.amp._errors import (
    AmpProtocolError,
    BadArgumentsError,
    ConnectionLostError,
    RemoteAmpError,
    UnhandledCommandError,
    UnknownRemoteError,
)

__all__ = ["AMP", "DEFAULT_MAX_PENDING_REQUESTS"]

_log = logging.getLogger("torsion.protocols.amp")

DEFAULT_MAX_PENDING_REQUESTS: Final = 1000

_pack_length = struct.Struct(">H").pack
_ASK_PREFIX = key_prefix(ASK)
_ANSWER_PREFIX = key_prefix(ANSWER)
_ERROR_PREFIX = key_prefix(ERROR)
_ERROR_CODE_PREFIX = key_prefix(ERROR_CODE)
_ERROR_DESCRIPTION_PREFIX = key_prefix(ERROR_DESCRIPTION)
_MISSING: Any = object()

# A call waiting for its answer: its command and Deferred. None once the
# call was cancelled: its answer is still due and is then dropped.
_Call = tuple[type[Command], "Deferred[dict[str, Any]]"] | None


class AMP(Protocol, CommandLocator):
    """An AMP connection, either end: makes calls and answers them.

    Subclass it and mark methods with ``@Command.responder`` to answer
    commands, or hand it another locator. Call the other end with
    ``call_remote``.

    Reading pauses (and the peer is held back by TCP) while the peer's
    calls pile up: while ``max_pending_requests`` of them are being
    answered by responders that have not finished, or while the answers
    already written are more than the transport's buffer should hold. It
    does not pause while calls of our own wait for their answers, which
    must still be read.

    Args:
        locator: What finds responders (default: the protocol itself).
        max_pending_requests: How many of the peer's calls may be waiting
            for their responders at once before reading pauses.
        max_keys: The most keys a received box may hold.
        max_box_size: The most bytes a received box may take.
    """

    _connected = False
    _locator: ResponderLocator
    max_pending_requests = DEFAULT_MAX_PENDING_REQUESTS
    max_keys = DEFAULT_MAX_KEYS
    max_box_size = DEFAULT_MAX_BOX_SIZE

    def __init__(
        self,
        locator: ResponderLocator | None = None,
        *,
        max_pending_requests: int = DEFAULT_MAX_PENDING_REQUESTS,
        max_keys: int = DEFAULT_MAX_KEYS,
        max_box_size: int = DEFAULT_MAX_BOX_SIZE,
    ) -> None:
        if max_pending_requests < 1:
            raise ValueError("max_pending_requests must be at least 1")
        if locator is not None:
            self._locator = locator
        self.max_pending_requests = max_pending_requests
        self.max_keys = max_keys
        self.max_box_size = max_box_size

    # -- the connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start reading boxes."""
        super().connection_made(transport)
        self._parser = BoxParser(max_keys=self.max_keys, max_box_size=self.max_box_size)
        self._calls: dict[bytes, _Call] = {}
        self._tags = 0
        self._answering = 0
        self._batch: list[bytes] | None = None
        self._closing = False
        self._close_reason: BaseException | None = None
        self._reading_paused = False
        locator = self.__dict__.get("_locator", self)
        self._locator = locator
        # The responders found so far, by command name; only kept when the
        # locator is this protocol's own table, whose changes it sees.
        self._responders: dict[bytes, Responder | None] | None = (
            {}
            if locator is self and type(self).locate_responder is CommandLocator.locate_responder
            else None
        )
        self._connected = True

    def data_received(self, data: bytes) -> None:
        """Read the boxes in ``data``; answer, or deliver answers, as they come."""
        # Nothing arrives once we close: a closing transport stops reading.
        error: AmpProtocolError | None = None
        try:
            boxes = self._parser.receive_data(data)
        except AmpProtocolError as exc:
            # The boxes before the bad one are answered all the same.
            boxes, error = exc.boxes, exc
        batch: list[bytes] = []
        self._batch = batch
        try:
            for box in boxes:
                self._box_received(box)
                if self._closing:
                    break
            if error is not None:
                self._protocol_error(error)
        except AmpProtocolError as exc:
            self._protocol_error(exc)
        finally:
            self._batch = None
            if batch:
                self.transport.write(b"".join(batch))
            if self._closing:
                self.transport.close()

    def eof_received(self) -> bool | None:
        """The peer is done sending: close (a box it left unfinished is dropped)."""
        if self._parser.pending:
            _log.info("%r: the peer closed in the middle of a box", self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every call still waiting for its answer with ``ConnectionLostError``."""
        super().connection_lost(exc)
        if not self._connected:
            return
        self._closing = True
        reason = self._close_reason if self._close_reason is not None else exc
        calls, self._calls = self._calls, {}
        for call in calls.values():
            if call is not None:
                command, deferred = call
                error = ConnectionLostError(
                    f"the connection was lost before {command.__name__} was answered"
                )
                error.__cause__ = reason
                deferred.errback(error)

    def pause_writing(self) -> None:
        """The peer is not reading our answers: stop reading its calls (see the class)."""
        super().pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        """The peer read: read again."""
        super().resume_writing()
        self._update_reading()

    # -- calls ---------------------------------------------------------------------

    def call_remote(self, command: type[Command], /, **arguments: Any) -> Deferred[dict[str, Any]]:
        """Call ``command`` at the other end with ``arguments``.

        Args:
            command: The command.
            **arguments: Its arguments, by their Python names; an optional one
                may be left out or given as None.

        Returns:
            A Deferred (await it) of the answer's values by Python name, as
            the command's ``response`` declares them. It fails with the
            exception the command declares for the peer's error code,
            ``UnknownRemoteError`` or ``UnhandledCommandError`` for the
            others, ``BadArgumentsError`` when the answer does not decode,
            or ``ConnectionLostError``. Cancelling it forgets the call (its
            answer is dropped when it comes). For a command with
            ``requires_answer = False`` it fires with ``{}`` once sent.

        Raises:
            InvalidSignatureError: An argument is missing or not declared.
            TooLongError: A value is too long for the wire format.
            TypeError: A value is not of its argument's type.
            ValueError: A value cannot be encoded.
        """
        parts = [command.wire_head]
        command.argument_schema.encode(arguments, parts)
        if not self._connected or self._closing:
            return fail(ConnectionLostError(f"cannot call {command.__name__}: not connected"))
        if not command.requires_answer:
            parts.append(END)
            self._send(parts)
            return succeed({})
        self._tags += 1
        tag = b"%x" % self._tags
        parts += (_ASK_PREFIX, _pack_length(len(tag)), tag, END)
        calls = self._calls

        def cancel(_: Deferred[dict[str, Any]]) -> None:
            if calls.get(tag) is not None:
                calls[tag] = None

        deferred: Deferred[dict[str, Any]] = Deferred(cancel)
        calls[tag] = (command, deferred)
        if self._reading_paused:
            self._update_reading()
        self._send(parts)
        return deferred

    @property
    def calls_waiting(self) -> int:
        """How many of our calls are waiting for their answers (cancelled ones too)."""
        return len(self._calls) if self._connected else 0

    def register(self, command: type[Command], function: Callable[..., Any]) -> None:
        """Have ``function`` answer ``command`` on this connection (replacing any other)."""
        super().register(command, function)
        if self._connected and self._responders is not None:
            self._responders.pop(command.command_name, None)

    # -- receiving -------------------------------------------------------------------

    def _box_received(self, box: Box) -> None:
        tag = box.get(ANSWER)
        if tag is not None:
            self._answer_received(tag, box)
            return
        tag = box.get(ERROR)
        if tag is not None:
            self._error_received(tag, box)
            return
        name = box.get(COMMAND)
        if name is not None:
            self._command_received(name, box)
            return
        raise AmpProtocolError(
            f"the peer sent a box that is neither a command nor an answer: {sorted(box)[:10]!r}"
        )

    def _answer_received(self, tag: bytes, box: Box) -> None:
        call = self._calls.pop(tag, _MISSING)
        if call is _MISSING:
            raise AmpProtocolError(f"the peer answered a call never made (tag {tag[:40]!r})")
        if not self._calls and (
            self._writing_paused or self._answering >= self.max_pending_requests
        ):
            # Our last call is answered: the peer's backlog may hold reading now.
            self._update_reading()
        if call is None:
            return
        command, deferred = call
        try:
            values = command.response_schema.decode(box)
        except BadArgumentsError as exc:
            deferred.errback(exc)
            return
        deferred.callback(values)

    def _error_received(self, tag: bytes, box: Box) -> None:
        code = box.get(ERROR_CODE)
        description = box.get(ERROR_DESCRIPTION)
        if code is None or description is None:
            raise AmpProtocolError("the peer sent an error answer without its code or description")
        call = self._calls.pop(tag, _MISSING)
        if call is _MISSING:
            raise AmpProtocolError(f"the peer answered a call never made (tag {tag[:40]!r})")
        if not self._calls and (
            self._writing_paused or self._answering >= self.max_pending_requests
        ):
            # Our last call is answered: the peer's backlog may hold reading now.
            self._update_reading()
        if call is None:
            return
        command, deferred = call
        deferred.errback(_remote_error(command, code, description.decode("utf-8", "replace")))

    def _command_received(self, name: bytes, box: Box) -> None:
        tag = box.get(ASK)
        cache = self._responders
        if cache is None:
            responder = self._locator.locate_responder(name)
        else:
            responder = cache.get(name, _MISSING)
            if responder is _MISSING:
                responder = cache[name] = self.locate_responder(name)
        if responder is None:
            _log.debug("%r: no responder for %r", self, name)
            if tag is not None:
                self._send_error(tag, UNHANDLED_ERROR_CODE, f"Unhandled Command: {name!r}")
            return
        command, function = responder
        try:
            arguments = command.argument_schema.decode(box)
        except BadArgumentsError as exc:
            _log.debug("%r: bad arguments for %s: %s", self, command.__name__, exc)
            if tag is not None:
                self._send_error(tag, UNKNOWN_ERROR_CODE, f"bad arguments: {exc}")
            return
        try:
            result = function(**arguments)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._responder_failed(command, tag, exc)
            return
        if type(result) is not dict:
            waiting = awaitable_deferred(result)
            if waiting is not None:
                self._answer_later(command, tag, waiting)
                return
        self._answer(command, tag, result)

    # -- answering -------------------------------------------------------------------

    def _answer(self, command: type[Command], tag: bytes | None, result: object) -> None:
        if tag is None:
            return
        parts = [_ANSWER_PREFIX, _pack_length(len(tag)), tag]
        try:
            if not isinstance(result, Mapping):
                raise TypeError(f"a responder returns a dict, not {type(result).__name__}")
            command.response_schema.encode(result, parts)
        except Exception:
            _log.exception(
                "%r: the responder for %s returned what its response cannot carry",
                self,
                command.__name__,
            )
            self._send_error(tag, UNKNOWN_ERROR_CODE, "Unknown Error")
            return
        parts.append(END)
        self._send(parts)

    def _answer_later(
        self, command: type[Command], tag: bytes | None, waiting: Deferred[Any]
    ) -> None:
        self._answering += 1
        if self._answering >= self.max_pending_requests:
            self._update_reading()

        def answered(result: object) -> None:
            self._answered()
            self._answer(command, tag, result)

        def failed(exc: BaseException) -> None:
            self._answered()
            self._responder_failed(command, tag, exc)

        waiting.add_callbacks(answered, failed)

    def _answered(self) -> None:
        self._answering -= 1
        if self._reading_paused:
            self._update_reading()

    def _responder_failed(
        self, command: type[Command], tag: bytes | None, exc: BaseException
    ) -> None:
        if isinstance(exc, RemoteAmpError):
            code, description, fatal = exc.code, exc.description, exc.fatal
        else:
            declared = command.classify(exc)
            if declared is None:
                if isinstance(exc, asyncio.CancelledError):
                    _log.debug("%r: the responder for %s was cancelled", self, command.__name__)
                else:
                    _log.error(
                        "%r: the responder for %s failed",
                        self,
                        command.__name__,
                        exc_info=(type(exc), exc, exc.__traceback__),
                    )
                code, description, fatal = UNKNOWN_ERROR_CODE, "Unknown Error", False
            else:
                (code, fatal), description = declared, str(exc)
        if tag is not None:
            self._send_error(tag, code, description)
        if fatal:
            self._close()

    def _send_error(self, tag: bytes, code: bytes, description: str) -> None:
        text = description.encode("utf-8", "replace")
        if len(text) > MAX_VALUE_LENGTH:
            text = text[:MAX_VALUE_LENGTH].decode("utf-8", "ignore").encode("utf-8")
        self._send(
            [
                _ERROR_PREFIX,
                _pack_length(len(tag)),
                tag,
                _ERROR_CODE_PREFIX,
                _pack_length(len(code)),
                code,
                _ERROR_DESCRIPTION_PREFIX,
                _pack_length(len(text)),
                text,
                END,
            ]
        )

    def _send(self, parts: list[bytes]) -> None:
        if self._closing:
            return
        batch = self._batch
        if batch is not None:
            batch += parts
        else:
            self.transport.write(b"".join(parts))

    # -- closing and flow ------------------------------------------------------------

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._batch is None:
            # Not inside data_received, which closes once its answers are out.
            self.transport.close()

    def _protocol_error(self, exc: AmpProtocolError) -> None:
        _log.info("%r: closing the connection: %s", self, exc)
        if self._close_reason is None:
            self._close_reason = exc
        self._close()

    def _update_reading(self) -> None:
        if not self._connected or self._lost:
            return
        pause = not self._calls and (
            self._answering >= self.max_pending_requests or self._writing_paused
        )
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def __repr__(self) -> str:
        if not self._connected:
            return f"<{type(self).__name__} not connected>"
        return f"<{type(self).__name__} peer={self.transport.get_extra_info('peername')!r}>"


def _remote_error(command: type[Command], code: bytes, description: str) -> BaseException:
    """Return the exception a call fails with for the peer's error answer."""
    declared = command.error_types.get(code)
    if declared is not None:
        try:
            return declared(description)
        except Exception:  # an exception class that takes other arguments
            return RemoteAmpError(code, description)
    if code == UNHANDLED_ERROR_CODE:
        return UnhandledCommandError(code, description)
    return UnknownRemoteError(code, description)
