"""The POP3 server core and the multi-line framing, on bytes alone."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.cred import APOP, CramMD5, UsernamePassword, apop_digest, cram_md5_response
from torsion.mail import MessageInfo
from torsion.mail.pop3 import (
    LoginRequested,
    MessageUnstuffer,
    MessageWriter,
    POP3Limits,
    POP3ServerConnection,
    RetrieveRequested,
    State,
    STLSRequested,
    UpdateRequested,
)

DATE = datetime(2024, 1, 1, tzinfo=UTC)
MESSAGES = [
    MessageInfo(uid=uid, size=size, flags=frozenset(), internal_date=DATE)
    for uid, size in ((10, 100), (11, 200), (13, 300))
]


def make(**kwargs: object) -> POP3ServerConnection:
    kwargs.setdefault("plaintext_without_tls", True)
    kwargs.setdefault("auth_mechanisms", ("PLAIN", "LOGIN", "CRAM-MD5"))
    core = POP3ServerConnection(hostname="pop.test", **kwargs)  # type: ignore[arg-type]
    assert core.data_to_send().startswith(b"+OK POP3 server ready")
    return core


def say(core: POP3ServerConnection, data: bytes) -> list[str]:
    core.receive_data(data)
    return core.data_to_send().decode().split("\r\n")[:-1]


def logged_in(**kwargs: object) -> POP3ServerConnection:
    core = make(**kwargs)
    assert say(core, b"USER alice\r\nPASS pw\r\n") == ["+OK send PASS"]
    event = core.next_event()
    assert isinstance(event, LoginRequested)
    assert isinstance(event.credentials, UsernamePassword)
    assert (event.credentials.username, event.credentials.password) == ("alice", "pw")
    assert core.waiting
    core.login_accepted("alice", MESSAGES, uidvalidity=7)
    assert core.data_to_send() == b"+OK maildrop has 3 messages (600 octets)\r\n"
    assert core.state is State.TRANSACTION
    return core


def test_transaction_commands() -> None:
    core = logged_in()
    assert say(core, b"STAT\r\n") == ["+OK 3 600"]
    assert say(core, b"LIST\r\n") == ["+OK 3 messages", "1 100", "2 200", "3 300", "."]
    assert say(core, b"uidl 3\r\n") == ["+OK 3 7.13"]
    assert say(core, b"DELE 2\r\n") == ["+OK message 2 deleted"]
    assert say(core, b"LIST 2\r\n") == ["-ERR message already deleted"]
    assert say(core, b"UIDL\r\n") == ["+OK unique-id listing follows", "1 7.10", "3 7.13", "."]
    assert say(core, b"STAT\r\nLIST 4\r\nLIST x\r\nLIST 0\r\n") == [
        "+OK 2 400",
        "-ERR no such message",
        "-ERR not a message number",
        "-ERR no such message",
    ]
    assert say(core, b"RSET\r\n") == ["+OK 3 600"]
    assert say(core, b"NOOP\r\nUSER bob\r\n\x1b[2J\r\n") == [
        "+OK",
        "-ERR unknown command or not valid now: USER",
        "-ERR unknown command or not valid now: ?",
    ]
    assert say(core, b"DELE 1\r\nDELE 3\r\nQUIT\r\n") == [
        "+OK message 1 deleted",
        "+OK message 3 deleted",
    ]
    assert core.next_event() == UpdateRequested(uids=(10, 13))
    assert core.state is State.UPDATE
    core.update_done(True)
    assert core.data_to_send() == b"+OK bye\r\n"
    assert core.closing


def test_update_failure_is_a_temporary_error() -> None:
    core = logged_in()
    say(core, b"QUIT\r\n")
    assert core.next_event() == UpdateRequested(uids=())
    core.update_done(False)
    assert core.data_to_send().startswith(b"-ERR [SYS/TEMP]")
    assert core.closing


def test_retr_and_top_wait_for_the_body_and_hold_pipelined_commands() -> None:
    core = logged_in()
    assert say(core, b"RETR 2\r\nTOP 3 5\r\nNOOP\r\n") == []
    assert core.next_event() == RetrieveRequested(number=2, uid=11, size=200, body_lines=None)
    assert core.next_event() is None
    core.message_found()
    assert core.data_to_send() == b"+OK message follows\r\n"
    core.message_sent()
    assert core.next_event() == RetrieveRequested(number=3, uid=13, size=300, body_lines=5)
    core.message_failed()
    assert core.data_to_send().decode().split("\r\n")[:-1] == [
        "-ERR [SYS/TEMP] message cannot be read",
        "+OK",
    ]
    assert say(core, b"TOP 1\r\nTOP 1 -1\r\n") == [
        "-ERR TOP needs a message number and a line count",
        "-ERR TOP needs a message number and a line count",
    ]


def test_answer_out_of_turn_is_a_bug() -> None:
    core = make()
    with pytest.raises(RuntimeError, match="waits for none"):
        core.message_found()


def test_capabilities_by_state_and_tls() -> None:
    core = make(tls_available=True, plaintext_without_tls=False)
    capa = say(core, b"CAPA\r\n")
    assert capa[0] == "+OK Capability list follows"
    assert "STLS" in capa
    assert "USER" not in capa
    assert "SASL CRAM-MD5" in capa
    assert say(core, b"USER alice\r\nAUTH PLAIN\r\n") == [
        "-ERR [AUTH] plaintext login needs TLS first (STLS)",
        "-ERR [AUTH] plaintext mechanism needs TLS first (STLS)",
    ]
    # What follows STLS in clear is dropped (RFC 2595 section 4).
    assert say(core, b"STLS\r\nUSER injected\r\n") == ["+OK Begin TLS negotiation"]
    assert isinstance(core.next_event(), STLSRequested)
    core.receive_data(b"CAPA\r\n")
    assert core.data_to_send() == b""
    core.tls_started()
    capa = core.data_to_send().decode().split("\r\n")
    assert "STLS" not in capa
    assert "USER" in capa
    assert "SASL CRAM-MD5 PLAIN LOGIN" in capa
    assert say(core, b"STLS\r\n") == ["-ERR TLS already active"]
    assert say(core, b"PASS x\r\n") == ["-ERR USER first"]


def test_auth_plain_login_and_cram_md5() -> None:
    core = make()
    plain = base64.b64encode(b"\0alice\0pw").decode()
    assert say(core, f"AUTH PLAIN {plain}\r\n".encode()) == []
    event = core.next_event()
    assert isinstance(event, LoginRequested)
    assert isinstance(event.credentials, UsernamePassword)
    assert event.credentials.check_password("pw")
    core.login_refused()
    assert core.data_to_send() == b"-ERR [AUTH] authentication failed\r\n"

    assert say(core, b"AUTH LOGIN\r\n") == ["+ " + base64.b64encode(b"Username:").decode()]
    assert say(core, base64.b64encode(b"alice") + b"\r\n") == [
        "+ " + base64.b64encode(b"Password:").decode()
    ]
    assert say(core, base64.b64encode(b"pw") + b"\r\n") == []
    event = core.next_event()
    assert isinstance(event, LoginRequested)
    assert isinstance(event.credentials, UsernamePassword)
    assert event.credentials.username == "alice"
    core.login_refused()
    core.data_to_send()

    (challenge_line,) = say(core, b"AUTH CRAM-MD5\r\n")
    challenge = base64.b64decode(challenge_line[2:])
    assert challenge.startswith(b"<") and challenge.endswith(b"@pop.test>")  # noqa: PT018
    answer = f"alice {cram_md5_response('pw', challenge)}".encode()
    say(core, base64.b64encode(answer) + b"\r\n")
    event = core.next_event()
    assert isinstance(event, LoginRequested)
    assert isinstance(event.credentials, CramMD5)
    assert event.credentials.check_secret("pw")
    assert not event.credentials.check_secret("other")
    # The third failure ends the session.
    core.login_refused()
    assert core.data_to_send() == b"-ERR [AUTH] authentication failed; too many failures\r\n"
    assert core.closing


def test_auth_garbage_and_cancel() -> None:
    core = make()
    assert say(core, b"AUTH\r\n") == [
        "+OK SASL mechanisms follow",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
        ".",
    ]
    assert say(core, b"AUTH X-UNKNOWN\r\n") == ["-ERR unknown SASL mechanism"]
    assert say(core, b"AUTH PLAIN !!!\r\n") == ["-ERR AUTH response is not base64"]
    bad = base64.b64encode(b"bob\0alice\0pw").decode()
    assert say(core, f"AUTH PLAIN {bad}\r\n".encode()) == [
        "-ERR AUTH failed: acting as another user is not allowed"
    ]
    assert say(core, b"AUTH LOGIN\r\n*\r\n")[1] == "-ERR AUTH cancelled"
    assert say(core, b"AUTH PLAIN\r\n" + base64.b64encode(b"\xff\0\xfe") + b"\r\n")[1].startswith(
        "-ERR AUTH failed"
    )
    assert say(core, b"AUTH CRAM-MD5 abc\r\n") == ["-ERR CRAM-MD5 takes no initial response"]
    assert core.next_event() is None


def test_apop() -> None:
    timestamp = b"<1.2@pop.test>"
    core = POP3ServerConnection(hostname="pop.test", apop_timestamp=timestamp)
    assert core.data_to_send() == b"+OK POP3 server ready <1.2@pop.test>\r\n"
    digest = apop_digest("pw", timestamp)
    say(core, f"APOP alice {digest}\r\n".encode())
    event = core.next_event()
    assert isinstance(event, LoginRequested)
    assert isinstance(event.credentials, APOP)
    assert event.credentials.check_secret("pw")
    core.login_refused("[IN-USE] locked")
    assert core.data_to_send() == b"-ERR [IN-USE] locked\r\n"
    assert say(core, b"APOP alice short\r\n") == ["-ERR APOP needs a name and an MD5 digest"]
    assert say(make(), b"APOP alice " + b"0" * 32 + b"\r\n") == ["-ERR APOP not available"]


def test_quit_in_authorization_and_user_without_plaintext() -> None:
    core = make()
    assert say(core, b"QUIT\r\nNOOP\r\n") == ["+OK bye"]
    assert core.closing
    assert core.timeout is None


def test_limits() -> None:
    core = make(limits=POP3Limits(max_errors=3, max_commands=1000))
    assert say(core, b"X" * 300 + b"\r\n") == ["-ERR line too long"]
    # The over-long line may come in pieces; one reply for it.
    core.receive_data(b"Y" * 200)
    core.receive_data(b"Y" * 200)
    core.receive_data(b"Y" * 200 + b"\r\n")
    assert core.data_to_send() == b"-ERR line too long\r\n"
    assert say(core, b"BOGUS\r\n") == [
        "-ERR unknown command or not valid now: BOGUS; too many errors"
    ]
    assert core.closing

    core = make(limits=POP3Limits(max_commands=2))
    assert say(core, b"CAPA\r\nNOOP\r\nNOOP\r\n")[-1] == (
        "-ERR [SYS/TEMP] too many commands in one session"
    )
    core = logged_in()
    core.timed_out()
    assert core.data_to_send() == b"-ERR [SYS/TEMP] autologout: idle for too long\r\n"
    assert core.closing
    assert core.next_event() is None


def test_pipelined_input_beyond_the_bound_while_waiting_closes() -> None:
    core = logged_in()
    core.receive_data(b"RETR 1\r\n")
    assert core.waiting
    core.receive_data(b"NOOP\r\n" * 50_000)
    assert core.closing
    assert core.data_to_send().endswith(b"-ERR [SYS/TEMP] too much pipelined input\r\n")
    # The glue's late answer is of no use any more and changes nothing.
    core.message_found()
    assert core.data_to_send() == b""


def test_lost_connection_ends_everything() -> None:
    core = logged_in()
    core.receive_data(b"DELE 1\r\nQUIT")
    core.connection_lost()
    assert core.state is State.CLOSED
    core.receive_data(b"\r\n")
    assert core.next_event() is None


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="255"):
        POP3Limits(max_command_line=254)
    with pytest.raises(ValueError, match="positive"):
        POP3Limits(idle_timeout=0)
    with pytest.raises(ValueError, match="at least 1"):
        POP3Limits(max_errors=0)


# -- any chunking, any junk -----------------------------------------------------------

SESSION = (
    b"CAPA\r\nUSER alice\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\n"
    b"TOP 2 1\r\nDELE 3\r\nRSET\r\nDELE 1\r\nNOOP\r\nQUIT\r\n"
)


def drive(chunks: list[bytes]) -> tuple[bytes, list[object]]:
    core = POP3ServerConnection(hostname="pop.test", plaintext_without_tls=True)
    out = [core.data_to_send()]
    events: list[object] = []
    for chunk in chunks:
        core.receive_data(chunk)
        while True:
            out.append(core.data_to_send())
            event = core.next_event()
            if event is None:
                break
            # Credentials compare by identity: their repr stands for them.
            events.append(repr(event))
            if isinstance(event, LoginRequested):
                core.login_accepted("alice", MESSAGES, uidvalidity=7)
            elif isinstance(event, RetrieveRequested):
                core.message_found()
                core.message_sent()
            elif isinstance(event, UpdateRequested):
                core.update_done(True)
    return b"".join(out), events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_gives_the_same_replies(cuts: list[int]) -> None:
    assert drive(split(SESSION, cuts)) == drive([SESSION])


def test_whole_session_replies() -> None:
    out, events = drive([SESSION])
    assert out.endswith(b"+OK message 1 deleted\r\n+OK\r\n+OK bye\r\n")
    assert events[-1] == repr(UpdateRequested(uids=(10,)))


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_junk_never_raises(chunks: list[bytes]) -> None:
    out, _ = drive([b"USER a\r\nPASS b\r\n", *chunks])
    for line in out.split(b"\r\n"):
        assert len(line) < 400


@given(
    st.lists(
        st.sampled_from(
            [
                b"USER a",
                b"PASS b",
                b"AUTH PLAIN",
                b"AUTH LOGIN",
                b"*",
                b"=",
                b"STAT",
                b"RETR 1",
                b"TOP 1 0",
                b"DELE 1",
                b"APOP a b",
                b"STLS",
                b"\xff",
                b"LIST 9999999999",
                b"",
            ]
        ),
        max_size=30,
    )
)
def test_command_soup_never_raises(lines: list[bytes]) -> None:
    drive([b"\r\n".join(lines) + b"\r\n"])


# -- the multi-line framing ------------------------------------------------------------


def write_all(message: bytes, chunks: list[bytes], body_lines: int | None = None) -> bytes:
    writer = MessageWriter(body_lines)
    out = [writer.feed(chunk) for chunk in chunks]
    out.append(writer.finish())
    return b"".join(out)


def test_writer_stuffs_and_ends_lines() -> None:
    message = b"A: b\n\n.one\r\n..two\nthree"
    assert write_all(message, [message]) == b"A: b\r\n\r\n..one\r\n...two\r\nthree\r\n.\r\n"
    assert write_all(b"", [b""]) == b".\r\n"


def test_writer_top() -> None:
    message = b"A: b\r\nC: d\r\n\r\nl1\r\n.l2\r\nl3\r\n"
    assert write_all(message, [message], 0) == b"A: b\r\nC: d\r\n\r\n.\r\n"
    assert write_all(message, [message], 2) == b"A: b\r\nC: d\r\n\r\nl1\r\n..l2\r\n.\r\n"
    stuffed = message.replace(b"\n.l2", b"\n..l2")
    assert write_all(message, [message], 10) == stuffed + b".\r\n"
    assert write_all(message, [message]) == stuffed + b".\r\n"
    # No body at all: TOP sends the header.
    assert write_all(b"A: b\r\n", [b"A: b\r\n"], 3) == b"A: b\r\n.\r\n"


def test_writer_passes_a_huge_line_in_pieces() -> None:
    writer = MessageWriter()
    out = writer.feed(b"." + b"x" * 200_000)
    assert out.startswith(b"..x")
    assert len(out) > 100_000
    rest = writer.feed(b"y\r\nnext\r\n") + writer.finish()
    assert out + rest == b".." + b"x" * 200_000 + b"y\r\nnext\r\n.\r\n"


def unstuff(wire: bytes) -> bytes:
    reader = MessageUnstuffer()
    lines = wire.split(b"\r\n")
    out = []
    for line in lines:
        piece = reader.line(line)
        if piece is None:
            break
        out.append(piece)
    assert reader.finished
    return b"".join(out)


crlf_messages = st.lists(
    st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=30
).map(lambda lines: b"".join(line + b"\r\n" for line in lines))


@given(crlf_messages, st.lists(st.integers(min_value=0), max_size=20))
def test_writer_round_trips_in_any_chunking(message: bytes, cuts: list[int]) -> None:
    wire = write_all(message, split(message, cuts))
    assert wire == write_all(message, [message])
    assert unstuff(wire) == message


@given(crlf_messages, st.lists(st.integers(min_value=0), max_size=20), st.integers(0, 40))
def test_top_in_any_chunking(message: bytes, cuts: list[int], lines: int) -> None:
    assert write_all(message, split(message, cuts), lines) == write_all(message, [message], lines)
