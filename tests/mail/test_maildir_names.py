"""Mailbox names on disk: modified UTF-7 (RFC 3501 section 5.1.3) and no way out of the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torsion.mail import (
    InvalidMailboxNameError,
    MailboxError,
    MaildirStore,
    check_mailbox_name,
    decode_modified_utf7,
    encode_modified_utf7,
)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("INBOX", "INBOX"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
        ("Entwürfe", "Entw&APw-rfe"),
        ("A&B", "A&-B"),
        ("&", "&-"),
        ("😀", "&2D3eAA-"),  # outside the BMP: a surrogate pair
        ("", ""),
    ],
)
def test_modified_utf7_vectors(text: str, encoded: str) -> None:
    assert encode_modified_utf7(text) == encoded
    assert decode_modified_utf7(encoded) == text


@pytest.mark.parametrize(
    "bad",
    ["&", "&U,BTFw", "&AGE-", "&&-", "a\u00e9", "&U,BTFw-&ZeVnLIqe-", "&=-", "&Ug-", "\x00"],
)
def test_modified_utf7_refuses_what_is_not(bad: str) -> None:
    # "&AGE-" spells "a", which must stand for itself; two shifted runs
    # back to back are a second spelling of one name.
    with pytest.raises(ValueError, match="modified UTF-7"):
        decode_modified_utf7(bad)


@given(st.text())
def test_modified_utf7_round_trips(text: str) -> None:
    encoded = encode_modified_utf7(text)
    assert all(" " <= char <= "~" for char in encoded)
    assert decode_modified_utf7(encoded) == text


@given(st.text(min_size=1, max_size=40))
def test_no_accepted_name_leaves_the_store(name: str) -> None:
    try:
        checked = check_mailbox_name(name)
    except InvalidMailboxNameError:
        return
    directory = "." + encode_modified_utf7(checked)
    assert "/" not in directory
    assert "\x00" not in directory
    assert directory not in (".", "..")
    root = "/srv/mail/alice"
    assert os.path.dirname(os.path.normpath(os.path.join(root, directory))) == root


def test_folders_are_named_in_modified_utf7_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    store.create("Entwürfe.Ältere")
    assert sorted(name for name in os.listdir(root) if name.startswith(".")) == [
        ".Entw&APw-rfe",
        ".Entw&APw-rfe.&AMQ-ltere",
    ]
    assert store.list_mailboxes() == ["Entwürfe", "Entwürfe.Ältere", "INBOX"]


def test_folders_another_server_named_are_read_and_odd_ones_skipped(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    store = MaildirStore(root)
    for directory in (".&U,BTFw-", ".bad&name", ".a..b", ".x&AGE-"):
        for sub in ("tmp", "new", "cur"):
            (root / directory / sub).mkdir(parents=True)
    (root / ".notafolder").mkdir()
    assert store.list_mailboxes() == ["INBOX", "台北"]
    assert store.mailbox("台北").messages() == []


def test_a_name_too_long_on_disk_is_refused(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "Maildir")
    with pytest.raises(InvalidMailboxNameError):
        store.create("日" * 120)  # 120 characters, 322 octets once encoded
    with pytest.raises(MailboxError):
        store.mailbox("日" * 120)
    assert store.list_mailboxes() == ["INBOX"]
