"""Every payload the server sends, each built in one place, in the shapes clients know.

In live events `userId` is the sender's socket id (clients compare it with their own
`socket.id`); in replayed and stored data it is the app user id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.clock import iso
from app.storage.records import ChatRecord, Checkpoint

Json = dict[str, Any]
SERVER_NAME = "server"  # the author of changes that came from REST or a replay


def who(sid: str | None, name: str) -> Json:
    """`{userId, userName}`: the payload of every relayed presence event."""
    return {"userId": sid, "userName": name}


def user_entry(sid: str, name: str, user_id: str | None, joined_at: datetime) -> Json:
    return {"id": sid, "name": name, "userId": user_id or "anonymous", "joinedAt": iso(joined_at)}


def user_joined(sid: str, name: str) -> Json:
    return {"userId": sid, "userName": name, "message": f"{name} joined the room"}


def user_left(sid: str, name: str) -> Json:
    return {"userId": sid, "userName": name, "message": f"{name} left the room"}


def code_update(
    code: str, language: str, sid: str | None, name: str, at: datetime, version: int
) -> Json:
    return {
        "code": code,
        "language": language,
        "userId": sid,
        "userName": name,
        "timestamp": iso(at),
        "version": version,
    }


def code_delta(
    changes: list[Json],
    base_version: int,
    language: str,
    sid: str | None,
    name: str,
    at: datetime,
    version: int,
) -> Json:
    """`codeUpdate` for a client that reads deltas: `changes` on the text at `baseVersion`."""
    return {
        "changes": changes,
        "baseVersion": base_version,
        "language": language,
        "userId": sid,
        "userName": name,
        "timestamp": iso(at),
        "version": version,
    }


def code_state(code: str, language: str, version: int) -> Json:
    return {"code": code, "language": language, "version": version}


def language_update(language: str, sid: str | None, name: str, version: int) -> Json:
    return {"language": language, "userId": sid, "userName": name, "version": version}


def new_message(message: ChatRecord, sid: str | None) -> Json:
    """`newMessage`: live, `userId` is the author's socket; replayed (sid None), its app id."""
    wire = {
        "id": message.id,
        "message": message.message,
        "userId": sid if sid is not None else message.user_id,
        "userName": message.user_name,
        "timestamp": iso(message.timestamp),
    }
    return {"message": wire, "version": message.version}


def session_saved(room_id: str, version: int, saved_at: datetime) -> Json:
    return {"roomId": room_id, "version": version, "savedAt": iso(saved_at)}


def error(event: str, code: str, message: str) -> Json:
    return {"event": event, "code": code, "message": message}


def refusal(code: str, message: str) -> Json:
    """The acknowledgement of a refused event."""
    return {"ok": False, "error": {"code": code, "message": message}}


# -- files -----------------------------------------------------------------------------------


def file_opened(file_id: str, name: str) -> Json:
    return {"fileId": file_id, "name": name}


def active_file_changed(file_id: str) -> Json:
    return {"fileId": file_id}


def file_snapshot(file_id: str, name: str, content: str, version: int) -> Json:
    return {"fileId": file_id, "name": name, "content": content, "version": version}


def file_content_update(
    file_id: str, content: str, sid: str | None, name: str, version: int
) -> Json:
    return {
        "fileId": file_id,
        "content": content,
        "userId": sid,
        "userName": name,
        "version": version,
    }


def file_delta(
    file_id: str, changes: list[Json], base_version: int, sid: str | None, name: str, version: int
) -> Json:
    return {
        "fileId": file_id,
        "changes": changes,
        "baseVersion": base_version,
        "userId": sid,
        "userName": name,
        "version": version,
    }


def file_uploaded(
    file_id: str,
    name: str,
    mime: str,
    size: int,
    uploaded_by: str | None,
    uploader_name: str | None,
    source: str,
) -> Json:
    return {
        "fileId": file_id,
        "name": name,
        "mime": mime,
        "size": size,
        "uploadedBy": uploaded_by,
        "uploaderName": uploader_name,
        "source": source,
    }


def file_deleted(file_id: str) -> Json:
    return {"fileId": file_id}


# -- calls -----------------------------------------------------------------------------------


def call_count(room_id: str, count: int) -> Json:
    return {"roomId": room_id, "count": count}


def room_only(room_id: str) -> Json:
    return {"roomId": room_id}


def call_people(people: Iterable[tuple[str, str]]) -> list[Json]:
    return [who(sid, name) for sid, name in people]


def ready_for_call(sid: str, name: str, reconnect: bool) -> Json:
    return {"userId": sid, "userName": name, "isReconnect": reconnect}


def existing_participants(people: Iterable[tuple[str, str]], reconnect: bool) -> Json:
    return {"participants": call_people(people), "isReconnect": reconnect}


def call_status(room_id: str, active: bool, count: int, people: Iterable[tuple[str, str]]) -> Json:
    return {
        "roomId": room_id,
        "hasActiveCall": active,
        "participantCount": count,
        "participants": call_people(people),
    }


def left_call(sid: str, name: str, reason: str | None = None) -> Json:
    payload = who(sid, name)
    if reason is not None:
        payload["reason"] = reason
    return payload


def webrtc(kind: str, value: Any, sender: str, name: str, room_id: str) -> Json:
    """`webrtc-offer` / `webrtc-answer` / `ice-candidate`: `kind` is offer, answer, candidate."""
    return {kind: value, "from": sender, "userName": name, "roomId": room_id}


def checkpoint_created(made: Checkpoint) -> Json:
    """`checkpointCreated` (and the `createCheckpoint` acknowledgement's `checkpoint`)."""
    return {
        "roomId": made.room_id,
        "id": made.id,
        "name": made.name,
        "version": made.version,
        "at": iso(made.at),
        "author": {"userId": made.author_id, "name": made.author_name},
        "auto": made.auto,
    }
