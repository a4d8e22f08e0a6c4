"""The packet queue of one Engine.IO socket, in a twentieth of an `asyncio.Queue`'s memory.

python-engineio gives every socket an `asyncio.Queue` (`create_queue`): three deques and an
`Event` with a fourth, about 3.2 KB held by every idle connection. A socket's queue has one
reader at a time (its writer task, or the long-poll that is waiting) and no size limit, so
`PacketQueue` keeps only what that needs: the packets (a deque made when the first one is
queued, dropped when the queue empties), the readers waiting, the count `join()` waits on.
It behaves as an unbounded `asyncio.Queue` (what python-engineio and the broadcast manager
use of it): a reader cancelled while it waits takes nothing, and leaves what arrived to the
next reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


class PacketQueue:
    __slots__ = ("_getters", "_joiners", "_queue", "_unfinished", "busy", "on_put")

    def __init__(self) -> None:
        self._queue: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        # A writer started on demand instead of a reader that waits: `on_put` is called
        # after every put; `busy` while it has packets taken and not written.
        self.on_put: Callable[[], None] | None = None
        self.busy = False

    @property
    def reader_waiting(self) -> bool:
        """A reader waits for a packet (or would be started for one): nothing is queued,
        and nothing taken is unwritten."""
        if self.on_put is not None:
            return not self.busy and self._queue is None
        return self._getters is not None

    @property
    def pending(self) -> deque[Any] | None:
        """The packets not taken yet, in order (None: none), to replace one in place."""
        return self._queue

    def qsize(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def empty(self) -> bool:
        return self._queue is None

    def full(self) -> bool:
        return False

    def put_nowait(self, item: Any) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        self._unfinished += 1
        self._wake_getter()
        if self.on_put is not None:
            self.on_put()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        queue = self._queue
        if queue is None:
            raise asyncio.QueueEmpty
        item = queue.popleft()
        if not queue:
            self._queue = None
        return item

    async def get(self) -> Any:
        while self._queue is None:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # in case it was not done yet
                self._forget_getter(getter)
                if self._queue is not None and not getter.cancelled():
                    self._wake_getter()  # it was woken for a packet it will not take
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._joiners is not None:
            joiners, self._joiners = self._joiners, None
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished > 0:
            joiner = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(joiner)
            await joiner

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None

    def _forget_getter(self, getter: asyncio.Future[None]) -> None:
        if self._getters is not None and getter in self._getters:
            self._getters.remove(getter)
            if not self._getters:
                self._getters = None
