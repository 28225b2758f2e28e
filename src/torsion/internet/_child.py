"""Setting a child process up: its descriptors, user and group, environment, program.

``spawn_process`` asks this module for everything that happens before the
program runs. ``check_child_fds`` checks what the caller asked the child's
descriptors to be, ``arrange`` makes the pipes (and pseudo-terminal) for them,
``user_and_group`` turns names into ids, ``find_program`` looks the program up
on the child's ``PATH``, and ``ChildSetup`` is the code that runs in the child
between fork and exec to put it all in place. ``spawn_failure`` reads back
why a child could not start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pty
import pwd
import shutil
import signal as _signal
import subprocess
import termios
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "ChildFD",
    "ChildSetup",
    "Descriptors",
    "StrPath",
    "arrange",
    "check_child_fds",
    "environment_bytes",
    "find_program",
    "spawn_failure",
    "user_and_group",
]

StrPath: TypeAlias = str | bytes | os.PathLike[str] | os.PathLike[bytes]

ChildFD: TypeAlias = Literal["r", "w"] | int
"""What a child's descriptor is connected to: "r", a pipe torsion reads (the
child writes); "w", a pipe torsion writes (the child reads); or the number of
a descriptor of this process, which the child gets a copy of."""


@dataclass
class Descriptors:
    """The descriptors a child gets, arranged before it starts.

    In the simple case the loop makes the standard pipes (``stdio`` holds
    ``subprocess.PIPE`` or a descriptor of ours for each of 0, 1, 2). Otherwise
    torsion makes every pipe itself and ``fds`` maps each child number to our
    descriptor that is copied there.
    """

    stdio: list[int] = field(default_factory=lambda: [subprocess.PIPE] * 3)
    fds: dict[int, int] = field(default_factory=dict)
    # Our copies of what the child gets: closed once it has started.
    child_ends: list[int] = field(default_factory=list)
    # Our ends of the pipes torsion reads and writes, by the child's number.
    reads: dict[int, int] = field(default_factory=dict)
    writes: dict[int, int] = field(default_factory=dict)
    pty_slave: int | None = None

    def close_child_ends(self) -> None:
        """Close our copies of what the child gets (once it has started, or failed to)."""
        while self.child_ends:
            os.close(self.child_ends.pop())

    def close_all(self) -> None:
        """Close every descriptor still held here: the spawn failed."""
        self.close_child_ends()
        for fd in [*self.reads.values(), *self.writes.values()]:
            os.close(fd)
        self.reads.clear()
        self.writes.clear()


def check_child_fds(child_fds: Mapping[int, ChildFD], use_pty: bool) -> dict[int, ChildFD]:
    """Check ``child_fds``; return what each child descriptor is to be."""
    wanted: dict[int, ChildFD] = {}
    for target, how in child_fds.items():
        if isinstance(how, bool) or not isinstance(how, int | str):
            raise ValueError(f"child_fds[{target}] must be 'r', 'w' or a descriptor")
        if target < 0:
            raise ValueError(f"child_fds: {target} is not a descriptor number")
        if target <= 2:
            if use_pty:
                raise ValueError("child_fds: 0, 1 and 2 are the terminal with use_pty")
            default = "w" if target == 0 else "r"
            if isinstance(how, str) and how != default:
                raise ValueError(f"child_fds: descriptor {target} can only be {default!r}")
        elif isinstance(how, str) and how not in ("r", "w"):
            raise ValueError(f"child_fds[{target}] must be 'r', 'w' or a descriptor")
        if isinstance(how, int):
            _check_open(target, how)
        wanted[target] = how
    return wanted


def arrange(wanted: Mapping[int, ChildFD], use_pty: bool, own: bool) -> Descriptors:
    """Make the pipes (and terminal) for a child: ``own`` means torsion makes all."""
    plan = Descriptors()
    if own and not use_pty:
        wanted = {0: "w", 1: "r", 2: "r", **wanted}
    try:
        if use_pty:
            master, slave = pty.openpty()
            plan.reads[1] = master
            plan.child_ends.append(slave)
            plan.pty_slave = slave
            plan.fds.update({0: slave, 1: slave, 2: slave})
        for target, how in sorted(wanted.items()):
            if not own:
                # Only 0, 1 and 2 get here: the loop's own arguments take them.
                if not isinstance(how, str):
                    plan.stdio[target] = how
            elif how == "r":
                read_end, write_end = os.pipe()
                plan.reads[target] = read_end
                plan.child_ends.append(write_end)
                plan.fds[target] = write_end
            elif how == "w":
                read_end, write_end = os.pipe()
                plan.writes[target] = write_end
                plan.child_ends.append(read_end)
                plan.fds[target] = read_end
            else:
                plan.fds[target] = how
    except BaseException:
        plan.close_all()
        raise
    if own:
        # The loop's pipes are not used: the child's setup puts ours in place.
        plan.stdio = [subprocess.DEVNULL] * 3
    return plan


def _check_open(target: int, fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError:
        raise ValueError(f"child_fds[{target}]: {fd} is not an open descriptor") from None


def user_and_group(uid: int | str | None, gid: int | str | None) -> tuple[int | None, int | None]:
    """Turn a user and group (names or numbers) into ids, as the child takes them on.

    Raises:
        ValueError: There is no such user or group.
    """
    user = None
    if isinstance(uid, str):
        try:
            user = pwd.getpwnam(uid)
        except KeyError:
            raise ValueError(f"no such user: {uid!r}") from None
        uid = user.pw_uid
    if isinstance(gid, str):
        try:
            gid = grp.getgrnam(gid).gr_gid
        except KeyError:
            raise ValueError(f"no such group: {gid!r}") from None
    if uid is not None and gid is None:
        # As su(1) does: the user's own group, not ours (root's).
        try:
            gid = (user or pwd.getpwuid(uid)).pw_gid
        except KeyError:
            raise ValueError(f"uid {uid} has no passwd entry: give gid too") from None
    return uid, gid


@dataclass(frozen=True)
class ChildSetup:
    """What the child does between fork and exec when torsion arranges it.

    Run as the loop's ``preexec_fn``, it ends by exec'ing the program itself,
    so that nothing the loop would do afterwards can undo it: uvloop runs the
    hook from its fork handler, before libuv's own, which closes libuv's
    internal descriptors, whose numbers the child may want. Only plain system
    calls run here: the child is a copy of a process that may have other
    threads, whose locks it must not touch. A failure is written to
    ``report`` as "errno:message" before the hook raises.
    """

    program: bytes
    argv: list[bytes]
    env: dict[bytes, bytes]
    fds: dict[int, int]
    report: int
    pty_slave: int | None
    cwd: StrPath | None
    uid: int | None
    gid: int | None
    set_groups: bool

    def __call__(self) -> None:
        report = self.report
        try:
            floor = max([2, *self.fds]) + 1
            report = fcntl.fcntl(report, fcntl.F_DUPFD_CLOEXEC, floor)
            if self.pty_slave is not None:
                # A session of its own, with the terminal as its controlling
                # terminal (setsid(2), ioctl_tty(2) TIOCSCTTY).
                os.setsid()
                fcntl.ioctl(self.pty_slave, termios.TIOCSCTTY, 0)
            # Every source out of the way first, so that placing one cannot
            # overwrite another; the copies close at exec.
            moved = {
                target: fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor)
                for target, source in self.fds.items()
            }
            for target, copy in moved.items():
                os.dup2(copy, target)  # inheritable
            _close_on_exec_except(set(self.fds))
            if self.cwd is not None:
                os.chdir(self.cwd)
            if self.gid is not None:
                if self.set_groups:
                    os.setgroups([self.gid])
                os.setgid(self.gid)
            if self.uid is not None:
                os.setuid(self.uid)
            # Whatever the loop blocked around fork, the program starts with
            # no signal blocked, as exec'd by subprocess or libuv.
            _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
            os.execve(self.program, self.argv, self.env)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.write(report, f"{exc.errno or 0}:{exc.strerror or exc}".encode())
            raise


def _close_on_exec_except(keep: set[int]) -> None:
    """Mark every descriptor from 3 on but ``keep`` close-on-exec (close_fds's job)."""
    try:
        numbers = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - no /proc
        numbers = list(range(3, os.sysconf("SC_OPEN_MAX")))
    for fd in numbers:
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):  # not open (or the listing's own)
                os.set_inheritable(fd, False)


def environment_bytes(env: Mapping[str, str] | None) -> dict[bytes, bytes]:
    """The child's environment as execve(2) takes it (ours when ``env`` is None)."""
    source = os.environ if env is None else env
    return {os.fsencode(key): os.fsencode(value) for key, value in source.items()}


def spawn_failure(exc: BaseException, report: int) -> BaseException:
    """Find out why the child did not start: from its report if it wrote one."""
    if report >= 0:
        os.set_blocking(report, False)
        try:
            written = os.read(report, 4096).decode(errors="replace")
        except OSError:
            written = ""
        code, _, message = written.partition(":")
        if code.isdigit():
            return OSError(int(code), message)
    # uvloop reports a failing hook as SubprocessError caused by the error.
    if isinstance(exc, subprocess.SubprocessError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def find_program(name: str, env: Mapping[str, str] | None) -> str:
    """Look a bare program name up on the child's PATH, as execvpe(3) would.

    Raises:
        FileNotFoundError: It is not there.
    """
    if os.sep in name:
        return name
    search = (os.environ if env is None else env).get("PATH", os.defpath)
    found = shutil.which(name, path=search)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "not found on PATH", name)
    return found
