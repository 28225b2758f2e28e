"""Dovecot's imap process as a peer: the same messages, its answers to compare with ours."""

from __future__ import annotations

import contextlib
import imaplib
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from torsion.mail.imap import Reader, to_crlf
from torsion.testing import require_peer


def _value(reader: Reader) -> object:
    if reader.accept(b"("):
        values: list[object] = []
        while not reader.accept(b")"):
            if values:
                reader.accept(b" ")
            if reader.peek() == b"(":
                values.append(_value(reader))
                continue
            values.append(_value(reader))
        return values
    if reader.accept(b"NIL"):
        return None
    if reader.is_string():
        return reader.string().lower()
    start = reader.position
    while reader.peek() not in (b"", b" ", b")", b"("):
        reader.position += 1
    token = reader.data[start : reader.position]
    return int(token) if token.isdigit() else token.lower()


def normalize(value: bytes) -> object:
    """Parse a response value; strings case-folded, quoting and literals alike."""
    reader = Reader(value)
    parsed = _value(reader)
    assert reader.at_end(), value
    return parsed


def joined(data: list[object]) -> bytes:
    out = b""
    for element in data:
        if isinstance(element, tuple):
            out += element[0] + b"\r\n" + element[1]
        elif isinstance(element, bytes):
            out += element
    return out


@contextlib.contextmanager
def run_dovecot(
    messages: Sequence[bytes], dates: Sequence[datetime] | None = None
) -> Iterator[imaplib.IMAP4]:
    """Dovecot's imap process, pre-authenticated, on stdin and stdout."""
    require_peer("dovecot", package="dovecot-imapd")
    imap = Path("/usr/lib/dovecot/imap")
    if not imap.exists():
        require_peer("dovecot-imap-binary", package="dovecot-imapd")
    # Not under pytest's base directory: as root, dovecot drops to nobody,
    # which must be able to reach its home.
    with tempfile.TemporaryDirectory(prefix="torsion-dovecot-") as directory:
        yield from _run_dovecot(imap, Path(directory), messages, dates)


def _run_dovecot(
    imap: Path, home: Path, messages: Sequence[bytes], dates: Sequence[datetime] | None
) -> Iterator[imaplib.IMAP4]:
    uid, gid = (65534, 65534) if os.getuid() == 0 else (os.getuid(), os.getgid())
    config = home / "dovecot.conf"
    config.write_text(
        f"mail_location = maildir:{home}/mail\n"
        f"log_path = {home}/log\n"
        f"base_dir = {home}/run\n"
        f"state_dir = {home}/state\n"
        f"mail_uid = {uid}\nmail_gid = {gid}\n"
        f"first_valid_uid = {min(uid, 1)}\nfirst_valid_gid = {min(gid, 1)}\n"
    )
    os.chown(home, uid, gid)
    environment = {"USER": "tester", "HOME": str(home)}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        client = imaplib.IMAP4_stream(f"{imap} -c {config}")
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
    try:
        for index, content in enumerate(messages):
            when = imaplib.Time2Internaldate(dates[index]) if dates else None
            status, _ = client.append("INBOX", None, when, to_crlf(content))
            assert status == "OK"
        client.select("INBOX")
        yield client
    finally:
        client.logout()
        for stream in (client.readfile, client.writefile):
            stream.close()
        client.process.wait(timeout=10)
