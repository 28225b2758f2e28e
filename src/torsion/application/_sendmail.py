"""``torsion sendmail``: submit a message read from standard input, as sendmail(8) does.

Programs that send mail run ``sendmail -oi -t`` or ``sendmail -f SENDER
RECIPIENT...`` and write the message to its standard input; this command
takes those options and hands the message to an SMTP server over
``--connect ENDPOINT`` (by default ``tcp:localhost:25``, the local mail
server, as sendmail itself would). Options:

- ``-t``: the recipients are also taken from the To, Cc and Bcc fields,
  and Bcc fields are removed from the message sent (as Postfix does, the
  recipients given as arguments are kept too).
- ``-f SENDER`` (or ``-r``): the envelope sender; ``-f ''`` or ``-f '<>'``
  for the null sender. By default the user's name at this host.
- ``-i`` / ``-oi``: a line holding only "." does not end the message (by
  default it does, as in sendmail).
- ``--connect ENDPOINT``: a client endpoint string (``tls:...`` for SMTP
  over TLS, port 465).
- ``--tls {required,opportunistic,none}``: STARTTLS; by default
  opportunistic, or none when connecting to this host (a loopback
  address or ``localhost``), where it protects nothing and no
  certificate would match. ``--ca FILE`` trusts another CA.
- ``--auth USER:PASSWORD``: log in (CRAM-MD5, PLAIN or LOGIN; the latter
  two only over TLS). The password is read from the environment variable
  ``TORSION_SMTP_PASSWORD`` when only ``USER`` is given, since a command
  line can be read by other users of the host.
- Other sendmail options (``-oX``, ``-odi``, ``-v``, ``-F NAME``, ``-bm``)
  are accepted and ignored, so that programs calling sendmail work.

The exit status follows sysexits.h as sendmail's does: 0 sent, 64
(EX_USAGE) bad command line, 65 (EX_DATAERR) bad message or no recipient,
67 (EX_NOUSER) a recipient was refused, 69 (EX_UNAVAILABLE) the server
refused for good, 75 (EX_TEMPFAIL) try again later (a recipient deferred,
the server unreachable or answering 4xx), 70 (EX_SOFTWARE) anything else.
"""

from __future__ import annotations

import email.parser
import email.policy
import getpass
import ipaddress
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Final, TextIO

from torsion.application._errors import UsageError
from torsion.errors import EndpointStringError, TLSConfigError
from torsion.internet import Reactor, client_context, client_from_string

__all__ = [
    "EX_DATAERR",
    "EX_NOUSER",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "SendmailOptions",
    "extract_recipients",
    "parse_arguments",
    "read_message",
    "sendmail_main",
    "submit",
]

# sysexits.h
EX_OK: Final = 0
EX_USAGE: Final = 64
EX_DATAERR: Final = 65
EX_NOUSER: Final = 67
EX_UNAVAILABLE: Final = 69
EX_SOFTWARE: Final = 70
EX_TEMPFAIL: Final = 75

DEFAULT_CONNECT: Final = "tcp:localhost:25"
DEFAULT_MAX_SIZE: Final = 64 * 1024 * 1024
PASSWORD_VARIABLE: Final = "TORSION_SMTP_PASSWORD"

_USAGE: Final = """\
usage: torsion sendmail [-t] [-i] [-f SENDER] [--connect ENDPOINT]
                        [--tls required|opportunistic|none] [--ca FILE]
                        [--auth USER[:PASSWORD]] [--helo NAME] [RECIPIENT ...]

Reads a message from standard input and submits it over SMTP.
"""
_TLS_MODES: Final = ("required", "opportunistic", "none")
# sendmail options that take a value, given attached or as the next word.
_IGNORED_WITH_VALUE: Final = frozenset("BCFLNORVXhpq")


@dataclass
class SendmailOptions:
    """What the command line asked for.

    Attributes:
        recipients: The recipients given as arguments.
        sender: The envelope sender, or None for the default.
        from_headers: ``-t``: take recipients from To, Cc and Bcc too.
        dot_ends: Whether a line holding only "." ends the message.
        connect: The client endpoint string of the server.
        tls: STARTTLS mode ("required", "opportunistic", "none"), or None
            for the default (see the module).
        ca_file: A CA certificate file to trust instead of the system's.
        auth: ``(user, password)``, or None.
        helo: The name to give in EHLO, or None for this host's name.
        max_size: The longest message read.
    """

    recipients: list[str] = field(default_factory=list)
    sender: str | None = None
    from_headers: bool = False
    dot_ends: bool = True
    connect: str = DEFAULT_CONNECT
    tls: str | None = None
    ca_file: str | None = None
    auth: tuple[str, str] | None = None
    helo: str | None = None
    max_size: int = DEFAULT_MAX_SIZE
    help: bool = False


def parse_arguments(argv: Sequence[str], environ: dict[str, str] | None = None) -> SendmailOptions:
    """Read sendmail's command line (and ours).

    Raises:
        UsageError: An option is unknown or lacks its value.
    """
    env = os.environ if environ is None else environ
    options = SendmailOptions()
    words = list(argv)
    i = 0

    def value(word: str, attached: str) -> str:
        nonlocal i
        if attached:
            return attached
        i += 1
        if i >= len(words):
            raise UsageError(f"option {word} needs a value")
        return words[i]

    while i < len(words):
        word = words[i]
        if word == "--":
            options.recipients.extend(words[i + 1 :])
            break
        if word.startswith("--"):
            name, _, attached = word.partition("=")
            if name == "--help":
                options.help = True
            elif name == "--connect":
                options.connect = value(name, attached)
            elif name == "--tls":
                mode = value(name, attached)
                if mode not in _TLS_MODES:
                    raise UsageError(f"--tls takes required, opportunistic or none, not {mode!r}")
                options.tls = mode
            elif name == "--ca":
                options.ca_file = value(name, attached)
            elif name == "--helo":
                options.helo = value(name, attached)
            elif name == "--auth":
                user, colon, password = value(name, attached).partition(":")
                if not colon:
                    password = env.get(PASSWORD_VARIABLE, "")
                    if not password:
                        raise UsageError(f"--auth {user}: no password (set {PASSWORD_VARIABLE})")
                options.auth = (user, password)
            elif name == "--max-size":
                text = value(name, attached)
                if not text.isdigit():
                    raise UsageError(f"--max-size takes a number of bytes, not {text!r}")
                options.max_size = int(text)
            else:
                raise UsageError(f"unknown option {name}")
        elif word.startswith("-") and len(word) > 1:
            letter, rest = word[1], word[2:]
            if letter == "t" and not rest:
                options.from_headers = True
            elif letter == "i" and not rest:
                options.dot_ends = False
            elif letter == "o":
                # -oi is -i; other -oX options (-oem, -odi...) do not apply.
                if rest == "i":
                    options.dot_ends = False
            elif letter in "fr":
                sender = value(word[:2], rest).strip()
                options.sender = "" if sender in ("", "<>") else sender.strip("<>")
            elif letter == "b":
                if rest not in ("m", ""):
                    raise UsageError(f"mode -b{rest} is not supported (only -bm)")
            elif letter in _IGNORED_WITH_VALUE:
                value(word[:2], rest)
            elif letter in "vUGnmeAdx":
                pass
            elif letter == "h":
                options.help = True
            else:
                raise UsageError(f"unknown option {word}")
        else:
            options.recipients.append(word)
        i += 1
    return options


class MessageDataError(UsageError):
    """The message read cannot be sent (too large, no recipient, a bad address)."""


def read_message(stream: BinaryIO, *, dot_ends: bool, max_size: int) -> bytes:
    """Read the message from ``stream``, to its end or to a line holding only ".".

    Raises:
        MessageDataError: The message is larger than ``max_size``.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        line = stream.readline(max_size + 1 - size)
        if not line:
            break
        if dot_ends and line.rstrip(b"\r\n") == b".":
            break
        size += len(line)
        if size > max_size:
            raise MessageDataError(f"message larger than {max_size} bytes")
        chunks.append(line)
    return b"".join(chunks)


def extract_recipients(message: bytes) -> tuple[list[str], bytes]:
    """Take the recipients from To, Cc and Bcc, and remove the Bcc fields.

    The header is parsed with the ``email`` package's default (RFC 5322)
    policy, which reads address lists with their groups and comments; the
    message itself is not rewritten, only the Bcc lines are cut out.

    Returns:
        The addresses, and the message without its Bcc fields.
    """
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        message, headersonly=True
    )
    recipients: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        for header in parsed.get_all(name) or []:
            for address in getattr(header, "addresses", ()):
                if address.addr_spec and address.addr_spec != "<>":
                    recipients.append(address.addr_spec)
    return recipients, _without_bcc(message)


def _without_bcc(message: bytes) -> bytes:
    lines = message.splitlines(keepends=True)
    kept: list[bytes] = []
    dropping = False
    for index, line in enumerate(lines):
        if line in (b"\n", b"\r\n"):
            # The end of the header: the body is kept as it is.
            kept.extend(lines[index:])
            break
        if line[:1] in (b" ", b"\t"):
            # A continuation line belongs to the field above it.
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == b"bcc"
        if not dropping:
            kept.append(line)
    return b"".join(kept)


def _is_local(endpoint: str) -> bool:
    parts = endpoint.split(":")
    host = parts[1] if len(parts) > 2 else ""
    if host.startswith("host="):
        host = host[5:]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def submit(
    reactor: Reactor, options: SendmailOptions, message: bytes, stderr: TextIO
) -> int:
    """Send ``message`` as ``options`` say; return the exit status.

    Failures are written to ``stderr``, one line each.
    """
    # torsion.mail is a higher layer, imported when used (as torsion.names
    # is by the dns plugin).
    from torsion.mail.smtp._client import send_message
    from torsion.mail.smtp._client_core import SMTPClientError

    recipients = list(options.recipients)
    if options.from_headers:
        found, message = extract_recipients(message)
        recipients.extend(found)
    recipients = list(dict.fromkeys(recipients))
    if not recipients:
        stderr.write("torsion sendmail: no recipients\n")
        return EX_DATAERR
    sender = options.sender
    if sender is None:
        sender = f"{getpass.getuser()}@{socket.getfqdn()}"
    implicit_tls = options.connect.startswith("tls:")
    tls = options.tls
    if tls is None:
        tls = "none" if _is_local(options.connect) else "opportunistic"
    try:
        endpoint = client_from_string(reactor, options.connect)
        context: ssl.SSLContext | None = None
        if options.ca_file is not None:
            context = client_context(ca_file=options.ca_file)
        result = await send_message(
            reactor,
            endpoint,
            sender,
            recipients,
            message,
            helo=options.helo,
            tls="none" if implicit_tls else tls,
            tls_context=context,
            auth=options.auth,
            tls_active=implicit_tls,
        )
    except (EndpointStringError, TLSConfigError) as exc:
        stderr.write(f"torsion sendmail: {exc}\n")
        return EX_USAGE
    except ValueError as exc:
        stderr.write(f"torsion sendmail: {exc}\n")
        return EX_DATAERR
    except SMTPClientError as exc:
        stderr.write(f"torsion sendmail: {exc}\n")
        return EX_UNAVAILABLE if exc.permanent else EX_TEMPFAIL
    except OSError as exc:
        stderr.write(f"torsion sendmail: cannot connect to {options.connect}: {exc}\n")
        return EX_TEMPFAIL
    for outcome in result.refused:
        stderr.write(f"torsion sendmail: <{outcome.recipient}>: refused: {outcome.reply}\n")
    for outcome in result.temporary:
        stderr.write(f"torsion sendmail: <{outcome.recipient}>: deferred: {outcome.reply}\n")
    if result.refused:
        return EX_NOUSER
    if result.temporary:
        return EX_TEMPFAIL
    return EX_OK


def sendmail_main(
    argv: Sequence[str],
    *,
    stdin: BinaryIO,
    stdout: TextIO,
    stderr: TextIO,
    environ: dict[str, str] | None = None,
) -> int:
    """Run ``torsion sendmail`` with ``argv`` (the arguments after ``sendmail``).

    Returns:
        The exit status (sysexits.h, see the module's documentation).
    """
    try:
        options = parse_arguments(argv, environ)
    except UsageError as exc:
        stderr.write(f"torsion sendmail: {exc}\n{_USAGE}")
        return EX_USAGE
    if options.help:
        stdout.write(_USAGE)
        return EX_OK
    try:
        message = read_message(stdin, dot_ends=options.dot_ends, max_size=options.max_size)
    except MessageDataError as exc:
        stderr.write(f"torsion sendmail: {exc}\n")
        return EX_DATAERR
    reactor = Reactor()
    try:
        return reactor.loop.run_until_complete(submit(reactor, options, message, stderr))
    except Exception as exc:  # pragma: no cover - a bug, reported as one
        stderr.write(f"torsion sendmail: internal error: {exc!r}\n")
        return EX_SOFTWARE
    finally:
        reactor.close()


def console_main() -> int:
    """``torsion sendmail`` with the process's own arguments and streams."""
    return sendmail_main(
        sys.argv[1:], stdin=sys.stdin.buffer, stdout=sys.stdout, stderr=sys.stderr
    )
