"""The OpenAPI 3.1 document of the REST API, built from the pydantic models the routes use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.config import Settings
from app.transport.http.answers import (
    AccessAnswer,
    CheckpointAnswer,
    ContextAnswer,
    CreatedAnswer,
    DiffAnswer,
    DoneAnswer,
    ErrorAnswer,
    FileAnswer,
    FilesAnswer,
    HealthAnswer,
    HistoryAnswer,
    ImportedAnswer,
    InviteAnswer,
    ReadyAnswer,
    RestoredAnswer,
    SavedFileAnswer,
    SessionAnswer,
    UserSessionsAnswer,
    VersionAnswer,
)
from app.wire.inbound import (
    AccessBody,
    CheckpointBody,
    CreateSessionBody,
    InviteBody,
    RestoreBody,
    SaveFileBody,
    SessionExport,
    UpdateSessionBody,
)

REF = "#/components/schemas/{model}"
ROOM_ID = {
    "name": "roomId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
FILE_ID = {
    "name": "fileId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
FILE_QUERY = {
    "name": "fileId", "in": "query", "schema": {"type": "string", "default": "main.js"},
}  # fmt: skip
COMMON_ERRORS = {
    "400": "Malformed JSON, an invalid body or a malformed id",
    "413": "The body is over the size limit",
    "415": "The body is not application/json",
    "429": "Too many requests from this address (see Retry-After)",
    "503": "The session store is unavailable (retry later)",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: str, **extra: str) -> dict[str, Any]:
    described = {code: COMMON_ERRORS[code] for code in codes} | extra
    return {code: _json(ErrorAnswer, text) for code, text in described.items()}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def openapi_document(limits: Settings) -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        CreateSessionBody, UpdateSessionBody, SaveFileBody, ErrorAnswer, SessionAnswer,
        CreatedAnswer, DoneAnswer, UserSessionsAnswer, HealthAnswer, ReadyAnswer,
        FilesAnswer, FileAnswer, SavedFileAnswer, AccessBody, InviteBody, AccessAnswer,
        InviteAnswer, ContextAnswer, HistoryAnswer, VersionAnswer, DiffAnswer, RestoredAnswer,
        CheckpointAnswer, RestoreBody, CheckpointBody, SessionExport, ImportedAnswer,
    ]  # fmt: skip
    bodies = (
        CreateSessionBody, UpdateSessionBody, SaveFileBody, AccessBody, InviteBody, RestoreBody,
        CheckpointBody, SessionExport,
    )  # fmt: skip
    _, schemas = models_json_schema(
        [(model, "validation" if model in bodies else "serialization") for model in models],
        ref_template=REF,
    )
    not_found = {"404": "No such session"}
    paths: dict[str, Any] = {
        "/api/sessions/create": {"post": {
            "summary": "Create a session (or complete one its creator's join made)",
            "requestBody": _body(CreateSessionBody),
            "responses": {"201": _json(CreatedAnswer, "Created")}
            | _errors("400", "413", "415", "429", "503"),
        }},
        "/api/sessions/{roomId}": {
            "parameters": [ROOM_ID],
            "get": {
                "summary": "A session with a page of its chat (most recent first page)",
                "parameters": [
                    {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                ],
                "responses": {"200": _json(SessionAnswer, "The session")}
                | _errors("400", "429", "503", **not_found, **{"410": "Expired (and now deleted)"}),
            },
            "delete": {
                "summary": "Delete a session and its chat",
                "responses": {"200": _json(DoneAnswer, "Deleted")}
                | _errors("400", "429", "503", **not_found),
            },
        },
        "/api/sessions/{roomId}/update": {"parameters": [ROOM_ID], "post": {
            "summary": "Update code, language or participants (through the live room)",
            "requestBody": _body(UpdateSessionBody),
            "responses": {"200": _json(DoneAnswer, "Updated")}
            | _errors("400", "413", "415", "429", "503", **not_found),
        }},
        "/api/sessions/{roomId}/files": {
            "parameters": [ROOM_ID],
            "post": {
                "summary": "Create or replace a file (its text goes through the live room)",
                "requestBody": _body(SaveFileBody),
                "responses": {"200": _json(SavedFileAnswer, "Saved")}
                | _errors("400", "413", "415", "429", "503", **not_found),
            },
            "get": {
                "summary": "The session's files, in the order they were made",
                "responses": {"200": _json(FilesAnswer, "The files")}
                | _errors("400", "429", "503", **not_found),
            },
        },
        "/api/sessions/{roomId}/files/{fileId}": {
            "parameters": [ROOM_ID, FILE_ID],
            "get": {
                "summary": "One file",
                "responses": {"200": _json(FileAnswer, "The file")}
                | _errors("400", "429", "503", **{"404": "No such session or file"}),
            },
            "delete": {
                "summary": "Delete a file (the main file is only taken off the list)",
                "responses": {"200": _json(DoneAnswer, "Deleted")}
                | _errors("400", "429", "503", **{"404": "No such session or file"}),
            },
        },
        "/api/sessions/user/{userId}": {"get": {
            "summary": "A user's ten most recently active sessions",
            "parameters": [{"name": "userId", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": limits.max_user_id_length}}],
            "responses": {"200": _json(UserSessionsAnswer, "Sessions, newest activity first")}
            | _errors("400", "429", "503"),
        }},
        "/api/sessions/{roomId}/history": {"parameters": [ROOM_ID], "get": {
            "summary": "The session's changes (newest first, in pages) and its checkpoints",
            "parameters": [
                {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            ],
            "responses": {"200": _json(HistoryAnswer, "A page of changes, and the checkpoints")}
            | _errors("400", "429", "503", **not_found),
        }},
        "/api/sessions/{roomId}/versions/{version}": {
            "parameters": [ROOM_ID, {"name": "version", "in": "path", "required": True,
                                     "schema": {"type": "integer", "minimum": 0}}],
            "get": {
                "summary": "A text (and the language) as it was at a version",
                "parameters": [FILE_QUERY],
                "responses": {"200": _json(VersionAnswer, "The text then")}
                | _errors("400", "429", "503",
                          **{"404": "No such session, or that version is not recorded"}),
            },
        },
        "/api/sessions/{roomId}/diff": {"parameters": [ROOM_ID], "get": {
            "summary": "A unified diff of a text between two versions",
            "parameters": [
                {"name": "from", "in": "query", "required": True,
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "to", "in": "query", "required": True,
                 "schema": {"type": "integer", "minimum": 0}},
                FILE_QUERY,
            ],
            "responses": {"200": _json(DiffAnswer, "The diff")}
            | _errors("400", "429", "503",
                      **{"404": "No such session, or a version is not recorded"}),
        }},
        "/api/sessions/{roomId}/restore": {"parameters": [ROOM_ID], "post": {
            "summary": "Make a text what it was at a version or checkpoint: one new change "
            "through the live room (it can itself be undone)",
            "requestBody": _body(RestoreBody),
            "responses": {"200": _json(RestoredAnswer, "Restored")}
            | _errors("400", "413", "415", "429", "503",
                      **{"404": "No such session, version or checkpoint"}),
        }},
        "/api/sessions/{roomId}/checkpoints": {"parameters": [ROOM_ID], "post": {
            "summary": "A named checkpoint of the session as it is now (the room hears "
            "checkpointCreated)",
            "requestBody": _body(CheckpointBody),
            "responses": {"201": _json(CheckpointAnswer, "Made")}
            | _errors("400", "413", "415", "429", "503", **not_found),
        }},
        "/api/sessions/{roomId}/export": {"parameters": [ROOM_ID], "get": {
            "summary": "The whole session: code, language, files, whiteboard, participants, "
            "every message, checkpoints with their texts",
            "parameters": [{"name": "format", "in": "query",
                            "schema": {"type": "string", "enum": ["json", "zip"]}}],
            "responses": {"200": {
                "description": "JSON, or with format=zip a ZIP of session.json and the texts",
                "content": {
                    "application/json": {"schema": _ref(SessionExport)},
                    "application/zip": {"schema": {"type": "string",
                                                   "contentEncoding": "binary"}},
                },
            }} | _errors("400", "429", "503", **not_found),
        }},
        "/api/sessions/import": {"post": {
            "summary": "A new session from an export (JSON, or its ZIP as application/zip)",
            "parameters": [{"name": "roomId", "in": "query", "schema": {
                "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref(SessionExport)},
                "application/zip": {"schema": {"type": "string", "contentEncoding": "binary"}},
            }},
            "responses": {"201": _json(ImportedAnswer, "Imported")}
            | _errors("400", "413", "415", "429", "503"),
        }},
        "/api/users/{userId}/context": {
            "parameters": [{"name": "userId", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": limits.max_user_id_length}}],
            "get": {
                "summary": "The user's context: preferences and state shared by their "
                "connections",
                "responses": {"200": _json(ContextAnswer, "The context (empty: never set)")}
                | _errors("400", "429", "503"),
            },
            "put": {
                "summary": "Replace the user's context; their connections hear each changed "
                "key (contextUpdated)",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "object"}}}},
                "responses": {"200": _json(ContextAnswer, "The stored context")}
                | _errors("400", "415", "429", "503", **{"413": "Over 64 KiB of JSON"}),
            },
        },
        "/api/health": {"get": {
            "summary": "Liveness", "responses": {"200": _json(HealthAnswer, "Serving")},
        }},
        "/api/ready": {"get": {
            "summary": "Readiness: the store answers",
            "responses": {"200": _json(ReadyAnswer, "Ready"),
                          "503": _json(ReadyAnswer, "The store is unavailable")},
        }},
    }  # fmt: skip
    components: dict[str, Any] = {"schemas": schemas["$defs"]}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Collaborative code editing server", "version": "1.0.0"},
        "paths": paths,
        "components": components,
    }
    if limits.auth_mode != "open":
        paths.update(_access_paths())
        _secure(document, required=limits.auth_mode == "required")
    return document


def _access_paths() -> dict[str, Any]:
    """The routes of access control (AUTH_MODE optional and required; else they answer 404)."""
    owner_only = {
        "403": "Not the session's owner",
        "404": "No such session, or one you may not see",
    }
    return {
        "/api/sessions/{roomId}/access": {
            "parameters": [ROOM_ID],
            "get": {
                "summary": "Who may use the session: owner, visibility, members' roles (owner)",
                "responses": {"200": _json(AccessAnswer, "The session's rules")}
                | _errors("400", "429", "503", **owner_only),
            },
            "put": {
                "summary": "Change who may use the session; live sockets follow within a "
                "second (owner)",
                "requestBody": _body(AccessBody),
                "responses": {"200": _json(AccessAnswer, "The session's new rules")}
                | _errors("400", "413", "415", "429", "503", **owner_only),
            },
        },
        "/api/sessions/{roomId}/invites": {
            "parameters": [ROOM_ID],
            "post": {
                "summary": "An invite token: one joiner, once, gets its role (owner)",
                "requestBody": _body(InviteBody),
                "responses": {"201": _json(InviteAnswer, "The invite")}
                | _errors("400", "413", "415", "429", "503", **owner_only),
            },
        },
    }


def _secure(document: dict[str, Any], *, required: bool) -> None:
    """Access control on: the bearer scheme, on every session route (optional mode: a request
    without a token is anonymous, except for listing a user's sessions)."""
    document["components"]["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT of the app's users (HS256 with JWT_SECRET, or RS256/ES256 "
            "from JWT_JWKS_URL), or ADMIN_TOKEN",
        }
    }
    for path, item in document["paths"].items():
        if not path.startswith(("/api/sessions", "/api/users/")):
            continue
        for method, operation in item.items():
            if method == "parameters":
                continue
            named = required or path.startswith(("/api/sessions/user/", "/api/users/"))
            operation["security"] = [{"bearerAuth": []}] if named else [{}, {"bearerAuth": []}]
            operation["responses"].setdefault(
                "401", _json(ErrorAnswer, "No valid token (missing, expired or forged)")
            )
            operation["responses"].setdefault(
                "403", _json(ErrorAnswer, "Your role does not allow this")
            )
