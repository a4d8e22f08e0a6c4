"""REST routes: validate the request, call the domain, answer JSON in the original's shapes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from app.clock import iso, utc_now
from app.config import Settings
from app.domain.access import AccessChange, Identity
from app.domain.contexts import Contexts
from app.domain.errors import InvalidPayload, Unauthorized
from app.domain.exports import Exports
from app.domain.sessions import FileEntry, Sessions, with_main_content
from app.domain.versions import Versions
from app.storage.records import MAIN_FILE_ID
from app.transport.http.answers import (
    AccessAnswer,
    AccessOut,
    Answer,
    ChangeOut,
    CheckpointAnswer,
    CheckpointOut,
    ContextAnswer,
    CreatedAnswer,
    CreatedSession,
    DiffAnswer,
    DoneAnswer,
    FileAnswer,
    FileOut,
    FilesAnswer,
    HealthAnswer,
    HistoryAnswer,
    ImportedAnswer,
    InviteAnswer,
    ReadyAnswer,
    RestoredAnswer,
    SavedFileAnswer,
    SessionAnswer,
    SessionOut,
    SummaryOut,
    UserSessionsAnswer,
    VersionAnswer,
)
from app.transport.http.exports import export_document, export_zip, imported, read_zip
from app.transport.http.middleware import error_response, json_response
from app.transport.http.openapi import openapi_document
from app.transport.tokens import Tokens
from app.wire.inbound import (
    MAX_NUMBER,
    ROOM_ID_PATTERN,
    AccessBody,
    CheckpointBody,
    CreateSessionBody,
    DiffQuery,
    ExportQuery,
    HistoryQuery,
    ImportQuery,
    InviteBody,
    MessagesQuery,
    RestoreBody,
    SaveFileBody,
    SessionExport,
    UpdateSessionBody,
    VersionQuery,
)
from app.wire.validation import describe, parse

USER_SESSIONS_LIMIT = 10
Q = TypeVar("Q", bound=BaseModel)
# The request's Identity (absent: anonymous, or access control off).
CALLER = web.RequestKey("caller", Identity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
READY_TIMEOUT_SECONDS = 2.0


def answer(model: Answer, status: int = 200, *, exclude_none: bool = False) -> web.Response:
    return json_response(model.model_dump(mode="json", exclude_none=exclude_none), status=status)


class SessionRoutes:
    """Handlers of /api/*; a live room is always read and changed through memory first."""

    def __init__(
        self,
        sessions: Sessions,
        settings: Settings,
        address_of: Callable[[web.Request], str],
        tokens: Tokens,
        contexts: Contexts,
        versions: Versions,
        exports: Exports,
    ) -> None:
        self.sessions = sessions
        self.contexts = contexts
        self.versions = versions
        self.exports = exports
        self.gate = sessions.gate
        self.settings = settings
        self.address_of = address_of  # the client's address (behind trusted proxies too)
        self.tokens = tokens

    async def _who(self, request: web.Request, *, needed: bool = False) -> Identity | None:
        """Who sends the request (access control on): the user of its bearer token, an admin
        (ADMIN_TOKEN), or anonymous (None; only where the mode and the route allow it)."""
        if not self.gate.enforced:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            if needed or self.settings.auth_mode == "required":
                raise Unauthorized("Send a token: Authorization: Bearer <token>")
            return None
        if self.tokens.admin(token):
            return Identity("admin", admin=True)
        return await self.tokens.identity(token)

    @web.middleware
    async def identify(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Who calls a session route, known before anything else is looked at (required
        mode: nothing answers a request without a valid token but 401)."""
        if request.path.startswith(("/api/sessions", "/api/users/")):
            listing = request.path.startswith(("/api/sessions/user/", "/api/users/"))
            who = await self._who(request, needed=listing)
            if who is not None:
                request[CALLER] = who
        return await handler(request)

    @staticmethod
    def _caller(request: web.Request) -> Identity | None:
        return request.get(CALLER)

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/openapi.json", self.openapi)
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/ready", self.ready)
        app.router.add_post("/api/sessions/create", self.create)
        app.router.add_post("/api/sessions/import", self.import_session)
        app.router.add_get("/api/sessions/user/{userId:[^/]+}", self.list_for_user)
        app.router.add_get("/api/sessions/{roomId:[^/]+}", self.get)
        app.router.add_post("/api/sessions/{roomId:[^/]+}/update", self.update)
        app.router.add_delete("/api/sessions/{roomId:[^/]+}", self.delete)
        files = "/api/sessions/{roomId:[^/]+}/files"
        app.router.add_post(files, self.save_file)
        app.router.add_get(files, self.list_files)
        app.router.add_get(files + "/{fileId:[^/]+}", self.get_file)
        app.router.add_delete(files + "/{fileId:[^/]+}", self.delete_file)
        room = "/api/sessions/{roomId:[^/]+}"
        app.router.add_get(room + "/history", self.history)
        app.router.add_get(room + "/versions/{version:[0-9]+}", self.version)
        app.router.add_get(room + "/diff", self.diff)
        app.router.add_post(room + "/restore", self.restore)
        app.router.add_post(room + "/checkpoints", self.create_checkpoint)
        app.router.add_get(room + "/export", self.export)
        context = "/api/users/{userId:[^/]+}/context"
        app.router.add_get(context, self.get_context)
        app.router.add_put(context, self.put_context)
        if self.gate.enforced:  # open mode: the room id is the key, there is nothing to manage
            app.router.add_get("/api/sessions/{roomId:[^/]+}/access", self.get_access)
            app.router.add_put("/api/sessions/{roomId:[^/]+}/access", self.put_access)
            app.router.add_post("/api/sessions/{roomId:[^/]+}/invites", self.create_invite)

    def _room_id(self, request: web.Request) -> str:
        room_id = request.match_info["roomId"]
        limit = self.settings.max_room_id_length
        if len(room_id) > limit or not ROOM_ID_PATTERN.fullmatch(room_id):
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
        return json_response(openapi_document(self.settings))

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
        body = parse(CreateSessionBody, data, self.settings)
        room = await self.sessions.create(
            body.roomId,
            body.creatorName,
            body.creatorUserId,
            body.code,
            body.language,
            self._caller(request),
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
            room_id,
            before=query.before,
            limit=query.limit,
            reader=self.address_of(request),
            who=self._caller(request),
        )
        session = SessionOut.of(record, messages, with_main_content(record))
        return answer(SessionAnswer(session=session))

    def _query(self, model: type[Q], request: web.Request) -> Q:
        try:
            return model.model_validate(dict(request.query))
        except ValidationError as error:
            raise InvalidPayload(describe(error)) from None

    async def update(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(UpdateSessionBody, await self._json(request), self.settings)
        participants = [(p.userId, p.name) for p in body.participants or []]
        who = self._caller(request)
        await self.sessions.update(
            room_id, body.code, body.language, participants, body.fileId, who
        )
        return answer(DoneAnswer(message="Session updated successfully"))

    async def delete(self, request: web.Request) -> web.Response:
        await self.sessions.delete(self._room_id(request), self._caller(request))
        return answer(DoneAnswer(message="Session deleted successfully"))

    async def list_for_user(self, request: web.Request) -> web.Response:
        user_id = request.match_info["userId"]
        if len(user_id) > self.settings.max_user_id_length:
            raise InvalidPayload("userId in the path is too long")
        who = self._caller(request)
        summaries = await self.sessions.sessions_of(user_id, limit=USER_SESSIONS_LIMIT, who=who)
        return answer(UserSessionsAnswer(sessions=[SummaryOut.of(s) for s in summaries]))

    # -- files -----------------------------------------------------------------------------

    def _file_id(self, request: web.Request) -> str:
        file_id = request.match_info["fileId"]
        if len(file_id) > self.settings.max_file_id_length:
            raise InvalidPayload("fileId in the path is too long")
        return file_id

    async def save_file(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        data = await self._json(request)
        if isinstance(data, dict) and not (data.get("fileId") and data.get("name")):
            return error_response(400, "Missing required fields", "fileId and name are required")
        body = parse(SaveFileBody, data, self.settings)
        entry = FileEntry(
            file_id=body.fileId,
            name=body.name,
            content=body.content or "",
            mime=body.mime or "text/plain",
            size=body.size or 0,
            uploaded_by=body.uploadedBy or "anonymous",
            uploader_name=body.uploaderName or "Anonymous",
        )
        await self.sessions.save_file(room_id, entry, self._caller(request))
        return answer(SavedFileAnswer(message="File saved successfully", fileId=body.fileId))

    async def list_files(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        who = self._caller(request)
        files = await self.sessions.files(room_id, self.address_of(request), who)
        return answer(FilesAnswer(files=[FileOut.of(f) for f in files]))

    async def get_file(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        file_id, who = self._file_id(request), self._caller(request)
        file = await self.sessions.file(room_id, file_id, self.address_of(request), who)
        return answer(FileAnswer(file=FileOut.of(file)))

    async def delete_file(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        file_id = self._file_id(request)
        await self.sessions.delete_file(room_id, file_id, self._caller(request))
        return answer(DoneAnswer(message="File deleted successfully"))

    # -- history -----------------------------------------------------------------------------

    async def history(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        query = self._query(HistoryQuery, request)
        entries, checkpoints = await self.versions.history(
            room_id, self._caller(request), before=query.before, limit=query.limit
        )
        more = len(entries) == query.limit and entries[-1].version > 0
        return answer(
            HistoryAnswer(
                versions=[ChangeOut.of(e) for e in entries],
                checkpoints=[CheckpointOut.of(c) for c in checkpoints],
                nextBefore=entries[-1].version if more else None,
            )
        )

    async def version(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        number = int(request.match_info["version"])
        if number > MAX_NUMBER:
            raise InvalidPayload("version in the path is too large")
        query = self._query(VersionQuery, request)
        found = await self.versions.at(room_id, self._caller(request), number, query.fileId)
        return answer(
            VersionAnswer(
                version=found.version, fileId=found.doc_id, code=found.text, language=found.language
            )
        )

    async def diff(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        query = self._query(DiffQuery, request)
        text = await self.versions.diff(
            room_id, self._caller(request), query.from_, query.to, query.fileId
        )
        return answer(
            DiffAnswer(fileId=query.fileId, fromVersion=query.from_, toVersion=query.to, diff=text)
        )

    async def restore(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(RestoreBody, await self._json(request), self.settings)
        version = await self.versions.restore(
            room_id,
            self._caller(request),
            version=body.version,
            checkpoint_id=body.checkpointId,
            doc_id=body.fileId or MAIN_FILE_ID,
        )
        return answer(RestoredAnswer(version=version))

    async def create_checkpoint(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(CheckpointBody, await self._json(request), self.settings)
        who = self._caller(request)
        author = (None if who is None or who.admin else who.user_id, None)
        made = await self.versions.checkpoint(room_id, who, body.name, author)
        return answer(CheckpointAnswer(checkpoint=CheckpointOut.of(made)), status=201)

    # -- export and import -------------------------------------------------------------------

    async def export(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        query = self._query(ExportQuery, request)
        exported = await self.exports.export(room_id, self._caller(request))
        document = export_document(exported, iso(utc_now()))
        if query.format == "json":
            return json_response(document)
        return web.Response(
            body=export_zip(document),
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{room_id}.zip"'},
        )

    async def import_session(self, request: web.Request) -> web.Response:
        query = self._query(ImportQuery, request)
        if request.content_type == "application/zip":
            data: object = read_zip(await request.read())
        else:
            data = await self._json(request)
        body = parse(SessionExport, data, self.settings)
        room_id = await self.exports.import_session(
            imported(body), query.roomId, self._caller(request)
        )
        return answer(ImportedAnswer(roomId=room_id), status=201)

    # -- the user's context ------------------------------------------------------------------

    def _user_id(self, request: web.Request) -> str:
        user_id = request.match_info["userId"]
        if len(user_id) > self.settings.max_user_id_length:
            raise InvalidPayload("userId in the path is too long")
        return user_id

    async def get_context(self, request: web.Request) -> web.Response:
        found = await self.contexts.get(self._user_id(request), self._caller(request))
        return answer(ContextAnswer.of(found))

    async def put_context(self, request: web.Request) -> web.Response:
        user_id = self._user_id(request)
        data = await self._json(request)
        if not isinstance(data, dict):
            raise InvalidPayload("The context is a JSON object")
        saved = await self.contexts.replace(user_id, self._caller(request), data)
        return answer(ContextAnswer.of(saved))

    # -- access (AUTH_MODE optional and required) -------------------------------------------

    async def get_access(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        room = await self.gate.rules(room_id, self._caller(request))
        return answer(AccessAnswer(access=AccessOut.of(room_id, room.rules())))

    async def put_access(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(AccessBody, await self._json(request), self.settings)
        change = AccessChange(
            visibility=body.visibility,
            public_role=body.publicRole,
            viewers_chat=body.viewersCanChat,
            members=None if body.members is None else {m.userId: m.role for m in body.members},
        )
        room = await self.gate.change(room_id, self._caller(request), change)
        return answer(AccessAnswer(access=AccessOut.of(room_id, room.rules())))

    async def create_invite(self, request: web.Request) -> web.Response:
        room_id = self._room_id(request)
        body = parse(InviteBody, await self._json(request), self.settings)
        if body.expiresIn > self.settings.max_invite_seconds:
            limit = self.settings.max_invite_seconds
            raise InvalidPayload(f"expiresIn is at most {limit:g} seconds")
        invite = await self.gate.invite(room_id, self._caller(request), body.role, body.expiresIn)
        token = self.tokens.sign_invite(invite)
        expires = iso(invite.expires_at)
        return answer(InviteAnswer(token=token, role=invite.role, expiresAt=expires), status=201)
