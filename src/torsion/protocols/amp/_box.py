"""AMP boxes on the wire: the sans-IO codec, with no sockets and no loop.

A box is a sequence of key/value pairs. Each key is a 16-bit big-endian
length (1 to 255) and that many bytes; each value is a 16-bit length (0 to
65,535) and that many bytes; a zero length where a key is due ends the box::

    00 04 "_ask" 00 01 "1" 00 08 "_command" 00 03 "Sum" 00 01 "a" 00 01 "1" 00 00

``BoxParser`` turns bytes, split anywhere, into boxes (``dict[bytes, bytes]``
in wire order); ``encode_box`` turns a box into bytes. A few keys are AMP's
own: ``_command`` names the command and ``_ask`` carries the tag of a call
that wants an answer; an answer carries that tag in ``_answer``, an error
answer in ``_error`` with ``_error_code`` and ``_error_description``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final, TypeAlias

from torsion.protocols.amp._errors import AmpProtocolError, TooLongError

__all__ = [
    "ANSWER",
    "ASK",
    "COMMAND",
    "DEFAULT_MAX_BOX_SIZE",
    "DEFAULT_MAX_KEYS",
    "END",
    "ERROR",
    "ERROR_CODE",
    "ERROR_DESCRIPTION",
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "UNHANDLED_ERROR_CODE",
    "UNKNOWN_ERROR_CODE",
    "Box",
    "BoxParser",
    "encode_box",
    "encode_pair",
    "key_prefix",
]

Box: TypeAlias = dict[bytes, bytes]
"""One AMP box: keys to values, both bytes, in the order they were read."""

ASK: Final = b"_ask"
ANSWER: Final = b"_answer"
COMMAND: Final = b"_command"
ERROR: Final = b"_error"
ERROR_CODE: Final = b"_error_code"
ERROR_DESCRIPTION: Final = b"_error_description"
UNKNOWN_ERROR_CODE: Final = b"UNKNOWN"
UNHANDLED_ERROR_CODE: Final = b"UNHANDLED"

MAX_KEY_LENGTH: Final = 255
MAX_VALUE_LENGTH: Final = 65535
END: Final = b"\x00\x00"

# Bounds on what one box may hold, so that a peer cannot make us buffer
# without limit: the wire format bounds each pair, not their number.
DEFAULT_MAX_KEYS: Final = 1024
DEFAULT_MAX_BOX_SIZE: Final = 1 << 20

_pack_length = struct.Struct(">H").pack


def key_prefix(key: bytes) -> bytes:
    """Return ``key`` with its length before it, as it goes on the wire.

    Raises:
        TooLongError: The key is empty or longer than 255 bytes.
    """
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise TooLongError(key, len(key), is_key=True)
    return _pack_length(len(key)) + key


def encode_pair(key: bytes, value: bytes) -> bytes:
    """Return one key/value pair as it goes on the wire.

    Raises:
        TooLongError: The key is empty or longer than 255 bytes, or the value
            longer than 65,535.
    """
    if len(value) > MAX_VALUE_LENGTH:
        raise TooLongError(key, len(value), is_key=False)
    return key_prefix(key) + _pack_length(len(value)) + value


def encode_box(box: Mapping[bytes, bytes]) -> bytes:
    """Return ``box`` as it goes on the wire, its end marker included.

    Every key and value is checked before any byte is produced, so a box that
    cannot be sent raises and nothing of it is written.

    Raises:
        TooLongError: A key is empty or longer than 255 bytes, or a value is
            longer than 65,535.
    """
    parts = [encode_pair(key, value) for key, value in box.items()]
    parts.append(END)
    return b"".join(parts)


class BoxParser:
    """Turns bytes, however they are split, into AMP boxes.

    Feed it what the connection delivers; it returns each box as soon as its
    end marker arrives, and keeps what belongs to the next. It copies only
    the keys and values out of the data, never the data left over per box:
    a chunk holding many boxes is read where it lies.

    A box that breaks the wire format or the bounds raises
    ``AmpProtocolError``, whose ``boxes`` are those the same data completed
    before it. The parser is then broken, and every later call raises the
    error again (with no boxes): the stream cannot be resynchronised.

    Args:
        max_keys: The most keys one box may hold.
        max_box_size: The most bytes one box may take on the wire.
    """

    __slots__ = (
        "_box",
        "_box_size",
        "_error",
        "_key",
        "_need",
        "_tail",
        "_value",
        "max_box_size",
        "max_keys",
    )

    def __init__(
        self, *, max_keys: int = DEFAULT_MAX_KEYS, max_box_size: int = DEFAULT_MAX_BOX_SIZE
    ) -> None:
        if max_keys < 1 or max_box_size < 2:
            raise ValueError("a box must be allowed at least one key and two bytes")
        self.max_keys = max_keys
        self.max_box_size = max_box_size
        # The box being read, and its bytes received in earlier calls.
        self._box: Box = {}
        self._box_size = 0
        # Bytes of an unfinished length or key, kept for the next call
        # (fewer than 2 + 255 + 2).
        self._tail = b""
        # A value longer than what has arrived: its key, the bytes so far
        # and how many it needs.
        self._key = b""
        self._value: bytearray | None = None
        self._need = 0
        self._error: AmpProtocolError | None = None

    @property
    def pending(self) -> bool:
        """Whether part of a box has been received and not its end."""
        return bool(self._box or self._tail or self._value is not None)

    def receive_data(self, data: bytes) -> list[Box]:
        """Take the next bytes of the stream; return the boxes they completed.

        Raises:
            AmpProtocolError: The stream broke the wire format or the bounds
                (now or in an earlier call).
        """
        if self._error is not None:
            raise AmpProtocolError(str(self._error))
        boxes: list[Box] = []
        try:
            self._receive(data, boxes)
        except AmpProtocolError as exc:
            self._error = exc
            self._box = {}
            self._tail = b""
            self._value = None
            exc.boxes = boxes
            raise
        return boxes

    def _receive(self, data: bytes, boxes: list[Box]) -> None:
        if self._value is not None:
            rest = self._fill_value(data)
            if rest is None:
                return
            data = rest
        elif self._tail:
            data = self._tail + data
            self._tail = b""
        box = self._box
        max_keys = self.max_keys
        pos = 0
        start = 0  # where the current box began in ``data``
        end = len(data)
        while pos + 2 <= end:
            # Lengths are read by indexing: as fast as struct here, and
            # native code when the module is compiled with mypyc.
            key_length = data[pos] << 8 | data[pos + 1]
            if key_length == 0:
                pos += 2
                if self._box_size + pos - start > self.max_box_size:
                    raise self._too_big()
                boxes.append(box)
                box = {}
                self._box_size = 0
                start = pos
                continue
            if key_length > MAX_KEY_LENGTH:
                raise AmpProtocolError(
                    f"the peer sent a key {key_length} bytes long; AMP allows 1 to 255"
                )
            value_at = pos + 2 + key_length
            if value_at + 2 > end:
                break
            value_length = data[value_at] << 8 | data[value_at + 1]
            stop = value_at + 2 + value_length
            key = data[pos + 2 : value_at]
            if key in box:
                raise AmpProtocolError(f"the peer sent the key {key!r} twice in one box")
            if len(box) >= max_keys:
                raise AmpProtocolError(f"the peer sent a box of more than {max_keys} keys")
            if stop > end:
                # A value that has not all arrived: gather it apart, so
                # that a long value fed in small pieces is not copied over
                # and over.
                self._box = box
                self._box_size += stop - start
                if self._box_size > self.max_box_size:
                    raise self._too_big()
                self._key = key
                self._value = bytearray(data[value_at + 2 :])
                self._need = value_length
                return
            box[key] = data[value_at + 2 : stop]
            pos = stop
        self._box = box
        self._box_size += pos - start
        if self._box_size > self.max_box_size:
            raise self._too_big()
        if pos < end:
            self._tail = data[pos:]

    def _fill_value(self, data: bytes) -> bytes | None:
        """Add to the value being gathered; return the data after it, None if unfinished."""
        value = self._value
        assert value is not None
        missing = self._need - len(value)
        if len(data) < missing:
            value += data
            return None
        value += memoryview(data)[:missing]
        self._box[self._key] = bytes(value)
        self._value = None
        self._key = b""
        return data[missing:]

    def _too_big(self) -> AmpProtocolError:
        return AmpProtocolError(f"the peer sent a box of more than {self.max_box_size} bytes")
