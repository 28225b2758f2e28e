"""IMAP's client commands (RFC 3501 section 6 and extensions): their grammar and values.

``parse_command`` reads one complete command (literals inline) into a
``Command`` whose arguments are typed by the command; ``CommandParser``
frames the octets and calls it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from torsion.mail.imap._fetch import FetchItem, parse_fetch_items
from torsion.mail.imap._reader import Reader, SequenceSet
from torsion.mail.imap._search import SearchKey, parse_search_program

__all__ = [
    "COMMANDS",
    "NO_ARGUMENTS",
    "UID_COMMANDS",
    "Argument",
    "Command",
    "StoreAction",
    "parse_command",
    "read_tag",
]

_TAG = re.compile(rb"[^(){ \x00-\x1f\x7f-\xff%*\"\\+]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAction:
    """STORE's data item (RFC 3501 section 6.4.6).

    Attributes:
        mode: ``"replace"`` (FLAGS), ``"add"`` (+FLAGS) or ``"remove"`` (-FLAGS).
        silent: True for ``.SILENT``: no untagged FETCH in reply.
        flags: The flags to set, add or remove.
    """

    mode: Literal["replace", "add", "remove"]
    silent: bool
    flags: tuple[str, ...]


Argument = (
    str
    | bytes
    | None
    | SequenceSet
    | date
    | datetime
    | tuple[str, ...]
    | StoreAction
    | SearchKey
    | tuple[FetchItem, ...]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One complete command.

    Attributes:
        tag: The client's tag.
        name: The command, upper-case (``"FETCH"``; ``"UID FETCH"`` for the
            UID variants).
        arguments: The arguments, typed by the command:

            - LOGIN: user, password (``str``, UTF-8).
            - AUTHENTICATE: mechanism (``str``, upper-case), initial
              response (``bytes`` as sent, base64 or ``=``; None if absent).
            - SELECT, EXAMINE, CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE: mailbox.
            - RENAME: old, new. LIST, LSUB: reference, pattern.
            - STATUS: mailbox, items (``tuple[str, ...]``, upper-case).
            - SEARCH, UID SEARCH: charset (``str`` or None), the key.
            - FETCH: sequence set, items (``tuple[FetchItem, ...]``).
            - STORE: sequence set, ``StoreAction``.
            - COPY, MOVE: sequence set, mailbox. UID EXPUNGE: sequence set.
            - ENABLE: capabilities (``tuple[str, ...]``, upper-case).
            - CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, EXPUNGE,
              UNSELECT, IDLE, NAMESPACE: none.

            Mailbox names are ``str``, decoded from modified UTF-7, with
            INBOX in any case spelled ``"INBOX"``.
    """

    tag: str
    name: str
    arguments: tuple[Argument, ...] = ()


def read_tag(reader: Reader) -> str:
    match = _TAG.match(reader.data, reader.position)
    if match is None:
        raise reader.error("missing or bad tag")
    reader.position = match.end()
    reader.tag = match.group(0).decode("ascii")
    return reader.tag


def parse_command(reader: Reader) -> Command:
    """Read one whole command from ``reader``.

    Raises:
        IMAPParseError: The command is not IMAP's grammar.
    """
    tag = read_tag(reader)
    reader.space()
    name = reader.atom().upper()
    if name == "UID":
        reader.space()
        sub = reader.atom().upper()
        if sub not in UID_COMMANDS:
            raise reader.error(f"UID {sub} is not a command")
        name = f"UID {sub}"
        grammar = UID_COMMANDS[sub]
    else:
        found = COMMANDS.get(name)
        if found is None:
            raise reader.error(f"unknown command {name}")
        grammar = found
    arguments = grammar(reader)
    reader.end()
    return Command(tag=tag, name=name, arguments=arguments)


def _none(reader: Reader) -> tuple[Argument, ...]:
    return ()


def _mailbox(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    return (reader.mailbox(),)


def _two_mailboxes(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    old = reader.mailbox()
    reader.space()
    return (old, reader.mailbox())


def _login(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    user = reader.astring_text()
    reader.space()
    return (user, reader.astring_text())


def _authenticate(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    mechanism = reader.atom().upper()
    if not reader.accept(b" "):
        return (mechanism, None)
    # SASL-IR (RFC 4959): base64 or "=" for an empty response.
    match = re.compile(rb"[A-Za-z0-9+/]+=*|=").match(reader.data, reader.position)
    if match is None:
        raise reader.error("bad initial response")
    reader.position = match.end()
    return (mechanism, match.group(0))


def _list(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    reference = reader.mailbox()
    reader.space()
    return (reference, reader.list_mailbox())


_STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"})


def _status(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    mailbox = reader.mailbox()
    reader.space()
    reader.open_list()
    items: list[str] = []
    while not reader.accept(b")"):
        if items:
            reader.space()
        reader.count_item()
        item = reader.atom().upper()
        if item not in _STATUS_ITEMS:
            raise reader.error(f"unknown status item {item}")
        items.append(item)
    if not items:
        raise reader.error("STATUS needs at least one item")
    return (mailbox, tuple(items))


def _search(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    charset: str | None = None
    if reader.accept(b"CHARSET "):
        charset = reader.astring_text().upper()
        reader.space()
    return (charset, parse_search_program(reader))


def _fetch(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    sequence = reader.sequence_set()
    reader.space()
    return (sequence, parse_fetch_items(reader))


def _store(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    sequence = reader.sequence_set()
    reader.space()
    mode: Literal["replace", "add", "remove"] = "replace"
    if reader.accept(b"+"):
        mode = "add"
    elif reader.accept(b"-"):
        mode = "remove"
    reader.expect(b"FLAGS")
    silent = reader.accept(b".SILENT")
    reader.space()
    if reader.peek() == b"(":
        flags = reader.flag_list()
    else:
        # RFC 3501 section 9: flags may also be given bare, space-separated.
        bare = [reader.flag()]
        while reader.accept(b" "):
            reader.count_item()
            bare.append(reader.flag())
        flags = tuple(bare)
    if any(flag == "\\Recent" for flag in flags):
        raise reader.error("\\Recent cannot be stored")
    return (sequence, StoreAction(mode=mode, silent=silent, flags=flags))


def _copy(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    sequence = reader.sequence_set()
    reader.space()
    return (sequence, reader.mailbox())


def _uid_expunge(reader: Reader) -> tuple[Argument, ...]:
    reader.space()
    return (reader.sequence_set(),)


def _enable(reader: Reader) -> tuple[Argument, ...]:
    names: list[str] = []
    while reader.accept(b" "):
        reader.count_item()
        names.append(reader.atom().upper())
    if not names:
        raise reader.error("ENABLE needs a capability")
    return (tuple(names),)


def _append_inline(reader: Reader) -> tuple[Argument, ...]:
    """APPEND whose literal was never announced on its own line: malformed."""
    raise reader.error("APPEND needs a message literal")


COMMANDS = {
    "CAPABILITY": _none,
    "NOOP": _none,
    "LOGOUT": _none,
    "STARTTLS": _none,
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "SELECT": _mailbox,
    "EXAMINE": _mailbox,
    "CREATE": _mailbox,
    "DELETE": _mailbox,
    "RENAME": _two_mailboxes,
    "SUBSCRIBE": _mailbox,
    "UNSUBSCRIBE": _mailbox,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append_inline,
    "CHECK": _none,
    "CLOSE": _none,
    "UNSELECT": _none,
    "EXPUNGE": _none,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "IDLE": _none,
    "NAMESPACE": _none,
    "ENABLE": _enable,
}
NO_ARGUMENTS = frozenset(name for name, grammar in COMMANDS.items() if grammar is _none)
UID_COMMANDS = {
    "FETCH": _fetch,
    "SEARCH": _search,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "EXPUNGE": _uid_expunge,
}
