"""HTTP semantics checked by redbot against a Site on 127.0.0.1, on both loops.

redbot (PyPI ``redbot``) fetches a URL and then probes it: conditional
requests with the validators it saw, a range request, gzip negotiation,
caching headers, the Date and Content-Length. It runs offline against
127.0.0.1. Its HAR output gives each note a level; a ``BAD`` one is a
violation of HTTP's rules, and none is allowed here. The notes a test
expects are asserted too, so that a response redbot could not check does
not pass by saying nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from torsion.defer import Deferred, gather
from torsion.internet import Address, Reactor
from torsion.testing import require_peer
from torsion.web import (
    ETag,
    File,
    HTTPChannel,
    Precondition,
    Request,
    Resource,
    SessionStore,
    Site,
    handles,
)

pytestmark = pytest.mark.integration

BOTH_LOOPS = pytest.mark.parametrize(
    "loop",
    [
        pytest.param("asyncio", marks=pytest.mark.torsion_loop("asyncio")),
        pytest.param("uvloop", marks=pytest.mark.torsion_loop("uvloop")),
    ],
)

# A fixed time in the past for the files and the document.
MODIFIED = 1_700_000_000


class Document(Resource):
    """A text representation with validators: conditional GET through the Request helper."""

    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        headers = request.response_headers
        headers.set(b"Content-Type", b"text/plain; charset=utf-8")
        headers.set(b"Cache-Control", b"max-age=60")
        outcome = request.check_preconditions(etag=ETag("doc-1"), last_modified=MODIFIED)
        if outcome is not Precondition.PROCEED:
            return b""
        return b"A document that does not change.\n" * 20


class Visits(Resource):
    """A page that depends on the client's session and cookies: never stored."""

    is_leaf = True

    def __init__(self, store: SessionStore) -> None:
        super().__init__()
        self.store = store

    @handles("GET")
    def get(self, request: Request) -> bytes:
        session = request.session(self.store)
        assert session is not None
        session.data["visits"] = visits = session.data.get("visits", 0) + 1
        request.add_cookie("seen", "yes", max_age=3600)
        request.response_headers.set(b"Content-Type", b"text/plain; charset=utf-8")
        request.response_headers.set(b"Cache-Control", b"no-store")
        return b"visits=%d\n" % visits


class Broken(Resource):
    """A control that breaks HTTP's rules, so the test knows redbot's BAD notes are seen."""

    is_leaf = True

    @handles("GET")
    def get(self, request: Request) -> bytes:
        request.response_headers.set(b"Content-Type", b"text/plain")
        # RFC 9110 section 8.8.3: an entity-tag is quoted.
        request.response_headers.set(b"ETag", b"unquoted")
        request.response_headers.set(b"Cache-Control", b"max-age=soon")
        return b"broken\n"


class Tracked(HTTPChannel):
    """A channel whose end the test waits for, so nothing is left open."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.closed: Deferred[None] = Deferred()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.closed.callback(None)


@dataclass
class Served:
    url: str


@asynccontextmanager
async def serving(reactor: Reactor, directory: Path) -> AsyncIterator[Served]:
    store = SessionStore(reactor)
    root = Resource()
    root.put_child("static", File(directory))
    root.put_child("doc", Document())
    root.put_child("visits", Visits(store))
    root.put_child("broken", Broken())
    site = Site(root, reactor=reactor)
    channels: list[Tracked] = []

    def factory(address: Address) -> HTTPChannel:
        channel = Tracked(site)
        channels.append(channel)
        return channel

    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    try:
        yield Served(f"http://127.0.0.1:{listener.port}")
    finally:
        await listener.stop_listening()
        await asyncio.wait_for(gather([c.closed for c in channels]), 10)
        store.close()


def redbot() -> str:
    # Installed beside this Python (a virtual environment's bin is not
    # always on PATH), else wherever PATH finds it.
    beside = Path(sys.executable).with_name("redbot")
    if beside.is_file():
        return str(beside)
    return require_peer("redbot", package="redbot (PyPI)")


async def notes(url: str) -> list[dict[str, Any]]:
    """redbot's notes on ``url``: each with its ``note_id`` and ``level``."""
    process = await asyncio.create_subprocess_exec(
        redbot(),
        "-o",
        "har",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    [entry] = json.loads(out)["log"]["entries"]
    messages: list[dict[str, Any]] = entry["_red_messages"]
    return messages


def site_files(directory: Path) -> Path:
    (directory / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><title>torsion</title></head>"
        "<body><p>Hello.</p></body></html>\n"
    )
    (directory / "notes.txt").write_text("A line of compressible text.\n" * 200)
    for path in directory.iterdir():
        os.utime(path, (MODIFIED, MODIFIED))
    return directory


async def check(url: str, *expected: str) -> None:
    found = await notes(url)
    bad = [(n["note_id"], n["summary"]) for n in found if n["level"] == "BAD"]
    assert bad == [], url
    ids = {n["note_id"] for n in found}
    assert set(expected) <= ids, (url, sorted(ids))


@BOTH_LOOPS
async def test_redbot_finds_nothing_bad(reactor: Reactor, loop: str, tmp_path: Path) -> None:
    directory = site_files(tmp_path)
    async with serving(reactor, directory) as served:
        url = served.url
        await asyncio.gather(
            # A static file: validators, ranges, gzip.
            check(
                url + "/static/notes.txt",
                "CL_CORRECT",
                "DATE_CORRECT",
                "INM_304",
                "IMS_304",
                "RANGE_CORRECT",
                "CONNEG_GZIP_GOOD",
            ),
            # A directory's index file.
            check(url + "/static/", "CL_CORRECT", "INM_304", "IMS_304"),
            # A resource answering conditional requests with check_preconditions.
            check(url + "/doc", "CL_CORRECT", "INM_304", "IMS_304"),
            # A session and a cookie set on a response that is not stored.
            check(url + "/visits", "CL_CORRECT", "DATE_CORRECT"),
        )
        control = await notes(url + "/broken")
    assert [n for n in control if n["level"] == "BAD"], control
