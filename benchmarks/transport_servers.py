"""The echo servers that benchmarks/transports.py measures, one per child process.

Usage: python benchmarks/transport_servers.py NAME [--cpu N]

Each server listens on 127.0.0.1, port 0, backlog 100 (torsion's and
asyncio's default, given to every contender alike), and prints ``PORT n``
once it accepts connections. Every server does the same thing, written the
way a user of that framework would write it: on each new connection it sends
one byte (``!``, so that a client knows the server has accepted it and run
its connection handler), then sends back every byte it receives.

The process pins itself to one CPU, raises its open-files limit to the hard
limit, and obeys its standard input, read by a helper thread that sleeps in
``read()`` the rest of the time: a line ``gc`` runs a full garbage collection
and answers ``done``; end of input exits the process at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import sys
import threading
from collections.abc import Callable

GREETING = b"!"
BACKLOG = 100
HOST = "127.0.0.1"


# -- the process around the server ------------------------------------------------------


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to its hard limit (idle connections need it); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin_to_cpu(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _obey_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "gc":
            gc.collect()
            print("done", flush=True)
    # The driver closed our input: it is done with us. Sockets close with the process.
    os._exit(0)


def announce(port: int) -> None:
    """Tell the driver the port, then start obeying its commands."""
    print(f"PORT {port}", flush=True)
    threading.Thread(target=_obey_stdin, name="control", daemon=True).start()


# -- asyncio.Protocol, raw (uvloop and the stdlib loop) ----------------------------------


class RawEcho(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport
        transport.write(GREETING)

    def data_received(self, data):
        self.transport.write(data)


def _serve_raw(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(RawEcho, HOST, 0, backlog=BACKLOG))
    announce(server.sockets[0].getsockname()[1])
    loop.run_forever()


def serve_raw_uvloop() -> None:
    import uvloop

    _serve_raw(uvloop.new_event_loop)


def serve_raw_asyncio() -> None:
    _serve_raw(asyncio.new_event_loop)


# -- asyncio streams ------------------------------------------------------------------


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(GREETING)
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # The client resets its connections when it is done with them.
    finally:
        writer.close()
        # Awaiting the close also retrieves a reset's error, which asyncio
        # would otherwise report as "Future exception was never retrieved".
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _serve_streams(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(asyncio.start_server(_stream_echo, HOST, 0, backlog=BACKLOG))
    announce(server.sockets[0].getsockname()[1])
    loop.run_forever()


def serve_streams_uvloop() -> None:
    import uvloop

    _serve_streams(uvloop.new_event_loop)


def serve_streams_asyncio() -> None:
    _serve_streams(asyncio.new_event_loop)


# -- Twisted ---------------------------------------------------------------------------


def _serve_twisted() -> None:
    from twisted.internet import protocol, reactor

    class Echo(protocol.Protocol):
        def connectionMade(self):  # noqa: N802 - Twisted's name
            self.transport.write(GREETING)

        def dataReceived(self, data):  # noqa: N802 - Twisted's name
            self.transport.write(data)

    port = reactor.listenTCP(
        0, protocol.Factory.forProtocol(Echo), backlog=BACKLOG, interface=HOST
    )
    announce(port.getHost().port)
    reactor.run(installSignalHandlers=False)


def serve_twisted_epoll() -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    _serve_twisted()


def serve_twisted_asyncio_uvloop() -> None:
    import uvloop
    from twisted.internet import asyncioreactor

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    _serve_twisted()


# -- trio ------------------------------------------------------------------------------


def serve_trio() -> None:
    from functools import partial

    import trio

    async def echo(stream: trio.SocketStream) -> None:
        try:
            await stream.send_all(GREETING)
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass  # The client resets its connections when it is done with them.

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, echo, 0, host=HOST, backlog=BACKLOG)
            )
            announce(listeners[0].socket.getsockname()[1])

    trio.run(main)


# -- torsion ---------------------------------------------------------------------------


def _serve_torsion(uvloop: bool) -> None:
    from torsion.internet import Protocol, Reactor

    class Echo(Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.transport.write(GREETING)

        def data_received(self, data):
            self.transport.write(data)

    reactor = Reactor(uvloop=uvloop)
    listener = reactor.listen_tcp(0, lambda _address: Echo(), interface=HOST, backlog=BACKLOG)
    announce(listener.port)
    reactor.run(install_signal_handlers=False)


def serve_torsion_uvloop() -> None:
    _serve_torsion(uvloop=True)


def serve_torsion_asyncio() -> None:
    _serve_torsion(uvloop=False)


SERVERS: dict[str, Callable[[], None]] = {
    "uvloop-raw": serve_raw_uvloop,
    "asyncio-raw": serve_raw_asyncio,
    "uvloop-streams": serve_streams_uvloop,
    "asyncio-streams": serve_streams_asyncio,
    "twisted-epoll": serve_twisted_epoll,
    "twisted-asyncio-uvloop": serve_twisted_asyncio_uvloop,
    "trio": serve_trio,
    "torsion-uvloop": serve_torsion_uvloop,
    "torsion-asyncio": serve_torsion_asyncio,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(SERVERS))
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    args = parser.parse_args()
    pin_to_cpu(args.cpu)
    raise_nofile_limit()
    SERVERS[args.name]()


if __name__ == "__main__":
    main()
