"""RFC 5321 paths: what is taken, what is refused, and the bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.mail.smtp import AddressError, EmailAddress, parse_parameters, parse_path


@pytest.mark.parametrize(
    ("text", "address", "rest"),
    [
        ("<a@x.test>", EmailAddress("a", "x.test"), ""),
        ("<a.b+c@x.test> SIZE=10", EmailAddress("a.b+c", "x.test"), "SIZE=10"),
        ('<"a b\\"c"@x.test>', EmailAddress('a b"c', "x.test"), ""),
        ("<a@[192.0.2.1]>", EmailAddress("a", "[192.0.2.1]"), ""),
        ("<a@[IPv6:2001:db8::1]>", EmailAddress("a", "[IPv6:2001:db8::1]"), ""),
        ("<@r1.test,@r2.test:a@x.test>", EmailAddress("a", "x.test"), ""),
        ("<postmaster>", EmailAddress("postmaster", ""), ""),
    ],
)
def test_valid_paths(text: str, address: EmailAddress, rest: str) -> None:
    assert parse_path(text) == (address, rest)


def test_null_path_only_where_allowed() -> None:
    assert parse_path("<> BODY=7BIT", null=True) == (None, "BODY=7BIT")
    with pytest.raises(AddressError, match="null path"):
        parse_path("<>")


@pytest.mark.parametrize(
    "text",
    [
        "a@x.test",
        "<a@x.test",
        "<a@x.test>SIZE=1",
        "<a@>",
        "<@x.test>",
        "<a..b@x.test>",
        "<.a@x.test>",
        "<a@-x.test>",
        "<a@x_y.test>",
        "<a@[300.1.1.1]>",
        "<a@[IPv6:zz]>",
        "<a b@x.test>",
        '<"a\x01"@x.test>',
        "<@r1.test a@x.test>",
        "<" + "a" * 65 + "@x.test>",
        "<a@" + "b" * 255 + ".test>",
        "<a@" + "b" * 64 + ".test>",
        "<a@" + ("b" * 60 + ".") * 5 + "test>",
    ],
)
def test_invalid_paths(text: str) -> None:
    with pytest.raises(AddressError):
        parse_path(text)


def test_utf8_needs_smtputf8() -> None:
    with pytest.raises(AddressError) as info:
        parse_path("<jos\u00e9@x.test>")
    assert info.value.non_ascii
    assert parse_path("<jos\u00e9@b\u00fccher.test>", utf8=True)[0] == EmailAddress(
        "jos\u00e9", "b\u00fccher.test"
    )


def test_str_quotes_when_needed() -> None:
    assert str(EmailAddress("a.b", "x.test")) == "a.b@x.test"
    assert str(EmailAddress('a b"c', "x.test")) == '"a b\\"c"@x.test'
    assert str(EmailAddress("Postmaster", "")) == "Postmaster"


def test_parameters() -> None:
    assert parse_parameters("SIZE=10 body=8BITMIME SMTPUTF8") == {
        "SIZE": "10",
        "BODY": "8BITMIME",
        "SMTPUTF8": None,
    }
    for bad in ("SIZE=1 SIZE=2", "-X=1", "X=a=b", "X="):
        with pytest.raises(AddressError):
            parse_parameters(bad)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_address_error(text: str) -> None:
    try:
        address, rest = parse_path("<" + text, utf8=True, null=True)
    except AddressError:
        return
    assert address is None or len(str(address).encode()) <= 256 + 2
    assert isinstance(rest, str)


def test_public_surface() -> None:
    import torsion.mail.smtp as smtp

    assert len(smtp.__all__) == len(set(smtp.__all__))
    for name in smtp.__all__:
        assert hasattr(smtp, name), name
    # Everything else in the package is private.
    # ("@py_..." names are what pytest's assertion rewriting adds.)
    public = [n for n in vars(smtp) if n not in smtp.__all__ and n[0] not in "_@"]
    assert public == []
    server_names = {"SMTPFactory", "SMTPServer", "SMTPServerConnection", "Delivery", "Session"}
    assert server_names <= set(smtp.__all__)


@pytest.mark.parametrize("utf8", [False, True])
def test_label_lengths_either_way(utf8: bool) -> None:
    longest = "b" * 63
    assert parse_path(f"<a@{longest}.test>", utf8=utf8)[0] == EmailAddress("a", f"{longest}.test")
    assert parse_path(f"<a@x.{longest}>", utf8=utf8)[0] == EmailAddress("a", f"x.{longest}")
    for domain in ("b" * 64 + ".test", "x." + "b" * 64, "x.test." + "\u00fc" * 32):
        with pytest.raises(AddressError):
            parse_path(f"<a@{domain}>", utf8=utf8)
    with pytest.raises(AddressError):
        parse_path("<a@-x.test>", utf8=utf8)
    domain = "b\u00fccher.test"
    assert parse_path(f"<a@{domain}>", utf8=True)[0] == EmailAddress("a", domain)
