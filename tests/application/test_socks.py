"""``torsion socks``: the proxy plugin, its destination rules, and real clients through it."""

from __future__ import annotations

import http.server
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runner_helpers import DEADLINE, Torsion, one_line, run_torsion

from torsion.application._socks import destination_rules, parse_ports
from torsion.testing import require_peer

LOCAL = "tcp:0:interface=127.0.0.1"


def test_parse_ports() -> None:
    assert parse_ports("80,443, 8000-8100") == [80, 443, (8000, 8100)]
    for wrong in ("", "http", "0", "90-80", "1-70000", "80,"):
        with pytest.raises(ValueError, match="--ports"):
            parse_ports(wrong)


def test_rules_deny_first_then_allow_then_the_default() -> None:
    rules = destination_rules(
        allow=["127.0.0.1", "10.0.0.0/8", ".example.com"],
        deny=["10.9.0.0/16", "bad.example.com"],
        ports=None,
        default="allow",
    )
    assert rules.check("127.0.0.1", 7).allowed  # opened by naming it
    assert not rules.check("127.0.0.2", 7).allowed  # loopback stays protected
    assert rules.check("10.1.2.3", 22).allowed
    assert not rules.check("10.9.1.1", 22).allowed
    assert rules.check("192.0.2.1", 80, name="www.example.com").allowed
    assert not rules.check("192.0.2.1", 80, name="bad.example.com").allowed
    assert rules.check("198.51.100.7", 25).allowed  # the default


def test_ports_close_everything_else() -> None:
    only_web = destination_rules(allow=[], deny=[], ports="80,443", default="allow")
    assert only_web.check("198.51.100.7", 443).allowed
    assert not only_web.check("198.51.100.7", 22).allowed
    assert not only_web.check("127.0.0.1", 80).allowed  # still protected
    narrow = destination_rules(allow=["127.0.0.1"], deny=[], ports="7", default="allow")
    assert narrow.check("127.0.0.1", 7).allowed
    assert not narrow.check("127.0.0.1", 8).allowed
    assert not narrow.check("198.51.100.7", 7).allowed
    closed = destination_rules(allow=[], deny=[], ports=None, default="deny")
    assert not closed.check("198.51.100.7", 80).allowed


def socks5_connect(proxy: int, port: int) -> tuple[socket.socket, int]:
    """A SOCKS 5 CONNECT to 127.0.0.1:port (RFC 1928); returns the socket and reply code."""
    sock = socket.create_connection(("127.0.0.1", proxy), timeout=DEADLINE)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
    reply = b""
    while len(reply) < 10:
        chunk = sock.recv(10 - len(reply))
        if not chunk:
            break
        reply += chunk
    return sock, reply[1]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_socks5_client_reaches_an_allowed_destination(loop: str) -> None:
    with (
        Torsion("echo", "--listen", LOCAL) as echo,
        Torsion("socks", "--listen", LOCAL, "--allow", "127.0.0.1", "--reactor", loop) as socks,
    ):
        echo_port, proxy = echo.port(), socks.port()
        sock, code = socks5_connect(proxy, echo_port)
        with sock:
            assert code == 0x00
            sock.sendall(b"through the proxy\n")
            assert sock.recv(100) == b"through the proxy\n"
        assert socks.stop() == 0
        assert echo.stop() == 0


def test_loopback_is_refused_unless_allowed() -> None:
    with Torsion("echo", "--listen", LOCAL) as echo, Torsion("socks", "--listen", LOCAL) as socks:
        sock, code = socks5_connect(socks.port(), echo.port())
        sock.close()
        assert code == 0x02  # connection not allowed by ruleset
        assert socks.stop() == 0
        assert echo.stop() == 0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(DEADLINE)


def test_curl_through_the_proxy(http_server: int) -> None:
    curl = require_peer("curl", package="curl")
    with Torsion("socks", "--listen", LOCAL, "--allow", "127.0.0.1", "--no-socks4") as socks:
        proxy = socks.port()
        for flag in ("--socks5-hostname", "--socks5"):
            fetch = [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}"]
            result = subprocess.run(
                [*fetch, flag, f"127.0.0.1:{proxy}", f"http://127.0.0.1:{http_server}/"],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
                check=False,
            )
            assert result.stdout == "200", result.stderr
        # SOCKS 4 is off: curl's SOCKS 4a attempt is refused.
        refused = subprocess.run(
            [curl, "-s", "--socks4a", f"127.0.0.1:{proxy}", f"http://127.0.0.1:{http_server}/"],
            capture_output=True,
            timeout=DEADLINE,
            check=False,
        )
        assert refused.returncode != 0
        assert socks.stop() == 0


def test_curl_with_a_password_checked_by_torsion_cred(http_server: int, tmp_path: Path) -> None:
    curl = require_peer("curl", package="curl")
    htpasswd = tmp_path / "users"
    made = run_torsion("passwd", str(htpasswd), "bob", "--stdin", input="builder\n")
    assert made.returncode == 0, made.stderr
    auth = ["--auth", "memory:alice:wonderland", "--auth", f"file:{htpasswd}"]
    with Torsion("socks", "--listen", LOCAL, "--allow", "127.0.0.1", *auth) as socks:
        proxy = socks.port()
        url = f"http://127.0.0.1:{http_server}/"
        fetch = [
            curl,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--socks5",
            f"127.0.0.1:{proxy}",
        ]
        for user in ("alice:wonderland", "bob:builder"):
            result = subprocess.run(
                [*fetch, "--proxy-user", user, url],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
                check=False,
            )
            assert result.stdout == "200", (user, result.stderr)
        for refused in (["--proxy-user", "alice:guess"], []):
            result = subprocess.run(
                [*fetch, *refused, url], capture_output=True, timeout=DEADLINE, check=False
            )
            assert result.returncode != 0
        assert socks.stop() == 0


def test_bad_socks_options() -> None:
    result = run_torsion("socks", "--ports", "web")
    assert result.returncode == 2
    assert "'web' is not a list such as 80,443,8000-8100" in one_line(result.stderr)
    result = run_torsion("socks", "--allow", "not a host")
    assert result.returncode == 2
    assert one_line(result.stderr) == "torsion: not a host name or .suffix: 'not a host'"
    result = run_torsion("socks", "--auth", "anonymous")
    assert result.returncode == 2
    assert "anonymous checks no password" in one_line(result.stderr)
