"""Socket.IO handlers: validate the payload, call the domain, emit to the right recipients."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import socketio
from pydantic import ValidationError

from app.errors import DomainError, NotInRoom
from app.models import (
    ChatMessage,
    CodeChange,
    CursorMove,
    JoinRoom,
    LanguageChange,
    Limits,
    ReconnectOffset,
    RoomEvent,
    SendCodeState,
    iso,
)
from app.room import Member, Room
from app.rooms import Departure, Rooms
from app.throttle import EVENT_FAMILIES, ConnectionGuard, ConnectionThrottle, Verdict
from app.validation import parse

log = logging.getLogger(__name__)
Json = dict[str, Any]
Handler = Callable[[str, object], Awaitable[Json | None]]


def user_list(room: Room) -> list[Json]:
    return [
        {
            "id": m.sid,
            "name": m.name,
            "userId": m.user_id or "anonymous",
            "joinedAt": iso(m.joined_at),
        }
        for m in room.members.values()
    ]


class Broadcaster:
    """The events the server sends, shared by socket handlers and REST routes."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def to_room(
        self, event: str, data: object, room_id: str, skip: str | None = None
    ) -> None:
        await self.sio.emit(event, data, room=room_id, skip_sid=skip)

    async def _send(
        self, event: str, data: object, room: Room, skip: str | None, to: str | None
    ) -> None:
        """To one socket when `to` is given, else to the room but `skip`."""
        if to is not None:
            await self.sio.emit(event, data, to=to)
        else:
            await self.to_room(event, data, room.room_id, skip)

    async def code_update(
        self,
        room: Room,
        author: Member | None,
        at: datetime,
        skip: str | None = None,
        to: str | None = None,
    ) -> None:
        payload = {
            "code": room.code,
            "language": room.language,
            "userId": author.sid if author else None,
            "userName": author.name if author else "server",
            "timestamp": iso(at),
            "version": room.version,
        }
        await self._send("codeUpdate", payload, room, skip, to)

    async def language_update(
        self, room: Room, author: Member | None, skip: str | None = None, to: str | None = None
    ) -> None:
        payload = {
            "language": room.language,
            "userId": author.sid if author else None,
            "userName": author.name if author else "server",
            "version": room.version,
        }
        await self._send("languageUpdate", payload, room, skip, to)

    async def departure(self, departure: Departure) -> None:
        room, member = departure.room, departure.member
        with contextlib.suppress(KeyError, ValueError):  # the socket may be gone already
            await self.sio.leave_room(member.sid, room.room_id)
        await self.to_room("roomUsers", user_list(room), room.room_id)
        await self.to_room(
            "userLeft",
            {
                "userId": member.sid,
                "userName": member.name,
                "message": f"{member.name} left the room",
            },
            room.room_id,
        )

    async def session_saved(self, room_id: str, version: int, saved_at: datetime) -> None:
        payload = {"roomId": room_id, "version": version, "savedAt": iso(saved_at)}
        await self.to_room("sessionSaved", payload, room_id)


def _offset_from_auth(auth: object) -> ReconnectOffset | None:
    if not isinstance(auth, dict):
        return None
    try:
        return ReconnectOffset.model_validate(auth)
    except ValidationError:
        return None


class SocketEvents:
    """One handler per client event; each validates, calls one domain method, then emits."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        rooms: Rooms,
        limits: Limits,
        guard: ConnectionGuard,
    ) -> None:
        self.sio = sio
        self.rooms = rooms
        self.limits = limits
        self.guard = guard
        self.send = Broadcaster(sio)
        self.offsets: dict[str, ReconnectOffset] = {}  # from the connection's `auth`
        self.throttles: dict[str, ConnectionThrottle] = {}
        self.addresses: dict[str, str] = {}

    def register(self) -> None:
        handlers: dict[str, Handler] = {
            "joinRoom": self.on_join_room,
            "leaveRoom": self.on_leave_room,
            "requestCodeState": self.on_request_code_state,
            "sendCodeState": self.on_send_code_state,
            "codeChange": self.on_code_change,
            "languageChange": self.on_language_change,
            "cursorMove": self.on_cursor_move,
            "chatMessage": self.on_chat_message,
            "userTyping": self.on_user_typing,
            "userStoppedTyping": self.on_user_stopped_typing,
        }
        for event, handler in handlers.items():
            self.sio.on(event, self._guarded(event, handler))
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.rooms.on_departed = self.send.departure

    def _guarded(self, event: str, handler: Handler) -> Callable[..., Awaitable[Json | None]]:
        async def handle(sid: str, *args: object) -> Json | None:
            throttle = self.throttles.get(sid)
            if throttle is not None:
                verdict = await throttle.admit(event)
                if verdict is not Verdict.ALLOW:
                    return await self._throttled(sid, event, verdict)
            try:
                return await handler(sid, args[0] if args else None)
            except DomainError as error:
                return await self._refuse(sid, event, error.code, error.message)
            except Exception:
                log.exception("%s from %s failed", event, sid)
                return await self._refuse(sid, event, "internal_error", "The server failed")

        return handle

    async def _throttled(self, sid: str, event: str, verdict: Verdict) -> Json:
        message = f"Too many {EVENT_FAMILIES[event]} events; slow down"
        if verdict is Verdict.DISCONNECT:
            await self._refuse(sid, event, "flooding", "Still flooding; disconnecting")
            await self.sio.disconnect(sid)
        elif verdict is Verdict.WARN:
            return await self._refuse(sid, event, "rate_limited", message)
        return {"ok": False, "error": {"code": "rate_limited", "message": message}}

    async def _refuse(self, sid: str, event: str, code: str, message: str) -> Json:
        await self.sio.emit("error", {"event": event, "code": code, "message": message}, to=sid)
        return {"ok": False, "error": {"code": code, "message": message}}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        request = environ.get("aiohttp.request")
        address = self.guard.address_of(request)
        refusal = await self.guard.limits.connect(address)
        if refusal is not None:
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        self.addresses[sid] = address
        self.throttles[sid] = self.guard.throttle()
        offset = _offset_from_auth(auth)
        if offset is not None:
            self.offsets[sid] = offset

    async def on_join_room(self, sid: str, data: object) -> Json:
        payload = parse(JoinRoom, data, self.limits)
        arrival = await self.rooms.join(sid, payload.roomId, payload.userName, payload.userId)
        room = arrival.room
        if arrival.left is not None:
            await self.send.departure(arrival.left)
        await self.sio.enter_room(sid, room.room_id)
        if arrival.repeated:
            await self.sio.emit("roomUsers", user_list(room), to=sid)
        else:
            await self.send.to_room("roomUsers", user_list(room), room.room_id)
        if not arrival.repeated and not arrival.resumed:
            name = arrival.member.name
            joined = {"userId": sid, "userName": name, "message": f"{name} joined the room"}
            await self.send.to_room("userJoined", joined, room.room_id, skip=sid)
        seen = self._last_seen(sid, payload)
        if seen is not None:
            await self._replay(sid, room, *seen)
        return {
            "ok": True,
            "version": room.version,
            "epoch": room.epoch,
            "code": room.code,
            "language": room.language,
        }

    def _last_seen(self, sid: str, payload: JoinRoom) -> tuple[int, str | None] | None:
        """The version (and its epoch) a rejoining client saw: from joinRoom, else from auth."""
        offset = self.offsets.pop(sid, None)
        if payload.lastSeenVersion is not None:
            return payload.lastSeenVersion, payload.epoch
        if offset is not None and offset.roomId == payload.roomId:
            return offset.offset, offset.epoch
        return None

    async def _replay(self, sid: str, room: Room, last_seen: int, epoch: str | None) -> None:
        """Send the rejoining socket what it missed: chat in order, then code and language."""
        missed = await self.rooms.missed(room, last_seen, epoch)
        for message in missed.messages:
            wire = {
                "id": message.id,
                "message": message.message,
                "userId": message.user_id,
                "userName": message.user_name,
                "timestamp": iso(message.timestamp),
            }
            replayed = {"message": wire, "version": message.version}
            await self.sio.emit("newMessage", replayed, to=sid)
        if missed.code_changed:
            await self.send.code_update(room, None, room.last_activity, to=sid)
        if missed.language_changed:
            await self.send.language_update(room, None, to=sid)

    async def on_leave_room(self, sid: str, data: object) -> Json:
        payload = parse(RoomEvent, data, self.limits)
        # Leaving a room one is not in changes nothing (the socket stays where it is).
        departure = self.rooms.leave(sid) if self.rooms.room_of.get(sid) == payload.roomId else None
        if departure is not None:
            await self.send.departure(departure)
        return {"ok": True}

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        self.offsets.pop(sid, None)
        self.throttles.pop(sid, None)
        address = self.addresses.pop(sid, None)
        if address is not None:
            self.guard.limits.disconnect(address)
        temporary = reason in (
            self.sio.reason.PING_TIMEOUT,
            self.sio.reason.TRANSPORT_CLOSE,
            self.sio.reason.TRANSPORT_ERROR,
        )
        gone = self.rooms.disconnect(sid, temporary=temporary)
        if isinstance(gone, Departure):
            await self.send.departure(gone)
        elif gone is not None:
            room_id = self.rooms.room_of[sid]
            await self.send.to_room(
                "userTemporarilyDisconnected", {"userId": sid, "userName": gone.name}, room_id
            )

    async def on_request_code_state(self, sid: str, data: object) -> Json:
        payload = parse(RoomEvent, data, self.limits)
        await self.rooms.member(sid, payload.roomId)
        await self.send.to_room("codeStateRequest", {"requesterId": sid}, payload.roomId, sid)
        return {"ok": True}

    async def on_send_code_state(self, sid: str, data: object) -> Json:
        payload = parse(SendCodeState, data, self.limits)
        room, _ = await self.rooms.member(sid, payload.roomId)
        if payload.targetUserId not in room.members:
            raise NotInRoom("targetUserId is not a socket in your room")
        state = {
            "code": payload.code,
            "language": payload.language or room.language,
            "version": room.version,
        }
        await self.sio.emit("receiveCodeState", state, to=payload.targetUserId)
        return {"ok": True}

    async def on_code_change(self, sid: str, data: object) -> Json:
        payload = parse(CodeChange, data, self.limits)
        room, member = await self.rooms.member(sid, payload.roomId)
        applied, at = self.rooms.change_code(
            room, member, payload.code, payload.language, payload.baseVersion
        )
        if applied.changed:
            await self.send.code_update(room, member, at, skip=None if applied.echo else sid)
        answer: Json = {"ok": True, "version": applied.version}
        if applied.echo:
            answer["code"] = applied.code
        if payload.baseVersion is not None:
            answer["merged"] = applied.merged
            if applied.reason:
                answer["reason"] = applied.reason
        return answer

    async def on_language_change(self, sid: str, data: object) -> Json:
        payload = parse(LanguageChange, data, self.limits)
        room, member = await self.rooms.member(sid, payload.roomId)
        await self.rooms.change_language(room, payload.language)
        await self.send.language_update(room, member, skip=sid)
        return {"ok": True, "version": room.version}

    async def on_cursor_move(self, sid: str, data: object) -> Json:
        payload = parse(CursorMove, data, self.limits)
        _, member = await self.rooms.member(sid, payload.roomId)
        update = {"position": payload.position, "userId": sid, "userName": member.name}
        await self.send.to_room("cursorUpdate", update, payload.roomId, sid)
        return {"ok": True}

    async def on_chat_message(self, sid: str, data: object) -> Json:
        payload = parse(ChatMessage, data, self.limits)
        room, member = await self.rooms.member(sid, payload.roomId)
        message = await self.rooms.chat(room, member, payload.text, payload.client_id)
        wire = {
            "id": message.id,
            "message": message.message,
            "userId": sid,
            "userName": message.user_name,
            "timestamp": iso(message.timestamp),
        }
        await self.send.to_room(
            "newMessage", {"message": wire, "version": message.version}, room.room_id, sid
        )
        return {"ok": True, "version": message.version, "id": message.id}

    async def on_user_typing(self, sid: str, data: object) -> Json:
        return await self._typing(sid, data, "userIsTyping")

    async def on_user_stopped_typing(self, sid: str, data: object) -> Json:
        return await self._typing(sid, data, "userStoppedTyping")

    async def _typing(self, sid: str, data: object, event: str) -> Json:
        payload = parse(RoomEvent, data, self.limits)
        _, member = await self.rooms.member(sid, payload.roomId)
        await self.send.to_room(
            event, {"userId": sid, "userName": member.name}, payload.roomId, sid
        )
        return {"ok": True}
