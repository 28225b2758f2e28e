"""Content decoding for the HTTP client: codings, their order, and the bound."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.web import Headers
from torsion.web._client_decoding import ACCEPT_ENCODING, ContentDecoder, decoder_for
from torsion.web._client_errors import BadResponseError, ResponseTooLargeError


def decode_in_pieces(decoder: ContentDecoder, data: bytes, size: int) -> bytes:
    out = b"".join(decoder.decode(data[i : i + size]) for i in range(0, len(data), size))
    return out + decoder.flush()


def headers(coding: str) -> Headers:
    return Headers([("Content-Encoding", coding)])


def test_accept_encoding_offers_what_can_be_decoded() -> None:
    assert ACCEPT_ENCODING == b"gzip, deflate, br"  # brotli is in the web extra


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=600))
def test_brotli_in_any_pieces(body: bytes, size: int) -> None:
    decoder = decoder_for(headers("br"), 10_000)
    assert decoder is not None
    assert decode_in_pieces(decoder, brotli.compress(body), size) == body


def test_brotli_bombs_stop_at_the_bound() -> None:
    bomb = brotli.compress(b"\0" * 50_000_000)  # a few kilobytes
    decoder = decoder_for(headers("br"), 100_000)
    assert decoder is not None
    with pytest.raises(ResponseTooLargeError):
        decoder.decode(bomb)


def test_brotli_cut_short_or_garbled_is_refused() -> None:
    data = brotli.compress(b"some text " * 1000)
    decoder = decoder_for(headers("br"), 100_000)
    assert decoder is not None
    decoder.decode(data[: len(data) // 2])
    with pytest.raises(BadResponseError, match="ended early"):
        decoder.flush()
    garbled = decoder_for(headers("br"), 100_000)
    assert garbled is not None
    with pytest.raises(BadResponseError, match="does not decode"):
        garbled.decode(b"\xff" * 64)


@pytest.mark.parametrize("coding", ["", "identity", "zstd", "gzip, zstd"])
def test_nothing_to_decode_or_unknown_codings_give_no_decoder(coding: str) -> None:
    assert decoder_for(headers(coding), 100) is None
    assert decoder_for(Headers(), 100) is None


def test_codings_are_undone_in_reverse_order() -> None:
    body = b"layered " * 100
    data = gzip.compress(zlib.compress(body))  # deflate first, then gzip
    decoder = decoder_for(headers("deflate, GZIP"), 10_000)
    assert decoder is not None
    assert decode_in_pieces(decoder, data, 7) == body
    # The same across two header fields.
    two = Headers([("Content-Encoding", "deflate"), ("Content-Encoding", "gzip")])
    decoder = decoder_for(two, 10_000)
    assert decoder is not None
    assert decoder.decode(data) + decoder.flush() == body


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=600))
def test_gzip_in_any_pieces(body: bytes, size: int) -> None:
    decoder = decoder_for(headers("gzip"), 10_000)
    assert decoder is not None
    assert decode_in_pieces(decoder, gzip.compress(body), size) == body


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_the_bound_holds_while_inflating(coding: str) -> None:
    body = b"\0" * 10_000_000
    data = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    decoder = decoder_for(headers(coding), 100_000)
    assert decoder is not None
    with pytest.raises(ResponseTooLargeError) as caught:
        decode_in_pieces(decoder, data, 4096)
    assert caught.value.limit == 100_000
    assert decoder.decoded <= 100_000


def test_exactly_the_bound_is_allowed() -> None:
    decoder = decoder_for(headers("gzip"), 1000)
    assert decoder is not None
    assert decoder.decode(gzip.compress(b"a" * 1000)) == b"a" * 1000


@pytest.mark.parametrize(
    ("coding", "data"),
    [
        ("gzip", b"not gzip at all"),
        ("deflate", b"\xff\xff\xff\xff"),
        ("gzip", gzip.compress(b"x" * 100)[:10] + b"garbage" * 5),
    ],
)
def test_bytes_that_do_not_decode(coding: str, data: bytes) -> None:
    decoder = decoder_for(headers(coding), 10_000)
    assert decoder is not None
    with pytest.raises(BadResponseError):
        decode_in_pieces(decoder, data, 1000)


def test_a_stream_cut_short_is_found_at_the_end() -> None:
    decoder = decoder_for(headers("gzip"), 10_000)
    assert decoder is not None
    decoder.decode(gzip.compress(b"hello " * 100)[:-12])
    with pytest.raises(BadResponseError, match="early"):
        decoder.flush()
