"""SEARCH keys evaluated against messages, and compared with dovecot's answers."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from _imap_dovecot import run_dovecot
from hypothesis import example, given, settings
from hypothesis import strategies as st

from torsion.mail.imap import (
    AllKey,
    AndKey,
    Command,
    CommandParser,
    ContinuationNeeded,
    DateKey,
    FlagKey,
    IMAPParseError,
    NotKey,
    OrKey,
    ParserLimits,
    Reader,
    SearchKey,
    SearchMessage,
    SequenceKey,
    SequenceSet,
    SizeKey,
    TextKey,
    format_search_key,
    matches,
    parse_search_program,
    to_crlf,
)

PLAIN = b"""From: Alice Example <alice@x.test>
To: bob@y.test
Cc: Carol <carol@z.test>
Subject: Quarterly Report
Date: Tue, 4 Feb 2020 23:30:00 -0800
X-Priority: 1

The numbers are IN. Caf\xc3\xa9 opened.
"""

ENCODED = b"""From: =?utf-8?q?Ren=C3=A9e?= <renee@x.test>
To: team@y.test
Subject: =?utf-8?b?w4l0w6kgcmVwb3J0?=
Date: Sat, 1 Jun 2019 08:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Bonjour, l'=C3=A9quipe: the summer picnic is on.
--b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+c2VjcmV0IGJhc2U2NCB3b3JkPC9wPg==
--b--
"""

BARE = b"Subject: nothing much\r\nBcc: hidden@x.test\r\n\r\nshort\r\n"

CONTENTS = [PLAIN, ENCODED, BARE]
DATES = [
    datetime(2020, 2, 5, 10, 0, tzinfo=UTC),
    datetime(2019, 6, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
    datetime(2021, 12, 31, 0, 0, tzinfo=UTC),
]
FLAGS = [frozenset({"\\Seen", "\\Recent"}), frozenset({"\\Flagged", "$Work"}), frozenset()]


def messages() -> list[SearchMessage]:
    return [
        SearchMessage(
            sequence=index + 1,
            uid=(index + 1) * 10,
            flags=FLAGS[index],
            internal_date=DATES[index],
            size=len(to_crlf(content)),
            content=to_crlf(content),
            largest_sequence=len(CONTENTS),
            largest_uid=len(CONTENTS) * 10,
        )
        for index, content in enumerate(CONTENTS)
    ]


def wire(text: str) -> bytes:
    """Return a search program with non-ASCII arguments as literals."""
    words = []
    for word in text.split(" "):
        data = word.strip('"').encode()
        words.append(b"{%d}\r\n" % len(data) + data if not data.isascii() else word.encode())
    return b" ".join(words)


def key(text: str) -> SearchKey:
    reader = Reader(wire(text))
    parsed = parse_search_program(reader)
    reader.end()
    return parsed


def found(text: str) -> list[int]:
    program = key(text)
    return [message.sequence for message in messages() if matches(program, message)]


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("ALL", [1, 2, 3]),
        ("SEEN", [1]),
        ("UNSEEN", [2, 3]),
        ("FLAGGED", [2]),
        ("UNFLAGGED", [1, 3]),
        ("RECENT", [1]),
        ("NEW", []),
        ("OLD", [2, 3]),
        ("KEYWORD $work", [2]),
        ("UNKEYWORD $Work", [1, 3]),
        ("ANSWERED", []),
        ("UNANSWERED", [1, 2, 3]),
        ("DELETED", []),
        ("DRAFT", []),
        ("FROM alice", [1]),
        ("FROM ALICE@X", [1]),
        ('FROM "Renée"', [2]),
        ("TO bob", [1]),
        ("CC carol", [1]),
        ("BCC hidden", [3]),
        ("SUBJECT report", [1, 2]),
        ('SUBJECT "été"', [2]),
        ("HEADER X-Priority 1", [1]),
        ('HEADER X-Priority ""', [1]),
        ("HEADER Subject much", [3]),
        ("BODY numbers", [1]),
        ("BODY café", [1]),
        ("BODY équipe", [2]),
        ("BODY secret", [2]),
        ("BODY Quarterly", []),
        ("TEXT Quarterly", [1]),
        ("TEXT short", [3]),
        ("BEFORE 5-Feb-2020", [2]),
        ("ON 5-Feb-2020", [1]),
        ("ON 1-Jun-2019", [2]),
        ("SINCE 5-Feb-2020", [1, 3]),
        ("SENTBEFORE 4-Feb-2020", [2, 3]),
        ("SENTON 4-Feb-2020", [1]),
        ("SENTSINCE 2-Jun-2019", [1]),
        ("SENTBEFORE 2-Jan-1970", [3]),
        ("LARGER 100", [1, 2]),
        ("SMALLER 100", [3]),
        ("2:*", [2, 3]),
        ("*", [3]),
        ("1,3", [1, 3]),
        ("UID 20:25", [2]),
        ("UID *", [3]),
        ("NOT SEEN", [2, 3]),
        ("OR SEEN FLAGGED", [1, 2]),
        ("OR (SEEN SUBJECT report) (SMALLER 100 NOT FLAGGED)", [1, 3]),
        ("NOT NOT OR 1 3", [1, 3]),
        ("SUBJECT report FROM alice", [1]),
    ],
)
def test_keys(program: str, expected: list[int]) -> None:
    assert found(program) == expected


def test_content_not_loaded_matches_no_text_key() -> None:
    message = messages()[0]
    message.content = None
    assert not matches(key("FROM alice"), message)
    assert not matches(key("SENTON 4-Feb-2020"), message)
    assert matches(key("SEEN"), message)


def test_saved_result() -> None:
    message = messages()[1]
    message.saved = frozenset({2})
    assert matches(key("$"), message)
    assert not matches(key("UID $"), message)


def test_dates_are_the_internal_dates_own_day() -> None:
    # RFC 3501 section 6.4.4: "disregarding time and timezone"; 23:00 at -0500
    # on 1 June is 1 June (dovecot, which converts to its own zone, differs).
    assert found("ON 1-Jun-2019") == [2]


def test_naive_internal_date_is_utc() -> None:
    message = messages()[0]
    message.internal_date = datetime(2020, 2, 5, 23, 59)
    assert matches(key("ON 5-Feb-2020"), message)


def test_tree_shapes() -> None:
    assert key("OR 1 NOT ALL") == OrKey(SequenceKey(SequenceSet(((1, 1),))), NotKey(AllKey()))
    assert key("LARGER 4294967295") == SizeKey(True, 4294967295)
    with pytest.raises(IMAPParseError):
        key("LARGER 4294967296")
    with pytest.raises(IMAPParseError):
        key("SENTON 1-Foo-2020")
    with pytest.raises(IMAPParseError):
        key("OR ALL")
    with pytest.raises(IMAPParseError):
        key("()")


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300),
    st.sampled_from(["TEXT a", "BODY x", "HEADER To b", "SENTON 1-Jan-2020"]),
)
def test_any_content_searches_without_error(content: bytes, program: str) -> None:
    message = SearchMessage(
        sequence=1,
        uid=1,
        flags=frozenset(),
        internal_date=datetime(2020, 1, 1, tzinfo=UTC),
        size=len(content),
        content=content,
    )
    assert matches(key(program), message) in (True, False)


# Dovecot's answers for the same messages and keys. Flags are left out
# (the messages are appended without them); internal dates are set.

COMPARED = [
    "FROM alice",
    "FROM Renée",
    "TO bob",
    "CC carol",
    "BCC hidden",
    "SUBJECT report",
    "SUBJECT été",
    "HEADER X-Priority 1",
    "BODY numbers",
    "BODY café",
    "BODY équipe",
    "BODY secret",
    "BODY Quarterly",
    "TEXT Quarterly",
    "BEFORE 5-Feb-2020",
    "ON 5-Feb-2020",
    "SINCE 5-Feb-2020",
    "SENTBEFORE 4-Feb-2020",
    "SENTON 4-Feb-2020",
    "SENTSINCE 2-Jun-2019",
    "LARGER 100",
    "SMALLER 100",
    "OR FROM alice BCC hidden",
    "NOT SUBJECT report",
]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[imaplib.IMAP4]:
    with run_dovecot(CONTENTS, DATES) as client:
        yield client


@pytest.mark.parametrize("program", COMPARED)
def test_keys_match_dovecot(dovecot: imaplib.IMAP4, program: str) -> None:
    name, _, argument = program.rpartition(" ")
    if argument.isascii():
        status, data = dovecot.search("UTF-8", program)
    else:
        # Non-ASCII goes as a literal (RFC 3501 section 6.4.4, CHARSET).
        dovecot.literal = argument.encode()
        status, data = dovecot.search("UTF-8", name)
    assert status == "OK", data
    theirs = [int(number) for number in data[0].split()]
    assert found(program) == theirs


# Round trip: any key tree, written as a client would, parses back to itself.

_ATOMS = st.text(
    st.characters(codec="ascii", exclude_characters='(){ %*"\\]', exclude_categories=("Cc",)),
    min_size=1,
    max_size=8,
)
_TEXTS = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)
_NUMBERS = st.one_of(st.none(), st.integers(1, 2**32 - 1))
_LEAVES = st.one_of(
    st.just(AllKey()),
    st.builds(
        FlagKey,
        st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\Recent"])
        | _ATOMS.filter(lambda atom: not atom.startswith("\\")),
        st.booleans(),
    ),
    st.builds(
        DateKey,
        st.booleans(),
        st.sampled_from(["before", "on", "since"]),
        st.dates(min_value=datetime(1900, 1, 1).date()),
    ),
    st.builds(SizeKey, st.booleans(), st.integers(0, 2**32 - 1)),
    st.builds(TextKey, st.sampled_from(["body", "text"]), _TEXTS),
    st.builds(
        TextKey,
        st.just("header"),
        _TEXTS,
        st.sampled_from(["From", "To", "Cc", "Bcc", "Subject", "X-Spam", "Reply-To"]),
    ),
    st.builds(
        SequenceKey,
        st.lists(st.tuples(_NUMBERS, _NUMBERS), min_size=1, max_size=4).map(
            lambda ranges: SequenceSet(tuple(ranges))
        ),
        st.booleans(),
    ),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.builds(NotKey, inner),
        st.builds(OrKey, inner, inner),
        st.lists(inner, min_size=2, max_size=4).map(lambda keys: AndKey(tuple(keys))),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_TREES)
def test_format_then_parse_round_trip(tree: SearchKey) -> None:
    wire = b"a SEARCH CHARSET UTF-8 " + format_search_key(tree) + b"\r\n"
    parser = CommandParser(ParserLimits(max_depth=64))
    events = parser.receive_data(wire)
    while parser.stopped:
        events += parser.resume()
    commands = [event for event in events if not isinstance(event, ContinuationNeeded)]
    assert commands == [Command(tag="a", name="SEARCH", arguments=("UTF-8", tree))]


_FRAGMENTS = [
    b"=?",
    b"?=",
    b"utf-8",
    b"?q?",
    b"?b?",
    b"=C3",
    b"==",
    b"\r\n",
    b" ",
    b"\xff",
    b"Subject: ",
    b"From: ",
    b"Date: ",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: text/plain; charset=",
    b"Content-Transfer-Encoding: base64\r\n",
    b"--",
    b'"',
    b"<",
    b"@",
    b",",
    b":",
    b"(",
    b"charset=",
    b"message/rfc822",
    b"Mon, 1 Jan 99999 00:00:00 +9999",
    b"\r\n\r\n",
    b"x",
    b"bogus",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=50).map(b"".join))
@example(b"Subject: =?utf-8\xff?q?x?=\r\n\r\n")
def test_mangled_headers_and_encodings_search_without_error(content: bytes) -> None:
    message = SearchMessage(
        sequence=1,
        uid=1,
        flags=frozenset(),
        internal_date=datetime(2020, 1, 1, tzinfo=UTC),
        size=len(content),
        content=content,
    )
    for program in ("TEXT a", "SUBJECT x", "FROM y", "SENTON 1-Jan-2020", "BODY z"):
        assert matches(key(program), message) in (True, False)
