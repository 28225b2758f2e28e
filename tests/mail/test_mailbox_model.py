"""The Maildir store against the in-memory one: any run of operations, the same mailboxes.

A hypothesis state machine applies one random sequence of appends, flag
changes, expunges, copies, moves and claims to both, and after each step
compares what a client can see. A second ``MaildirStore`` on the same
directory (as another process would open it) must see the same after a
refresh.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from torsion.mail import (
    ANSWERED,
    DELETED,
    FLAGGED,
    SEEN,
    FlagMode,
    Mailbox,
    MaildirStore,
    MemoryMailStore,
)
from torsion.testing import success_result_of

FLAGS = st.frozensets(st.sampled_from([SEEN, ANSWERED, FLAGGED, DELETED, "Work", "$Junk"]))
BODIES = st.binary(max_size=40).map(lambda body: b"Subject: t\r\n\r\n" + body)
BOXES = st.sampled_from(["INBOX", "Archive"])


def _view(box: Mailbox) -> list[tuple[int, int, frozenset[str]]]:
    return [(info.uid - 1, info.size, info.flags) for info in box.messages()]


class SameAsMemory(RuleBasedStateMachine):
    """Both stores, driven alike."""

    def __init__(self) -> None:
        """Make both stores, each with an INBOX and an Archive."""
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="maildir-model-")
        self.memory = MemoryMailStore()
        self.maildir = MaildirStore(self.directory)
        for store in (self.memory, self.maildir):
            store.create("Archive")

    def teardown(self) -> None:
        """Remove the Maildir."""
        shutil.rmtree(self.directory)

    def _both(self, name: str) -> tuple[Mailbox, Mailbox]:
        return self.memory.mailbox(name), self.maildir.mailbox(name)

    def _uids(self, name: str) -> list[int]:
        return [info.uid for info in self.memory.mailbox(name).messages()]

    @rule(name=BOXES, body=BODIES, flags=FLAGS)
    def append(self, name: str, body: bytes, flags: frozenset[str]) -> None:
        """Append one message to both."""
        memory, maildir = self._both(name)
        first = success_result_of(memory.append(body, flags=flags))
        second = success_result_of(maildir.append(body, flags=flags))
        # UIDs count from 1 in both, however the UIDVALIDITY differs.
        assert first == second

    @rule(body=BODIES)
    def deliver(self, body: bytes) -> None:
        """Deliver to both; the Maildir's open INBOX finds it at its refresh."""
        success_result_of(self.memory.deliver(body))
        success_result_of(self.maildir.deliver(body))
        self.maildir.mailbox("INBOX").refresh()

    @rule(name=BOXES, pick=st.integers(0, 10), flags=FLAGS, mode=st.sampled_from(FlagMode))
    def set_flags(self, name: str, pick: int, flags: frozenset[str], mode: FlagMode) -> None:
        """Change one message's flags in both."""
        uids = self._uids(name)
        chosen = uids[pick % len(uids)] if uids else 99
        memory, maildir = self._both(name)
        assert memory.set_flags([chosen], flags, mode) == maildir.set_flags([chosen], flags, mode)

    @rule(name=BOXES)
    def expunge(self, name: str) -> None:
        """Expunge both."""
        memory, maildir = self._both(name)
        assert memory.expunge() == maildir.expunge()

    @rule(name=BOXES, pick=st.integers(0, 10), move=st.booleans())
    def transfer(self, name: str, pick: int, move: bool) -> None:
        """Copy or move one message to the other mailbox in both."""
        other = "Archive" if name == "INBOX" else "INBOX"
        uids = self._uids(name)
        chosen = [uids[pick % len(uids)]] if uids else []
        results = []
        for store in (self.memory, self.maildir):
            source, target = store.mailbox(name), store.mailbox(other)
            action = source.move if move else source.copy
            results.append(success_result_of(action(chosen, target)))
        assert results[0] == results[1]

    @rule(name=BOXES)
    def claim(self, name: str) -> None:
        """Claim the recent messages in both."""
        memory, maildir = self._both(name)
        assert memory.claim_recent() == maildir.claim_recent()

    @precondition(lambda self: bool(self._uids("INBOX")))
    @rule(pick=st.integers(0, 10))
    def read(self, pick: int) -> None:
        """Read one message from both."""
        uids = self._uids("INBOX")
        uid = uids[pick % len(uids)]
        memory, maildir = self._both("INBOX")
        assert success_result_of(memory.read(uid)) == success_result_of(maildir.read(uid))

    @invariant()
    def same_view(self) -> None:
        """Each mailbox shows the same messages, sizes, flags and counts in both."""
        other_process = MaildirStore(self.directory)
        for name in ("INBOX", "Archive"):
            memory, maildir = self._both(name)
            assert _view(memory) == _view(maildir)
            assert memory.uidnext == maildir.uidnext
            mine, theirs = memory.status(), maildir.status()
            assert (mine.messages, mine.unseen, mine.recent) == (
                theirs.messages,
                theirs.unseen,
                theirs.recent,
            )
            reopened = other_process.mailbox(name)
            assert _view(reopened) == _view(maildir)
            assert reopened.uidvalidity == maildir.uidvalidity


SameAsMemory.TestCase.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)
test_maildir_behaves_as_memory = SameAsMemory.TestCase
