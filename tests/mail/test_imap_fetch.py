"""FETCH rendering: sections, partials, ENVELOPE and BODYSTRUCTURE, checked against dovecot."""

from __future__ import annotations

import imaplib
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from _imap_dovecot import joined, normalize, run_dovecot
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.mail.imap import (
    FetchItem,
    FetchMessage,
    MimePart,
    Reader,
    Section,
    body_structure,
    envelope,
    fetch_response,
    needs_content,
    parse_fetch_items,
    render_fetch,
    sets_seen,
    to_crlf,
)

SIMPLE = b"Subject: hi\r\n\r\nbody\r\n"

MIXED = b"""From: "Joe Q. Public" <john.q.public@example.com>
To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>
Cc: undisclosed-recipients:;
Subject: =?utf-8?q?h=C3=A9llo?=
Date: Fri, 21 Nov 1997 09:55:06 -0600
Message-ID: <1234@local.machine.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XX"

preamble
--XX
Content-Type: text/plain; charset=utf-8

hello there
--XX
Content-Type: message/rfc822

Subject: inner
From: a@b.test
Content-Type: multipart/alternative; boundary=YY

--YY
Content-Type: text/plain

a
--YY
Content-Type: text/html; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

<b>a=E9</b>
--YY--

--XX
Content-Type: application/octet-stream; name="a.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="a.bin"
Content-ID: <part3@x.test>
Content-Description: some bytes
Content-Language: en, de
Content-Location: http://x.test/a.bin
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

AAEC
--XX--
epilogue
"""

DIGEST = b"""From: list@x.test
Subject: digest
Content-Type: multipart/digest; boundary="d"

--d

Subject: one

first
--d

Subject: two
Content-Type: text/plain

second
--d--
"""

ADDRESSES = b"""From: "Smith, John" <john@x.test>, =?iso-8859-1?q?Andr=E9?= <andre@y.test>
Sender: secretary@x.test
Reply-To: Team: a@x.test, "B" <b@x.test>;, last@x.test
To: <bare@x.test>
Bcc: Group:;
In-Reply-To: <earlier@x.test>
Subject: folded
 subject line
Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)

body
"""

NO_HEADER = b"\r\njust a body, no header\r\n"

EIGHT_BIT = """From: Jos\u00e9 <jose@x.test>
Subject: caf\u00e9 =?utf-8?b?w6k=?=
Content-Type: multipart/related; boundary=r; type="text/html"
Content-Language: fr

--r
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit
Content-Disposition: inline

<p>caf\u00e9</p>
--r
Content-Type: image/png
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.png
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--r--
""".encode()

MESSAGES = [SIMPLE, MIXED, DIGEST, ADDRESSES, NO_HEADER, EIGHT_BIT]
WHEN = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-7)))


def message(content: bytes, **kwargs: object) -> FetchMessage:
    return FetchMessage(
        uid=7,
        flags=frozenset({"\\Seen", "$Junk"}),
        internal_date=WHEN,
        size=len(to_crlf(content)),
        content=content,
        **kwargs,  # type: ignore[arg-type]
    )


def items(text: bytes) -> tuple[FetchItem, ...]:
    return parse_fetch_items(Reader(text))


def fetched(content: bytes, text: bytes) -> dict[bytes, bytes]:
    return dict(render_fetch(items(text), message(content)))


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def test_simple_items() -> None:
    got = fetched(SIMPLE, b"(UID FLAGS INTERNALDATE RFC822.SIZE)")
    assert got == {
        b"UID": b"7",
        b"FLAGS": b"($Junk \\Seen)",
        b"INTERNALDATE": b'" 2-Jan-2020 03:04:05 -0700"',
        b"RFC822.SIZE": b"%d" % len(SIMPLE),
    }


def test_sections_of_a_multipart_message() -> None:
    crlf = to_crlf(MIXED)
    got = fetched(
        MIXED,
        b"(BODY[] BODY[1] BODY[1.MIME] BODY[2] BODY[2.HEADER] BODY[2.TEXT] BODY[2.1] "
        b"BODY[2.2.MIME] BODY[3] BODY[4] BODY[HEADER.FIELDS (Subject TO)] "
        b"BODY[HEADER.FIELDS.NOT (to cc from subject date message-id mime-version)])",
    )
    assert got[b"BODY[]"] == literal(crlf)
    assert got[b"BODY[1]"] == literal(b"hello there")
    assert got[b"BODY[1.MIME]"] == literal(b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    inner = crlf[crlf.index(b"Subject: inner") : crlf.index(b"\r\n--XX\r\nContent-Type: app")]
    assert inner.endswith(b"--YY--\r\n")
    assert got[b"BODY[2]"] == literal(inner)
    assert got[b"BODY[2.HEADER]"] == literal(inner[: inner.index(b"\r\n\r\n") + 4])
    assert got[b"BODY[2.TEXT]"] == literal(inner[inner.index(b"\r\n\r\n") + 4 :])
    assert got[b"BODY[2.1]"] == literal(b"a")
    assert got[b"BODY[2.2.MIME]"] == literal(
        b'Content-Type: text/html; charset="iso-8859-1"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert got[b"BODY[3]"] == literal(b"AAEC")
    assert got[b"BODY[4]"] == b'""'
    assert got[b"BODY[HEADER.FIELDS (Subject TO)]"] == literal(
        b"To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>\r\n"
        b"Subject: =?utf-8?q?h=C3=A9llo?=\r\n\r\n"
    )
    header_not = got[b"BODY[HEADER.FIELDS.NOT (to cc from subject date message-id mime-version)]"]
    assert header_not == literal(b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n')


def test_crlf_before_a_delimiter_belongs_to_the_delimiter() -> None:
    # RFC 2046 section 5.1.1: "the CRLF preceding the boundary delimiter line
    # is conceptually attached to the boundary". An inner close delimiter
    # followed at once by the outer delimiter leaves the inner part no CRLF
    # (dovecot 2.3 gives it one; the RFC's reading is kept here).
    content = (
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n"
        b"Content-Type: multipart/alternative; boundary=Y\r\n\r\n"
        b"--Y\r\n\r\na\r\n--Y--\r\n--X--\r\n"
    )
    got = fetched(content, b"(BODY[1] BODY[1.1])")
    assert got == {b"BODY[1]": literal(b"--Y\r\n\r\na\r\n--Y--"), b"BODY[1.1]": literal(b"a")}


def test_single_part_message_part_one_is_its_body() -> None:
    got = fetched(SIMPLE, b"(BODY[1] BODY[TEXT] BODY[HEADER] BODY[2] BODY[1.1])")
    assert got[b"BODY[1]"] == literal(b"body\r\n")
    assert got[b"BODY[TEXT]"] == literal(b"body\r\n")
    assert got[b"BODY[HEADER]"] == literal(b"Subject: hi\r\n\r\n")
    assert got[b"BODY[2]"] == b'""'
    assert got[b"BODY[1.1]"] == literal(b"body\r\n")


def test_folded_header_fields_keep_their_continuation_lines() -> None:
    got = fetched(ADDRESSES, b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    assert got == {
        b"BODY[HEADER.FIELDS (SUBJECT)]": literal(b"Subject: folded\r\n subject line\r\n\r\n")
    }


def test_partial_fetch() -> None:
    rendered = render_fetch(
        items(b"(BODY[1]<0.5> BODY[1]<6.100> BODY[1]<1000.10>)"), message(MIXED)
    )
    assert rendered == [
        (b"BODY[1]<0>", literal(b"hello")),
        (b"BODY[1]<6>", literal(b"there")),
        (b"BODY[1]<1000>", b'""'),
    ]


def test_rfc822_items() -> None:
    crlf = to_crlf(SIMPLE)
    got = fetched(SIMPLE, b"(RFC822 RFC822.HEADER RFC822.TEXT)")
    assert got == {
        b"RFC822": literal(crlf),
        b"RFC822.HEADER": literal(b"Subject: hi\r\n\r\n"),
        b"RFC822.TEXT": literal(b"body\r\n"),
    }


def test_seen_and_content_needs() -> None:
    assert sets_seen(items(b"BODY[]"))
    assert sets_seen(items(b"RFC822"))
    assert sets_seen(items(b"RFC822.TEXT"))
    assert not sets_seen(items(b"(BODY.PEEK[] RFC822.HEADER BODYSTRUCTURE FLAGS)"))
    assert not needs_content(items(b"FAST"))
    assert needs_content(items(b"ALL"))
    with pytest.raises(ValueError, match="content"):
        render_fetch(
            items(b"ENVELOPE"),
            FetchMessage(uid=1, flags=frozenset(), internal_date=WHEN, size=0),
        )


def test_duplicates_rendered_once_and_response_framing() -> None:
    rendered = render_fetch(items(b"(UID FLAGS UID)"), message(SIMPLE))
    assert fetch_response(3, rendered) == b"* 3 FETCH (UID 7 FLAGS ($Junk \\Seen))\r\n"


def test_envelope_of_addresses() -> None:
    assert envelope(MimePart.parse(ADDRESSES)) == (
        b'("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" "folded subject line" '
        b'(("Smith, John" NIL "john" "x.test")("=?iso-8859-1?q?Andr=E9?=" NIL "andre" "y.test")) '
        b'((NIL NIL "secretary" "x.test")) '
        b'((NIL NIL "Team" NIL)(NIL NIL "a" "x.test")("B" NIL "b" "x.test")(NIL NIL NIL NIL)'
        b'(NIL NIL "last" "x.test")) '
        b'((NIL NIL "bare" "x.test")) NIL ((NIL NIL "Group" NIL)(NIL NIL NIL NIL)) '
        b'"<earlier@x.test>" NIL)'
    )


def test_envelope_uses_literals_for_what_cannot_be_quoted() -> None:
    raw = "Subject: caf\u00e9\r\n\r\nx".encode()
    assert envelope(MimePart.parse(raw)) == (
        b"(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)"
    )


def test_rfc3501_body_structure_example_shape() -> None:
    # RFC 3501 section 7.4.2: ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)
    text = b"x" * 31 + b"\r\n"
    body = text * 91 + b"x" * 23 + b"\r\n"
    assert len(body) == 3028
    content = b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n" + body
    assert body_structure(MimePart.parse(content), extensions=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_octets_render(content: bytes) -> None:
    rendered = render_fetch(
        items(
            b"(ENVELOPE BODYSTRUCTURE BODY BODY[1] BODY[1.MIME] BODY[HEADER.FIELDS (A)] RFC822)"
        ),
        message(content),
    )
    assert len(rendered) == 7


def test_deep_nesting_is_bounded() -> None:
    nested = SIMPLE
    for _ in range(100):
        nested = b"Content-Type: message/rfc822\r\n\r\n" + nested
    structure = body_structure(MimePart.parse(nested))
    assert structure.count(b'"MESSAGE" "RFC822"') == 32


# Against dovecot: the same messages appended to a real IMAP server; its
# ENVELOPE, BODY, BODYSTRUCTURE and sections compared with ours.


@pytest.fixture(scope="module")
def dovecot() -> Iterator[imaplib.IMAP4]:
    with run_dovecot(MESSAGES) as client:
        yield client


def dovecot_item(client: imaplib.IMAP4, number: int, item: str) -> bytes:
    status, data = client.fetch(str(number), f"({item})")
    assert status == "OK", data
    raw = joined(data)
    prefix = f"{number} (".encode()
    assert raw.startswith(prefix), raw
    assert raw.endswith(b")"), raw
    inner = raw[len(prefix) : -1]
    name = item.replace(".PEEK", "").encode()
    assert inner.upper().startswith(name + b" ") or inner.upper().startswith(name), inner
    return inner[inner.index(b"]") + 2 if b"[" in name else len(name) + 1 :]


COMPARED = ["ENVELOPE", "BODY", "BODYSTRUCTURE"]
SECTIONS = ["1", "1.MIME", "2", "2.HEADER", "2.1", "2.2", "2.2.MIME", "3", "HEADER", "TEXT"]


@pytest.mark.parametrize("number", range(1, len(MESSAGES) + 1))
@pytest.mark.parametrize("item", COMPARED)
def test_structures_match_dovecot(dovecot: imaplib.IMAP4, number: int, item: str) -> None:
    theirs = dovecot_item(dovecot, number, item)
    ours = dict(render_fetch(items(item.encode()), message(MESSAGES[number - 1])))[item.encode()]
    assert normalize(ours) == normalize(theirs)


@pytest.mark.parametrize("number", range(1, len(MESSAGES) + 1))
@pytest.mark.parametrize("section", SECTIONS)
def test_sections_match_dovecot(dovecot: imaplib.IMAP4, number: int, section: str) -> None:
    theirs = dovecot_item(dovecot, number, f"BODY.PEEK[{section}]")
    rendered = render_fetch(items(f"BODY.PEEK[{section}]".encode()), message(MESSAGES[number - 1]))
    assert normalize(rendered[0][1]) == normalize(theirs)


_SECTIONS = st.one_of(
    st.builds(Section),
    st.builds(
        Section,
        part=st.lists(st.integers(1, 99), min_size=1, max_size=4).map(tuple),
        text=st.sampled_from([None, "MIME", "HEADER", "TEXT"]),
    ),
    st.builds(
        Section,
        part=st.lists(st.integers(1, 99), max_size=3).map(tuple),
        text=st.sampled_from(["HEADER", "TEXT"]),
    ),
    st.builds(
        Section,
        part=st.lists(st.integers(1, 99), max_size=3).map(tuple),
        text=st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
        fields=st.lists(st.sampled_from(["From", "To", "X-Y", "Subject"]), min_size=1).map(tuple),
    ),
)
_ITEMS = st.one_of(
    st.builds(
        FetchItem,
        name=st.sampled_from(
            [
                "ENVELOPE",
                "FLAGS",
                "INTERNALDATE",
                "RFC822",
                "RFC822.HEADER",
                "RFC822.SIZE",
                "RFC822.TEXT",
                "BODY",
                "BODYSTRUCTURE",
                "UID",
            ]
        ),
    ),
    st.builds(
        FetchItem,
        name=st.just("BODY"),
        section=_SECTIONS,
        peek=st.booleans(),
        partial=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1)),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ITEMS, min_size=1, max_size=6))
def test_items_format_then_parse_round_trip(fetch_items: list[FetchItem]) -> None:
    wire = "(" + " ".join(str(item) for item in fetch_items) + ")"
    assert parse_fetch_items(Reader(wire.encode())) == tuple(fetch_items)


# Random MIME trees built by the stdlib's email.mime classes, compared with
# dovecot: BODYSTRUCTURE and a few sections of each.


def _generated_part(depth: int, rnd: random.Random) -> Message:
    choice = rnd.random()
    if depth < 3 and choice < 0.3:
        multipart = MIMEMultipart(rnd.choice(["mixed", "alternative", "related"]))
        for _ in range(rnd.randint(1, 3)):
            multipart.attach(_generated_part(depth + 1, rnd))
        return multipart
    if depth < 3 and choice < 0.4:
        inner = _generated_part(depth + 1, rnd)
        inner["Subject"] = f"inner {rnd.randint(0, 9)}"
        inner["From"] = "X <x@y.test>"
        return MIMEMessage(inner)
    if choice < 0.7:
        text = MIMEText(
            "hello\n" * rnd.randint(0, 5) + "caf\u00e9" * rnd.randint(0, 1),
            rnd.choice(["plain", "html"]),
            rnd.choice(["utf-8", "iso-8859-1"]),
        )
        if rnd.random() < 0.3:
            text["Content-Disposition"] = 'inline; filename="a b.txt"'
        if rnd.random() < 0.3:
            text["Content-Language"] = "en, fr"
        if rnd.random() < 0.3:
            text["Content-ID"] = f"<id{rnd.randint(0, 99)}@x.test>"
        return text
    attachment = MIMEApplication(rnd.randbytes(rnd.randint(0, 50)))
    attachment.add_header("Content-Disposition", "attachment", filename="f.bin")
    return attachment


def _generated_messages() -> list[bytes]:
    rnd = random.Random(20261125)
    found: list[bytes] = []
    for index in range(40):
        top = _generated_part(0, rnd)
        top["Subject"] = f"m{index}"
        top["From"] = '"A, B" <a@b.test>'
        top["To"] = "c@d.test, e@f.test"
        found.append(to_crlf(top.as_bytes()))
    return found


GENERATED = _generated_messages()


@pytest.fixture(scope="module")
def dovecot_generated() -> Iterator[imaplib.IMAP4]:
    with run_dovecot(GENERATED) as client:
        yield client


@pytest.mark.parametrize(
    "item", ["BODYSTRUCTURE", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]", "BODY.PEEK[2.1]"]
)
def test_generated_messages_match_dovecot(dovecot_generated: imaplib.IMAP4, item: str) -> None:
    for number, content in enumerate(GENERATED, 1):
        theirs = dovecot_item(dovecot_generated, number, item)
        ours = render_fetch(items(item.encode()), message(content))[0][1]
        assert normalize(ours) == normalize(theirs), (number, content)
