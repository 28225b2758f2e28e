"""The IMAP client's sans-IO core: responses from bytes in any chunking, commands to bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.mail.imap import ResponseCode
from torsion.mail.imap._client_core import (
    ClientLimits,
    ContinuationRequest,
    IMAP4ClientConnection,
    IMAPProtocolError,
    LiteralArgument,
    TaggedResponse,
    UntaggedResponse,
    quote,
)

SESSION = (
    b"* OK [CAPABILITY IMAP4rev1 LITERAL+ IDLE] ready\r\n"
    b"* CAPABILITY IMAP4rev1 IDLE MOVE\r\n"
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Flags permitted.\r\n"
    b"* 3 EXISTS\r\n"
    b"* 0 RECENT\r\n"
    b"* OK [UIDVALIDITY 1732497600] UIDs valid\r\n"
    b"* OK [UIDNEXT 4] Predicted next UID\r\n"
    b"T0001 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
    b"* SEARCH 1 2 3\r\n"
    b"* SEARCH \r\n"
    b'* LIST (\\HasNoChildren) "." INBOX\r\n'
    b'* LIST (\\HasNoChildren \\Sent) "." "Sent Items"\r\n'
    b'* LIST (\\Noselect) NIL {5}\r\nodd")\r\n'
    b'* STATUS "Sent Items" (MESSAGES 2 UIDNEXT 3 UNSEEN 0)\r\n'
    b'* NAMESPACE (("" ".")) NIL NIL\r\n'
    b"* ENABLED CONDSTORE\r\n"
    b"* 2 EXPUNGE\r\n"
    b"* 1 FETCH (UID 7 FLAGS (\\Seen $Label1) RFC822.SIZE 12 "
    b'INTERNALDATE "25-Nov-2026 01:00:00 +0000" BODY[] {12}\r\nSubject: x\r\n'
    b' BODY[HEADER.FIELDS (SUBJECT "FROM")]<0> {3}\r\nabc'
    b' ENVELOPE ("Wed, 25 Nov 2026 01:00:00 +0000" "hi" (("Al" NIL "al" "x.test")) '
    b'NIL NIL NIL NIL NIL NIL "<m@x>")'
    b' BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 2 1'
    b" NIL NIL NIL NIL))\r\n"
    b"+ go ahead\r\n"
    b"+\r\n"
    b"T0002 NO [TRYCREATE] Mailbox doesn't exist: Nope\r\n"
    b"T0003 BAD Error in IMAP command\r\n"
    b"* BYE Logging out\r\n"
    b"T0004 OK\r\n"
)


def expected() -> list[object]:
    return [
        UntaggedResponse(
            name="OK", code=ResponseCode("CAPABILITY", "IMAP4rev1 LITERAL+ IDLE"), text="ready"
        ),
        UntaggedResponse(name="CAPABILITY", values=("IMAP4rev1", "IDLE", "MOVE")),
        UntaggedResponse(
            name="FLAGS", values=(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"),)
        ),
        UntaggedResponse(
            name="OK",
            code=ResponseCode("PERMANENTFLAGS", "(\\Deleted \\Seen \\*)"),
            text="Flags permitted.",
        ),
        UntaggedResponse(name="EXISTS", number=3),
        UntaggedResponse(name="RECENT", number=0),
        UntaggedResponse(
            name="OK", code=ResponseCode("UIDVALIDITY", "1732497600"), text="UIDs valid"
        ),
        UntaggedResponse(name="OK", code=ResponseCode("UIDNEXT", "4"), text="Predicted next UID"),
        TaggedResponse(
            tag="T0001",
            status="OK",
            code=ResponseCode("READ-WRITE", ""),
            text="Select completed (0.001 + 0.000 secs).",
        ),
        UntaggedResponse(name="SEARCH", values=(1, 2, 3)),
        UntaggedResponse(name="SEARCH", values=()),
        UntaggedResponse(name="LIST", values=(("\\HasNoChildren",), b".", "INBOX")),
        UntaggedResponse(name="LIST", values=(("\\HasNoChildren", "\\Sent"), b".", b"Sent Items")),
        UntaggedResponse(name="LIST", values=(("\\Noselect",), None, b'odd")')),
        UntaggedResponse(
            name="STATUS", values=(b"Sent Items", ("MESSAGES", 2, "UIDNEXT", 3, "UNSEEN", 0))
        ),
        UntaggedResponse(name="NAMESPACE", values=(((b"", b"."),), None, None)),
        UntaggedResponse(name="ENABLED", values=("CONDSTORE",)),
        UntaggedResponse(name="EXPUNGE", number=2),
        UntaggedResponse(
            name="FETCH",
            number=1,
            values=(
                "UID",
                7,
                "FLAGS",
                ("\\Seen", "$Label1"),
                "RFC822.SIZE",
                12,
                "INTERNALDATE",
                b"25-Nov-2026 01:00:00 +0000",
                "BODY[]",
                b"Subject: x\r\n",
                'BODY[HEADER.FIELDS (SUBJECT "FROM")]<0>',
                b"abc",
                "ENVELOPE",
                (
                    b"Wed, 25 Nov 2026 01:00:00 +0000",
                    b"hi",
                    ((b"Al", None, b"al", b"x.test"),),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    b"<m@x>",
                ),
                "BODYSTRUCTURE",
                (
                    b"TEXT",
                    b"PLAIN",
                    (b"CHARSET", b"us-ascii"),
                    None,
                    None,
                    b"7BIT",
                    2,
                    1,
                    None,
                    None,
                    None,
                    None,
                ),
            ),
        ),
        ContinuationRequest(text="go ahead"),
        ContinuationRequest(text=""),
        TaggedResponse(
            tag="T0002",
            status="NO",
            code=ResponseCode("TRYCREATE", ""),
            text="Mailbox doesn't exist: Nope",
        ),
        TaggedResponse(tag="T0003", status="BAD", text="Error in IMAP command"),
        UntaggedResponse(name="BYE", text="Logging out"),
        TaggedResponse(tag="T0004", status="OK"),
    ]


def test_a_session_whole() -> None:
    assert IMAP4ClientConnection().receive_data(SESSION) == expected()


def test_a_session_one_byte_at_a_time() -> None:
    core = IMAP4ClientConnection()
    events = []
    for i in range(len(SESSION)):
        events.extend(core.receive_data(SESSION[i : i + 1]))
    assert events == expected()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(SESSION)), max_size=40))
def test_any_chunking(cuts: list[int]) -> None:
    core = IMAP4ClientConnection()
    events = []
    last = 0
    for cut in [*sorted(cuts), len(SESSION)]:
        events.extend(core.receive_data(SESSION[last:cut]))
        last = max(last, cut)
    assert events == expected()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_junk_raises_only_the_protocol_error(junk: bytes) -> None:
    core = IMAP4ClientConnection(limits=ClientLimits(max_line=100, max_literal=50))
    try:
        core.receive_data(junk + b"\r\n")
    except IMAPProtocolError:
        with pytest.raises(IMAPProtocolError):
            core.receive_data(b"* OK\r\n")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_responses_raise_only_the_protocol_error(data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(SESSION) - 1))
    replacement = data.draw(st.sampled_from([b"(", b")", b"{", b"}", b'"', b" ", b"\r\n", b"x"]))
    mutated = SESSION[:position] + replacement + SESSION[position + 1 :]
    with contextlib.suppress(IMAPProtocolError):
        IMAP4ClientConnection().receive_data(mutated)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"* OK " + b"x" * 200, "line over"),
        (b"* OK " + b"x" * 200 + b"\r\n", "line over"),
        (b"* 1 FETCH (BODY[] {51}\r\n", "literal of 51"),
        (b"* 1 FETCH (BODY[] {99999999999999999999}\r\n", "literal of"),
        (b"T1 MAYBE fine\r\n", "not OK, NO or BAD"),
        (b"(oops\r\n", "without a tag"),
        (b"* 1 FETCH (UID 1\r\n", "expected"),
        (b"* 1 FETCH (BODY[HEADER {3}\r\nabc)\r\n", "without ']'"),
        (b"* LIST (((((((((((x)))))))))))\r\n", "nested too deeply"),
        (b"* 1 EXISTS now\r\n", "unexpected text"),
        (b'* LIST "open\r\n', "quoted string"),
        (b"* OK [ALERT never closed\r\n", "without ']'"),
    ],
)
def test_bad_responses(data: bytes, message: str) -> None:
    core = IMAP4ClientConnection(limits=ClientLimits(max_line=100, max_literal=50, max_depth=8))
    with pytest.raises(IMAPProtocolError, match=message):
        core.receive_data(data)


def test_a_response_over_its_bound() -> None:
    core = IMAP4ClientConnection(limits=ClientLimits(max_literal=50, max_response=80))
    with pytest.raises(IMAPProtocolError, match="over the limit"):
        core.receive_data(b"* 1 FETCH (BODY[1] {40}\r\n" + b"a" * 40 + b" BODY[2] {40}\r\n")


def test_commands_with_synchronising_literals_wait_for_continuations() -> None:
    core = IMAP4ClientConnection()
    first = core.command("APPEND", quote("INBOX"), "(\\Seen)", LiteralArgument(b"Hi\r\n"))
    second = core.command("NOOP")
    assert (first, second) == ("T0001", "T0002")
    # NOOP waits behind the APPEND whose literal has not gone out.
    assert core.data_to_send() == b'T0001 APPEND "INBOX" (\\Seen) {4}\r\n'
    assert core.receive_data(b"+ OK\r\n") == []
    assert core.data_to_send() == b"Hi\r\n\r\nT0002 NOOP\r\n"
    # A continuation nothing waits for is the caller's (IDLE, SASL).
    assert core.receive_data(b"+ idling\r\n") == [ContinuationRequest(text="idling")]
    assert core.data_to_send() == b""


def test_two_literals_and_a_held_command_with_its_own() -> None:
    core = IMAP4ClientConnection()
    core.command("X", LiteralArgument(b"a"), LiteralArgument(b"bc"))
    core.command("Y", LiteralArgument(b"d"))
    assert core.data_to_send() == b"T0001 X {1}\r\n"
    core.receive_data(b"+\r\n")
    assert core.data_to_send() == b"a {2}\r\n"
    core.receive_data(b"+\r\n")
    assert core.data_to_send() == b"bc\r\nT0002 Y {1}\r\n"
    core.receive_data(b"+\r\n")
    assert core.data_to_send() == b"d\r\n"


def test_literal_plus_sends_at_once() -> None:
    core = IMAP4ClientConnection()
    core.literal_plus = True
    core.command("APPEND", "INBOX", LiteralArgument(b"Hi"))
    assert core.data_to_send() == b"T0001 APPEND INBOX {2+}\r\nHi\r\n"
    core.send_line(b"DONE")
    assert core.data_to_send() == b"DONE\r\n"


def test_quote() -> None:
    assert quote("INBOX") == b'"INBOX"'
    assert quote('a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert quote("line\r\nbreak") == LiteralArgument(b"line\r\nbreak")
    assert quote("caf\u00e9") == LiteralArgument("caf\u00e9".encode())
