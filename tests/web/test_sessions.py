"""Tests for torsion.web._sessions: expiring, bounded sessions and their cookie."""

from __future__ import annotations

import logging

import pytest

from torsion.testing import Clock
from torsion.web._cookies import CookieJar, parse_cookie_header
from torsion.web._sessions import Session, SessionStore


@pytest.fixture
def clock() -> Clock:
    return Clock(1000)


def _store(clock: Clock, **options: float | None) -> SessionStore:
    return SessionStore(clock, idle_timeout=100, lifetime=1000, **options)  # type: ignore[arg-type]


def test_create_and_get(clock: Clock) -> None:
    store = _store(clock)
    session = store.create()
    assert len(session.id) == 43  # 32 random bytes, base64url
    assert store.get(session.id) is session
    assert store.get("no-such-id") is None
    assert store.get("x" * 10_000) is None
    assert store.create().id != session.id
    assert len(store) == 2
    assert session.id not in repr(session)
    store.close()


def test_idle_timeout_is_reset_by_use(clock: Clock) -> None:
    store = _store(clock, sweep_interval=None)
    session = store.create()
    clock.advance(99)
    assert store.get(session.id) is session
    assert session.last_access == 1099
    clock.advance(99)
    assert store.get(session.id) is session
    clock.advance(100)
    assert store.get(session.id) is None
    assert len(store) == 0


def test_absolute_lifetime_ends_even_a_busy_session(clock: Clock) -> None:
    store = _store(clock, sweep_interval=None)
    session = store.create()
    for _ in range(19):
        clock.advance(50)
        assert store.get(session.id) is session
    clock.advance(50)
    assert store.get(session.id) is None


def test_sweeper_expires_forgotten_sessions_and_leaves_no_timer(clock: Clock) -> None:
    store = _store(clock, sweep_interval=30)
    expired: list[Session] = []
    first = store.create()
    first.notify_on_expire(expired.append)
    assert len(clock.get_delayed_calls()) == 1
    clock.advance(60)
    second = store.create()
    assert len(clock.get_delayed_calls()) == 1  # one timer for the whole store
    clock.advance(60)  # first idle for 120 > 100
    assert expired == [first]
    assert len(store) == 1
    clock.advance(60)  # second idle for 120
    assert len(store) == 0
    assert clock.get_delayed_calls() == []
    assert store.get(second.id) is None


def test_expire_runs_callbacks_once(clock: Clock) -> None:
    store = _store(clock)
    session = store.create()
    calls: list[Session] = []
    session.notify_on_expire(calls.append)
    assert store.expire(session.id)
    assert not store.expire(session.id)
    assert calls == [session]
    assert store.get(session.id) is None
    store.close()
    assert clock.get_delayed_calls() == []


def test_a_failing_callback_is_logged_not_raised(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(clock)
    session = store.create()
    later: list[Session] = []

    def broken(_: Session) -> None:
        raise RuntimeError("boom")

    session.notify_on_expire(broken)
    session.notify_on_expire(later.append)
    with caplog.at_level(logging.ERROR, logger="torsion.web.sessions"):
        store.expire(session.id)
    assert later == [session]
    assert "expiry callback failed" in caplog.text
    store.close()


def test_bounded_evicts_least_recently_used(clock: Clock) -> None:
    store = _store(clock, max_sessions=3)
    a, b, c = store.create(), store.create(), store.create()
    evicted: list[Session] = []
    b.notify_on_expire(evicted.append)
    assert store.get(a.id) is a  # a is now the most recently used
    d = store.create()
    assert evicted == [b]
    assert len(store) == 3
    assert {store.get(s.id) for s in (a, c, d)} == {a, c, d}
    store.close()


def test_full_store_drops_expired_sessions_first(clock: Clock) -> None:
    store = _store(clock, max_sessions=2, sweep_interval=None)
    old = store.create()
    clock.advance(90)
    fresh = store.create()
    clock.advance(20)  # old idle for 110: expired, though not yet swept
    store.get(fresh.id)
    newest = store.create()
    assert store.get(old.id) is None
    assert store.get(fresh.id) is fresh
    assert store.get(newest.id) is newest


def test_rotate_keeps_data_and_kills_the_old_id(clock: Clock) -> None:
    store = _store(clock)
    session = store.create()
    session.data["user"] = "ada"
    old_id = session.id
    assert store.rotate(session) is session
    assert session.id != old_id
    assert store.get(old_id) is None
    assert store.get(session.id) is session
    assert session.data == {"user": "ada"}
    store.expire(session.id)
    with pytest.raises(KeyError):
        store.rotate(session)
    store.close()


def test_cookie_defaults(clock: Clock) -> None:
    store = _store(clock)
    session = store.create()
    assert store.cookie(session, secure=False) == (
        f"TORSION_SESSION={session.id}; Path=/; HttpOnly; SameSite=Lax".encode()
    )
    assert store.cookie(session, secure=True) == (
        f"TORSION_SESSION={session.id}; Path=/; Secure; HttpOnly; SameSite=Lax".encode()
    )
    clock.advance(400)
    assert b"; Max-Age=600;" in store.cookie(session, secure=True, persistent=True)
    assert store.expired_cookie(secure=False) == (
        b"TORSION_SESSION=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
    )
    store.close()


def test_from_cookie_header(clock: Clock) -> None:
    store = SessionStore(clock, cookie_name="sid")
    session = store.create()
    assert store.from_cookie_header(f"theme=dark; sid={session.id}".encode()) is session
    assert store.from_cookie_header(b"theme=dark") is None
    assert store.from_cookie_header(b"sid=forged") is None
    assert store.from_cookie_header(None) is None
    assert store.from_cookie_header(b"") is None
    assert store.from_cookie_header(b"\xff\x00;;;=") is None
    store.close()


def test_the_cookie_round_trips_through_a_client_jar(clock: Clock) -> None:
    store = _store(clock)
    session = store.create()
    jar = CookieJar(clock.seconds)
    jar.receive("https://app.test/login", [store.cookie(session, secure=True)])
    header = jar.cookie_header("https://app.test/account")
    assert header is not None
    assert store.from_cookie_header(header) is session
    assert jar.cookie_header("http://app.test/account") is None  # Secure
    jar.receive("https://app.test/logout", [store.expired_cookie(secure=True)])
    assert jar.cookie_header("https://app.test/") is None
    assert parse_cookie_header(header) == {"TORSION_SESSION": session.id}
    store.close()


@pytest.mark.parametrize(
    "options",
    [
        {"idle_timeout": 0},
        {"lifetime": -1},
        {"max_sessions": 0},
        {"sweep_interval": 0},
        {"cookie_name": "bad name"},
    ],
)
def test_bad_options(clock: Clock, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"positive|cookie name"):
        SessionStore(clock, **options)  # type: ignore[arg-type]


def test_close_expires_everything(clock: Clock) -> None:
    store = _store(clock)
    expired: list[Session] = []
    for _ in range(3):
        store.create().notify_on_expire(expired.append)
    store.close()
    assert len(expired) == 3
    assert len(store) == 0
    assert clock.get_delayed_calls() == []
