"""What the domain is given instead of reaching out: a notifier and a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

Clock = Callable[[], datetime]


class Notifier(Protocol):
    """Tells clients what happened. Synchronous: events leave in the order they are given.

    A *group* is a set of sockets the transport keeps (a room, a meeting); the domain says
    who enters and leaves it.
    """

    def send(
        self, sids: Iterable[str], event: str, *args: object, replaces: str | None = None
    ) -> None:
        """To these sockets, one event with these positional arguments. With `replaces`, an
        unsent event of the same name and key still queued for a slow socket is superseded
        (full texts: the newest one holds everything)."""

    def broadcast(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        """To every socket of `group` but `skip`."""

    def probe(self, sid: str) -> int | None:
        """Send the socket a probe, in order with everything sent to it before, that its
        client answers as soon as it has processed all that; the probe's number (counting
        from 1), or None when the transport cannot."""

    def answered(self, sid: str) -> int | None:
        """How many of its probes the socket has answered so far (None: unknown)."""

    def enter(self, sid: str, group: str) -> None: ...

    def leave(self, sid: str, group: str) -> None: ...
