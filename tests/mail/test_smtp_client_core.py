"""The SMTP client's sans-IO core: reply parsing and the session's machine."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.mail.smtp._client_core import (
    Capabilities,
    ClientSession,
    ClientStartTLS,
    ClientWrite,
    DeliveryStatus,
    Reply,
    ReplyParser,
    SMTPClientError,
    TLSMode,
    dot_stuff,
)

EHLO_PIPE = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
EHLO_PLAIN = b"250-mx.test\r\n250 SIZE\r\n"


def written(events: list[ClientWrite | ClientStartTLS]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ClientWrite))


def session(**kwargs: object) -> ClientSession:
    options: dict[str, object] = {
        "helo": "client.test",
        "sender": "a@client.test",
        "recipients": ["b@mx.test", "c@mx.test"],
        "message": b"Subject: hi\n\n.dot\nbody\n",
        "tls": TLSMode.NONE,
    }
    options.update(kwargs)
    return ClientSession(**options)  # type: ignore[arg-type]


# -- replies -----------------------------------------------------------------


def test_multi_line_reply_with_enhanced_codes() -> None:
    parser = ReplyParser()
    replies = parser.receive_data(b"250-2.1.0 first\r\n250 2.1.0 second\r\n")
    assert replies == [Reply(code=250, lines=("first", "second"), enhanced="2.1.0")]
    assert str(replies[0]) == "250 2.1.0 first\nsecond"


def test_replies_fed_one_byte_at_a_time() -> None:
    data = b"220 hello\r\n250-a\r\n250 b\r\n550 5.1.1 no\r\n"
    parser = ReplyParser()
    replies: list[Reply] = []
    for i in range(len(data)):
        replies.extend(parser.receive_data(data[i : i + 1]))
    assert replies == ReplyParser().receive_data(data)
    assert [r.code for r in replies] == [220, 250, 550]
    assert replies[2].enhanced == "5.1.1"


def test_enhanced_code_of_another_class_is_text() -> None:
    (reply,) = ReplyParser().receive_data(b"250 5.1.1 odd\r\n")
    assert reply.enhanced == ""
    assert reply.text == "5.1.1 odd"


def test_bare_code_and_bare_lf() -> None:
    assert ReplyParser().receive_data(b"250\n") == [Reply(code=250, lines=("",))]


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"25x ok\r\n",
        b"250_ok\r\n",
        b"999 no\r\n",
        b"250-a\r\n251 b\r\n",
    ],
)
def test_bad_replies_raise(data: bytes) -> None:
    with pytest.raises(SMTPClientError):
        ReplyParser().receive_data(data)


def test_reply_lengths_and_counts_are_bounded() -> None:
    with pytest.raises(SMTPClientError, match="too long"):
        ReplyParser(max_line=100).receive_data(b"250 " + b"x" * 200)
    with pytest.raises(SMTPClientError, match="too many lines"):
        ReplyParser(max_lines=3).receive_data(b"250-a\r\n" * 4)


@given(st.binary(max_size=300))
def test_any_bytes_give_replies_or_an_smtp_error(data: bytes) -> None:
    try:
        replies = ReplyParser(max_line=64, max_lines=4).receive_data(data)
    except SMTPClientError:
        return
    for reply in replies:
        assert 200 <= reply.code <= 599
        assert 1 <= len(reply.lines) <= 4


def test_capabilities() -> None:
    (reply,) = ReplyParser().receive_data(
        b"250-mx.test greets\r\n250-size 5000\r\n250-AUTH plain CRAM-MD5\r\n250 STARTTLS\r\n"
    )
    caps = Capabilities.from_reply(reply)
    assert caps.size_limit == 5000
    assert "starttls" in caps
    assert "PIPELINING" not in caps
    assert caps.auth_mechanisms == {"PLAIN", "CRAM-MD5"}
    assert Capabilities().size_limit is None


# -- dot-stuffing ------------------------------------------------------------


def test_dot_stuffing_and_line_ends() -> None:
    assert dot_stuff(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"
    assert dot_stuff(b".\n") == b"..\r\n.\r\n"


@given(st.lists(st.binary().filter(lambda b: b"\r" not in b and b"\n" not in b), max_size=10))
def test_dot_stuffing_round_trips(lines: list[bytes]) -> None:
    wire = dot_stuff(b"".join(line + b"\n" for line in lines))
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    unstuffed = [line[1:] if line.startswith(b".") else line for line in wire.split(b"\r\n")[:-2]]
    assert unstuffed == lines


# -- the session -------------------------------------------------------------


def test_pipelined_transaction() -> None:
    s = session()
    assert written(s.receive_data(b"220 mx.test ESMTP\r\n")) == b"EHLO client.test\r\n"
    out = written(s.receive_data(EHLO_PIPE))
    size = len(s.message)
    assert out == (
        f"MAIL FROM:<a@client.test> SIZE={size}\r\n".encode()
        + b"RCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n"
    )
    assert s.timeout == 300
    assert s.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n") == []
    out = written(s.receive_data(b"354 go\r\n"))
    assert out == b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n"
    assert s.timeout == 600
    assert not s.result_known
    assert written(s.receive_data(b"250 2.0.0 queued\r\n")) == b"QUIT\r\n"
    assert s.result is not None
    (accepted,) = s.result.accepted
    assert accepted.recipient == "b@mx.test"
    assert accepted.reply.enhanced == "2.0.0"
    (refused,) = s.result.refused
    assert refused.recipient == "c@mx.test"
    assert refused.reply.code == 550
    assert [s.done] == [False]
    s.receive_data(b"221 bye\r\n")
    assert s.done
    assert s.error is None


def test_one_command_at_a_time_without_pipelining() -> None:
    s = session(message=b"x\n")
    s.receive_data(b"220 hi\r\n")
    assert written(s.receive_data(EHLO_PLAIN)) == b"MAIL FROM:<a@client.test> SIZE=2\r\n"
    assert written(s.receive_data(b"250 ok\r\n")) == b"RCPT TO:<b@mx.test>\r\n"
    assert written(s.receive_data(b"450 4.2.1 busy\r\n")) == b"RCPT TO:<c@mx.test>\r\n"
    assert written(s.receive_data(b"251 forwarded\r\n")) == b"DATA\r\n"
    assert s.timeout == 120
    assert written(s.receive_data(b"354 go\r\n")) == b"x\r\n.\r\n"
    assert written(s.receive_data(b"250 ok\r\n")) == b"QUIT\r\n"
    assert s.result is not None
    statuses = [o.status for o in s.result.outcomes]
    assert statuses == [DeliveryStatus.TEMPORARY, DeliveryStatus.ACCEPTED]


def test_no_data_when_every_recipient_is_refused() -> None:
    s = session(recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PLAIN)
    s.receive_data(b"250 ok\r\n")
    assert written(s.receive_data(b"550 no\r\n")) == b"QUIT\r\n"
    assert s.result is not None
    assert [o.status for o in s.result.outcomes] == [DeliveryStatus.REFUSED]


def test_pipelined_data_accepted_with_no_recipient_sends_an_empty_message() -> None:
    s = session(recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PIPE)
    assert written(s.receive_data(b"250 ok\r\n550 no\r\n354 go\r\n")) == b".\r\n"
    assert written(s.receive_data(b"554 no valid recipients\r\n")) == b"QUIT\r\n"
    assert s.result is not None
    assert s.result.refused[0].reply.code == 550


def test_refused_sender_refuses_everyone() -> None:
    s = session()
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PLAIN)
    assert written(s.receive_data(b"451 4.3.0 try later\r\n")) == b"QUIT\r\n"
    assert s.result is not None
    assert len(s.result.temporary) == 2
    s = session()
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PIPE)
    s.receive_data(b"553 bad sender\r\n503 no\r\n503 no\r\n")
    assert written(s.receive_data(b"503 no\r\n")) == b"QUIT\r\n"
    assert s.result is not None
    assert [o.reply.code for o in s.result.refused] == [553, 553]


def test_data_refused_after_the_message() -> None:
    s = session(recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PIPE)
    s.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    s.receive_data(b"452 4.3.1 disk full\r\n")
    assert s.result is not None
    assert s.result.temporary[0].reply.enhanced == "4.3.1"


def test_size_over_the_servers_limit_is_refused_before_mail() -> None:
    s = session(message=b"x" * 2000)
    s.receive_data(b"220 hi\r\n")
    assert written(s.receive_data(EHLO_PIPE)) == b"QUIT\r\n"
    assert s.result is not None
    assert {o.reply.code for o in s.result.refused} == {552}


def test_8bit_and_utf8_parameters() -> None:
    s = session(message="Subject: é\n\nü\n".encode(), recipients=["ü@mx.test"])
    s.receive_data(b"220 hi\r\n")
    out = written(s.receive_data(b"250-mx\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"))
    assert out == b"MAIL FROM:<a@client.test> BODY=8BITMIME SMTPUTF8\r\n"
    s = session(message=b"\xff\n")
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PLAIN)
    assert s.result is not None
    assert s.result.refused[0].reply.enhanced == "5.6.3"
    s = session(recipients=["ü@mx.test"])
    s.receive_data(b"220 hi\r\n")
    s.receive_data(b"250-mx\r\n250 8BITMIME\r\n")
    assert s.result is not None
    assert s.result.refused[0].reply.enhanced == "5.6.7"


def test_helo_fallback() -> None:
    s = session(recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    assert written(s.receive_data(b"502 no EHLO\r\n")) == b"HELO client.test\r\n"
    assert written(s.receive_data(b"250 hi\r\n")) == b"MAIL FROM:<a@client.test>\r\n"


def test_refused_greeting_fails_the_session() -> None:
    s = session()
    assert s.receive_data(b"554 5.3.2 go away\r\n") == []
    assert s.done
    assert s.error is not None
    assert s.error.permanent
    assert s.error.reply is not None
    assert s.error.reply.code == 554


def test_garbage_from_the_server_fails_the_session() -> None:
    s = session()
    s.receive_data(b"hello there\r\n")
    assert s.error is not None
    assert not s.error.permanent


def test_starttls_then_ehlo_again() -> None:
    s = session(tls=TLSMode.REQUIRED)
    s.receive_data(b"220 hi\r\n")
    assert written(s.receive_data(b"250-mx\r\n250 STARTTLS\r\n")) == b"STARTTLS\r\n"
    assert s.receive_data(b"220 go ahead\r\n") == [ClientStartTLS()]
    assert written(s.tls_started()) == b"EHLO client.test\r\n"
    assert s.tls_active
    out = written(s.receive_data(b"250-mx\r\n250 STARTTLS\r\n"))
    assert out.startswith(b"MAIL FROM:")


def test_required_tls_without_starttls_fails() -> None:
    s = session(tls=TLSMode.REQUIRED)
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PLAIN)
    assert s.error is not None
    assert "STARTTLS" in str(s.error)


def test_opportunistic_tls_goes_on_without_it() -> None:
    s = session(tls=TLSMode.OPPORTUNISTIC)
    s.receive_data(b"220 hi\r\n")
    assert written(s.receive_data(EHLO_PLAIN)).startswith(b"MAIL FROM:")
    s = session(tls=TLSMode.OPPORTUNISTIC)
    s.receive_data(b"220 hi\r\n")
    s.receive_data(b"250-mx\r\n250 STARTTLS\r\n")
    assert written(s.receive_data(b"454 4.7.0 not now\r\n")).startswith(b"MAIL FROM:")


def test_auth_plain_needs_tls() -> None:
    s = session(auth=("u", "p"))
    s.receive_data(b"220 hi\r\n")
    s.receive_data(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n")
    assert s.error is not None
    assert "need TLS" in str(s.error)


def test_auth_plain_when_allowed() -> None:
    s = session(auth=("u", "p"), allow_plaintext_auth=True)
    s.receive_data(b"220 hi\r\n")
    out = written(s.receive_data(b"250-mx\r\n250 AUTH PLAIN LOGIN\r\n"))
    assert out == b"AUTH PLAIN " + base64.b64encode(b"\0u\0p") + b"\r\n"
    assert written(s.receive_data(b"235 ok\r\n")).startswith(b"MAIL FROM:")


def test_auth_login() -> None:
    s = session(auth=("u", "p"), tls_active=True)
    s.receive_data(b"220 hi\r\n")
    assert written(s.receive_data(b"250-mx\r\n250 AUTH LOGIN\r\n")) == b"AUTH LOGIN\r\n"
    assert written(s.receive_data(b"334 VXNlcm5hbWU6\r\n")) == b"dQ==\r\n"
    assert written(s.receive_data(b"334 UGFzc3dvcmQ6\r\n")) == b"cA==\r\n"
    assert written(s.receive_data(b"235 ok\r\n")).startswith(b"MAIL FROM:")


def test_auth_cram_md5_is_preferred_and_allowed_in_clear() -> None:
    s = session(auth=("user", "secret"))
    s.receive_data(b"220 hi\r\n")
    out = written(s.receive_data(b"250-mx\r\n250 AUTH PLAIN CRAM-MD5\r\n"))
    assert out == b"AUTH CRAM-MD5\r\n"
    challenge = b"<1.2@mx.test>"
    out = written(s.receive_data(b"334 " + base64.b64encode(challenge) + b"\r\n"))
    digest = hmac.new(b"secret", challenge, hashlib.md5).hexdigest()
    assert base64.b64decode(out.strip()) == f"user {digest}".encode()


def test_auth_refused_fails_the_session() -> None:
    s = session(auth=("u", "p"), tls_active=True)
    s.receive_data(b"220 hi\r\n")
    s.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    s.receive_data(b"535 5.7.8 bad credentials\r\n")
    assert s.error is not None
    assert s.error.permanent


def test_auth_without_offer_fails() -> None:
    s = session(auth=("u", "p"), tls_active=True)
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PLAIN)
    assert s.error is not None
    assert "does not offer AUTH" in str(s.error)


def test_connection_lost_and_timeout() -> None:
    s = session()
    s.receive_data(b"220 hi\r\n")
    s.connection_lost()
    assert s.error is not None
    assert s.done
    s = session()
    s.timed_out()
    assert s.error is not None
    assert "300" in str(s.error)


def test_lost_after_the_outcome_keeps_it() -> None:
    s = session(recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    s.receive_data(EHLO_PIPE)
    s.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
    s.connection_lost()
    assert s.error is None
    assert s.result is not None
    assert s.result.accepted


@pytest.mark.parametrize(
    ("field", "value"),
    [("sender", "a b@x"), ("recipients", ["<x>"]), ("recipients", []), ("helo", "a b")],
)
def test_bad_arguments(field: str, value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies
        session(**{field: value})


def test_utf8_header_says_smtputf8_where_offered() -> None:
    message = "Subject: é\n\nbody\n".encode()
    s = session(message=message, recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    out = written(s.receive_data(b"250-mx\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"))
    assert out == b"MAIL FROM:<a@client.test> BODY=8BITMIME SMTPUTF8\r\n"
    s = session(message=message, recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    out = written(s.receive_data(b"250-mx\r\n250 8BITMIME\r\n"))
    assert out == b"MAIL FROM:<a@client.test> BODY=8BITMIME\r\n"
    # 8-bit data in the body alone needs no SMTPUTF8.
    s = session(message="Subject: e\n\nbödy\n".encode(), recipients=["b@mx.test"])
    s.receive_data(b"220 hi\r\n")
    out = written(s.receive_data(b"250-mx\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"))
    assert out == b"MAIL FROM:<a@client.test> BODY=8BITMIME\r\n"


REPLY_LINES = st.sampled_from(
    [
        b"220 hi\r\n",
        b"250 ok\r\n",
        b"250-mx\r\n",
        b"250-PIPELINING\r\n",
        b"250-STARTTLS\r\n",
        b"250-AUTH PLAIN LOGIN CRAM-MD5\r\n",
        b"250 SIZE 10\r\n",
        b"235 ok\r\n",
        b"334 dGVzdA==\r\n",
        b"334 !!\r\n",
        b"354 go\r\n",
        b"421 bye\r\n",
        b"450 later\r\n",
        b"550 5.1.1 no\r\n",
        b"garbage\r\n",
        b"\r\n",
    ]
)


@given(st.lists(REPLY_LINES, max_size=30), st.sampled_from(list(TLSMode)), st.booleans())
def test_any_server_replies_end_in_a_result_an_error_or_a_wait(
    lines: list[bytes], tls: TLSMode, auth: bool
) -> None:
    s = session(tls=tls, auth=("u", "p") if auth else None, tls_active=tls is TLSMode.NONE)
    for line in lines:
        for event in s.receive_data(line):
            if isinstance(event, ClientStartTLS):
                s.tls_started()
    # Never both; and a session that is over has one of them.
    assert s.result is None or s.error is None
    if s.done:
        assert s.result_known
    s.connection_lost()
    assert s.result_known
