"""Tests for torsion.web._forms: urlencoded and multipart/form-data bodies."""

from __future__ import annotations

import email.policy
import os
import socket
import subprocess
import urllib.parse
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.testing import require_peer
from torsion.web._forms import (
    FormError,
    FormTooLargeError,
    MultipartForm,
    MultipartParser,
    UploadedFile,
    encode_urlencoded,
    multipart_boundary,
    parse_multipart,
    parse_urlencoded,
)
from torsion.web._headers import Headers

# ---- urlencoded --------------------------------------------------------------


def test_urlencoded_basics() -> None:
    body = b"a=1&b=two+words&a=%33&c&&d=&e=%E2%82%AC&f=x%3Dy%26z&+g+=%2B"
    assert parse_urlencoded(body) == {
        "a": ["1", "3"],
        "b": ["two words"],
        "c": [""],
        "d": [""],
        "e": ["\u20ac"],
        "f": ["x=y&z"],
        " g ": ["+"],
    }


def test_urlencoded_bad_bytes_become_replacement_characters() -> None:
    assert parse_urlencoded(b"n=%FF%E2%82&m=%zz%") == {"n": ["\ufffd\ufffd"], "m": ["%zz%"]}
    assert parse_urlencoded(b"\xff=1") == {"\ufffd": ["1"]}


def test_urlencoded_empty() -> None:
    assert parse_urlencoded(b"") == {}
    assert parse_urlencoded(b"&&&") == {}


def test_urlencoded_limits() -> None:
    with pytest.raises(FormTooLargeError, match="bytes") as info:
        parse_urlencoded(b"a=" + b"x" * 100, max_size=50)
    assert info.value.status == 413
    many = b"&".join(b"f%d=1" % i for i in range(11))
    with pytest.raises(FormTooLargeError, match="fields"):
        parse_urlencoded(many, max_fields=10)
    assert len(parse_urlencoded(many + b"&&&&", max_fields=11)) == 11


def test_encode_urlencoded() -> None:
    assert encode_urlencoded({"a": "1 2", "b": ["x", "é&="]}) == b"a=1+2&b=x&b=%C3%A9%26%3D"
    assert encode_urlencoded([("k", "*-._~")]) == b"k=*-._~"


_pairs = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=10)


@given(_pairs)
def test_urlencoded_round_trip(pairs: list[tuple[str, str]]) -> None:
    # Lone surrogates cannot be encoded; real forms never hold them.
    pairs = [(k, v) for k, v in pairs if _encodable(k) and _encodable(v)]
    expected: dict[str, list[str]] = {}
    for name, value in pairs:
        expected.setdefault(name, []).append(value)
    assert parse_urlencoded(encode_urlencoded(pairs)) == expected


@given(st.binary(max_size=200))
def test_urlencoded_agrees_with_the_stdlib(body: bytes) -> None:
    ours = parse_urlencoded(body)
    theirs = urllib.parse.parse_qs(
        body.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace"
    )
    # The stdlib decodes the unescaped text as Latin-1 first; compare on
    # ASCII bodies, where both read the same bytes.
    if body.isascii():
        assert ours == theirs
    else:
        assert all(isinstance(v, list) for v in ours.values())


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---- multipart: building bodies -----------------------------------------------

BOUNDARY = b"----torsionBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = b"multipart/form-data; boundary=" + BOUNDARY


def _body(*parts: tuple[bytes, bytes], boundary: bytes = BOUNDARY) -> bytes:
    """A multipart body from (header block, data) pairs, as a browser writes it."""
    out = b""
    for headers, data in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def _field(name: str, value: bytes) -> tuple[bytes, bytes]:
    return (f'Content-Disposition: form-data; name="{name}"\r\n'.encode(), value)


def _file(name: str, filename: str, data: bytes, ctype: str = "text/plain") -> tuple[bytes, bytes]:
    headers = (
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {ctype}\r\n"
    ).encode()
    return (headers, data)


def _snapshot(form: MultipartForm) -> tuple[object, object]:
    """A comparable view of a form: fields, and each file's name, type and bytes."""
    files = {
        name: [(u.filename, u.content_type, u.read(), u.size) for u in uploads]
        for name, uploads in form.files.items()
    }
    return form.fields, files


def _parse(body: bytes, chunk: int | None = None, **limits: int) -> MultipartForm:
    parser = MultipartParser(multipart_boundary(CONTENT_TYPE), **limits)
    if chunk is None:
        parser.feed(body)
    else:
        for start in range(0, len(body), chunk):
            parser.feed(body[start : start + chunk])
    return parser.close()


SAMPLE = _body(
    _field("title", b"Hello, world"),
    _field("title", "\u00e9t\u00e9".encode()),
    _file("upload", "notes.txt", b"line one\r\nline two\r\n--not-a-boundary\r\n"),
    _field("empty", b""),
    _file("blank", "", b"", "application/octet-stream"),
)


# ---- multipart: parsing -------------------------------------------------------


def test_boundary_from_content_type() -> None:
    assert multipart_boundary(b'multipart/form-data; charset=utf-8; boundary="a b"') == b"a b"
    assert multipart_boundary("Multipart/Form-Data;boundary=xyz") == b"xyz"


@pytest.mark.parametrize(
    "value",
    [
        b"text/plain; boundary=x",
        b"multipart/form-data",
        b"multipart/form-data; boundary=",
        b"multipart/form-data; boundary=" + b"x" * 71,
        b'multipart/form-data; boundary="a\r\nb"',
        b'multipart/form-data; boundary="ab "',
        b"multipart/form-data; boundary=a{b",
    ],
)
def test_bad_boundaries(value: bytes) -> None:
    with pytest.raises(FormError):
        multipart_boundary(value)


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7, 64])
def test_parse_sample_in_any_chunking(chunk: int | None) -> None:
    with _parse(SAMPLE, chunk) as form:
        assert form.fields == {"title": ["Hello, world", "\u00e9t\u00e9"], "empty": [""]}
        [upload] = form.files["upload"]
        assert upload.filename == "notes.txt"
        assert upload.content_type == "text/plain"
        assert upload.headers.get("content-type") == b"text/plain"
        assert upload.read() == b"line one\r\nline two\r\n--not-a-boundary\r\n"
        assert upload.size == len(upload.read())
        [blank] = form.files["blank"]
        assert blank.filename == ""
        assert blank.size == 0


def test_preamble_epilogue_padding_and_folded_headers() -> None:
    body = (
        b"This is the preamble.\r\n--" + BOUNDARY + b" \t\r\n"
        b'Content-Disposition: form-data;\r\n name="a"\r\n\r\nvalue\r\n--' + BOUNDARY + b"--"
        b"\r\nepilogue, ignored: --" + BOUNDARY + b"\r\njunk"
    )
    with _parse(body) as form:
        assert form.fields == {"a": ["value"]}


def test_body_may_end_right_after_the_closing_delimiter() -> None:
    body = _body(_field("a", b"1"))[:-2]
    with _parse(body) as form:
        assert form.fields == {"a": ["1"]}


def test_empty_form() -> None:
    with _parse(b"--" + BOUNDARY + b"--\r\n") as form:
        assert form.fields == {}
        assert form.files == {}


def test_filename_star_and_quoting() -> None:
    body = _body(
        (
            b'Content-Disposition: form-data; name="f"; filename="fallback.txt"; '
            b"filename*=UTF-8''%E2%82%AC%20rates.txt\r\n",
            b"x",
        ),
        (b'Content-Disposition: form-data; name="g"; filename="C:\\dir\\a \\"q\\".txt"\r\n', b""),
        (b"Content-Disposition: form-data; name=\"h\"; filename*=bogus''x\r\n", b""),
        (b'Content-Disposition: form-data; name="semi;colon"; name="second"\r\n', b"v"),
        (b"content-disposition: FORM-DATA; NAME=plain\r\n", b"w"),
    )
    with _parse(body) as form:
        assert form.files["f"][0].filename == "\u20ac rates.txt"
        assert form.files["f"][0].content_type == "application/octet-stream"
        assert form.files["g"][0].filename == 'C:\\dir\\a "q".txt'
        assert form.files["g"][0].safe_filename == 'a "q".txt'
        assert "h" not in form.files
        assert form.fields["h"] == [""]
        assert form.fields["semi;colon"] == ["v"]
        assert form.fields["plain"] == ["w"]


@pytest.mark.parametrize(
    ("filename", "safe"),
    [("../../etc/passwd", "passwd"), ("..", ""), ("a\x00b\x7f.txt", "ab.txt"), ("/", "")],
)
def test_safe_filename(filename: str, safe: str) -> None:
    upload = UploadedFile(
        name="f", filename=filename, content_type="", headers=Headers(), file=_memory_file()
    )
    assert upload.safe_filename == safe
    upload.close()


def _memory_file() -> object:
    import io

    return io.BytesIO()


def test_charsets() -> None:
    body = _body(
        (b'Content-Disposition: form-data; name="a"\r\nContent-Type: text/plain; '
         b"charset=iso-8859-1\r\n", b"\xe9"),
        (b'Content-Disposition: form-data; name="b"\r\nContent-Type: text/plain; '
         b"charset=no-such\r\n", b"\xc3\xa9"),
        _field("_charset_", b"iso-8859-1"),
        _field("c", b"\xe9"),
        _field("_charset_", b"no-such-codec"),
        _field("d", b"\xe9"),
    )  # fmt: skip
    with _parse(body) as form:
        assert form.fields["a"] == ["\u00e9"]
        assert form.fields["b"] == ["\u00e9"]
        assert form.fields["c"] == ["\u00e9"]
        assert form.fields["d"] == ["\u00e9"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no delimiter at all", "ended before"),
        (SAMPLE[:-10], "ended before"),
        (b"--" + BOUNDARY + b"\r\n\r\nvalue\r\n--" + BOUNDARY + b"--", "Content-Disposition"),
        (_body((b"Content-Disposition: attachment; name=a\r\n", b"")), "form-data"),
        (_body((b"Content-Disposition: form-data\r\n", b"")), "form-data"),
        (_body((b"Content-Disposition form-data; name=a\r\n", b"")), "header line"),
        (_body((b"Bad Name: x\r\nContent-Disposition: form-data; name=a\r\n", b"")), "name"),
        (_body((b" folded: x\r\n", b"")), "continuation"),
        (_body((b"Content-Disposition: form-data; name=a\x00\r\n", b"")), "control"),
        (b"--" + BOUNDARY + b"junk\r\n", "junk"),
        (b"--" + BOUNDARY + b"  x", "junk"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    for chunk in (None, 1):
        with pytest.raises(FormError, match=message) as info:
            _parse(body, chunk)
        assert info.value.status == 400


def test_limits() -> None:
    with pytest.raises(FormTooLargeError, match="parts"):
        _parse(_body(*[_field("a", b"1")] * 3), max_parts=2)
    with pytest.raises(FormTooLargeError, match="headers"):
        _parse(_body((b"X-Pad: " + b"p" * 200 + b"\r\n", b"")), max_header_size=100)
    with pytest.raises(FormTooLargeError, match="form field"):
        _parse(_body(_field("a", b"x" * 101)), max_field_size=100)
    with pytest.raises(FormTooLargeError, match="form fields"):
        _parse(_body(*[_field("a", b"x" * 60)] * 2), max_fields_size=100)
    with pytest.raises(FormTooLargeError, match="uploaded file"):
        _parse(_body(_file("f", "f", b"x" * 101)), max_file_size=100)
    with pytest.raises(FormTooLargeError, match="multipart body"):
        _parse(SAMPLE, 5, max_total_size=100)
    # Within the limits, the same bodies pass.
    with _parse(_body(_file("f", "f", b"x" * 100), _field("a", b"x" * 100)), 9,
                max_field_size=100, max_file_size=100, max_header_size=100) as form:  # fmt: skip
        assert form.files["f"][0].size == 100


def test_padding_limit_is_a_format_error() -> None:
    with pytest.raises(FormError, match="junk"):
        _parse(b"--" + BOUNDARY + b" " * 300)


def _open_fds() -> int:
    """How many file descriptors this process holds (temporary files are unlinked
    at once on Linux, so a spooled file shows here and not in its directory)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    return len(os.listdir("/proc/self/fd"))


def test_a_failed_parser_refuses_more_and_cleans_up(tmp_path: Path) -> None:
    before = _open_fds()
    parser = MultipartParser(BOUNDARY, spool_size=10, spool_directory=str(tmp_path))
    parser.feed(b"--" + BOUNDARY + b"\r\n" + _file("f", "f", b"")[0] + b"\r\n" + b"x" * 100)
    assert _open_fds() == before + 1  # spooled to disk
    with pytest.raises(FormError):
        parser.feed(b"\r\n--" + BOUNDARY + b"junk")
    assert _open_fds() == before
    with pytest.raises(FormError, match="already failed"):
        parser.feed(b"")
    with pytest.raises(FormError, match="already failed"):
        parser.close()


def test_large_files_spool_to_disk_and_are_removed(tmp_path: Path) -> None:
    before = _open_fds()
    data = bytes(range(256)) * 64
    body = _body(_file("big", "big.bin", data), _file("small", "s", b"tiny"))
    parser = MultipartParser(BOUNDARY, spool_size=1024, spool_directory=str(tmp_path))
    for start in range(0, len(body), 1000):
        parser.feed(body[start : start + 1000])
    with parser.close() as form:
        assert _open_fds() == before + 1  # only the big one on disk
        assert form.files["big"][0].read() == data
        assert form.files["small"][0].read() == b"tiny"
    assert _open_fds() == before


def test_abort_removes_files(tmp_path: Path) -> None:
    before = _open_fds()
    parser = MultipartParser(BOUNDARY, spool_size=1, spool_directory=str(tmp_path))
    parser.feed(_body(_file("a", "a", b"data" * 20))[:-20])
    assert _open_fds() == before + 1
    parser.abort()
    assert _open_fds() == before


def test_an_unfinished_body_releases_its_files() -> None:
    before = _open_fds()
    parser = MultipartParser(BOUNDARY, spool_size=1)
    parser.feed(_body(_file("a", "a", b"data"), _file("b", "b", b"more" * 20))[:-20])
    with pytest.raises(FormError, match="ended before"):
        parser.close()
    assert _open_fds() == before


def test_parse_multipart_whole() -> None:
    with parse_multipart(SAMPLE, CONTENT_TYPE.decode()) as form:
        assert form.fields["title"] == ["Hello, world", "\u00e9t\u00e9"]
    with pytest.raises(FormError):
        parse_multipart(SAMPLE, b"application/json")


# ---- multipart: properties ----------------------------------------------------

_part_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
    min_size=1,
    max_size=8,
)
_parts = st.lists(
    st.tuples(_part_names, st.binary(max_size=60), st.booleans()), min_size=1, max_size=5
)
# The email package rewrites line endings inside parts: give it data without.
_email_parts = st.lists(
    st.tuples(
        _part_names,
        st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b),
        st.booleans(),
    ),
    min_size=1,
    max_size=5,
)


def _email_body(parts: list[tuple[str, bytes, bool]]) -> tuple[bytes, bytes]:
    """Build a body with the stdlib email package (another writer than ours)."""
    message = MIMEMultipart("form-data")
    for index, (name, data, is_file) in enumerate(parts):
        part: MIMEApplication | MIMEText
        if is_file:
            part = MIMEApplication(data, _encoder=lambda p: None)
            part.add_header("Content-Disposition", "form-data", name=name, filename=f"f{index}")
        else:
            part = MIMEApplication(data, _encoder=lambda p: None)
            del part["Content-Type"]
            part.add_header("Content-Disposition", "form-data", name=name)
        del part["MIME-Version"]
        message.attach(part)
    raw = message.as_bytes(policy=email.policy.HTTP)
    _header, _, body = raw.partition(b"\r\n\r\n")
    boundary = message.get_boundary()
    assert boundary is not None
    return body, f"multipart/form-data; boundary={boundary}".encode()


@settings(max_examples=75)
@given(_email_parts, st.data())
def test_bodies_from_the_email_package_parse_the_same_in_any_split(
    parts: list[tuple[str, bytes, bool]], data: st.DataObject
) -> None:
    body, content_type = _email_body(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    parser = MultipartParser(multipart_boundary(content_type))
    previous = 0
    for cut in [*cuts, len(body)]:
        parser.feed(body[previous:cut])
        previous = cut
    with parser.close() as split, parse_multipart(body, content_type) as whole:
        assert _snapshot(split) == _snapshot(whole)
        expected_fields: dict[str, list[str]] = {}
        expected_files: dict[str, list[bytes]] = {}
        for name, value, is_file in parts:
            if is_file:
                expected_files.setdefault(name, []).append(value)
            else:
                expected_fields.setdefault(name, []).append(value.decode("utf-8", "replace"))
        assert whole.fields == expected_fields
        assert {k: [u.read() for u in v] for k, v in whole.files.items()} == expected_files


@given(_parts, st.data())
def test_any_data_survives_any_split(
    parts: list[tuple[str, bytes, bool]], data: st.DataObject
) -> None:
    built = []
    for index, (name, value, is_file) in enumerate(parts):
        quoted = name.replace('"', "%22").encode()
        filename = f'; filename="f{index}"'.encode() if is_file else b""
        built.append((b'Content-Disposition: form-data; name="' + quoted + b'"' + filename
                      + b"\r\n", value))  # fmt: skip
    body = _body(*built)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    parser = MultipartParser(BOUNDARY)
    previous = 0
    for cut in [*cuts, len(body)]:
        parser.feed(body[previous:cut])
        previous = cut
    with parser.close() as form:
        got = [(n, v.encode()) for n, vs in form.fields.items() for v in vs]
        got += [(n, u.read()) for n, us in form.files.items() for u in us]
        expected = [
            (n, v.decode("utf-8", "replace").encode() if not f else v) for n, v, f in parts
        ]
        assert sorted(got) == sorted(expected)


@given(st.binary(max_size=300), st.integers(1, 50))
def test_junk_never_raises_anything_but_form_errors(junk: bytes, chunk: int) -> None:
    parser = MultipartParser(b"xyz", max_header_size=64)
    try:
        for start in range(0, len(junk), chunk):
            parser.feed(junk[start : start + chunk])
        parser.close().close()
    except FormError:
        pass


# ---- multipart: a real client ---------------------------------------------------


def _capture_curl_body(args: list[str]) -> tuple[bytes, bytes]:
    """Run curl against a one-shot listener; return its Content-Type and body."""
    curl = require_peer("curl", package="curl")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(10)
        process = subprocess.Popen(
            [curl, "-s", "-o", "/dev/null", "-H", "Expect:", *args, f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(10)
                received = b""
                while b"\r\n\r\n" not in received:
                    received += connection.recv(65536)
                head, _, body = received.partition(b"\r\n\r\n")
                fields = dict(
                    line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
                )
                length = int(fields[b"Content-Length"])
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        finally:
            assert process.wait(timeout=10) == 0
    return fields[b"Content-Type"], body


@pytest.mark.integration
def test_a_body_curl_writes(tmp_path: Path) -> None:
    upload = tmp_path / "report \u00e9.bin"
    data = bytes(range(256)) * 40 + b"\r\n--"
    upload.write_bytes(data)
    content_type, body = _capture_curl_body(
        [
            "-F", "name=Ada Lovelace",
            "--form-string", "note=\u00e9t\u00e9; x",
            "-F", f"file=@{upload};type=application/x-test",
            "-F", "note=second",
        ]
    )  # fmt: skip
    for chunk in (None, 1, 13):
        with _parse_with(body, content_type, chunk) as form:
            assert form.fields == {
                "name": ["Ada Lovelace"],
                "note": ["\u00e9t\u00e9; x", "second"],
            }
            [received] = form.files["file"]
            assert received.filename == "report \u00e9.bin"
            assert received.content_type == "application/x-test"
            assert received.read() == data


def _parse_with(body: bytes, content_type: bytes, chunk: int | None) -> MultipartForm:
    parser = MultipartParser(multipart_boundary(content_type))
    step = chunk or len(body)
    for start in range(0, len(body), step):
        parser.feed(body[start : start + step])
    return parser.close()


_pieces = st.sampled_from(
    [
        b"--xyz", b"\r\n", b"--", b"\r\n\r\n", b" ", b";", b"x" * 10, b"\r",
        b"Content-Disposition: form-data; name=a", b'; filename="f"', b"Content-Type: a/b",
        b" continued", b"\x00",
    ]
)  # fmt: skip


@settings(max_examples=300)
@given(st.lists(_pieces, max_size=30), st.integers(1, 20))
def test_near_valid_junk_never_raises_anything_but_form_errors(
    pieces: list[bytes], chunk: int
) -> None:
    before = _open_fds()
    body = b"".join(pieces)
    parser = MultipartParser(b"xyz", max_header_size=64, spool_size=4)
    try:
        for start in range(0, len(body), chunk):
            parser.feed(body[start : start + chunk])
        with parser.close() as form:
            assert all(isinstance(v, str) for vs in form.fields.values() for v in vs)
    except FormError:
        pass
    assert _open_fds() == before
