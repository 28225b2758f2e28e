"""SOCKS destination rules: first match wins, protected ranges stay shut unless named."""

from __future__ import annotations

import ipaddress

import pytest

from torsion.protocols._socks_rules import (
    PROTECTED_NETWORKS,
    DestinationRules,
    Rule,
    allow_destinations,
    deny_destinations,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fd00::1",
        "ff02::1",
    ],
)
def test_by_default_protected_addresses_are_refused(address: str) -> None:
    decision = DestinationRules().check(address, 80)
    assert not decision.allowed
    assert "protected range" in decision.reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "192.0.2.1"])
def test_by_default_public_addresses_are_allowed(address: str) -> None:
    assert DestinationRules().check(address, 443).allowed


def test_first_match_wins() -> None:
    rules = DestinationRules(
        [
            deny_destinations(networks=["198.51.100.7/32"]),
            allow_destinations(networks=["198.51.100.0/24"]),
        ],
        default="deny",
    )
    assert not rules.check("198.51.100.7", 80).allowed
    assert rules.check("198.51.100.8", 80).allowed
    assert not rules.check("203.0.113.1", 80).allowed
    assert rules.check("203.0.113.1", 80).reason == "no rule allows it"


def test_a_network_rule_opens_the_protected_addresses_it_names() -> None:
    rules = DestinationRules([allow_destinations(networks=["127.0.0.1"])])
    assert rules.check("127.0.0.1", 8080).allowed
    assert rules.check("::ffff:127.0.0.1", 8080).allowed  # the same address, mapped
    assert not rules.check("127.0.0.2", 8080).allowed
    assert not rules.check("::1", 8080).allowed


def test_a_name_rule_does_not_open_protected_addresses() -> None:
    rules = DestinationRules([allow_destinations(hosts=[".corp.example"])], default="deny")
    assert rules.check("198.51.100.1", 80, name="www.corp.example").allowed
    # The name is allowed, but its DNS answer points inside: still refused.
    decision = rules.check("10.0.0.5", 80, name="www.corp.example")
    assert not decision.allowed
    assert "10.0.0.0/8" in decision.reason


def test_protection_can_be_turned_off() -> None:
    assert DestinationRules(protected=()).check("127.0.0.1", 22).allowed
    rules = DestinationRules(protected=["203.0.113.0/24"])
    assert not rules.check("203.0.113.5", 22).allowed
    assert rules.check("127.0.0.1", 22).allowed


def test_host_patterns() -> None:
    rule = allow_destinations(hosts=["Example.COM.", ".example.org"])
    assert rule.hosts == ("example.com", ".example.org")
    assert rule.matches("192.0.2.1", 80, name="example.com")
    assert rule.matches("192.0.2.1", 80, name="EXAMPLE.com.")
    assert not rule.matches("192.0.2.1", 80, name="www.example.com")
    assert rule.matches("192.0.2.1", 80, name="www.example.org")
    assert rule.matches("192.0.2.1", 80, name="a.b.example.org")
    assert not rule.matches("192.0.2.1", 80, name="example.org")
    assert not rule.matches("192.0.2.1", 80, name="badexample.org")
    assert not rule.matches("192.0.2.1", 80)  # asked for by address: no name


def test_port_ranges() -> None:
    rule = allow_destinations(ports=[80, (8000, 8080), range(443, 444)])
    assert rule.ports == ((80, 80), (8000, 8080), (443, 443))
    for port in (80, 443, 8000, 8042, 8080):
        assert rule.matches("192.0.2.1", port)
    for port in (79, 81, 442, 444, 7999, 8081):
        assert not rule.matches("192.0.2.1", port)


def test_every_criterion_must_match() -> None:
    rule = deny_destinations(networks=["192.0.2.0/24"], hosts=["bad.example"], ports=[25])
    assert rule.matches("192.0.2.9", 25, name="bad.example")
    assert not rule.matches("192.0.2.9", 26, name="bad.example")
    assert not rule.matches("198.51.100.1", 25, name="bad.example")
    assert not rule.matches("192.0.2.9", 25, name="good.example")


def test_port_zero_is_never_allowed() -> None:
    rules = DestinationRules(protected=())
    assert not rules.check("192.0.2.1", 0).allowed
    decision = rules.check_name("example.com", 0)
    assert decision is not None
    assert not decision.allowed


def test_names_are_decided_before_lookup_when_they_can_be() -> None:
    rules = DestinationRules(
        [
            deny_destinations(hosts=[".blocked.example"]),
            allow_destinations(ports=[443]),
            allow_destinations(networks=["198.51.100.0/24"], ports=[80]),
        ],
        default="deny",
    )
    denied = rules.check_name("ads.blocked.example", 443)
    assert denied is not None
    assert not denied.allowed
    assert denied.rule == rules.rules[0]
    # Allowed names still have their addresses checked.
    assert rules.check_name("www.example", 443) is None
    # A network rule: it depends on what the name resolves to.
    assert rules.check_name("www.example", 80) is None
    # Nothing can match: the default says no.
    nothing = rules.check_name("www.example", 22)
    assert nothing is not None
    assert not nothing.allowed
    assert DestinationRules().check_name("www.example", 22) is None


def test_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="has host bits set"):
        allow_destinations(networks=["10.0.0.1/8"])
    with pytest.raises(ValueError, match="port range"):
        allow_destinations(ports=[(100, 10)])
    with pytest.raises(ValueError, match="port range"):
        allow_destinations(ports=[70000])
    with pytest.raises(ValueError, match="port range"):
        allow_destinations(ports=[range(10, 20, 2)])
    with pytest.raises(ValueError, match="not a host name"):
        allow_destinations(hosts=["."])
    with pytest.raises(ValueError, match="not a host name"):
        allow_destinations(hosts=["a b"])
    with pytest.raises(TypeError, match="lists of strings"):
        allow_destinations(hosts="example.com")
    with pytest.raises(ValueError, match="default"):
        DestinationRules(default="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        DestinationRules().check("example.com", 80)


def test_rules_accept_network_objects() -> None:
    rule = allow_destinations(networks=[ipaddress.ip_network("192.0.2.0/24")])
    assert rule == Rule(allow=True, networks=(ipaddress.ip_network("192.0.2.0/24"),))
    assert ipaddress.ip_network("127.0.0.0/8") in PROTECTED_NETWORKS
    assert repr(DestinationRules([rule])) == "<DestinationRules 1 rules, default allow>"
