"""The PAM checker: its glue on a fake PAM, and one real round trip through libpam."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from cred_fakes import InlineThreads

from torsion.cred import PAMChecker, UnauthorizedLogin, UsernamePassword, _pam, pam_available
from torsion.internet import IPv4Address, Reactor, UNIXAddress
from torsion.testing import failure_result_of, success_result_of


class FakePAM:
    """Accepts alice/secret on the "torsion" service; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None]] = []

    def __call__(
        self, username: str, password: str, service: str, rhost: str | None
    ) -> tuple[bool, str]:
        self.calls.append((username, password, service, rhost))
        if (username, password, service) == ("alice", "secret", "torsion"):
            return True, "Success"
        return False, "Authentication failure"


def test_accepted_and_refused(threads: InlineThreads) -> None:
    pam = FakePAM()
    checker = PAMChecker(threads, service="torsion", authenticate=pam)
    client = IPv4Address("192.0.2.1", 1234)
    assert (
        success_result_of(checker.request_avatar_id(UsernamePassword("alice", "secret"), client))
        == "alice"
    )
    error = failure_result_of(
        checker.request_avatar_id(UsernamePassword("alice", "nope"), UNIXAddress(None)),
        UnauthorizedLogin,
    )
    assert error.reason == "PAM: Authentication failure"
    assert pam.calls == [
        ("alice", "secret", "torsion", "192.0.2.1"),
        ("alice", "nope", "torsion", None),
    ]
    assert threads.jobs == 2  # PAM blocks: always in a worker


def test_nul_bytes_never_reach_pam(threads: InlineThreads) -> None:
    pam = FakePAM()
    checker = PAMChecker(threads, service="torsion", authenticate=pam)
    for username, password in (("alice\0x", "secret"), ("alice", "secret\0tail"), ("", "x")):
        failure_result_of(
            checker.request_avatar_id(UsernamePassword(username, password), None),
            UnauthorizedLogin,
        )
    assert pam.calls == []


def test_bad_service_names(threads: InlineThreads) -> None:
    for service in ("", "../etc/passwd", "a\0b"):
        with pytest.raises(ValueError, match="service"):
            PAMChecker(threads, service=service, authenticate=FakePAM())


def test_without_the_library_the_checker_says_what_to_install(
    threads: InlineThreads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pam, "pam_available", lambda: "the python-pam library is not installed")
    with pytest.raises(RuntimeError, match="python-pam"):
        PAMChecker(threads)


def test_a_real_pam_refuses_an_unknown_user() -> None:
    pytest.importorskip("pam", reason="PAM needs the pam extra (python-pam)")
    problem = pam_available()
    if problem is not None:
        pytest.skip(problem)
    if not os.path.exists("/etc/pam.d/other"):
        pytest.skip("no PAM service 'other' here (/etc/pam.d/other)")
    # A reactor of the test's own: closing it joins the worker PAM ran in.
    reactor = Reactor()
    checker = PAMChecker(reactor, service="other")
    ran_in: list[str] = []
    real = checker._check

    def check(username: str, password: str, rhost: str | None) -> str:
        ran_in.append(threading.current_thread().name)
        return real(username, password, rhost)

    checker._check = check  # type: ignore[method-assign]

    async def attempt() -> None:
        with pytest.raises(UnauthorizedLogin) as caught:
            await checker.request_avatar_id(
                UsernamePassword("torsion-no-such-user", "guess"), None
            )
        assert caught.value.reason.startswith("PAM: ")

    try:
        reactor.loop.run_until_complete(asyncio.wait_for(attempt(), 30))
    finally:
        reactor.close()
    assert len(ran_in) == 1
    assert ran_in[0] != threading.main_thread().name
