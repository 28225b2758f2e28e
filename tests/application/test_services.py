"""Services and service trees: order, failures, hurrying, reloading, timers, ports."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from torsion.application import (
    Application,
    BaseService,
    DatagramService,
    MultiService,
    StreamServerEndpointService,
    TimerService,
)
from torsion.defer import CancelledError, Deferred
from torsion.errors import CannotListenError
from torsion.internet import (
    ClientService,
    IPv4Address,
    Protocol,
    Reactor,
    TCPServerEndpoint,
    TLSServerEndpoint,
    server_tls,
)
from torsion.protocols import Echo, UDPEcho
from torsion.testing import (
    Clock,
    MemoryReactor,
    StringTransport,
    assert_no_result,
    failure_result_of,
    success_result_of,
)

Wait = Callable[..., Any]


class Recorder(BaseService):
    """Writes what happens to it into a shared log; its stop waits when asked to."""

    def __init__(self, name: str, log: list[str], *, slow_stop: bool = False) -> None:
        self.name = name
        self.log = log
        self.slow_stop = slow_stop
        self.stopping: Deferred[None] | None = None

    def privileged_start_service(self) -> None:
        self.log.append(f"privileged {self.name}")

    def start_service(self) -> None:
        super().start_service()
        self.log.append(f"start {self.name}")

    def stop_service(self) -> Deferred[None] | None:
        super().stop_service()
        self.log.append(f"stop {self.name}")
        if not self.slow_stop:
            return None

        def cancelled(_: Deferred[None]) -> None:
            self.log.append(f"hurried {self.name}")

        self.stopping = Deferred(cancelled)
        return self.stopping

    def reload_service(self) -> None:
        self.log.append(f"reload {self.name}")


class FailsToStart(BaseService):
    def start_service(self) -> None:
        raise RuntimeError("no database")


# -- MultiService -------------------------------------------------------------------------


def test_children_start_in_order_and_stop_in_reverse_waiting_for_each() -> None:
    log: list[str] = []
    tree = MultiService()
    first, second = Recorder("a", log, slow_stop=True), Recorder("b", log, slow_stop=True)
    tree.add_service(first)
    tree.add_service(second)
    success_result_of(tree.privileged_start_service())
    success_result_of(tree.start_service())
    assert log == ["privileged a", "privileged b", "start a", "start b"]
    assert tree.running
    assert first.running
    assert second.running
    log.clear()
    stopped = tree.stop_service()
    assert log == ["stop b"]  # a waits until b has finished stopping
    assert second.stopping is not None
    second.stopping.callback(None)
    assert log == ["stop b", "stop a"]
    assert_no_result(stopped)
    assert first.stopping is not None
    first.stopping.callback(None)
    success_result_of(stopped)
    assert not tree.running
    assert not first.running


def test_start_without_privileged_start_runs_it_for_each_child_first() -> None:
    log: list[str] = []
    tree = Application("app")
    tree.add_service(Recorder("a", log))
    tree.add_service(Recorder("b", log))
    success_result_of(tree.start_service())
    assert log == ["privileged a", "start a", "privileged b", "start b"]


def test_a_child_that_fails_to_start_stops_the_ones_started() -> None:
    log: list[str] = []
    tree = MultiService()
    tree.add_service(Recorder("a", log))
    tree.add_service(Recorder("b", log))
    tree.add_service(FailsToStart())
    tree.add_service(Recorder("d", log))
    success_result_of(tree.privileged_start_service())
    log.clear()
    error = failure_result_of(tree.start_service(), RuntimeError)
    assert str(error) == "no database"
    # d bound what it binds in its privileged start: it is stopped too.
    assert log == ["start a", "start b", "stop d", "stop b", "stop a"]
    assert not tree.running


def test_named_children() -> None:
    log: list[str] = []
    tree = MultiService()
    web = Recorder("web", log)
    tree.add_service(web, "web")
    tree.add_service(Recorder("anonymous", log))
    assert tree.get_service("web") is web
    assert tree.names == ["web"]
    assert len(tree) == 2
    assert web in tree
    with pytest.raises(ValueError, match="has a child named 'web' already"):
        tree.add_service(Recorder("other", log), "web")
    with pytest.raises(ValueError, match="is a child of"):
        tree.add_service(web)
    with pytest.raises(KeyError):
        tree.get_service("dns")
    success_result_of(tree.remove_service("web"))
    assert tree.names == []
    assert web not in tree
    assert log == []  # the tree was not running: nothing started or stopped


def test_adding_to_a_running_tree_starts_the_child_and_removing_stops_it() -> None:
    log: list[str] = []
    tree = MultiService()
    success_result_of(tree.start_service())
    late = Recorder("late", log)
    success_result_of(tree.add_service(late, "late"))
    assert log == ["privileged late", "start late"]
    success_result_of(tree.remove_service(late))
    assert log == ["privileged late", "start late", "stop late"]


def test_cancelling_a_stop_hurries_the_child_stopping_and_every_one_after() -> None:
    log: list[str] = []
    tree = MultiService()
    for name in "abc":
        tree.add_service(Recorder(name, log, slow_stop=True))
    success_result_of(tree.start_service())
    log.clear()
    stopped = tree.stop_service()
    assert log == ["stop c"]
    stopped.cancel()
    failure_result_of(stopped, CancelledError)
    assert log == ["stop c", "hurried c", "stop b", "hurried b", "stop a", "hurried a"]


def test_nested_trees_hurry_all_the_way_down() -> None:
    log: list[str] = []
    root, branch = MultiService(), MultiService()
    branch.add_service(Recorder("leaf", log, slow_stop=True))
    root.add_service(Recorder("first", log, slow_stop=True))
    root.add_service(branch)
    success_result_of(root.start_service())
    log.clear()
    stopped = root.stop_service()
    stopped.cancel()
    failure_result_of(stopped, CancelledError)
    assert log == ["stop leaf", "hurried leaf", "stop first", "hurried first"]


def test_a_child_that_fails_to_stop_is_logged_and_the_rest_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    class Broken(BaseService):
        def stop_service(self) -> None:
            raise OSError("disk gone")

    tree = MultiService()
    tree.add_service(Recorder("a", log))
    tree.add_service(Broken(), "broken")
    success_result_of(tree.start_service())
    log.clear()
    success_result_of(tree.stop_service())
    assert log == ["stop a"]
    assert "Stopping 'broken' failed: OSError('disk gone')" in caplog.text


def test_reload_reaches_every_child_that_can_and_logs_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    class BadReload(BaseService):
        def reload_service(self) -> None:
            raise ValueError("zone file has a syntax error")

    tree, branch = MultiService(), MultiService()
    tree.add_service(Recorder("a", log))
    tree.add_service(BadReload(), "zones")
    branch.add_service(Recorder("b", log))
    tree.add_service(branch)
    tree.add_service(TimerService(1, lambda: None, clock=Clock()))  # cannot reload: skipped
    success_result_of(tree.reload_service())
    assert log == ["reload a", "reload b"]
    assert "Reloading 'zones' failed: zone file has a syntax error" in caplog.text


def test_client_service_is_a_service_as_it_is() -> None:
    reactor = MemoryReactor()
    tree = MultiService()
    client = ClientService(
        TCPServerEndpointClient(reactor), lambda _: Protocol(), clock=reactor.clock
    )
    tree.add_service(client, "client")
    success_result_of(tree.start_service())
    assert client.running
    assert [call.port for call in reactor.tcp_clients] == [7]
    success_result_of(tree.stop_service())
    assert not client.running


class TCPServerEndpointClient:
    """A client endpoint over a MemoryReactor: connects to 192.0.2.7:7."""

    def __init__(self, reactor: MemoryReactor) -> None:
        self.reactor = reactor

    def connect(self, factory):  # type: ignore[no-untyped-def]
        return self.reactor.connect_tcp("192.0.2.7", 7, factory).deferred


# -- TimerService -------------------------------------------------------------------------


def test_timer_calls_every_interval_while_running() -> None:
    clock = Clock()
    calls: list[float] = []
    timer = TimerService(10, lambda: calls.append(clock.seconds()), clock=clock)
    timer.start_service()
    clock.pump([10, 10, 5])
    assert calls == [0, 10, 20]
    success_result_of(timer.stop_service())
    clock.advance(100)
    assert calls == [0, 10, 20]
    assert clock.get_delayed_calls() == []


def test_timer_logs_a_failing_call_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    results = iter([ValueError("first"), None, None])

    def job() -> None:
        outcome = next(results)
        if outcome is not None:
            raise outcome

    timer = TimerService(1, job, clock=clock, now=False)
    timer.start_service()
    clock.pump([1, 1, 1])
    assert timer.failures == 1
    assert "ValueError('first')" in caplog.text
    success_result_of(timer.stop_service())


def test_timer_stop_waits_for_the_call_under_way() -> None:
    clock = Clock()
    pending: Deferred[None] = Deferred()
    timer = TimerService(1, lambda: pending, clock=clock)
    timer.start_service()
    stopped = timer.stop_service()
    assert_no_result(stopped)  # type: ignore[arg-type]
    pending.callback(None)
    success_result_of(stopped)  # type: ignore[arg-type]


# -- StreamServerEndpointService on a memory reactor ------------------------------------------


class Finishing(Protocol):
    """Closes its connection when asked to stop gracefully."""

    def __init__(self) -> None:
        self.asked = False

    def stop_gracefully(self) -> None:
        self.asked = True
        self.transport.close()


def test_endpoint_service_binds_in_the_privileged_start_once() -> None:
    reactor = MemoryReactor()
    service = StreamServerEndpointService(
        TCPServerEndpoint(reactor, 7), lambda _: Echo(), description="echo"
    )
    success_result_of(service.privileged_start_service())
    success_result_of(service.start_service())
    assert [call.port for call in reactor.tcp_servers] == [7]
    assert service.port is not None
    assert service.port.address == IPv4Address("0.0.0.0", 7)


def test_endpoint_service_stop_waits_for_connections_then_hurry_aborts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    reactor = MemoryReactor()
    service = StreamServerEndpointService(
        TCPServerEndpoint(reactor, 7), lambda _: Echo(), description="echo"
    )
    success_result_of(service.start_service())
    [call] = reactor.tcp_servers
    first = call.accept()
    second = call.accept()
    assert isinstance(first, Echo)
    assert isinstance(second, Echo)
    assert service.connections == 2
    stopped = service.stop_service()
    assert not call.listener.listening
    assert_no_result(stopped)
    first.connection_lost(None)  # one client finishes by itself
    assert_no_result(stopped)
    assert service.connections == 1
    stopped.cancel()
    failure_result_of(stopped, CancelledError)
    transport = second.transport
    assert isinstance(transport, StringTransport)
    assert transport.aborted
    assert "echo: waiting for 2 connection(s) to finish" in caplog.text
    assert "echo: closing 1 connection(s) still open" in caplog.text


def test_endpoint_service_asks_graceful_protocols_to_finish() -> None:
    reactor = MemoryReactor()
    service = StreamServerEndpointService(TCPServerEndpoint(reactor, 7), lambda _: Finishing())
    success_result_of(service.start_service())
    protocol = reactor.tcp_servers[0].accept()
    assert isinstance(protocol, Finishing)
    stopped = service.stop_service()
    assert protocol.asked
    transport = protocol.transport
    assert isinstance(transport, StringTransport)
    assert transport.closed
    protocol.connection_lost(None)  # the close completes
    success_result_of(stopped)


class Slotted(asyncio.Protocol):
    __slots__ = ("lost",)

    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def test_endpoint_service_tracks_protocols_that_have_slots() -> None:
    reactor = MemoryReactor()
    service = StreamServerEndpointService(TCPServerEndpoint(reactor, 7), lambda _: Slotted())
    success_result_of(service.start_service())
    wrapper = reactor.tcp_servers[0].accept()
    assert wrapper is not None
    assert service.connections == 1
    stopped = service.stop_service()
    assert_no_result(stopped)
    wrapper.connection_lost(None)
    success_result_of(stopped)


# -- on real reactors ---------------------------------------------------------------------


def test_endpoint_service_lets_a_real_connection_finish(real_reactor: Reactor, wait: Wait) -> None:
    service = StreamServerEndpointService(
        TCPServerEndpoint(real_reactor, 0, interface="127.0.0.1"), lambda _: Echo()
    )
    wait(real_reactor, service.start_service())
    port = service.port
    assert port is not None
    address = port.address
    assert isinstance(address, IPv4Address)

    async def scenario() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", address.port)
        writer.write(b"before\n")
        assert await reader.readline() == b"before\n"
        stopped = service.stop_service()
        await port.stop_listening()  # the moment the port has closed
        # No new connections...
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", address.port)
        # ...but the one in hand is still served.
        writer.write(b"after\n")
        assert await reader.readline() == b"after\n"
        assert not stopped.called
        writer.close()
        await writer.wait_closed()
        await stopped

    wait(real_reactor, scenario())


def test_endpoint_service_start_fails_on_a_taken_port(real_reactor: Reactor, wait: Wait) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        tree = Application("app")
        tree.add_service(
            StreamServerEndpointService(
                TCPServerEndpoint(real_reactor, port, interface="127.0.0.1"), lambda _: Echo()
            )
        )
        with pytest.raises(CannotListenError, match=f"127.0.0.1:{port}"):
            wait(real_reactor, tree.start_service())
        assert not tree.running


def test_datagram_service_serves_udp(real_reactor: Reactor, wait: Wait) -> None:
    service = DatagramService(real_reactor, 0, UDPEcho(), interface="127.0.0.1")
    service.start_service()
    assert service.udp_port is not None
    port = service.udp_port.port

    async def ask() -> bytes:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                answer.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
        try:
            transport.sendto(b"ping")
            return await answer
        finally:
            transport.close()

    assert wait(real_reactor, ask()) == b"ping"
    wait(real_reactor, service.stop_service())
    assert service.udp_port is None


def test_reload_rereads_a_tls_endpoints_certificates(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    default = ca.issue_cert("localhost")
    default.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    sni = tmp_path / "sni"
    sni.mkdir()
    tls = server_tls(tmp_path / "server.pem", sni_dir=sni)
    service = StreamServerEndpointService(
        TLSServerEndpoint(MemoryReactor(), 443, tls), lambda _: Echo()
    )
    assert tls.names == ()
    other = ca.issue_cert("www.example.test")
    other.private_key_and_cert_chain_pem.write_to_path(str(sni / "www.example.test.pem"))
    service.reload_service()
    assert tls.names == ("www.example.test",)
