"""Credentials: challenge-response proofs against their RFCs' examples; no secrets shown."""

from __future__ import annotations

import pytest

from torsion.cred import (
    APOP,
    Anonymous,
    BearerToken,
    CramMD5,
    HTTPDigest,
    SSHPublicKey,
    UsernamePassword,
    apop_challenge,
    apop_digest,
    cram_md5_challenge,
    cram_md5_response,
    http_digest_response,
)


def test_username_password_compares_and_hides_the_password() -> None:
    credentials = UsernamePassword("alice", "s3cret")
    assert credentials.check_password("s3cret")
    assert not credentials.check_password("s3cret ")
    assert not credentials.check_password("")
    assert "s3cret" not in repr(credentials)
    assert "alice" in repr(credentials)


def test_cram_md5_matches_rfc_2195() -> None:
    # RFC 2195 section 2's example.
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert cram_md5_response("tanstaaftanstaaf", challenge) == "b913a602c7eda7a495b4e6e7334d3890"
    credentials = CramMD5("tim", challenge, "B913A602C7EDA7A495B4E6E7334D3890")
    assert credentials.check_secret("tanstaaftanstaaf")
    assert not credentials.check_secret("tanstaaf")


def test_apop_matches_rfc_1939() -> None:
    # RFC 1939 section 7's example.
    timestamp = b"<1896.697170952@dbc.mtview.ca.us>"
    assert apop_digest("tanstaaf", timestamp) == "c4c9334bac560ecc979e58001b3e22fb"
    credentials = APOP("mrose", timestamp, "c4c9334bac560ecc979e58001b3e22fb")
    assert credentials.check_secret("tanstaaf")
    assert not credentials.check_secret("tanstaaF")


RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "method": "GET",
    "uri": "/dir/index.html",
    "qop": "auth",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_http_digest_matches_rfc_7616(algorithm: str, expected: str) -> None:
    # RFC 7616 section 3.9.1's example.
    response = http_digest_response(secret="Circle of Life", algorithm=algorithm, **RFC7616)
    assert response == expected
    credentials = HTTPDigest(response=expected, algorithm=algorithm, **RFC7616)
    assert credentials.check_secret("Circle of Life")
    assert not credentials.check_secret("circle of life")


def test_http_digest_sess_and_rfc_2069_forms() -> None:
    fields = {**RFC7616, "qop": None}
    plain = http_digest_response(secret="pw", algorithm="MD5", **fields)
    assert HTTPDigest(response=plain, algorithm="MD5", **fields).check_secret("pw")
    session = http_digest_response(secret="pw", algorithm="SHA-256-sess", **RFC7616)
    assert session != http_digest_response(secret="pw", algorithm="SHA-256", **RFC7616)
    assert HTTPDigest(response=session, algorithm="SHA-256-sess", **RFC7616).check_secret("pw")


def test_http_digest_with_an_unknown_algorithm_or_qop_fails_closed() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        http_digest_response(secret="pw", algorithm="SHA-1", **RFC7616)
    assert not HTTPDigest(response="00", algorithm="SHA-1", **RFC7616).check_secret("pw")
    fields = {**RFC7616, "qop": "auth-int"}
    assert not HTTPDigest(response="00", algorithm="MD5", **fields).check_secret("pw")


def test_challenges_are_fresh_and_bracketed() -> None:
    for make in (cram_md5_challenge, apop_challenge):
        first, second = make("mail.example"), make("mail.example")
        assert first != second
        assert first.startswith(b"<")
        assert first.endswith(b"@mail.example>")


def test_secrets_never_show_in_repr() -> None:
    key = SSHPublicKey("alice", "ssh-ed25519", b"BLOB", b"SIGNED", b"SIGNATURE")
    assert "BLOB" not in repr(key)
    assert "SIGNATURE" not in repr(key)
    assert "tok-123" not in repr(BearerToken("tok-123"))
    assert repr(Anonymous()) == "Anonymous()"
