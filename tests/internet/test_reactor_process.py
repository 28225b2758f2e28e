"""The reactor's own doors to processes, descriptors and standard I/O."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from torsion.defer import Deferred
from torsion.internet import ProcessExited, ProcessProtocol, ProcessStatus, Reactor

Wait = Callable[..., Any]


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.ended: Deferred[ProcessStatus] = Deferred()

    def out_received(self, data: bytes) -> None:
        self.out += data

    def process_ended(self, status: ProcessStatus) -> None:
        self.ended.callback(status)


def test_spawn_process_through_the_reactor(real_reactor: Reactor, wait: Wait) -> None:
    protocol = Collect()
    code = "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)"
    transport = wait(
        real_reactor,
        real_reactor.spawn_process(protocol, sys.executable, [sys.executable, "-c", code]),
    )
    transport.write(b"shout\n")
    transport.close_stdin()
    assert wait(real_reactor, protocol.ended) == ProcessExited(3)
    assert bytes(protocol.out) == b"SHOUT\n"


def test_add_reader_through_the_reactor(real_reactor: Reactor, wait: Wait) -> None:
    read_end, write_end = os.pipe()
    try:
        readable: Deferred[bytes] = Deferred()

        def on_readable() -> None:
            real_reactor.remove_reader(read_end)
            readable.callback(os.read(read_end, 100))

        real_reactor.add_reader(read_end, on_readable)
        os.write(write_end, b"ready")
        assert wait(real_reactor, readable) == b"ready"
        assert real_reactor.remove_reader(read_end) is False  # already removed
        os.write(write_end, b"unwatched")  # nothing is called now
    finally:
        os.close(read_end)
        os.close(write_end)
