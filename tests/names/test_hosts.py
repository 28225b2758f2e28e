"""Tests for the hosts-file resolver."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from torsion.defer import Deferred
from torsion.names._answer import Answer, NotMineError, Question
from torsion.names._hosts import HostsResolver, parse_hosts

HOSTS = """\
# comment line
127.0.0.1   localhost
::1         localhost ip6-localhost   # trailing comment
192.0.2.10  www.example.org www  mail.example.org
192.0.2.11  www.example.org
not-an-ip   broken.example
192.0.2.12
"""


def result_of(d: Deferred[Any]) -> Any:
    """The result of a Deferred that succeeded."""
    results: list[Any] = []
    errors: list[BaseException] = []
    d.add_callbacks(results.append, errors.append)
    assert not errors, f"the Deferred failed: {errors[0]!r}"
    assert results, "the Deferred has not fired"
    return results[0]


def failure_of(d: Deferred[Any]) -> BaseException:
    """The error of a Deferred that failed (consumed)."""
    results: list[Any] = []
    errors: list[BaseException] = []
    d.add_callbacks(results.append, errors.append)
    assert not results, f"the Deferred succeeded: {results[0]!r}"
    assert errors, "the Deferred has not fired"
    return errors[0]


def ask(resolver: HostsResolver, name: str, rdtype: str, rdclass: str = "IN") -> Any:
    question = Question(
        dns.name.from_text(name),
        dns.rdatatype.from_text(rdtype),
        dns.rdataclass.from_text(rdclass),
    )
    outcomes: list[Any] = []
    # An answer, or the error it failed with: both are outcomes here.
    resolver.query(question).add_callbacks(outcomes.append, outcomes.append)
    assert outcomes, "the Deferred has not fired"
    return outcomes[0]


def texts(answer: Answer) -> list[str]:
    return sorted(str(rdata) for rrset in answer.answer for rdata in rrset)


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_parse_hosts_skips_what_makes_no_sense() -> None:
    addresses, names = parse_hosts(HOSTS)
    www = dns.name.from_text("www.example.org")
    assert addresses[www] == ["192.0.2.10", "192.0.2.11"]
    assert dns.name.from_text("broken.example") not in addresses
    reverse = dns.name.from_text("10.2.0.192.in-addr.arpa")
    assert names[reverse][0] == www


def test_answers_a_aaaa_and_ptr(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    resolver = HostsResolver(str(path))
    assert texts(ask(resolver, "localhost", "A")) == ["127.0.0.1"]
    assert texts(ask(resolver, "LOCALHOST", "AAAA")) == ["::1"]
    assert texts(ask(resolver, "www.example.org", "A")) == ["192.0.2.10", "192.0.2.11"]
    assert texts(ask(resolver, "www", "A")) == ["192.0.2.10"]
    assert texts(ask(resolver, "10.2.0.192.in-addr.arpa", "PTR")) == [
        "mail.example.org.",
        "www.",
        "www.example.org.",
    ]
    nodata = ask(resolver, "mail.example.org", "AAAA")
    assert nodata.rcode == dns.rcode.NOERROR
    assert nodata.answer == []


def test_what_it_does_not_list_is_not_its_own(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    resolver = HostsResolver(str(path))
    assert isinstance(ask(resolver, "other.example", "A"), NotMineError)
    assert isinstance(ask(resolver, "localhost", "MX"), NotMineError)
    assert isinstance(ask(resolver, "localhost", "A", "CH"), NotMineError)
    assert isinstance(ask(resolver, "1.1.1.1.in-addr.arpa", "PTR"), NotMineError)
    missing = HostsResolver(str(tmp_path / "absent"))
    assert isinstance(ask(missing, "localhost", "A"), NotMineError)


def test_a_changed_file_is_read_again_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("192.0.2.1 a.example\n")
    time = Time()
    resolver = HostsResolver(str(path), now=time)
    assert texts(ask(resolver, "a.example", "A")) == ["192.0.2.1"]
    path.write_text("192.0.2.2 a.example b.example\n")
    # Force a different modification time even on a coarse file system.
    os.utime(path, ns=(10**18, 10**18))
    time.now = 0.5
    assert texts(ask(resolver, "a.example", "A")) == ["192.0.2.1"]
    time.now = 1.5
    assert texts(ask(resolver, "a.example", "A")) == ["192.0.2.2"]
    assert texts(ask(resolver, "b.example", "A")) == ["192.0.2.2"]
    path.unlink()
    time.now = 3.0
    assert isinstance(ask(resolver, "a.example", "A"), NotMineError)
