"""File on 127.0.0.1, on both loops, asked by curl: ranges, conditions, codings, big files."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from _http_server_helpers import Tracked

from torsion.internet import Reactor
from torsion.testing import require_peer
from torsion.web import File, Site, format_http_date

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

TEXT = b"".join(b"line %d of a text file that compresses well\n" % i for i in range(2000))
BIG = 3 * 1024 * 1024 + 17


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "text.txt").write_bytes(TEXT)
    (tmp_path / "index.html").write_bytes(b"<h1>home</h1>\n")
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    (tmp_path / "app.js").write_bytes(b"console.log('plain');\n" * 50)
    (tmp_path / "app.js.gz").write_bytes(gzip.compress(b"console.log('precompressed');\n"))
    sub = tmp_path / "sub dir"
    sub.mkdir()
    (sub / "a&b.txt").write_bytes(b"ab")
    return tmp_path


@asynccontextmanager
async def serving(reactor: Reactor, root: File) -> AsyncIterator[str]:
    tracked = Tracked(Site(root, reactor=reactor))
    listener = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{listener.port}"
    finally:
        await listener.stop_listening()
        await tracked.all_ended()


async def curl(*argv: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        require_peer("curl", package="curl"),
        "-sS",
        "--max-time",
        "20",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out


def head_fields(out: bytes) -> dict[str, str]:
    lines = out.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {"status": lines[0]}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    return fields


@BOTH_LOOPS
async def test_a_big_file_arrives_whole(reactor: Reactor, loop: str, tree: Path) -> None:
    async with serving(reactor, File(tree)) as base:
        out = await curl(f"{base}/big.bin")
    assert len(out) == BIG
    assert hashlib.sha256(out).digest() == hashlib.sha256((tree / "big.bin").read_bytes()).digest()


@BOTH_LOOPS
async def test_head_with_curl_i(reactor: Reactor, loop: str, tree: Path) -> None:
    async with serving(reactor, File(tree)) as base:
        fields = head_fields(await curl("-I", f"{base}/big.bin"))
    assert fields["status"] == "HTTP/1.1 200 OK"
    assert fields["content-length"] == str(BIG)
    assert fields["accept-ranges"] == "bytes"
    assert fields["etag"].startswith('W/"')


@BOTH_LOOPS
async def test_ranges_with_curl_r(reactor: Reactor, loop: str, tree: Path) -> None:
    data = (tree / "big.bin").read_bytes()
    async with serving(reactor, File(tree)) as base:
        one = await curl("-r", "100-199", f"{base}/big.bin")
        tail = await curl("-r", "-1000", f"{base}/big.bin")
        far = await curl("-r", f"1000-{BIG - 1}", f"{base}/big.bin")
        several = await curl("-r", "0-9,2000000-2000009", "-i", f"{base}/big.bin")
        none = await curl("-r", f"{BIG + 10}-", "-o", "/dev/null", "-w", "%{http_code}",
                          f"{base}/big.bin")  # fmt: skip
    assert one == data[100:200]
    assert tail == data[-1000:]
    assert far == data[1000:]
    head, _, body = several.partition(b"\r\n\r\n")
    assert b"multipart/byteranges; boundary=" in head
    assert data[:10] in body
    assert data[2000000:2000010] in body
    assert b"Content-Range: bytes 2000000-2000009/%d" % BIG in body
    assert none == b"416"


@BOTH_LOOPS
async def test_conditional_requests(reactor: Reactor, loop: str, tree: Path) -> None:
    async with serving(reactor, File(tree)) as base:
        url = f"{base}/text.txt"
        etag = head_fields(await curl("-I", url))["etag"]
        code = ["-o", "/dev/null", "-w", "%{http_code}"]
        matched = await curl(*code, "-H", f"If-None-Match: {etag}", url)
        other = await curl(*code, "-H", 'If-None-Match: "nope"', url)
        # -z DATE sends If-Modified-Since; -z -DATE sends If-Unmodified-Since.
        later = format_http_date((tree / "text.txt").stat().st_mtime + 3600)
        earlier = format_http_date((tree / "text.txt").stat().st_mtime - 3600)
        not_modified = await curl(*code, "-z", later, url)
        modified = await curl(*code, "-z", earlier, url)
        failed = await curl(*code, "-z", f"-{earlier}", url)
    assert (matched, other) == (b"304", b"200")
    assert (not_modified, modified, failed) == (b"304", b"200", b"412")


@BOTH_LOOPS
async def test_compressed(reactor: Reactor, loop: str, tree: Path) -> None:
    async with serving(reactor, File(tree)) as base:
        text = await curl("--compressed", "-D", "-", f"{base}/text.txt")
        precompressed = await curl("--compressed", f"{base}/app.js")
        plain = await curl(f"{base}/app.js")
    head, _, body = text.partition(b"\r\n\r\n")
    fields = head_fields(head)
    assert fields["content-encoding"] in ("br", "gzip")
    assert fields["vary"] == "Accept-Encoding"
    assert int(fields["content-length"]) < len(TEXT)
    assert body == TEXT
    assert precompressed == b"console.log('precompressed');\n"
    assert plain == b"console.log('plain');\n" * 50


@BOTH_LOOPS
async def test_directories(reactor: Reactor, loop: str, tree: Path) -> None:
    async with serving(reactor, File(tree)) as base:
        home = await curl(f"{base}/")
        listing = await curl("-L", f"{base}/sub%20dir")
        redirect = await curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                              f"{base}/sub%20dir")  # fmt: skip
        inside = await curl(f"{base}/sub%20dir/a%26b.txt")
        escaped = await curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                             f"{base}/sub%20dir/../../etc/passwd")  # fmt: skip
    assert home == b"<h1>home</h1>\n"
    assert b"a&amp;b.txt" in listing
    assert b'href="a%26b.txt"' in listing
    assert redirect == f"301 {base}/sub%20dir/".encode()
    assert inside == b"ab"
    assert escaped == b"404"
