"""SSH keys: authorized_keys lines (property-tested), signatures of every key type, the checker."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cred_fakes import InlineThreads
from hypothesis import given
from hypothesis import strategies as st

from torsion.cred import (
    AuthorizedKeysChecker,
    PasswordFileError,
    SSHPublicKey,
    UnauthorizedLogin,
    parse_authorized_key,
    parse_authorized_keys,
    verify_signature,
)
from torsion.internet import IPv4Address, IPv6Address, UNIXAddress
from torsion.testing import failure_result_of, require_peer, success_result_of

pytest.importorskip("cryptography", reason="SSH keys need the cred extra (cryptography)")

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def ssh_mpint(value: int) -> bytes:
    length = (value.bit_length() + 8) // 8  # room for the sign bit
    return ssh_string(value.to_bytes(length, "big", signed=True))


class Key:
    """A private key made on the fly, and how it signs in SSH's format."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.private: Any
        if kind == "ssh-ed25519":
            self.private = ed25519.Ed25519PrivateKey.generate()
        elif kind.startswith("ecdsa-sha2-"):
            curve = {"nistp256": ec.SECP256R1, "nistp384": ec.SECP384R1, "nistp521": ec.SECP521R1}
            self.private = ec.generate_private_key(curve[kind.rsplit("-", 1)[1]]())
        else:
            bits = int(kind.partition(":")[2] or 2048)
            self.kind = "ssh-rsa"
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        line = self.private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        self.line = line.decode()
        self.blob = base64.b64decode(line.split()[1])

    def sign(self, data: bytes, algorithm: str | None = None) -> bytes:
        algorithm = algorithm or ("rsa-sha2-256" if self.kind == "ssh-rsa" else self.kind)
        if self.kind == "ssh-ed25519":
            raw = self.private.sign(data)
        elif self.kind.startswith("ecdsa-sha2-"):
            digest = {"256": hashes.SHA256, "384": hashes.SHA384, "521": hashes.SHA512}
            der = self.private.sign(data, ec.ECDSA(digest[self.kind[-3:]]()))
            r, s = decode_dss_signature(der)
            raw = ssh_mpint(r) + ssh_mpint(s)
        else:
            digest_for = {"rsa-sha2-256": hashes.SHA256, "rsa-sha2-512": hashes.SHA512}
            hash_type = digest_for.get(algorithm, hashes.SHA1)
            raw = self.private.sign(data, padding.PKCS1v15(), hash_type())
        return ssh_string(algorithm.encode()) + ssh_string(raw)


_keys: dict[str, Key] = {}


def key(kind: str) -> Key:
    """One key of each kind per test session: RSA keys are slow to make."""
    if kind not in _keys:
        _keys[kind] = Key(kind)
    return _keys[kind]


# -- authorized_keys lines ----------------------------------------------------------


def test_a_line_with_options_and_a_comment() -> None:
    ed = key("ssh-ed25519")
    line = (
        'from="192.0.2.0/24,!192.0.2.5",command="echo \\"hi, there\\"",no-pty,Restrict '
        f"{ed.line} alice@laptop (work)"
    )
    parsed = parse_authorized_key(line, number=3)
    assert parsed is not None
    assert parsed.key_type == "ssh-ed25519"
    assert parsed.blob == ed.blob
    assert parsed.comment == "alice@laptop (work)"
    assert parsed.line == 3
    assert parsed.options == (
        ("from", "192.0.2.0/24,!192.0.2.5"),
        ("command", 'echo "hi, there"'),
        ("no-pty", None),
        ("restrict", None),
    )
    assert parsed.option("command") == 'echo "hi, there"'
    assert parsed.has_option("restrict")
    assert parsed.option("restrict") is None
    assert not parsed.is_certificate_authority


def test_blank_lines_comments_and_bad_lines() -> None:
    ed = key("ssh-ed25519")
    text = "\n".join(
        [
            "# my keys",
            "",
            ed.line,
            "ssh-ed25519 !!notbase64!!",
            'command="unterminated ' + ed.line,
            "ssh-rsa " + ed.line.split()[1],  # an ed25519 key called RSA
            "ssh-foo AAAA",
            "ssh-dss " + base64.b64encode(ssh_string(b"ssh-dss") + b"rest").decode(),
        ]
    )
    keys, errors = parse_authorized_keys(text, path="keys")
    assert [(k.key_type, k.line) for k in keys] == [("ssh-ed25519", 3), ("ssh-dss", 8)]
    assert [e.line for e in errors] == [4, 5, 6, 7]
    assert "keys:6: the key says b'ssh-ed25519'" in str(errors[2])
    assert parse_authorized_key("   # indented comment") is None


option_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda name: name not in {"ssh-rsa", "ssh-dss"}
)
option_values = st.one_of(
    st.none(),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
        max_size=30,
    ),
)


@given(st.lists(st.tuples(option_names, option_values), max_size=5), st.text(max_size=20))
def test_options_read_back_as_written(options: list[tuple[str, str | None]], comment: str) -> None:
    comment = " ".join(comment.split())
    rendered = ",".join(
        name if value is None else f'{name}="{value.replace(chr(34), chr(92) + chr(34))}"'
        for name, value in options
    )
    line = f"{rendered} {key('ssh-ed25519').line} {comment}".strip()
    parsed = parse_authorized_key(line)
    assert parsed is not None
    assert parsed.options == tuple(options)
    assert parsed.comment == comment


@given(st.text(max_size=200))
def test_any_text_reads_without_raising(text: str) -> None:
    keys, errors = parse_authorized_keys(text)
    assert all(isinstance(error, PasswordFileError) for error in errors)
    assert all(k.blob for k in keys)


# -- from= and expiry-time= ---------------------------------------------------------


def _with(options: str) -> Any:
    parsed = parse_authorized_key(f"{options} {key('ssh-ed25519').line}")
    assert parsed is not None
    return parsed


@pytest.mark.parametrize(
    ("patterns", "address", "allowed"),
    [
        ("192.0.2.0/24", "192.0.2.9", True),
        ("192.0.2.0/24,!192.0.2.5", "192.0.2.5", False),
        ("192.0.2.*", "192.0.2.77", True),
        ("10.?.0.1", "10.3.0.1", True),
        ("10.?.0.1", "10.33.0.1", False),
        ("2001:db8::/32", "2001:db8:5::1", True),
        ("192.0.2.0/24", "::ffff:192.0.2.1", True),  # IPv4-mapped
        ("host.example.com", "192.0.2.1", False),  # names are never looked up
        ("*", "198.51.100.1", True),
        ("!198.51.100.1,*", "198.51.100.1", False),
    ],
)
def test_from_patterns(patterns: str, address: str, allowed: bool) -> None:
    client = (IPv6Address if ":" in address else IPv4Address)(address, 22)
    assert _with(f'from="{patterns}"').allows_from(client) is allowed


def test_from_refuses_clients_without_an_address() -> None:
    assert not _with('from="*"').allows_from(UNIXAddress(None))
    assert not _with('from="*"').allows_from(None)
    assert _with("no-pty").allows_from(None)
    assert not _with("from").allows_from(IPv4Address("192.0.2.1", 1))  # no value: no access


def test_expiry_time() -> None:
    now = time.time()
    assert _with('expiry-time="20000101"').expired(now)
    assert not _with('expiry-time="29991231235959Z"').expired(now)
    assert _with('expiry-time="20300101Z"').expired(1_900_000_000.0)
    assert _with('expiry-time="soon"').expired(now)  # unreadable: expired
    assert not _with("restrict").expired(now)


# -- signatures ---------------------------------------------------------------------

KINDS = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
]


@pytest.mark.parametrize("kind", KINDS)
def test_signatures_of_every_key_type(kind: str) -> None:
    signer, other = key(kind), key("ssh-ed25519" if kind != "ssh-ed25519" else "ssh-rsa")
    data = b"session id and request"
    signature = signer.sign(data)
    assert verify_signature(signer.blob, data, signature)
    assert not verify_signature(signer.blob, data + b"!", signature)
    assert not verify_signature(other.blob, data, signature)
    named = "rsa-sha2-256" if kind == "ssh-rsa" else kind
    assert verify_signature(signer.blob, data, signature, algorithm=named)
    assert not verify_signature(signer.blob, data, signature, algorithm="ssh-ed448")


def test_rsa_sha2_512_and_sha1() -> None:
    signer = key("ssh-rsa")
    assert verify_signature(signer.blob, b"x", signer.sign(b"x", "rsa-sha2-512"))
    sha1 = signer.sign(b"x", "ssh-rsa")
    assert not verify_signature(signer.blob, b"x", sha1)  # SHA-1: refused by default
    assert verify_signature(signer.blob, b"x", sha1, allow_sha1=True)


def test_small_rsa_keys_are_refused() -> None:
    small = key("rsa:1024")
    signature = small.sign(b"x")
    assert not verify_signature(small.blob, b"x", signature)
    assert verify_signature(small.blob, b"x", signature, min_rsa_bits=1024)


def test_a_signature_of_another_type_than_the_key() -> None:
    ed = key("ssh-ed25519")
    raw = ed.private.sign(b"x")
    for name in (b"ecdsa-sha2-nistp256", b"rsa-sha2-256"):
        assert not verify_signature(ed.blob, b"x", ssh_string(name) + ssh_string(raw))


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_garbage_never_verifies_and_never_raises(blob_tail: bytes, signature: bytes) -> None:
    ed = key("ssh-ed25519")
    assert not verify_signature(ed.blob, b"x", signature)
    assert not verify_signature(ssh_string(b"ssh-ed25519") + blob_tail, b"x", signature)
    assert not verify_signature(blob_tail, b"x", ed.sign(b"x"))


# -- against OpenSSH's own keys and signatures --------------------------------------


def _sshsig_signed_data(namespace: bytes, hash_name: bytes, message: bytes) -> bytes:
    # PROTOCOL.sshsig: what ssh-keygen -Y sign signs.
    digest = hashlib.new(hash_name.decode(), message).digest()
    return (
        b"SSHSIG"
        + ssh_string(namespace)
        + ssh_string(b"")
        + ssh_string(hash_name)
        + ssh_string(digest)
    )


@pytest.mark.parametrize(
    ("keytype", "bits"), [("ed25519", None), ("ecdsa", "384"), ("rsa", "3072")]
)
def test_keys_and_signatures_made_by_ssh_keygen(
    tmp_path: Path, keytype: str, bits: str | None
) -> None:
    program = require_peer("ssh-keygen", package="openssh-client")
    private = tmp_path / "id"
    size = ["-b", bits] if bits else []
    subprocess.run(
        [program, "-q", "-t", keytype, *size, "-N", "", "-C", "made@here", "-f", str(private)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    public = parse_authorized_key((tmp_path / "id.pub").read_text())
    assert public is not None
    assert public.comment == "made@here"
    message = tmp_path / "message"
    message.write_bytes(b"sign me")
    subprocess.run(
        [program, "-Y", "sign", "-f", str(private), "-n", "torsion-test", str(message)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    armored = (tmp_path / "message.sig").read_text().splitlines()
    body = base64.b64decode("".join(armored[1:-1]))
    assert body.startswith(b"SSHSIG")
    fields = body[10:]  # after the magic and the version

    def take(data: bytes) -> tuple[bytes, bytes]:
        length = int.from_bytes(data[:4], "big")
        return data[4 : 4 + length], data[4 + length :]

    blob, fields = take(fields)
    namespace, fields = take(fields)
    _, fields = take(fields)  # reserved
    hash_name, fields = take(fields)
    signature, fields = take(fields)
    assert blob == public.blob
    signed = _sshsig_signed_data(namespace, hash_name, b"sign me")
    assert verify_signature(public.blob, signed, signature)
    assert not verify_signature(public.blob, signed + b"x", signature)


# -- the checker --------------------------------------------------------------------


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    return directory


def write_keys(directory: Path, user: str, *lines: str, mode: int = 0o600) -> Path:
    path = directory / user
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, mode)
    return path


def login(
    user: str, signer: Key, data: bytes = b"request", *, signed: bool = True
) -> SSHPublicKey:
    algorithm = "rsa-sha2-256" if signer.kind == "ssh-rsa" else signer.kind
    signature = signer.sign(data, algorithm) if signed else None
    return SSHPublicKey(user, algorithm, signer.blob, data if signed else None, signature)


CLIENT = IPv4Address("192.0.2.10", 50000)


def test_checker_accepts_a_listed_key_with_a_good_signature(
    keys_dir: Path, threads: InlineThreads
) -> None:
    ed, ec256 = key("ssh-ed25519"), key("ecdsa-sha2-nistp256")
    write_keys(keys_dir, "alice", "# alice's keys", ed.line, f"no-pty {ec256.line} phone")
    checker = AuthorizedKeysChecker(threads, path_template=f"{keys_dir}/%u")
    assert success_result_of(checker.request_avatar_id(login("alice", ed), CLIENT)) == "alice"
    assert success_result_of(checker.request_avatar_id(login("alice", ec256), CLIENT)) == "alice"
    found = success_result_of(checker.find_key("alice", ec256.blob, CLIENT))
    assert found is not None
    assert found.options == (("no-pty", None),)
    assert found.comment == "phone"
    assert threads.jobs == 3


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        (lambda: login("alice", key("ecdsa-sha2-nistp384")), "key not authorized"),
        (lambda: login("bob", key("ssh-ed25519")), "key not authorized"),
        (
            lambda: login("alice", key("ssh-ed25519"), signed=False),
            "public key offered without a signature",
        ),
        (
            lambda: SSHPublicKey(
                "alice",
                "ssh-ed25519",
                key("ssh-ed25519").blob,
                b"request",
                key("ssh-ed25519").sign(b"other"),
            ),
            "bad signature",
        ),
        (lambda: login("../keys/alice", key("ssh-ed25519")), "key not authorized"),
        (lambda: login("", key("ssh-ed25519")), "key not authorized"),
    ],
)
def test_checker_refusals(
    keys_dir: Path, threads: InlineThreads, credentials: Any, reason: str
) -> None:
    write_keys(keys_dir, "alice", key("ssh-ed25519").line)
    checker = AuthorizedKeysChecker(threads, path_template=f"{keys_dir}/%u")
    error = failure_result_of(checker.request_avatar_id(credentials(), CLIENT), UnauthorizedLogin)
    assert error.reason == reason
    assert str(error) == "login failed"


def test_checker_applies_from_expiry_and_cert_authority(
    keys_dir: Path, threads: InlineThreads
) -> None:
    ed, ec256, rsa_key = key("ssh-ed25519"), key("ecdsa-sha2-nistp256"), key("ssh-rsa")
    write_keys(
        keys_dir,
        "alice",
        f'from="192.0.2.0/24" {ed.line}',
        f'expiry-time="20000101" {ec256.line}',
        f"cert-authority {rsa_key.line}",
    )
    checker = AuthorizedKeysChecker(threads, path_template=f"{keys_dir}/%u")
    assert success_result_of(checker.request_avatar_id(login("alice", ed), CLIENT)) == "alice"
    elsewhere = IPv4Address("198.51.100.1", 1)
    failure_result_of(checker.request_avatar_id(login("alice", ed), elsewhere), UnauthorizedLogin)
    failure_result_of(checker.request_avatar_id(login("alice", ec256), CLIENT), UnauthorizedLogin)
    # A CA key signs certificates; it is not a key alice may log in with.
    failure_result_of(
        checker.request_avatar_id(login("alice", rsa_key), CLIENT), UnauthorizedLogin
    )


def test_checker_refuses_files_others_may_write(keys_dir: Path, threads: InlineThreads) -> None:
    ed = key("ssh-ed25519")
    write_keys(keys_dir, "alice", ed.line, mode=0o620)
    strict = AuthorizedKeysChecker(threads, path_template=f"{keys_dir}/%u")
    failure_result_of(strict.request_avatar_id(login("alice", ed), CLIENT), UnauthorizedLogin)
    lax = AuthorizedKeysChecker(threads, path_template=f"{keys_dir}/%u", strict_modes=False)
    assert success_result_of(lax.request_avatar_id(login("alice", ed), CLIENT)) == "alice"


def test_checker_reads_edits_at_once(keys_dir: Path, threads: InlineThreads) -> None:
    ed = key("ssh-ed25519")
    checker = AuthorizedKeysChecker(threads, path_template=f"{keys_dir}/%u")
    failure_result_of(checker.request_avatar_id(login("alice", ed), CLIENT), UnauthorizedLogin)
    write_keys(keys_dir, "alice", ed.line)
    assert success_result_of(checker.request_avatar_id(login("alice", ed), CLIENT)) == "alice"
    write_keys(keys_dir, "alice", "# revoked")
    failure_result_of(checker.request_avatar_id(login("alice", ed), CLIENT), UnauthorizedLogin)


def test_templates(tmp_path: Path, threads: InlineThreads) -> None:
    checker = AuthorizedKeysChecker(threads)
    assert checker.keys_file("root") == "/root/.ssh/authorized_keys"
    assert checker.keys_file("no-such-user-here") is None
    assert AuthorizedKeysChecker(threads, path_template="/k/%u%%").keys_file("bob") == "/k/bob%"
    for bad in ("..", ".", "a/b", "-x", "a\0b", "x" * 256):
        assert checker.keys_file(bad) is None
    with pytest.raises(ValueError, match="%x"):
        AuthorizedKeysChecker(threads, path_template="/k/%x")
