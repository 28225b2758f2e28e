"""Starting child processes: ``spawn_process``, and keeping track of the children.

``spawn_process`` starts a program with the loop's own ``subprocess_exec``
(so asyncio or uvloop reads its pipes) and connects a ``ProcessProtocol`` to
it through a ``ProcessTransport`` (see ``torsion.internet._process``). When
the child needs more than the loop offers (extra descriptors, a
pseudo-terminal, another user, or any child on uvloop) the pipes are made
here and ``ChildSetup`` puts them in place between fork and exec (see
``torsion.internet._child``). A ``ProcessTracker`` holds the spawns under way
and the children not yet ended, so that the reactor can end them when it
closes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from torsion.defer import Deferred
from torsion.errors import CannotSpawnError
from torsion.internet._child import (
    ChildFD,
    ChildSetup,
    Descriptors,
    StrPath,
    arrange,
    check_child_fds,
    environment_bytes,
    find_program,
    spawn_failure,
    user_and_group,
)
from torsion.internet._fdesc import FDWriteTransport, RawPipe
from torsion.internet._process import (
    ChildProcess,
    ProcessProtocol,
    ProcessTransport,
    _OwnPipe,
    _SubprocessEvents,
)

__all__ = ["ProcessTracker", "ReactorProcess", "spawn_process", "spawn_tracked"]


# -- the children an owner started ------------------------------------------------------------


class ProcessTracker:
    """The spawns under way and the children not yet ended, of one owner (a reactor).

    A child is tracked from the moment its spawn begins until
    ``process_ended`` (or until its spawn failed with no child started), so
    that its owner can end whatever is left when it closes: ``end_all``,
    then, on a loop that can still run, ``wait_idle``.
    """

    def __init__(self) -> None:
        self._spawns: set[asyncio.Task[ChildProcess]] = set()
        self._transports: set[ProcessTransport] = set()
        self._idle: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        """Return how many spawns are under way and children not yet ended."""
        return len(self._spawns) + len(self._transports)

    @property
    def pids(self) -> list[int]:
        """The process ids of the children started and not yet ended."""
        return sorted(t._pid for t in self._transports if t._pid is not None)

    def end_all(self) -> None:
        """Cancel every spawn under way, kill every child (SIGKILL) and close its pipes.

        The rest happens on the loop: the children exit and are reaped, the
        pipes close their descriptors, each protocol hears
        ``process_ended``; ``wait_idle`` waits for it.
        """
        for task in list(self._spawns):
            task.cancel()
        for transport in list(self._transports):
            transport.close()

    def kill_all(self) -> None:
        """Only kill every child still running (for a loop that can run no more)."""
        for transport in list(self._transports):
            transport.kill()

    async def wait_idle(self) -> None:
        """Wait until no spawn is under way and every child has ended."""
        while self:
            self._idle = asyncio.get_running_loop().create_future()
            try:
                await self._idle
            finally:
                self._idle = None

    def _add(self, transport: ProcessTransport) -> None:
        if not transport._ended:
            self._transports.add(transport)

    def _discard(self, transport: ProcessTransport) -> None:
        self._transports.discard(transport)
        self._wake()

    def _add_spawn(self, task: asyncio.Task[ChildProcess]) -> None:
        self._spawns.add(task)
        task.add_done_callback(self._spawn_done)

    def _spawn_done(self, task: asyncio.Task[ChildProcess]) -> None:
        self._spawns.discard(task)
        self._wake()

    def _wake(self) -> None:
        if not self and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def __repr__(self) -> str:
        return f"<ProcessTracker spawning={len(self._spawns)} pids={self.pids}>"


# -- starting a child --------------------------------------------------------------------------


def spawn_process(
    loop: asyncio.AbstractEventLoop,
    protocol: ProcessProtocol,
    executable: StrPath,
    args: Sequence[StrPath] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    path: StrPath | None = None,
    uid: int | str | None = None,
    gid: int | str | None = None,
    use_pty: bool = False,
    child_fds: Mapping[int, ChildFD] | None = None,
) -> Deferred[ChildProcess]:
    """Start ``executable`` as a child process connected to ``protocol``.

    In the simple case (standard pipes, no user, no terminal, an asyncio
    loop) the loop's own ``subprocess_exec`` does everything. Otherwise
    torsion makes the pipes (the loop's pipe transports read and write them)
    and the child, after the loop's fork, puts them in place, enters
    ``path``, takes on the user and group, and execs the program itself.

    Args:
        loop: The loop that runs the child's pipes.
        protocol: Hears the child's output and end (see ``ProcessProtocol``).
        executable: The program: a path, or a name looked up on the ``PATH``
            of ``env`` (of this process when ``env`` is None).
        args: The whole argument vector, ``argv[0]`` included, as execve(2)
            takes it; ``[executable]`` if None.
        env: The child's whole environment; None passes this process's own
            (``os.environ``), as ``subprocess`` does; ``{}`` gives an empty one.
        path: The child's working directory (this process's if None).
        uid: The user to run as (a number or a name); this process must be
            allowed to (root). The group then defaults to the user's own, and
            the supplementary groups become just that group.
        gid: The group to run as (a number or a name).
        use_pty: Give the child a new pseudo-terminal as its standard input,
            output and error, and as its controlling terminal in a session of
            its own. Its output, errors included, arrives as descriptor 1;
            what is written goes to the terminal, which echoes it back unless
            the child turns echo off.
        child_fds: More descriptors for the child, or other ones for 0, 1, 2:
            child number -> "r" (a pipe whose output arrives through
            ``child_data_received``), "w" (a pipe fed by ``write_to_child``)
            or one of our descriptors (the child gets a copy at that number;
            ours stays open). 0 may only be "w" or a descriptor, 1 and 2 "r"
            or a descriptor. Other descriptors of ours are not inherited.

    Returns:
        A Deferred that fires with the transport once the child runs (after
        ``protocol.connection_made``), or fails with ``CannotSpawnError``
        (and nothing is called on the protocol). Cancelling it before then
        kills the child.

    Raises:
        ValueError: ``args``, ``child_fds``, ``uid`` or ``gid`` make no sense.

    POSIX only. Setting the child up runs Python code between fork and exec
    (``subprocess``'s ``preexec_fn``), so it is not available in
    subinterpreters; that code makes only system calls, so that a lock some
    other thread held at the fork cannot hang the child. The descriptors the
    child must not inherit are found in ``/proc/self/fd`` (Linux), else by
    trying every number up to the process's limit.
    """
    return spawn_tracked(
        None,
        loop,
        protocol,
        executable,
        args,
        env=env,
        path=path,
        uid=uid,
        gid=gid,
        use_pty=use_pty,
        child_fds=child_fds,
    )


def spawn_tracked(
    tracker: ProcessTracker | None,
    loop: asyncio.AbstractEventLoop,
    protocol: ProcessProtocol,
    executable: StrPath,
    args: Sequence[StrPath] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    path: StrPath | None = None,
    uid: int | str | None = None,
    gid: int | str | None = None,
    use_pty: bool = False,
    child_fds: Mapping[int, ChildFD] | None = None,
) -> Deferred[ChildProcess]:
    """``spawn_process``, with the spawn and the child kept in ``tracker`` until it ends."""
    argv = [executable] if args is None else list(args)
    if not argv:
        raise ValueError("args must hold at least argv[0]")
    user, group = user_and_group(uid, gid)
    extra = child_fds or {}
    # Popen (asyncio's loops) closes what the child should not inherit and
    # can set argv[0] apart. uvloop leaves extra copies of the child's pipe
    # ends open in it (so that the child closing its output does not end
    # that output for us) and cannot set argv[0]: there, torsion sets every
    # child up.
    own = (
        use_pty
        or user is not None
        or group is not None
        or any(fd > 2 for fd in extra)
        or not isinstance(loop, asyncio.BaseEventLoop)
    )
    wanted = check_child_fds(extra, use_pty)
    spawning = _spawn(
        loop, protocol, executable, argv, env, path, user, group, wanted, use_pty, own, tracker
    )
    task = loop.create_task(spawning)
    if tracker is not None:
        tracker._add_spawn(task)
    return Deferred.from_future(task)


async def _spawn(
    loop: asyncio.AbstractEventLoop,
    protocol: ProcessProtocol,
    executable: StrPath,
    argv: list[StrPath],
    env: Mapping[str, str] | None,
    cwd: StrPath | None,
    uid: int | None,
    gid: int | None,
    wanted: Mapping[int, ChildFD],
    use_pty: bool,
    own: bool,
    tracker: ProcessTracker | None,
) -> ProcessTransport:
    name = os.fsdecode(executable)
    transport = ProcessTransport(loop, protocol, pty_master=use_pty, tracker=tracker)
    report = -1
    # Made here, not when called: a task cancelled before it starts runs none
    # of its code, not even a finally clause.
    plan = Descriptors()
    try:
        plan = arrange(wanted, use_pty, own)
        await _connect_own_pipes(loop, transport, plan)
        try:
            program = find_program(name, env)
        except FileNotFoundError as exc:
            raise CannotSpawnError(name, exc) from None
        kwargs: dict[str, Any] = {"env": env}
        first: StrPath = program
        if isinstance(loop, asyncio.BaseEventLoop) and argv[0] != program:
            kwargs["executable"] = program
            first = argv[0]
        if own:
            report_read, report = os.pipe()
            plan.child_ends.append(report_read)  # closed after the spawn, like the others
            plan.child_ends.append(report)
            kwargs["preexec_fn"] = ChildSetup(
                program=os.fsencode(program),
                argv=[os.fsencode(arg) for arg in argv],
                env=environment_bytes(env),
                fds=plan.fds,
                report=report,
                pty_slave=plan.pty_slave,
                cwd=cwd,
                uid=uid,
                gid=gid,
                set_groups=gid is not None and os.geteuid() == 0,
            )
            report = report_read
        else:
            kwargs["cwd"] = cwd
        try:
            await loop.subprocess_exec(
                lambda: _SubprocessEvents(transport),
                first,
                *argv[1:],
                stdin=plan.stdio[0],
                stdout=plan.stdio[1],
                stderr=plan.stdio[2],
                **kwargs,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise CannotSpawnError(name, spawn_failure(exc, report)) from exc
    except BaseException:
        plan.close_all()
        await transport._abandon()
        if transport._subprocess is None and tracker is not None:
            # No child came of it (asyncio reaps one it started and gave up on).
            tracker._discard(transport)
        raise
    plan.close_child_ends()
    return transport


async def _connect_own_pipes(
    loop: asyncio.AbstractEventLoop, transport: ProcessTransport, plan: Descriptors
) -> None:
    """Connect our ends of the "r"/"w" pipes and of the terminal to the loop.

    Readers start paused: the protocol hears nothing before connection_made.
    """
    for fd, read_end in list(plan.reads.items()):
        if fd == 1 and plan.pty_slave is not None:
            # Writing to the terminal: uvloop's write pipe transport would
            # read from it too (and swallow the echo), so write with add_writer.
            written = os.dup(read_end)
            done: asyncio.Future[None] = loop.create_future()
            writer = FDWriteTransport(loop, written, _OwnPipe(transport, 0, done), pollable=True)
            transport._pty_fd = written
            transport._add_writer(0, writer, done)
        done = loop.create_future()
        pipe = RawPipe(read_end)
        del plan.reads[fd]  # the pipe object owns it now
        reader, _ = await loop.connect_read_pipe(
            functools.partial(_OwnPipe, transport, fd, done), pipe
        )
        reader.pause_reading()
        transport._add_reader(fd, reader, done)
    for fd, write_end in list(plan.writes.items()):
        done = loop.create_future()
        pipe = RawPipe(write_end)
        del plan.writes[fd]
        writer_pipe, _ = await loop.connect_write_pipe(
            functools.partial(_OwnPipe, transport, fd, done), pipe
        )
        transport._add_writer(fd, writer_pipe, done)


class ReactorProcess(Protocol):
    """What starts child processes (the reactor's ``spawn_process``)."""

    def spawn_process(
        self,
        protocol: ProcessProtocol,
        executable: StrPath,
        args: Sequence[StrPath] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        path: StrPath | None = None,
        uid: int | str | None = None,
        gid: int | str | None = None,
        use_pty: bool = False,
        child_fds: Mapping[int, ChildFD] | None = None,
    ) -> Deferred[ChildProcess]:
        """Start ``executable`` connected to ``protocol``; see ``spawn_process``."""
        ...
