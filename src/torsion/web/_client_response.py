"""The HTTP client's response: status and headers at once, the body read or streamed.

The body arrives from the connection into a bounded buffer; ``read()`` takes
it whole within a bound, ``iter_bytes()`` piece by piece (the connection
reads from the network only as fast as the pieces are taken), and both
decode it when the client asked for compressed content. Reading gives up
after the client's timeout without data, closing the connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from torsion.defer import Deferred, ensure_deferred
from torsion.defer import timeout as deadline
from torsion.internet import Clock
from torsion.web._client_decoding import ContentDecoder
from torsion.web._client_errors import ResponseTooLargeError
from torsion.web._client_h2 import H2Exchange
from torsion.web._client_http11 import Exchange, ResponseStarted

__all__ = ["Response"]

# Bytes of a redirect's own body read so that its connection can be reused;
# a longer body closes the connection instead.
_DRAIN_LIMIT = 64 * 1024


class Response:
    """An HTTP response: its status and headers at once, its body to read or stream.

    Read the body with ``read()`` or ``iter_bytes()``, or ``close()`` it: the
    connection goes back to the pool only once the body was read to its end.

    Attributes:
        code: The status code.
        phrase: The reason phrase.
        version: "HTTP/1.1", "HTTP/1.0" or "HTTP/2".
        headers: The header fields (``Content-Encoding`` kept even when the
            body is decoded).
        url: The URL that answered (after redirects).
        method: The method of the request that got this response.
        history: The URLs asked before this one, when redirects were followed.
        alpn: The protocol TLS agreed on with ALPN, if any.
    """

    def __init__(
        self,
        *,
        head: ResponseStarted,
        exchange: Exchange | H2Exchange,
        url: str,
        method: str,
        decoder: ContentDecoder | None,
        max_body_size: int | None,
        read_timeout: float | None,
        clock: Clock,
        alpn: str | None,
    ) -> None:
        self.code = head.code
        self.phrase = head.phrase
        self.version = head.version
        self.headers = head.headers
        self.url = url
        self.method = method
        self.history: list[str] = []
        self.alpn = alpn
        self._exchange = exchange
        self._decoder = decoder
        self._max_body_size = max_body_size
        self._read_timeout = read_timeout
        self._clock = clock
        self._reading = False
        self._consumed = False

    def __repr__(self) -> str:
        return f"<Response {self.code} {self.phrase} from {self.url}>"

    @property
    def body_done(self) -> bool:
        """Whether the whole body has arrived (it may still be unread)."""
        return self._exchange.body.done

    def read(self, max_size: int | None = None) -> Deferred[bytes]:
        """Read the whole body (decoded).

        Args:
            max_size: The most bytes accepted (the client's
                ``max_body_size`` if None).

        Returns:
            A Deferred of the body; it fails with ``ResponseTooLargeError``
            past ``max_size`` (the connection is then closed),
            ``TimeoutError`` when no data came for the client's timeout,
            or ``BadResponseError`` when the body breaks off.
        """
        limit = max_size if max_size is not None else self._max_body_size
        return ensure_deferred(self._read(limit))

    async def _read(self, limit: int | None) -> bytes:
        declared = self.headers.get(b"content-length")
        if (
            limit is not None
            and self._decoder is None
            and declared is not None
            and declared.isdigit()
            and int(declared) > limit
        ):
            self.close()
            raise ResponseTooLargeError(f"the body is over {limit} bytes", limit)
        parts: list[bytes] = []
        size = 0
        async for piece in self._pieces(limit):
            size += len(piece)
            if limit is not None and size > limit:
                self.close()
                raise ResponseTooLargeError(f"the body is over {limit} bytes", limit)
            parts.append(piece)
        return b"".join(parts)

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """Stream the body (decoded), piece by piece, as it arrives.

        The connection reads from the network only as fast as the pieces are
        taken. The decoded body is bounded by the client's ``max_body_size``
        when it is compressed (decompression bombs); a body as sent is not.
        A loop left early should ``close()`` the response (or ``aclose()``
        the iterator): until then its connection stays busy.
        """
        return self._pieces(self._max_body_size if self._decoder is not None else None)

    async def _pieces(self, decoded_limit: int | None) -> AsyncIterator[bytes]:
        if self._reading or self._consumed:
            raise RuntimeError("the response body is read once, by one reader")
        self._reading = True
        decoder = self._decoder
        if decoder is not None and decoded_limit is not None:
            decoder.max_size = decoded_limit
        body = self._exchange.body
        finished = False
        try:
            while True:
                waiting = body.receive()
                if self._read_timeout is not None and not waiting.called:
                    waiting = deadline(waiting, self._read_timeout, self._clock)
                piece = await waiting
                if not piece:
                    if decoder is not None:
                        decoder.flush()
                    finished = True
                    return
                if decoder is not None:
                    piece = decoder.decode(piece)
                    if not piece:
                        continue
                yield piece
        finally:
            self._reading = False
            self._consumed = True
            if not finished:
                self.close()

    def close(self) -> None:
        """Drop the rest of the body; the connection is closed if it had not ended."""
        self._consumed = True
        self._exchange.body.close()

    async def _drain(self) -> None:
        """Read and drop a short body so that its connection can be reused."""
        body = self._exchange.body
        size = 0
        while not self._consumed:
            if not body.done and size > _DRAIN_LIMIT:
                break
            waiting = body.receive()
            if self._read_timeout is not None and not waiting.called:
                waiting = deadline(waiting, self._read_timeout, self._clock)
            piece = await waiting
            if not piece:
                break
            size += len(piece)
        self.close()
