"""Test doubles for code built on torsion, and its pytest plugin.

* ``Clock``: fake time, moved by ``advance``/``pump``.
* ``StringTransport``: a transport that records what a protocol writes.
* ``loopback``: two protocols connected in memory, delivering synchronously.
* ``success_result_of``, ``failure_result_of``, ``assert_no_result``: read a
  Deferred's outcome in a synchronous test.
* ``require_peer``: the path of a real peer program, or skip (fail in CI).
* ``MemoryReactor``: a reactor that records every call and does nothing,
  with fake time: TCP, TLS and Unix connections the test plays through the
  records (``TCPServerCall``, ``TLSClientCall``, ...), datagram ports it
  delivers to (``MemoryUDPPort``, ``MemoryUNIXDatagramPort``), child
  processes it plays (``ProcessCall``, ``MemoryProcessTransport``) and
  descriptor watches it fires.
* ``transport_checks``: the conformance suite every stream transport passes
  (with ``RecordingProtocol`` and the ``PairMaker`` a transport provides).

The pytest plugin (``torsion.testing._pytest_plugin``, loaded by itself) runs
``async def`` and Deferred-returning tests on a fresh reactor and fails tests
that leave pending calls, busy threads or unhandled Deferred errors behind;
it provides the ``reactor``, ``clock`` and ``unhandled_errors`` fixtures.
"""

from torsion.testing._clock import Clock
from torsion.testing._conformance import PairMaker, RecordingProtocol, transport_checks
from torsion.testing._loopback import Loopback, LoopbackTransport, loopback
from torsion.testing._memory_datagrams import MemoryUDPPort, MemoryUNIXDatagramPort
from torsion.testing._memory_process import MemoryProcessTransport, ProcessCall
from torsion.testing._memory_reactor import MemoryReactor
from torsion.testing._memory_streams import (
    MemoryListener,
    MemoryUNIXListener,
    TCPClientCall,
    TCPServerCall,
    TLSClientCall,
    TLSServerCall,
    UNIXClientCall,
    UNIXServerCall,
)
from torsion.testing._peers import require_peer
from torsion.testing._results import assert_no_result, failure_result_of, success_result_of
from torsion.testing._string_transport import StringTransport

__all__ = [
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
