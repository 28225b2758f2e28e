"""Wrappers that sit between a transport and a protocol.

A policy (an idle timeout, a throttle, a connection count) or a framing
prefix (the PROXY protocol header) needs to see what passes between a
connection and the protocol serving it without the protocol knowing. A
``ProtocolWrapper`` receives the transport's events and passes them on; the
protocol it wraps talks to a ``TransportWrapper``, which passes its calls to
the real transport. Each overrides only what it changes.

TLS upgrades (``Protocol.start_tls``) work through any number of wrappers:
the wrapper upgrades the real transport underneath, with the outermost
wrapper as the application protocol, so every wrapper stays in the chain
and sees the decrypted data. While the handshake runs the protocol writes
to a ``HeldWrites``, which keeps what it is given until the TLS transport
exists: the handshake can complete, and the peer's first encrypted data
arrive, before the code awaiting the handshake resumes, and a reply written
then must not go out in clear.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

__all__ = ["HeldWrites", "ProtocolWrapper", "TransportWrapper"]


class TransportWrapper(asyncio.Transport):
    """A transport that passes every call to another one.

    Args:
        transport: The real transport (or another wrapper).
        wrapper: The protocol wrapper the real transport talks to; it is
            what a TLS upgrade hands the decrypted data to. None when the
            real transport talks to the protocol directly (a wrapper that
            only changes what the protocol sees of the transport, such as
            the addresses it reports).
    """

    def __init__(
        self, transport: asyncio.BaseTransport, wrapper: ProtocolWrapper | None = None
    ) -> None:
        super().__init__()
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.wrapped_transport = cast(asyncio.Transport, transport)
        self._wrapper = wrapper

    # Writing.

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Pass ``data`` on."""
        self.wrapped_transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        """Pass each buffer on, in order, through ``write``."""
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        """Close the write side after what is buffered."""
        self.wrapped_transport.write_eof()

    def can_write_eof(self) -> bool:
        """Return whether the real transport can half-close."""
        return self.wrapped_transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        """Return the bytes waiting to be sent."""
        return self.wrapped_transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the real transport's (low, high) water marks."""
        return self.wrapped_transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the real transport's water marks."""
        self.wrapped_transport.set_write_buffer_limits(high, low)

    # Reading.

    def pause_reading(self) -> None:
        """Stop reading from the peer."""
        self.wrapped_transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the peer again."""
        self.wrapped_transport.resume_reading()

    def is_reading(self) -> bool:
        """Return whether the real transport reads."""
        return self.wrapped_transport.is_reading()

    # The connection.

    def close(self) -> None:
        """Close after what is buffered is sent."""
        self.wrapped_transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is buffered."""
        self.wrapped_transport.abort()

    def is_closing(self) -> bool:
        """Return whether the connection is closing or closed."""
        return self.wrapped_transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return the real transport's information (``peername``, ``socket``...)."""
        return self.wrapped_transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver the connection's events to ``protocol`` from now on."""
        if self._wrapper is None:
            self.wrapped_transport.set_protocol(protocol)
        else:
            self._wrapper.wrapped = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """Return the protocol the events are delivered to."""
        if self._wrapper is None:
            return self.wrapped_transport.get_protocol()
        return self._wrapper.wrapped

    async def start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> TransportWrapper:
        """Upgrade the real transport underneath to TLS, keeping this wrapper.

        ``Protocol.start_tls`` calls this when its transport is a wrapper;
        the arguments are the same.

        Returns:
            This wrapper, now over the TLS transport.
        """
        inner = self.wrapped_transport
        if isinstance(inner, TransportWrapper):
            # Upgrade the innermost real transport; the wrappers between stay.
            await inner.start_tls(
                context,
                server_side=server_side,
                server_hostname=server_hostname,
                handshake_timeout=handshake_timeout,
            )
            return self
        loop = asyncio.get_running_loop()
        # The TLS layer delivers to whatever the real transport delivered to.
        upgraded = await loop.start_tls(
            inner,
            inner.get_protocol(),
            context,
            server_side=server_side,
            server_hostname=server_hostname,
            ssl_handshake_timeout=handshake_timeout,
        )
        if upgraded is None:  # pragma: no cover - the loop closed meanwhile
            raise ConnectionResetError("connection closed during the TLS handshake")
        self.wrapped_transport = upgraded
        if self._wrapper is not None:
            self._wrapper.transport = upgraded
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.wrapped_transport!r}>"


class ProtocolWrapper(asyncio.Protocol):
    """A protocol that passes every event on to another one.

    It gives the wrapped protocol ``make_transport(transport)`` as its
    transport: a ``TransportWrapper`` unless a subclass makes its own.

    Args:
        wrapped: The protocol that serves the connection.

    Attributes:
        transport: The real transport, once connected.
        wrapped: The protocol the events go to.
        wrapper_transport: What the wrapped protocol got as its transport.
    """

    transport: asyncio.Transport
    wrapper_transport: TransportWrapper

    def __init__(self, wrapped: asyncio.BaseProtocol) -> None:
        self.wrapped = wrapped

    def make_transport(self, transport: asyncio.Transport) -> TransportWrapper:
        """Return the transport the wrapped protocol talks to."""
        return TransportWrapper(transport, self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Connect the wrapped protocol to a wrapper of ``transport``."""
        self.transport = transport  # type: ignore[assignment]
        self.wrapper_transport = self.make_transport(self.transport)
        self.wrapped.connection_made(self.wrapper_transport)

    def data_received(self, data: bytes) -> None:
        """Pass the bytes on."""
        self.wrapped.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        """Pass the end of the peer's data on."""
        return self.wrapped.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        """Pass the end of the connection on."""
        self.wrapped.connection_lost(exc)

    def pause_writing(self) -> None:
        """Pass the full-buffer signal on."""
        self.wrapped.pause_writing()

    def resume_writing(self) -> None:
        """Pass the drained-buffer signal on."""
        self.wrapped.resume_writing()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} around {self.wrapped!r}>"


class HeldWrites(asyncio.Transport):
    """Stands in for a transport while it is upgraded to TLS: writes wait.

    What is written, and a ``write_eof`` or ``close``, are kept in order
    and replayed onto the TLS transport by ``release``; ``drop`` forgets
    them when the upgrade failed. Everything else is the plain transport's.

    Args:
        transport: The transport being upgraded.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self.plain = transport
        self._held: list[bytes] = []
        self._size = 0
        self._eof = False
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` for the TLS transport."""
        if data and not (self._eof or self._closing):
            self._held.append(bytes(data))
            self._size += len(data)

    def writelines(self, list_of_data: Any) -> None:
        """Keep each buffer, in order."""
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        """Half-close once the held data is written over TLS."""
        self._eof = True

    def can_write_eof(self) -> bool:
        """TLS transports cannot half-close."""
        return False

    def close(self) -> None:
        """Close once the held data is written over TLS."""
        self._closing = True

    def abort(self) -> None:
        """Drop the connection now."""
        self._held.clear()
        self._size = 0
        self.plain.abort()

    def is_closing(self) -> bool:
        """Return whether ``close`` was called or the connection is going."""
        return self._closing or self.plain.is_closing()

    def get_write_buffer_size(self) -> int:
        """Return the held bytes and the plain transport's buffer."""
        return self._size + self.plain.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Return the plain transport's water marks."""
        return self.plain.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the plain transport's water marks."""
        self.plain.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        """Stop reading."""
        self.plain.pause_reading()

    def resume_reading(self) -> None:
        """Read again."""
        self.plain.resume_reading()

    def is_reading(self) -> bool:
        """Return whether the plain transport reads."""
        return self.plain.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return the plain transport's information."""
        return self.plain.get_extra_info(name, default)

    def release(self, transport: asyncio.Transport) -> None:
        """Write what was held to ``transport``, then close it if asked."""
        held, self._held, self._size = self._held, [], 0
        for data in held:
            transport.write(data)
        if self._closing:
            transport.close()

    def drop(self) -> None:
        """Forget what was held: the upgrade failed."""
        self._held.clear()
        self._size = 0

    def __repr__(self) -> str:
        return f"<HeldWrites {self._size} bytes over {self.plain!r}>"
