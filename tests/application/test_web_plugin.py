"""``torsion web``: its options, and the plugin run as an operator runs it, asked by curl."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
from _runner_helpers import (
    ENV,
    Torsion,
    log_lines,
    one_line,
    run_torsion,
    wait_for_log,
    wait_until,
)

from torsion.application._plugins import option_values
from torsion.application._web import WEB, JSONAccessFormatter, parse_vhost
from torsion.testing import MemoryReactor, require_peer

LOCAL = "tcp:0:interface=127.0.0.1"
SITE = Path(__file__).resolve().parents[2] / "examples" / "site"


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The environment for ``torsion``."""
    return ENV


def curl(*argv: str) -> str:
    program = require_peer("curl", package="curl")
    done = subprocess.run(
        [program, "-sS", "--max-time", "10", *argv], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def build(**given: Any) -> Any:
    values = option_values(WEB.options, {k.replace("-", "_"): v for k, v in given.items()})
    return WEB.build(MemoryReactor(), values)


# -- options, without a process --------------------------------------------------------


def test_parse_vhost() -> None:
    assert parse_vhost("example.com=/srv/www") == ("example.com", "/srv/www")
    assert parse_vhost("*.example.com=/srv/a=b") == ("*.example.com", "/srv/a=b")
    for wrong in ("example.com", "=/srv", "example.com=", "a b=/srv", "*.=/srv", "x.*.com=/s"):
        with pytest.raises(ValueError, match="--vhost"):
            parse_vhost(wrong)


def test_something_to_serve_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give something to serve"):
        build()
    with pytest.raises(ValueError, match="not several"):
        build(path=str(SITE), resource_script=str(tmp_path / "x.py"))
    with pytest.raises(ValueError, match="does not exist"):
        build(path=str(tmp_path / "missing"))
    script = tmp_path / "bad.py"
    script.write_text("resource = 42\n")
    with pytest.raises(ValueError, match="must define resource"):
        build(resource_script=str(script))
    script.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="RuntimeError: boom"):
        build(resource_script=str(script))


def test_the_build_listens_nowhere_yet() -> None:
    reactor = MemoryReactor()
    values = option_values(WEB.options, {"path": str(SITE), "listen": [LOCAL, "tcp:0"]})
    app = WEB.build(reactor, values)
    assert reactor.tcp_servers == []
    assert len(list(app)) == 2


def _limits(monkeypatch: pytest.MonkeyPatch, **given: Any) -> Any:
    # The limits the plugin gives the Site it builds.
    import torsion.web

    made: list[torsion.web.Site] = []

    class Seen(torsion.web.Site):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torsion.web, "Site", Seen)
    build(path=str(SITE), **given)
    [site] = made
    return site.limits


def test_limit_options_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from torsion.web import ServerLimits

    assert _limits(monkeypatch) == ServerLimits()
    limits = _limits(
        monkeypatch,
        max_body=1000,
        header_timeout=5.0,
        body_timeout=6.0,
        idle_timeout=7.0,
        write_timeout=8.0,
    )
    assert (
        limits.max_body,
        limits.header_timeout,
        limits.body_timeout,
        limits.idle_timeout,
        limits.write_timeout,
    ) == (1000, 5.0, 6.0, 7.0, 8.0)


@pytest.mark.parametrize(
    "name", ["max-body", "header-timeout", "body-timeout", "idle-timeout", "write-timeout"]
)
def test_limit_options_must_be_positive(name: str) -> None:
    option = WEB.option(name)
    assert option.convert_text("2") == 2
    for wrong in ("0", "-1"):
        with pytest.raises(ValueError, match=f"--{name}: must be more than 0"):
            option.convert_text(wrong)


def test_auth_strings_are_checked() -> None:
    option = WEB.option("auth")
    assert option.convert_text("memory:a:b") == "memory:a:b"
    with pytest.raises(ValueError, match="checks no password"):
        option.convert_text("anonymous")


def test_json_access_lines() -> None:
    line = (
        '192.0.2.2 - - [14/Nov/2023:22:13:20 +0000] "GET /a\\"b?c HTTP/1.1" 200 13 '
        '"-" "curl/8 \\x1b[31m"'
    )
    record = logging.LogRecord("a", logging.INFO, __file__, 1, "%s", (line,), None)
    entry = json.loads(JSONAccessFormatter().format(record))
    assert entry == {
        "client": "192.0.2.2",
        "time": "14/Nov/2023:22:13:20 +0000",
        "request": 'GET /a"b?c HTTP/1.1',
        "method": "GET",
        "target": '/a"b?c',
        "version": "HTTP/1.1",
        "status": 200,
        "bytes": 13,
        "referer": None,
        "user_agent": "curl/8 \x1b[31m",
    }
    other = logging.LogRecord("a", logging.INFO, __file__, 1, "not a line", (), None)
    assert json.loads(JSONAccessFormatter().format(other)) == {"message": "not a line"}


# -- the command -----------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_serving_the_bundled_site(env: dict[str, str], loop: str, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    args = ["web", "--path", str(SITE), "--listen", LOCAL, "--reactor", loop]
    with Torsion(*args, "--access-log", str(log), env=env) as torsion:
        line = torsion.wait_for(r"listening on 127\.0\.0\.1:(\d+).*curl http://127\.0\.0\.1")
        port = int(line.group(1))
        base = f"http://127.0.0.1:{port}"
        assert "It works" in curl(f"{base}/")
        assert "text/css; charset=utf-8" in curl("-I", f"{base}/style.css")
        assert "notes.txt" in curl(f"{base}/files/")
        assert curl("-r", "1-3", f"{base}/images/pixel.png") == "PNG"
        assert "Docs" in curl("-L", f"{base}/docs")
        wait_for_log(log, r'"GET /docs/ HTTP/1\.1" 200 \d+ "-" "curl/')
        assert torsion.stop() == 0
    assert "Traceback" not in "\n".join(torsion.seen)


def test_mktap_then_run_the_file(env: dict[str, str], tmp_path: Path) -> None:
    deployment = tmp_path / "web.toml"
    made = run_torsion(
        "mktap", "web", "--path", str(SITE), "--listen", LOCAL, "-o", str(deployment), env=env
    )
    assert made.returncode == 0, made.stderr
    text = deployment.read_text()
    assert 'plugin = "web"' in text
    assert str(SITE) in text
    with Torsion("-f", str(deployment), env=env) as torsion:
        port = torsion.port()
        assert "It works" in curl(f"http://127.0.0.1:{port}/")
        assert torsion.stop() == 0


def test_virtual_hosts_behind_a_password(env: dict[str, str], tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "index.html").write_text("site one")
    log = tmp_path / "access.jsonl"
    args = [
        "web",
        "--path", str(SITE),
        "--vhost", f"one.test={one}",
        "--auth", "memory:alice:s3cret",
        "--auth-realm", "staff",
        "--listen", LOCAL,
        "--access-log", str(log),
        "--access-log-format", "json",
    ]  # fmt: skip
    with Torsion(*args, env=env) as torsion:
        base = f"http://127.0.0.1:{torsion.port()}/"
        refused = curl("-o", "/dev/null", "-w", "%{http_code} %header{www-authenticate}", base)
        assert refused == '401 Basic realm="staff", charset="UTF-8"'
        assert curl("-u", "alice:s3cret", "-H", "Host: ONE.test:80", base) == "site one"
        assert "It works" in curl("-u", "alice:s3cret", "-H", "Host: other.test", base)
        # One line per request, written once each response is done.
        wait_until(lambda: len(log_lines(log)) >= 3, "three access log lines")
        entries = [json.loads(line) for line in log_lines(log)]
        assert [e["status"] for e in entries][:3] == [401, 200, 200]
        assert entries[1]["request"] == "GET / HTTP/1.1"
        assert torsion.stop() == 0
    # The audit log tells of the refusal in the runner's log, without a password.
    assert "s3cret" not in "\n".join(torsion.seen)


def test_a_resource_script_over_tls(env: dict[str, str], tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    script = tmp_path / "hello.py"
    script.write_text(
        "from torsion.web import Request, Resource, handles\n\n\n"
        "class Hello(Resource):\n"
        "    is_leaf = True\n\n"
        "    @handles('GET')\n"
        "    def get(self, request: Request) -> bytes:\n"
        "        secure = 'https' if request.is_secure else 'http'\n"
        "        return f'hello over {secure}, reactor {reactor is not None}'.encode()\n\n\n"
        "resource = Hello()\n"
    )
    listen = f"tls:0:interface=127.0.0.1:privateKey={key_file}:certKey={cert_file}"
    args = ["web", "--resource-script", str(script), "--listen", listen]
    with Torsion(*args, env=env) as torsion:
        line = torsion.wait_for(r"listening on 127\.0\.0\.1:(\d+).*curl -k https://")
        url = f"https://127.0.0.1:{line.group(1)}/anything"
        assert curl("--cacert", str(ca_file), url) == "hello over https, reactor True"
        # HTTP/2 by ALPN on tls: listeners; HTTP/1.1 for clients asking for it.
        for option, version in (("--http2", "2"), ("--http1.1", "1.1")):
            answer = curl("--cacert", str(ca_file), option, "-w", " %{http_version}", url)
            assert answer == f"hello over https, reactor True {version}"
        assert torsion.stop() == 0


def test_tls_listeners_offer_http2_unless_told_otherwise() -> None:
    from torsion.application._web import _is_tls, _with_alpn

    assert _is_tls("tls:443:certKey=c.pem")
    assert _is_tls("haproxy:ssl:443")
    assert not _is_tls("tcp:8080")
    assert not _is_tls("unix:/run/web.sock")
    assert _with_alpn("tls:443:certKey=c.pem") == "tls:443:certKey=c.pem:alpn=h2,http/1.1"
    assert _with_alpn("tls:443:alpn=http/1.1") == "tls:443:alpn=http/1.1"


def test_nothing_to_serve_is_a_usage_error(env: dict[str, str]) -> None:
    result = run_torsion("web", "--listen", LOCAL, env=env)
    assert result.returncode == 2
    assert "give something to serve" in one_line(result.stderr)


WSGI_APP = """\
def application(environ, start_response):
    body = f"wsgi {environ['PATH_INFO']} {environ['QUERY_STRING']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI_APP = """\
import contextlib
import pathlib

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

LOG = pathlib.Path(__file__).with_name("lifespan.log")


@contextlib.asynccontextmanager
async def lifespan(app):
    LOG.write_text("started\\n")
    yield
    with LOG.open("a") as log:
        log.write("stopped\\n")


async def hello(request):
    return PlainTextResponse(f"asgi {request.path_params['name']}")


app = Starlette(routes=[Route("/hello/{name}", hello)], lifespan=lifespan)
"""


def test_a_wsgi_application(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "wsgiapp.py").write_text(WSGI_APP)
    args = ["web", "--wsgi", "wsgiapp:application", "--listen", LOCAL]
    with Torsion(*args, env=env, cwd=str(tmp_path)) as torsion:
        base = f"http://127.0.0.1:{torsion.port()}"
        assert curl(f"{base}/some/where?x=1") == "wsgi /some/where x=1"
        assert torsion.stop() == 0


def test_an_asgi_application_with_its_lifespan(env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    (tmp_path / "asgiapp.py").write_text(ASGI_APP)
    args = ["web", "--asgi", "asgiapp:app", "--listen", LOCAL]
    with Torsion(*args, env=env, cwd=str(tmp_path)) as torsion:
        port = torsion.port()
        # Served once the startup has run (a request may wait for it).
        assert curl(f"http://127.0.0.1:{port}/hello/you") == "asgi you"
        assert (tmp_path / "lifespan.log").read_text() == "started\n"
        assert torsion.stop() == 0
    assert (tmp_path / "lifespan.log").read_text() == "started\nstopped\n"


def test_bad_applications_are_usage_errors(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('no')\n")
    cases = [
        (["--wsgi", "nosuchmodule:app"], "--wsgi: "),
        (["--asgi", "broken:app"], "--asgi: "),
        (["--wsgi", "no-colon"], "--wsgi: "),
        (["--path", str(SITE), "--wsgi", "x:y"], "give one of --path, --wsgi, not several"),
    ]
    for extra, message in cases:
        result = run_torsion("web", *extra, "--listen", LOCAL, env=env, cwd=str(tmp_path))
        assert result.returncode == 2, result.stderr
        assert message in one_line(result.stderr)
