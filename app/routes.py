"""REST routes: validate the request, call the domain, answer JSON in the original's shapes."""

from __future__ import annotations

import orjson
from aiohttp import web
from pydantic import ValidationError

from app.api_models import (
    Answer,
    CreatedAnswer,
    CreatedSession,
    DoneAnswer,
    HealthAnswer,
    ReadyAnswer,
    SessionAnswer,
    SessionOut,
    SummaryOut,
    UserSessionsAnswer,
)
from app.errors import InvalidPayload
from app.events import Broadcaster
from app.middleware import error_response, json_response
from app.models import (
    ROOM_ID_PATTERN,
    CreateSessionBody,
    Limits,
    MessagesQuery,
    UpdateSessionBody,
    iso,
    utc_now,
)
from app.openapi import openapi_document
from app.sessions import Sessions
from app.validation import describe, parse

USER_SESSIONS_LIMIT = 10
READY_TIMEOUT_SECONDS = 2.0


def answer(model: Answer, status: int = 200, *, exclude_none: bool = False) -> web.Response:
    return json_response(model.model_dump(mode="json", exclude_none=exclude_none), status=status)


class SessionRoutes:
    """Handlers of /api/*; a live room is always read and changed through memory first."""

    def __init__(self, sessions: Sessions, send: Broadcaster, limits: Limits) -> None:
        self.sessions = sessions
        self.send = send
        self.limits = limits

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/openapi.json", self.openapi)
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/ready", self.ready)
        app.router.add_post("/api/sessions/create", self.create)
        app.router.add_get("/api/sessions/user/{userId:[^/]+}", self.list_for_user)
        app.router.add_get("/api/sessions/{roomId:[^/]+}", self.get)
        app.router.add_post("/api/sessions/{roomId:[^/]+}/update", self.update)
        app.router.add_delete("/api/sessions/{roomId:[^/]+}", self.delete)

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

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi_document(self.limits))

    async def health(self, request: web.Request) -> web.Response:
        return answer(
            HealthAnswer(message="Collaboration server is running", timestamp=iso(utc_now()))
        )

    async def ready(self, request: web.Request) -> web.Response:
        reason = await self.sessions.store_problem(within=READY_TIMEOUT_SECONDS)
        if reason is not None:
            return answer(ReadyAnswer(status="unavailable", reason=reason), status=503)
        return answer(ReadyAnswer(status="ready"), exclude_none=True)

    async def create(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        if isinstance(data, dict) and not (data.get("roomId") and data.get("creatorName")):
            return error_response(
                400, "Missing required fields", "roomId and creatorName are required"
            )
        body = parse(CreateSessionBody, data, self.limits)
        room = await self.sessions.create(
            body.roomId, body.creatorName, body.creatorUserId, body.code, body.language
        )
        session = CreatedSession(
            roomId=room.room_id, expiresAt=iso(room.expires_at), createdAt=iso(room.created_at)
        )
        return answer(
            CreatedAnswer(message="Session created successfully", session=session), status=201
        )

    async def get(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        query = self._query(MessagesQuery, request)
        record, messages = await self.sessions.session(
            room_id, before=query.before, limit=query.limit
        )
        return answer(SessionAnswer(session=SessionOut.of(record, messages)))

    def _query(self, model: type[MessagesQuery], request: web.Request) -> MessagesQuery:
        try:
            return model.model_validate(dict(request.query))
        except ValidationError as error:
            raise InvalidPayload(describe(error)) from None

    async def update(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(UpdateSessionBody, await self._json(request), self.limits)
        participants = [(p.userId, p.name) for p in body.participants or []]
        room, code_changed, language_changed = await self.sessions.update(
            room_id, body.code, body.language, participants
        )
        if code_changed:
            await self.send.code_update(room, None, room.last_activity, skip=None)
        elif language_changed:
            await self.send.language_update(room, None, skip=None)
        return answer(DoneAnswer(message="Session updated successfully"))

    async def delete(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        room = await self.sessions.delete(room_id)
        if room is not None:
            await self.send.to_room("sessionDeleted", {"roomId": room_id}, room_id)
            await self.send.sio.close_room(room_id)
        return answer(DoneAnswer(message="Session deleted successfully"))

    async def list_for_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["userId"]
        if len(user_id) > self.limits.max_user_id_length:
            raise InvalidPayload("userId in the path is too long")
        summaries = await self.sessions.sessions_of(user_id, limit=USER_SESSIONS_LIMIT)
        return answer(UserSessionsAnswer(sessions=[SummaryOut.of(s) for s in summaries]))
