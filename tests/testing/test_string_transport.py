"""torsion.testing.StringTransport: a recording transport."""

from __future__ import annotations

import asyncio

import pytest

from torsion.testing import StringTransport


class FlowRecorder(asyncio.Protocol):
    def __init__(self):
        self.events = []

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")


def test_is_an_asyncio_transport():
    assert isinstance(StringTransport(), asyncio.Transport)


def test_records_writes_until_cleared():
    transport = StringTransport()
    assert transport.value() == b""
    transport.write(b"hello ")
    transport.write(bytearray(b"wor"))
    transport.write(memoryview(b"ld"))
    transport.writelines([b"!", b"\r\n"])
    assert transport.value() == b"hello world!\r\n"
    assert transport.get_write_buffer_size() == 14
    transport.clear()
    assert transport.value() == b""
    assert transport.get_write_buffer_size() == 0
    transport.write(b"more")
    assert transport.value() == b"more"


def test_value_is_a_snapshot():
    transport = StringTransport()
    transport.write(b"a")
    value = transport.value()
    transport.write(b"b")
    assert value == b"a"


def test_refuses_text():
    transport = StringTransport()
    with pytest.raises(TypeError, match="bytes-like"):
        transport.write("text")  # type: ignore[arg-type]


def test_write_eof_is_recorded_and_forbids_more_writes():
    transport = StringTransport()
    assert transport.can_write_eof()
    assert not transport.eof_written
    transport.write_eof()
    assert transport.eof_written
    assert not transport.is_closing()
    with pytest.raises(RuntimeError, match="write_eof"):
        transport.write(b"late")


def test_can_write_eof_is_configurable():
    assert not StringTransport(can_write_eof=False).can_write_eof()


def test_close_is_recorded_and_later_writes_are_dropped():
    transport = StringTransport()
    transport.write(b"bye")
    transport.close()
    assert transport.closed
    assert not transport.aborted
    assert transport.is_closing()
    transport.write(b"dropped")
    transport.write_eof()
    assert transport.value() == b"bye"
    assert not transport.eof_written
    transport.close()  # twice is fine


def test_abort_is_recorded():
    transport = StringTransport()
    transport.abort()
    assert transport.aborted
    assert transport.closed
    assert transport.is_closing()


def test_addresses_and_extra_info():
    transport = StringTransport(extra={"cipher": "none"})
    assert transport.get_extra_info("peername") == transport.peer
    assert transport.get_extra_info("sockname") == transport.host
    assert transport.get_extra_info("cipher") == "none"
    assert transport.get_extra_info("socket") is None
    assert transport.get_extra_info("socket", "default") == "default"
    transport.peer = ("2001:db8::1", 1234, 0, 0)
    transport.host = ("2001:db8::2", 25, 0, 0)
    assert transport.get_extra_info("peername") == ("2001:db8::1", 1234, 0, 0)
    assert transport.get_extra_info("sockname") == ("2001:db8::2", 25, 0, 0)


def test_addresses_can_be_given_at_creation():
    transport = StringTransport(peer=("10.0.0.2", 5), host=("10.0.0.1", 6))
    assert transport.peer == ("10.0.0.2", 5)
    assert transport.host == ("10.0.0.1", 6)


def test_reading_can_be_paused_and_resumed():
    transport = StringTransport()
    assert transport.is_reading()
    transport.pause_reading()
    transport.pause_reading()
    assert not transport.is_reading()
    transport.resume_reading()
    assert transport.is_reading()
    transport.close()
    assert not transport.is_reading()


def test_protocol_is_attached_or_not():
    transport = StringTransport()
    with pytest.raises(RuntimeError, match="no protocol"):
        transport.get_protocol()
    protocol = FlowRecorder()
    transport.set_protocol(protocol)
    assert transport.get_protocol() is protocol


def test_flow_control_pauses_past_high_and_resumes_on_clear():
    protocol = FlowRecorder()
    transport = StringTransport(protocol)
    transport.set_write_buffer_limits(high=10, low=2)
    assert transport.get_write_buffer_limits() == (2, 10)
    transport.write(b"x" * 10)
    assert protocol.events == []
    transport.write(b"x")
    assert protocol.events == ["pause"]
    transport.write(b"x" * 100)
    assert protocol.events == ["pause"]
    transport.clear()
    assert protocol.events == ["pause", "resume"]
    transport.clear()
    assert protocol.events == ["pause", "resume"]


def test_lowering_the_limits_can_pause_at_once():
    protocol = FlowRecorder()
    transport = StringTransport(protocol)
    transport.write(b"x" * 100)
    transport.set_write_buffer_limits(high=50)
    assert protocol.events == ["pause"]
    assert transport.get_write_buffer_limits() == (12, 50)


def test_default_limits_are_asyncios():
    transport = StringTransport()
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)


def test_bad_limits_are_rejected():
    transport = StringTransport()
    with pytest.raises(ValueError, match="must be >="):
        transport.set_write_buffer_limits(high=1, low=2)
    with pytest.raises(ValueError, match="must be >="):
        transport.set_write_buffer_limits(high=-1, low=-1)


def test_drives_a_protocol_by_hand():
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    protocol = Echo()
    transport = StringTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"abc")
    assert transport.value() == b"ABC"
