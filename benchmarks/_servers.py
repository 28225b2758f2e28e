"""What the server benchmarks share: ports, stopping a server, the machine's load, a hello app.

Imported by ``web.py``, ``http2.py``, ``static.py``, ``smtp.py`` and
``transports.py`` (each is run as a script, with this directory on
``sys.path``).
"""

from __future__ import annotations

import socket
import subprocess

HOST = "127.0.0.1"
BODY = b"Hello, World!"


def free_port(host: str = HOST) -> int:
    """Return a TCP port free on ``host`` now (the server binds it next)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server, and SIGKILL it if it has not gone in 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as printed with each run."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def hello_asgi_app(scope, receive, send):  # type: ignore[no-untyped-def]
    """A raw ASGI app (no framework) that answers every request ``Hello, World!``."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
