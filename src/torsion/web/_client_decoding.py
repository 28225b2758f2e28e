"""Content decoding for the HTTP client: gzip, deflate and brotli, bounded.

A response's ``Content-Encoding`` lists the codings applied in order (RFC
9110 section 8.4); ``decoder_for`` undoes them in reverse. The decoded size
is bounded, and the bound is enforced while inflating, never after: a few
kilobytes of gzip can inflate to gigabytes (a decompression bomb), so each
step asks zlib for at most what is still allowed and stops there.

``br`` is decoded when the ``brotli`` module is importable, and only then
offered in ``Accept-Encoding``. A coding the client does not know leaves the
body as it came (with its ``Content-Encoding`` intact), for the caller to
deal with.
"""

from __future__ import annotations

import importlib
import sys
import zlib
from collections.abc import Callable
from typing import Any

from torsion.web._client_errors import BadResponseError, ResponseTooLargeError
from torsion.web._headers import Headers

__all__ = ["ACCEPT_ENCODING", "ContentDecoder", "decoder_for"]

_brotli: Any
try:  # pragma: no cover - depends on what is installed
    _brotli = importlib.import_module("brotli")
except ImportError:  # pragma: no cover
    _brotli = None

ACCEPT_ENCODING = b"gzip, deflate, br" if _brotli is not None else b"gzip, deflate"
"""The ``Accept-Encoding`` the client sends when it decodes content."""

# Each step inflates at most this much at a time, so no single call holds
# much more than the bound allows.
_STEP = 64 * 1024


class _Zlib:
    """One zlib stream (gzip or deflate), inflated within a budget."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._started = False
        self._raw_fallback = wbits == zlib.MAX_WBITS

    def decode(self, data: bytes, budget: int) -> bytes:
        out: list[bytes] = []
        produced = 0
        while True:
            limit = min(_STEP, budget - produced + 1)
            try:
                piece = self._inflate.decompress(data, limit)
            except zlib.error as exc:
                if self._raw_fallback and not self._started:
                    # Some servers send raw deflate (RFC 1951) for "deflate",
                    # which RFC 9110 section 8.4.1.2 says is zlib (RFC 1950).
                    self._raw_fallback = False
                    self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise BadResponseError(f"the body does not decode: {exc}") from exc
            self._started = True
            produced += len(piece)
            if produced > budget:
                raise _OverBudget
            out.append(piece)
            if self._inflate.eof:
                rest = self._inflate.unused_data
                if rest and self._wbits == 31:
                    # Another gzip member follows (RFC 1952 section 2.2).
                    self._inflate = zlib.decompressobj(31)
                    data = rest
                    continue
                break
            data = self._inflate.unconsumed_tail
            # A full piece may leave output inside zlib even with no input left.
            if not data and len(piece) < limit:
                break
        return b"".join(out)

    def flush(self, budget: int) -> bytes:
        if self._started and not self._inflate.eof:
            raise BadResponseError("the compressed body ended early")
        return b""


class _Brotli:
    def __init__(self) -> None:
        self._decompress = _brotli.Decompressor()
        self._started = False

    def decode(self, data: bytes, budget: int) -> bytes:
        self._started = self._started or bool(data)
        try:
            # The output buffer stops growing past the budget: a bomb is
            # found out after budget + 1 bytes, not after it went off.
            out: bytes = self._decompress.process(data, output_buffer_limit=budget + 1)
        except _brotli.error as exc:
            raise BadResponseError(f"the body does not decode: {exc}") from exc
        if len(out) > budget:
            raise _OverBudget
        return out

    def flush(self, budget: int) -> bytes:
        if self._started and not self._decompress.is_finished():
            raise BadResponseError("the compressed body ended early")
        return b""


class _OverBudget(Exception):  # noqa: N818 - internal signal, never escapes
    pass


_CODINGS: dict[bytes, Callable[[], _Zlib | _Brotli]] = {
    b"gzip": lambda: _Zlib(31),
    b"x-gzip": lambda: _Zlib(31),
    b"deflate": lambda: _Zlib(zlib.MAX_WBITS),
}
if _brotli is not None:
    _CODINGS[b"br"] = _Brotli


class ContentDecoder:
    """Undoes a response's content codings, within a bound on the decoded size.

    Args:
        codings: The codings as listed in ``Content-Encoding`` (applied in
            that order; undone in reverse).
        max_size: The most decoded bytes allowed.
    """

    def __init__(self, codings: list[bytes], max_size: int) -> None:
        self._steps = [_CODINGS[coding]() for coding in reversed(codings)]
        self.max_size = max_size
        self.decoded = 0

    def decode(self, data: bytes) -> bytes:
        """Decode the next piece of the body.

        Raises:
            ResponseTooLargeError: The decoded body would exceed ``max_size``.
            BadResponseError: The bytes do not decode.
        """
        budget = self.max_size - self.decoded
        try:
            for step in self._steps:
                data = step.decode(data, budget)
        except _OverBudget:
            raise ResponseTooLargeError(
                f"the decoded body is over {self.max_size} bytes", self.max_size
            ) from None
        self.decoded += len(data)
        return data

    def flush(self) -> bytes:
        """Check the body ended where its coding says it does.

        Raises:
            BadResponseError: A compressed stream was cut short.
        """
        for step in self._steps:
            step.flush(self.max_size - self.decoded)
        return b""


def decoder_for(headers: Headers, max_size: int | None) -> ContentDecoder | None:
    """Return a decoder for a response's ``Content-Encoding``, or None.

    None when the body is not encoded (or only ``identity``), and when a
    coding is one this client does not know (the body then stays encoded).
    """
    values = headers.get_all(b"content-encoding")
    if not values:
        return None
    codings = [
        token
        for value in values
        for token in (part.strip().lower() for part in value.split(b","))
        if token and token != b"identity"
    ]
    if not codings or any(coding not in _CODINGS for coding in codings):
        return None
    return ContentDecoder(codings, sys.maxsize if max_size is None else max_size)
