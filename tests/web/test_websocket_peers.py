"""WebSocketResource on 127.0.0.1, on both loops, with the ``websockets`` library as the client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from torsion.internet import Reactor
from torsion.web import Request, Resource, Site
from torsion.web._websocket import WebSocket, WebSocketResource

try:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
except ImportError:  # pragma: no cover - a test dependency
    if os.environ.get("TORSION_REQUIRE_PEERS") == "1":
        raise
    pytest.skip("the websockets library is not installed", allow_module_level=True)

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)


@asynccontextmanager
async def serving(reactor: Reactor, **options: object) -> AsyncIterator[int]:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            if message == "close-4000":
                await ws.close(4000, "asked to")
                return
            if message == "subprotocol":
                await ws.send(str(ws.subprotocol))
                continue
            await ws.send(message)

    root = Resource()
    root.put_child("ws", WebSocketResource(echo, reactor=reactor, **options))  # type: ignore[arg-type]
    listener = reactor.listen_tcp(0, Site(root, reactor=reactor), interface="127.0.0.1")
    try:
        yield listener.port
    finally:
        await listener.stop_listening()


@BOTH_LOOPS
async def test_websockets_echo_large_and_fragmented(reactor: Reactor, loop: str) -> None:
    async with serving(reactor, max_message_size=4 << 20) as port:
        async with ws_connect(f"ws://127.0.0.1:{port}/ws", proxy=None, max_size=8 << 20) as client:
            await client.send("hello")
            assert await client.recv() == "hello"
            await client.send(b"\x00\xff")
            assert await client.recv() == b"\x00\xff"
            big = bytes(range(256)) * 8192  # 2 MiB
            await client.send(big)
            assert await client.recv() == big
            await client.send(["frag", "ment", "ed"])
            assert await client.recv() == "fragmented"
            pong = await client.ping(b"p1")
            await asyncio.wait_for(pong, 10)
            assert client.response is not None
            assert client.response.headers["Sec-WebSocket-Extensions"].startswith(
                "permessage-deflate"
            )
        assert client.close_code == 1000


@BOTH_LOOPS
async def test_websockets_server_close_code(reactor: Reactor, loop: str) -> None:
    async with (
        serving(reactor) as port,
        ws_connect(f"ws://127.0.0.1:{port}/ws", proxy=None) as client,
    ):
        await client.send("close-4000")
        with pytest.raises(ConnectionClosed) as caught:
            await client.recv()
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4000, "asked to")


@BOTH_LOOPS
async def test_websockets_too_big_is_1009(reactor: Reactor, loop: str) -> None:
    async with (
        serving(reactor, max_message_size=1000) as port,
        ws_connect(f"ws://127.0.0.1:{port}/ws", proxy=None) as client,
    ):
        await client.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as caught:
            await client.recv()
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009


@BOTH_LOOPS
async def test_websockets_subprotocol(reactor: Reactor, loop: str) -> None:
    async with (
        serving(reactor, subprotocols=["b", "a"]) as port,
        ws_connect(
            f"ws://127.0.0.1:{port}/ws",
            proxy=None,
            subprotocols=["a", "b"],  # type: ignore[list-item]
        ) as client,
    ):
        assert client.subprotocol == "b"
        await client.send("subprotocol")
        assert await client.recv() == "b"


@BOTH_LOOPS
async def test_websockets_bad_handshakes(reactor: Reactor, loop: str) -> None:
    def refuse(origin: str | None, request: Request) -> bool:
        return origin != "https://evil.test"

    async with serving(reactor, check_origin=refuse) as port:
        with pytest.raises(InvalidStatus) as caught:
            await ws_connect(
                f"ws://127.0.0.1:{port}/ws",
                proxy=None,
                origin="https://evil.test",  # type: ignore[arg-type]
            )
        assert caught.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as caught:
            await ws_connect(
                f"ws://127.0.0.1:{port}/ws",
                proxy=None,
                additional_headers={"Sec-WebSocket-Version": "8"},
            )
        assert caught.value.response.status_code in (400, 426)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert b"\r\nUpgrade: websocket\r\n" in answer
