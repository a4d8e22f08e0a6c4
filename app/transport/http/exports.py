"""The export document (JSON, and a ZIP of it with the texts as files) and its import."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import datetime
from typing import Any

import orjson

from app.clock import iso
from app.domain.errors import InvalidPayload, LimitExceeded
from app.domain.exports import (
    Exported,
    Imported,
    ImportedCheckpoint,
    ImportedFile,
    ImportedMessage,
)
from app.storage.records import MAIN_FILE_ID
from app.wire.inbound import EXPORT_FORMAT, SessionExport

SESSION_JSON = "session.json"
UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")


def export_document(exported: Exported, now: str) -> dict[str, Any]:
    record = exported.record
    return {
        "format": EXPORT_FORMAT,
        "formatVersion": 1,
        "roomId": record.room_id,
        "code": record.code,
        "language": record.language,
        "creatorName": record.creator_name,
        "creatorUserId": record.creator_user_id,
        "participants": [{"userId": p.user_id, "name": p.name} for p in record.participants],
        "files": [
            {
                "fileId": f.file_id,
                "name": f.name,
                "content": f.content,
                "mime": f.mime,
                "uploadedBy": f.uploaded_by,
                "uploaderName": f.uploader_name,
            }
            for f in exported.files
        ],
        "activeFile": record.active_file,
        "whiteboardElements": record.whiteboard,
        "messages": [
            {
                "id": m.id,
                "userId": m.user_id,
                "userName": m.user_name,
                "message": m.message,
                "timestamp": iso(m.timestamp),
            }
            for m in exported.messages
        ],
        "checkpoints": [
            {
                "name": saved.checkpoint.name,
                "auto": saved.checkpoint.auto,
                "language": saved.language,
                "texts": saved.texts,
            }
            for saved in exported.checkpoints
        ],
        "createdAt": iso(record.created_at),
        "exportedAt": now,
    }


def export_zip(document: dict[str, Any]) -> bytes:
    """`session.json`, and the code and each file as a file of its own (for people; an
    import reads `session.json`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SESSION_JSON, orjson.dumps(document, option=orjson.OPT_INDENT_2))
        texts = {MAIN_FILE_ID: document["code"]}
        texts.update(
            {f["fileId"]: f["content"] for f in document["files"] if f["fileId"] != MAIN_FILE_ID}
        )
        for file_id, content in texts.items():
            archive.writestr(f"files/{_safe(file_id)}", content)
    return buffer.getvalue()


def _safe(file_id: str) -> str:
    """A file id as a name inside the archive: no directories, nothing hidden."""
    return UNSAFE.sub("_", file_id).lstrip(".") or "_"


def read_zip(body: bytes) -> object:
    """The `session.json` of an exported ZIP (bounded: the body is, and so is that file)."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            info = archive.getinfo(SESSION_JSON)
            if info.file_size > len(body) * 20 + 1_000_000:
                raise LimitExceeded("session.json is too large")
            return orjson.loads(archive.read(info))
    except KeyError:
        raise InvalidPayload("The ZIP has no session.json") from None
    except (zipfile.BadZipFile, orjson.JSONDecodeError) as error:
        raise InvalidPayload(f"Not an exported session: {error}") from None


def imported(body: SessionExport) -> Imported:
    return Imported(
        code=body.code,
        language=body.language,
        creator_name=body.creatorName,
        creator_user_id=body.creatorUserId,
        participants=[(p.userId, p.name) for p in body.participants],
        files=[
            ImportedFile(f.fileId, f.name, f.content, f.mime, f.uploadedBy, f.uploaderName)
            for f in body.files
        ],
        active_file=body.activeFile,
        whiteboard=body.whiteboardElements,
        messages=[
            ImportedMessage(m.id, m.userId, m.userName, m.message, _time(m.timestamp))
            for m in body.messages
        ],
        checkpoints=[
            ImportedCheckpoint(c.name, c.auto, c.language, dict(c.texts)) for c in body.checkpoints
        ],
    )


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
