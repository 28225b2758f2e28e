"""What the framings share: their errors, the decoder skeleton and the glue.

A framing turns a byte stream into messages (lines, netstrings,
length-prefixed strings). Each has a sans-IO decoder, which is fed bytes and
calls back once per message, and a ``Protocol`` that feeds it from its
connection. The decoders call back rather than return lists of events
because a protocol may change how the following bytes are read from inside
the callback for one message (a line protocol switching to raw data for an
SMTP ``DATA`` body, a pause until the application catches up); a callback
sees that change take effect at the very next byte, and costs one call per
message.

Every decoder here keeps asyncio's promises about ordering: messages are
delivered in order, never re-entrantly (bytes fed from inside a callback are
queued behind what is already buffered), and nothing is delivered while
paused or once closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from torsion.errors import FramingError, StringTooLongError
from torsion.internet import Protocol

__all__ = []

_log = logging.getLogger("torsion.protocols")

# How much a paused receiver may hold. Pausing also pauses the transport's
# reading, so what is held is what had already been read (one read is at most
# 256 KiB on both loops); more means the transport ignored the pause.
PAUSED_BUFFER_LIMIT = 4 * 1024 * 1024


class Decoder:
    """The skeleton of a framing decoder: buffering, pausing, closing.

    Subclasses implement ``_deliver``, which delivers what the buffer holds
    until it runs out of complete messages or is paused or closed.

    Attributes:
        stop_when: Called after each message delivered; once it returns
            true the decoder closes and delivers nothing more. A protocol
            passes its transport's ``is_closing``, so that closing the
            connection from a callback ends delivery at once.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._paused = False
        self._closed = False
        self._delivering = False
        self.stop_when: Callable[[], bool] | None = None

    @property
    def paused(self) -> bool:
        """Whether delivery is paused (``pause()``)."""
        return self._paused

    @property
    def closed(self) -> bool:
        """Whether the decoder was closed and will deliver nothing more."""
        return self._closed

    @property
    def receiving(self) -> bool:
        """Whether messages are delivered as bytes come (neither paused nor closed)."""
        return not (self._paused or self._closed)

    @property
    def buffered(self) -> int:
        """How many bytes are held and not delivered yet."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received; complete messages are delivered before it returns.

        Called from inside a callback, it only queues the bytes: they are
        read after everything buffered before them. Ignored once closed.

        Args:
            data: The next bytes of the stream, in any split.
        """
        if self._closed:
            return
        if self._buffer:
            self._buffer += data
        else:
            self._buffer = data
        if not (self._delivering or self._paused):
            self._deliver()

    def pause(self) -> None:
        """Deliver nothing until ``resume()``; bytes fed meanwhile are held.

        Called from a callback, delivery stops as soon as that callback
        returns.
        """
        self._paused = True

    def resume(self) -> None:
        """Deliver again, starting with what was held while paused."""
        if self._paused:
            self._paused = False
            self._kick()

    def close(self) -> None:
        """Drop what is held and deliver nothing more, ever."""
        self._closed = True
        self._buffer = b""

    def _kick(self) -> None:
        if not (self._delivering or self._paused or self._closed):
            self._deliver()

    def _deliver(self) -> None:
        raise NotImplementedError

    def _stopped(self) -> bool:
        """Whether delivery must end now; closes the decoder if ``stop_when`` says so."""
        if self._paused or self._closed:
            return True
        stop_when = self.stop_when
        if stop_when is not None and stop_when():
            self.close()
            return True
        return False


class StringDecoder(Decoder):
    """What the length-framed decoders share: the limit, payloads across reads.

    A string whose announced length is over ``max_length`` goes to
    ``length_limit_exceeded(length)`` as soon as its length is read; its
    bytes are then dropped as they arrive, never held, and decoding goes on
    after it. Without that callback, ``receive_data`` raises
    ``StringTooLongError`` instead (the strings before it were delivered).

    Args:
        string_received: Called with each string.
        length_limit_exceeded: Called with the length of a string too long.
        max_length: The longest string accepted, in bytes.
    """

    def __init__(
        self,
        string_received: Callable[[bytes], object],
        *,
        length_limit_exceeded: Callable[[int], object] | None = None,
        max_length: int,
    ) -> None:
        super().__init__()
        self._on_string = string_received
        self._on_too_long = length_limit_exceeded
        self._max_length = check_max_length(max_length)
        # Payload bytes still to come, or -1 while reading a string's header.
        self._need = -1
        # The payload so far, when it is spread over several reads.
        self._parts: list[bytes] = []
        # Dropping the payload of a string that was too long.
        self._skip = False

    @property
    def max_length(self) -> int:
        """The longest string accepted; a new limit applies from the next string on."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self._max_length = check_max_length(value)

    @property
    def buffered(self) -> int:
        """How many bytes are held and not delivered yet."""
        return len(self._buffer) + sum(map(len, self._parts))

    def close(self) -> None:
        """Drop what is held and deliver nothing more, ever."""
        super().close()
        self._parts = []

    def _deliver(self) -> None:
        self._delivering = True
        try:
            while not (self._paused or self._closed):
                buf = self._buffer
                if not buf:
                    break
                self._buffer = b""
                if not self._parse(buf):
                    break
        finally:
            self._delivering = False

    def _parse(self, buf: bytes) -> bool:
        """Deliver what ``buf`` holds, keeping the rest in front of ``_buffer``.

        Returns:
            Whether callbacks fed more bytes meanwhile (they follow ``buf``).
        """
        raise NotImplementedError

    def _take(self, buf: bytes, start: int, stop: int) -> bytes:
        """Return the payload that ends with ``buf[start:stop]``."""
        if not self._parts:
            return buf[start:stop]
        self._parts.append(buf[start:stop])
        payload = b"".join(self._parts)
        self._parts = []
        return payload

    def _too_long(self, length: int) -> bool:
        """Start dropping a string too long; return whether to go on decoding."""
        self._skip = True
        on_too_long = self._on_too_long
        if on_too_long is None:
            raise StringTooLongError(length, self._max_length)
        on_too_long(length)
        return not self._stopped()


def check_max_length(max_length: int) -> int:
    """Return ``max_length`` if it is a valid limit (an int >= 0).

    Raises:
        ValueError: It is not.
    """
    if not isinstance(max_length, int) or max_length < 0:
        raise ValueError(f"max_length must be an int >= 0, not {max_length!r}")
    return max_length


D = TypeVar("D", bound=Decoder)
S = TypeVar("S", bound=StringDecoder)


class DecodingProtocol(Protocol, Generic[D]):
    """The glue between a connection and a decoder, shared by the framings.

    Settings named in ``_settings`` (``max_length``, ``delimiter``) may be
    given as class attributes in a subclass, as in ``max_length = 1024``;
    they become the defaults the decoder starts with, and assigning to them
    on an instance changes the decoder's setting from the next byte on.
    """

    _settings: tuple[str, ...] = ("max_length",)
    _decoder: D | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls._settings:
            value = cls.__dict__.get(name)
            if value is not None and not isinstance(value, property):
                # A plain class attribute would hide the property that keeps
                # the decoder in step: keep it as the default instead.
                setattr(cls, f"_default_{name}", value)
                delattr(cls, name)

    def _make_decoder(self) -> D:
        raise NotImplementedError

    def _get_decoder(self) -> D:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = self._make_decoder()
        return decoder

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to the decoder, which calls back once per message."""
        decoder = self._decoder or self._get_decoder()
        # The transport may change (start_tls), so it is looked up per read.
        decoder.stop_when = self.transport.is_closing
        try:
            decoder.receive_data(data)
        except FramingError as exc:
            self._framing_error(exc)
            return
        if decoder._paused and decoder.buffered > PAUSED_BUFFER_LIMIT:
            # Not the peer's doing: the transport went on reading.
            self._framing_error(
                FramingError(f"more than {PAUSED_BUFFER_LIMIT} bytes arrived while paused"),
                level=logging.WARNING,
            )

    @property
    def receiving_paused(self) -> bool:
        """Whether delivery is paused by ``pause_receiving()``."""
        return self._get_decoder().paused

    def pause_receiving(self) -> None:
        """Deliver no more messages until ``resume_receiving()``.

        Called from a callback, nothing more is delivered once it returns.
        The transport's reading is paused too, so that what is held stays
        bounded: the rest of the current read, at most.
        """
        self._get_decoder().pause()
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_receiving(self) -> None:
        """Deliver again: first what was held, then the transport's reads."""
        decoder = self._get_decoder()
        if not decoder.paused:
            return
        decoder.stop_when = self.transport.is_closing
        try:
            decoder.resume()
        except FramingError as exc:
            self._framing_error(exc)
            return
        if decoder.receiving and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: what was held is dropped."""
        if self._decoder is not None:
            self._decoder.close()
        super().connection_lost(exc)

    def _framing_error(self, exc: FramingError, *, level: int = logging.INFO) -> None:
        """The peer broke the framing: log it once, without a traceback, and close."""
        self._get_decoder().close()
        peer = self.transport.get_extra_info("peername")
        _log.log(level, "Closing the connection from %s: %s", peer, exc)
        self.transport.close()


class StringProtocol(DecodingProtocol[S]):
    """The glue the length-framed receivers share (netstrings, length prefixes).

    Override ``string_received``; send with ``send_string``. Strings are
    delivered in order, one call each, until the transport starts closing.

    Attributes:
        max_length: The longest string accepted; a longer one goes to
            ``length_limit_exceeded``. Set it as a class attribute, or on
            an instance at any time (from the next string on).
    """

    _default_max_length = 99_999

    @property
    def max_length(self) -> int:
        """The longest string accepted."""
        if self._decoder is None:
            return self._default_max_length
        return self._decoder.max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self._get_decoder().max_length = value

    def string_received(self, string: bytes) -> None:
        """Called with each string received. Override it."""

    def length_limit_exceeded(self, length: int) -> None:
        """Called when the peer announces a string over ``max_length``; closes.

        Override it to answer otherwise; if the connection stays open, the
        string's bytes are dropped as they arrive and the next string is
        read as usual.

        Args:
            length: The length announced.
        """
        self._framing_error(StringTooLongError(length, self.max_length))

    def send_string(self, string: bytes) -> None:
        """Write ``string``, framed."""
        raise NotImplementedError
