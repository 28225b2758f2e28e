"""CGI (RFC 3875): run a program for each request and answer with what it writes.

``CGIScript`` runs one program; ``CGIDirectory`` publishes the executable
files of a directory, each as a ``CGIScript`` (the path below the script
becomes ``PATH_INFO``). The program gets the request's meta-variables in its
environment and the request body on its standard input, streamed as it
arrives; what it writes on standard output is a header block, a blank line
and the body, which is streamed to the client as the client takes it.

The environment is built afresh, never inherited: the RFC 3875 section 4.1
meta-variables, ``PATH``, what the resource was given, and one ``HTTP_*``
variable per client field. Client fields whose names hold ``_`` are dropped
(``X_Forwarded_For`` would pass for ``X-Forwarded-For``), and so is
``Proxy``: as ``HTTP_PROXY`` it would name the proxy of every HTTP library
the program uses ("httpoxy", CVE-2016-5385). ``Authorization`` is not passed
(RFC 3875 section 4.1.18 leaves credentials to the server); ``AUTH_TYPE``
names its scheme.

The header block is bounded (``max_header_size``); a program that writes
none, or nonsense, gives the client 502. ``Status:`` sets the status,
``Location:`` with an absolute URL and no status is a client redirect (302),
and a local path is a local redirect: the request is served again at that
path when a ``Site`` was given (with its own method: RFC 3875 section 6.2.2
asks for GET, which only the server connection could change), else the
client is sent there with 302. A program that runs past ``timeout`` is killed (504 if it had
not answered yet); so is one whose client went away.
"""

from __future__ import annotations

import logging
import os
import stat
import typing
import urllib.parse
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from torsion.defer import Deferred, ensure_deferred
from torsion.errors import TorsionError
from torsion.internet import (
    ChildProcess,
    Clock,
    DelayedCall,
    IPv4Address,
    IPv6Address,
    ProcessExited,
    ProcessProtocol,
    ProcessStatus,
    ReactorProcess,
)
from torsion.web._headers import InvalidHeaderError
from torsion.web._request import Request
from torsion.web._resource import NOT_FOUND, ErrorPage, RenderResult, Resource, render_error
from torsion.web._site import Site

__all__ = ["CGIDirectory", "CGIError", "CGIScript", "ReactorForCGI", "cgi_environment"]

_log = logging.getLogger("torsion.web.cgi")

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Client fields never passed as HTTP_* variables: given as CONTENT_* already,
# credentials, hop-by-hop, and Proxy (httpoxy).
_NOT_PASSED = frozenset(
    {
        b"content-type",
        b"content-length",
        b"authorization",
        b"proxy-authorization",
        b"proxy",
        b"connection",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"keep-alive",
    }
)
# Fields of the script's header block the server frames itself.
_FRAMING = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"upgrade"})
_STDERR_LOGGED = 4096


class CGIError(TorsionError):
    """A CGI program's output cannot be served (answered 502)."""


class ReactorForCGI(ReactorProcess, Clock, Protocol):
    """What CGI needs of a reactor: child processes and time."""


def cgi_environment(
    request: Request,
    *,
    script_name: str,
    path_info: str,
    extra: Mapping[str, str] | None = None,
    search_path: str = _DEFAULT_PATH,
    content_length: int | None = None,
) -> dict[str, str]:
    """The environment of a CGI program for ``request`` (RFC 3875 section 4.1).

    Args:
        request: The request.
        script_name: The path that named the program (``SCRIPT_NAME``).
        path_info: The path below it, decoded (``PATH_INFO``).
        extra: More variables (they cannot replace the meta-variables).
        search_path: ``PATH``.
        content_length: The body's length when the request has a body.

    Returns:
        The variables, names to values.
    """
    env: dict[str, str] = {"PATH": search_path}
    if extra:
        env.update(extra)
    headers = request.headers
    for name, value in headers.raw:
        lowered = name.lower()
        if b"_" in lowered or lowered in _NOT_PASSED:
            continue
        key = "HTTP_" + lowered.decode("ascii").upper().replace("-", "_")
        text = value.decode("latin-1")
        # RFC 3875 section 4.1.18: fields sent more than once are joined.
        env[key] = f"{env[key]}, {text}" if key in env else text
    host = request.host
    server_port = str(host.port) if isinstance(host, IPv4Address | IPv6Address) else ""
    server_name = headers.get_str(b"host") or ""
    if server_name.startswith("["):
        server_name = server_name[: server_name.find("]") + 1]
    else:
        server_name = server_name.partition(":")[0]
    if not server_name and isinstance(host, IPv4Address | IPv6Address):
        server_name = host.host
    client = request.client
    remote = client.host if isinstance(client, IPv4Address | IPv6Address) else ""
    env.update(
        {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": request.version,
            "SERVER_SOFTWARE": "torsion",
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "REQUEST_METHOD": request.method,
            "REQUEST_URI": request.uri.decode("latin-1"),
            "SCRIPT_NAME": script_name,
            "PATH_INFO": path_info,
            "QUERY_STRING": request.query.decode("latin-1"),
            "REMOTE_ADDR": remote,
            "REMOTE_HOST": remote,
        }
    )
    if isinstance(client, IPv4Address | IPv6Address):
        env["REMOTE_PORT"] = str(client.port)
    if request.is_secure:
        env["HTTPS"] = "on"
    authorization = headers.get(b"authorization")
    if authorization:
        env["AUTH_TYPE"] = authorization.split(b" ", 1)[0].decode("latin-1")
    if content_length is not None:
        env["CONTENT_LENGTH"] = str(content_length)
    content_type = headers.get_str(b"content-type")
    if content_type is not None:
        env["CONTENT_TYPE"] = content_type
    return env


class CGIScript(Resource):
    """A leaf that answers every request by running one CGI program.

    Args:
        program: The program's file (executable, or run by ``interpreter``).
        reactor: Starts the program and times it.
        interpreter: A program to run the file with (``["/usr/bin/python3"]``),
            or None to execute the file itself.
        env: More environment variables for the program.
        search_path: The program's ``PATH``.
        timeout: Seconds the program may run in all before it is killed.
        max_header_size: The most bytes of the header block.
        site: The site, for local redirects (served again at the new path);
            without it, a local redirect becomes a 302 to that path.
    """

    is_leaf = True

    def __init__(
        self,
        program: str | os.PathLike[str],
        *,
        reactor: ReactorForCGI,
        interpreter: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        search_path: str = _DEFAULT_PATH,
        timeout: float | None = 60.0,
        max_header_size: int = 64 * 1024,
        site: Site | None = None,
    ) -> None:
        """Make the resource; the program is run only when a request comes."""
        super().__init__()
        self.program = Path(program)
        self.reactor = reactor
        self.interpreter = list(interpreter) if interpreter is not None else None
        self.env = dict(env or {})
        self.search_path = search_path
        self.timeout = timeout
        self.max_header_size = max_header_size
        self.site = site

    def render(self, request: Request) -> RenderResult:
        """Run the program for ``request``, whatever its method."""
        return ensure_deferred(self._run(request))

    async def _run(self, request: Request) -> bytes | None:
        headers = request.headers
        length: int | None = None
        whole: bytes | None = None
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit():
            length = int(declared)
        elif b"transfer-encoding" in headers:
            # RFC 3875 section 4.1.2: the program is told the length, which a
            # chunked body states only at its end (bounded by the server's
            # max_body).
            whole = await request.body()
            length = len(whole)
        script_name = "/" + "/".join(urllib.parse.quote(s) for s in request.prepath)
        path_info = "/" + "/".join(request.postpath) if request.postpath else ""
        env = cgi_environment(
            request,
            script_name=script_name,
            path_info=path_info,
            extra=self.env,
            search_path=self.search_path,
            content_length=length,
        )
        env["SCRIPT_FILENAME"] = str(self.program)
        if self.interpreter:
            executable, args = self.interpreter[0], [*self.interpreter, str(self.program)]
        else:
            executable, args = str(self.program), [str(self.program)]
        process = _CGIProcess(request, self)
        try:
            child = await self.reactor.spawn_process(
                process, executable, args, env=env, path=str(self.program.parent)
            )
        except OSError as exc:
            _log.error("cannot run CGI program %s: %s", self.program, exc)
            return render_error(request, 500, "The program could not be run.")
        process.start_timer()
        request.notify_finish().add_errback(process.client_gone)
        if length:
            ensure_deferred(_feed(request, child, whole)).add_errback(process.input_failed)
        else:
            child.close_stdin()
        result = await process.done
        if result is not None and isinstance(result, Coroutine | Deferred):
            result = await result
        return typing.cast("bytes | None", result)


async def _feed(request: Request, child: ChildProcess, whole: bytes | None) -> None:
    # The request body to the program's standard input, as it arrives,
    # never faster than the program reads it.
    if whole is not None:
        child.write(whole)
    else:
        async for chunk in request.stream():
            child.write(chunk)
            await child.drained()
    child.close_stdin()


class _CGIProcess(ProcessProtocol):
    """One run of a CGI program: its output parsed and streamed to the request."""

    def __init__(self, request: Request, script: CGIScript) -> None:
        self.request = request
        self.script = script
        self.done: Deferred[Any] = Deferred()
        self._head = bytearray()
        self._head_done = False
        self._stderr = 0
        self._timer: DelayedCall | None = None
        self._failed = False
        self._writing_paused = False

    def start_timer(self) -> None:
        if self.script.timeout is not None:
            self._timer = self.script.reactor.call_later(self.script.timeout, self._timed_out)

    # -- what the program writes -----------------------------------------------------

    def out_received(self, data: bytes) -> None:
        if self._failed:
            return
        if self._head_done:
            self._write(data)
            return
        self._head += data
        end, skip = _head_end(self._head)
        if end < 0:
            if len(self._head) > self.script.max_header_size:
                self._fail(502, "the program's header block is too large")
            return
        if end > self.script.max_header_size:
            self._fail(502, "the program's header block is too large")
            return
        block = bytes(self._head[:end])
        body = bytes(self._head[end + skip :])
        self._head.clear()
        self._head_done = True
        try:
            redirect = self._respond(block)
        except CGIError as exc:
            self._fail(502, str(exc))
            return
        if redirect is not None:
            self._local_redirect(redirect)
            return
        if body:
            self._write(body)

    def err_received(self, data: bytes) -> None:
        # The program's complaints go to the log, bounded per request.
        if self._stderr < _STDERR_LOGGED:
            piece = data[: _STDERR_LOGGED - self._stderr]
            self._stderr += len(piece)
            _log.warning(
                "CGI %s: %s", self.script.program, piece.decode("utf-8", "replace").rstrip()
            )

    def process_ended(self, status: ProcessStatus) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if not isinstance(status, ProcessExited) or status.exit_code != 0:
            _log.info("CGI %s ended: %s", self.script.program, status)
        if self.done.called:
            return
        if self._failed:
            return
        if not self._head_done:
            self._fail(502, "the program ended without a header block")
            return
        request = self.request
        if not request.finished:
            request.finish()
        self.done.callback(None)

    # -- inside ----------------------------------------------------------------------

    def _respond(self, block: bytes) -> str | None:
        # Set the response from the header block; a local redirect's path
        # is returned instead.
        fields: list[tuple[bytes, bytes]] = []
        for line in block.replace(b"\r\n", b"\n").split(b"\n"):
            name, colon, value = line.partition(b":")
            name = name.strip()
            if not colon or not name:
                raise CGIError("the program wrote a header line without a name")
            fields.append((name, value.strip()))
        request = self.request
        status: bytes | None = None
        location: bytes | None = None
        out = request.response_headers
        try:
            for name, value in fields:
                lowered = name.lower()
                if lowered == b"status":
                    status = value
                elif lowered == b"location":
                    location = value
                    out.add(name, value)
                elif lowered not in _FRAMING:
                    out.add(name, value)
        except InvalidHeaderError as exc:
            raise CGIError(f"the program wrote an invalid header: {exc}") from None
        if location is not None and location.startswith(b"/") and status is None:
            # RFC 3875 section 6.2.2: a local redirect response.
            return location.decode("latin-1")
        if status is not None:
            code, _, phrase = status.partition(b" ")
            if not code.isdigit() or not 200 <= int(code) <= 599:
                raise CGIError(f"the program's status {status!r} is not valid")
            try:
                request.set_response_code(int(code), phrase.decode("latin-1").strip() or None)
            except ValueError:
                request.set_response_code(int(code))
        elif location is not None:
            # RFC 3875 section 6.2.3: a client redirect.
            request.set_response_code(302)
        return None

    def _local_redirect(self, path: str) -> None:
        request = self.request
        self.transport.kill()
        site = self.script.site
        # The new response is the new path's own: nothing of the script's.
        _clear(request)
        if site is None:
            request.redirect(path)
            self.done.callback(None)
            return
        target, _, query = path.encode("latin-1").partition(b"?")
        request.path = target
        request.query = query
        resource = site.resource_for(request)
        if resource is None:
            self.done.callback(render_error(request, 400, "The path cannot be served."))
            return
        self.done.callback(resource.render(request))

    def _write(self, data: bytes) -> None:
        request = self.request
        if request.finished:
            return
        request.write(data)
        drained = request.drained()
        if not drained.called and not self._writing_paused:
            # The client reads slower than the program writes: stop reading
            # the program (it then blocks on its full pipe).
            self._writing_paused = True
            self.transport.pause_reading()
            drained.add_callbacks(self._resume, lambda _: None)

    def _resume(self, _: object) -> None:
        self._writing_paused = False
        self.transport.resume_reading()

    def _fail(self, code: int, reason: str) -> None:
        self._failed = True
        _log.warning("CGI %s: %s", self.script.program, reason)
        self.transport.kill()
        if self.done.called:
            return
        request = self.request
        if request.started:
            # Part of the answer is out: only closing tells the client.
            request.abort()
            self.done.callback(None)
            return
        _clear(request)
        self.done.callback(render_error(request, code))

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(504, f"killed after {self.script.timeout} seconds")

    def client_gone(self, exc: BaseException) -> None:
        """The client went away: the program's work is not wanted."""
        self._failed = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.transport.kill()
        if not self.done.called:
            self.done.callback(None)

    def input_failed(self, exc: BaseException) -> None:
        """Feeding the body failed (the client's body broke off, or the program left)."""
        _log.debug("CGI %s: the request body was not delivered: %r", self.script.program, exc)
        if not self.request.finished and not self._head_done:
            self.transport.kill()


def _clear(request: Request) -> None:
    # Forget the response fields set so far.
    headers = request.response_headers
    for name in {name.lower() for name, _ in headers.raw}:
        headers.remove(name)


def _head_end(data: bytearray) -> tuple[int, int]:
    # Where the header block ends, and the length of the blank line after
    # it; programs write LF or CRLF (RFC 3875 section 6.3).
    candidates = [(data.find(b"\r\n\r\n"), 4), (data.find(b"\n\n"), 2), (data.find(b"\n\r\n"), 3)]
    found = [c for c in candidates if c[0] >= 0]
    if not found:
        return -1, 0
    return min(found)


class CGIDirectory(Resource):
    """Publishes each executable file of a directory as a ``CGIScript``.

    ``/cgi-bin/hello/a/b`` runs ``DIRECTORY/hello`` with ``PATH_INFO`` set to
    ``/a/b``. Files that are not executable, hidden files and subdirectories
    are not found (404); the directory itself is not listed (403).

    Args:
        directory: The directory of programs.
        reactor: Starts the programs and times them.
        options: What each ``CGIScript`` is made with (``timeout``,
            ``env``, ``interpreter``, ``site``...).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, reactor: ReactorForCGI, **options: Any
    ) -> None:
        """Publish ``directory``."""
        super().__init__()
        self.directory = Path(directory)
        self.reactor = reactor
        self.options = options

    def get_child(self, segment: str, request: Request) -> Resource:
        """The script named ``segment``, or an error page."""
        if not segment:
            return _FORBIDDEN
        if segment.startswith(".") or "\x00" in segment or "/" in segment:
            return NOT_FOUND
        path = self.directory / segment
        try:
            info = path.stat()
        except (OSError, ValueError):
            return NOT_FOUND
        if not stat.S_ISREG(info.st_mode):
            return NOT_FOUND
        if self.options.get("interpreter") is None and not os.access(path, os.X_OK):
            return NOT_FOUND
        return CGIScript(path, reactor=self.reactor, **self.options)

    def render(self, request: Request) -> RenderResult:
        """The directory itself is not listed."""
        return _FORBIDDEN.render(request)


_FORBIDDEN = ErrorPage(403, "This directory is not listed.")
