"""Live rooms: loading from the store, joining and leaving, idle unloading, session CRUD."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.errors import (
    NotInRoom,
    RoomFull,
    SessionExpired,
    SessionNotFound,
    StoreUnavailable,
)
from app.merge import TextHistory
from app.models import (
    DEFAULT_CODE,
    DEFAULT_LANGUAGE,
    ChatRecord,
    SessionRecord,
    utc_now,
)
from app.room import CodeApplied, Member, Room
from app.storage import SessionStore, StoreError
from app.writer import DebouncedWriter

log = logging.getLogger(__name__)
MAX_OUTBOX = 10_000  # chat held in memory during a store outage, per room


@dataclass(frozen=True)
class RoomSettings:
    ttl: timedelta
    idle_seconds: float
    max_clients: int
    chat_timeout: float
    reconnect_grace: float = 0.0
    history_versions: int = 100
    history_seconds: float = 30.0


@dataclass(frozen=True)
class Departure:
    room: Room
    member: Member


@dataclass(frozen=True)
class Arrival:
    room: Room
    member: Member
    left: Departure | None  # the room this socket was in before, if another
    repeated: bool  # the socket was already in this room
    resumed: bool = False  # it replaced a socket of the same user within the reconnect grace


@dataclass(frozen=True)
class Missed:
    """What a reconnecting client missed since the version it last saw."""

    messages: list[ChatRecord]
    code_changed: bool
    language_changed: bool


DepartureCallback = Callable[[Departure], Coroutine[Any, Any, None]]
MAX_REPLAY = 1000  # chat messages replayed to one reconnecting client at the most


class Rooms:
    """Every live room and which room each socket is in (one room per socket)."""

    def __init__(
        self,
        store: SessionStore,
        writer: DebouncedWriter,
        settings: RoomSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.writer = writer
        self.settings = settings
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.room_of: dict[str, str] = {}  # sid -> room_id
        self._loading: dict[str, asyncio.Future[Room | None]] = {}
        self._joining: dict[str, asyncio.Future[None]] = {}
        self._unload_timers: dict[str, asyncio.TimerHandle] = {}
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}  # sid of an away member
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_departed: DepartureCallback | None = None

    # -- loading ---------------------------------------------------------------

    def _new_record(self, room_id: str, now: datetime) -> SessionRecord:
        return SessionRecord(
            room_id=room_id,
            code=DEFAULT_CODE,
            language=DEFAULT_LANGUAGE,
            created_at=now,
            last_activity=now,
            expires_at=now + self.settings.ttl,
        )

    def _make_room(self, record: SessionRecord) -> Room:
        history = TextHistory(
            record.code,
            record.version,
            min_versions=self.settings.history_versions,
            min_seconds=self.settings.history_seconds,
        )
        return Room(record, self.settings.ttl, history)

    async def _load_record(self, room_id: str) -> SessionRecord | None:
        """The stored session; None when absent; SessionExpired (and deleted) when expired."""
        try:
            record = await self.store.load(room_id)
            if record is not None and record.expires_at <= self.clock():
                await self.store.delete(room_id)
                raise SessionExpired(f"Session {room_id} has expired")
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        return record

    async def _load(self, room_id: str) -> Room | None:
        record = await self._load_record(room_id)
        return None if record is None else self._make_room(record)

    async def open(self, room_id: str, *, create: bool) -> Room:
        """The live room, loading it once however many callers ask at the same time."""
        room = self.rooms.get(room_id)
        if room is None:
            loading = self._loading.get(room_id)
            if loading is None:
                loading = asyncio.ensure_future(self._load(room_id))
                self._loading[room_id] = loading
                loading.add_done_callback(lambda _: self._loading.pop(room_id, None))
            try:
                loaded = await asyncio.shield(loading)
            except SessionExpired:
                if not create:
                    raise
                loaded = None
            room = self.rooms.get(room_id)  # another caller may have registered it meanwhile
            if room is None:
                if loaded is None:
                    if not create:
                        raise SessionNotFound(f"Session {room_id} not found")
                    loaded = self._make_room(self._new_record(room_id, self.clock()))
                    loaded.changes += 1  # a new session must reach the store
                room = self.rooms[room_id] = loaded
                self._schedule_unload(room)
        return room

    # -- membership ------------------------------------------------------------

    async def join(self, sid: str, room_id: str, name: str, user_id: str | None) -> Arrival:
        previous = self._joining.get(sid)
        if previous is not None:
            await asyncio.shield(previous)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joining[sid] = done
        try:
            room = await self.open(room_id, create=True)
            return self._enter(sid, room, name, user_id)
        finally:
            done.set_result(None)
            if self._joining.get(sid) is done:
                del self._joining[sid]

    def _enter(self, sid: str, room: Room, name: str, user_id: str | None) -> Arrival:
        now = self.clock()
        current = room.members.get(sid)
        if current is not None:
            current.name = name
            return Arrival(room=room, member=current, left=None, repeated=True)
        away = self._away_member(room, user_id)
        if away is None and len(room.members) >= self.settings.max_clients:
            raise RoomFull(f"Room {room.room_id} is full ({self.settings.max_clients} clients)")
        left = self.leave(sid)
        if away is not None:
            self._drop(room, away.sid)
        member = room.add_member(sid, name, user_id, now)
        if away is not None:
            member.joined_at = away.joined_at
        self.room_of[sid] = room.room_id
        self._cancel_unload(room.room_id)
        self.writer.changed(room)
        return Arrival(room=room, member=member, left=left, repeated=False, resumed=bool(away))

    def _away_member(self, room: Room, user_id: str | None) -> Member | None:
        if user_id is None:
            return None
        for member in room.members.values():
            if member.user_id == user_id and member.sid in self._grace_timers:
                return member
        return None

    def _drop(self, room: Room, sid: str) -> None:
        """Forget an away socket that its user's new socket replaces (no departure)."""
        self._grace_timers.pop(sid).cancel()
        self.room_of.pop(sid, None)
        room.members.pop(sid, None)
        room.history.forget(sid)

    def disconnect(self, sid: str, *, temporary: bool) -> Departure | Member | None:
        """A socket closed. Deliberate: leave now. Dropped: keep the member for the grace
        delay and return it (away); a later departure is reported through `on_departed`."""
        room_id = self.room_of.get(sid)
        room = self.rooms.get(room_id) if room_id else None
        member = room.members.get(sid) if room else None
        if not temporary or self.settings.reconnect_grace <= 0 or member is None:
            return self.leave(sid)
        loop = asyncio.get_running_loop()
        self._grace_timers[sid] = loop.call_later(
            self.settings.reconnect_grace, self._grace_over, sid
        )
        return member

    def _grace_over(self, sid: str) -> None:
        self._grace_timers.pop(sid, None)
        departure = self.leave(sid)
        if departure is not None and self.on_departed is not None:
            task = asyncio.create_task(self.on_departed(departure))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def leave(self, sid: str) -> Departure | None:
        timer = self._grace_timers.pop(sid, None)
        if timer is not None:
            timer.cancel()
        room_id = self.room_of.pop(sid, None)
        room = self.rooms.get(room_id) if room_id else None
        if room is None:
            return None
        member = room.remove_member(sid, self.clock())
        if member is None:
            return None
        if room.members:
            self.writer.changed(room)
        else:
            # The last one out: write at once, keep the room warm for a quick return.
            self.writer.write_soon(room)
            self._schedule_unload(room)
        return Departure(room=room, member=member)

    async def member(self, sid: str, room_id: str) -> tuple[Room, Member]:
        """The sender's room and membership; waits for a join still loading its room."""
        joining = self._joining.get(sid)
        if joining is not None:
            await asyncio.shield(joining)
        room = self.rooms.get(room_id) if self.room_of.get(sid) == room_id else None
        member = room.members.get(sid) if room else None
        if room is None or member is None:
            raise NotInRoom(f"You have not joined room {room_id}")
        return room, member

    # -- changes ---------------------------------------------------------------

    def change_code(
        self,
        room: Room,
        member: Member,
        code: str,
        language: str | None,
        base_version: int | None,
    ) -> tuple[CodeApplied, datetime]:
        """Apply (merging when a base version is given) a full-text change; debounced write."""
        now = self.clock()
        applied = room.apply_code(member.sid, code, language, base_version, now)
        if applied.changed:
            self.writer.changed(room)
        return applied, now

    async def change_language(self, room: Room, language: str) -> bool:
        """Change the language and wait (bounded) until it is stored."""
        changed = room.set_language(language, self.clock())
        if changed:
            await self.writer.flush(room, within=self.settings.chat_timeout)
        return changed

    # -- chat ------------------------------------------------------------------

    async def chat(
        self, room: Room, member: Member, text: str, client_id: str | None
    ) -> ChatRecord:
        """Accept a chat message and wait (bounded) until it is stored; outbox on timeout."""
        if len(room.outbox) >= MAX_OUTBOX:
            raise StoreUnavailable(
                "The session store is unavailable and this room's outbox is full"
            )
        message = room.accept_chat(member, text, client_id, self.clock())
        await self.writer.flush(room, within=self.settings.chat_timeout)
        return message

    # -- idle unload -----------------------------------------------------------

    def _schedule_unload(self, room: Room) -> None:
        if room.members or room.room_id in self._unload_timers:
            return
        loop = asyncio.get_running_loop()
        self._unload_timers[room.room_id] = loop.call_later(
            self.settings.idle_seconds, self._unload, room.room_id
        )

    def _cancel_unload(self, room_id: str) -> None:
        timer = self._unload_timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()

    def _unload(self, room_id: str) -> None:
        self._unload_timers.pop(room_id, None)
        room = self.rooms.get(room_id)
        if room is None or room.members:
            return
        if room.needs_save:
            # Not stored yet (store down): keep it in memory and look again later.
            self.writer.write_soon(room)
            self._schedule_unload(room)
            return
        del self.rooms[room_id]

    def close(self) -> None:
        """Stop every timer; away members leave now (their rooms then write at once)."""
        for sid in list(self._grace_timers):
            self.leave(sid)
        for timer in self._unload_timers.values():
            timer.cancel()
        self._unload_timers.clear()

    def counts(self) -> dict[str, int]:
        """How many rooms, sockets, timers and tasks are held (for metrics and leak tests)."""
        return {
            "rooms": len(self.rooms),
            "sockets": len(self.room_of),
            "unload_timers": len(self._unload_timers),
            "grace_timers": len(self._grace_timers),
            "tasks": len(self._tasks),
            "loading": len(self._loading),
            "pending_writes": self.writer.pending_rooms(),
        }

    # -- reconnects ------------------------------------------------------------

    async def missed(self, room: Room, last_seen: int, epoch: str | None) -> Missed:
        """Chat after `last_seen` (oldest first) and whether code or language changed since.

        A version seen in another epoch (or above the room's) may have been lost in a crash
        and handed out again: replay from what was stored, with the code and language."""
        lost = (epoch is not None and epoch != room.epoch) or last_seen > room.version
        if lost:
            last_seen = min(last_seen, room.loaded_version)
        messages: list[ChatRecord] = []
        before: int | None = None
        while len(messages) < MAX_REPLAY:
            try:
                page = await self.store.list_messages(room.room_id, before=before, limit=200)
            except StoreError:
                page = []  # the outbox below still holds what is not stored
            newer = [m for m in page if m.version > last_seen]
            messages[:0] = newer
            if len(newer) < len(page) or len(page) < 200:
                break
            before = page[0].version
        known = {m.version for m in messages}
        messages += [m for m in room.outbox if m.version > last_seen and m.version not in known]
        messages.sort(key=lambda m: m.version)
        return Missed(
            messages=messages[-MAX_REPLAY:],
            code_changed=lost or room.code_version > last_seen,
            language_changed=lost or room.language_version > last_seen,
        )

    # -- used by sessions (REST) ---------------------------------------------

    async def load_record(self, room_id: str) -> SessionRecord | None:
        return await self._load_record(room_id)

    def detach(self, room_id: str) -> Room | None:
        """Take a live room out of memory (its session is being deleted)."""
        room = self.rooms.pop(room_id, None)
        self._cancel_unload(room_id)
        if room is not None:
            for sid in room.members:
                self.room_of.pop(sid, None)
        return room

    def reattach(self, room: Room) -> None:
        """Put back a room whose deletion failed: nothing is lost."""
        self.rooms[room.room_id] = room
        for sid in room.members:
            self.room_of[sid] = room.room_id
        self._schedule_unload(room)
