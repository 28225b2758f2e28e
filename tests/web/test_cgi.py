"""CGI: the environment, the program's header block, and real programs on both loops.

Unit tests play the program with ``MemoryReactor`` (no process runs) on a
fake connection; integration tests run small shell and Python programs
written to ``tmp_path`` and ask them through curl.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from _http_server_helpers import Connection, connect, get, read_responses
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.internet import Reactor
from torsion.testing import MemoryReactor, require_peer
from torsion.testing._memory_process import MemoryProcessTransport
from torsion.web import Request, Resource, Site, handles
from torsion.web._cgi import CGIDirectory, CGIScript

# Real sockets and real peers.
INTEGRATION = pytest.mark.integration
BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=[pytest.mark.torsion_loop("asyncio"), INTEGRATION]),
        pytest.param("uvloop", marks=[pytest.mark.torsion_loop("uvloop"), INTEGRATION]),
    ],
)


# -- unit: the program played by MemoryReactor ------------------------------------------


class Played:
    """A site with a CGIScript at /cgi/prog, on a fake connection and a MemoryReactor."""

    def __init__(self, **options: object) -> None:
        self.reactor = MemoryReactor()
        self.root = Resource()
        self.root.put_child(
            "cgi",
            CGIScript("/srv/prog", reactor=self.reactor, **options),  # type: ignore[arg-type]
        )
        self.connection: Connection = connect(self.root, clock=self.reactor.clock)

    def ask(self, request: bytes) -> MemoryProcessTransport:
        self.connection.send(request)
        assert len(self.reactor.processes) == 1
        return self.reactor.processes[-1].transport

    @property
    def env(self) -> dict[str, str]:
        env = self.reactor.processes[-1].env
        assert env is not None
        return dict(env)


def test_environment_is_built_afresh_and_drops_dangerous_fields() -> None:
    played = Played(env={"APP": "1"})
    played.ask(
        get(
            "/cgi/a%20b/c?x=1&y",
            "Proxy: http://evil.test:3128",
            "X_Forwarded_For: 10.0.0.1",
            "X-Forwarded-For: 192.0.2.9",
            "Accept: text/html",
            "Accept: text/plain",
            "Authorization: Basic eDp5",
        )
    )
    env = played.env
    assert "HTTP_PROXY" not in env
    assert env["HTTP_X_FORWARDED_FOR"] == "192.0.2.9"
    assert env["HTTP_ACCEPT"] == "text/html, text/plain"
    assert "HTTP_AUTHORIZATION" not in env
    assert env["AUTH_TYPE"] == "Basic"
    assert env["APP"] == "1"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "/cgi"
    assert env["PATH_INFO"] == "/a b/c"
    assert env["QUERY_STRING"] == "x=1&y"
    assert env["SERVER_NAME"] == "example.test"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "192.0.2.2"
    assert "CONTENT_LENGTH" not in env
    # Nothing inherited from this process.
    assert not set(env) & (set(os.environ) - {"PATH"})
    assert played.reactor.processes[-1].path == "/srv"


def test_a_document_response_is_streamed() -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    assert 0 not in child.open_fds  # no body: stdin closed at once
    child.child_writes(1, b"Content-Type: text/plain\r\nX-A: 1\r")
    assert played.connection.take() == b""
    child.child_writes(1, b"\n\r\nhello ")
    child.child_writes(1, b"world")
    child.child_exits(0)
    (response,) = played.connection.responses()
    assert response.status == 200
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"x-a") == b"1"
    assert response.chunked
    assert response.body == b"hello world"


def test_status_field_and_lf_only_lines() -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    child.child_writes(1, b"Status: 404 Not Here\nContent-Type: text/plain\n\ngone")
    child.child_exits(0)
    (response,) = played.connection.responses()
    assert response.status == 404
    assert response.body == b"gone"
    assert response.header(b"status") is None


def test_a_client_redirect_is_302() -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    child.child_writes(1, b"Location: https://example.org/x\n\n")
    child.child_exits(0)
    (response,) = played.connection.responses()
    assert response.status == 302
    assert response.header(b"location") == b"https://example.org/x"


def test_a_local_redirect_without_a_site_sends_the_client_there() -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    child.child_writes(1, b"Location: /elsewhere?q=1\n\n")
    (response,) = played.connection.responses()
    assert response.status == 302
    assert response.header(b"location") == b"/elsewhere?q=1"
    assert child.signals == [9]


class Other(Resource):
    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        return b"other " + request.query


def test_a_local_redirect_with_a_site_serves_the_new_path() -> None:
    reactor = MemoryReactor()
    root = Resource()
    root.put_child("other", Other())
    site = Site(root, reactor=reactor.clock)
    root.put_child("cgi", CGIScript("/srv/prog", reactor=reactor, site=site))
    connection = connect(root, clock=reactor.clock)
    connection.send(get("/cgi"))
    child = reactor.processes[0].transport
    child.child_writes(1, b"Location: /other?q=1\nX-From-Script: 1\n\n")
    (response,) = connection.responses()
    assert response.status == 200
    assert response.body == b"other q=1"
    assert response.header(b"x-from-script") is None
    assert response.header(b"location") is None
    assert child.signals == [9]


@pytest.mark.parametrize(
    "output",
    [
        b"no colon here\n\nbody",
        b"Status: 99 Odd\n\n",
        b"Status: abc\n\n",
        b"X-Bad: a\x00b\n\n",
        b"",
        b"Content-Type: text/plain\n",  # ended before the blank line
    ],
)
def test_bad_output_is_502(output: bytes) -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    if output:
        child.child_writes(1, output)
    if child.status is None:
        child.child_exits(0)
    (response,) = played.connection.responses()
    assert response.status == 502


def test_a_header_block_past_its_bound_is_502_and_the_program_killed() -> None:
    played = Played(max_header_size=100)
    child = played.ask(get("/cgi"))
    child.child_writes(1, b"X-Long: " + b"a" * 200)
    (response,) = played.connection.responses()
    assert response.status == 502
    assert child.signals == [9]


def test_a_program_past_its_timeout_is_killed_with_504() -> None:
    played = Played(timeout=5.0)
    child = played.ask(get("/cgi"))
    played.reactor.clock.advance(4.9)
    assert played.connection.take() == b""
    played.reactor.clock.advance(0.2)
    (response,) = played.connection.responses()
    assert response.status == 504
    assert child.signals == [9]
    child.child_killed(9)
    # Only the connection's idle timer is left, not the program's.
    assert ["_CGIProcess" in repr(c) for c in played.reactor.clock.get_delayed_calls()] == [False]


def test_a_timeout_after_the_head_cuts_the_connection() -> None:
    played = Played(timeout=5.0)
    child = played.ask(get("/cgi"))
    child.child_writes(1, b"Content-Type: text/plain\n\npartial")
    played.reactor.clock.advance(6)
    assert played.connection.transport.aborted
    assert child.signals == [9]


def test_a_client_that_goes_away_kills_the_program() -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    child.child_writes(1, b"Content-Type: text/plain\n\nstart")
    played.connection.lose()
    assert child.signals == [9]
    child.child_killed(9)
    assert played.reactor.clock.get_delayed_calls() == []


def test_the_body_goes_to_stdin_and_content_length_is_set() -> None:
    played = Played()
    child = played.ask(
        b"POST /cgi HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 10\r\n\r\n01234"
    )
    assert played.env["CONTENT_LENGTH"] == "10"
    assert played.env["CONTENT_TYPE"] == "text/plain"
    assert child.value(0) == b"01234"
    assert 0 in child.open_fds
    played.connection.send(b"56789")
    assert child.value(0) == b"0123456789"
    assert 0 not in child.open_fds


def test_a_chunked_body_is_read_whole_for_its_length() -> None:
    played = Played()
    played.connection.send(
        b"POST /cgi HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    assert played.reactor.processes == []
    played.connection.send(b"2\r\nde\r\n0\r\n\r\n")
    assert played.env["CONTENT_LENGTH"] == "5"
    assert played.reactor.processes[0].transport.value(0) == b"abcde"


def test_output_pauses_while_the_client_is_not_reading() -> None:
    played = Played()
    child = played.ask(get("/cgi"))
    played.connection.transport.set_write_buffer_limits(high=100, low=10)
    child.child_writes(1, b"Content-Type: text/plain\n\n" + b"x" * 200)
    assert child.reading_paused
    played.connection.take()  # the network took it
    assert not child.reading_paused


# -- unit: the directory ------------------------------------------------------------------


def test_directory_publishes_executables_only(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("#!/bin/sh\n")
    (tmp_path / "run").chmod(0o755)
    (tmp_path / "data").write_text("x")
    (tmp_path / ".hidden").write_text("#!/bin/sh\n")
    (tmp_path / ".hidden").chmod(0o755)
    (tmp_path / "sub").mkdir()
    reactor = MemoryReactor()
    root = Resource()
    root.put_child("cgi-bin", CGIDirectory(tmp_path, reactor=reactor))
    connection = connect(root, clock=reactor.clock)
    for path, status in [
        ("/cgi-bin/data", 404),
        ("/cgi-bin/.hidden", 404),
        ("/cgi-bin/sub", 404),
        ("/cgi-bin/missing", 404),
        ("/cgi-bin/", 403),
        ("/cgi-bin", 403),
    ]:
        connection.send(get(path))
        (response,) = connection.responses()
        assert response.status == status, path
    connection.send(get("/cgi-bin/run/x/y"))
    (call,) = reactor.processes
    assert call.executable == str(tmp_path / "run")
    assert call.env is not None
    assert call.env["PATH_INFO"] == "/x/y"
    assert call.env["SCRIPT_NAME"] == "/cgi-bin/run"


# -- integration: real programs, curl -------------------------------------------------------


def _script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


ENV_SCRIPT = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv\n"
ECHO_SCRIPT = f"""#!{sys.executable}
import sys
data = sys.stdin.buffer.read()
sys.stdout.buffer.write(b"Status: 201 Made\\r\\n")
sys.stdout.buffer.write(b"Content-Type: application/octet-stream\\r\\n\\r\\n")
sys.stdout.buffer.write(data)
"""
SLOW_SCRIPT = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
echo $$
exec yes
"""


@asynccontextmanager
async def serving(reactor: Reactor, directory: Path, **options: object) -> AsyncIterator[int]:
    root = Resource()
    root.put_child("cgi-bin", CGIDirectory(directory, reactor=reactor, **options))
    listener = reactor.listen_tcp(0, Site(root, reactor=reactor), interface="127.0.0.1")
    try:
        yield listener.port
    finally:
        await listener.stop_listening()


async def run(*argv: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 20)
    assert process.returncode is not None
    return process.returncode, out, err


def curl() -> str:
    return require_peer("curl", package="curl")


@BOTH_LOOPS
async def test_curl_sees_the_cgi_environment(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    _script(tmp_path, "env", ENV_SCRIPT)
    async with serving(reactor, tmp_path) as port:
        code, out, _ = await run(
            curl(),
            "-s",
            "-H",
            "Proxy: http://evil.test:3128",
            "-H",
            "X_Private: 1",
            "-H",
            "X-Public: 2",
            f"http://127.0.0.1:{port}/cgi-bin/env/extra/path?a=1",
        )
    assert code == 0
    env = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)
    assert env["HTTP_X_PUBLIC"] == "2"
    assert "HTTP_PROXY" not in env
    assert "HTTP_X_PRIVATE" not in env
    assert env["PATH_INFO"] == "/extra/path"
    assert env["QUERY_STRING"] == "a=1"
    assert env["SCRIPT_NAME"] == "/cgi-bin/env"
    assert env["SERVER_PORT"] == str(port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"


@BOTH_LOOPS
async def test_curl_upload_is_piped_through(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    _script(tmp_path, "echo", ECHO_SCRIPT)
    body = os.urandom(1 << 20)
    async with serving(reactor, tmp_path) as port:
        url = f"http://127.0.0.1:{port}/cgi-bin/echo"
        code, out, err = await run(curl(), "-sv", "--data-binary", "@-", url, stdin=body)
        assert code == 0
        assert out == body
        assert b"< HTTP/1.1 201 Made" in err
        code, out, _ = await run(
            curl(),
            "-s",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            url,
            stdin=body[:5000],
        )
        assert out == body[:5000]


@BOTH_LOOPS
async def test_a_slow_program_is_killed_at_its_timeout(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    _script(tmp_path, "silent", "#!/bin/sh\nexec sleep 30\n")
    async with serving(reactor, tmp_path, timeout=0.3) as port:
        _, out, _ = await run(
            curl(),
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{port}/cgi-bin/silent",
        )
    assert out == b"504"


async def _exited(pid: int) -> None:
    # Wait for a process (not our child) to end: its pidfd becomes readable.
    loop = asyncio.get_running_loop()
    fd = os.pidfd_open(pid)
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ended.done():
            ended.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(ended, 10)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
@BOTH_LOOPS
async def test_a_client_hanging_up_kills_the_program(
    reactor: Reactor, loop: str, tmp_path: Path
) -> None:
    _script(tmp_path, "slow", SLOW_SCRIPT)
    async with serving(reactor, tmp_path) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /cgi-bin/slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        size_line = await reader.readline()
        chunk = await reader.readexactly(int(size_line, 16))
        pid = int(chunk.split(b"\n")[0])
        # Closing with unread data sends a reset: the server's next write
        # fails, which is how it learns the client is gone (a half-closed
        # client may still be waiting for its answer).
        writer.close()
        await writer.wait_closed()
        await _exited(pid)


# -- properties -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_any_program_output_gives_one_response_or_a_cut(pieces: list[bytes]) -> None:
    played = Played(max_header_size=500)
    child = played.ask(get("/cgi"))
    for piece in pieces:
        if child.status is not None:
            break
        child.child_writes(1, piece)
    if child.status is None:
        child.child_exits(0)
    written = played.connection.take()
    if played.connection.transport.aborted:
        return
    (response,) = read_responses(written)
    assert response.complete
    assert 200 <= response.status <= 599
    assert ["_CGIProcess" in repr(c) for c in played.reactor.clock.get_delayed_calls()] in (
        [],
        [False],
    )
