"""The public surface of torsion.testing."""

from __future__ import annotations

import torsion.testing


def test_public_names():
    assert sorted(torsion.testing.__all__) == [
        "Clock",
        "Loopback",
        "LoopbackTransport",
        "MemoryListener",
        "MemoryProcessTransport",
        "MemoryReactor",
        "MemoryUDPPort",
        "MemoryUNIXDatagramPort",
        "MemoryUNIXListener",
        "PairMaker",
        "ProcessCall",
        "RecordingProtocol",
        "StringTransport",
        "TCPClientCall",
        "TCPServerCall",
        "TLSClientCall",
        "TLSServerCall",
        "UNIXClientCall",
        "UNIXServerCall",
        "assert_no_result",
        "failure_result_of",
        "loopback",
        "require_peer",
        "success_result_of",
        "transport_checks",
    ]
    data = {"transport_checks", "PairMaker"}  # a dict and a type alias: no __module__
    for name in set(torsion.testing.__all__) - data:
        assert getattr(torsion.testing, name).__module__.startswith("torsion.testing.")
    assert all(check.__module__ == "torsion.testing._conformance" for check in data_checks())


def data_checks():
    return torsion.testing.transport_checks.values()


def test_plugin_is_registered_by_entry_point():
    from importlib.metadata import entry_points

    [entry] = [e for e in entry_points(group="pytest11") if e.name == "torsion"]
    assert entry.value == "torsion.testing._pytest_plugin"
