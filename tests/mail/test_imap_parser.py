"""The IMAP command parser on bytes: grammar, literals, APPEND streaming, stops and limits."""

from __future__ import annotations

import imaplib
import itertools
import socket
import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.mail import encode_modified_utf7
from torsion.mail.imap import (
    AndKey,
    AppendData,
    AppendEnd,
    AppendStart,
    BadCommand,
    Command,
    CommandParser,
    ContinuationLine,
    ContinuationNeeded,
    DateKey,
    FetchItem,
    FlagKey,
    IMAPParseError,
    NotKey,
    OrKey,
    ParserEvent,
    ParserLimits,
    Section,
    SequenceKey,
    SequenceSet,
    SizeKey,
    StoreAction,
    TextKey,
)


def run(parser: CommandParser, data: bytes) -> list[ParserEvent]:
    """Feed ``data``; go on through every stop as a server that says yes would."""
    events = parser.receive_data(data)
    out = list(events)
    while parser.stopped:
        last = out[-1]
        if isinstance(last, Command) and last.name == "IDLE":
            more = parser.expect_continuation_line()
        else:
            more = parser.resume()
        if not more and parser.stopped:
            break
        out += more
    return out


def one(data: bytes, **limits: int) -> ParserEvent:
    events = run(CommandParser(ParserLimits(**limits)), data)
    assert len(events) == 1, events
    return events[0]


def command(data: bytes) -> Command:
    event = one(data)
    assert isinstance(event, Command), event
    return event


# RFC 3501 section 6 examples, one per command, and what they parse to.
RFC_EXAMPLES: list[tuple[bytes, str, tuple[object, ...]]] = [
    (b"abcd CAPABILITY", "CAPABILITY", ()),
    (b"a002 NOOP", "NOOP", ()),
    (b"A023 LOGOUT", "LOGOUT", ()),
    (b"a001 STARTTLS", "STARTTLS", ()),
    (b"A001 AUTHENTICATE GSSAPI", "AUTHENTICATE", ("GSSAPI", None)),
    (b"a001 LOGIN SMITH SESAME", "LOGIN", ("SMITH", "SESAME")),
    (b"A142 SELECT INBOX", "SELECT", ("INBOX",)),
    (b"A932 EXAMINE blurdybloop", "EXAMINE", ("blurdybloop",)),
    (b"A003 CREATE owatagusiam/", "CREATE", ("owatagusiam/",)),
    (b"A683 DELETE blurdybloop", "DELETE", ("blurdybloop",)),
    (b"A683 RENAME blurdybloop sarasoop", "RENAME", ("blurdybloop", "sarasoop")),
    (b"A002 SUBSCRIBE #news.comp.mail.mime", "SUBSCRIBE", ("#news.comp.mail.mime",)),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime", "UNSUBSCRIBE", ("#news.comp.mail.mime",)),
    (b'A101 LIST "" ""', "LIST", ("", "")),
    (b"A202 LIST ~/Mail/ %", "LIST", ("~/Mail/", "%")),
    (b'A682 LIST "" *', "LIST", ("", "*")),
    (b'A002 LSUB "#news." "comp.mail.*"', "LSUB", ("#news.", "comp.mail.*")),
    (
        b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)",
        "STATUS",
        ("blurdybloop", ("UIDNEXT", "MESSAGES")),
    ),
    (b"FXXZ CHECK", "CHECK", ()),
    (b"A341 CLOSE", "CLOSE", ()),
    (b"A202 EXPUNGE", "EXPUNGE", ()),
    (
        b"A003 STORE 2:4 +FLAGS (\\Deleted)",
        "STORE",
        (SequenceSet(((2, 4),)), StoreAction(mode="add", silent=False, flags=("\\Deleted",))),
    ),
    (
        b"A003 COPY 2:4 MEETING",
        "COPY",
        (SequenceSet(((2, 4),)), "MEETING"),
    ),
    (
        b"A999 UID FETCH 4827313:4828442 FLAGS",
        "UID FETCH",
        (SequenceSet(((4827313, 4828442),)), (FetchItem(name="FLAGS"),)),
    ),
    (
        b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        "SEARCH",
        (
            None,
            AndKey(
                (
                    FlagKey("\\Flagged"),
                    DateKey(False, "since", date(1994, 2, 1)),
                    NotKey(TextKey("header", "Smith", "From")),
                )
            ),
        ),
    ),
    (
        b'A284 SEARCH CHARSET UTF-8 TEXT "XXXXXX"',
        "SEARCH",
        ("UTF-8", TextKey("text", "XXXXXX")),
    ),
    # RFC 2177, 6851, 4315, 2342, 5161.
    (b"A001 IDLE", "IDLE", ()),
    (b"a MOVE 1:* Trash", "MOVE", (SequenceSet(((1, None),)), "Trash")),
    (b"a UID MOVE 42 Trash", "UID MOVE", (SequenceSet(((42, 42),)), "Trash")),
    (b"A003 UID EXPUNGE 3000:3002", "UID EXPUNGE", (SequenceSet(((3000, 3002),)),)),
    (b"A001 NAMESPACE", "NAMESPACE", ()),
    (b"t2 ENABLE CONDSTORE X-GOOD-IDEA", "ENABLE", (("CONDSTORE", "X-GOOD-IDEA"),)),
]


@pytest.mark.parametrize(("line", "name", "arguments"), RFC_EXAMPLES)
def test_rfc_examples(line: bytes, name: str, arguments: tuple[object, ...]) -> None:
    parsed = command(line + b"\r\n")
    assert parsed.name == name
    assert parsed.arguments == arguments
    assert parsed.tag == line.split(b" ")[0].decode()


def test_rfc_fetch_example() -> None:
    parsed = command(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n")
    assert parsed.arguments == (
        SequenceSet(((2, 4),)),
        (
            FetchItem(name="FLAGS"),
            FetchItem(name="BODY", section=Section(text="HEADER.FIELDS", fields=("DATE", "FROM"))),
        ),
    )


def test_fetch_macros_and_sections() -> None:
    parsed = command(b"a FETCH 1 all\r\n")
    assert [item.name for item in parsed.arguments[1]] == [  # type: ignore[union-attr]
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
    ]
    parsed = command(b"a FETCH 1 (BODY.PEEK[1.2.MIME]<10.20> BODY[3.TEXT] RFC822.HEADER)\r\n")
    assert parsed.arguments[1] == (
        FetchItem(
            name="BODY", section=Section(part=(1, 2), text="MIME"), peek=True, partial=(10, 20)
        ),
        FetchItem(name="BODY", section=Section(part=(3,), text="TEXT")),
        FetchItem(name="RFC822.HEADER"),
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH 1 (FLAGS",
        b"a FETCH 1 BODY[MIME]",
        b"a FETCH 1 BODY[1.MIMEX]",
        b"a FETCH 1 BODY[]<1.0>",
        b"a FETCH 0 FLAGS",
        b"a FETCH 1: FLAGS",
        b"a FETCH 1 ALLX",
        b"a FETCH 1 BODY[HEADER.FIELDS ()]",
        b"a SEARCH OR SEEN",
        b"a SEARCH BEFORE 31-Feb-2020",
        b"a SEARCH NOPE",
        b"a STORE 1 FLAGS (\\Recent)",
        b"a STATUS x (BOGUS)",
        b"a STATUS x ()",
        b"a LOGIN a",
        b"a SELECT",
        b"a SELECT a b",
        b"a ENABLE",
        b"a UID NOOP",
        b"a FROB",
        b"a SELECT &Jjo",
        b'a LOGIN "a\\x" b',
        b"a APPEND INBOX",
    ],
)
def test_bad_commands_are_tagged_bad(line: bytes) -> None:
    event = one(line + b"\r\n")
    assert isinstance(event, BadCommand), event
    assert event.tag == "a"
    assert not event.fatal


@pytest.mark.parametrize("line", [b"", b" a NOOP", b"* NOOP", b"+ NOOP", b"(a NOOP"])
def test_unreadable_tags_are_untagged_bad(line: bytes) -> None:
    event = one(line + b"\r\n")
    assert event == BadCommand(tag=None, text="missing or bad tag")


def test_mailbox_names_decoded_and_inbox_folded() -> None:
    name = "Entwürfe/日本語 & more"
    wire = encode_modified_utf7(name).encode("ascii")
    assert command(b'a SELECT "' + wire + b'"\r\n').arguments == (name,)
    assert command(b"a SELECT iNbOx\r\n").arguments == ("INBOX",)
    assert command(b"a SELECT INBOX.sub\r\n").arguments == ("INBOX.sub",)


def test_quoted_escapes_and_literal_strings() -> None:
    assert command(b'a LOGIN "fr\\"ed" "p\\\\w"\r\n').arguments == ('fr"ed', "p\\w")
    parser = CommandParser()
    events = parser.receive_data(b"a LOGIN {4}\r\n")
    assert events == [ContinuationNeeded(tag="a", size=4)]
    assert parser.stopped
    assert parser.receive_data(b"fred {2+}\r\n") == []  # held until resume
    assert parser.resume() == []
    assert parser.receive_data(b"pw\r\n") == [
        Command(tag="a", name="LOGIN", arguments=("fred", "pw"))
    ]


def test_literal_plus_needs_no_continuation() -> None:
    parser = CommandParser()
    events = parser.receive_data(b"a LOGIN {4+}\r\nfred {2+}\r\npw\r\nb NOOP\r\n")
    assert events == [
        Command(tag="a", name="LOGIN", arguments=("fred", "pw")),
        Command(tag="b", name="NOOP"),
    ]
    assert not parser.stopped


def test_literal_in_quoted_string_is_not_a_literal() -> None:
    assert command(b'a LOGIN fred "{5}"\r\n').arguments == ("fred", "{5}")


@pytest.mark.parametrize(
    ("line", "tag"),
    [(b"a FROB {5}", "a"), (b"a NOOP {5}", "a"), (b"a UID FROB {5}", "a"), (b"* LOGIN {5}", None)],
)
def test_no_continuation_for_a_command_that_cannot_succeed(line: bytes, tag: str | None) -> None:
    parser = CommandParser()
    events = parser.receive_data(line + b"\r\n")
    assert len(events) == 1
    assert isinstance(events[0], BadCommand)
    assert events[0].tag == tag
    assert not parser.stopped
    assert parser.receive_data(b"b NOOP\r\n") == [Command(tag="b", name="NOOP")]


def test_refused_synchronizing_literal_is_never_read() -> None:
    parser = CommandParser()
    assert parser.receive_data(b"a LOGIN {4}\r\n") == [ContinuationNeeded(tag="a", size=4)]
    assert parser.refuse_literal() == []
    assert parser.receive_data(b"b NOOP\r\n") == [Command(tag="b", name="NOOP")]


def test_append_streams_the_message_in_chunks() -> None:
    parser = CommandParser()
    head = b'A003 APPEND saved-messages (\\Seen) "17-Jul-1996 02:44:25 -0700" {310}\r\n'
    events = parser.receive_data(head)
    assert events == [
        AppendStart(
            tag="A003",
            mailbox="saved-messages",
            flags=("\\Seen",),
            internal_date=datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))),
            size=310,
            synchronizing=True,
        ),
        ContinuationNeeded(tag="A003", size=310),
    ]
    assert parser.resume() == []
    message = bytes(range(256)) + b"x" * 54
    chunks: list[bytes] = []
    for start in range(0, 310, 100):
        for event in parser.receive_data(message[start : start + 100]):
            assert isinstance(event, AppendData)
            chunks.append(event.data)
    assert b"".join(chunks) == message
    assert max(map(len, chunks)) <= 100
    assert parser.receive_data(b"\r\nb NOOP\r\n") == [
        AppendEnd(tag="A003"),
        Command(tag="b", name="NOOP"),
    ]


def test_append_without_flags_or_date_and_with_literal_mailbox() -> None:
    events = run(CommandParser(), b"a APPEND {5+}\r\nDraft {3+}\r\nabc\r\n")
    assert events == [
        AppendStart(
            tag="a", mailbox="Draft", flags=(), internal_date=None, size=3, synchronizing=False
        ),
        AppendData(data=b"abc"),
        AppendEnd(tag="a"),
    ]


def test_append_too_large_refused_before_the_literal() -> None:
    parser = CommandParser(ParserLimits(max_append=10))
    assert parser.receive_data(b"a APPEND INBOX {11}\r\n") == [
        BadCommand(tag="a", text="message too large")
    ]
    assert parser.receive_data(b"b NOOP\r\n") == [Command(tag="b", name="NOOP")]


def test_oversized_nonsync_literal_is_fatal() -> None:
    # RFC 7888 section 4 (LITERAL-): the octets are on their way; reading them
    # as commands would be wrong, so the connection ends.
    parser = CommandParser(ParserLimits(max_nonsync_literal=4096))
    events = parser.receive_data(b"a APPEND INBOX {4097+}\r\n" + b"x" * 100)
    assert events[-1].fatal  # type: ignore[union-attr]
    assert parser.receive_data(b"b NOOP\r\n") == []


def test_text_after_append_message_is_bad() -> None:
    events = run(CommandParser(), b"a APPEND INBOX {1+}\r\nx extra\r\n")
    assert events[-1] == BadCommand(tag="a", text="unexpected text after message")


def test_idle_stops_until_told_and_done_is_a_continuation_line() -> None:
    parser = CommandParser()
    assert parser.receive_data(b"a IDLE\r\nDONE\r\nb NOOP\r\n") == [Command(tag="a", name="IDLE")]
    assert parser.stopped
    events = parser.expect_continuation_line()
    assert events == [ContinuationLine(line=b"DONE"), Command(tag="b", name="NOOP")]
    assert isinstance(events[0], ContinuationLine)
    assert events[0].is_done


def test_starttls_stops_and_pipelined_octets_can_be_dropped() -> None:
    parser = CommandParser()
    assert parser.receive_data(b"a STARTTLS\r\nb LOGIN x y\r\n") == [
        Command(tag="a", name="STARTTLS")
    ]
    parser.discard_buffered()
    assert parser.resume() == []
    assert parser.receive_data(b"c NOOP\r\n") == [Command(tag="c", name="NOOP")]


def test_authenticate_with_initial_response_then_sasl_lines() -> None:
    parser = CommandParser()
    assert parser.receive_data(b"a AUTHENTICATE PLAIN AGZyZWQAcHc=\r\n") == [
        Command(tag="a", name="AUTHENTICATE", arguments=("PLAIN", b"AGZyZWQAcHc="))
    ]
    assert parser.expect_continuation_line() == []
    assert parser.receive_data(b"*\r\n") == [ContinuationLine(line=b"*")]


def test_long_line_is_bad_and_the_next_command_works() -> None:
    parser = CommandParser(ParserLimits(max_line=64))
    events = parser.receive_data(b"a LOGIN " + b"x" * 100)
    events += parser.receive_data(b"y" * 100 + b"\r")
    events += parser.receive_data(b"\nb NOOP\r\n")
    assert events == [BadCommand(tag="a", text="line too long"), Command(tag="b", name="NOOP")]


def test_literal_over_the_limit_is_refused() -> None:
    parser = CommandParser(ParserLimits(max_literal=10))
    assert parser.receive_data(b"a LOGIN {11}\r\n") == [
        BadCommand(tag="a", text="literal too large")
    ]
    assert parser.receive_data(b"b NOOP\r\n") == [Command(tag="b", name="NOOP")]


def test_whole_command_bounded_across_literals() -> None:
    parser = CommandParser(ParserLimits(max_command=100))
    events = run(parser, b"a LOGIN {60+}\r\n" + b"x" * 60 + b" {60+}\r\n")
    # The refused literal is on its way: the connection cannot go on.
    assert events == [BadCommand(tag="a", text="command too long", fatal=True)]
    assert parser.receive_data(b"b NOOP\r\n") == []


def test_nesting_and_argument_limits() -> None:
    deep = b"a SEARCH " + b"(" * 20 + b"ALL" + b")" * 20 + b"\r\n"
    event = one(deep, max_depth=16)
    assert isinstance(event, BadCommand)
    assert event.tag == "a"
    nots = b"a SEARCH " + b"NOT " * 40 + b"ALL\r\n"
    assert isinstance(one(nots, max_depth=16), BadCommand)
    many = b"a STORE 1 FLAGS (" + b" ".join(b"k%d" % n for n in range(50)) + b")\r\n"
    assert isinstance(one(many, max_arguments=20), BadCommand)
    assert isinstance(one(many, max_arguments=100), Command)


def test_out_of_turn_flood_while_stopped_is_fatal() -> None:
    parser = CommandParser(ParserLimits(max_buffered=100))
    assert parser.receive_data(b"a IDLE\r\n") == [Command(tag="a", name="IDLE")]
    events = parser.receive_data(b"x" * 200)
    assert events == [BadCommand(tag=None, text="too much data sent out of turn", fatal=True)]


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_line"):
        ParserLimits(max_line=0)


def test_search_grammar() -> None:
    parsed = command(
        b"a UID SEARCH OR (UNSEEN LARGER 10) HEADER X-Spam yes UID 1:5,7 "
        b'SENTBEFORE "3-Mar-2001" NEW OLD KEYWORD $Junk 2,4:*\r\n'
    )
    assert parsed.arguments == (
        None,
        AndKey(
            (
                OrKey(
                    AndKey((FlagKey("\\Seen", present=False), SizeKey(True, 10))),
                    TextKey("header", "yes", "X-Spam"),
                ),
                SequenceKey(SequenceSet(((1, 5), (7, 7))), uid=True),
                DateKey(True, "before", date(2001, 3, 3)),
                AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", present=False))),
                FlagKey("\\Recent", present=False),
                FlagKey("$Junk"),
                SequenceKey(SequenceSet(((2, 2), (4, None)))),
            )
        ),
    )


def test_sequence_sets() -> None:
    assert SequenceSet(((2, 2), (4, 7))).resolve(6) == [2, 4, 5, 6]
    assert SequenceSet(((None, 3),)).resolve(5) == [3, 4, 5]
    assert SequenceSet(((1, 4294967295),)).resolve(3) == [1, 2, 3]
    assert SequenceSet(((1, None),)).resolve(0) == []
    assert str(SequenceSet(((1, None), (5, 5)))) == "1:*,5"
    assert command(b"a FETCH $ FLAGS\r\n").arguments[0] == SequenceSet(saved=True)
    with pytest.raises(ValueError, match="saved"):
        SequenceSet(saved=True).resolve(3)
    assert SequenceSet(((5, 2), (3, 9), (20, 30))).resolve(12) == list(range(2, 10))
    assert SequenceSet(((1, None),) * 2000).resolve(100_000) == list(range(1, 100_001))


# Hypothesis: commands formatted from random values parse back to those values.

_ATOM_CHARS = st.characters(
    codec="ascii", exclude_characters='(){ %*"\\]', exclude_categories=("Cc",)
)
atoms = st.text(_ATOM_CHARS, min_size=1, max_size=12)
tags = atoms.filter(lambda text: "+" not in text)
strings = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
mailboxes = st.text(st.characters(exclude_characters="\x00\r\n", codec="utf-8"), max_size=20)


def astring_wire(value: str, style: int) -> bytes:
    data = value.encode("utf-8")
    if style == 0 and data and all(c not in b'(){ %*"\\\r\n' and 32 < c < 127 for c in data):
        return data
    if style == 1 and all(32 <= c < 127 for c in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d+}\r\n" % len(data) + data


@settings(max_examples=200, deadline=None)
@given(tags, strings, strings, st.integers(0, 2), st.integers(0, 2))
def test_login_round_trip(tag: str, user: str, password: str, style1: int, style2: int) -> None:
    wire = b"%s LOGIN %s %s\r\n" % (
        tag.encode(),
        astring_wire(user, style1),
        astring_wire(password, style2),
    )
    assert command(wire) == Command(tag=tag, name="LOGIN", arguments=(user, password))


@settings(max_examples=200, deadline=None)
@given(tags, mailboxes, st.integers(0, 2))
def test_mailbox_round_trip(tag: str, name: str, style: int) -> None:
    wire = b"%s CREATE %s\r\n" % (tag.encode(), astring_wire(encode_modified_utf7(name), style))
    expected = "INBOX" if name.upper() == "INBOX" else name
    assert command(wire) == Command(tag=tag, name="CREATE", arguments=(expected,))


numbers = st.one_of(st.none(), st.integers(1, 2**32 - 1))
sequence_sets = st.lists(st.tuples(numbers, numbers), min_size=1, max_size=6).map(
    lambda ranges: SequenceSet(tuple(ranges))
)


@given(sequence_sets, st.integers(0, 60), st.integers(1, 70))
def test_contains_agrees_with_resolve(numbers: SequenceSet, largest: int, number: int) -> None:
    small = SequenceSet(
        tuple(
            (None if low is None else low % 64 + 1, None if high is None else high % 64 + 1)
            for low, high in numbers.ranges
        )
    )
    assert small.contains(number, largest) == (number in small.resolve(largest))


@settings(max_examples=200, deadline=None)
@given(
    tags,
    sequence_sets,
    st.lists(atoms, max_size=5),
    st.sampled_from(["", "+", "-"]),
    st.booleans(),
)
def test_store_round_trip(
    tag: str, numbers: SequenceSet, keywords: list[str], sign: str, silent: bool
) -> None:
    suffix = ".SILENT" if silent else ""
    wire = f"{tag} UID STORE {numbers} {sign}FLAGS{suffix} ({' '.join(keywords)})\r\n"
    parsed = command(wire.encode())
    mode = {"": "replace", "+": "add", "-": "remove"}[sign]
    assert parsed == Command(
        tag=tag,
        name="UID STORE",
        arguments=(numbers, StoreAction(mode=mode, silent=silent, flags=tuple(keywords))),  # type: ignore[arg-type]
    )


SESSION = (
    b"a1 LOGIN {4}\r\nfred {6+}\r\nsecret\r\n"
    b'a2 SELECT "INBOX"\r\n'
    b"a3 APPEND Sent (\\Seen) {12}\r\nHello\r\nWorld\r\n"
    b"a4 FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM)])\r\n"
    b"a5 IDLE\r\nDONE\r\n"
    b"a6 SEARCH UNSEEN SUBJECT {3}\r\nfoo\r\n"
    b"junk\r\n"
    b"a7 LOGOUT\r\n"
)


def session_events(chunks: list[bytes]) -> list[ParserEvent]:
    parser = CommandParser()
    events: list[ParserEvent] = []
    for chunk in chunks:
        events += parser.receive_data(chunk)
        while parser.stopped:
            last = events[-1]
            if isinstance(last, Command) and last.name == "IDLE":
                events += parser.expect_continuation_line()
            else:
                events += parser.resume()
    return events


def merge_append_data(events: list[ParserEvent]) -> list[ParserEvent]:
    merged: list[ParserEvent] = []
    for event in events:
        if isinstance(event, AppendData) and merged and isinstance(merged[-1], AppendData):
            merged[-1] = AppendData(data=merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


WHOLE = merge_append_data(session_events([SESSION]))


def test_session_whole() -> None:
    kinds = [type(event).__name__ for event in WHOLE]
    assert kinds == [
        "ContinuationNeeded",
        "Command",
        "Command",
        "AppendStart",
        "ContinuationNeeded",
        "AppendData",
        "AppendEnd",
        "Command",
        "Command",
        "ContinuationLine",
        "ContinuationNeeded",
        "Command",
        "BadCommand",
        "Command",
    ]
    assert WHOLE[5] == AppendData(data=b"Hello\r\nWorld")


def test_session_one_octet_at_a_time() -> None:
    assert (
        merge_append_data(session_events([SESSION[i : i + 1] for i in range(len(SESSION))]))
        == WHOLE
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, len(SESSION)), max_size=20))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted({0, len(SESSION), *cuts})
    chunks = [SESSION[a:b] for a, b in itertools.pairwise(points)]
    assert merge_append_data(session_events(chunks)) == WHOLE


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.binary(max_size=60), max_size=8),
    st.sampled_from([b"", b"\r\n", b"{3}\r\n", b"{2+}\r\n"]),
)
def test_junk_never_raises(chunks: list[bytes], tail: bytes) -> None:
    parser = CommandParser(ParserLimits(max_line=128, max_literal=64, max_command=256))
    for chunk in [*chunks, tail]:
        for event in parser.receive_data(chunk):
            assert isinstance(
                event,
                (
                    Command,
                    ContinuationNeeded,
                    AppendStart,
                    AppendData,
                    AppendEnd,
                    ContinuationLine,
                    BadCommand,
                ),
            )
        if parser.stopped:
            parser.resume()


prefixes = st.sampled_from(
    [
        b"a SEARCH ",
        b"a FETCH 1 ",
        b"a UID FETCH 1:* (",
        b"a STORE 1 +FLAGS ",
        b"a APPEND x ",
        b"a LIST ",
        b"a STATUS x (",
        b"a LOGIN ",
    ]
)


@settings(max_examples=500, deadline=None)
@given(prefixes, st.binary(max_size=40))
def test_junk_arguments_give_tagged_bad_or_a_command(prefix: bytes, junk: bytes) -> None:
    junk = junk.replace(b"\r\n", b"")
    parser = CommandParser()
    events = parser.receive_data(prefix + junk + b"\r\n")
    for event in events:
        if isinstance(event, BadCommand):
            assert event.tag == "a"


def test_parse_error_type() -> None:
    error = IMAPParseError("x", tag="t")
    assert isinstance(error, ValueError)
    assert error.tag == "t"
    assert not error.fatal


# Python's imaplib as the source of real commands: it talks to a tiny fake
# server over a socket pair, the bytes it sends are captured and parsed.


class FakeServer(threading.Thread):
    """Answers imaplib just enough, recording every octet it receives."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.received = bytearray()
        self.parser = CommandParser()
        self.events: list[ParserEvent] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def run(self) -> None:
        self.send(b"* OK [CAPABILITY IMAP4rev1 IDLE MOVE UIDPLUS NAMESPACE ENABLE] ready\r\n")
        while True:
            data = self.sock.recv(65536)
            if not data:
                return
            self.received += data
            pending = self.parser.receive_data(data)
            while pending:
                event = pending.pop(0)
                self.events.append(event)
                pending += self.answer(event)

    def answer(self, event: ParserEvent) -> list[ParserEvent]:
        if isinstance(event, ContinuationNeeded):
            self.send(b"+ go\r\n")
            return self.parser.resume()
        if isinstance(event, AppendEnd):
            self.send(event.tag.encode() + b" OK [APPENDUID 1 1] done\r\n")
        elif isinstance(event, Command):
            if event.name == "IDLE":
                self.send(b"+ idling\r\n")
                return self.parser.expect_continuation_line()
            if event.name == "LOGOUT":
                self.send(b"* BYE bye\r\n")
            if event.name == "SELECT":
                self.send(b"* 0 EXISTS\r\n")
            self.send(event.tag.encode() + b" OK done\r\n")
        elif isinstance(event, ContinuationLine):
            self.send(b"%s OK idle done\r\n" % self.idle_tag())
        elif isinstance(event, BadCommand):
            self.send(b"%s BAD %s\r\n" % ((event.tag or "*").encode(), event.text.encode()))
        return []

    def idle_tag(self) -> bytes:
        idles = [e for e in self.events if isinstance(e, Command) and e.name == "IDLE"]
        return idles[-1].tag.encode()


def test_imaplib_commands_parse() -> None:
    ours, theirs = socket.socketpair()
    server = FakeServer(ours)
    server.start()

    class Client(imaplib.IMAP4):
        def open(self, host: str = "", port: int = 0, timeout: float | None = None) -> None:
            self.host, self.port = host, port
            self.sock = theirs
            self.file = theirs.makefile("rb")

    client = Client()
    try:
        client.login("fred", 'pass "word" \\ with space')
        client.enable("CONDSTORE")
        client.select("INBOX")
        client.create(encode_modified_utf7("Entwürfe"))
        client.list('""', "*")
        client.status("INBOX", "(MESSAGES UIDNEXT)")
        client.append(
            "INBOX",
            "(\\Seen)",
            imaplib.Time2Internaldate(1_000_000_000),
            b"Subject: x\r\n\r\nbody\r\n",
        )
        client.search(None, "(OR FROM joe SINCE 1-Feb-2020)")
        client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        client.store("1", "+FLAGS", "(\\Deleted)")
        client.copy("1:2", "Archive")
        client.uid("MOVE", "3", "Trash")
        client.expunge()
        client.rename("a", "b")
        client.subscribe("b")
        client.lsub()
        client.namespace()
        client.noop()
        client.check()
        client.close()
        client.logout()
    finally:
        theirs.close()
        server.join(timeout=10)
        ours.close()
    names = [event.name for event in server.events if isinstance(event, Command)]
    assert names == [
        "CAPABILITY",
        "LOGIN",
        "ENABLE",
        "SELECT",
        "CREATE",
        "LIST",
        "STATUS",
        "SEARCH",
        "UID FETCH",
        "STORE",
        "COPY",
        "UID MOVE",
        "EXPUNGE",
        "RENAME",
        "SUBSCRIBE",
        "LSUB",
        "NAMESPACE",
        "NOOP",
        "CHECK",
        "CLOSE",
        "LOGOUT",
    ]
    assert not [event for event in server.events if isinstance(event, BadCommand)]
    login = next(e for e in server.events if isinstance(e, Command) and e.name == "LOGIN")
    assert login.arguments == ("fred", 'pass "word" \\ with space')
    create = next(e for e in server.events if isinstance(e, Command) and e.name == "CREATE")
    assert create.arguments == ("Entwürfe",)
    start = next(e for e in server.events if isinstance(e, AppendStart))
    assert start.flags == ("\\Seen",)
    assert start.internal_date is not None
    assert start.internal_date.timestamp() == 1_000_000_000
    data = b"".join(e.data for e in server.events if isinstance(e, AppendData))
    assert data == b"Subject: x\r\n\r\nbody\r\n"


def test_bare_lf_is_not_a_line_end() -> None:
    parser = CommandParser()
    assert parser.receive_data(b"a NOOP\nb NOOP\n") == []
    assert parser.receive_data(b"\r\n") == [
        BadCommand(tag="a", text="unexpected text at end of command")
    ]


def test_long_continuation_line_is_untagged_bad() -> None:
    parser = CommandParser(ParserLimits(max_line=32))
    assert parser.receive_data(b"a AUTHENTICATE PLAIN\r\n") == [
        Command(tag="a", name="AUTHENTICATE", arguments=("PLAIN", None))
    ]
    assert parser.expect_continuation_line() == []
    events = parser.receive_data(b"x" * 40 + b"\r\nb NOOP\r\n")
    assert events == [BadCommand(tag=None, text="line too long"), Command(tag="b", name="NOOP")]


def test_long_line_after_append_message_abandons_it() -> None:
    parser = CommandParser(ParserLimits(max_line=32))
    events = run(parser, b"a APPEND INBOX {1+}\r\nx" + b" junk" * 10 + b"\r\nb NOOP\r\n")
    assert events[-2:] == [
        BadCommand(tag="a", text="line too long"),
        Command(tag="b", name="NOOP"),
    ]
    assert not any(isinstance(event, AppendEnd) for event in events)


def test_a_closed_parser_reads_nothing() -> None:
    parser = CommandParser(ParserLimits(max_nonsync_literal=1))
    assert parser.receive_data(b"a LOGIN {2+}\r\n")[-1] == BadCommand(
        tag="a", text="non-synchronizing literal too large", fatal=True
    )
    assert parser.receive_data(b"b NOOP\r\n") == []
    assert parser.resume() == []


def test_rfc3501_section8_client_side() -> None:
    # The client's half of RFC 3501 section 8's sample session, lower case
    # as the RFC writes it.
    session = (
        b"a001 login mrc secret\r\n"
        b"a002 select inbox\r\n"
        b"a003 fetch 12 full\r\n"
        b"a004 fetch 12 body[header]\r\n"
        b"a005 store 12 +flags \\deleted\r\n"
        b"a006 logout\r\n"
    )
    events = CommandParser().receive_data(session)
    assert events == [
        Command(tag="a001", name="LOGIN", arguments=("mrc", "secret")),
        Command(tag="a002", name="SELECT", arguments=("INBOX",)),
        Command(
            tag="a003",
            name="FETCH",
            arguments=(
                SequenceSet(((12, 12),)),
                tuple(
                    FetchItem(name=name)
                    for name in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY")
                ),
            ),
        ),
        Command(
            tag="a004",
            name="FETCH",
            arguments=(
                SequenceSet(((12, 12),)),
                (FetchItem(name="BODY", section=Section(text="HEADER")),),
            ),
        ),
        Command(
            tag="a005",
            name="STORE",
            arguments=(
                SequenceSet(((12, 12),)),
                StoreAction(mode="add", silent=False, flags=("\\Deleted",)),
            ),
        ),
        Command(tag="a006", name="LOGOUT"),
    ]
