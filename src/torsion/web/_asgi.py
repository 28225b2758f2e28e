"""``ASGIResource``: an ASGI 3.0 application published in the resource tree.

torsion's reactor is an asyncio loop, so an ASGI application (Starlette,
FastAPI, a bare ``async def app(scope, receive, send)``) runs on it as it
is: each request is an asyncio task of the loop, with ``receive`` reading
the request's body and ``send`` writing its response through ``Request``.
No thread and no copy of the body: the flow control of the connection is
the application's (``send`` waits while the write buffer is full).

The lifespan protocol (startup and shutdown of the application) is run by
``start()`` and ``stop()``, once per resource, by whatever serves it: the
``torsion web --asgi`` plugin calls them as its service starts and stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, TypeAlias

from torsion.errors import TorsionError
from torsion.internet import IPv4Address, IPv6Address
from torsion.web._request import Request, ResponseStateError
from torsion.web._resource import RenderResult, Resource, render_error

__all__ = ["ASGIApp", "ASGIResource", "LifespanError", "ReactorForASGI"]

Message: TypeAlias = MutableMapping[str, Any]
Scope: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("torsion.web")

# 2.4: send() raises OSError once the client has gone, so applications need
# not keep a receive() pending to notice (ASGI HTTP spec, "Disconnected
# Client - send exception").
_HTTP_ASGI = {"version": "3.0", "spec_version": "2.4"}
_LIFESPAN_ASGI = {"version": "3.0", "spec_version": "2.0"}
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}


class LifespanError(TorsionError):
    """The application reported that its startup or shutdown failed.

    The message is the one the application gave, if any.
    """


class ReactorForASGI(Protocol):
    """What ``ASGIResource`` needs of the reactor: its asyncio loop."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the application's tasks run on."""
        ...


class ASGIResource(Resource):
    """A leaf resource that serves every request below it with an ASGI app.

    Each request's scope is an ASGI ``http`` scope (spec version 2.4):
    ``path`` is the whole decoded path, ``root_path`` the ``root_path``
    given here followed by where the resource sits in the tree (so that a
    Starlette router mounted at ``/api`` matches the rest), ``raw_path`` and
    ``query_string`` the bytes as sent, ``headers`` the request's fields
    with lowercased names, ``client`` and ``server`` the connection's
    addresses (None over a Unix socket), ``state`` a shallow copy of what
    the lifespan startup put in ``state``.

    ``receive()`` gives the body as ``http.request`` messages, chunk by
    chunk as it arrives (the last with ``more_body`` false), then waits
    and gives ``http.disconnect`` once the response is finished or the
    connection is lost. ``send()`` takes ``http.response.start`` (sent
    only with the first body bytes, so it may still be replaced by an
    error) and ``http.response.body``; with ``more_body`` it waits while
    the connection's write buffer is full, and once the client has gone it
    raises ``ConnectionResetError``. A response given in a single body
    message gets its ``Content-Length``; a streamed one is chunked unless
    the application set the length.

    An exception from the application before its response has started
    becomes a 500 page (logged, never shown); after, the connection is
    aborted, since only that tells the client the response is cut. An
    exception after the response is complete (a background task, say) is
    logged, and the connection goes on.

    WebSocket scopes are not offered by this resource: a WebSocket
    handshake is answered 404 without calling the application, and the
    connection closes after it (torsion's ``WebSocketResource`` serves
    WebSockets).

    Lifespan: ``await resource.start()`` before serving runs the
    application's startup (once), ``await resource.stop()`` its shutdown
    and then cancels requests still running. An application that does not
    speak the lifespan protocol (it raises, or returns, at once) is served
    all the same.

    Args:
        app: The ASGI 3.0 application.
        reactor: The reactor whose loop runs the application.
        root_path: A prefix the path had before it reached this server (a
            proxy's mount point), put in front of ``root_path`` and ``path``.

    Attributes:
        app: The application.
        root_path: The prefix given.
        state: The lifespan state, shared (shallow-copied) with each request.
    """

    is_leaf = True

    def __init__(self, app: ASGIApp, *, reactor: ReactorForASGI, root_path: str = "") -> None:
        """Publish ``app``."""
        super().__init__()
        self.app = app
        self.root_path = root_path.rstrip("/")
        self.state: dict[str, Any] = {}
        self._reactor = reactor
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifespan: _Lifespan | None = None

    # -- lifespan --------------------------------------------------------------

    async def start(self) -> None:
        """Run the application's lifespan startup, and wait for it to end.

        Raises:
            LifespanError: The application reported that its startup failed,
                or ``start()`` was already called.
        """
        if self._lifespan is not None:
            raise LifespanError("the application's lifespan was already started")
        lifespan = self._lifespan = _Lifespan(self.app, self._reactor.loop, self.state)
        await lifespan.start()

    async def stop(self) -> None:
        """Run the application's lifespan shutdown, then cancel running requests.

        Raises:
            LifespanError: The application reported that its shutdown failed
                (requests are cancelled all the same).
        """
        try:
            if self._lifespan is not None:
                await self._lifespan.stop()
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # -- requests ----------------------------------------------------------------

    def render(self, request: Request) -> RenderResult:
        """Serve ``request`` with the application, whatever its method."""
        upgrade = request.headers.get(b"upgrade")
        if upgrade is not None and b"websocket" in upgrade.lower():
            return render_error(request, 404, "WebSocket is not served here.")
        return self._serve(request)

    def scope(self, request: Request) -> Scope:
        """The ASGI ``http`` scope of ``request`` (its tree walk done).

        Args:
            request: The request being served.

        Returns:
            The scope (a new dictionary).
        """
        mount = "".join("/" + segment for segment in request.prepath)
        rest = "".join("/" + segment for segment in request.postpath)
        return {
            "type": "http",
            "asgi": _HTTP_ASGI,
            "http_version": request.version[5:],
            "method": request.method,
            "scheme": "https" if request.is_secure else "http",
            "path": self.root_path + mount + rest,
            "raw_path": request.path,
            "query_string": request.query,
            "root_path": self.root_path + mount,
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "client": _host_and_port(request.client),
            "server": _host_and_port(request.host),
            "state": self.state.copy(),
            "extensions": {},
        }

    async def _serve(self, request: Request) -> bytes | None:
        lifespan = self._lifespan
        if lifespan is not None and not lifespan.ready:
            # The port may open before startup ends (it is bound first, as
            # root may have to): requests meanwhile wait for the startup.
            try:
                await lifespan.started()
            except LifespanError:
                return render_error(request, 503, "The application failed to start.")
        exchange = _Exchange(request, self._reactor.loop)
        task = self._reactor.loop.create_task(
            _call(self.app, self.scope(request), exchange.receive, exchange.send)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await task
        except Exception as exc:
            if exchange.lost is not None:
                _log.debug("%s: ended after the client left: %r", request.request_line, exc)
                return None
            if exchange.complete:
                _log.error(
                    "Error in %s after its response was sent", request.request_line, exc_info=exc
                )
                return None
            # The site answers 500, or aborts a response already started.
            raise
        except asyncio.CancelledError:
            if exchange.lost is not None or exchange.complete:
                return None
            raise RuntimeError("the application was cancelled before its response ended") from None
        if not exchange.complete and exchange.lost is None:
            raise RuntimeError("the application returned before its response ended")
        return None


class _Exchange:
    """One request's ``receive`` and ``send``, on the loop."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self._request = request
        self._started = False
        self._body_done = False
        self.complete = False
        self.lost: BaseException | None = None
        self._over: asyncio.Future[None] = loop.create_future()
        request.notify_finish().add_callbacks(self._finished, self._lost)

    def _finished(self, _: None) -> None:
        if not self._over.done():
            self._over.set_result(None)

    def _lost(self, exc: BaseException) -> None:
        self.lost = exc
        if not self._over.done():
            self._over.set_result(None)

    async def receive(self) -> Message:
        if not self._body_done:
            try:
                chunk = await self._request.read()
            except Exception:
                # Lost, or refused for its size (the server answers that).
                self._body_done = True
                return dict(_DISCONNECT)
            if chunk:
                return {"type": "http.request", "body": chunk, "more_body": True}
            self._body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Shielded: an application cancelling its own receive() (anyio task
        # groups do) must not cancel what other receive() calls wait for.
        await asyncio.shield(self._over)
        return dict(_DISCONNECT)

    async def send(self, message: Message) -> None:
        if self.lost is not None:
            raise ConnectionResetError("the client has gone")
        kind = message["type"]
        request = self._request
        if kind == "http.response.start":
            if self._started:
                raise ResponseStateError("http.response.start was sent twice")
            status = message["status"]
            if type(status) is not int:
                raise TypeError(f"the ASGI status must be an int, not {type(status).__name__}")
            request.set_response_code(status)
            headers = request.response_headers
            # Headers.add refuses names and values that would split the head.
            for name, value in message.get("headers", ()):
                headers.add(bytes(name), bytes(value))
            if message.get("trailers"):
                raise ValueError("response trailers are not offered by this server")
            self._started = True
            return
        if kind != "http.response.body":
            raise ValueError(f"unknown ASGI message type {kind!r}")
        if not self._started:
            raise ResponseStateError("http.response.body came before http.response.start")
        if self.complete:
            raise ResponseStateError("http.response.body came after the response ended")
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if not more:
            if not request.started and body:
                # The whole body in one message: send it with its length.
                request.response_headers.set_default(b"Content-Length", b"%d" % len(body))
            self.complete = True
            request.write(body)
            request.finish()
            return
        request.write(body)
        await request.drained()


class _Lifespan:
    """The lifespan scope's task and the steps of its conversation."""

    def __init__(
        self, app: ASGIApp, loop: asyncio.AbstractEventLoop, state: dict[str, Any]
    ) -> None:
        self._app = app
        self._loop = loop
        self._state = state
        self._started: asyncio.Future[bool] = loop.create_future()
        self._stopping: asyncio.Future[None] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._told_startup = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether startup has ended (well or not)."""
        return self._started.done()

    async def started(self) -> None:
        """Wait for startup to end (raising ``LifespanError`` if it failed)."""
        await asyncio.shield(self._started)

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": _LIFESPAN_ASGI, "state": self._state}
        task = self._task = self._loop.create_task(self._run(scope))
        try:
            supported = await self._started
        except LifespanError:
            # The application ends its lifespan after a failed startup; make
            # sure it does, so that nothing is left running.
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        if not supported:
            _log.info("The ASGI application does not use the lifespan protocol")

    async def stop(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        self._stopping.set_result(None)
        try:
            await self._stopped
        finally:
            await task

    async def _run(self, scope: Scope) -> None:
        try:
            await self._app(scope, self._receive, self._send)
        except Exception as exc:
            if self._started.done() and self._started.exception() is not None:
                _log.debug("The ASGI application's lifespan ended with %r", exc)
            elif not self._started.done():
                # Most likely an application without lifespan support.
                _log.debug("The ASGI application's lifespan raised %r", exc)
                self._started.set_result(False)
            elif self._stopping.done() and not self._stopped.done():
                self._stopped.set_exception(LifespanError(f"shutdown raised {exc!r}"))
            else:
                _log.error("The ASGI application's lifespan failed", exc_info=exc)
        finally:
            if not self._started.done():
                self._started.set_result(False)
            if not self._stopped.done():
                self._stopped.set_result(None)

    async def _receive(self) -> Message:
        if not self._told_startup:
            self._told_startup = True
            return {"type": "lifespan.startup"}
        await self._stopping
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete" and not self._started.done():
            self._started.set_result(True)
        elif kind == "lifespan.startup.failed" and not self._started.done():
            self._started.set_exception(LifespanError(message.get("message", "startup failed")))
        elif kind == "lifespan.shutdown.complete" and not self._stopped.done():
            self._stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not self._stopped.done():
            self._stopped.set_exception(LifespanError(message.get("message", "shutdown failed")))
        else:
            raise ValueError(f"unexpected ASGI lifespan message {kind!r}")


async def _call(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    # A task needs a coroutine; an application may give any awaitable.
    await app(scope, receive, send)


def _host_and_port(address: object) -> tuple[str, int] | None:
    if isinstance(address, IPv4Address | IPv6Address):
        return address.host, address.port
    return None
