"""Applications: service trees, plugins, and the ``torsion`` command that runs them.

A service starts and stops (``Service``; ``BaseService`` to subclass);
``MultiService`` holds named children, started in order and stopped in
reverse, and ``Application`` is the root of a tree. Ready-made services:
``StreamServerEndpointService`` (listen on an endpoint, stop gracefully),
``DatagramService`` (a UDP port), ``TimerService`` (call something every so
often), ``ProcessMonitor`` (keep processes running), ``InetdService`` (a
program per connection) and ``torsion.internet.ClientService`` (keep a
connection up).

The ``torsion`` command (``main``) runs a ``Plugin`` (``torsion echo``), an
application file (``torsion run app.py``) or a deployment file (``torsion -f
echo.toml``, written by ``torsion mktap``) as a Unix service: logging,
daemon, pidfile, privileges, workers, systemd notifications, graceful
shutdown. Plugins declare their options as ``Option`` values and are found
through the ``torsion.plugins`` entry-point group.
"""

from torsion.application._app import Application
from torsion.application._cli import main
from torsion.application._endpoint_service import (
    DatagramService,
    GracefulProtocol,
    StreamServerEndpointService,
)
from torsion.application._errors import DeploymentFileError, PidfileError, RunnerError, UsageError
from torsion.application._inetd import InetdService
from torsion.application._multi import MultiService
from torsion.application._plugins import Option, Plugin
from torsion.application._procmon import ManagedProcess, ProcessMonitor
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
    "DeploymentFileError",
    "GracefulProtocol",
    "InetdService",
    "ManagedProcess",
    "MultiService",
    "Option",
    "PidfileError",
    "Plugin",
    "PrivilegedService",
    "ProcessMonitor",
    "ReloadableService",
    "RunnerError",
    "Service",
    "StreamServerEndpointService",
    "TimerService",
    "UsageError",
    "main",
]
