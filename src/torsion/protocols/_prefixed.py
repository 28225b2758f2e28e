"""Length-prefixed strings: a sans-IO decoder, an encoder and the protocols.

Each string is sent after its length as an unsigned big-endian integer of
1, 2 or 4 bytes (``Int8StringReceiver``, ``Int16StringReceiver``,
``Int32StringReceiver``). There is nothing to get wrong in such a stream
but the length, so the only check is the receiver's ``max_length``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import ClassVar

from torsion.protocols._framing import StringDecoder, StringProtocol

__all__ = [
    "Int8StringReceiver",
    "Int16StringReceiver",
    "Int32StringReceiver",
    "LengthPrefixedDecoder",
    "encode_length_prefixed",
]

DEFAULT_MAX_LENGTH = 99_999
_FORMATS = {1: struct.Struct("!B"), 2: struct.Struct("!H"), 4: struct.Struct("!I")}


def _prefix_format(prefix_length: int) -> struct.Struct:
    try:
        return _FORMATS[prefix_length]
    except KeyError:
        raise ValueError(f"prefix_length must be 1, 2 or 4, not {prefix_length!r}") from None


def encode_length_prefixed(string: bytes, *, prefix_length: int = 4) -> bytes:
    """Return ``string`` after its length, big-endian in ``prefix_length`` bytes.

    Raises:
        ValueError: ``string`` is too long for the prefix (256 bytes or more
            for a 1-byte prefix, 65,536 or more for 2 bytes, 4 GiB for 4),
            or ``prefix_length`` is not 1, 2 or 4.
    """
    prefix = _prefix_format(prefix_length)
    if len(string) >> (8 * prefix_length):
        raise ValueError(
            f"a string of {len(string)} bytes is too long for a {prefix_length}-byte length"
        )
    return prefix.pack(len(string)) + string


class LengthPrefixedDecoder(StringDecoder):
    """Reads a stream of length-prefixed strings; no I/O.

    Feed it with ``receive_data``; it calls ``string_received(string)`` for
    each string, in order. Limits and pausing are as described in
    ``StringDecoder`` and ``Decoder``.

    Args:
        string_received: Called with each string.
        prefix_length: The size of the length prefix: 1, 2 or 4 bytes.
        length_limit_exceeded: Called with the length of a string too long.
        max_length: The longest string accepted, in bytes.
    """

    def __init__(
        self,
        string_received: Callable[[bytes], object],
        *,
        prefix_length: int = 4,
        length_limit_exceeded: Callable[[int], object] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        super().__init__(
            string_received, length_limit_exceeded=length_limit_exceeded, max_length=max_length
        )
        self._unpack = _prefix_format(prefix_length).unpack_from
        self._prefix_length = prefix_length

    @property
    def prefix_length(self) -> int:
        """The size of the length prefix, in bytes."""
        return self._prefix_length

    def _parse(self, buf: bytes) -> bool:
        pos = 0
        end = len(buf)
        size = self._prefix_length
        unpack = self._unpack
        on_string = self._on_string
        try:
            while not (self._paused or self._closed):
                need = self._need
                if need < 0:
                    if end - pos < size:
                        break
                    (length,) = unpack(buf, pos)
                    pos += size
                    self._need = length
                    if length > self._max_length and not self._too_long(length):
                        break
                    continue
                stop = pos + need
                if stop > end:
                    # The payload is still to come: keep what is here.
                    if pos < end:
                        if not self._skip:
                            self._parts.append(buf[pos:])
                        self._need = stop - end
                        pos = end
                    break
                string = self._take(buf, pos, stop)
                pos = stop
                self._need = -1
                if self._skip:
                    self._skip = False
                    continue
                on_string(string)
                stop_when = self.stop_when
                if stop_when is not None and stop_when():
                    self.close()
        finally:
            fed = self._buffer
            if pos < end and not self._closed:
                self._buffer = buf[pos:] + fed
        return bool(fed)


class _IntStringReceiver(StringProtocol[LengthPrefixedDecoder]):
    """Strings after a big-endian length of ``prefix_length`` bytes."""

    prefix_length: ClassVar[int] = 4

    def _make_decoder(self) -> LengthPrefixedDecoder:
        return LengthPrefixedDecoder(
            self.string_received,
            prefix_length=self.prefix_length,
            length_limit_exceeded=self.length_limit_exceeded,
            max_length=self._default_max_length,
        )

    def send_string(self, string: bytes) -> None:
        """Write ``string`` after its length.

        Raises:
            ValueError: ``string`` is too long for the prefix.
        """
        self.transport.write(encode_length_prefixed(string, prefix_length=self.prefix_length))


class Int8StringReceiver(_IntStringReceiver):
    """A protocol that reads and writes strings after a 1-byte length.

    Override ``string_received``; send with ``send_string``. Strings are at
    most 255 bytes (and ``max_length``, 255 by default); a longer announced
    length goes to ``length_limit_exceeded``, which closes the connection
    unless overridden. ``pause_receiving()`` / ``resume_receiving()`` hold
    delivery.
    """

    prefix_length = 1
    _default_max_length = 0xFF


class Int16StringReceiver(_IntStringReceiver):
    """A protocol that reads and writes strings after a 2-byte big-endian length.

    As ``Int8StringReceiver``, with strings of up to 65,535 bytes (and
    ``max_length``, 65,535 by default).
    """

    prefix_length = 2
    _default_max_length = 0xFFFF


class Int32StringReceiver(_IntStringReceiver):
    """A protocol that reads and writes strings after a 4-byte big-endian length.

    As ``Int8StringReceiver``, with strings of up to ``max_length`` bytes,
    99,999 by default: raise it for larger messages.
    """

    prefix_length = 4
