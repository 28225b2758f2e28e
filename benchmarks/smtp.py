"""SMTP server benchmark: messages/s under smtp-source; torsion, Twisted, aiosmtpd, smtp-sink.

Usage: .venv/bin/python benchmarks/smtp.py [--messages N] [--rounds R] [--fsync]
       [--only NAME,...] [--pin-server] [--dir DIR]

postfix's smtp-source (20 sessions at once, 2 KiB messages, one connection
per message: ``smtp-source -s 20 -m N -l 2048 -f ... -t bench@bench.test
127.0.0.1:PORT``) pushes the same load into each contender; each one but
smtp-sink stores every accepted message before answering 250:

* ``torsion-uvloop``: the ``torsion mail`` command itself (``torsion mail
  --maildir DIR --domain bench.test --user bench:secret --smtp ...``), so
  each message goes through the local delivery into the user's Maildir
  (``tmp/`` then ``new/``), on uvloop;
* ``torsion-asyncio``: the same with ``--reactor asyncio``;
* ``twisted``: ``twisted.mail.smtp.ESMTPFactory`` with an ``IMessageDelivery``
  whose messages write their lines to one file each, on the epoll reactor
  (stock ``twistd mail`` with a maildir domain cannot store a message on
  Python 3 here);
* ``aiosmtpd``: ``aiosmtpd.smtp.SMTP`` with a handler whose ``handle_DATA``
  writes the content to a file, on uvloop;
* ``smtp-sink``: postfix's C sink, which discards the mail (the ceiling of
  what the load generator asks).

smtp-source runs pinned to CPU 1. The servers are not pinned: a server
that does its file I/O in threads (torsion's Maildir does) may use the
other CPU for it, as it would on any machine. ``--pin-server`` pins every
server to CPU 0 instead, to compare what each costs on one CPU.

With ``--fsync`` every contender fsyncs each message before answering
(``torsion mail --fsync``, which also fsyncs the directory). After each
run the stored files are counted: every message smtp-source sent must be
there. The files of every run are kept until the end: mass deletes leave
ext4 looking for free inodes among the recently deleted ones, which would
slow down whichever contender runs next (and on a filesystem that other
programs churn, how fast a file is made depends on them: ``--dir
/dev/shm`` stores on tmpfs, which measures the servers alone). Figures
are the median and best messages per second over the rounds (the wall time of smtp-source divided
into the message count), and the server's CPU time per message, from
``/proc``.

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

from _servers import free_port

SERVER_CPU, CLIENT_CPU = "0", "1"
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

DOMAIN = "bench.test"
RECIPIENT = f"bench@{DOMAIN}"


def wait_for_port(proc: subprocess.Popen[bytes], name: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port}")


def start(
    name: str, directory: str, fsync: bool, pin: bool
) -> tuple[subprocess.Popen[bytes], int]:
    prefix = ["taskset", "-c", SERVER_CPU] if pin else []
    if name == "smtp-sink":
        port = free_port()
        argv = [shutil.which("smtp-sink", path="/usr/sbin:/usr/bin") or "smtp-sink"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        proc = subprocess.Popen([*prefix, *argv, f"127.0.0.1:{port}", "512"])
        wait_for_port(proc, name, port)
        return proc, port
    if name.startswith("torsion-"):
        port = free_port()
        torsion = os.path.join(os.path.dirname(sys.executable), "torsion")
        argv = [torsion, "--reactor", name.removeprefix("torsion-"), "--log-level", "warning"]
        argv += ["mail", "--maildir", directory, "--domain", DOMAIN, "--user", "bench:secret"]
        argv += ["--smtp", f"tcp:{port}:interface=127.0.0.1", "--hostname", DOMAIN]
        if fsync:
            argv.append("--fsync")
        proc = subprocess.Popen([*prefix, *argv])
        wait_for_port(proc, name, port)
        return proc, port
    argv = [*prefix, sys.executable, __file__, "server", name, "--dir", directory]
    if fsync:
        argv.append("--fsync")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc, int(line.split()[1])


def cpu_seconds(pid: int) -> float:
    # utime + stime of the whole process (all its threads), from proc(5).
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored(name: str, directory: str) -> int:
    if name.startswith("torsion-"):
        return len(os.listdir(os.path.join(directory, "bench", "new")))
    return len(os.listdir(directory))


def measure(
    name: str, directory: str, messages: int, sessions: int, fsync: bool, pin: bool
) -> tuple[float, float]:
    """Return messages per second and server CPU seconds per message."""
    os.mkdir(directory)
    os.chmod(directory, 0o755)
    if name.startswith("torsion-"):
        os.mkdir(os.path.join(directory, "bench"))
    proc, port = start(name, directory, fsync, pin)
    try:
        source = shutil.which("smtp-source", path="/usr/sbin:/usr/bin") or "smtp-source"
        argv = ["taskset", "-c", CLIENT_CPU, source, "-s", str(sessions), "-m", str(messages)]
        argv += ["-l", "2048", "-f", "bench@source.test", "-t", RECIPIENT, f"127.0.0.1:{port}"]
        cpu_before = cpu_seconds(proc.pid)
        began = time.perf_counter()
        subprocess.run(argv, check=True, timeout=600)
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.kill()
        proc.wait()
    if name != "smtp-sink":
        count = stored(name, directory)
        if count != messages:
            raise RuntimeError(f"{name}: {count} of {messages} messages stored")
    return messages / elapsed, cpu / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--pin-server", action="store_true")
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument(
        "--dir",
        help="where the messages are stored (default: the system's temporary directory; "
        "/dev/shm takes the filesystem out of the figures)",
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    rates: dict[str, list[float]] = {n: [] for n in names}
    costs: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="smtp-bench-", dir=args.dir) as top:
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                directory = os.path.join(top, f"{name}-{round_}")
                rate, cost = measure(
                    name, directory, args.messages, args.sessions, args.fsync, args.pin_server
                )
                rates[name].append(rate)
                costs[name].append(cost)
    print(
        f"smtp-source -s {args.sessions} -m {args.messages} -l 2048 (CPU {CLIENT_CPU}), "
        f"{args.rounds} rounds{', fsync' if args.fsync else ''}, "
        f"servers {'on CPU ' + SERVER_CPU if args.pin_server else 'not pinned'}, "
        f"messages in {args.dir or tempfile.gettempdir()}"
    )
    twisted = statistics.median(rates["twisted"]) if "twisted" in rates else None
    for name in names:
        median = statistics.median(rates[name])
        ratio = f"  {median / twisted:.2f}x twisted" if twisted else ""
        cpu = statistics.median(costs[name]) * 1e6
        print(
            f"{name:16} {median:8.0f} msg/s (best {max(rates[name]):.0f})"
            f"  {cpu:5.0f} us CPU/msg{ratio}"
        )


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
        else:
            serve_aiosmtpd(opts.dir, opts.fsync)
    else:
        main()
