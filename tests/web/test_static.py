"""Tests for File: path safety, types, validators, ranges, codings and streaming, on fakes."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import brotli  # type: ignore[import-untyped]
import pytest
from _http_server_helpers import Connection, connect, get
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torsion.defer import Deferred, succeed
from torsion.web import File, Resource, format_http_date

T = TypeVar("T")

TEXT = "".join(f"line {i}: the quick brown fox\n" for i in range(200))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small tree: text, an index, a subdirectory, hidden and odd names."""
    (tmp_path / "hello.txt").write_text(TEXT)
    (tmp_path / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "style.css").write_text("body { color: black; }\n" * 40)
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / ".secret").write_text("password")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.txt").write_text("a")
    (sub / "<script>alert(1)<%2Fscript>.txt").write_text("x")
    (sub / "b&c.txt").write_text("bc")
    (sub / ".hidden").write_text("h")
    (sub / "deeper").mkdir()
    return tmp_path


def fetch(root: Resource, path: str, *extra: str, method: str = "GET") -> Any:
    conn = connect(root)
    request = get(path, *extra)
    if method != "GET":
        request = request.replace(b"GET ", method.encode() + b" ", 1)
    conn.send(request)
    [response] = conn.responses()
    # The reader does not know a HEAD response has no body.
    assert response.complete or method == "HEAD"
    conn.lose()
    return response


def test_a_file_with_its_type_validators_and_length(site: Path) -> None:
    response = fetch(File(site), "/hello.txt")
    assert response.status == 200
    assert response.body == TEXT.encode()
    assert response.header(b"content-type") == b"text/plain; charset=utf-8"
    assert response.header(b"content-length") == str(len(TEXT)).encode()
    assert response.header(b"accept-ranges") == b"bytes"
    assert response.header(b"etag").startswith(b'W/"')
    mtime = (site / "hello.txt").stat().st_mtime
    assert response.header(b"last-modified") == format_http_date(mtime).encode()


def test_the_etag_changes_with_the_file(site: Path) -> None:
    first = fetch(File(site), "/hello.txt").header(b"etag")
    (site / "hello.txt").write_text(TEXT + "more")
    assert fetch(File(site), "/hello.txt").header(b"etag") != first


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.html", b"text/html; charset=utf-8"),
        ("a.js", b"text/javascript; charset=utf-8"),
        ("a.json", b"application/json; charset=utf-8"),
        ("a.svg", b"image/svg+xml; charset=utf-8"),
        ("a.png", b"image/png"),
        ("a.woff2", b"font/woff2"),
        ("a.tar.gz", b"application/gzip"),
        ("a.unknownext", b"application/x-unknown"),
        ("a.LOG", b"text/x-log; charset=utf-8"),
    ],
)
def test_content_types(tmp_path: Path, name: str, expected: bytes) -> None:
    (tmp_path / name).write_bytes(b"x")
    root = File(
        tmp_path, default_type="application/x-unknown", content_types={".log": "text/x-log"}
    )
    response = fetch(root, "/" + name)
    assert response.header(b"content-type") == expected
    # A compressed file is served as what it is: no Content-Encoding.
    assert response.header(b"content-encoding") is None


def test_no_charset_when_asked(site: Path) -> None:
    response = fetch(File(site, charset=None), "/hello.txt")
    assert response.header(b"content-type") == b"text/plain"


def test_a_single_file_as_the_resource(site: Path) -> None:
    root = Resource()
    root.put_child("robots.txt", File(site / "hello.txt"))
    assert fetch(root, "/robots.txt").body == TEXT.encode()
    assert fetch(root, "/robots.txt/x").status == 404
    assert fetch(root, "/robots.txt/").status == 404


# -- directories ---------------------------------------------------------------


def test_the_index_file_stands_for_its_directory(site: Path) -> None:
    assert fetch(File(site), "/").body == b"<h1>home</h1>"
    (site / "sub" / "home.htm").write_text("sub home")
    root = File(site, index_names=("index.html", "home.htm"))
    assert fetch(root, "/sub/").body == b"sub home"


def test_a_directory_without_slash_is_redirected(site: Path) -> None:
    response = fetch(File(site), "/sub")
    assert response.status == 301
    assert response.header(b"location") == b"./sub/"
    response = fetch(File(site), "/sub/deeper?x=1")
    assert response.header(b"location") == b"./deeper/?x=1"


def test_a_mounted_directory_without_slash_is_redirected(site: Path) -> None:
    root = Resource()
    root.put_child("static", File(site))
    response = fetch(root, "/static")
    assert (response.status, response.header(b"location")) == (301, b"./static/")
    assert fetch(root, "/static/").body == b"<h1>home</h1>"
    assert fetch(root, "/static/hello.txt").body == TEXT.encode()


def test_a_redirect_never_points_at_another_host(site: Path) -> None:
    (site / "evil.com").mkdir()
    response = fetch(File(site), "/evil.com")
    assert response.header(b"location") == b"./evil.com/"
    # "//evil.com" is an empty segment, not a directory.
    assert fetch(File(site), "//evil.com").status == 404


def test_a_listing_escapes_names_and_leaves_hidden_ones_out(site: Path) -> None:
    response = fetch(File(site), "/sub/")
    assert response.status == 200
    assert response.header(b"content-type") == b"text/html; charset=utf-8"
    page = response.body.decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;%2Fscript&gt;.txt" in page
    assert 'href="%3Cscript%3Ealert%281%29%3C%252Fscript%3E.txt"' in page
    assert "b&amp;c.txt" in page
    assert 'href="deeper/"' in page
    assert ".hidden" not in page
    assert "Index of /sub/" in page
    # Directories first, then files by name.
    assert page.index("deeper/") < page.index("a.txt") < page.index("b&amp;c.txt")


def test_a_listing_in_a_mounted_tree_shows_its_url_path(site: Path) -> None:
    root = Resource()
    root.put_child("files", File(site))
    (site / "index.html").unlink()
    page = fetch(root, "/files/sub/").body.decode()
    assert "Index of /files/sub/" in page
    assert "Index of /files/" in fetch(root, "/files/").body.decode()


def test_listing_off_is_forbidden(site: Path) -> None:
    response = fetch(File(site, listing=False), "/sub/")
    assert response.status == 403
    assert b"a.txt" not in response.body


def test_well_known_is_public(site: Path) -> None:
    (site / ".well-known").mkdir()
    (site / ".well-known" / "security.txt").write_text("Contact: mailto:security@example.test")
    (site / ".well-known" / ".private").write_text("no")
    assert fetch(File(site), "/.well-known/security.txt").body.startswith(b"Contact:")
    assert fetch(File(site), "/.well-known/.private").status == 404
    assert ".well-known/" in fetch(File(site, index_names=()), "/").body.decode()


def test_hidden_files_are_served_when_asked(site: Path) -> None:
    assert fetch(File(site, hidden=True), "/.secret").body == b"password"
    assert ".hidden" in fetch(File(site, hidden=True), "/sub/").body.decode()


# -- path safety -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/.secret",
        "/sub/.hidden",
        "/%2esecret",
        "/missing.txt",
        "/sub//a.txt",
        "/hello.txt/",
        "/sub/a.txt/extra",
        "/%00",
    ],
)
def test_not_found(site: Path, path: str) -> None:
    response = fetch(File(site), path)
    assert response.status in (400, 404)
    assert b"password" not in response.body


@pytest.mark.parametrize(
    "path", ["/../outside.txt", "/sub/../../outside.txt", "/%2e%2e/outside.txt"]
)
def test_no_climbing_out_of_the_root(tmp_path: Path, path: str) -> None:
    (tmp_path / "outside.txt").write_text("outside")
    root = tmp_path / "root"
    root.mkdir()
    response = fetch(File(root), path)
    assert response.status in (400, 404)
    assert b"outside" not in response.body


def test_an_encoded_slash_is_no_separator(site: Path) -> None:
    response = fetch(File(site), "/sub%2Fa.txt")
    assert response.status in (400, 404)


def test_symlinks_out_of_the_tree_are_refused_unless_followed(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("outside")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "f.txt").write_text("in outdir")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    (root / "linkdir").symlink_to(tmp_path / "outdir")
    (root / "inside.txt").write_text("inside")
    (root / "alias.txt").symlink_to(root / "inside.txt")
    assert fetch(File(root), "/link.txt").status == 404
    assert fetch(File(root), "/linkdir/f.txt").status == 404
    listing = fetch(File(root), "/").body.decode()
    assert "link.txt" not in listing
    assert "alias.txt" in listing
    assert fetch(File(root), "/alias.txt").body == b"inside"
    followed = File(root, follow_symlinks=True)
    assert fetch(followed, "/link.txt").body == b"outside"
    assert fetch(followed, "/linkdir/f.txt").body == b"in outdir"


SECRET = b"outside-the-root-secret"
# Pieces of paths that have been used to climb out of served trees.
PIECES = st.sampled_from(
    [
        "..", ".", "", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2f", "%2F", "%5c", "..%2f",
        "%00", "%2500", "outside.txt", "root", "inside.txt", "link", "dir", ".secret",
        "%252e%252e", "\\..", "..;", "%c0%ae%c0%ae", "~", "//",
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def fenced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root next to a secret, with a link inside the root that points at it."""
    base = tmp_path_factory.mktemp("fenced")
    (base / "outside.txt").write_bytes(SECRET)
    root = base / "root"
    root.mkdir()
    (root / "inside.txt").write_text("inside")
    (root / ".secret").write_bytes(SECRET)
    (root / "link").symlink_to(base / "outside.txt")
    (root / "dir").mkdir()
    (root / "dir" / "link").symlink_to(base)
    return root


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(PIECES, min_size=1, max_size=6))
def test_no_path_reaches_outside_the_root(fenced: Path, pieces: list[str]) -> None:
    response = fetch(File(fenced), "/" + "/".join(pieces))
    assert SECRET not in response.body
    assert response.status in (200, 206, 301, 400, 404)


def test_a_link_to_a_hidden_name_is_refused(site: Path) -> None:
    (site / "visible.txt").symlink_to(site / ".secret")
    assert fetch(File(site), "/visible.txt").status == 404


def test_an_index_link_out_of_the_tree_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "outside.html").write_text("outside")
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.html").symlink_to(tmp_path / "outside.html")
    response = fetch(File(root), "/")
    assert b"outside" not in response.body.replace(b"outside.html", b"")


def test_a_fifo_is_not_opened(site: Path) -> None:
    os.mkfifo(site / "pipe")
    assert fetch(File(site), "/pipe").status == 404
    assert "pipe" not in fetch(File(site), "/sub/../").body.decode()


def test_other_methods_are_not_allowed(site: Path) -> None:
    response = fetch(File(site), "/hello.txt", method="POST")
    assert response.status == 405
    assert response.header(b"allow") == b"GET, HEAD, OPTIONS"


# -- conditional requests --------------------------------------------------------


def test_if_none_match_gives_304_with_validators(site: Path) -> None:
    etag = fetch(File(site), "/hello.txt").header(b"etag").decode()
    response = fetch(File(site), "/hello.txt", f"If-None-Match: {etag}")
    assert response.status == 304
    assert response.body == b""
    assert response.header(b"etag") == etag.encode()
    assert response.header(b"last-modified") is not None
    assert fetch(File(site), "/hello.txt", 'If-None-Match: "other"').status == 200


def test_if_modified_since(site: Path) -> None:
    mtime = (site / "hello.txt").stat().st_mtime
    later = format_http_date(mtime + 60)
    earlier = format_http_date(mtime - 60)
    assert fetch(File(site), "/hello.txt", f"If-Modified-Since: {later}").status == 304
    assert fetch(File(site), "/hello.txt", f"If-Modified-Since: {earlier}").status == 200


def test_failed_preconditions_give_412(site: Path) -> None:
    mtime = (site / "hello.txt").stat().st_mtime
    assert fetch(File(site), "/hello.txt", 'If-Match: "nope"').status == 412
    earlier = format_http_date(mtime - 60)
    response = fetch(File(site), "/hello.txt", f"If-Unmodified-Since: {earlier}")
    assert response.status == 412
    assert TEXT.encode() not in response.body


# -- ranges ----------------------------------------------------------------------


def test_one_range(site: Path) -> None:
    response = fetch(File(site), "/data.bin", "Range: bytes=10-19")
    assert response.status == 206
    assert response.body == bytes(range(10, 20))
    assert response.header(b"content-range") == b"bytes 10-19/1024"
    assert response.header(b"content-length") == b"10"


def test_a_suffix_range(site: Path) -> None:
    response = fetch(File(site), "/data.bin", "Range: bytes=-4")
    assert (response.status, response.body) == (206, bytes([252, 253, 254, 255]))


def test_several_ranges_are_multipart(site: Path) -> None:
    response = fetch(File(site), "/data.bin", "Range: bytes=0-1,500-501")
    assert response.status == 206
    content_type = response.header(b"content-type")
    assert content_type.startswith(b"multipart/byteranges; boundary=")
    boundary = content_type.split(b"=", 1)[1]
    assert response.body.count(b"--" + boundary) == 3
    assert b"Content-Range: bytes 0-1/1024\r\n\r\n\x00\x01\r\n" in response.body
    assert b"Content-Range: bytes 500-501/1024\r\n\r\n\xf4\xf5\r\n" in response.body
    assert response.body.endswith(b"--" + boundary + b"--\r\n")
    assert int(response.header(b"content-length")) == len(response.body)


def test_an_unsatisfiable_range_is_416(site: Path) -> None:
    response = fetch(File(site), "/data.bin", "Range: bytes=5000-")
    assert response.status == 416
    assert response.header(b"content-range") == b"bytes */1024"


def test_if_range_that_does_not_match_sends_everything(site: Path) -> None:
    response = fetch(File(site), "/data.bin", "Range: bytes=0-9", 'If-Range: "old"')
    assert (response.status, len(response.body)) == (200, 1024)
    mtime = (site / "data.bin").stat().st_mtime
    matching = format_http_date(mtime)
    response = fetch(File(site), "/data.bin", "Range: bytes=0-9", f"If-Range: {matching}")
    assert (response.status, len(response.body)) == (206, 10)


def test_head_has_gets_headers_and_ignores_range(site: Path) -> None:
    response = fetch(File(site), "/data.bin", "Range: bytes=0-9", method="HEAD")
    assert response.status == 200
    assert response.header(b"content-length") == b"1024"
    assert response.body == b""


# -- content codings ---------------------------------------------------------------


def test_gzip_on_the_fly(site: Path) -> None:
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip")
    assert response.header(b"content-encoding") == b"gzip"
    assert response.header(b"vary") == b"Accept-Encoding"
    assert gzip.decompress(response.body) == TEXT.encode()
    assert int(response.header(b"content-length")) == len(response.body) < len(TEXT)
    assert response.header(b"etag").endswith(b'-gzip"')
    assert response.header(b"accept-ranges") is None


def test_brotli_preferred_on_the_fly(site: Path) -> None:
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip, deflate, br")
    assert response.header(b"content-encoding") == b"br"
    assert brotli.decompress(response.body) == TEXT.encode()


def test_a_refused_coding_is_not_used(site: Path) -> None:
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: br;q=0, gzip;q=0.5")
    assert response.header(b"content-encoding") == b"gzip"
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: *;q=0")
    assert response.header(b"content-encoding") is None
    assert response.body == TEXT.encode()
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: *, br;q=0")
    assert response.header(b"content-encoding") == b"gzip"


def test_identity_when_nothing_is_accepted_still_varies(site: Path) -> None:
    response = fetch(File(site), "/hello.txt")
    assert response.header(b"content-encoding") is None
    assert response.header(b"vary") == b"Accept-Encoding"


def test_no_compression_for_images_tiny_or_large_files(site: Path) -> None:
    (site / "pic.png").write_bytes(b"\x89PNG" + b"\x00" * 1000)
    response = fetch(File(site), "/pic.png", "Accept-Encoding: gzip")
    assert response.header(b"content-encoding") is None
    assert response.header(b"vary") is None
    (site / "tiny.txt").write_text("tiny")
    assert fetch(File(site), "/tiny.txt", "Accept-Encoding: gzip").body == b"tiny"
    root = File(site, compress_max=100)
    assert fetch(root, "/hello.txt", "Accept-Encoding: gzip").body == TEXT.encode()
    assert fetch(File(site, compress=False), "/hello.txt", "Accept-Encoding: gzip").body == (
        TEXT.encode()
    )


def test_precompressed_files_are_preferred(site: Path) -> None:
    (site / "style.css.gz").write_bytes(b"precompressed gzip")
    response = fetch(File(site), "/style.css", "Accept-Encoding: gzip")
    assert response.body == b"precompressed gzip"
    assert response.header(b"content-encoding") == b"gzip"
    assert response.header(b"content-type") == b"text/css; charset=utf-8"
    assert response.header(b"vary") == b"Accept-Encoding"
    (site / "style.css.br").write_bytes(b"precompressed br")
    response = fetch(File(site), "/style.css", "Accept-Encoding: gzip, br")
    assert response.body == b"precompressed br"
    assert response.header(b"content-encoding") == b"br"
    plain = fetch(File(site), "/style.css")
    assert plain.body.startswith(b"body {")


def test_a_stale_precompressed_file_is_not_used(site: Path) -> None:
    stale = site / "style.css.gz"
    stale.write_bytes(b"old gzip")
    modified = (site / "style.css").stat().st_mtime
    os.utime(stale, (modified - 10, modified - 10))
    response = fetch(File(site), "/style.css", "Accept-Encoding: gzip")
    assert response.header(b"content-encoding") == b"gzip"
    assert gzip.decompress(response.body).startswith(b"body {")


def test_a_listing_is_bounded(site: Path) -> None:
    for index in range(30):
        (site / "sub" / f"many{index}.txt").write_text("x")
    page = fetch(File(site, max_listing=10), "/sub/").body.decode()
    assert page.count("<tr><td>") == 11  # the parent link and ten entries


def test_precompressed_files_of_any_size_and_with_ranges(site: Path) -> None:
    big = site / "big.js"
    big.write_bytes(b"x" * 2_000_000)
    (site / "big.js.gz").write_bytes(gzip.compress(big.read_bytes()))
    response = fetch(File(site), "/big.js", "Accept-Encoding: gzip", "Range: bytes=0-1")
    assert response.status == 206
    assert response.header(b"content-encoding") == b"gzip"
    assert response.body == b"\x1f\x8b"


def test_a_range_is_served_from_identity_when_compressing_on_the_fly(site: Path) -> None:
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip", "Range: bytes=0-3")
    assert (response.status, response.body) == (206, b"line")
    assert response.header(b"content-encoding") is None


def test_a_304_for_the_compressed_representation(site: Path) -> None:
    etag = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip").header(b"etag").decode()
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip", f"If-None-Match: {etag}")
    assert response.status == 304
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: br", f"If-None-Match: {etag}")
    assert response.status == 200


def test_head_of_a_compressed_response_has_its_length(site: Path) -> None:
    body = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip").body
    response = fetch(File(site), "/hello.txt", "Accept-Encoding: gzip", method="HEAD")
    assert response.header(b"content-length") == str(len(body)).encode()
    assert response.body == b""


# -- streaming --------------------------------------------------------------------


def test_a_large_file_streams_as_the_connection_drains(tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    (tmp_path / "big.bin").write_bytes(data)
    conn = connect(File(tmp_path, chunk_size=16384))
    conn.send(get("/big.bin"))
    received = bytearray()
    most = 0
    for _ in range(1000):
        chunk = conn.take()
        if not chunk:
            break
        most = max(most, len(chunk))
        received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert b"Content-Length: 1000000" in head
    assert body == data
    # Never more than the high-water mark (64 KiB) and one chunk waits.
    assert most <= 65536 + 16384 + len(head) + 4
    conn.lose()


def test_a_lost_connection_stops_the_stream_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * 1_000_000)
    conn = connect(File(tmp_path))
    with caplog.at_level(logging.DEBUG, logger="torsion.web"):
        conn.send(get("/big.bin"))
        first = conn.transport.value()
        assert len(first) < 1_000_000
        conn.lose()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class InlineThreads:
    """A ThreadRunner that runs each call at once, and counts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def call_in_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        f(*args)

    def call_from_thread(self, f: Callable[..., object], /, *args: Any) -> None:
        f(*args)

    def defer_to_thread(self, f: Callable[..., T], /, *args: Any) -> Deferred[T]:
        self.calls.append(getattr(f, "__name__", repr(f)))
        return succeed(f(*args))

    def in_reactor_thread(self) -> bool:
        return True


def test_file_system_calls_go_to_the_threads_when_given(site: Path) -> None:
    threads = InlineThreads()
    root = File(site, threads=threads)
    assert fetch(root, "/hello.txt").body == TEXT.encode()
    assert {"realpath", "stat", "_open_regular", "_read_at"} <= set(threads.calls)
    threads.calls.clear()
    assert b"a.txt" in fetch(root, "/sub/").body
    assert "_list" in threads.calls


def test_connection_reuse_after_files(site: Path) -> None:
    conn: Connection = connect(File(site))
    conn.send(get("/hello.txt") + get("/sub") + get("/data.bin", "Range: bytes=0-0"))
    responses = conn.responses()
    assert [r.status for r in responses] == [200, 301, 206]
    conn.lose()
