"""The debounced writer: persists each room's state after a quiet delay, bounded by a maximum."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app import logs
from app.clock import utc_now
from app.domain.errors import ClusterUnavailable
from app.domain.ports import Notifier, RoomLog, WriterLease
from app.domain.room import Room
from app.storage import SessionStore, StoreError
from app.wire import outbound

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.1


@dataclass(eq=False)
class _Pending:
    room: Room
    first_change: float | None
    last_change: float
    urgent: bool = False
    writing: bool = False  # a store write is under way (it is not cut short)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class DebouncedWriter:
    """One write in flight per room, in order; a failed write keeps the state and retries.

    Modelled on Hocuspocus's debounce: a quiet delay that restarts with every change and a
    maximum delay counted from the first unsaved change.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        debounce: float,
        max_delay: float,
        retry_max: float,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        lease: WriterLease | None = None,
        log: RoomLog | None = None,
        keep_versions: int = 100,
    ) -> None:
        self.store = store
        # Cluster mode: only the holder of a room's lease writes it, and tells the others
        # through the room's log (each process then says `sessionSaved` to its sockets).
        self.lease = lease
        self.log = log
        self.keep_versions = keep_versions  # log entries kept behind a write, for merges
        self.debounce = debounce
        self.max_delay = max_delay
        self.retry_max = retry_max
        self.notifier = notifier  # tells the room `sessionSaved` after each write
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._closed = False  # by close(): the store closes next, nothing is written now
        self.writes = 0  # successful writes, for metrics and benchmarks

    def pending_rooms(self) -> int:
        return len(self._pending)

    def oldest_unsaved_seconds(self) -> float:
        """How long the oldest change not yet stored has waited (0: none waits)."""
        firsts = [p.first_change for p in self._pending.values() if p.first_change is not None]
        return max(0.0, self.clock() - min(firsts)) if firsts else 0.0

    def changed(self, room: Room) -> None:
        """The room changed: write it once it has been quiet for the debounce delay. Once the
        writer is closed (shutdown: no socket is left, the store closes next) nothing starts:
        a change that still arrives then comes from another process of a cluster, which
        writes it itself."""
        if room.deleted or self._closed:
            return
        now = self.clock()
        pending = self._pending.get(room.room_id)
        if pending is None:
            pending = _Pending(room=room, first_change=now, last_change=now)
            self._pending[room.room_id] = pending
            pending.task = asyncio.create_task(self._run(pending), name=f"writer:{room.room_id}")
        else:
            pending.room = room
            pending.last_change = now
            if pending.first_change is None:
                pending.first_change = now

    def stored_elsewhere(self, room: Room) -> None:
        """Cluster mode: another process stored the room: whoever waits for that is told."""
        pending = self._pending.get(room.room_id)
        if pending is not None:
            self._release(pending, room.saved_changes)
            pending.urgent = True  # its task sees nothing left to write and ends
            pending.wake.set()

    def write_soon(self, room: Room) -> None:
        """Write the room now, without waiting for the debounce."""
        self.changed(room)
        pending = self._pending.get(room.room_id)
        if pending is None:  # deleted
            return
        pending.urgent = True
        pending.wake.set()

    async def flush(self, room: Room, within: float | None = None) -> bool:
        """Write now and wait until the room's current version is stored; False on timeout."""
        if not room.needs_save or room.deleted:
            return True
        if self._closed:
            return False
        self.write_soon(room)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[room.room_id].waiters.append((room.changes, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            return False
        return True

    async def flush_all(self, within: float) -> bool:
        """Write every pending room now; False if some could not be written in time."""
        pending = list(self._pending.values())
        for entry in pending:
            entry.urgent = True
            entry.wake.set()
        tasks = [entry.task for entry in pending if entry.task is not None]
        if not tasks:
            return True
        _, still_running = await asyncio.wait(tasks, timeout=within)
        return not still_running

    async def drop(self, room_id: str) -> None:
        """Stop writing the room (its session is being deleted): a write under way ends first
        and its lease is given up, so no write of this process lands after the deletion."""
        entry = self._pending.pop(room_id, None)
        if entry is not None:
            for _, future in entry.waiters:
                future.cancel()
            if entry.task is not None:
                if not entry.writing:
                    entry.task.cancel()
                await asyncio.wait([entry.task])
        await self.release(room_id)

    async def alone(self, room_id: str, within: float) -> bool:
        """Cluster mode: hold the room's lease, so that no other process writes it, waiting
        until the one that holds it lets it go or dies (at most `within` seconds)."""
        if self.lease is None:
            return True
        deadline = self.clock() + within
        while True:
            with contextlib.suppress(ClusterUnavailable):
                if await self.lease.hold(room_id):
                    return True
            if self.clock() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop all writers (after flush_all); unwritten state is logged, not silently lost."""
        self._closed = True
        for room_id, entry in list(self._pending.items()):
            if entry.task is not None and not entry.task.done():
                log.error(
                    "room %s: closing with unsaved changes (version %s)",
                    room_id,
                    entry.room.version,
                )
                entry.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await entry.task

    async def _run(self, pending: _Pending) -> None:
        logs.about(room=pending.room.room_id)
        failures = 0
        while True:
            if not pending.urgent:
                await self._quiet(pending)
            pending.urgent = False
            if not pending.room.needs_save:  # another process stored it (cluster mode)
                self._release(pending, pending.room.changes)
                break
            written = await self._write(pending)
            if self._pending.get(pending.room.room_id) is not pending:
                return  # dropped during the write (its session is being deleted)
            if written:
                failures = 0
                if not pending.room.needs_save:
                    break
            else:
                failures += 1
                delay = min(self.retry_max, FIRST_RETRY_SECONDS * 2 ** (failures - 1))
                await self._sleep(pending, delay)
                pending.urgent = True  # retry as soon as the backoff ends
        if self._pending.get(pending.room.room_id) is pending:
            del self._pending[pending.room.room_id]

    async def _quiet(self, pending: _Pending) -> None:
        while not pending.urgent:
            first = pending.first_change if pending.first_change is not None else self.clock()
            due = min(pending.last_change + self.debounce, first + self.max_delay)
            wait = due - self.clock()
            if wait <= 0:
                return
            await self._sleep(pending, wait)

    @staticmethod
    async def _sleep(pending: _Pending, seconds: float) -> None:
        pending.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending.wake.wait(), seconds)

    async def _write(self, pending: _Pending) -> bool:
        room = pending.room
        if self.lease is not None:
            try:
                if not await self.lease.hold(room.room_id):
                    return False  # another process writes it; look again later
            except ClusterUnavailable:
                return False
        if room.deleted:
            return True  # dropped while this process waited for the lease
        # Snapshot synchronously: changes arriving during the write are saved by the next one.
        record, changes, messages = room.snapshot(), room.changes, list(room.outbox)
        history = [e for e in room.history.outbox if e.version <= record.version]
        checkpoints = [c for c in room.history.checkpoints if c.version <= record.version]
        covered = room.log_id
        first_change, pending.first_change = pending.first_change, None
        pending.writing = True
        try:
            if messages:
                await self.store.append_messages(messages)
            written = await self.store.save(record)
            if written and history:  # after the session: never versions it does not hold
                await self.store.append_history(history)
            for checkpoint in checkpoints if written else ():
                await self.store.save_checkpoint(checkpoint)
        except StoreError as error:
            log.warning(
                "room %s: write of version %s failed: %s", room.room_id, record.version, error
            )
            if pending.first_change is None:
                pending.first_change = first_change
            return False
        finally:
            pending.writing = False
        self.writes += 1
        room.mark_saved(changes, len(messages))
        room.history.stored(record.version)  # not written: a newer one holds them
        if not written:
            log.error(
                "room %s: the store holds a newer version than %s; not overwritten",
                room.room_id,
                record.version,
            )
        self._release(pending, changes)
        if written and self.log is not None:
            await self._tell_saved(room, covered, record.version)
        elif written and self.notifier is not None:
            self._announce_saved(room, record.version)
        return True

    async def _tell_saved(self, room: Room, covered: str, version: int) -> None:
        """Cluster mode: the others mark the room stored too, and the log is trimmed to what
        merges still need."""
        assert self.log is not None
        body = {"k": "saved", "c": covered, "v": version}
        try:
            told = await self.log.append(
                room.room_id, body, expected=None, after=None, held=version
            )
        except ClusterUnavailable:
            return  # the next write tells them
        if told.deleted:
            return
        keep_from = version - self.keep_versions
        older = [entry_id for entry_id, _, v in room.marks if v <= keep_from]
        if older:
            await self.log.trim(room.room_id, older[-1])

    async def release(self, room_id: str) -> None:
        """This process let the room go: another may write it at once."""
        if self.lease is not None:
            with contextlib.suppress(ClusterUnavailable):
                await self.lease.release(room_id)

    def _announce_saved(self, room: Room, version: int) -> None:
        """`sessionSaved` leaves behind every event of a version it covers."""
        notifier = self.notifier
        assert notifier is not None
        payload = outbound.session_saved(room.room_id, version, utc_now())
        room.sequencer.publish(lambda: notifier.broadcast(room.room_id, "sessionSaved", payload))

    @staticmethod
    def _release(pending: _Pending, changes: int) -> None:
        waiting = []
        for wanted, future in pending.waiters:
            if wanted <= changes:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((wanted, future))
        pending.waiters = waiting
