"""Interop with Twisted's AMP over 127.0.0.1, both ways, on both event loops.

The Twisted peer runs in a child process (``_amp_twisted_peer.py``), since
Twisted's reactor cannot share the test's loop: a Twisted server that
torsion calls, and a Twisted client calling a torsion server. Every argument
type, declared and fatal errors, UNHANDLED and UNKNOWN, calls without an
answer, calls back the other way on the same connection, and many calls at
once travel between them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from _amp_commands import (
    SAMPLES,
    AllTypes,
    Divide,
    Double,
    Explode,
    ExplodeError,
    Fail,
    Missing,
    Note,
    Noted,
    Relay,
    canonical,
)

from torsion.defer import Deferred, gather
from torsion.internet import Reactor
from torsion.protocols.amp import AMP, UnhandledCommandError, UnknownRemoteError

PEER = Path(__file__).with_name("_amp_twisted_peer.py")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.parametrize(
        "loop",
        [
            pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
            pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
        ],
    ),
]


class TorsionServer(AMP):
    """Answers every command the Twisted client sends."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.notes: list[str] = []

    @AllTypes.responder
    def all_types(self, **values: Any) -> dict[str, Any]:
        self.received.append(values)
        return values

    @Divide.responder
    def divide(self, numerator: int, denominator: int) -> dict[str, float]:
        return {"result": numerator / denominator}

    @Explode.responder
    def explode(self) -> dict[str, Any]:
        raise ExplodeError("boom")

    @Fail.responder
    def fail(self) -> dict[str, Any]:
        raise RuntimeError("an error nobody declared")

    @Note.responder
    def note(self, text: str) -> dict[str, Any]:
        self.notes.append(text)
        return {}

    @Noted.responder
    def noted(self) -> dict[str, Any]:
        return {"texts": self.notes}

    @Double.responder
    def double(self, x: int) -> dict[str, int]:
        return {"x": 2 * x}

    @Relay.responder
    async def relay(self, x: int) -> dict[str, int]:
        answer = await self.call_remote(Double, x=x)
        return {"x": answer["x"]}


class TorsionClient(AMP):
    """Calls the Twisted server, and answers its ``Double`` calls back."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: Deferred[Exception | None] = Deferred()
        self.doubled: list[int] = []

    @Double.responder
    def double(self, x: int) -> dict[str, int]:
        self.doubled.append(x)
        return {"x": 2 * x}

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.callback(exc)


async def test_a_twisted_client_calls_torsion(
    reactor: Reactor, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    servers: list[TorsionServer] = []

    def factory(_: object) -> TorsionServer:
        servers.append(TorsionServer())
        return servers[-1]

    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER),
            "client",
            str(listener.port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await child.communicate()
    finally:
        await listener.stop_listening()
    assert child.returncode == 0, stderr.decode()
    results = _result(stdout, stderr)

    checks = {name: outcome for name, outcome in results.items() if "description" not in name}
    expected = [f"all types {n}" for n in range(len(SAMPLES))]
    expected += ["divide", "declared error", "unhandled", "unknown", "no answer", "relay"]
    expected += ["concurrent", "fatal", "closed after fatal"]
    assert checks == dict.fromkeys(expected, "ok")
    assert results["declared error description"] == "division by zero"
    assert results["unhandled description"] == "Unhandled Command: b'Missing'"
    assert results["unknown description"] == "Unknown Error"
    assert results["fatal description"] == "boom"

    # What Twisted encoded, torsion decoded to the very values sent.
    (server,) = servers
    assert canonical(server.received) == canonical(SAMPLES)
    assert server.notes == ["first", "second \u00e9"]
    # The undeclared error was logged, once, with its traceback.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)


async def test_torsion_calls_a_twisted_server(reactor: Reactor, loop: str) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER),
        "server",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = await child.stdout.readline()
        assert line.startswith(b"PORT "), line
        port = int(line.split()[1])
        client = await reactor.connect_tcp("127.0.0.1", port, lambda _: TorsionClient())

        for sample in SAMPLES:
            # The Twisted server answers MISMATCH unless it decoded a sample.
            answer = await client.call_remote(AllTypes, **sample)
            assert canonical(answer) == canonical(sample)
        assert await client.call_remote(Divide, numerator=7, denominator=2) == {"result": 3.5}
        with pytest.raises(ZeroDivisionError, match=r"^division by zero$"):
            await client.call_remote(Divide, numerator=1, denominator=0)
        with pytest.raises(UnhandledCommandError) as unhandled:
            await client.call_remote(Missing)
        assert unhandled.value.code == b"UNHANDLED"
        assert await client.call_remote(Note, text="first") == {}
        assert await client.call_remote(Note, text="second") == {}
        assert await client.call_remote(Noted) == {"texts": ["first", "second"]}
        # Twisted's responder calls our Double back on the same connection.
        assert await client.call_remote(Relay, x=21) == {"x": 42}
        assert client.doubled == [21]
        answers = await gather(client.call_remote(Double, x=x) for x in range(200))
        assert answers == [{"x": 2 * x} for x in range(200)]

        with pytest.raises(ExplodeError, match=r"^boom$"):
            await client.call_remote(Explode)
        await client.lost  # a fatal error: Twisted closed the connection

        # Twisted answers an undeclared error with UNKNOWN, then closes.
        other = await reactor.connect_tcp("127.0.0.1", port, lambda _: TorsionClient())
        with pytest.raises(UnknownRemoteError) as unknown:
            await other.call_remote(Fail)
        assert (unknown.value.code, unknown.value.description) == (b"UNKNOWN", "Unknown Error")
        await other.lost
    finally:
        child.stdin.close()
        _, stderr = await child.communicate()
    assert child.returncode == 0, stderr.decode()


def _result(stdout: bytes, stderr: bytes) -> dict[str, str]:
    for line in stdout.decode().splitlines():
        if line.startswith("RESULT "):
            results: dict[str, str] = json.loads(line[len("RESULT ") :])
            return results
    raise AssertionError(f"the Twisted client printed no result: {stdout!r} {stderr!r}")
