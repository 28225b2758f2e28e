"""IMAP response formatting: RFC 3501 section 8's sample session and each response kind."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.mail.imap import (
    FetchMessage,
    Reader,
    ResponseCode,
    bye,
    capability,
    continuation,
    enabled,
    exists,
    expunge,
    fetch_response,
    flags,
    format_date_time,
    list_response,
    mailbox_name,
    namespace,
    nstring,
    parse_fetch_items,
    recent,
    render_fetch,
    search_response,
    status_response,
    string,
    tagged,
    uid_set,
    untagged,
)

PDT = timezone(timedelta(hours=-7))

# The message of RFC 3501 section 8: its header as the ENVELOPE shows it and
# a body of 3028 octets in 92 lines.
SAMPLE = (
    (
        b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        b"To: imap@cac.washington.edu\r\n"
        b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
    )
    + (b"x" * 31 + b"\r\n") * 91
    + b"x" * 23
    + b"\r\n"
)


def test_rfc3501_sample_session_responses() -> None:
    message = FetchMessage(
        uid=12,
        flags=frozenset({"\\Seen"}),
        internal_date=datetime(1996, 7, 17, 2, 44, 25, tzinfo=PDT),
        size=4286,
        content=SAMPLE,
    )
    full = render_fetch(parse_fetch_items(Reader(b"FULL")), message)
    lines = [
        untagged("OK", "IMAP4rev1 Service Ready"),
        tagged("a001", "OK", "LOGIN completed"),
        exists(18),
        flags(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]),
        recent(2),
        untagged("OK", "Message 17 is the first unseen message", ResponseCode("UNSEEN", "17")),
        untagged("OK", "UIDs valid", ResponseCode("UIDVALIDITY", "3857529045")),
        tagged("a002", "OK", "SELECT completed", ResponseCode("READ-WRITE")),
        fetch_response(12, full),
        bye("IMAP4rev1 server logging out"),
    ]
    # RFC 3501 prints a space between the two cc addresses; its grammar
    # ("(" 1*address ")") has none, and neither has ours.
    assert b"".join(lines) == (
        b"* OK IMAP4rev1 Service Ready\r\n"
        b"a001 OK LOGIN completed\r\n"
        b"* 18 EXISTS\r\n"
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        b"* 2 RECENT\r\n"
        b"* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
        b"a002 OK [READ-WRITE] SELECT completed\r\n"
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b"RFC822.SIZE 4286 ENVELOPE "
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>") '
        b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n'
        b"* BYE IMAP4rev1 server logging out\r\n"
    )


def test_rfc3501_header_fetch_is_a_literal() -> None:
    message = FetchMessage(
        uid=12,
        flags=frozenset(),
        internal_date=datetime(1996, 7, 17, tzinfo=PDT),
        size=len(SAMPLE),
        content=SAMPLE,
    )
    rendered = render_fetch(parse_fetch_items(Reader(b"BODY[HEADER]")), message)
    header = SAMPLE[: SAMPLE.index(b"\r\n\r\n") + 4]
    assert fetch_response(12, rendered) == (
        b"* 12 FETCH (BODY[HEADER] {%d}\r\n" % len(header) + header + b")\r\n"
    )


def test_codes() -> None:
    assert tagged("A1", "OK", "done", ResponseCode.append_uid(38505, 3955)) == (
        b"A1 OK [APPENDUID 38505 3955] done\r\n"
    )
    assert (
        tagged(
            "A2",
            "OK",
            "done",
            ResponseCode.copy_uid(38505, [304, 319, 320, 321], [3956, 3957, 3958, 3959]),
        )
        == b"A2 OK [COPYUID 38505 304,319:321 3956:3959] done\r\n"
    )
    assert untagged(
        "OK", "Limited", ResponseCode.permanent_flags(["\\Deleted", "\\Seen", "\\*"])
    ) == (b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n")
    assert tagged("a", "NO", "no such mailbox", ResponseCode("TRYCREATE")) == (
        b"a NO [TRYCREATE] no such mailbox\r\n"
    )
    assert untagged("OK", "hi", ResponseCode.capability(["IMAP4rev1", "IDLE"])) == (
        b"* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n"
    )
    assert untagged("NO", "", ResponseCode("ALERT")) == b"* NO [ALERT] NO\r\n"
    assert untagged("BAD", "line too long") == b"* BAD line too long\r\n"


@pytest.mark.parametrize("text", ["two\r\nlines", "caf\u00e9", "nul\x00"])
def test_response_text_must_be_one_ascii_line(text: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        tagged("a", "OK", text)


def test_simple_responses() -> None:
    assert continuation() == b"+ Ready\r\n"
    assert continuation("idling") == b"+ idling\r\n"
    assert capability(["IMAP4rev1", "LITERAL+"]) == b"* CAPABILITY IMAP4rev1 LITERAL+\r\n"
    assert enabled([]) == b"* ENABLED\r\n"
    assert enabled(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert expunge(3) == b"* 3 EXPUNGE\r\n"
    assert search_response([]) == b"* SEARCH\r\n"
    assert search_response([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"


def test_list_status_namespace() -> None:
    assert list_response(["\\Noselect"], "/", "~/Mail/foo") == (
        b'* LIST (\\Noselect) "/" "~/Mail/foo"\r\n'
    )
    assert list_response([], None, "", command="LSUB") == b'* LSUB () NIL ""\r\n'
    assert list_response(["\\HasNoChildren"], ".", "Entwürfe") == (
        b'* LIST (\\HasNoChildren) "." "Entw&APw-rfe"\r\n'
    )
    assert status_response("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b'* STATUS "blurdybloop" (MESSAGES 231 UIDNEXT 44292)\r\n'
    )
    assert namespace([("", "/")], [("~", "/")], [("#shared/", "/"), ("#public/", "/")]) == (
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/"))\r\n'
    )
    assert namespace([("", ".")]) == b'* NAMESPACE (("" ".")) NIL NIL\r\n'
    # RFC 6855 section 3: after ENABLE UTF8=ACCEPT names go as UTF-8.
    assert list_response([], ".", "Entwürfe", utf8=True) == (
        b'* LIST () "." {9}\r\nEntw\xc3\xbcrfe\r\n'
    )
    assert status_response("Entwürfe", [("MESSAGES", 1)], utf8=True) == (
        b"* STATUS {9}\r\nEntw\xc3\xbcrfe (MESSAGES 1)\r\n"
    )


def test_quoting_and_literals() -> None:
    assert string("plain") == b'"plain"'
    assert string('q"uo\\te') == b'"q\\"uo\\\\te"'
    assert string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert string("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"
    assert string(b"x" * 2000).startswith(b"{2000}\r\n")
    assert nstring(None) == b"NIL"
    assert mailbox_name("&") == b'"&-"'


@given(st.binary(max_size=200))
def test_any_string_reads_back(data: bytes) -> None:
    reader = Reader(string(data))
    assert reader.string() == data
    assert reader.at_end()


def test_dates() -> None:
    assert format_date_time(datetime(2020, 1, 2, 3, 4, 5)) == b'" 2-Jan-2020 03:04:05 +0000"'
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_date_time(datetime(1999, 12, 31, 23, 59, 59, tzinfo=india)) == (
        b'"31-Dec-1999 23:59:59 +0530"'
    )
    newfoundland = timezone(-timedelta(hours=3, minutes=30))
    assert format_date_time(datetime(2000, 6, 10, tzinfo=newfoundland)) == (
        b'"10-Jun-2000 00:00:00 -0330"'
    )
    reader = Reader(format_date_time(datetime(2000, 6, 10, tzinfo=newfoundland)))
    assert reader.date_time() == datetime(2000, 6, 10, tzinfo=newfoundland)


def test_uid_sets() -> None:
    assert uid_set([]) == ""
    assert uid_set([1]) == "1"
    assert uid_set([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert uid_set([5, 4]) == "5,4"
