"""Tests for Request's helpers: cookies, forms, sessions and preconditions.

Unit tests on a fake connection (no sockets, a fake clock), then curl
against a Site on 127.0.0.1 on both loops, over HTTP/1.1 and HTTP/2.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import pytest
import trustme
from _http_server_helpers import Connection, Response, connect, get

from torsion.defer import Deferred, gather
from torsion.internet import Address, Reactor, ServerTLS
from torsion.testing import Clock, StringTransport, require_peer
from torsion.web import (
    CookieError,
    ETag,
    HTTPChannel,
    MultipartForm,
    Precondition,
    Request,
    Resource,
    ResponseStateError,
    ServerLimits,
    SessionStore,
    Site,
    handles,
)

Handler = Callable[[Request], Coroutine[Any, Any, bytes | None]]


class Probe(Resource):
    """Runs the test's ``action`` (a coroutine) for every GET and POST."""

    is_leaf = True
    requests: ClassVar[list[Request]] = []
    action: ClassVar[Handler]

    @handles("GET", "POST", "PUT")
    async def handle(self, request: Request) -> bytes | None:
        Probe.requests.append(request)
        return await Probe.action(request)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Probe.requests = []


def on(action: Handler, clock: Clock | None = None) -> Connection:
    Probe.action = staticmethod(action)
    return connect(Probe(), clock=clock)


def post(body: bytes, content_type: str | None, *extra: str) -> bytes:
    lines = ["POST /form HTTP/1.1", "Host: example.test", f"Content-Length: {len(body)}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [*extra, "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def one(conn: Connection) -> Response:
    [response] = conn.responses()
    return response


BOUNDARY = "xYzZY"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename, data) parts."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: text/plain\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# -- cookies -----------------------------------------------------------------------


def test_cookies_come_from_every_cookie_field_and_the_first_value_wins() -> None:
    async def action(request: Request) -> bytes:
        return repr(sorted(request.cookies.items())).encode()

    conn = on(action)
    conn.send(get("/", 'Cookie: a=1; b="two"', "Cookie: a=3;c=4"))
    assert one(conn).body == b"[('a', '1'), ('b', 'two'), ('c', '4')]"
    # Parsed once: the same dict every time.
    [request] = Probe.requests
    assert request.cookies is request.cookies
    conn.lose()


def test_cookies_are_bounded() -> None:
    async def action(request: Request) -> bytes:
        return b"%d" % len(request.cookies)

    conn = on(action)
    many = "; ".join(f"c{i}=v" for i in range(100))
    conn.send(get("/", f"Cookie: {many}"))
    assert one(conn).body == b"64"
    conn.send(get("/", "Cookie: a=" + "x" * 5000, "Cookie: b=" + "y" * 5000))
    assert one(conn).body == b"0"
    conn.send(get("/"))
    assert one(conn).body == b"0"
    conn.lose()


def test_add_cookie_sets_safe_defaults() -> None:
    async def action(request: Request) -> bytes:
        request.add_cookie("theme", "dark")
        request.add_cookie("id", "42", max_age=60, path="/app", same_site=None, http_only=False)
        return b"ok"

    conn = on(action)
    conn.send(get("/"))
    assert one(conn).all(b"set-cookie") == [
        b"theme=dark; Path=/; HttpOnly; SameSite=Lax",
        b"id=42; Max-Age=60; Path=/app",
    ]
    conn.lose()


class _TLS:
    def selected_alpn_protocol(self) -> str:
        return "http/1.1"


def test_add_cookie_is_secure_by_default_on_tls() -> None:
    async def action(request: Request) -> bytes:
        request.add_cookie("theme", "dark")
        request.add_cookie("plain", "1", secure=False)
        return b"ok"

    Probe.action = staticmethod(action)
    site = Site(Probe(), reactor=Clock())
    protocol = site(None)  # type: ignore[arg-type]
    # TLS that chose http/1.1 by ALPN keeps the connection on HTTP/1.1.
    transport = StringTransport(protocol, extra={"ssl_object": _TLS()})
    protocol.connection_made(transport)
    conn = Connection(site, protocol, transport, Clock())
    conn.send(get("/"))
    assert one(conn).all(b"set-cookie") == [
        b"theme=dark; Path=/; Secure; HttpOnly; SameSite=Lax",
        b"plain=1; Path=/; HttpOnly; SameSite=Lax",
    ]
    conn.lose()


def test_add_cookie_refuses_injection_and_a_started_response() -> None:
    errors: list[type[Exception]] = []

    async def action(request: Request) -> None:
        for value in ("a;Domain=evil", "a\r\nX: y", "a b"):
            try:
                request.add_cookie("n", value)
            except CookieError as exc:
                errors.append(type(exc))
        request.write(b"started")
        try:
            request.add_cookie("n", "v")
        except ResponseStateError as exc:
            errors.append(type(exc))
        request.finish()

    conn = on(action)
    conn.send(get("/"))
    response = one(conn)
    assert response.body == b"started"
    assert response.all(b"set-cookie") == []
    assert errors == [CookieError, CookieError, CookieError, ResponseStateError]
    conn.lose()


# -- forms ---------------------------------------------------------------------------


def describe(form: MultipartForm) -> bytes:
    files = {
        name: [(f.filename, f.read()) for f in uploads] for name, uploads in form.files.items()
    }
    return repr((form.fields, files)).encode()


def test_urlencoded_form() -> None:
    async def action(request: Request) -> bytes:
        form = await request.form()
        assert await request.form() is form
        return describe(form)

    conn = on(action)
    conn.send(post(b"a=1&b=x+y&a=%C3%A9&empty", "application/x-www-form-urlencoded"))
    assert one(conn).body == repr(({"a": ["1", "\xe9"], "b": ["x y"], "empty": [""]}, {})).encode()
    conn.lose()


def test_urlencoded_body_arriving_in_pieces() -> None:
    async def action(request: Request) -> bytes:
        return describe(await request.form())

    conn = on(action)
    data = post(b"name=torsion&v=1", "application/x-www-form-urlencoded; charset=UTF-8")
    for index in range(len(data)):
        conn.send(data[index : index + 1])
    assert one(conn).body == repr(({"name": ["torsion"], "v": ["1"]}, {})).encode()
    conn.lose()


def test_a_request_without_a_body_has_an_empty_form() -> None:
    async def action(request: Request) -> bytes:
        return describe(await request.form())

    conn = on(action)
    conn.send(get("/?a=1"))
    assert one(conn).body == repr(({}, {})).encode()
    conn.lose()


def test_multipart_form_with_a_file_is_streamed_and_cleaned_up(tmp_path: Path) -> None:
    uploads: list[Any] = []

    async def action(request: Request) -> bytes:
        form = await request.form(spool_size=4, spool_directory=str(tmp_path))
        uploads.extend(form.files["upload"])
        assert not uploads[0].file.closed
        return describe(form)

    body = multipart(("title", None, b"A title"), ("upload", "notes.txt", b"line 1\r\nline 2\n"))
    conn = on(action)
    data = post(body, MULTIPART)
    # In odd pieces: the parser gets each as it comes.
    for index in range(0, len(data), 7):
        conn.send(data[index : index + 7])
    assert (
        one(conn).body
        == repr(
            ({"title": ["A title"]}, {"upload": [("notes.txt", b"line 1\r\nline 2\n")]})
        ).encode()
    )
    # The response is finished: the file is gone.
    assert uploads[0].file.closed
    assert list(tmp_path.iterdir()) == []
    conn.lose()


def test_multipart_form_reads_with_backpressure() -> None:
    gate: Deferred[None] = Deferred()

    async def action(request: Request) -> bytes:
        await gate
        return describe(await request.form())

    Probe.action = staticmethod(action)
    conn = connect(Probe(), limits=ServerLimits(body_buffer=64))
    data = post(multipart(("f", "big.txt", b"0123456789" * 200)), MULTIPART)
    half = len(data) // 2
    for index in range(0, half, 100):
        conn.send(data[index : min(index + 100, half)])
    # The handler reads nothing yet: reading from the client stops.
    assert not conn.transport.is_reading()
    gate.callback(None)
    # The form consumed what was held: reading goes on.
    assert conn.transport.is_reading()
    assert conn.take() == b""
    conn.send(data[half:])
    assert one(conn).body == repr(({}, {"f": [("big.txt", b"0123456789" * 200)]})).encode()
    conn.lose()


def test_form_files_are_removed_when_the_connection_is_lost_after_parsing() -> None:
    uploads: list[Any] = []
    gate: Deferred[None] = Deferred()

    async def action(request: Request) -> bytes:
        form = await request.form()
        uploads.extend(form.files["f"])
        await gate
        return b"never"

    conn = on(action)
    conn.send(post(multipart(("f", "a.bin", b"\x00\x01")), MULTIPART))
    assert uploads
    assert not uploads[0].file.closed
    conn.lose()
    assert uploads[0].file.closed
    gate.callback(None)


def test_connection_lost_mid_multipart_leaves_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome: list[BaseException] = []
    spooled: list[IO[bytes]] = []
    make = tempfile.SpooledTemporaryFile

    def recording(**kwargs: Any) -> IO[bytes]:
        file = make(**kwargs)
        spooled.append(file)
        return file

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", recording)

    async def action(request: Request) -> bytes:
        try:
            await request.form(spool_size=1)
        except ConnectionResetError as exc:
            outcome.append(exc)
        return b"never"

    conn = on(action)
    data = post(multipart(("f", "a.bin", b"x" * 1000)), MULTIPART)
    conn.send(data[: len(data) - 200])
    [file] = spooled
    assert not file.closed
    conn.lose()
    assert [type(exc) for exc in outcome] == [ConnectionResetError]
    assert file.closed


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        # No closing delimiter, a part without a name, a bad boundary.
        (b"--xYzZY\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n", MULTIPART, 400),
        (b"--xYzZY\r\nContent-Type: text/plain\r\n\r\nv\r\n--xYzZY--\r\n", MULTIPART, 400),
        (b"whatever", "multipart/form-data", 400),
        (b"a=1", "text/plain", 415),
        (b"a=1", None, 415),
    ],
)
def test_bad_forms_are_answered_with_their_status(
    body: bytes, content_type: str | None, status: int
) -> None:
    async def action(request: Request) -> bytes:
        await request.form()
        return b"accepted"

    conn = on(action)
    conn.send(post(body, content_type))
    response = one(conn)
    assert response.status == status
    assert b"accepted" not in response.body
    conn.lose()


def test_forms_over_their_limits_get_413() -> None:
    async def small(request: Request) -> bytes:
        await request.form(max_urlencoded=10, max_total_size=100)
        return b"accepted"

    conn = on(small)
    conn.send(post(b"a=" + b"x" * 20, "application/x-www-form-urlencoded"))
    assert one(conn).status == 413
    conn.lose()
    conn = on(small)
    conn.send(post(multipart(("f", "a", b"x" * 200)), MULTIPART))
    assert one(conn).status == 413
    conn.lose()


def test_too_many_urlencoded_fields_get_413() -> None:
    async def action(request: Request) -> bytes:
        await request.form(max_fields=10)
        return b"accepted"

    conn = on(action)
    conn.send(
        post(b"&".join(b"f%d=1" % i for i in range(11)), "application/x-www-form-urlencoded")
    )
    assert one(conn).status == 413
    conn.lose()


# -- sessions ---------------------------------------------------------------------------


def session_cookie(response: Response, name: str = "TORSION_SESSION") -> str | None:
    for value in response.all(b"set-cookie"):
        pair = value.split(b";", 1)[0].decode()
        key, _, session_id = pair.partition("=")
        if key == name:
            return session_id
    return None


def test_session_is_made_with_its_cookie_and_found_again() -> None:
    clock = Clock()
    store = SessionStore(clock, sweep_interval=None)

    async def action(request: Request) -> bytes:
        session = request.session(store)
        assert session is not None
        assert request.session(store) is session
        session.data["visits"] = session.data.get("visits", 0) + 1
        return b"%d" % session.data["visits"]

    conn = on(action, clock)
    conn.send(get("/"))
    first = one(conn)
    assert first.body == b"1"
    [cookie] = first.all(b"set-cookie")
    assert cookie.endswith(b"; Path=/; HttpOnly; SameSite=Lax")
    session_id = session_cookie(first)
    assert session_id is not None
    assert len(store) == 1
    conn.send(get("/", f"Cookie: other=1; TORSION_SESSION={session_id}"))
    second = one(conn)
    assert second.body == b"2"
    assert second.all(b"set-cookie") == []
    # An unknown id gets a new session, never the one named.
    conn.send(get("/", "Cookie: TORSION_SESSION=forged"))
    third = one(conn)
    assert third.body == b"1"
    assert session_cookie(third) not in (None, "forged", session_id)
    assert len(store) == 2
    conn.lose()
    store.close()


def test_session_without_create_is_none_and_sets_nothing() -> None:
    clock = Clock()
    store = SessionStore(clock, sweep_interval=None)

    async def action(request: Request) -> bytes:
        return repr(request.session(store, create=False)).encode()

    conn = on(action, clock)
    conn.send(get("/"))
    response = one(conn)
    assert response.body == b"None"
    assert response.all(b"set-cookie") == []
    assert len(store) == 0
    conn.lose()


def test_rotation_sends_one_cookie_with_the_new_id_and_expiry_clears_it() -> None:
    clock = Clock()
    store = SessionStore(clock, sweep_interval=None)
    ids: list[str] = []

    async def login(request: Request) -> bytes:
        session = request.session(store)
        assert session is not None
        ids.append(session.id)
        assert request.rotate_session(store) is session
        ids.append(session.id)
        return b"in"

    conn = on(login, clock)
    conn.send(get("/"))
    response = one(conn)
    # Made then rotated in one response: only the newest cookie goes.
    assert len(response.all(b"set-cookie")) == 1
    assert session_cookie(response) == ids[1] != ids[0]
    assert store.get(ids[0]) is None
    conn.lose()

    async def logout(request: Request) -> bytes:
        request.add_cookie("kept", "1")
        request.expire_session(store)
        return b"out"

    conn = on(logout, clock)
    conn.send(get("/", f"Cookie: TORSION_SESSION={ids[1]}"))
    response = one(conn)
    assert response.all(b"set-cookie") == [
        b"kept=1; Path=/; HttpOnly; SameSite=Lax",
        b"TORSION_SESSION=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax",
    ]
    assert len(store) == 0
    conn.lose()


def test_session_after_the_response_started_is_refused() -> None:
    clock = Clock()
    store = SessionStore(clock, sweep_interval=None)
    errors: list[Exception] = []

    async def action(request: Request) -> None:
        request.write(b"x")
        try:
            request.session(store)
        except ResponseStateError as exc:
            errors.append(exc)
        try:
            request.rotate_session(store)
        except ResponseStateError as exc:
            errors.append(exc)
        request.finish()

    conn = on(action, clock)
    conn.send(get("/"))
    assert one(conn).body == b"x"
    assert len(errors) == 2
    assert len(store) == 0
    conn.lose()


# -- preconditions -----------------------------------------------------------------------

TAG = ETag("v1")
MODIFIED = 1_700_000_000.0


def conditional(outcomes: list[Precondition]) -> Handler:
    async def action(request: Request) -> bytes:
        outcome = request.check_preconditions(etag=TAG, last_modified=MODIFIED)
        outcomes.append(outcome)
        if outcome is not Precondition.PROCEED:
            return b""
        return b"the representation"

    return action


def test_unconditional_request_proceeds_with_validators() -> None:
    outcomes: list[Precondition] = []
    conn = on(conditional(outcomes))
    conn.send(get("/"))
    response = one(conn)
    assert response.status == 200
    assert response.body == b"the representation"
    assert response.header(b"etag") == b'"v1"'
    assert response.header(b"last-modified") == b"Tue, 14 Nov 2023 22:13:20 GMT"
    assert outcomes == [Precondition.PROCEED]
    conn.lose()


@pytest.mark.parametrize(
    "field",
    [
        'If-None-Match: "v0", W/"v1"',
        "If-None-Match: *",
        "If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT",
        "If-Modified-Since: Wed, 15 Nov 2023 00:00:00 GMT",
    ],
)
def test_matching_get_is_answered_304_without_a_body(field: str) -> None:
    outcomes: list[Precondition] = []
    conn = on(conditional(outcomes))
    conn.send(get("/", field))
    response = one(conn)
    assert response.status == 304
    assert response.body == b""
    assert response.header(b"content-length") is None
    assert response.header(b"etag") == b'"v1"'
    assert outcomes == [Precondition.NOT_MODIFIED]
    # The connection goes on: the next request is answered in full.
    conn.send(get("/", 'If-None-Match: "v0"', "If-Modified-Since: Mon, 13 Nov 2023 00:00:00 GMT"))
    assert one(conn).body == b"the representation"
    conn.lose()


@pytest.mark.parametrize(
    "field",
    ['If-Match: "v0"', 'If-Match: W/"v1"', "If-Unmodified-Since: Mon, 13 Nov 2023 00:00:00 GMT"],
)
def test_failed_precondition_on_put_is_412(field: str) -> None:
    outcomes: list[Precondition] = []
    conn = on(conditional(outcomes))
    conn.send(post(b"new", "text/plain", field).replace(b"POST", b"PUT", 1))
    response = one(conn)
    assert response.status == 412
    assert response.body == b""
    assert outcomes == [Precondition.PRECONDITION_FAILED]
    conn.lose()


def test_if_none_match_on_put_is_412_and_on_head_304() -> None:
    outcomes: list[Precondition] = []
    conn = on(conditional(outcomes))
    conn.send(post(b"new", "text/plain", 'If-None-Match: "v1"').replace(b"POST", b"PUT", 1))
    assert one(conn).status == 412
    conn.send(get("/", 'If-None-Match: "v1"').replace(b"GET", b"HEAD", 1))
    [response] = conn.responses()
    assert response.status == 304
    assert outcomes == [Precondition.PRECONDITION_FAILED, Precondition.NOT_MODIFIED]
    conn.lose()


def test_check_preconditions_after_the_response_started_is_refused() -> None:
    errors: list[Exception] = []

    async def action(request: Request) -> None:
        request.write(b"x")
        try:
            request.check_preconditions(etag=TAG)
        except ResponseStateError as exc:
            errors.append(exc)
        request.finish()

    conn = on(action)
    conn.send(get("/"))
    assert one(conn).body == b"x"
    assert len(errors) == 1
    conn.lose()


# -- curl on 127.0.0.1 ---------------------------------------------------------------------

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)
HTTP_VERSIONS = pytest.mark.parametrize("http", ["--http1.1", "--http2-prior-knowledge"])


class FormPage(Resource):
    """Answers a POSTed form with its fields and each file's name and data."""

    is_leaf = True

    @handles("POST")
    async def post(self, request: Request) -> bytes:
        form = await request.form()
        lines = [f"{name}={value}" for name, values in form.fields.items() for value in values]
        for name, uploads in form.files.items():
            lines += [f"{name}:{u.safe_filename}:{u.read().decode()}" for u in uploads]
        request.response_headers.set(b"Content-Type", b"text/plain; charset=utf-8")
        return "\n".join(lines).encode()


class Visits(Resource):
    """Counts a client's visits in its session; a ``theme`` query sets a cookie."""

    is_leaf = True

    def __init__(self, store: SessionStore) -> None:
        super().__init__()
        self.store = store

    @handles("GET")
    def get(self, request: Request) -> bytes:
        session = request.session(self.store)
        assert session is not None
        session.data["visits"] = visits = session.data.get("visits", 0) + 1
        for theme in request.args.get("theme", []):
            request.add_cookie("theme", theme)
        request.response_headers.set(b"Content-Type", b"text/plain")
        request.response_headers.set(b"Cache-Control", b"no-store")
        return f"visits={visits} theme={request.cookies.get('theme')}".encode()


class Document(Resource):
    """A representation with validators, answering conditional requests."""

    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        request.response_headers.set(b"Content-Type", b"text/plain; charset=utf-8")
        if request.check_preconditions(etag=TAG, last_modified=MODIFIED) is not (
            Precondition.PROCEED
        ):
            return b""
        return b"the representation\n"


@dataclass
class Served:
    url: str
    store: SessionStore


class Tracked(HTTPChannel):
    """A channel whose end the test waits for, so nothing is left open."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.closed: Deferred[None] = Deferred()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closed.callback(None)


@asynccontextmanager
async def serving(reactor: Reactor, tls: ServerTLS | None = None) -> AsyncIterator[Served]:
    store = SessionStore(reactor)
    root = Resource()
    root.put_child("form", FormPage())
    root.put_child("visits", Visits(store))
    root.put_child("doc", Document())
    site = Site(root, reactor=reactor)
    channels: list[Tracked] = []

    def factory(address: Address) -> HTTPChannel:
        channel = Tracked(site)
        channels.append(channel)
        return channel

    if tls is None:
        listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
        url = f"http://127.0.0.1:{listener.port}"
    else:
        listener = reactor.listen_tls(0, factory, tls, interface="127.0.0.1")
        url = f"https://127.0.0.1:{listener.port}"
    try:
        yield Served(url, store)
    finally:
        await listener.stop_listening()
        await asyncio.wait_for(gather([c.closed for c in channels]), 10)
        store.close()


async def curl(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        require_peer("curl", package="curl"),
        "-sS",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.integration
@BOTH_LOOPS
@HTTP_VERSIONS
async def test_curl_uploads_a_file_with_fields(
    reactor: Reactor, loop: str, http: str, tmp_path: Path
) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"first line\nsecond line\n" * 1000)
    async with serving(reactor) as served:
        out = await curl(
            http, "-F", "title=A title", "-F", f"upload=@{upload}", served.url + "/form"
        )
    assert out == "title=A title\nupload:notes.txt:" + "first line\nsecond line\n" * 1000


@pytest.mark.integration
@BOTH_LOOPS
@HTTP_VERSIONS
async def test_curl_posts_a_urlencoded_form(reactor: Reactor, loop: str, http: str) -> None:
    async with serving(reactor) as served:
        out = await curl(
            http, "-d", "a=1&b=x+y", "--data-urlencode", "c=caf\u00e9 & co", served.url + "/form"
        )
    assert out == "a=1\nb=x y\nc=caf\u00e9 & co"


@pytest.mark.integration
@BOTH_LOOPS
@HTTP_VERSIONS
async def test_curl_keeps_a_session_and_cookies_across_requests(
    reactor: Reactor, loop: str, http: str, tmp_path: Path
) -> None:
    jar = str(tmp_path / "jar")
    async with serving(reactor) as served:
        url = served.url + "/visits"
        first = await curl(http, "-c", jar, "-b", jar, url + "?theme=dark")
        second = await curl(http, "-c", jar, "-b", jar, url)
        third = await curl(http, "-c", jar, "-b", jar, url)
        stranger = await curl(http, url)
        assert len(served.store) == 2
    assert first == "visits=1 theme=None"
    assert second == "visits=2 theme=dark"
    assert third == "visits=3 theme=dark"
    assert stranger == "visits=1 theme=None"
    # curl's jar marks HttpOnly cookies so; the session cookie is one.
    # A small file, read after the servers are gone.
    lines = Path(jar).read_text().splitlines()  # noqa: ASYNC240
    names = {line.split("\t")[5] for line in lines if line.startswith("#HttpOnly_127.0.0.1")}
    assert names == {"TORSION_SESSION", "theme"}


@pytest.mark.integration
@BOTH_LOOPS
@HTTP_VERSIONS
async def test_curl_gets_304_for_a_matching_etag(reactor: Reactor, loop: str, http: str) -> None:
    async with serving(reactor) as served:
        url = served.url + "/doc"
        full = await curl(http, "-i", url)
        matched = await curl(http, "-i", "-H", 'If-None-Match: "v1"', url)
        dated = await curl(
            http,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-z",
            "Tue, 14 Nov 2023 22:13:20 GMT",
            url,
        )
        other = await curl(
            http, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", 'If-None-Match: "v0"', url
        )
    assert full.split()[1] == "200"
    assert full.endswith("\r\n\r\nthe representation\n")
    assert 'etag: "v1"' in full.lower()
    assert matched.split()[1] == "304"
    assert matched.endswith("\r\n\r\n")
    assert 'etag: "v1"' in matched.lower()
    assert dated == "304"
    assert other == "200"


@pytest.mark.integration
@BOTH_LOOPS
@pytest.mark.parametrize(("http", "version"), [("--http1.1", "1.1"), ("--http2", "2")])
async def test_cookies_are_secure_over_tls(
    reactor: Reactor, loop: str, http: str, version: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ServerTLS(str(cert), alpn=("h2", "http/1.1"))
    async with serving(reactor, tls) as served:
        out = await curl(
            http,
            "--cacert",
            str(ca_file),
            "-w",
            "%{http_version}",
            "-D",
            "-",
            "-o",
            "/dev/null",
            served.url + "/visits?theme=dark",
        )
    head, _, used = out.rpartition("\r\n\r\n")
    assert used == version
    cookies = sorted(
        line.split(":", 1)[1].strip()
        for line in head.splitlines()
        if line.lower().startswith("set-cookie:")
    )
    assert len(cookies) == 2
    assert cookies[0].startswith("TORSION_SESSION=")
    assert cookies[0].endswith("; Path=/; Secure; HttpOnly; SameSite=Lax")
    assert cookies[1] == "theme=dark; Path=/; Secure; HttpOnly; SameSite=Lax"
