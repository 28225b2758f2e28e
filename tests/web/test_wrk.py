"""wrk loads the HTTP/1.1 server on 127.0.0.1, both loops: every answer a 200, none lost.

wrk is the load generator of the speed benchmark; here it runs for a
second over keep-alive connections (plain and pipelined through a Lua
script), and every request it completed must have been answered 200 with
the whole body, and counted by the resource.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from _http_server_helpers import BOTH_LOOPS, Tracked

from torsion.internet import Reactor
from torsion.testing import require_peer
from torsion.web import Request, Resource, Site, handles

pytestmark = pytest.mark.integration

BODY = b"Hello, World!"
CONNECTIONS = 8
# wrk's own way to pipeline: each call sends three requests at once.
PIPELINE = """
init = function(args)
   local r = {}
   for i = 1, 3 do r[i] = wrk.format(nil, "/hello?n=" .. i) end
   req = table.concat(r)
end
request = function() return req end
"""


class Hello(Resource):
    is_leaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0

    @handles("GET")
    def get(self, request: Request) -> bytes:
        self.answered += 1
        return BODY


async def wrk(port: int, *options: str) -> str:
    process = await asyncio.create_subprocess_exec(
        require_peer("wrk", package="wrk"),
        "-t1",
        f"-c{CONNECTIONS}",
        "-d1s",
        *options,
        f"http://127.0.0.1:{port}/hello",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    return text


@BOTH_LOOPS
@pytest.mark.parametrize("pipelined", [False, True], ids=["keep-alive", "pipelined"])
async def test_every_request_wrk_completed_was_answered(
    reactor: Reactor, loop: str, tmp_path: Path, pipelined: bool
) -> None:
    hello = Hello()
    tracked = Tracked(Site(hello, reactor=reactor))
    listener = reactor.listen_tcp(0, tracked, interface="127.0.0.1")
    options: list[str] = []
    if pipelined:
        script = tmp_path / "pipeline.lua"
        script.write_text(PIPELINE)
        options = ["-s", str(script)]
    try:
        out = await wrk(listener.port, *options)
    finally:
        await listener.stop_listening()
    # wrk closes its connections when its time is up.
    await tracked.all_ended()
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out
    found = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    assert found, out
    completed = int(found.group(1))
    assert completed > 100, out
    # Requests in flight when wrk stopped were answered but not counted.
    in_flight = CONNECTIONS * (3 if pipelined else 1)
    assert completed <= hello.answered <= completed + in_flight
