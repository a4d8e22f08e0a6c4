"""What the domain is given instead of reaching out: a notifier, a clock and (in cluster mode)
the room log."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

Clock = Callable[[], datetime]


class Notifier(Protocol):
    """Tells clients what happened. Synchronous: events leave in the order they are given.

    A *group* is a set of sockets the transport keeps (a room, a meeting); the domain says
    who enters and leaves it.
    """

    def send(
        self, sids: Iterable[str], event: str, *args: object, replaces: str | None = None
    ) -> None:
        """To these sockets (on any process), one event with these positional arguments.
        With `replaces`, an unsent event of the same name and key still queued for a slow
        socket is superseded (full texts: the newest one holds everything)."""

    def broadcast(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        """To every socket of `group` but `skip` (in cluster mode: of this process; every
        process tells its own sockets the room events of its copy of the room's log)."""

    def relay(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        """To every socket of `group` but `skip`, on every process: what the log does not
        carry (cursors, typing, call signalling)."""

    def probe(self, sid: str) -> int | None:
        """Send the socket a probe, in order with everything sent to it before, that its
        client answers as soon as it has processed all that; the probe's number (counting
        from 1), or None when the transport cannot."""

    def answered(self, sid: str) -> int | None:
        """How many of its probes the socket has answered so far (None: unknown)."""

    def close(self, sid: str) -> None:
        """Disconnect this process's socket, after everything sent to it so far."""

    def enter(self, sid: str, group: str) -> None: ...

    def leave(self, sid: str, group: str) -> None: ...


@dataclass(frozen=True)
class LogEntry:
    """One entry of a room's log (cluster mode): its place, the room version after it, the
    process that appended it, and what happened."""

    id: str
    version: int
    process: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Appended:
    """An append's outcome: `entry` (None: another process's versioned entry came first, or
    the room was `deleted`) and the entries of others before it that this process had not
    applied yet, in order."""

    entry: LogEntry | None
    missed: list[LogEntry]
    deleted: bool = False  # the room's session was deleted: nothing more is appended


class RoomLog(Protocol):
    """Where, in cluster mode, each room's one order is decided: an atomic compare-and-append
    per room, which every process with the room open follows in order."""

    process: str  # this process's id

    async def open(self, room_id: str, stored_version: int, *, new: bool) -> list[LogEntry] | None:
        """Start following the room, loaded from the store at `stored_version` (`new`: the
        store has no such session): the entries not in that stored state yet (all kept ones:
        the caller skips what it holds). None: the stored session is being deleted."""

    async def since(self, room_id: str, after: str | None) -> list[LogEntry]:
        """The room's entries after `after` (None: all kept), read now (not followed).
        Raises ClusterUnavailable."""

    def close(self, room_id: str) -> None:
        """Stop following the room (it left this process's memory)."""

    async def append(
        self,
        room_id: str,
        body: dict[str, Any],
        *,
        expected: int | None,
        after: str | None,
        held: int,
    ) -> Appended:
        """Append `body`: with `expected` (the room version the change was computed on) only
        if the room is still at that version, and the entry gets the next version; without,
        at the current version. `after`: the last entry this process applied (None: it does
        not need the entries before); `held`: the
        version it holds (what a log that lost its data starts again from). Raises
        ClusterUnavailable when the log cannot be reached."""

    async def exists(self, room_id: str) -> bool:
        """Whether the room has a log (a room another process made, maybe not stored yet).
        Raises ClusterUnavailable."""

    async def delete(self, room_id: str) -> bool:
        """The room's session is being deleted: every process following the room gets a
        `deleted` entry, and appends are refused from now on (until the id is opened again,
        for a new session). True when the room had a log (it was live somewhere). Raises
        ClusterUnavailable."""

    async def trim(self, room_id: str, before: str) -> None:
        """Drop the entries before `before` (stored, and older than the merges need)."""

    async def problem(self) -> str | None:
        """None when the log answers, else what is wrong (readiness)."""


class WriterLease(Protocol):
    """Cluster mode: which process persists each room, one at a time."""

    async def hold(self, room_id: str) -> bool:
        """Take or renew the room's write lease; False when another process holds it.
        Raises ClusterUnavailable when that cannot be known."""

    async def release(self, room_id: str) -> None:
        """Give the lease up (this process no longer has the room)."""


class OpenSockets(Protocol):
    """Cluster mode: the sockets open from each client address, over every process."""

    async def claim(self, address: str, limit: int) -> bool:
        """Count one more socket from `address`, unless `limit` are open already; whether it
        was counted. Raises ClusterUnavailable."""

    async def release(self, address: str) -> None:
        """One socket from `address` closed. Raises ClusterUnavailable."""


class Roster(Protocol):
    """Who is in each meeting of the meeting page, in the order they joined (cluster mode:
    over every process)."""

    async def join(self, meeting: str, sid: str, limit: int) -> list[str] | None:
        """Add the socket (once); everyone in join order; None when `limit` are in already.
        Raises ClusterUnavailable."""

    async def leave(self, meeting: str, sid: str) -> None:
        """Take the socket out. Raises ClusterUnavailable."""

    async def members(self, meeting: str) -> list[str]:
        """Everyone in join order. Raises ClusterUnavailable."""

    async def sweep(self, meeting: str, mine: set[str]) -> list[str]:
        """Take out the sockets of processes that died, and this process's sockets that are
        not in `mine` any more; those taken out (each by one process only)."""
