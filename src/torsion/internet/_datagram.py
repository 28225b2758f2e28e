"""Serving a bound datagram socket: what UDP and Unix datagram ports share.

The caller binds the socket (synchronously, so that errors and the real
address are known at once); ``DatagramPort`` then has asyncio serve it with
``create_datagram_endpoint(sock=...)`` and closes it on ``stop_listening``.

Knowing when the transport has closed needs the protocol's
``connection_lost``. Rather than put a relay between the transport and the
protocol for every datagram, this instance's ``connection_lost`` is wrapped
while the port is open (as ``Factory`` does); a protocol without a
``__dict__`` gets a relay instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from torsion.defer import Deferred

__all__ = ["DatagramPort"]

D = TypeVar("D", bound=asyncio.DatagramProtocol)

_log = logging.getLogger("torsion.internet")


class DatagramPort(Generic[D]):
    """A bound datagram socket served by a protocol (the base of the port classes).

    Args:
        loop: The loop that serves the socket.
        sock: A bound (or connected) datagram socket; the port owns it.
        protocol: Receives the socket's events.
        cleanup: Called once the socket has closed (a Unix port removes its
            file here).
        on_stopped: Called with the port once it has closed.

    Raises:
        ValueError: ``protocol`` already serves another port.
        RuntimeError: ``loop`` is closed.

    Attributes:
        protocol: The protocol serving the socket.
    """

    _kind: ClassVar[str] = "datagrams"

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: D,
        *,
        cleanup: Callable[[], None] | None = None,
        on_stopped: Callable[[Any], object] | None = None,
    ) -> None:
        if loop.is_closed():
            raise RuntimeError(f"cannot serve {self._kind} on {loop!r}: it is closed")
        self.protocol = protocol
        self._loop = loop
        self._sock = sock
        self._cleanup = cleanup
        self._on_stopped = on_stopped
        self._transport: asyncio.DatagramTransport | None = None
        self._stopping = False
        self._stopped = False
        self._waiters: list[Deferred[None]] = []
        self._done: asyncio.Future[None] = loop.create_future()
        self._served = self._hook(protocol)
        # create_datagram_endpoint is a coroutine; datagrams arriving before it
        # runs wait in the socket's receive buffer.
        self._start_task = loop.create_task(self._start())
        self._start_task.add_done_callback(self._started)

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        """The transport, once the loop has set it up (when ``connection_made`` ran)."""
        return self._transport

    @property
    def listening(self) -> bool:
        """Whether the socket is open (not closed, and ``stop_listening`` not called)."""
        return not (self._stopping or self._stopped)

    def stop_listening(self) -> Deferred[None]:
        """Close the socket; the protocol's ``connection_lost`` is called.

        Returns:
            A Deferred that fires with None once the socket is closed. Calling
            again returns another Deferred for the same moment.
        """
        d: Deferred[None] = Deferred()
        if self._stopped:
            d.callback(None)
            return d
        self._waiters.append(d)
        if not self._stopping:
            self._stopping = True
            if self._transport is not None:
                self._transport.close()
            # Else the transport is still being set up; _start closes it.
        return d

    def close_now(self) -> None:
        """Close the socket from outside the event loop, running it if needed.

        For cleaning up when the loop is about to be closed: if it is not
        running, it is run until the socket is closed.
        """
        loop = self._loop
        if self._stopped or loop.is_closed():
            return
        self.stop_listening()
        if not loop.is_running():
            loop.run_until_complete(self._done)

    async def _start(self) -> None:
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self._served, sock=self._sock
        )
        self._transport = transport
        if self._stopping:
            transport.close()

    def _started(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is None:
            return
        # The transport was never made (or asyncio closed it again): the
        # socket is still ours to close.
        if not task.cancelled():
            _log.error(
                "Cannot serve %s on %s", self._kind, self._where(), exc_info=task.exception()
            )
        self._sock.close()
        if self._transport is None:
            self._finish()

    def _where(self) -> object:
        """The address for log messages."""
        return getattr(self, "address", self._sock)

    def _lost(self) -> None:
        # The transport closes the socket once connection_lost returns.
        self._loop.call_soon(self._finish)

    def _finish(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._unhook()
        if self._cleanup is not None:
            try:
                self._cleanup()
            except Exception:
                _log.exception("Cleaning up after %r failed", self)
        if not self._done.done():
            self._done.set_result(None)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)
        if self._on_stopped is not None:
            self._on_stopped(self)

    def _hook(self, protocol: D) -> asyncio.DatagramProtocol:
        if isinstance(getattr(protocol, "connection_lost", None), _LostHook):
            raise ValueError(f"{protocol!r} already serves a port")
        hook = _LostHook(protocol.connection_lost, self._lost)
        try:
            protocol.connection_lost = hook  # type: ignore[method-assign]
        except AttributeError:
            return _Relay(protocol, hook)
        return protocol

    def _unhook(self) -> None:
        instance = getattr(self.protocol, "__dict__", {})
        if isinstance(instance.get("connection_lost"), _LostHook):
            del instance["connection_lost"]


class _LostHook:
    """Stands in for a protocol's ``connection_lost``: calls it, then tells the port."""

    __slots__ = ("_lost", "_original")

    def __init__(
        self, original: Callable[[Exception | None], None], lost: Callable[[], None]
    ) -> None:
        self._original = original
        self._lost = lost

    def __call__(self, exc: Exception | None) -> None:
        try:
            self._original(exc)
        finally:
            self._lost()


class _Relay(asyncio.DatagramProtocol):
    """Passes every event on to a protocol whose ``connection_lost`` cannot be wrapped."""

    __slots__ = ("_lost", "_protocol")

    def __init__(self, protocol: asyncio.DatagramProtocol, lost: _LostHook) -> None:
        self._protocol = protocol
        self._lost = lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._protocol.connection_made(cast(asyncio.DatagramTransport, transport))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._protocol.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._protocol.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()
