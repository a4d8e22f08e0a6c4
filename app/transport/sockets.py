"""Socket.IO handlers, registered from the event catalog: validate, throttle, call the domain.

Each handler receives its validated payload and answers an acknowledgement (`{ok: true, ...}`
or `{ok: false, error}` with an `error` event); emitting is the notifier's job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs

import socketio
from pydantic import ValidationError

from app import logs
from app.config import Settings
from app.domain.access import Identity
from app.domain.calls import Calls, Meetings
from app.domain.contexts import Contexts
from app.domain.editing import Editing, Upload
from app.domain.errors import DomainError, Forbidden, InvalidPayload, Unauthorized
from app.domain.gate import Gate
from app.domain.rooms import Rooms
from app.domain.throttle import ConnectionGuard, ConnectionThrottle, Verdict
from app.domain.versions import Versions
from app.storage.records import MAIN_FILE_ID
from app.transport.broadcast import SLOW_CLIENT
from app.transport.notifier import SocketNotifier
from app.transport.polling import ARRIVED
from app.transport.tokens import MAX_TOKEN_CHARS, Tokens
from app.wire import inbound as m
from app.wire import outbound
from app.wire.catalog import EVENTS, Event, Relay
from app.wire.validation import parse

log = logging.getLogger(__name__)
Json = dict[str, Any]
Handler = Callable[[str, Any], Awaitable[Json | None]]
TEMPORARY_REASONS = ("ping timeout", "transport close", "transport error", SLOW_CLIENT)
# The event being handled: the probes its socket had answered when it arrived, and when.
ARRIVAL: ContextVar[tuple[int, float] | None] = ContextVar("arrival", default=None)


# What a connection's environ keeps once it has connected (what the Admin UI shows of it).
ENVIRON_KEPT = ("REMOTE_ADDR", "HTTP_USER_AGENT")


def _slim(environ: dict[str, Any]) -> None:
    """python-socketio keeps a connection's environ (every header, and the aiohttp request
    it came in: a long-polling client's first request) for as long as it stays connected;
    nothing reads it after the connect. Emptied in place (the Engine.IO handlers that are
    still running share the dict), it keeps only `ENVIRON_KEPT`."""
    kept = {key: environ[key] for key in ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)


def _offset_from_auth(auth: object) -> m.ReconnectOffset | None:
    if not isinstance(auth, dict):
        return None
    try:
        return m.ReconnectOffset.model_validate(auth)
    except ValidationError:
        return None


class SocketEvents:
    """The transport of every client event of the catalog."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        settings: Settings,
        guard: ConnectionGuard,
        notifier: SocketNotifier,
        rooms: Rooms,
        editing: Editing,
        calls: Calls,
        meetings: Meetings,
        gate: Gate,
        tokens: Tokens,
        contexts: Contexts,
        versions: Versions,
    ) -> None:
        self.sio = sio
        self.settings = settings
        self.guard = guard
        self.notifier = notifier
        self.rooms = rooms
        self.editing = editing
        self.calls = calls
        self.meetings = meetings
        self.gate = gate
        self.tokens = tokens
        self.contexts = contexts
        self.versions = versions
        self.identities: dict[str, Identity] = {}  # sockets that presented a valid token
        self.invites: dict[str, str] = {}  # an invite in the connection's `auth`
        self.expiries: dict[str, asyncio.TimerHandle] = {}  # when each token runs out
        self.offsets: dict[str, m.ReconnectOffset] = {}  # from the connection's `auth`
        self.throttles: dict[str, ConnectionThrottle] = {}
        self.addresses: dict[str, str] = {}
        self.round_trips: dict[str, float] = {}  # measured at connect (see polling.py)
        self.received: Counter[str] = Counter()  # events by name (metrics)
        self.unknown: Counter[str] = Counter()  # events nobody serves, by name
        self.refused: Counter[str] = Counter()  # refused events by error code (metrics)
        self.rate_limited: Counter[str] = Counter()  # dropped events by rate family

    def register(self) -> None:
        rates = self.settings.event_rates()
        for event in EVENTS:
            if event.family not in rates:
                raise ValueError(f"event {event.name!r}: no rate for family {event.family!r}")
            if event.relay is not None:
                handler = self._relay(event.relay)
            else:
                handler = getattr(self, f"on_{event.handler}")
            self.sio.on(event.name, self._guarded(event, handler))
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("*", self.on_unknown)

    def _guarded(self, event: Event, handler: Handler) -> Callable[..., Awaitable[Json | None]]:
        name = event.name

        async def handle(sid: str, *args: object) -> Json | None:
            ARRIVAL.set(self.notifier.manager.arrival(sid))  # first: in arrival order
            self.received[name] += 1
            throttle = self.throttles.get(sid)
            if throttle is None and sid in self.addresses:  # its first event: made now
                throttle = self.throttles[sid] = self.guard.throttle()
            if throttle is not None:
                verdict = await throttle.admit(event.family)
                if verdict is not Verdict.ALLOW:
                    return await self._throttled(sid, event, verdict)
            data = (
                dict(zip(event.args, args, strict=False))
                if event.args
                else (args[0] if args else None)
            )
            self._about(sid, data)
            try:
                payload = parse(event.model, data, self.settings)
                if event.needs != "read" and self.gate.enforced:
                    await self.gate.check(sid, event.needs)
                return await handler(sid, payload)
            except DomainError as error:
                return self._refuse(sid, name, error.code, error.message)
            except Exception:
                log.exception("%s from %s failed", name, sid)
                return self._refuse(sid, name, "internal_error", "The server failed")

        return handle

    def _about(self, sid: str, data: object) -> None:
        """What this event logs is about its socket, its room and (once known) its user."""
        found = self.rooms.room_of_socket(sid)
        if found is not None:
            logs.about(room=found[0].room_id, sid=sid, user=found[1].user_id)
        elif isinstance(data, dict) and isinstance(data.get("roomId"), str):
            logs.about(room=data["roomId"][:64], sid=sid)
        else:
            logs.about(sid=sid)

    async def _throttled(self, sid: str, event: Event, verdict: Verdict) -> Json:
        self.rate_limited[event.family] += 1
        message = f"Too many {event.family} events; slow down"
        if verdict is Verdict.DISCONNECT:
            self._refuse(sid, event.name, "flooding", "Still flooding; disconnecting")
            await self.sio.disconnect(sid)
        elif verdict is Verdict.WARN:
            return self._refuse(sid, event.name, "rate_limited", message)
        return outbound.refusal("rate_limited", message)

    def _refuse(self, sid: str, event: str, code: str, message: str) -> Json:
        self.refused[code] += 1
        self.notifier.send([sid], "error", outbound.error(event, code, message))
        return outbound.refusal(code, message)

    def _relay(self, relay: Relay) -> Handler:
        async def handle(sid: str, payload: m.RoomEvent) -> Json:
            room, member = await self.rooms.member(sid, payload.roomId)
            data = relay.build(payload, sid, member.name)
            skip = sid if relay.to == "others" else None
            self.notifier.relay(room.room_id, relay.event, data, skip=skip)
            return {"ok": True}

        return handle

    async def on_unknown(self, event: str, sid: str, *args: object) -> None:
        self.notifier.manager.arrival(sid)
        self.unknown[event[:64]] += 1
        log.debug("unknown event %r from %s ignored", event[:64], sid)

    # -- connections -----------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        # It runs in the task that serves the connection for as long as it stays open: what
        # it logs is about the socket, what that task logs later is not (nor kept by it).
        token = logs.about(sid=sid)
        try:
            await self._connect(sid, environ, auth)
        finally:
            logs.ABOUT.reset(token)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: object) -> None:
        who = await self._identify(environ, auth) if self.gate.enforced else None
        request = environ.get("aiohttp.request")
        address = self.guard.address_of(request)
        refusal = await self.guard.limits.connect(address)
        if refusal is not None:
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        self.addresses[sid] = address
        arrived = environ.get(ARRIVED)
        if isinstance(arrived, float):
            self.round_trips[sid] = max(0.0, time.monotonic() - arrived)
        self.notifier.manager.track(sid)
        if who is not None:
            self._hold(sid, who)
            self.contexts.follow(sid, who.user_id)
        invite = auth.get("invite") if isinstance(auth, dict) else None
        if self.gate.enforced and isinstance(invite, str) and invite:
            self.invites[sid] = invite[:MAX_TOKEN_CHARS]
        offset = _offset_from_auth(auth)
        if offset is not None:
            self.offsets[sid] = offset
        _slim(environ)

    async def _identify(self, environ: dict[str, Any], auth: object) -> Identity | None:
        """Who the socket is: its token, from `auth` ({token}) or the query (?token=).
        Without one: anonymous (optional mode) or refused (required); with a bad one,
        refused."""
        given = auth if isinstance(auth, dict) else {}
        token = given.get("token")
        if not isinstance(token, str) or not token:
            token = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
        if not token:
            if self.settings.auth_mode == "required":
                raise socketio.exceptions.ConnectionRefusedError(
                    "A token is required", {"code": "unauthorized"}
                )
            return None
        try:
            return await self.tokens.identity(token)
        except Unauthorized as error:
            raise socketio.exceptions.ConnectionRefusedError(
                error.message, {"code": error.code}
            ) from None

    def _hold(self, sid: str, who: Identity) -> None:
        """The socket is `who` until its token expires: then it is told, and disconnected."""
        self.identities[sid] = who
        timer = self.expiries.pop(sid, None)
        if timer is not None:
            timer.cancel()
        if who.expires_at is not None:
            loop = asyncio.get_running_loop()
            delay = who.expires_at + self.settings.jwt_leeway_seconds - time.time()
            self.expiries[sid] = loop.call_later(max(0.0, delay), self._expired, sid)

    def _expired(self, sid: str) -> None:
        self.expiries.pop(sid, None)
        self._refuse(sid, "auth", "token_expired", "Your token has expired; sign in again")
        self.notifier.close(sid)

    async def on_refresh_token(self, sid: str, p: m.RefreshToken) -> Json:
        if not self.gate.enforced:
            return {"ok": True}  # open mode: tokens mean nothing
        current = self.identities.get(sid)
        if current is None:
            raise Forbidden("This socket has no token to refresh: connect with one")
        who = await self.tokens.identity(p.token)
        if who.user_id != current.user_id:
            raise Forbidden("The new token is for another user")
        self._hold(sid, who)
        return {"ok": True, "expiresAt": who.expires_at}

    async def on_disconnect(self, sid: str, reason: object = None) -> None:
        self._about(sid, None)
        self.identities.pop(sid, None)
        self.invites.pop(sid, None)
        timer = self.expiries.pop(sid, None)
        if timer is not None:
            timer.cancel()
        self.offsets.pop(sid, None)
        self.throttles.pop(sid, None)
        self.round_trips.pop(sid, None)
        self.notifier.manager.forget(sid)
        address = self.addresses.pop(sid, None)
        await self.rooms.vacate(sid)
        self.rooms.disconnect(sid, temporary=reason in TEMPORARY_REASONS)
        await self.meetings.leave(sid)
        if address is not None:
            await self.guard.limits.disconnect(address)

    # -- the room --------------------------------------------------------------------------

    async def on_join_room(self, sid: str, p: m.JoinRoom) -> Json:
        address = self.addresses.get(sid, "unknown")
        round_trip = self.round_trips.get(sid, 0.0)
        user_id, role, account = p.userId, "editor", None
        if self.gate.enforced:
            who = self.identities.get(sid)
            if who is not None:
                if p.userId is not None and p.userId != who.user_id:
                    raise Forbidden("userId is not the user of your token")
                user_id = account = who.user_id
            token = p.invite or self.invites.pop(sid, None)
            invite = self.tokens.read_invite(token, p.roomId) if token else None
            role = await self.gate.admit(p.roomId, who, invite)
        arrival = await self.rooms.join(
            sid, p.roomId, p.userName, user_id, address, round_trip, role=role, account=account
        )
        if user_id is not None and (account is not None or not self.gate.enforced):
            self.contexts.follow(sid, user_id)  # open mode: the user id is the key
        room = arrival.room
        arrival.member.deltas = p.deltas
        seen = self._last_seen(sid, p)
        if seen is not None:
            await self.editing.replay(room, arrival.member, *seen)
        return {
            "ok": True,
            "version": room.version,
            "epoch": room.epoch,
            "code": room.code,
            "language": room.language,
            **({"role": arrival.member.role} if self.gate.enforced else {}),
            **({"expired": True} if arrival.expired else {}),
        }

    def _last_seen(self, sid: str, p: m.JoinRoom) -> tuple[int, str | None] | None:
        """The version (and its epoch) a rejoining client saw: from joinRoom, else from auth."""
        offset = self.offsets.pop(sid, None)
        if p.lastSeenVersion is not None:
            return p.lastSeenVersion, p.epoch
        if offset is not None and offset.roomId == p.roomId:
            return offset.offset, offset.epoch
        return None

    async def on_leave_room(self, sid: str, p: m.RoomEvent) -> Json:
        # Leaving a room one is not in changes nothing (the socket stays where it is).
        if self.rooms.room_of.get(sid) == p.roomId:
            await self.rooms.vacate(sid)
            self.rooms.leave(sid)
        return {"ok": True}

    async def on_request_code_state(self, sid: str, p: m.RoomEvent) -> Json:
        await self.editing.request_code_state(sid, p.roomId)
        return {"ok": True}

    async def on_send_code_state(self, sid: str, p: m.SendCodeState) -> Json:
        await self.editing.answer_code_state(sid, p.roomId, p.targetUserId)
        return {"ok": True}

    async def on_code_change(self, sid: str, p: m.CodeChange) -> Json:
        answer = await self.editing.change_text(
            sid,
            p.roomId,
            MAIN_FILE_ID,
            p.code,
            p.baseVersion,
            p.language,
            changes=p.changes,
            arrived=ARRIVAL.get(),
        )
        return self._text_answer(answer, p.baseVersion is not None, p.changes is None, "code")

    @staticmethod
    def _text_answer(answer: Any, merging: bool, whole: bool, key: str) -> Json:
        """The acknowledgement; with the room text when it differs from a whole text sent
        (a delta's sender learns it from the changes that follow)."""
        reply: Json = {"ok": True, "version": answer.version}
        if whole and answer.text is not None:
            reply[key] = answer.text
        if merging:
            reply["merged"] = answer.merged
            if answer.reason:
                reply["reason"] = answer.reason
        return reply

    async def on_language_change(self, sid: str, p: m.LanguageChange) -> Json:
        version = await self.editing.change_language(sid, p.roomId, p.language)
        return {"ok": True, "version": version}

    async def on_chat_message(self, sid: str, p: m.ChatMessage) -> Json:
        message = await self.editing.chat(sid, p.roomId, p.text, p.client_id)
        return {"ok": True, "version": message.version, "id": message.id}

    # -- files -----------------------------------------------------------------------------

    async def on_open_file(self, sid: str, p: m.OpenFile) -> Json:
        version = await self.editing.open_file(sid, p.roomId, p.fileId, p.name)
        return {"ok": True, "version": version}

    async def on_change_file(self, sid: str, p: m.ChangeFile) -> Json:
        answer = await self.editing.change_text(
            sid,
            p.roomId,
            p.fileId,
            p.content,
            p.baseVersion,
            as_file=True,
            changes=p.changes,
            arrived=ARRIVAL.get(),
        )
        return self._text_answer(answer, p.baseVersion is not None, p.changes is None, "content")

    async def on_request_file(self, sid: str, p: m.FileEvent) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        member.uses_files = True
        self.editing.request_file(room, member, p.fileId)
        return {"ok": True}

    async def on_set_active_file(self, sid: str, p: m.FileEvent) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        member.uses_files = True
        await self.editing.set_active_file(room, p.fileId)
        return {"ok": True}

    async def on_upload_file(self, sid: str, p: m.UploadFile) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        member.uses_files = True
        doc = await self.editing.upload(
            room,
            Upload(
                file_id=p.fileId,
                name=p.name or p.fileId,
                content=p.content or "",
                mime=p.mime or "text/plain",
                size=p.size or 0,
                uploaded_by=p.uploadedBy or member.user_id,
                uploader_name=p.uploaderName or member.name,
                source=p.source or "upload",
            ),
            member,
        )
        return {"ok": True, "version": doc.version}

    # -- whiteboard ------------------------------------------------------------------------

    async def on_whiteboard_change(self, sid: str, p: m.WhiteboardChange) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        await self.editing.change_whiteboard(room, member, p.snapshot)
        return {"ok": True}

    # -- calls in the editor -----------------------------------------------------------------

    async def on_ready_for_call(self, sid: str, p: m.ReadyForCall) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        await self.calls.ready(room, member, p.isReconnecting)
        return {"ok": True}

    async def on_webrtc_offer(self, sid: str, p: m.WebrtcOffer) -> Json:
        return await self._signal(sid, p, "offer", p.offer)

    async def on_webrtc_answer(self, sid: str, p: m.WebrtcAnswer) -> Json:
        return await self._signal(sid, p, "answer", p.answer)

    async def on_ice_candidate(self, sid: str, p: m.IceCandidate) -> Json:
        return await self._signal(sid, p, "candidate", p.candidate)

    async def _signal(self, sid: str, p: m.Targeted, kind: str, value: Any) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        self.calls.signal(room, member, p.to, kind, value)
        return {"ok": True}

    async def on_left_call(self, sid: str, p: m.RoomEvent) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        self.calls.leave(room, member)
        return {"ok": True}

    async def on_call_status(self, sid: str, p: m.RoomEvent) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        self.calls.status(room, member)
        return {"ok": True}

    async def on_track_ended(self, sid: str, p: m.MediaTrackEnded) -> Json:
        await self.rooms.member(sid, p.roomId)  # accepted; the original served nothing either
        return {"ok": True}

    # -- history ---------------------------------------------------------------------------

    async def on_create_checkpoint(self, sid: str, p: m.CreateCheckpoint) -> Json:
        room, member = await self.rooms.member(sid, p.roomId)
        author = (member.account or member.user_id, member.name)
        made = await self.versions.checkpoint(
            room.room_id, self.identities.get(sid), p.name, author
        )
        return {"ok": True, "checkpoint": outbound.checkpoint_created(made)}

    # -- the user's context ----------------------------------------------------------------

    async def on_update_context(self, sid: str, p: m.UpdateContext) -> Json:
        who = self.identities.get(sid)
        user_id = p.userId
        if who is not None:
            if user_id is not None and user_id != who.user_id:
                raise Forbidden("userId is not the user of your token")
            user_id = who.user_id
        if user_id is None:
            raise InvalidPayload("userId: Field required")
        saved = await self.contexts.set_key(sid, user_id, who, p.key, p.value)
        return {"ok": True, "revision": saved.revision}

    # -- the meeting page ------------------------------------------------------------------

    async def on_join_call(self, sid: str, p: m.JoinCall) -> Json:
        await self.meetings.join(sid, p.roomId)
        return {"ok": True}

    async def on_meeting_signal(self, sid: str, p: m.MeetingSignal) -> Json:
        await self.meetings.signal(sid, p.to, p.message)
        return {"ok": True}

    async def on_meeting_chat(self, sid: str, p: m.MeetingChat) -> Json:
        self.meetings.chat(sid, p.data, p.sender)
        return {"ok": True}
