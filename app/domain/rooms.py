"""Live rooms: loading from the store, who is in them (presence), idle unloading, replays.

Presence as people see it: a socket whose transport drops leaves `roomUsers` at once but its
`userLeft` (and the stored departure) waits `RECONNECT_GRACE_SECONDS`; a socket of the same
person (app user id, else name and address) joining within that time takes its place with no
`userLeft` and no `userJoined`. A reload therefore never shows a phantom user, and a network
drop never shows a departure and an arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app import logs
from app.clock import utc_now
from app.config import Settings
from app.domain.errors import (
    ClusterUnavailable,
    NotInRoom,
    RoomFull,
    SessionExpired,
    SessionNotFound,
    StoreUnavailable,
)
from app.domain.ports import LogEntry, Notifier, RoomLog, Roster
from app.domain.room import Member, Room
from app.domain.writer import DebouncedWriter
from app.storage import SessionStore, StoreError
from app.storage.records import (
    DEFAULT_CODE,
    DEFAULT_LANGUAGE,
    ChatRecord,
    SessionRecord,
)
from app.wire import outbound

log = logging.getLogger(__name__)
MAX_REPLAY = 1000  # chat messages replayed to one reconnecting client at the most
A_USER = "A user"  # the name of a departed call participant nobody knows any more


@dataclass(frozen=True)
class Arrival:
    room: Room
    member: Member
    repeated: bool  # the socket was already in this room
    resumed: bool = False  # it took the place of a dropped socket of the same person
    told: asyncio.Task[None] | None = None  # cluster mode: telling the other processes
    expired: bool = False  # the session had expired: this join started a new one


@dataclass(frozen=True)
class Missed:
    """What a reconnecting client missed since the version it last saw."""

    messages: list[ChatRecord]
    docs: list[str]  # ids of the texts changed since
    language_changed: bool


def room_users(room: Room) -> list[outbound.Json]:
    return [outbound.user_entry(m.sid, m.name, m.user_id, m.joined_at) for m in room.everyone()]


Applier = Callable[[Room, LogEntry], None]
# Log entries that take a version (the others happen at the version they were appended at).
VERSIONED = frozenset({"text", "lang", "chat", "file", "upload", "describe", "delete"})
GRACE_MARGIN_SECONDS = 2.0  # other processes end a remote member's grace after its own
JOIN_TOLD_SECONDS = 1.0  # a join waits this long at most for the other processes to hear it
RESUMED_PLACES = 1_000_000  # a person back from a drop is let in even to a full room


def entry_after(entry_id: str, other: str) -> bool:
    """Whether the log entry id `entry_id` comes after `other` (ids are "ms-seq")."""
    ms, _, seq = entry_id.partition("-")
    other_ms, _, other_seq = other.partition("-")
    return (int(ms), int(seq or 0)) > (int(other_ms), int(other_seq or 0))


class Rooms:
    """Every live room and which room each socket is in (one room per socket)."""

    def __init__(
        self,
        store: SessionStore,
        writer: DebouncedWriter,
        settings: Settings,
        notifier: Notifier,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        log: RoomLog | None = None,
        places: Roster | None = None,
    ) -> None:
        self.store = store
        self.log = log  # cluster mode: where each room's order is decided
        self.places = places  # cluster mode: each room's present sockets, over every process
        self._claiming: set[str] = set()  # sockets taking a place now
        self.append_retries = 0  # cluster mode: appends that lost the race (metrics)
        self._vacated: set[str] = set()  # sockets whose place was given back before they left
        # What a log entry of each kind does to this process's copy of its room.
        self.appliers: dict[str, Applier] = {
            "join": self._apply_join,
            "away": self._apply_away,
            "leave": self._apply_leave,
            "creator": self._apply_creator,
            "call": self._apply_call,
            "born": lambda room, entry: None,  # the log's first entry (see _first_entry)
            "deleted": lambda room, entry: self.drop(room),
            "write": lambda room, entry: self.writer.write_soon(room),
        }
        self._background_tasks: set[asyncio.Task[None]] = set()
        self.on_empty: list[Callable[[Room], None]] = []  # told when the last one leaves
        self.monotonic = monotonic  # when texts changed and were sent (see streams.py)
        self.writer = writer
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.room_of: dict[str, str] = {}  # sid -> room_id, present and away sockets
        self._loading: dict[str, asyncio.Future[Room | None]] = {}
        self._joining: dict[str, asyncio.Future[None]] = {}
        self._unload_timers: dict[str, asyncio.TimerHandle] = {}
        self._grace_timers: dict[str, asyncio.TimerHandle] = {}  # sid of an away member
        self._call_timers: dict[str, asyncio.TimerHandle] = {}  # sid of a dropped caller

    # -- loading -------------------------------------------------------------------------

    def _new_record(self, room_id: str, now: datetime) -> SessionRecord:
        return SessionRecord(
            room_id=room_id,
            code=DEFAULT_CODE,
            language=DEFAULT_LANGUAGE,
            created_at=now,
            last_activity=now,
            expires_at=now + self.settings.ttl,
        )

    async def load_record(self, room_id: str) -> SessionRecord | None:
        """The stored session; None when absent; SessionExpired (and deleted) when expired."""
        try:
            record = await self.store.load(room_id)
            if record is not None and record.expires_at <= self.clock():
                if self.log is not None:  # no process opens it again from its log
                    await self.log.delete(room_id)
                await self.store.delete(room_id)
                raise SessionExpired(f"Session {room_id} has expired")
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        return record

    async def _load(self, room_id: str) -> Room | None:
        record = await self.load_record(room_id)
        return None if record is None else Room(record, self.settings, self.monotonic)

    async def _follow(self, room: Room) -> None:
        """Cluster mode: bring a room just loaded up to its log, and follow it."""
        if self.log is None:
            return
        stored = room.version
        entries = await self.log.open(room.room_id, stored, new=room.born)
        if entries is None:
            raise SessionNotFound(f"Session {room.room_id} is being deleted")
        if entries:
            self._first_entry(room, entries[0].id)
        elif room.born:  # a new room: its log begins now, and with it the session
            async with room.lock:
                await self.order(room, {"k": "born"}, versioned=False)
        fresh = [
            e
            for e in entries
            if e.version > stored or (e.version == stored and e.body.get("k") not in VERSIONED)
        ]
        self.apply(room, fresh)
        if entries:
            room.log_id = entries[-1].id

    async def open(self, room_id: str, *, create: bool) -> Room:
        """The live room, loading it once however many callers ask at the same time. A
        session that expired is deleted: SessionExpired, or (`create`) a new one is made,
        marked `renewed`."""
        room = self.rooms.get(room_id)
        renewed = False
        if room is not None and self._lapsed(room):
            await self._expire(room)
            if not create:
                raise SessionExpired(f"Session {room_id} has expired")
            room, renewed = None, True
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
                loaded, renewed = None, True
            if loaded is None and not create and not await self._in_log(room_id):
                raise SessionNotFound(f"Session {room_id} not found")
            room = self.rooms.get(room_id)  # another caller may have registered it meanwhile
            if room is None:
                if loaded is None:
                    record = self._new_record(room_id, self.clock())
                    loaded = Room(record, self.settings, self.monotonic)
                    loaded.changes += 1  # a new session must reach the store
                    loaded.born = loaded.fresh = True
                    loaded.renewed = renewed
                room = self.rooms[room_id] = loaded
                try:
                    await self._follow(room)
                except BaseException:
                    self.rooms.pop(room_id, None)
                    raise
                self._schedule_unload(room)
        return room

    def _lapsed(self, room: Room) -> bool:
        """A room in memory whose session expired: nobody in it, no activity for its TTL."""
        empty = not (room.members or room.away or room.remote or room.remote_away)
        return empty and room.expires_at <= self.clock()

    async def _expire(self, room: Room) -> None:
        """Delete the expired session of a room still in memory, as a stored one is."""
        _, dropped = self.detach(room.room_id)
        await dropped
        try:
            if self.log is not None:
                await self.log.delete(room.room_id)
            await self.store.delete(room.room_id)
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error

    @staticmethod
    def _first_entry(room: Room, entry_id: str) -> None:
        """Cluster mode: a session no store held yet was created when its log began (so
        every process that made it gives it the same `createdAt`)."""
        if room.born and room.log_id == "0-0":
            milliseconds = int(entry_id.partition("-")[0])
            room.created_at = datetime.fromtimestamp(milliseconds / 1000, UTC)
            room.main.uploaded_at = room.created_at
        room.born = False

    async def _in_log(self, room_id: str) -> bool:
        """Cluster mode: a room not stored yet that another process has live."""
        return self.log is not None and await self.log.exists(room_id)

    # -- the room's order (cluster mode) ------------------------------------------------------

    async def order(self, room: Room, body: dict[str, Any], *, versioned: bool = True) -> bool:
        """Put a change in the room's log before it happens (hold `room.lock`). True: it is
        next (single process: always). False: another process's change came first and is
        applied now: work the change out again. Others' entries before it are applied first.
        Raises ClusterUnavailable when the log cannot be reached: nothing happened."""
        log_ = self.log
        if log_ is None:
            return True
        now = self._stamp(body)
        body = {**body, "t": now.isoformat()}
        appended = await log_.append(
            room.room_id,
            body,
            expected=room.version if versioned else None,
            after=room.log_id,
            held=room.version,
        )
        self.apply(room, appended.missed)
        if appended.deleted:
            self.drop(room)
            raise SessionNotFound(f"Session {room.room_id} was deleted")
        if appended.entry is None:
            self.append_retries += 1
            return False
        self._first_entry(room, appended.entry.id)
        room.mark(appended.entry.id, applied=False)  # its caller applies it
        room.stamp = now
        return True

    def apply(self, room: Room, entries: list[LogEntry]) -> None:
        """Others' log entries, in order: each once (what this process appended is done)."""
        for entry in entries:
            if not entry_after(entry.id, room.log_id):
                continue
            versioned = entry.body.get("k") in VERSIONED
            if versioned and entry.version != room.version + 1:
                log.error(
                    "room %s: log entry %s has version %s, the room is at %s",
                    room.room_id, entry.id, entry.version, room.version,
                )  # fmt: skip
            self._first_entry(room, entry.id)
            room.stamp = self._stamp(entry.body)
            applier = self.appliers.get(str(entry.body.get("k")))
            if applier is None:
                log.error("room %s: unknown log entry %r", room.room_id, entry.body.get("k"))
            else:
                try:
                    applier(room, entry)
                except Exception:
                    log.exception("room %s: applying log entry %s failed", room.room_id, entry.id)
            if versioned:
                room.version = max(room.version, entry.version)
            room.mark(entry.id)
            if self.rooms.get(room.room_id) is not room:
                return  # dropped: its session was deleted
        if entries and room.needs_save:
            self.writer.changed(room)  # whatever changed, the room's writer stores it

    async def deliver(self, room_id: str, entries: list[LogEntry]) -> None:
        """The follower's entries for a room this process has open."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        logs.about(room=room_id)
        async with room.lock:
            self.apply(room, entries)

    async def catch_up(self, room: Room) -> None:
        """Cluster mode: apply what the room's log holds beyond what the follower brought so
        far, so that a read answers every change acknowledged anywhere before it. Redis
        unreachable: the room as this process has it."""
        if self.log is None or room.log_id is None:
            return  # one process, or nothing read from the log yet (the follower starts it)
        with contextlib.suppress(ClusterUnavailable):
            async with room.lock:
                self.apply(room, await self.log.since(room.room_id, room.log_id))

    async def write_now(self, room: Room) -> None:
        """Have the room written without waiting for the debounce (cluster mode: by whichever
        process holds its write lease; a `write` entry in its log asks them all)."""
        if self.log is not None and room.needs_save:
            with contextlib.suppress(ClusterUnavailable):  # the debounce writes it anyway
                async with room.lock:
                    await self.order(room, {"k": "write"}, versioned=False)

    async def persist(self, room: Room) -> None:
        """Answer a change once it is stored (cluster mode: by the room's writer, maybe
        another process, which the room's log asks to write now)."""
        await self.write_now(room)
        within = self.settings.chat_store_timeout_seconds
        if not await self.writer.flush(room, within=within):
            raise StoreUnavailable("The session store did not answer in time; retrying")

    def replicate(self, room: Room, body: dict[str, Any]) -> asyncio.Task[None] | None:
        """Cluster mode: tell the other processes what already happened here (presence)."""
        if self.log is None:
            return None
        return self._background(self._replicate(room, body))

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` on its own, kept referenced until it ends."""
        task = asyncio.ensure_future(work)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
        return task

    async def _replicate(self, room: Room, body: dict[str, Any]) -> None:
        for delay in (0.0, 0.2, 0.5, 1.0, 2.0, 5.0):
            await asyncio.sleep(delay)
            try:
                async with room.lock:
                    ordered = await self.order(room, body, versioned=False)
                    if ordered and body.get("sid") not in room.members:
                        # About a socket of a process that is gone: it happens here too.
                        entry = LogEntry(room.log_id or "", room.version, "", body)
                        self.appliers[body["k"]](room, entry)
                return
            except SessionNotFound:
                return  # deleted meanwhile
            except ClusterUnavailable:
                continue
        log.error("room %s: could not tell the cluster %s", room.room_id, body.get("k"))

    def process_gone(self, process: str) -> None:
        """Cluster mode: a process stopped renewing its lease: its sockets dropped."""
        for room in list(self.rooms.values()):
            for sid, member in list(room.remote.items()):
                if member.process != process:
                    continue
                if room.present_twin(member) is not None:
                    # Its person is back already (rejoined elsewhere): no departure at all.
                    self.replicate(room, {"k": "leave", "sid": sid, "quiet": True})
                else:
                    self.replicate(room, {"k": "away", "sid": sid, "of": process})

    def remote_processes(self) -> set[str]:
        """The other processes whose sockets are in this process's rooms."""
        return {m.process for room in self.rooms.values() for m in room.remote.values()}

    # what other processes' presence entries do here

    def _member_of(self, entry: LogEntry) -> Member:
        body = entry.body
        return Member(
            sid=body["sid"],
            name=body["name"],
            user_id=body.get("user"),
            joined_at=datetime.fromisoformat(body["at"]),
            address=body.get("addr", "unknown"),
            process=entry.process,
        )

    def _apply_join(self, room: Room, entry: LogEntry) -> None:
        member = self._member_of(entry)
        resumes = entry.body.get("resumes")
        if member.sid in room.remote:  # a repeated join: its name (only it hears roomUsers)
            room.remote[member.sid].name = member.name
            return
        if resumes is not None:
            away = room.remote_away.pop(resumes, None) or room.away.get(resumes)
            if away is not None:
                member.joined_at = away.joined_at
                if resumes in room.away:
                    self._forget_away(room, away)
        room.remote[member.sid] = member
        room.add_participant(member.user_id, member.name, self.now(room))
        self.notifier.broadcast(room.room_id, "roomUsers", room_users(room))
        if resumes is None:
            joined = outbound.user_joined(member.sid, member.name)
            self.notifier.broadcast(room.room_id, "userJoined", joined)

    def _apply_away(self, room: Room, entry: LogEntry) -> None:
        sid = entry.body["sid"]
        if sid in room.members:  # taken for gone while this process could not renew its lease
            self.replicate(room, self._join_entry(room.members[sid], sid))
            return
        member = room.remote.pop(sid, None)
        if member is None:
            return
        room.remote_away[sid] = member
        self.notifier.broadcast(room.room_id, "roomUsers", room_users(room))
        payload = outbound.who(sid, member.name)
        self.notifier.broadcast(room.room_id, "userTemporarilyDisconnected", payload)
        grace = self.settings.reconnect_grace_seconds + GRACE_MARGIN_SECONDS
        asyncio.get_running_loop().call_later(grace, self._remote_grace_over, room, sid)

    def _remote_grace_over(self, room: Room, sid: str) -> None:
        """Its own process would have ended its grace by now (or is gone): end it."""
        if sid in room.remote_away and self.rooms.get(room.room_id) is room:
            self.replicate(room, {"k": "leave", "sid": sid, "reason": "timeout"})

    def _apply_call(self, room: Room, entry: LogEntry) -> None:
        """Who is in the room's call, on every process (the announcements are relayed)."""
        sid = entry.body["sid"]
        if entry.body.get("in"):
            room.call[sid] = None
            room.call_active = True
        else:
            room.call.pop(sid, None)
            self.end_call_if_empty(room)

    def _apply_creator(self, room: Room, entry: LogEntry) -> None:
        if room.creator_name is None:  # the first create in the log is the session's
            self.set_creator(room, entry.body["name"], entry.body.get("user"))

    def set_creator(self, room: Room, name: str, user_id: str | None) -> None:
        room.creator_name, room.creator_user_id = name, user_id
        room.touch(self.now(room))
        self.writer.changed(room)

    def _apply_leave(self, room: Room, entry: LogEntry) -> None:
        sid = entry.body["sid"]
        if sid in room.members:  # taken for gone while this process could not renew its lease
            self.replicate(room, self._join_entry(room.members[sid], None))
            return
        present = sid in room.remote
        member = room.remote.pop(sid, None) or room.remote_away.pop(sid, None)
        if member is None:
            return
        room.participant_left(member.user_id, member.name, self.now(room))
        if sid in room.call:  # a process that died takes its callers with it
            del room.call[sid]
            self.end_call_if_empty(room)
        if present:
            self.notifier.broadcast(room.room_id, "roomUsers", room_users(room))
        if not entry.body.get("quiet"):
            left = outbound.user_left(member.sid, member.name)
            self.notifier.broadcast(room.room_id, "userLeft", left)
        self._schedule_unload(room)

    # -- joining ---------------------------------------------------------------------------

    async def join(
        self,
        sid: str,
        room_id: str,
        name: str,
        user_id: str | None,
        address: str,
        round_trip: float = 0.0,
        role: str = "editor",
        account: str | None = None,
    ) -> Arrival:
        """`role` and `account`: what access.py found the joiner may do, and who its token
        proved it is."""
        previous = self._joining.get(sid)
        if previous is not None:
            await asyncio.shield(previous)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._joining[sid] = done
        try:
            room = await self.open(room_id, create=True)
            if self.places is not None and sid not in room.members:
                await self._take_place(room, Member(sid, name, user_id, self.clock(), address))
            arrival = self._enter(sid, room, name, user_id, address)
            if room.renewed and not arrival.repeated:
                room.renewed = False  # the first joiner is told its session had expired
                arrival = dataclasses.replace(arrival, expired=True)
            member = arrival.member
            member.round_trip, member.role, member.account = round_trip, role, account
        finally:
            done.set_result(None)
            if self._joining.get(sid) is done:
                del self._joining[sid]
        self._announce_arrival(arrival)
        if arrival.told is not None:
            # The others hear of the arrival before it is answered (unless Redis is slow to
            # answer: then a moment after).
            await asyncio.wait([arrival.told], timeout=JOIN_TOLD_SECONDS)
        return arrival

    async def _take_place(self, room: Room, joiner: Member) -> None:
        """Cluster mode: a place in the room, counted over every process in one script (each
        process's own view learns of joins and departures elsewhere a moment late). Places
        of processes that died, or that a process could not give back, are swept when the
        room seems full. The same person back from a drop takes its place again."""
        assert self.places is not None
        limit = self.settings.max_clients_per_room
        if room.away_member(joiner.identity) is not None:
            limit = RESUMED_PLACES
        self._claiming.add(joiner.sid)
        try:
            if await self.places.join(room.room_id, joiner.sid, limit) is not None:
                return
            # Not swept: this process's members, and its joiners whose place is taken but
            # whose answer has not been read yet.
            mine = {*room.members, *self._claiming}
            swept = await self.places.sweep(room.room_id, mine)
            if not swept or await self.places.join(room.room_id, joiner.sid, limit) is None:
                full = self.settings.max_clients_per_room
                raise RoomFull(f"Room {room.room_id} is full ({full} clients)")
        finally:
            self._claiming.discard(joiner.sid)

    async def vacate(self, sid: str) -> None:
        """Cluster mode: the socket is about to leave its room (or drop): its place is given
        back first, so that whoever hears of the departure finds the place free."""
        room_id = self.room_of.get(sid)
        if self.places is None or room_id is None or sid not in self.rooms[room_id].members:
            return
        self._vacated.add(sid)
        await self._give_place_back(self.places, room_id, sid)

    def _give_place(self, room_id: str, sid: str) -> None:
        """Cluster mode: a socket of this process is no longer present in the room."""
        if sid in self._vacated:
            self._vacated.discard(sid)
        elif self.places is not None:
            self._background(self._give_place_back(self.places, room_id, sid))

    @staticmethod
    async def _give_place_back(places: Roster, room_id: str, sid: str) -> None:
        with contextlib.suppress(ClusterUnavailable):  # the next sweep takes it out
            await places.leave(room_id, sid)

    def _enter(self, sid: str, room: Room, name: str, user_id: str | None, address: str) -> Arrival:
        current = room.members.get(sid)
        if current is not None:
            current.name = name
            self.replicate(room, self._join_entry(current, None))
            return Arrival(room=room, member=current, repeated=True)
        identity = Member(sid, name, user_id, self.clock(), address).identity
        away = room.away_member(identity)
        full = room.size() >= self.settings.max_clients_per_room
        if away is None and full and self.places is None:  # cluster mode: _take_place
            raise RoomFull(
                f"Room {room.room_id} is full ({self.settings.max_clients_per_room} clients)"
            )
        self.leave(sid)  # a socket is in one room at a time
        if away is not None and room.remote_away.pop(away.sid, None) is None:
            self._forget_away(room, away)
        now = self.clock()
        member = room.add_member(sid, name, user_id, address, now)
        if away is not None:  # the same person, back: same entry, same editor dialect
            member.joined_at = away.joined_at
            member.uses_code, member.uses_files = away.uses_code, away.uses_files
        self.room_of[sid] = room.room_id
        self.notifier.enter(sid, room.room_id)
        self._cancel_unload(room.room_id)
        self.writer.changed(room)
        entry = self._join_entry(member, away.sid if away is not None else None)
        told = self.replicate(room, {**entry, "t": now.isoformat()})
        return Arrival(room, member, repeated=False, resumed=away is not None, told=told)

    def now(self, room: Room) -> datetime:
        """The time to stamp a change of the room with: in cluster mode, while a log entry
        is applied, the time its process stamped it."""
        return room.stamp or self.clock()

    def _stamp(self, body: dict[str, Any]) -> datetime:
        """When a log entry's change happened, as its process stamped it (none yet: now)."""
        stamp = body.get("t")
        return datetime.fromisoformat(stamp) if isinstance(stamp, str) else self.clock()

    @staticmethod
    def _join_entry(member: Member, resumes: str | None) -> dict[str, Any]:
        return {
            "k": "join",
            "sid": member.sid,
            "name": member.name,
            "user": member.user_id,
            "at": member.joined_at.isoformat(),
            "addr": member.address,
            "resumes": resumes,
        }

    def _announce_arrival(self, arrival: Arrival) -> None:
        room, member = arrival.room, arrival.member
        send = self.notifier
        if room.call_active:
            send.send([member.sid], "callActiveInRoom", outbound.room_only(room.room_id))
        if room.call:
            count = outbound.call_count(room.room_id, len(room.call))
            send.send([member.sid], "callParticipantsCount", count)
        if arrival.repeated:
            send.send([member.sid], "roomUsers", room_users(room))
            return
        send.broadcast(room.room_id, "roomUsers", room_users(room))
        if not arrival.resumed:
            joined = outbound.user_joined(member.sid, member.name)
            send.broadcast(room.room_id, "userJoined", joined, skip=member.sid)

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

    async def settled(self, sid: str) -> tuple[Room, Member] | None:
        """The socket's room and membership, once a join it sent is done."""
        joining = self._joining.get(sid)
        if joining is not None:
            await asyncio.shield(joining)
        return self.room_of_socket(sid)

    def room_of_socket(self, sid: str) -> tuple[Room, Member] | None:
        room = self.rooms.get(self.room_of.get(sid, ""))
        member = room.members.get(sid) if room else None
        return (room, member) if room is not None and member is not None else None

    # -- leaving ---------------------------------------------------------------------------

    def leave(self, sid: str, reason: str | None = None) -> None:
        """The socket leaves its room now (deliberately, or its grace is over)."""
        self._cancel(self._grace_timers, sid)
        room = self.rooms.get(self.room_of.pop(sid, ""))
        if room is None:
            return
        present = sid in room.members
        now = self.clock()
        member = room.remove_member(sid, now)
        if member is None:
            return
        if present:
            self._give_place(room.room_id, sid)
        self.notifier.leave(sid, room.room_id)
        self._left(room)
        self.replicate(room, {"k": "leave", "sid": sid, "reason": reason, "t": now.isoformat()})
        send = self.notifier
        if present:
            send.broadcast(room.room_id, "roomUsers", room_users(room))
        send.broadcast(room.room_id, "userLeft", outbound.user_left(member.sid, member.name))
        self.leave_call(room, member, reason)

    def disconnect(self, sid: str, *, temporary: bool) -> None:
        """A socket closed. Deliberately: it leaves now. Dropped: it leaves `roomUsers` now and
        the room hears `userLeft` only if nobody takes its place within the grace delay."""
        found = self.room_of_socket(sid)
        if not temporary or found is None:
            self.leave(sid)
            return
        room, member = found
        if sid in room.call:
            self._start_call_timer(room, sid, member.name)
        self._give_place(room.room_id, sid)
        if room.present_twin(member) is not None:
            self._forget_away(room, member)  # its reload already joined: no departure at all
            self.replicate(room, {"k": "leave", "sid": sid, "quiet": True})
            self.notifier.broadcast(room.room_id, "roomUsers", room_users(room))
            return
        payload = outbound.who(sid, member.name)
        if self.settings.reconnect_grace_seconds <= 0:
            if sid in room.call:
                self.notifier.broadcast(room.room_id, "userTemporarilyDisconnected", payload)
            self.leave(sid)
            return
        del room.members[sid]
        room.away[sid] = member
        self.replicate(room, {"k": "away", "sid": sid})
        self.notifier.leave(sid, room.room_id)
        self.notifier.broadcast(room.room_id, "roomUsers", room_users(room))
        self.notifier.broadcast(room.room_id, "userTemporarilyDisconnected", payload)
        loop = asyncio.get_running_loop()
        self._grace_timers[sid] = loop.call_later(
            self.settings.reconnect_grace_seconds, self.leave, sid, "timeout"
        )

    def _forget_away(self, room: Room, member: Member) -> None:
        """Drop a socket its person's new socket replaces: no departure is heard."""
        self._cancel(self._grace_timers, member.sid)
        self.room_of.pop(member.sid, None)
        room.members.pop(member.sid, None)
        room.away.pop(member.sid, None)
        for doc in room.docs.values():
            doc.history.forget(member.sid)

    def _left(self, room: Room) -> None:
        if room.members:
            self.writer.changed(room)
        else:
            # The last one out: a snapshot of what changed in its history, write at once,
            # keep the room warm for a quick return.
            for doc_id in room.history.changed_since_snapshot():
                doc = room.docs.get(doc_id)
                if doc is not None:
                    room.history.snapshot(doc_id, room.version, doc.text)
            for hook in self.on_empty:
                hook(room)
            self.writer.write_soon(room)
            self._schedule_unload(room)

    # -- calls: who leaves them --------------------------------------------------------------

    def _start_call_timer(self, room: Room, sid: str, name: str) -> None:
        loop = asyncio.get_running_loop()
        self._cancel(self._call_timers, sid)
        self._call_timers[sid] = loop.call_later(
            self.settings.call_reconnect_seconds, self._call_timeout, room.room_id, sid, name
        )

    def _call_timeout(self, room_id: str, sid: str, name: str) -> None:
        self._call_timers.pop(sid, None)
        room = self.rooms.get(room_id)
        if room is None or sid not in room.call:
            return
        del room.call[sid]
        self.replicate(room, {"k": "call", "sid": sid, "in": False})
        payload = outbound.left_call(sid, name or A_USER, reason="timeout")
        self.notifier.relay(room_id, "userLeftCall", payload)
        if not room.call:
            room.call_active = False

    def leave_call(self, room: Room, member: Member, reason: str | None) -> None:
        """A member that left the room leaves its call too (the original kept it forever)."""
        self._cancel(self._call_timers, member.sid)
        if not room.call_active or member.sid not in room.call:
            return
        room.call.pop(member.sid, None)
        self.replicate(room, {"k": "call", "sid": member.sid, "in": False})
        self.end_call_if_empty(room)
        if room.call:
            count = outbound.call_count(room.room_id, len(room.call))
            self.notifier.relay(room.room_id, "callParticipantsCount", count)
        payload = outbound.left_call(member.sid, member.name, reason)
        self.notifier.relay(room.room_id, "userLeftCall", payload, skip=member.sid)

    @staticmethod
    def end_call_if_empty(room: Room) -> None:
        if not room.call:
            room.call_active = False

    # -- idle unload ---------------------------------------------------------------------------

    def _schedule_unload(self, room: Room) -> None:
        if room.members or room.away or room.room_id in self._unload_timers:
            return
        loop = asyncio.get_running_loop()
        self._unload_timers[room.room_id] = loop.call_later(
            self.settings.room_idle_seconds, self._unload, room.room_id
        )

    def _cancel_unload(self, room_id: str) -> None:
        self._cancel(self._unload_timers, room_id)

    @staticmethod
    def _cancel(timers: dict[str, asyncio.TimerHandle], key: str) -> None:
        timer = timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _unload(self, room_id: str) -> None:
        self._unload_timers.pop(room_id, None)
        room = self.rooms.get(room_id)
        if room is None or room.members or room.away:
            return
        if room.needs_save:
            # Not stored yet (store down): keep it in memory and look again later.
            self.writer.write_soon(room)
            self._schedule_unload(room)
            return
        del self.rooms[room_id]
        if self.log is not None:
            self.log.close(room_id)
            self._background(self.writer.release(room_id))

    def close(self) -> None:
        """Stop every timer; away members leave now (their rooms then write at once)."""
        for sid in list(self._grace_timers):
            self.leave(sid)
        for timers in (self._unload_timers, self._call_timers):
            for timer in timers.values():
                timer.cancel()
            timers.clear()

    def counts(self) -> dict[str, int]:
        """How many rooms, sockets, timers and tasks are held (for metrics and leak tests)."""
        return {
            "rooms": len(self.rooms),
            "sockets": len(self.room_of),
            "unload_timers": len(self._unload_timers),
            "grace_timers": len(self._grace_timers),
            "call_timers": len(self._call_timers),
            "loading": len(self._loading),
            "pending_writes": self.writer.pending_rooms(),
        }

    # -- reconnects ------------------------------------------------------------------------------

    async def missed(self, room: Room, last_seen: int, epoch: str | None) -> Missed:
        """Chat after `last_seen` (oldest first) and which texts and whether the language changed.

        A version seen in another epoch (or above the room's) may have been lost in a crash
        and handed out again: replay from what was stored, with every text and the language."""
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
        docs = [doc.doc_id for doc in room.docs.values() if lost or doc.version > last_seen]
        return Missed(
            messages=messages[-MAX_REPLAY:],
            docs=docs,
            language_changed=lost or room.language_version > last_seen,
        )

    # -- used by sessions (REST) -------------------------------------------------------------

    def detach(self, room_id: str) -> tuple[Room | None, asyncio.Task[None]]:
        """Take a live room out of memory (its session is being deleted). The task ends once
        this process's writer has let the room go (a write under way ends first)."""
        room = self.rooms.pop(room_id, None)
        self._cancel_unload(room_id)
        if room is not None:
            room.deleted = True
            for sid in [*room.members, *room.away]:
                self.room_of.pop(sid, None)
                self._cancel(self._grace_timers, sid)
        if self.log is not None:
            self.log.close(room_id)
        return room, self._background(self.writer.drop(room_id))

    def reattach(self, room: Room) -> None:
        """Put back a room whose deletion failed: nothing is lost."""
        room.deleted = False
        self.rooms[room.room_id] = room
        for sid in room.members:
            self.room_of[sid] = room.room_id
        if room.needs_save:
            self.writer.changed(room)
        self._schedule_unload(room)

    def tell_deleted(self, room: Room) -> None:
        """The room's sockets of this process hear that its session is gone, and leave it."""
        self.notifier.broadcast(room.room_id, "sessionDeleted", {"roomId": room.room_id})
        for sid in room.members:
            self.notifier.leave(sid, room.room_id)

    def drop(self, room: Room) -> None:
        """Cluster mode: another process deleted the room's session."""
        if self.rooms.get(room.room_id) is room:
            self.detach(room.room_id)
            self.tell_deleted(room)
