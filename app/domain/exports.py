"""A whole session out (code, language, files, whiteboard, participants, every chat message,
checkpoints with their texts) and back in as a new session: backup and restore, or a move
to another server. A round trip changes only ids and times."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.access import Identity
from app.domain.errors import SessionExists, StoreUnavailable
from app.domain.history import LANGUAGE, rebuild
from app.domain.rooms import Rooms
from app.domain.sessions import Sessions, with_main_content
from app.storage import StoreError
from app.storage.records import (
    MAIN_FILE_ID,
    ChatRecord,
    Checkpoint,
    FileRecord,
    HistoryEntry,
    Participant,
    SessionRecord,
)

PAGE = 1000  # chat messages read at a time


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint with the texts and language it names."""

    checkpoint: Checkpoint
    texts: dict[str, str]
    language: str


@dataclass(frozen=True)
class Exported:
    record: SessionRecord
    files: tuple[FileRecord, ...]  # the main one carrying the code
    messages: list[ChatRecord]
    checkpoints: list[SavedCheckpoint]


@dataclass(frozen=True)
class ImportedFile:
    file_id: str
    name: str
    content: str
    mime: str
    uploaded_by: str | None
    uploader_name: str | None


@dataclass(frozen=True)
class ImportedMessage:
    id: str
    user_id: str | None
    user_name: str
    message: str
    timestamp: datetime


@dataclass(frozen=True)
class ImportedCheckpoint:
    name: str
    auto: bool
    language: str
    texts: dict[str, str]


@dataclass(frozen=True)
class Imported:
    code: str
    language: str
    creator_name: str | None
    creator_user_id: str | None
    participants: list[tuple[str | None, str]]
    files: list[ImportedFile]
    active_file: str | None
    whiteboard: Any
    messages: list[ImportedMessage] = field(default_factory=list)
    checkpoints: list[ImportedCheckpoint] = field(default_factory=list)


class Exports:
    def __init__(self, rooms: Rooms, sessions: Sessions) -> None:
        self.rooms = rooms
        self.sessions = sessions
        self.store = rooms.store

    async def export(self, room_id: str, who: Identity | None) -> Exported:
        record, room = await self.sessions.record(room_id, who=who)
        if room is not None:
            await self.rooms.persist(room)  # its chat and history stored, then read back
            record = room.snapshot()
        try:
            messages = await self._messages(room_id)
            checkpoints = [
                await self._texts(record, made)
                for made in reversed(await self.store.list_checkpoints(room_id))
            ]
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        return Exported(record, with_main_content(record), messages, checkpoints)

    async def _messages(self, room_id: str) -> list[ChatRecord]:
        """Every message, oldest first."""
        pages: list[list[ChatRecord]] = []
        before: int | None = None
        while True:
            page = await self.store.list_messages(room_id, before=before, limit=PAGE)
            if not page:
                break
            pages.append(page)
            if len(page) < PAGE:
                break
            before = page[0].version
        return [message for page in reversed(pages) for message in page]

    async def _texts(self, record: SessionRecord, made: Checkpoint) -> SavedCheckpoint:
        texts: dict[str, str] = {}
        for doc_id in [MAIN_FILE_ID, *(f.file_id for f in record.files)]:
            snapshot, ops = await self.store.text_history(record.room_id, doc_id, made.version)
            text = rebuild(snapshot, ops)
            if text is not None:
                texts[doc_id] = text
        language = await self.store.language_at(record.room_id, made.version)
        return SavedCheckpoint(made, texts, language or record.language)

    # -- import ----------------------------------------------------------------------------

    async def import_session(
        self, data: Imported, room_id: str | None, who: Identity | None
    ) -> str:
        """A new session from an export: `room_id` if it is free, else a new id."""
        if room_id is None:
            room_id = secrets.token_urlsafe(9)
        elif await self._taken(room_id):
            raise SessionExists(f"Session {room_id} already exists")
        record, messages, history, checkpoints = self._build(room_id, data, who)
        try:
            await self.store.save(record)
            await self.store.append_messages(messages)
            await self.store.append_history(history)
            for made in checkpoints:
                await self.store.save_checkpoint(made)
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        return room_id

    async def _taken(self, room_id: str) -> bool:
        if room_id in self.rooms.rooms:
            return True
        try:
            return await self.store.load(room_id) is not None
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error

    def _build(
        self, room_id: str, data: Imported, who: Identity | None
    ) -> tuple[SessionRecord, list[ChatRecord], list[HistoryEntry], list[Checkpoint]]:
        """Versions: the messages 1..n in order, the checkpoints 1..k, the session after
        both; each checkpoint's texts and the session's are history snapshots."""
        now = self.rooms.clock()
        version = max(len(data.messages), len(data.checkpoints)) + 1
        expires = now + self.rooms.settings.ttl
        policy = self.sessions.policy
        creator = data.creator_user_id
        if who is not None and not who.admin:
            creator = who.user_id
        record = SessionRecord(
            room_id=room_id,
            code=data.code,
            language=data.language,
            version=version,
            code_version=version,
            language_version=version,
            creator_name=data.creator_name,
            creator_user_id=creator,
            participants=tuple(
                Participant(user_id=user, name=name, joined_at=now, last_seen=now)
                for user, name in data.participants
            ),
            files=tuple(
                FileRecord(
                    file_id=f.file_id,
                    name=f.name,
                    content="" if f.file_id == MAIN_FILE_ID else f.content,
                    mime=f.mime,
                    size=len(f.content.encode()),
                    uploaded_by=f.uploaded_by,
                    uploader_name=f.uploader_name,
                    uploaded_at=now,
                    version=version,
                )
                for f in data.files
            ),
            active_file=data.active_file,
            whiteboard=data.whiteboard,
            access=policy.new_rules(who) if policy.enforced else None,
            created_at=now,
            last_activity=now,
            expires_at=expires,
        )
        messages = [
            ChatRecord(
                room_id=room_id,
                version=index,
                id=m.id,
                user_id=m.user_id,
                user_name=m.user_name,
                message=m.message,
                timestamp=m.timestamp,
                expires_at=expires,
            )
            for index, m in enumerate(data.messages, start=1)
        ]
        history: list[HistoryEntry] = []
        checkpoints: list[Checkpoint] = []

        def snapshot(doc_id: str, at: int, text: str, pinned: bool) -> None:
            history.append(
                HistoryEntry(
                    room_id=room_id, version=at, doc_id=doc_id, kind="snapshot", text=text,
                    pinned=pinned, at=now,
                )
            )  # fmt: skip

        for index, saved in enumerate(data.checkpoints, start=1):
            checkpoints.append(
                Checkpoint(
                    room_id=room_id, id=uuid.uuid4().hex[:12], name=saved.name, version=index,
                    at=now, auto=saved.auto,
                )
            )  # fmt: skip
            for doc_id, text in saved.texts.items():
                snapshot(doc_id, index, text, True)
            snapshot(LANGUAGE, index, saved.language, True)
        snapshot(MAIN_FILE_ID, version, data.code, False)
        for f in data.files:
            if f.file_id != MAIN_FILE_ID:
                snapshot(f.file_id, version, f.content, False)
        snapshot(LANGUAGE, version, data.language, False)
        return record, messages, history, checkpoints
