"""torsion.testing.loopback: two protocols connected in memory."""

from __future__ import annotations

import asyncio

import pytest

from torsion.internet._protocol import Protocol
from torsion.testing import LoopbackTransport, loopback


class Recorder(Protocol):
    """Records every event, with a name so that two can share one log."""

    def __init__(self, name, log=None, *, keep_open_on_eof=False):
        self.name = name
        self.log = log if log is not None else []
        self.keep_open_on_eof = keep_open_on_eof
        self.received = b""
        self.lost = []
        self.depth = 0
        self.max_depth = 0

    def connection_made(self, transport):
        super().connection_made(transport)
        self.log.append((self.name, "made"))

    def data_received(self, data):
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)
        try:
            self.received += data
            self.log.append((self.name, "data", data))
            self.on_data(data)
        finally:
            self.depth -= 1

    def on_data(self, data):
        pass

    def eof_received(self):
        self.log.append((self.name, "eof"))
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.lost.append(exc)
        self.log.append((self.name, "lost", type(exc).__name__ if exc else None))

    def pause_writing(self):
        self.log.append((self.name, "pause_writing"))

    def resume_writing(self):
        self.log.append((self.name, "resume_writing"))


class Greeter(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(b"220 hello\r\n")


class Echo(Recorder):
    def on_data(self, data):
        self.transport.write(data)


def test_connection_made_server_first_and_greeting_delivered_after_both():
    log = []
    client, server = Recorder("client", log), Greeter("server", log)
    pair = loopback(client, server)
    assert log == [("server", "made"), ("client", "made"), ("client", "data", b"220 hello\r\n")]
    assert pair.client is client
    assert pair.server is server
    assert client.transport is pair.client_transport
    assert server.transport is pair.server_transport
    assert isinstance(pair.client_transport, LoopbackTransport)
    assert isinstance(pair.client_transport, asyncio.Transport)


def test_addresses_mirror_each_other():
    pair = loopback(
        Recorder("c"),
        Recorder("s"),
        client_address=("127.0.0.1", 50001),
        server_address=("127.0.0.1", 25),
    )
    assert pair.client_transport.get_extra_info("sockname") == ("127.0.0.1", 50001)
    assert pair.client_transport.get_extra_info("peername") == ("127.0.0.1", 25)
    assert pair.server_transport.get_extra_info("peername") == ("127.0.0.1", 50001)
    assert pair.server_transport.peer == ("127.0.0.1", 50001)
    assert pair.server_transport.host == ("127.0.0.1", 25)
    assert pair.server_transport.get_extra_info("socket", "none") == "none"


def test_bytes_are_delivered_synchronously_both_ways():
    client, server = Recorder("client"), Echo("server")
    pair = loopback(client, server)
    pair.client_transport.write(b"ping")
    assert server.received == b"ping"
    assert client.received == b"ping"
    pair.client_transport.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
    assert client.received == b"pingabc"
    assert pair.client_transport.get_write_buffer_size() == 0


def test_deliveries_never_nest():
    class PingPong(Recorder):
        def on_data(self, data):
            if len(self.received) < 20:
                self.transport.write(b"x")

    client, server = PingPong("client"), PingPong("server")
    pair = loopback(client, server)
    pair.client_transport.write(b"x")
    assert len(client.received) + len(server.received) >= 39
    assert client.max_depth == 1
    assert server.max_depth == 1


def test_close_flushes_then_peer_sees_eof_and_both_are_lost():
    log = []
    client, server = Recorder("client", log), Recorder("server", log)
    pair = loopback(client, server)
    log.clear()
    pair.client_transport.write(b"last words")
    pair.client_transport.close()
    assert pair.client_transport.is_closing()
    assert log == [
        ("server", "data", b"last words"),
        ("client", "lost", None),
        ("server", "eof"),
        ("server", "lost", None),
    ]
    assert pair.server_transport.is_closing()


def test_close_when_the_peer_keeps_its_side_open():
    log = []
    client, server = Recorder("client", log), Recorder("server", log, keep_open_on_eof=True)
    pair = loopback(client, server)
    log.clear()
    pair.client_transport.close()
    assert log == [("client", "lost", None), ("server", "eof")]
    # The client reads nothing any more: what the server writes goes nowhere.
    pair.server_transport.write(b"into the void")
    assert client.received == b""
    pair.server_transport.close()
    assert log[-1] == ("server", "lost", None)
    assert client.lost == [None]
    assert server.lost == [None]


def test_write_eof_half_closes():
    log = []
    client, server = Recorder("client", log), Echo("server", log, keep_open_on_eof=True)
    pair = loopback(client, server)
    log.clear()
    pair.client_transport.write(b"question")
    pair.client_transport.write_eof()
    pair.client_transport.write_eof()  # once is enough
    assert client.received == b"question"
    pair.server_transport.write(b" answer")
    assert client.received == b"question answer"
    with pytest.raises(RuntimeError, match="write_eof"):
        pair.client_transport.write(b"more")
    pair.server_transport.close()
    assert log[-4:] == [
        ("client", "data", b" answer"),
        ("server", "lost", None),
        ("client", "eof"),
        ("client", "lost", None),
    ]
    assert [e for e in log if e[1] == "eof"] == [("server", "eof"), ("client", "eof")]


def test_write_eof_with_the_default_eof_received_closes_everything():
    client, server = Recorder("client"), Recorder("server")
    pair = loopback(client, server)
    pair.client_transport.write_eof()
    assert server.lost == [None]
    assert client.lost == [None]
    assert pair.client_transport.can_write_eof()


def test_simultaneous_close_loses_each_end_once():
    client, server = Recorder("client"), Recorder("server")
    pair = loopback(client, server, auto_pump=False)
    pair.client_transport.close()
    pair.server_transport.close()
    pair.pump()
    assert client.lost == [None]
    assert server.lost == [None]
    assert ("client", "eof") not in client.log
    assert ("server", "eof") not in server.log


def test_abort_drops_unsent_data_and_resets_the_peer():
    client, server = Recorder("client"), Recorder("server")
    pair = loopback(client, server, auto_pump=False)
    pair.pump()
    pair.client_transport.write(b"never arrives")
    pair.client_transport.abort()
    pair.client_transport.abort()
    pair.client_transport.close()
    pair.pump()
    assert server.received == b""
    assert client.lost == [None]
    assert len(server.lost) == 1
    assert isinstance(server.lost[0], ConnectionResetError)
    assert pair.server_transport.is_closing()


def test_writes_after_close_are_dropped():
    client, server = Recorder("client"), Recorder("server")
    pair = loopback(client, server)
    pair.client_transport.close()
    pair.client_transport.write(b"late")
    assert server.received == b""
    with pytest.raises(TypeError, match="bytes-like"):
        pair.client_transport.write("text")  # type: ignore[arg-type]


def test_nothing_moves_without_pump_when_auto_pump_is_off():
    client, server = Recorder("client"), Greeter("server")
    pair = loopback(client, server, auto_pump=False)
    assert client.received == b""
    assert pair.server_transport.get_write_buffer_size() == len(b"220 hello\r\n")
    assert pair.pump() is True
    assert client.received == b"220 hello\r\n"
    assert pair.pump() is False
    pair.client_transport.write(b"a")
    pair.client_transport.write(b"b")
    assert server.received == b""
    pair.pump()
    assert server.log[-2:] == [("server", "data", b"a"), ("server", "data", b"b")]


def test_paused_reader_gets_nothing_until_resumed():
    client, server = Recorder("client"), Recorder("server")
    pair = loopback(client, server)
    pair.server_transport.pause_reading()
    assert not pair.server_transport.is_reading()
    pair.client_transport.write(b"held")
    pair.client_transport.close()
    assert server.received == b""
    assert client.lost == []
    assert pair.client_transport.get_write_buffer_size() == 4
    pair.server_transport.resume_reading()
    assert pair.server_transport.is_reading() is False  # it closed on EOF
    assert server.received == b"held"
    assert client.lost == [None]
    assert server.lost == [None]


def test_writer_is_paused_and_resumed_at_the_water_marks():
    log = []
    client, server = Recorder("client", log), Recorder("server", log)
    pair = loopback(client, server)
    pair.client_transport.set_write_buffer_limits(high=8, low=4)
    assert pair.client_transport.get_write_buffer_limits() == (4, 8)
    pair.server_transport.pause_reading()
    log.clear()
    for chunk in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
        pair.client_transport.write(chunk)
    assert log == [("client", "pause_writing")]
    pair.server_transport.resume_reading()
    assert log == [
        ("client", "pause_writing"),
        ("server", "data", b"aaaa"),
        ("server", "data", b"bbbb"),
        ("client", "resume_writing"),
        ("server", "data", b"cccc"),
        ("server", "data", b"dddd"),
    ]


def test_set_protocol_redirects_events():
    client, server, replacement = Recorder("client"), Recorder("server"), Recorder("new")
    pair = loopback(client, server)
    pair.server_transport.set_protocol(replacement)
    assert pair.server_transport.get_protocol() is replacement
    pair.client_transport.write(b"to the new one")
    assert replacement.received == b"to the new one"
    assert server.received == b""


def test_plain_asyncio_protocols_work_too():
    received = []

    class Plain(asyncio.Protocol):
        def data_received(self, data):
            received.append(data)

    client = Recorder("client")
    loopback(client, Plain())
    client.transport.write(b"hi")
    client.transport.close()
    assert received == [b"hi"]
    assert client.lost == [None]
