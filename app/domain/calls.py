"""Calls and screen share in the editor's rooms, and the separate meeting page's rooms.

Signalling only ever reaches a socket of the sender's own room or meeting (the original
relayed an offer to any socket id it was given, across rooms).
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.domain.errors import ClusterUnavailable, NotInRoom, RoomFull
from app.domain.ports import Notifier, Roster
from app.domain.room import Member, Room
from app.domain.rooms import Rooms
from app.wire import outbound

MEETING_GROUP = "meeting:"


class Calls:
    """The call of an editor room: who is in it, and their signalling."""

    def __init__(self, rooms: Rooms, notifier: Notifier) -> None:
        self.rooms = rooms
        self.notifier = notifier

    @staticmethod
    def _people(room: Room, skip: str | None = None) -> list[tuple[str, str]]:
        """Call participants still in the room list (names come from it), but `skip`."""
        people = []
        for sid in room.call:
            member = room.members.get(sid) or room.remote.get(sid)  # any process's
            if sid != skip and member is not None:
                people.append((sid, member.name))
        return people

    async def ready(self, room: Room, member: Member, reconnect: bool) -> None:
        async with room.lock:  # cluster mode: in the call on every process before it is told
            await self.rooms.order(
                room, {"k": "call", "sid": member.sid, "in": True}, versioned=False
            )
            room.call_active = True
            room.call[member.sid] = None
        others = self._people(room, skip=member.sid)
        if others:
            payload = outbound.existing_participants(others, reconnect)
            self.notifier.send([member.sid], "existingCallParticipants", payload)
        announce = outbound.ready_for_call(member.sid, member.name, reconnect)
        self.notifier.relay(room.room_id, "userReadyForCall", announce, skip=member.sid)

    def leave(self, room: Room, member: Member) -> None:
        self.rooms.leave_call(room, member, reason=None)

    def status(self, room: Room, member: Member) -> None:
        payload = outbound.call_status(
            room.room_id, room.call_active, len(room.call), self._people(room, skip=member.sid)
        )
        self.notifier.send([member.sid], "roomCallStatus", payload)

    def signal(self, room: Room, member: Member, to: str, kind: str, value: Any) -> None:
        """Forward an offer, answer or ICE candidate to a socket of the sender's room."""
        if (to not in room.members and to not in room.remote) or to == member.sid:
            raise NotInRoom(f"{to} is not another socket of room {room.room_id}")
        event = {"offer": "webrtc-offer", "answer": "webrtc-answer"}.get(kind, "ice-candidate")
        payload = outbound.webrtc(kind, value, member.sid, member.name, room.room_id)
        self.notifier.send([to], event, payload)


class LocalRoster:
    """The meetings of one process (the Roster when not in cluster mode)."""

    def __init__(self) -> None:
        self.meetings: dict[str, dict[str, None]] = {}

    async def join(self, meeting: str, sid: str, limit: int) -> list[str] | None:
        people = self.meetings.setdefault(meeting, {})
        if sid not in people and len(people) >= limit:
            return None
        people[sid] = None
        return list(people)

    async def leave(self, meeting: str, sid: str) -> None:
        people = self.meetings.get(meeting, {})
        people.pop(sid, None)
        if not people:
            self.meetings.pop(meeting, None)

    async def members(self, meeting: str) -> list[str]:
        return list(self.meetings.get(meeting, {}))

    async def sweep(self, meeting: str, mine: set[str]) -> list[str]:
        return []  # one process: its sockets leave as they go


class Meetings:
    """The meeting page's rooms: sockets that sent `join-call`, in the order they joined.

    They are apart from the editor room of the same id: meeting sockets do not receive the
    editor's events and editor sockets are not listed as meeting peers."""

    def __init__(
        self, notifier: Notifier, settings: Settings, roster: Roster | None = None
    ) -> None:
        self.notifier = notifier
        self.settings = settings
        self.roster: Roster = roster if roster is not None else LocalRoster()
        self.meeting_of: dict[str, str] = {}  # this process's sockets
        self._unswept: set[str] = set()  # meetings a departure could not be written to

    async def join(self, sid: str, room_id: str) -> None:
        limit = self.settings.max_clients_per_room
        if self.meeting_of.get(sid) != room_id:
            people = await self.roster.members(room_id)
            if sid not in people and len(people) >= limit:
                raise RoomFull(f"Meeting {room_id} is full")  # before leaving another meeting
            await self.leave(sid)
        joined = await self.roster.join(room_id, sid, limit)
        if joined is None:
            raise RoomFull(f"Meeting {room_id} is full")
        self.meeting_of[sid] = room_id
        group = MEETING_GROUP + room_id
        self.notifier.enter(sid, group)
        self.notifier.relay(group, "user-joined", sid, joined)

    async def signal(self, sid: str, to: str, message: str) -> None:
        room_id = self.meeting_of.get(sid)
        if room_id is None or to == sid or to not in await self.roster.members(room_id):
            raise NotInRoom(f"{to} is not another socket of your meeting")
        self.notifier.send([to], "signal", sid, message)

    def chat(self, sid: str, data: str, sender: str) -> None:
        room_id = self.meeting_of.get(sid)
        if room_id is None:
            raise NotInRoom("You have not joined a meeting")
        group = MEETING_GROUP + room_id
        self.notifier.relay(group, "chat-message", data, sender, sid, skip=sid)

    async def leave(self, sid: str) -> None:
        room_id = self.meeting_of.pop(sid, None)
        if room_id is None:
            return
        group = MEETING_GROUP + room_id
        self.notifier.leave(sid, group)
        try:
            await self.roster.leave(room_id, sid)
        except ClusterUnavailable:
            self._unswept.add(room_id)  # the next sweep takes it out
        self.notifier.relay(group, "user-left", sid)

    async def sweep(self) -> None:
        """Cluster mode, now and then: the sockets of processes that died leave their
        meetings (and this process's own that could not be taken out when they left)."""
        mine: dict[str, set[str]] = {meeting: set() for meeting in self._unswept}
        for sid, meeting in self.meeting_of.items():
            mine.setdefault(meeting, set()).add(sid)
        for meeting, sids in mine.items():
            try:
                gone = await self.roster.sweep(meeting, sids)
            except ClusterUnavailable:
                continue
            self._unswept.discard(meeting)
            for sid in gone:
                self.notifier.relay(MEETING_GROUP + meeting, "user-left", sid)
