"""SMTP server benchmark: messages/s under smtp-source; torsion, Twisted, aiosmtpd, smtp-sink.

Usage: .venv/bin/python benchmarks/smtp.py [--messages N] [--rounds R] [--fsync] [--only NAME,...]

postfix's smtp-source (20 sessions at once, 2 KiB messages, one connection
per message: ``smtp-source -s 20 -m N -l 2048 127.0.0.1:PORT``) pushes the
same load into each contender; each one but smtp-sink writes every accepted
message to a file of its own before answering 250:

* ``torsion-uvloop``: ``torsion.mail.smtp.SMTPFactory`` with a delivery that
  writes one file per message, on a Reactor on uvloop;
* ``torsion-asyncio``: the same on the stdlib loop;
* ``twisted``: ``twisted.mail.smtp.ESMTPFactory`` with an ``IMessageDelivery``
  whose messages write their lines to one file each, on the epoll reactor;
* ``aiosmtpd``: ``aiosmtpd.smtp.SMTP`` with a handler whose ``handle_DATA``
  writes the content to a file, on uvloop;
* ``smtp-sink``: postfix's C sink, which discards the mail (the ceiling of
  what the load generator asks).

With ``--fsync`` the Python contenders fsync each file before answering.
After each run the files are counted: every message smtp-source sent must
be on disk. Figures are the median (and best) messages per second over the
rounds, the wall time of smtp-source divided into the message count.

Needs smtp-source and smtp-sink (``apt-get install postfix``; the
``policy-rc.d`` keeps the service from starting), Twisted and aiosmtpd (the
``bench`` extra). Internal mode (the driver starts it):
``smtp.py server NAME --dir DIR [--fsync]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = ("torsion-uvloop", "torsion-asyncio", "twisted", "aiosmtpd", "smtp-sink")


def _write(directory: str, number: int, data: bytes, fsync: bool) -> None:
    path = os.path.join(directory, f"{number}.eml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


# -- servers (internal mode) ---------------------------------------------------------


def serve_torsion(directory: str, fsync: bool, uvloop: bool) -> None:
    from torsion.internet import Reactor
    from torsion.mail.smtp import SMTPFactory

    class FileDelivery:
        count = 0

        def validate_sender(self, session, sender):
            return None

        def validate_recipient(self, session, recipient):
            return None

        def deliver(self, session, envelope, message):
            self.count += 1
            _write(directory, self.count, message, fsync)

    reactor = Reactor(uvloop=uvloop)
    factory = SMTPFactory(FileDelivery(), clock=reactor, hostname="bench.test")
    listener = reactor.listen_tcp(0, factory, interface="127.0.0.1", backlog=512)
    _announce(listener.port)
    reactor.run()


def serve_twisted(directory: str, fsync: bool) -> None:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor
    from twisted.mail import smtp
    from zope.interface import implementer

    counter = [0]

    @implementer(smtp.IMessage)
    class FileMessage:
        def __init__(self) -> None:
            self.lines: list[bytes] = []

        def lineReceived(self, line):  # noqa: N802 - the name the library calls
            self.lines.append(line)

        def eomReceived(self):  # noqa: N802 - the name the library calls
            counter[0] += 1
            _write(directory, counter[0], b"\r\n".join(self.lines) + b"\r\n", fsync)
            return defer.succeed(None)

        def connectionLost(self):  # noqa: N802 - the name the library calls
            self.lines = []

    @implementer(smtp.IMessageDelivery)
    class FileDelivery:
        def receivedHeader(self, helo, origin, recipients):  # noqa: N802 - the name the library calls
            return b"Received: from bench"

        def validateFrom(self, helo, origin):  # noqa: N802 - the name the library calls
            return origin

        def validateTo(self, user):  # noqa: N802 - the name the library calls
            return FileMessage

    delivery = FileDelivery()

    class Server(smtp.ESMTP):
        def __init__(self) -> None:
            super().__init__()
            self.delivery = delivery

    factory = smtp.SMTPFactory()
    factory.protocol = Server
    port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=512)
    _announce(port.getHost().port)
    reactor.run()


def serve_aiosmtpd(directory: str, fsync: bool) -> None:
    import asyncio

    import uvloop
    from aiosmtpd.smtp import SMTP

    counter = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - the name the library calls
            counter[0] += 1
            _write(directory, counter[0], envelope.original_content, fsync)
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname="bench.test"), "127.0.0.1", 0, backlog=512
        )
        _announce(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    uvloop.run(main())


# -- driver --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, directory: str, fsync: bool) -> tuple[subprocess.Popen[bytes], int]:
    if name == "smtp-sink":
        port = free_port()
        argv = [shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") or "smtp-sink"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        proc = subprocess.Popen([*argv, f"127.0.0.1:{port}", "512"])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        return proc, port
    argv = [sys.executable, __file__, "server", name, "--dir", directory]
    if fsync:
        argv.append("--fsync")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc, int(line.split()[1])


def measure(name: str, messages: int, sessions: int, fsync: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as directory:
        os.chmod(directory, 0o755)
        proc, port = start(name, directory, fsync)
        try:
            source = shutil.which("smtp-source", path="/usr/sbin:/usr/bin") or "smtp-source"
            argv = [source, "-s", str(sessions), "-m", str(messages), "-l", "2048"]
            began = time.perf_counter()
            subprocess.run([*argv, f"127.0.0.1:{port}"], check=True, timeout=600)
            elapsed = time.perf_counter() - began
        finally:
            proc.kill()
            proc.wait()
        if name != "smtp-sink":
            stored = len(list(Path(directory).iterdir()))
            if stored != messages:
                raise RuntimeError(f"{name}: {stored} of {messages} messages stored")
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--only", default=",".join(CONTENDERS))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    figures: dict[str, list[float]] = {n: [] for n in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            figures[name].append(measure(name, args.messages, args.sessions, args.fsync))
    print(
        f"smtp-source -s {args.sessions} -m {args.messages} -l 2048, "
        f"{args.rounds} rounds{', fsync' if args.fsync else ''}"
    )
    twisted = statistics.median(figures["twisted"]) if "twisted" in figures else None
    for name in names:
        median = statistics.median(figures[name])
        ratio = f"  {median / twisted:.2f}x twisted" if twisted else ""
        print(f"{name:16} {median:8.0f} msg/s (best {max(figures[name]):.0f}){ratio}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "server":
        server = argparse.ArgumentParser()
        server.add_argument("command")
        server.add_argument("name")
        server.add_argument("--dir", required=True)
        server.add_argument("--fsync", action="store_true")
        opts = server.parse_args()
        if opts.name == "twisted":
            serve_twisted(opts.dir, opts.fsync)
        elif opts.name == "aiosmtpd":
            serve_aiosmtpd(opts.dir, opts.fsync)
        else:
            serve_torsion(opts.dir, opts.fsync, uvloop=opts.name == "torsion-uvloop")
    else:
        main()
