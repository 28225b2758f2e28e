"""Typed addresses: from and to the socket module's forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.internet import IPv4Address, IPv6Address, UNIXAddress, to_address, to_sockaddr


def test_shapes_become_types() -> None:
    assert to_address(("192.0.2.1", 80)) == IPv4Address("192.0.2.1", 80)
    assert to_address(("::1", 53, 0, 0), "udp") == IPv6Address("::1", 53, kind="udp")
    assert to_address("/run/x.sock") == UNIXAddress("/run/x.sock")
    assert to_address(b"\0abstract") == UNIXAddress(b"\0abstract")
    # An unnamed Unix socket reports "" (or None, on some loops).
    assert to_address("") == UNIXAddress(None)
    assert to_address(None, "unix") == UNIXAddress(None)


@pytest.mark.parametrize("bad", [("h",), ("h", 1, 2), 42, ["h", 1]])
def test_other_shapes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="not a"):
        to_address(bad)


def test_a_tuple_is_not_a_unix_address() -> None:
    with pytest.raises(ValueError, match="not a Unix socket address"):
        to_address(("h", 1), "unix")


def test_readable_forms() -> None:
    assert str(IPv4Address("192.0.2.1", 80)) == "192.0.2.1:80"
    assert str(IPv6Address("::1", 443)) == "[::1]:443"
    assert str(UNIXAddress("/tmp/s")) == "unix:/tmp/s"
    assert str(UNIXAddress("\0name")) == "unix:@name"
    assert str(UNIXAddress(None)) == "unix:<unnamed>"


def test_addresses_are_values() -> None:
    a = IPv4Address("192.0.2.1", 80)
    assert a == IPv4Address("192.0.2.1", 80)
    assert len({a, IPv4Address("192.0.2.1", 80)}) == 1
    with pytest.raises(AttributeError):
        a.port = 81  # type: ignore[misc]


ports = st.integers(0, 65535)


@given(
    st.one_of(
        st.builds(IPv4Address, st.ip_addresses(v=4).map(str), ports),
        st.builds(IPv6Address, st.ip_addresses(v=6).map(str), ports, st.integers(0, 2**20)),
        st.builds(UNIXAddress, st.text(min_size=1).filter(lambda t: "\0" not in t[1:])),
    )
)
def test_to_sockaddr_is_the_inverse(address: IPv4Address | IPv6Address | UNIXAddress) -> None:
    assert to_address(to_sockaddr(address)) == address
