"""A room's versioned events leave in version order, each possibly held until it is stored."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class Ticket:
    """One versioned event on its way out."""

    __slots__ = ("_future", "emit", "held", "sent", "version")

    def __init__(self, emit: Callable[[], None], held: bool, version: int | None) -> None:
        self.emit = emit
        self.held = held
        self.version = version
        self.sent = False
        self._future: asyncio.Future[None] | None = None

    def _send(self) -> None:
        try:
            self.emit()
        except Exception:  # a bug in one emission must not stop the room's later ones
            log.exception("emitting a room event failed")
        self.sent = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait_sent(self) -> None:
        """Return once the event has left (at once when nothing was ahead of it)."""
        if self.sent:
            return
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._future)


class Sequencer:
    """Events leave in the order they were published; a held one (a chat message waiting to be
    stored) holds back everything published after it, so no client ever receives a version
    lower than one it already received."""

    def __init__(self, sent_version: int = 0) -> None:
        self._queue: deque[Ticket] = deque()
        self.sent_version = sent_version  # the highest version whose event has left

    def publish(
        self, emit: Callable[[], None], *, held: bool = False, version: int | None = None
    ) -> Ticket:
        ticket = Ticket(emit, held, version)
        if not self._queue and not held:
            self._send(ticket)
        else:
            self._queue.append(ticket)
            self._drain()
        return ticket

    def _send(self, ticket: Ticket) -> None:
        ticket._send()
        if ticket.version is not None and ticket.version > self.sent_version:
            self.sent_version = ticket.version

    def release(self, ticket: Ticket) -> None:
        ticket.held = False
        self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue and not queue[0].held:
            self._send(queue.popleft())

    def __len__(self) -> int:
        return len(self._queue)
