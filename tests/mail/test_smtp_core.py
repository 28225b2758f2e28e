"""The ESMTP server core on bytes: replies, events, framing and limits."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.cred import CramMD5, UsernamePassword, cram_md5_response
from torsion.mail.smtp import (
    AuthReceived,
    EmailAddress,
    MessageReceived,
    RecipientReceived,
    SenderReceived,
    SMTPLimits,
    SMTPReplyError,
    SMTPServerConnection,
    StartTLSRequested,
    State,
)


def make(**kwargs: object) -> SMTPServerConnection:
    core = SMTPServerConnection(hostname="mx.test", **kwargs)  # type: ignore[arg-type]
    assert core.data_to_send() == b"220 mx.test ESMTP torsion\r\n"
    return core


def drive(
    core: SMTPServerConnection, data: bytes, *, refuse: dict[str, SMTPReplyError] | None = None
):
    """Feed ``data``, accept every event (or refuse by recipient), return replies and events."""
    refuse = refuse or {}
    core.receive_data(data)
    events = []
    while (event := core.next_event()) is not None:
        events.append(event)
        if isinstance(event, RecipientReceived) and str(event.recipient) in refuse:
            core.refuse(refuse[str(event.recipient)])
        elif isinstance(event, AuthReceived):
            core.accept_auth(event.credentials.username)
        elif isinstance(event, StartTLSRequested):
            pass
        else:
            core.accept()
    return core.data_to_send(), events


def codes(replies: bytes) -> list[str]:
    return [line[:3].decode() for line in replies.split(b"\r\n") if line and line[3:4] == b" "]


SESSION = (
    b"EHLO client.test\r\n"
    b"MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME\r\n"
    b"RCPT TO:<b@y.test>\r\n"
    b"RCPT TO:<c@y.test>\r\n"
    b"DATA\r\n"
    b"Subject: hi\r\n\r\n..dotted\r\nplain\r\n.\r\n"
    b"QUIT\r\n"
)


def test_whole_session_pipelined() -> None:
    core = make()
    replies, events = drive(core, SESSION)
    assert codes(replies) == ["250", "250", "250", "250", "354", "250", "221"]
    assert isinstance(events[0], SenderReceived)
    assert events[0].envelope.sender == EmailAddress("a", "x.test")
    assert events[0].envelope.body == "8BITMIME"
    assert events[0].envelope.declared_size == 100
    message = events[-1]
    assert isinstance(message, MessageReceived)
    assert message.data == b"Subject: hi\r\n\r\n.dotted\r\nplain\r\n"
    assert message.envelope.recipients == (
        EmailAddress("b", "y.test"),
        EmailAddress("c", "y.test"),
    )
    assert core.closing


def test_ehlo_lists_extensions() -> None:
    core = make(tls_available=True, auth_mechanisms=("PLAIN",))
    replies, _ = drive(core, b"EHLO c.test\r\n")
    lines = replies.decode().split("\r\n")
    assert lines[0] == "250-mx.test"
    for ext in ("PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"):
        assert f"250-{ext}" in lines
    assert "250-STARTTLS" in lines
    # AUTH only after TLS (RFC 4954 section 4).
    assert not any("AUTH" in line for line in lines)
    assert lines[-2] == "250 HELP"


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_any_chunking_gives_the_same_replies(cuts: list[int]) -> None:
    whole, whole_events = drive(make(), SESSION)
    core = make()
    replies = b""
    events: list[object] = []
    pos = 0
    for cut in cuts:
        chunk_replies, chunk_events = drive(core, SESSION[pos : pos + cut])
        replies += chunk_replies
        events += chunk_events
        pos += cut
    chunk_replies, chunk_events = drive(core, SESSION[pos:])
    assert replies + chunk_replies == whole
    assert events + chunk_events == whole_events


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_get_replies_never_exceptions(junk: bytes) -> None:
    core = make(auth_mechanisms=("PLAIN", "LOGIN", "CRAM-MD5"), auth_without_tls=True)
    drive(core, b"EHLO c.test\r\n" + junk + b"\r\nRSET\r\n")
    assert core.data_to_send() == b""


def test_one_byte_at_a_time() -> None:
    core = make()
    replies = b""
    events = []
    for i in range(len(SESSION)):
        r, e = drive(core, SESSION[i : i + 1])
        replies += r
        events += e
    assert replies == drive(make(), SESSION)[0]
    assert events[-1].data == b"Subject: hi\r\n\r\n.dotted\r\nplain\r\n"


def test_replies_wait_for_the_answer_in_order() -> None:
    core = make()
    core.receive_data(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nNOOP\r\n")
    assert core.data_to_send().startswith(b"250-mx.test")
    assert isinstance(core.next_event(), SenderReceived)
    assert core.waiting
    assert core.next_event() is None  # RCPT waits for the sender's answer
    core.accept()
    assert core.data_to_send() == b"250 2.1.0 Sender OK\r\n"
    event = core.next_event()
    assert isinstance(event, RecipientReceived)
    core.refuse(SMTPReplyError(550, "5.1.1", "no such user"))
    assert core.data_to_send() == b"550 5.1.1 no such user\r\n250 2.0.0 OK\r\n"


def test_message_waits_for_storage() -> None:
    core = make()
    drive(core, b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    core.receive_data(b"hello\r\n.\r\nQUIT\r\n")
    event = core.next_event()
    assert isinstance(event, MessageReceived)
    assert event.envelope.sender is None
    assert core.data_to_send() == b""  # no 250 before the delivery says it is stored
    core.refuse(SMTPReplyError(452, "4.3.1", "disk full"))
    assert core.data_to_send() == b"452 4.3.1 disk full\r\n221 2.0.0 mx.test Bye\r\n"


def test_sequence_errors() -> None:
    core = make()
    replies, _ = drive(
        core,
        b"MAIL FROM:<a@x.test>\r\nHELO c\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
        b"MAIL FROM:<a@x.test>\r\nMAIL FROM:<a@x.test>\r\nDATA\r\nBDAT 10 LAST\r\nFOO\r\n",
    )
    assert replies.decode().split("\r\n")[:-1] == [
        "503 5.5.1 Send EHLO or HELO first",
        "250 mx.test",
        "503 5.5.1 Need MAIL before RCPT",
        "503 5.5.1 Need MAIL before DATA",
        "250 2.1.0 Sender OK",
        "503 5.5.1 Nested MAIL command",
        "554 5.5.1 No valid recipients",
        "502 5.5.1 BDAT not implemented; use DATA",
        "500 5.5.2 Command unrecognized",
    ]


def test_rset_noop_vrfy_help_expn() -> None:
    core = make()
    replies, _ = drive(
        core,
        b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRSET\r\nRCPT TO:<b@y.test>\r\nNOOP x\r\n"
        b"VRFY bob\r\nEXPN list\r\nHELP\r\n",
    )
    assert codes(replies) == ["250", "250", "250", "503", "250", "252", "502", "214"]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"MAIL FROM:<a@x.test> SIZE=99999999999", b"552 5.3.4"),
        (b"MAIL FROM:<a@x.test> SIZE=abc", b"501 5.5.4"),
        (b"MAIL FROM:<a@x.test> BODY=BINARYMIME", b"501 5.5.4"),
        (b"MAIL FROM:<a@x.test> FOO=bar", b"555 5.5.4"),
        (b"MAIL FROM:a@x.test", b"501 5.1.7"),
        (b"MAIL FROM:<a@@x.test>", b"501 5.1.7"),
        (b"MAIL TO:<a@x.test>", b"501 5.5.4"),
        ("MAIL FROM:<jos\u00e9@x.test>".encode(), b"553 5.6.7"),
        (b"MAIL FROM:<\xff@x.test>", b"500 5.5.2"),
        (b"MAIL FROM:<a@x.test>\x00", b"500 5.5.2"),
    ],
)
def test_mail_from_refusals(command: bytes, reply: bytes) -> None:
    core = make(limits=SMTPLimits(max_message_size=1000))
    drive(core, b"EHLO c\r\n")
    replies, events = drive(core, command + b"\r\n")
    assert replies.startswith(reply), replies
    assert events == []


def test_smtputf8_addresses() -> None:
    core = make()
    replies, events = drive(
        core,
        "EHLO c\r\nMAIL FROM:<jos\u00e9@b\u00fccher.test> SMTPUTF8\r\n"
        "RCPT TO:<\u00fc@x.test>\r\n".encode(),
    )
    assert codes(replies) == ["250", "250", "250"]
    assert events[0].envelope.smtputf8
    assert events[1].recipient == EmailAddress("\u00fc", "x.test")


def test_recipient_limit_and_postmaster() -> None:
    core = make(limits=SMTPLimits(max_recipients=2))
    replies, events = drive(
        core,
        b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<@r1,@r2:b@y.test>\r\n"
        b"RCPT TO:<c@y.test>\r\n",
    )
    assert replies.split(b"\r\n")[-2] == b"452 4.5.3 Too many recipients"
    assert events[1].recipient == EmailAddress("Postmaster", "")
    # The source route is dropped (RFC 5321 appendix C).
    assert events[2].recipient == EmailAddress("b", "y.test")


def test_declared_and_actual_size() -> None:
    core = make(limits=SMTPLimits(max_message_size=1000))
    body = b"x" * 98 + b"\r\n"
    replies, events = drive(
        core,
        b"EHLO c\r\nMAIL FROM:<a@x.test> SIZE=500\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
        + body * 20
        + b".\r\nNOOP\r\n",
    )
    assert replies.split(b"\r\n")[-3:] == [
        b"552 5.3.4 Message size exceeds fixed maximum message size",
        b"250 2.0.0 OK",
        b"",
    ]
    assert not any(isinstance(e, MessageReceived) for e in events)
    assert core.state is State.READY


@pytest.mark.parametrize(
    "payload",
    [
        # SMTP smuggling (CVE-2023-51766 and kin): none of these end the data.
        b"a\r\n\n.\n\r\nMAIL FROM:<evil@x.test>\r\n",
        b"a\r\n\n.\r\nMAIL FROM:<evil@x.test>\r\n",
        b"a\r\n.\n\r\nMAIL FROM:<evil@x.test>\r\n",
        b"a\r\r.\r\rMAIL FROM:<evil@x.test>\r\n",
        b"a\r\n\r.\r\nMAIL FROM:<evil@x.test>\r\n",
        b"a\n.\nMAIL FROM:<evil@x.test>\r\n",
    ],
)
def test_smuggling_does_not_split_a_message(payload: bytes) -> None:
    for policy in ("reject", "accept"):
        core = make(limits=SMTPLimits(bare_newlines=policy))  # type: ignore[arg-type]
        drive(core, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        replies, events = drive(core, payload)
        assert replies == b""
        assert events == []
        assert core.state is State.DATA
        replies, events = drive(core, b"tail\r\n.\r\n")
        if policy == "reject":
            assert replies.startswith(b"554 5.6.0"), replies
            assert events == []
        else:
            assert replies == b"250 2.0.0 OK: message accepted\r\n"
            assert len(events) == 1
            assert events[0].data == payload.replace(b"\r\n.", b"\r\n") + b"tail\r\n"


def test_bare_lf_command_refused() -> None:
    core = make()
    replies, _ = drive(core, b"EHLO c\nNOOP\r\n")
    assert replies == (b"500 5.5.2 Bare LF received; lines must end with CRLF\r\n250 2.0.0 OK\r\n")


def test_overlong_command_line() -> None:
    core = make()
    replies, _ = drive(core, b"NOOP " + b"x" * 600)
    assert replies == b""
    replies, _ = drive(core, b"x" * 5000)
    assert replies == b""
    assert len(core._buffer) < 1024  # dropped as it came
    replies, _ = drive(core, b"\r\nNOOP\r\n")
    assert replies == b"500 5.5.2 Line too long\r\n250 2.0.0 OK\r\n"
    # 512 octets with the CRLF is allowed (RFC 5321 4.5.3.1.4).
    replies, _ = drive(core, b"NOOP " + b"x" * 505 + b"\r\n")
    assert replies == b"250 2.0.0 OK\r\n"


def test_overlong_text_line() -> None:
    core = make()
    drive(core, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    replies, events = drive(core, b"x" * 998 + b"\r\n" + b"y" * 999 + b"\r\n.\r\n")
    assert replies.startswith(b"554 5.6.0 Message has a line over 1000 octets")
    assert events == []
    # A larger limit takes it, even in pieces.
    core = make(limits=SMTPLimits(max_text_line=4000))
    drive(core, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    for piece in (b"y" * 1500, b"y" * 1500 + b"\r\n.\r\n"):
        replies, events = drive(core, piece)
    assert replies == b"250 2.0.0 OK: message accepted\r\n"
    assert events[0].data == b"y" * 3000 + b"\r\n"


def test_too_many_errors_closes() -> None:
    core = make(limits=SMTPLimits(max_errors=3))
    replies, _ = drive(core, b"A\r\nB\r\nC\r\nD\r\n")
    assert replies.split(b"\r\n")[-2] == b"421 4.7.0 mx.test Too many errors, closing connection"
    assert codes(replies) == ["500", "500", "500", "421"]
    assert core.closing


def test_too_many_commands_closes() -> None:
    core = make(limits=SMTPLimits(max_commands=3))
    replies, _ = drive(core, b"NOOP\r\n" * 5)
    assert codes(replies) == ["250", "250", "250", "421"]


def test_timeouts_by_state() -> None:
    core = make(limits=SMTPLimits(command_timeout=7, data_timeout=9))
    assert core.timeout == 7
    core.receive_data(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\n")
    assert core.timeout is None  # the server owes an answer
    assert isinstance(core.next_event(), SenderReceived)
    core.accept()
    drive(core, b"RCPT TO:<b@y.test>\r\nDATA\r\n")
    assert core.timeout == 9
    core.data_to_send()
    core.timed_out()
    assert core.data_to_send() == b"421 4.4.2 mx.test Timeout exceeded, closing connection\r\n"
    assert core.closing
    assert core.next_event() is None


def test_starttls_drops_injected_commands() -> None:
    core = make(tls_available=True)
    replies, events = drive(core, b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert replies.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert events == [StartTLSRequested()]
    assert core.waiting
    # Bytes after the event come through TLS: held until the handshake ends.
    replies, events = drive(core, b"RCPT TO:<a@x.test>\r\n")
    assert (replies, events) == (b"", [])
    core.tls_started()
    assert core.tls_active
    assert core.helo is None
    assert core.data_to_send() == b"503 5.5.1 Need MAIL before RCPT\r\n"
    replies, events = drive(core, b"MAIL FROM:<a@x.test>\r\nEHLO c\r\n")
    assert replies.startswith(b"503 5.5.1 Send EHLO or HELO first\r\n250-mx.test")
    assert b"STARTTLS" not in replies
    replies, _ = drive(core, b"STARTTLS\r\n")
    assert replies == b"503 5.5.1 TLS already active\r\n"


def test_starttls_not_available() -> None:
    core = make()
    assert drive(core, b"EHLO c\r\nSTARTTLS\r\n")[0].endswith(
        b"502 5.5.1 STARTTLS not available\r\n"
    )


def b64(text: bytes) -> bytes:
    return base64.b64encode(text)


def credentials_of(events: list[object]) -> tuple[str, str, str]:
    (event,) = events
    assert isinstance(event, AuthReceived)
    assert isinstance(event.credentials, UsernamePassword)
    return event.mechanism, event.credentials.username, event.credentials.password


def test_auth_needs_tls_unless_configured() -> None:
    core = make(auth_mechanisms=("PLAIN",))
    replies, events = drive(core, b"EHLO c\r\nAUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    assert replies.endswith(
        b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    )
    assert events == []


def test_auth_plain_initial_and_prompted() -> None:
    core = make(auth_mechanisms=("PLAIN",), tls_active=True)
    replies, events = drive(core, b"EHLO c\r\nAUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    assert replies.endswith(b"235 2.7.0 Authentication successful\r\n")
    assert credentials_of(events) == ("PLAIN", "u", "p")
    assert core.authenticated_as == "u"
    replies, _ = drive(core, b"AUTH PLAIN\r\n")
    assert replies == b"503 5.5.1 Already authenticated\r\n"

    core = make(auth_mechanisms=("PLAIN",), tls_active=True)
    replies, _ = drive(core, b"EHLO c\r\nAUTH PLAIN\r\n")
    assert replies.endswith(b"334 \r\n")
    replies, events = drive(core, b64(b"u\0u\0p") + b"\r\n")
    assert replies == b"235 2.7.0 Authentication successful\r\n"


def test_auth_login_and_failure() -> None:
    core = make(auth_mechanisms=("LOGIN",), auth_without_tls=True)
    replies, _ = drive(core, b"EHLO c\r\nAUTH LOGIN\r\n")
    assert replies.endswith(b"334 VXNlcm5hbWU6\r\n")
    core.receive_data(b64(b"user") + b"\r\n")
    assert core.data_to_send() == b"334 UGFzc3dvcmQ6\r\n"
    core.receive_data(b64(b"secret") + b"\r\n")
    assert credentials_of([core.next_event()]) == ("LOGIN", "user", "secret")
    core.refuse(SMTPReplyError(535, "5.7.8", "Authentication credentials invalid"))
    assert core.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n"
    assert core.authenticated_as is None
    assert core.state is State.READY


def test_auth_cram_md5() -> None:
    core = make(auth_mechanisms=("CRAM-MD5",), auth_without_tls=True)
    replies, _ = drive(core, b"EHLO c\r\nAUTH CRAM-MD5\r\n")
    challenge = base64.b64decode(replies.split(b"\r\n")[-2][4:])
    assert challenge.startswith(b"<")
    assert challenge.endswith(b"@mx.test>")
    answer = b"alice " + cram_md5_response("pw", challenge).encode()
    core.receive_data(b64(answer) + b"\r\n")
    event = core.next_event()
    assert isinstance(event, AuthReceived)
    assert isinstance(event.credentials, CramMD5)
    assert event.credentials.check_secret("pw")
    assert not event.credentials.check_secret("other")


@pytest.mark.parametrize(
    ("lines", "reply"),
    [
        ([b"AUTH PLAIN !!!notbase64"], b"501 5.5.2 Cannot decode response"),
        ([b"AUTH PLAIN " + b64(b"no-nuls")], b"501 5.5.2 Malformed PLAIN response"),
        ([b"AUTH PLAIN " + b64(b"other\0u\0p")], b"501 5.5.2 Malformed PLAIN response"),
        ([b"AUTH PLAIN", b"*"], b"501 5.0.0 Authentication cancelled"),
        ([b"AUTH LOGIN", b"*"], b"501 5.0.0 Authentication cancelled"),
        ([b"AUTH CRAM-MD5", b64(b"nodigest")], b"501 5.5.2 Malformed CRAM-MD5 response"),
        ([b"AUTH CRAM-MD5 " + b64(b"x")], b"501 5.5.2 CRAM-MD5 takes no initial response"),
        ([b"AUTH GSSAPI"], b"504 5.5.4 Unrecognized authentication type"),
        ([b"AUTH PLAIN " + b64(b"\0\xff\0p")], b"501 5.5.2 Cannot decode response"),
    ],
)
def test_auth_garbage(lines: list[bytes], reply: bytes) -> None:
    core = make(auth_mechanisms=("PLAIN", "LOGIN", "CRAM-MD5"), auth_without_tls=True)
    drive(core, b"EHLO c\r\n")
    replies, events = drive(core, b"".join(line + b"\r\n" for line in lines))
    assert replies.split(b"\r\n")[-2].startswith(reply), replies
    assert events == []
    assert core.state is State.READY
    assert drive(core, b"NOOP\r\n")[0] == b"250 2.0.0 OK\r\n"


def test_require_auth_and_mail_auth_parameter() -> None:
    core = make(auth_mechanisms=("PLAIN",), tls_active=True, require_auth=True)
    replies, _ = drive(core, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\n")
    assert replies.endswith(b"530 5.7.0 Authentication required\r\n")
    drive(core, b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
    replies, events = drive(core, b"MAIL FROM:<a@x.test> AUTH=u+2Bx@x.test\r\n")
    assert replies == b"250 2.1.0 Sender OK\r\n"
    assert events[0].envelope.auth == "u+x@x.test"


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="512"):
        SMTPLimits(max_command_line=100)
    with pytest.raises(ValueError, match="1000"):
        SMTPLimits(max_text_line=80)
    with pytest.raises(ValueError, match="unknown AUTH"):
        SMTPServerConnection(hostname="h", auth_mechanisms=("NTLM",))
    with pytest.raises(ValueError, match="match"):
        SMTPReplyError(550, "4.1.1", "x")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        SMTPReplyError(250, "2.0.0", "x")
