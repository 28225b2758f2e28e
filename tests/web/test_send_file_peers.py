"""Request.send_file on 127.0.0.1, both loops, fetched by curl: zero-copy where it can be."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from test_static_peers import BOTH_LOOPS, curl, serving

from torsion.internet import Reactor
from torsion.web import File

pytestmark = pytest.mark.integration

BIG = 8 * 1024 * 1024 + 5


@BOTH_LOOPS
async def test_a_big_file_goes_zero_copy_where_the_loop_can(
    reactor: Reactor, loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(BIG)
    (tmp_path / "big.bin").write_bytes(data)
    running = asyncio.get_running_loop()
    native = running.sendfile
    calls: list[int] = []

    async def spy(transport: Any, file: Any, offset: int = 0, count: int | None = None,
                  *, fallback: bool = True) -> int:  # fmt: skip
        sent = await native(transport, file, offset, count, fallback=fallback)
        calls.append(sent)
        return sent

    monkeypatch.setattr(running, "sendfile", spy)
    async with serving(reactor, File(tmp_path)) as base:
        whole = await curl(f"{base}/big.bin")
        tail = await curl("-r", "1000-", f"{base}/big.bin")
    assert hashlib.sha256(whole).digest() == hashlib.sha256(data).digest()
    assert tail == data[1000:]
    if loop == "asyncio":
        # The stdlib loop sends plain TCP with os.sendfile: no byte in Python.
        assert calls == [BIG, BIG - 1000]
    else:
        # uvloop's transports cannot: the chunked fallback sent it.
        assert calls == []
