"""Relay on fakes: MX order, implicit and null MX, DNS failures, fallback between hosts."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from torsion.defer import Deferred, fail, succeed
from torsion.mail._relay import Relay
from torsion.mail.smtp._client_core import (
    DeliveryStatus,
    RecipientOutcome,
    Reply,
    SendResult,
    SMTPClientError,
    domain_of,
)
from torsion.names import Answer, Question
from torsion.testing import MemoryReactor


@dataclass
class FakeResolver:
    """Answers from a table of (name, type) -> records; NXDOMAIN for names it lacks."""

    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def query(self, question: Question) -> Deferred[Answer]:
        name = question.name.to_text()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append(f"{name} {kind}")
        if name in self.broken:
            return fail(TimeoutError("no answer"))
        if not any(n == name for n, _ in self.records):
            return succeed(Answer(rcode=dns.rcode.NXDOMAIN))
        texts = self.records.get((name, kind), [])
        if not texts:
            return succeed(Answer())
        rrset = dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN, kind, texts)
        return succeed(Answer(answer=[rrset]))


@dataclass
class FakeSender:
    """Answers per address: a SendResult accepting everyone, or an exception."""

    failures: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[str, int, str, tuple[str, ...], str]] = field(default_factory=list)

    async def __call__(
        self,
        address: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        server_hostname: str,
    ) -> SendResult:
        self.calls.append((address, port, sender, tuple(recipients), server_hostname))
        if address in self.failures:
            raise self.failures[address]
        ok = Reply(code=250, lines=("ok",), enhanced="2.0.0")
        return SendResult(
            outcomes=tuple(
                RecipientOutcome(recipient=r, status=DeliveryStatus.ACCEPTED, reply=ok)
                for r in recipients
            )
        )


ZONE = {
    ("example.test.", "MX"): [
        "20 mx3.example.test.",
        "10 mx1.example.test.",
        "10 mx2.example.test.",
    ],
    ("mx1.example.test.", "A"): ["192.0.2.1"],
    ("mx2.example.test.", "A"): ["192.0.2.2"],
    ("mx2.example.test.", "AAAA"): ["2001:db8::2"],
    ("mx3.example.test.", "A"): ["192.0.2.3"],
    ("implicit.test.", "A"): ["192.0.2.9"],
    ("null.test.", "MX"): ["0 ."],
    ("noaddress.test.", "TXT"): ['"nothing here"'],
}


def relay(resolver: FakeResolver, sender: FakeSender, seed: int = 1) -> Relay:
    return Relay(
        MemoryReactor(),
        resolver,
        helo="me.test",
        port=2525,
        sender=sender,
        rng=random.Random(seed),
    )


def test_domain_of() -> None:
    assert domain_of("A@Example.TEST") == "example.test"


async def test_mx_order_with_equal_preferences_shuffled() -> None:
    seen = set()
    for seed in range(20):
        hosts = await relay(FakeResolver(ZONE), FakeSender(), seed).mail_exchangers("example.test")
        assert hosts[2] == "mx3.example.test"
        assert set(hosts[:2]) == {"mx1.example.test", "mx2.example.test"}
        seen.add(tuple(hosts[:2]))
    assert len(seen) == 2


async def test_delivers_to_the_first_host_that_answers() -> None:
    sender = FakeSender(
        failures={
            "192.0.2.1": ConnectionRefusedError(),
            "192.0.2.2": OSError(),
            "2001:db8::2": TimeoutError(),
        }
    )
    r = relay(FakeResolver(ZONE), sender)
    outcomes = await r.deliver("a@me.test", ["x@example.test", "y@EXAMPLE.test"], b"m")
    assert [o.status for o in outcomes] == [DeliveryStatus.ACCEPTED] * 2
    addresses = [call[0] for call in sender.calls]
    # Every address of both preferred hosts, then the third host.
    assert sorted(addresses[:3]) == ["192.0.2.1", "192.0.2.2", "2001:db8::2"]
    assert addresses[3] == "192.0.2.3"
    assert sender.calls[3][1] == 2525
    assert sender.calls[3][3] == ("x@example.test", "y@EXAMPLE.test")
    assert sender.calls[3][4] == "mx3.example.test"


async def test_implicit_mx() -> None:
    sender = FakeSender()
    outcomes = await relay(FakeResolver(ZONE), sender).deliver("", ["x@implicit.test"], b"m")
    assert outcomes[0].status is DeliveryStatus.ACCEPTED
    assert sender.calls[0][0] == "192.0.2.9"
    assert sender.calls[0][4] == "implicit.test"


async def test_null_mx_is_permanent() -> None:
    sender = FakeSender()
    (outcome,) = await relay(FakeResolver(ZONE), sender).deliver("", ["x@null.test"], b"m")
    assert outcome.status is DeliveryStatus.REFUSED
    assert outcome.reply.code == 556
    assert outcome.reply.enhanced == "5.1.10"
    assert sender.calls == []


async def test_no_such_domain_is_permanent() -> None:
    (outcome,) = await relay(FakeResolver(ZONE), FakeSender()).deliver("", ["x@nx.test"], b"m")
    assert outcome.status is DeliveryStatus.REFUSED
    assert outcome.reply.enhanced == "5.1.2"


async def test_domain_without_any_address_is_permanent() -> None:
    outcomes = await relay(FakeResolver(ZONE), FakeSender()).deliver(
        "", ["x@noaddress.test"], b"m"
    )
    assert outcomes[0].status is DeliveryStatus.REFUSED


async def test_dns_failure_is_temporary() -> None:
    resolver = FakeResolver(ZONE, broken={"example.test."})
    (outcome,) = await relay(resolver, FakeSender()).deliver("", ["x@example.test"], b"m")
    assert outcome.status is DeliveryStatus.TEMPORARY
    assert outcome.reply.enhanced == "4.4.3"


async def test_every_host_failing_is_temporary() -> None:
    sender = FakeSender(
        failures={
            "192.0.2.1": TimeoutError(),
            "192.0.2.2": SMTPClientError("refused", Reply(code=421, lines=("busy",))),
            "2001:db8::2": ConnectionRefusedError(),
            "192.0.2.3": SMTPClientError("refused", Reply(code=554, lines=("no",))),
        }
    )
    (outcome,) = await relay(FakeResolver(ZONE), sender).deliver("", ["x@example.test"], b"m")
    assert outcome.status is DeliveryStatus.TEMPORARY
    assert outcome.reply.code == 451
    assert len(sender.calls) == 4


async def test_every_host_refusing_for_good_is_permanent() -> None:
    no = SMTPClientError("refused", Reply(code=554, lines=("no service",), enhanced="5.3.2"))
    sender = FakeSender(failures={"192.0.2.9": no})
    (outcome,) = await relay(FakeResolver(ZONE), sender).deliver("", ["x@implicit.test"], b"m")
    assert outcome.status is DeliveryStatus.REFUSED
    assert outcome.reply.code == 554


async def test_address_literal_needs_no_lookup() -> None:
    resolver = FakeResolver(ZONE)
    sender = FakeSender()
    await relay(resolver, sender).deliver("", ["x@[192.0.2.7]", "y@[IPv6:2001:db8::7]"], b"m")
    assert resolver.asked == []
    assert [call[0] for call in sender.calls] == ["192.0.2.7", "2001:db8::7"]


async def test_outcomes_keep_the_recipients_order_across_domains() -> None:
    outcomes = await relay(FakeResolver(ZONE), FakeSender()).deliver(
        "", ["a@null.test", "b@example.test", "c@null.test", "d@implicit.test"], b"m"
    )
    assert [o.recipient for o in outcomes] == [
        "a@null.test",
        "b@example.test",
        "c@null.test",
        "d@implicit.test",
    ]
    assert [o.status.value for o in outcomes] == ["refused", "accepted", "refused", "accepted"]


@pytest.mark.parametrize("domain", ["[not-an-ip]", "a..b"])
async def test_bad_domains_are_refused(domain: str) -> None:
    (outcome,) = await relay(FakeResolver(ZONE), FakeSender()).deliver("", [f"x@{domain}"], b"m")
    assert outcome.status is DeliveryStatus.REFUSED


def test_names_are_absolute() -> None:
    assert dns.name.from_text("example.test").is_absolute()
