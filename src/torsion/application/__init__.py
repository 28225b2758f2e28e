"""Applications: service trees, and the ``torsion`` command that runs them.

A service starts and stops (``Service``, ``BaseService``); ``MultiService``
holds named children, started in order and stopped in reverse, and
``Application`` is the root. Ready-made services: ``StreamServerEndpointService``
(listen on an endpoint, stop gracefully), ``DatagramService`` (a UDP port),
``TimerService`` (call something every so often), and
``torsion.internet.ClientService`` (keep a connection up).
"""

from torsion.application._app import Application
from torsion.application._cli import main
from torsion.application._endpoint_service import (
    DatagramService,
    GracefulProtocol,
    StreamServerEndpointService,
)
from torsion.application._multi import MultiService
from torsion.application._service import (
    BaseService,
    PrivilegedService,
    ReloadableService,
    Service,
)
from torsion.application._timer import TimerService

__all__ = [
    "Application",
    "BaseService",
    "DatagramService",
    "GracefulProtocol",
    "MultiService",
    "PrivilegedService",
    "ReloadableService",
    "Service",
    "StreamServerEndpointService",
    "TimerService",
    "main",
]
