"""An application file: `torsion run examples/app.py` (ECHO_LISTEN=tcp:7000 to move it)."""

import logging
import os

from torsion.application import Application, StreamServerEndpointService, TimerService
from torsion.internet import Reactor, server_from_string
from torsion.protocols import Echo


def application(reactor: Reactor) -> Application:
    app = Application("echo app")
    where = os.environ.get("ECHO_LISTEN", "tcp:8000:interface=127.0.0.1")
    echo = StreamServerEndpointService(
        server_from_string(reactor, where), lambda address: Echo(), description="echo"
    )
    app.add_service(echo, "echo")
    heartbeat = TimerService(60, logging.getLogger("app").info, "still up", clock=reactor)
    app.add_service(heartbeat, "heartbeat")
    return app
