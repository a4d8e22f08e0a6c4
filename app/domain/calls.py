"""Calls and screen share in the editor's rooms, and the separate meeting page's rooms.

Signalling only ever reaches a socket of the sender's own room or meeting (the original
relayed an offer to any socket id it was given, across rooms).
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.domain.errors import NotInRoom, RoomFull
from app.domain.ports import Notifier
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


class Meetings:
    """The meeting page's rooms: sockets that sent `join-call`, in the order they joined.

    They are apart from the editor room of the same id: meeting sockets do not receive the
    editor's events and editor sockets are not listed as meeting peers."""

    def __init__(self, notifier: Notifier, settings: Settings) -> None:
        self.notifier = notifier
        self.settings = settings
        self.meetings: dict[str, dict[str, None]] = {}
        self.meeting_of: dict[str, str] = {}

    def join(self, sid: str, room_id: str) -> None:
        people = self.meetings.get(room_id, {})
        if sid not in people and len(people) >= self.settings.max_clients_per_room:
            raise RoomFull(f"Meeting {room_id} is full")  # before leaving another meeting
        if self.meeting_of.get(sid) != room_id:
            self.leave(sid)
        people = self.meetings.setdefault(room_id, {})
        people[sid] = None
        self.meeting_of[sid] = room_id
        group = MEETING_GROUP + room_id
        self.notifier.enter(sid, group)
        self.notifier.relay(group, "user-joined", sid, list(people))

    def signal(self, sid: str, to: str, message: str) -> None:
        room_id = self.meeting_of.get(sid)
        if room_id is None or to == sid or to not in self.meetings.get(room_id, {}):
            raise NotInRoom(f"{to} is not another socket of your meeting")
        self.notifier.send([to], "signal", sid, message)

    def chat(self, sid: str, data: str, sender: str) -> None:
        room_id = self.meeting_of.get(sid)
        if room_id is None:
            raise NotInRoom("You have not joined a meeting")
        group = MEETING_GROUP + room_id
        self.notifier.relay(group, "chat-message", data, sender, sid, skip=sid)

    def leave(self, sid: str) -> None:
        room_id = self.meeting_of.pop(sid, None)
        if room_id is None:
            return
        people = self.meetings.get(room_id, {})
        people.pop(sid, None)
        if not people:
            self.meetings.pop(room_id, None)
        group = MEETING_GROUP + room_id
        self.notifier.leave(sid, group)
        self.notifier.relay(group, "user-left", sid)
