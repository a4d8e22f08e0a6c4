"""REST routes: validate the request, call the domain, answer JSON in the original's shapes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from app.errors import InvalidPayload
from app.events import Broadcaster
from app.middleware import error_response, json_response
from app.models import (
    ROOM_ID_PATTERN,
    ChatRecord,
    CreateSessionBody,
    Limits,
    MessagesQuery,
    SessionRecord,
    SessionSummary,
    UpdateSessionBody,
    iso,
    utc_now,
)
from app.rooms import Rooms
from app.validation import describe, parse

USER_SESSIONS_LIMIT = 10
READY_TIMEOUT_SECONDS = 2.0


def session_json(record: SessionRecord, messages: list[ChatRecord]) -> dict[str, Any]:
    return {
        "roomId": record.room_id,
        "code": record.code,
        "language": record.language,
        "version": record.version,
        "creatorName": record.creator_name,
        "creatorUserId": record.creator_user_id,
        "participants": [
            {
                "userId": p.user_id,
                "name": p.name,
                "joinedAt": iso(p.joined_at),
                "lastSeen": iso(p.last_seen),
            }
            for p in record.participants
        ],
        "messages": [
            {
                "id": m.id,
                "version": m.version,
                "userId": m.user_id,
                "userName": m.user_name,
                "message": m.message,
                "timestamp": iso(m.timestamp),
            }
            for m in messages
        ],
        "createdAt": iso(record.created_at),
        "expiresAt": iso(record.expires_at),
        "lastActivity": iso(record.last_activity),
    }


def summary_json(summary: SessionSummary) -> dict[str, Any]:
    return {
        "roomId": summary.room_id,
        "creatorName": summary.creator_name,
        "participantCount": summary.participant_count,
        "language": summary.language,
        "createdAt": iso(summary.created_at),
        "expiresAt": iso(summary.expires_at),
        "lastActivity": iso(summary.last_activity),
    }


class SessionRoutes:
    """Handlers of /api/*; a live room is always read and changed through memory first."""

    def __init__(self, rooms: Rooms, send: Broadcaster, limits: Limits) -> None:
        self.rooms = rooms
        self.send = send
        self.limits = limits

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/ready", self.ready)
        app.router.add_post("/api/sessions/create", self.create)
        app.router.add_get("/api/sessions/user/{userId}", self.list_for_user)
        app.router.add_get("/api/sessions/{roomId}", self.get)
        app.router.add_post("/api/sessions/{roomId}/update", self.update)
        app.router.add_delete("/api/sessions/{roomId}", self.delete)

    def _room_id(self, request: web.Request) -> str:
        room_id = request.match_info["roomId"]
        if len(room_id) > self.limits.max_room_id_length or not ROOM_ID_PATTERN.fullmatch(room_id):
            raise InvalidPayload("roomId in the path is malformed")
        return room_id

    @staticmethod
    async def _json(request: web.Request) -> object:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="Send the body as application/json")
        body = await request.read()
        try:
            return orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as error:
            raise InvalidPayload(f"Malformed JSON: {error}") from None

    async def health(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "status": "OK",
                "message": "Collaboration server is running",
                "timestamp": iso(utc_now()),
            }
        )

    async def ready(self, request: web.Request) -> web.Response:
        reason = await self.rooms.store_problem(within=READY_TIMEOUT_SECONDS)
        if reason is not None:
            return json_response({"status": "unavailable", "reason": reason}, status=503)
        return json_response({"status": "ready"})

    async def create(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        if isinstance(data, dict) and not (data.get("roomId") and data.get("creatorName")):
            return error_response(
                400, "Missing required fields", "roomId and creatorName are required"
            )
        body = parse(CreateSessionBody, data, self.limits)
        room = await self.rooms.create(
            body.roomId, body.creatorName, body.creatorUserId, body.code, body.language
        )
        session = {
            "roomId": room.room_id,
            "expiresAt": iso(room.expires_at),
            "createdAt": iso(room.created_at),
        }
        return json_response(
            {"success": True, "message": "Session created successfully", "session": session},
            status=201,
        )

    async def get(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        query = self._query(MessagesQuery, request)
        record, messages = await self.rooms.session(room_id, before=query.before, limit=query.limit)
        return json_response({"success": True, "session": session_json(record, messages)})

    def _query(self, model: type[MessagesQuery], request: web.Request) -> MessagesQuery:
        try:
            return model.model_validate(dict(request.query))
        except ValidationError as error:
            raise InvalidPayload(describe(error)) from None

    async def update(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(UpdateSessionBody, await self._json(request), self.limits)
        participants = [(p.userId, p.name) for p in body.participants or []]
        room, code_changed, language_changed = await self.rooms.update(
            room_id, body.code, body.language, participants
        )
        if code_changed:
            await self.send.code_update(room, None, room.last_activity, skip=None)
        elif language_changed:
            await self.send.language_update(room, None, skip=None)
        return json_response({"success": True, "message": "Session updated successfully"})

    async def delete(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        room = await self.rooms.delete(room_id)
        if room is not None:
            await self.send.to_room("sessionDeleted", {"roomId": room_id}, room_id)
            await self.send.sio.close_room(room_id)
        return json_response({"success": True, "message": "Session deleted successfully"})

    async def list_for_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["userId"]
        if len(user_id) > self.limits.max_user_id_length:
            raise InvalidPayload("userId in the path is too long")
        summaries = await self.rooms.sessions_of(user_id, limit=USER_SESSIONS_LIMIT)
        return json_response({"success": True, "sessions": [summary_json(s) for s in summaries]})
