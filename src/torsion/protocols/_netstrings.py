"""Netstrings: a sans-IO decoder, an encoder and a protocol.

A netstring is a string's length in ASCII decimal, a colon, the string and
a comma: ``b"5:hello,"`` (D. J. Bernstein, https://cr.yp.to/proto/netstrings.txt).
The length has no leading zeros (``0`` itself is fine) and the comma is
required; anything else is not a netstring, and since nothing after it can
be trusted to be framed, it ends the stream: the decoder raises
``NetstringParseError`` and closes, and ``NetstringReceiver`` logs one line
and closes the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from torsion.errors import NetstringParseError
from torsion.protocols._framing import (
    StringDecoder,
    StringProtocol,
)

__all__ = ["NetstringDecoder", "NetstringReceiver", "encode_netstring"]

DEFAULT_MAX_LENGTH = 99_999
# A length of more digits than this is refused outright, so that a peer
# cannot have digits buffered (or a huge number parsed) without end.
_MAX_DIGITS = 20
_COMMA = ord(",")
_ZERO = ord("0")


def encode_netstring(string: bytes) -> bytes:
    """Return ``string`` as a netstring: ``b"5:hello,"`` for ``b"hello"``."""
    return b"%d:%b," % (len(string), string)


class NetstringDecoder(StringDecoder):
    """Reads a stream of netstrings; no I/O.

    Feed it with ``receive_data``; it calls ``string_received(string)`` for
    each netstring, in order. Limits and pausing are as described in
    ``StringDecoder`` and ``Decoder``. Bytes that are not a netstring make
    ``receive_data`` raise ``NetstringParseError`` as soon as they are seen
    (the strings before them were delivered), and the decoder closes.

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
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        super().__init__(
            string_received, length_limit_exceeded=length_limit_exceeded, max_length=max_length
        )

    def _parse(self, buf: bytes) -> bool:
        pos = 0
        end = len(buf)
        on_string = self._on_string
        try:
            while not (self._paused or self._closed):
                need = self._need
                if need < 0:
                    colon = buf.find(b":", pos, pos + _MAX_DIGITS + 1)
                    if colon < 0:
                        self._check_partial_length(buf[pos : pos + _MAX_DIGITS + 1])
                        break
                    length = self._parse_length(buf[pos:colon])
                    pos = colon + 1
                    self._need = length
                    if length > self._max_length and not self._too_long(length):
                        break
                    continue
                comma = pos + need
                if comma >= end:
                    # The payload (or its comma) is still to come: keep what is here.
                    if pos < end:
                        if not self._skip:
                            self._parts.append(buf[pos:])
                        self._need = comma - end
                        pos = end
                    break
                if buf[comma] != _COMMA:
                    self._fail("a netstring's payload is not followed by ','")
                string = self._take(buf, pos, comma)
                pos = comma + 1
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

    def _parse_length(self, digits: bytes) -> int:
        if not digits.isdigit() or (digits[0] == _ZERO and len(digits) > 1):
            self._fail(f"bad netstring length {digits!r}")
        return int(digits)

    def _check_partial_length(self, digits: bytes) -> None:
        """Fail at once if the start of a length cannot begin a netstring."""
        if not digits:
            return
        if len(digits) > _MAX_DIGITS:
            self._fail(f"netstring length longer than {_MAX_DIGITS} digits")
        if not digits.isdigit() or (digits[0] == _ZERO and len(digits) > 1):
            self._fail(f"bad netstring length {digits!r}")

    def _fail(self, problem: str) -> NoReturn:
        self.close()
        raise NetstringParseError(problem)


class NetstringReceiver(StringProtocol[NetstringDecoder]):
    """A protocol that reads and writes its connection as netstrings.

    Override ``string_received``; send with ``send_string``. A string over
    ``max_length`` (default 99,999 bytes) goes to ``length_limit_exceeded``,
    which closes the connection unless overridden; bytes that are not a
    netstring close it too, with one line in the log at INFO level.
    ``pause_receiving()`` / ``resume_receiving()`` hold delivery.
    """

    def _make_decoder(self) -> NetstringDecoder:
        return NetstringDecoder(
            self.string_received,
            length_limit_exceeded=self.length_limit_exceeded,
            max_length=self._default_max_length,
        )

    def send_string(self, string: bytes) -> None:
        """Write ``string`` as a netstring."""
        self.transport.write(encode_netstring(string))
