"""The portal: checkers chosen by type, the realm, the limiter's delays, the audit log."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torsion.cred import (
    ANONYMOUS,
    Anonymous,
    AnonymousChecker,
    BearerToken,
    CramMD5,
    HTTPDigest,
    InMemoryChecker,
    InMemoryTokenChecker,
    Login,
    LoginLimiter,
    Portal,
    SSHPublicKey,
    UnauthorizedLogin,
    UnhandledCredentials,
    UsernamePassword,
    _credentials,
    cram_md5_response,
    http_digest_response,
)
from torsion.defer import Deferred, fail, succeed
from torsion.internet import Address, IPv4Address
from torsion.testing import Clock, assert_no_result, failure_result_of, success_result_of


class Mailbox:
    """An interface a protocol talks to."""


class Files:
    """Another one."""


@dataclass
class Avatar:
    avatar_id: str
    mind: Any


@dataclass
class RecordingRealm:
    """Hands out avatars for Mailbox only, and records logouts."""

    logouts: list[str] = field(default_factory=list)

    def request_avatar(self, avatar_id: str, mind: Any, /, *interfaces: type) -> Login:
        if Mailbox not in interfaces:
            raise NotImplementedError("only mailboxes here")
        return Login(Mailbox, Avatar(avatar_id, mind), lambda: self.logouts.append(avatar_id))


class CountingChecker:
    """Wraps a checker and counts the credentials it was asked about."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.credential_types = inner.credential_types
        self.asked: list[object] = []

    def request_avatar_id(self, credentials: Any, client: Address | None, /) -> Any:
        self.asked.append(credentials)
        return self.inner.request_avatar_id(credentials, client)


CLIENT = IPv4Address("192.0.2.10", 50000)
OTHER = IPv4Address("198.51.100.20", 50001)


@pytest.fixture
def checker() -> CountingChecker:
    return CountingChecker(InMemoryChecker({"alice": "wonderland", "bob": "builder"}))


@pytest.fixture
def portal(clock: Clock, checker: CountingChecker) -> Portal:
    return Portal(RecordingRealm(), [checker], clock=clock)


def test_login_returns_interface_avatar_and_logout(portal: Portal) -> None:
    mind = object()
    login = success_result_of(
        portal.login(UsernamePassword("alice", "wonderland"), mind, Files, Mailbox, client=CLIENT)
    )
    interface, avatar, logout = login
    assert interface is Mailbox
    assert avatar == Avatar("alice", mind)
    logout()
    assert portal.realm.logouts == ["alice"]  # type: ignore[attr-defined]


def test_a_failure_is_answered_after_the_delay(
    portal: Portal, clock: Clock, checker: CountingChecker
) -> None:
    d = portal.login(UsernamePassword("alice", "guess"), None, Mailbox, client=CLIENT)
    assert_no_result(d)
    clock.advance(0.999)
    assert_no_result(d)
    clock.advance(0.001)
    error = failure_result_of(d, UnauthorizedLogin)
    assert str(error) == "login failed"
    assert error.reason == "wrong secret"


def test_unknown_users_and_wrong_passwords_look_alike(portal: Portal, clock: Clock) -> None:
    outcomes = []
    for username, client in (("alice", CLIENT), ("mallory", OTHER)):
        d = portal.login(UsernamePassword(username, "guess"), None, Mailbox, client=client)
        assert_no_result(d)
        clock.advance(1.0)
        outcomes.append(str(failure_result_of(d, UnauthorizedLogin)))
    assert outcomes == ["login failed", "login failed"]


def test_a_blocked_address_is_refused_without_checking(
    portal: Portal, clock: Clock, checker: CountingChecker
) -> None:
    first = portal.login(UsernamePassword("alice", "guess"), None, Mailbox, client=CLIENT)
    clock.advance(1.0)
    failure_result_of(first, UnauthorizedLogin)
    second = portal.login(UsernamePassword("alice", "guess"), None, Mailbox, client=CLIENT)
    assert len(checker.asked) == 2
    # While the second failure is held back (2s), logins from that address
    # in parallel are not checked at all, even with the right password...
    clock.advance(0.5)
    parallel = [
        portal.login(UsernamePassword("alice", password), None, Mailbox, client=CLIENT)
        for password in ("guess2", "guess3", "wonderland")
    ]
    assert len(checker.asked) == 2
    clock.advance(1.0)
    for d in [*parallel, second]:
        assert_no_result(d)
    clock.advance(0.5)  # ...and answered when the block ends
    for d in parallel:
        assert "not checked" in failure_result_of(d, UnauthorizedLogin).reason
    failure_result_of(second, UnauthorizedLogin)
    # Meanwhile alice, from her own address, got in at once: no lock-out.
    login = success_result_of(
        portal.login(UsernamePassword("alice", "wonderland"), None, Mailbox, client=OTHER)
    )
    assert login.avatar.avatar_id == "alice"
    # A refusal unchecked is no further failure: the next check waits as before.
    assert portal.limiter.failures(client=CLIENT) == 2


def test_the_owner_gets_in_during_an_attack_from_elsewhere(portal: Portal, clock: Clock) -> None:
    pending = [
        portal.login(UsernamePassword("alice", f"guess{n}"), None, Mailbox, client=CLIENT)
        for n in range(5)
    ]
    login = success_result_of(
        portal.login(UsernamePassword("alice", "wonderland"), None, Mailbox, client=OTHER)
    )
    assert login.avatar.avatar_id == "alice"
    clock.advance(30)
    for d in pending:
        failure_result_of(d, UnauthorizedLogin)


def test_success_resets_the_counts(portal: Portal, clock: Clock) -> None:
    d = portal.login(UsernamePassword("alice", "guess"), None, Mailbox, client=CLIENT)
    clock.advance(1.0)
    failure_result_of(d, UnauthorizedLogin)
    success_result_of(
        portal.login(UsernamePassword("alice", "wonderland"), None, Mailbox, client=CLIENT)
    )
    assert portal.limiter.failures(username="alice") == 0
    d = portal.login(UsernamePassword("alice", "guess"), None, Mailbox, client=CLIENT)
    clock.advance(1.0)  # the first failure's delay again, not the second's
    failure_result_of(d, UnauthorizedLogin)


def test_cancelling_a_login_cancels_its_delay(portal: Portal, clock: Clock) -> None:
    d = portal.login(UsernamePassword("alice", "guess"), None, Mailbox, client=CLIENT)
    assert len(clock.get_delayed_calls()) == 1
    d.cancel()
    failure_result_of(d, asyncio.CancelledError)
    assert clock.get_delayed_calls() == []


def test_no_checker_for_the_kind(portal: Portal, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="torsion.cred.audit"):
        error = failure_result_of(
            portal.login(BearerToken("t" * 20), None, Mailbox, client=CLIENT),
            UnhandledCredentials,
        )
    assert error.kind == "BearerToken"
    assert "no checker takes BearerToken" in caplog.text


def test_the_realm_may_refuse_every_interface(portal: Portal) -> None:
    failure_result_of(
        portal.login(UsernamePassword("alice", "wonderland"), None, Files), NotImplementedError
    )
    with pytest.raises(TypeError, match="interface"):
        portal.login(UsernamePassword("alice", "wonderland"), None)


def test_a_realm_answering_an_interface_not_asked_for(clock: Clock) -> None:
    logged_out: list[bool] = []

    class Wrong:
        def request_avatar(self, avatar_id: str, mind: Any, /, *interfaces: type) -> Any:
            return (Files, object(), lambda: logged_out.append(True))

    portal = Portal(Wrong(), [InMemoryChecker({"a": "b"})], clock=clock)
    failure_result_of(portal.login(UsernamePassword("a", "b"), None, Mailbox), TypeError)
    assert logged_out == [True]


def test_an_asynchronous_realm(clock: Clock) -> None:
    later: Deferred[None] = Deferred()

    class Slow:
        async def request_avatar(self, avatar_id: str, mind: Any, /, *interfaces: type) -> Login:
            await later
            return Login(Mailbox, avatar_id, lambda: None)

    portal = Portal(Slow(), [InMemoryChecker({"a": "b"})], clock=clock)
    d = portal.login(UsernamePassword("a", "b"), None, Mailbox)
    assert_no_result(d)
    later.callback(None)
    assert success_result_of(d).avatar == "a"


def test_checkers_of_one_kind_are_tried_in_order(clock: Clock) -> None:
    first = CountingChecker(InMemoryChecker({"alice": "one"}))
    second = CountingChecker(InMemoryChecker({"alice": "two", "bob": "three"}))
    portal = Portal(RecordingRealm(), [first, second], clock=clock)
    for password in ("one", "two"):
        login = success_result_of(portal.login(UsernamePassword("alice", password), None, Mailbox))
        assert login.avatar.avatar_id == "alice"
    assert (len(first.asked), len(second.asked)) == (2, 1)  # the second only when needed
    d = portal.login(UsernamePassword("alice", "three"), None, Mailbox, client=CLIENT)
    clock.advance(1.0)
    failure_result_of(d, UnauthorizedLogin)


def test_a_broken_checker_fails_the_login_and_is_logged(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        credential_types = (UsernamePassword,)

        def request_avatar_id(self, credentials: Any, client: Address | None, /) -> Any:
            return fail(OSError(5, "disk on fire"))

    portal = Portal(RecordingRealm(), [Broken()], clock=clock)
    with caplog.at_level(logging.ERROR, logger="torsion.cred.audit"):
        d = portal.login(UsernamePassword("alice", "pw"), None, Mailbox, client=CLIENT)
        clock.advance(1.0)
        error = failure_result_of(d, UnauthorizedLogin)
    assert isinstance(error.__cause__, OSError)
    assert str(error) == "login failed"  # the client learns nothing of the disk
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None
    assert "disk on fire" in caplog.text


def test_a_checker_naming_something_else_than_a_string(clock: Clock) -> None:
    class Odd:
        credential_types = (Anonymous,)

        def request_avatar_id(self, credentials: Any, client: Address | None, /) -> Any:
            return succeed(42)

    portal = Portal(RecordingRealm(), [Odd()], clock=clock)
    failure_result_of(portal.login(Anonymous(), None, Mailbox), TypeError)


def test_register_checker_for_chosen_types(clock: Clock) -> None:
    portal = Portal(RecordingRealm(), clock=clock)
    portal.register_checker(InMemoryChecker({"alice": "pw"}), UsernamePassword)
    assert portal.credential_types == (UsernamePassword,)
    failure_result_of(
        portal.login(CramMD5("alice", b"<x>", "00"), None, Mailbox), UnhandledCredentials
    )

    class Empty:
        credential_types = ()

        def request_avatar_id(self, credentials: Any, client: Address | None, /) -> Any:
            raise AssertionError

    with pytest.raises(ValueError, match="no credential types"):
        portal.register_checker(Empty())


def test_anonymous_and_token_logins(clock: Clock) -> None:
    tokens = InMemoryTokenChecker({"0123456789abcdef-alice": "alice"})
    portal = Portal(RecordingRealm(), [AnonymousChecker(), tokens], clock=clock)
    assert (
        success_result_of(portal.login(Anonymous(), None, Mailbox)).avatar.avatar_id == ANONYMOUS
    )
    login = success_result_of(portal.login(BearerToken("0123456789abcdef-alice"), None, Mailbox))
    assert login.avatar.avatar_id == "alice"
    tokens.revoke("0123456789abcdef-alice")
    d = portal.login(BearerToken("0123456789abcdef-alice"), None, Mailbox, client=CLIENT)
    clock.advance(1.0)
    assert failure_result_of(d, UnauthorizedLogin).reason == "unknown token"
    with pytest.raises(ValueError, match="16"):
        tokens.add_token("short", "bob")


def test_challenge_response_logins_through_the_in_memory_checker(portal: Portal) -> None:
    challenge = b"<1.2@mail.example>"
    response = cram_md5_response("builder", challenge)
    login = success_result_of(portal.login(CramMD5("bob", challenge, response), None, Mailbox))
    assert login.avatar.avatar_id == "bob"
    fields = {
        "username": "alice",
        "realm": "r",
        "nonce": "n",
        "method": "GET",
        "uri": "/",
        "cnonce": "c",
        "algorithm": "SHA-256",
    }
    digest = http_digest_response(secret="wonderland", **fields)
    login = success_result_of(portal.login(HTTPDigest(response=digest, **fields), None, Mailbox))
    assert login.avatar.avatar_id == "alice"


# -- timing safety: the same work whether or not the user exists -------------------


@settings(max_examples=60, deadline=None)
@given(
    username=st.one_of(st.sampled_from(["alice", "bob", "carol", ""]), st.text(max_size=20)),
    password=st.one_of(st.sampled_from(["wonderland", "builder"]), st.text(max_size=20)),
    challenge=st.booleans(),
)
def test_in_memory_checker_compares_once_whoever_asks(
    username: str, password: str, challenge: bool
) -> None:
    checker = InMemoryChecker({"alice": "wonderland", "bob": "builder"})
    compared: list[tuple[str | bytes, str | bytes]] = []
    real = _credentials._same

    def counting(a: str | bytes, b: str | bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    _credentials._same = counting  # type: ignore[assignment]
    try:
        if challenge:
            credentials: Any = CramMD5(username, b"<c>", cram_md5_response(password, b"<c>"))
        else:
            credentials = UsernamePassword(username, password)
        d = checker.request_avatar_id(credentials, None)
    finally:
        _credentials._same = real  # type: ignore[assignment]
    assert len(compared) == 1  # one constant-time comparison, known user or not
    known = {"alice": "wonderland", "bob": "builder"}.get(username)
    if known is not None and known == password:
        assert success_result_of(d) == username
    else:
        error = failure_result_of(d, UnauthorizedLogin)
        assert str(error) == "login failed"


# -- the audit log ------------------------------------------------------------------

SECRETS = ["wonderland", "builder", "guess-secret", "0123456789abcdef-token", "SIGNATURE"]


def _audit_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.getMessage()} {getattr(r, 'cred', '')}" for r in records)


def test_audit_log_names_who_and_where_never_the_secret(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = InMemoryTokenChecker({"0123456789abcdef-token": "svc"})
    portal = Portal(
        RecordingRealm(), [InMemoryChecker({"alice": "wonderland"}), tokens], clock=clock
    )
    attempts: list[tuple[object, IPv4Address]] = [
        (UsernamePassword("alice", "wonderland"), CLIENT),
        (UsernamePassword("alice", "guess-secret"), OTHER),
        (BearerToken("0123456789abcdef-token"), CLIENT),
        (SSHPublicKey("alice", "ssh-ed25519", b"BLOB", b"DATA", b"SIGNATURE"), CLIENT),
    ]
    with caplog.at_level(logging.INFO, logger="torsion.cred.audit"):
        for credentials, client in attempts:
            d = portal.login(credentials, None, Mailbox, client=client)
            clock.advance(30)
            d.add_errback(lambda _: None)
    records = [r for r in caplog.records if r.name == "torsion.cred.audit"]
    assert [r.cred["outcome"] for r in records] == [  # type: ignore[attr-defined]
        "succeeded",
        "failed",
        "succeeded",
        "unhandled",
    ]
    text = _audit_text(records)
    for secret in SECRETS:
        if secret != "0123456789abcdef-token":
            assert secret not in text
    assert "0123456789abcdef-token" not in text
    assert "user 'alice' as 'alice' with UsernamePassword from 192.0.2.10:50000" in text
    assert "user 'alice' with UsernamePassword from 198.51.100.20:50001: wrong secret" in text
    assert records[1].levelno == logging.WARNING


def test_audit_log_escapes_and_cuts_user_names(
    portal: Portal, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "x\nLogin succeeded: user 'root'" + "y" * 100
    with caplog.at_level(logging.INFO, logger="torsion.cred.audit"):
        d = portal.login(UsernamePassword(forged, "pw"), None, Mailbox, client=CLIENT)
        clock.advance(1.0)
        failure_result_of(d, UnauthorizedLogin)
    [record] = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    assert "..." in message
    assert "y" * 100 not in message


def test_refusals_of_a_blocked_client_are_collapsed(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    portal = Portal(
        RecordingRealm(),
        [InMemoryChecker({"alice": "pw"})],
        clock=clock,
        limiter=LoginLimiter(clock, base_delay=10, max_delay=10),
    )
    outcomes: list[Deferred[Login]] = []
    with caplog.at_level(logging.INFO, logger="torsion.cred.audit"):
        outcomes.append(portal.login(UsernamePassword("alice", "x"), None, Mailbox, client=CLIENT))
        for _ in range(50):
            outcomes.append(
                portal.login(UsernamePassword("alice", "x"), None, Mailbox, client=CLIENT)
            )
        clock.advance(10)
    for d in outcomes:
        failure_result_of(d, UnauthorizedLogin)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # the checked failure, and the first refusal only
    assert "refused unchecked: UsernamePassword from 192.0.2.10:50000" in lines[1]
