"""The SessionStore in the SQL that SQLite and PostgreSQL both speak; each dialect (sqlite.py,
postgres.py) gives its connection, its schema and a transaction. Queries use `?` placeholders
(PostgreSQL's become $1, $2...), times are ISO-8601 text, JSON values are text."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import orjson

from app.clock import iso
from app.storage import FOLDED
from app.storage.records import (
    MAIN_FILE_ID,
    AccessRecord,
    ChatPreview,
    ChatRecord,
    Checkpoint,
    FileRecord,
    HistoryEntry,
    Participant,
    SessionRecord,
    SessionSummary,
    UserContext,
)

# The tables, as each dialect formats them: its integer type and table options.
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    room_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    language TEXT NOT NULL,
    version {int} NOT NULL,
    creator_name TEXT,
    creator_user_id TEXT,
    participants TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_activity TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    code_version {int} NOT NULL DEFAULT 0,
    language_version {int} NOT NULL DEFAULT 0,
    active_file TEXT,
    whiteboard TEXT,
    access TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS session_users (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
){rowid};
CREATE INDEX IF NOT EXISTS session_users_by_room ON session_users (room_id);
CREATE TABLE IF NOT EXISTS files (
    room_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    position {int} NOT NULL,
    name TEXT NOT NULL,
    content TEXT,
    mime TEXT NOT NULL,
    size {int} NOT NULL,
    uploaded_by TEXT,
    uploader_name TEXT,
    uploaded_at TEXT NOT NULL,
    version {int} NOT NULL,
    PRIMARY KEY (room_id, file_id)
){rowid};
CREATE TABLE IF NOT EXISTS history (
    room_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    version {int} NOT NULL,
    op TEXT,
    text TEXT,
    pinned {int} NOT NULL DEFAULT 0,
    author_id TEXT,
    author_name TEXT,
    at TEXT NOT NULL,
    inserted {int} NOT NULL DEFAULT 0,
    deleted {int} NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, doc_id, kind, version)
){rowid};
CREATE INDEX IF NOT EXISTS history_by_version ON history (room_id, version);
CREATE INDEX IF NOT EXISTS history_by_time ON history (at);
CREATE TABLE IF NOT EXISTS checkpoints (
    room_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    version {int} NOT NULL,
    at TEXT NOT NULL,
    author_id TEXT,
    author_name TEXT,
    auto {int} NOT NULL,
    PRIMARY KEY (room_id, id)
){rowid};
CREATE TABLE IF NOT EXISTS user_contexts (
    user_id TEXT PRIMARY KEY,
    context TEXT NOT NULL,
    revision {int} NOT NULL,
    updated_at TEXT NOT NULL
){rowid};
CREATE TABLE IF NOT EXISTS messages (
    room_id TEXT NOT NULL,
    version {int} NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT,
    user_name TEXT NOT NULL,
    message TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (room_id, version)
){rowid};
"""

UPSERT_SESSION = """
INSERT INTO sessions (room_id, code, language, version, creator_name, creator_user_id,
                      participants, created_at, last_activity, expires_at,
                      code_version, language_version, active_file, whiteboard, access)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (room_id) DO UPDATE SET
    code = excluded.code, language = excluded.language, version = excluded.version,
    code_version = excluded.code_version, language_version = excluded.language_version,
    active_file = excluded.active_file, whiteboard = excluded.whiteboard,
    access = excluded.access,
    creator_name = excluded.creator_name, creator_user_id = excluded.creator_user_id,
    participants = excluded.participants, created_at = excluded.created_at,
    last_activity = excluded.last_activity, expires_at = excluded.expires_at
WHERE sessions.version <= excluded.version
"""

LOAD_SESSION = """
SELECT room_id, code, language,
       {greatest}(version, coalesce((SELECT max(version) FROM messages m
                                     WHERE m.room_id = s.room_id), 0)),
       creator_name, creator_user_id, participants, created_at, last_activity, expires_at,
       code_version, language_version, active_file, whiteboard, access
FROM sessions s WHERE room_id = ?
"""

UPSERT_FILE = """
INSERT INTO files (room_id, file_id, position, name, content, mime, size, uploaded_by,
                   uploader_name, uploaded_at, version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (room_id, file_id) DO UPDATE SET
    position = excluded.position, name = excluded.name, content = excluded.content,
    mime = excluded.mime, size = excluded.size, uploaded_by = excluded.uploaded_by,
    uploader_name = excluded.uploader_name, uploaded_at = excluded.uploaded_at,
    version = excluded.version
WHERE files.version <> excluded.version OR files.position <> excluded.position
"""

LOAD_FILES = """
SELECT file_id, name, content, mime, size, uploaded_by, uploader_name, uploaded_at, version
FROM files WHERE room_id = ? ORDER BY position
"""

LIST_FOR_USER = """
SELECT s.room_id, s.creator_name, s.participants, s.language,
       s.created_at, s.expires_at, s.last_activity,
       (SELECT count(*) FROM files f WHERE f.room_id = s.room_id),
       (SELECT count(*) FROM messages m WHERE m.room_id = s.room_id),
       lm.user_name, lm.message, lm.timestamp
FROM session_users u JOIN sessions s ON s.room_id = u.room_id
LEFT JOIN messages lm ON lm.room_id = s.room_id
    AND lm.version = (SELECT max(version) FROM messages m WHERE m.room_id = s.room_id)
WHERE u.user_id = ? AND s.expires_at > ?
ORDER BY s.last_activity DESC LIMIT ?
"""

EXPIRED = "SELECT room_id FROM sessions WHERE expires_at <= ?"
HISTORY_COLUMNS = (
    "doc_id, kind, version, op, text, pinned, author_id, author_name, at, inserted, deleted"
)
MAX_VERSION = 2**62


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _history_entry(room_id: str, row: Sequence[Any]) -> HistoryEntry:
    return HistoryEntry(
        room_id=room_id,
        doc_id=row[0],
        kind=row[1],
        version=row[2],
        op=None if row[3] is None else orjson.loads(row[3]),
        text=row[4],
        pinned=bool(row[5]),
        author_id=row[6],
        author_name=row[7],
        at=_time(row[8]),
        inserted=row[9],
        deleted=row[10],
    )


def _participants_json(participants: Sequence[Participant]) -> str:
    return json.dumps(
        [
            {
                "userId": p.user_id,
                "name": p.name,
                "joinedAt": iso(p.joined_at),
                "lastSeen": iso(p.last_seen),
            }
            for p in participants
        ],
        ensure_ascii=False,
    )


def _participants(text: str) -> tuple[Participant, ...]:
    return tuple(
        Participant(
            user_id=item["userId"],
            name=item["name"],
            joined_at=_time(item["joinedAt"]),
            last_seen=_time(item["lastSeen"]),
        )
        for item in json.loads(text)
    )


class Tx(Protocol):
    """A transaction's connection, as the shared queries use it."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the rows it changed."""
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        raise NotImplementedError


class SqlSessionStore(ABC):
    """Every operation of the SessionStore protocol, in SQL."""

    remote: bool
    GREATEST = "max"  # the scalar maximum of two values

    @property
    def LOAD_SESSION(self) -> str:
        return LOAD_SESSION.format(greatest=self.GREATEST)

    @abstractmethod
    def _transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction; a failure raises StoreError (and rolls it back)."""

    @abstractmethod
    def _snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """Reads that see one state of the store (no write lands between them)."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """Rows of one query outside a transaction; a failure raises StoreError."""
        raise NotImplementedError

    async def load(self, room_id: str) -> SessionRecord | None:
        # One snapshot: a write between reading the session and its files would give texts
        # newer than the version they are loaded at (and a change applied twice).
        async with self._snapshot() as db:
            rows = await db.fetch(self.LOAD_SESSION, (room_id,))
            if not rows:
                return None
            row = rows[0]
            files = await db.fetch(LOAD_FILES, (room_id,))
        return SessionRecord(
            room_id=row[0],
            code=row[1],
            language=row[2],
            version=row[3],
            creator_name=row[4],
            creator_user_id=row[5],
            participants=_participants(row[6]),
            created_at=_time(row[7]),
            last_activity=_time(row[8]),
            expires_at=_time(row[9]),
            code_version=row[10],
            language_version=row[11],
            active_file=row[12],
            whiteboard=None if row[13] is None else orjson.loads(row[13]),
            access=None if row[14] is None else AccessRecord.model_validate_json(row[14]),
            files=tuple(
                FileRecord(
                    file_id=f[0],
                    name=f[1],
                    content=f[2] or "",
                    mime=f[3],
                    size=f[4],
                    uploaded_by=f[5],
                    uploader_name=f[6],
                    uploaded_at=_time(f[7]),
                    version=f[8],
                )
                for f in files
            ),
        )

    async def save(self, record: SessionRecord) -> bool:
        async with self._transaction() as db:
            written = await db.execute(
                UPSERT_SESSION,
                (
                    record.room_id,
                    record.code,
                    record.language,
                    record.version,
                    record.creator_name,
                    record.creator_user_id,
                    _participants_json(record.participants),
                    iso(record.created_at),
                    iso(record.last_activity),
                    iso(record.expires_at),
                    record.code_version,
                    record.language_version,
                    record.active_file,
                    None if record.whiteboard is None else orjson.dumps(record.whiteboard).decode(),
                    None if record.access is None else record.access.model_dump_json(),
                ),
            )
            if written == 0:
                return False
            await self._save_files(db, record)
            await db.execute("DELETE FROM session_users WHERE room_id = ?", (record.room_id,))
            await db.executemany(
                "INSERT INTO session_users (user_id, room_id) VALUES (?, ?)",
                [(user_id, record.room_id) for user_id in record.user_ids],
            )
            return True

    @staticmethod
    async def _save_files(db: Tx, record: SessionRecord) -> None:
        """Write the files whose version or place changed; drop the ones no longer there."""
        kept = [f.file_id for f in record.files]
        if kept:
            marks = ",".join("?" * len(kept))
            await db.execute(
                f"DELETE FROM files WHERE room_id = ? AND file_id NOT IN ({marks})",
                (record.room_id, *kept),
            )
        else:
            await db.execute("DELETE FROM files WHERE room_id = ?", (record.room_id,))
        await db.executemany(
            UPSERT_FILE,
            [
                (
                    record.room_id,
                    f.file_id,
                    position,
                    f.name,
                    None if f.file_id == MAIN_FILE_ID else f.content,  # the code, kept once
                    f.mime,
                    f.size,
                    f.uploaded_by,
                    f.uploader_name,
                    iso(f.uploaded_at),
                    f.version,
                )
                for position, f in enumerate(record.files)
            ],
        )

    async def append_messages(self, messages: Sequence[ChatRecord]) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO messages (room_id, version, id, user_id, user_name, message,"
                " timestamp) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        m.room_id,
                        m.version,
                        m.id,
                        m.user_id,
                        m.user_name,
                        m.message,
                        iso(m.timestamp),
                    )
                    for m in messages
                ],
            )

    async def list_messages(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[ChatRecord]:
        rows = await self._fetch(
            "SELECT room_id, version, id, user_id, user_name, message, timestamp,"
            " (SELECT expires_at FROM sessions WHERE room_id = ?)"
            " FROM messages WHERE room_id = ? AND version < ? ORDER BY version DESC LIMIT ?",
            (room_id, room_id, MAX_VERSION if before is None else before, limit),
        )
        return [
            ChatRecord(
                room_id=row[0],
                version=row[1],
                id=row[2],
                user_id=row[3],
                user_name=row[4],
                message=row[5],
                timestamp=_time(row[6]),
                expires_at=_time(row[7] or row[6]),
            )
            for row in reversed(rows)
        ]

    async def delete(self, room_id: str) -> bool:
        async with self._transaction() as db:
            return await self._delete_rooms(db, [room_id]) > 0

    async def list_for_user(
        self, user_id: str, *, now: datetime, limit: int
    ) -> list[SessionSummary]:
        rows = await self._fetch(LIST_FOR_USER, (user_id, iso(now), limit))
        return [
            SessionSummary(
                room_id=row[0],
                creator_name=row[1],
                participant_count=len(json.loads(row[2])),
                language=row[3],
                created_at=_time(row[4]),
                expires_at=_time(row[5]),
                last_activity=_time(row[6]),
                file_count=row[7],
                message_count=row[8],
                last_message=None
                if row[9] is None
                else ChatPreview(user_name=row[9], message=row[10], timestamp=_time(row[11])),
            )
            for row in rows
        ]

    async def purge_expired(self, now: datetime) -> int:
        async with self._transaction() as db:
            room_ids = [row[0] for row in await db.fetch(EXPIRED, (iso(now),))]
            return await self._delete_rooms(db, room_ids)

    # -- history ------------------------------------------------------------------------

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        rows = [
            (
                e.room_id, e.doc_id, e.kind, e.version,
                None if e.op is None else orjson.dumps(e.op).decode(),
                e.text, int(e.pinned), e.author_id, e.author_name, iso(e.at),
                e.inserted, e.deleted,
            )
            for e in entries
        ]  # fmt: skip
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO history (room_id, doc_id, kind, version, op, text, pinned,"
                " author_id, author_name, at, inserted, deleted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    async def list_history(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[HistoryEntry]:
        rows = await self._fetch(
            f"SELECT {HISTORY_COLUMNS} FROM history WHERE room_id = ? AND kind != 'snapshot'"
            " AND version < ? ORDER BY version DESC LIMIT ?",
            (room_id, MAX_VERSION if before is None else before, limit),
        )
        return [_history_entry(room_id, row) for row in rows]

    async def text_history(
        self, room_id: str, doc_id: str, version: int
    ) -> tuple[HistoryEntry | None, list[HistoryEntry]]:
        snapshots = await self._fetch(
            f"SELECT {HISTORY_COLUMNS} FROM history WHERE room_id = ? AND doc_id = ?"
            " AND kind = 'snapshot' AND version <= ? ORDER BY version DESC LIMIT 1",
            (room_id, doc_id, version),
        )
        snapshot = _history_entry(room_id, snapshots[0]) if snapshots else None
        if snapshot is None or snapshot.version != version:
            folds = await self._fetch(
                "SELECT max(version) FROM history WHERE room_id = ? AND doc_id = ?"
                " AND kind = 'snapshot' AND op = ?",
                (room_id, doc_id, orjson.dumps(FOLDED).decode()),
            )
            if folds and folds[0][0] is not None and folds[0][0] > version:
                return None, []
        start = snapshot.version if snapshot is not None else -1
        rows = await self._fetch(
            f"SELECT {HISTORY_COLUMNS} FROM history WHERE room_id = ? AND doc_id = ?"
            " AND kind = 'op' AND version > ? AND version <= ? ORDER BY version",
            (room_id, doc_id, start, version),
        )
        return snapshot, [_history_entry(room_id, row) for row in rows]

    async def language_at(self, room_id: str, version: int) -> str | None:
        # The language's own changes, and its snapshots (doc_id "", the name in `text`).
        rows = await self._fetch(
            "SELECT op, text FROM history WHERE room_id = ? AND doc_id = '' AND version <= ?"
            " ORDER BY version DESC, kind LIMIT 1",
            (room_id, version),
        )
        if not rows:
            return None
        return str(orjson.loads(rows[0][0])) if rows[0][0] is not None else str(rows[0][1])

    async def old_history(self, before: datetime, limit: int) -> list[tuple[str, str, int]]:
        rows = await self._fetch(
            "SELECT room_id, doc_id, max(version) FROM history"
            " WHERE kind IN ('op', 'language') AND at < ? GROUP BY room_id, doc_id LIMIT ?",
            (iso(before), limit),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def drop_history(self, room_id: str, doc_id: str, upto: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "DELETE FROM history WHERE room_id = ? AND doc_id = ? AND ((kind IN ('op',"
                " 'language') AND version <= ?) OR (kind = 'snapshot' AND pinned = 0"
                " AND version < ?))",
                (room_id, doc_id, upto, upto),
            )

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        c = checkpoint
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO checkpoints (room_id, id, name, version, at, author_id,"
                " author_name, auto) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (c.room_id, c.id, c.name, c.version, iso(c.at), c.author_id, c.author_name,
                 int(c.auto)),
            )  # fmt: skip

    async def list_checkpoints(self, room_id: str) -> list[Checkpoint]:
        rows = await self._fetch(
            "SELECT id, name, version, at, author_id, author_name, auto FROM checkpoints"
            " WHERE room_id = ? ORDER BY version DESC, at DESC",
            (room_id,),
        )
        return [
            Checkpoint(
                room_id=room_id, id=r[0], name=r[1], version=r[2], at=_time(r[3]),
                author_id=r[4], author_name=r[5], auto=bool(r[6]),
            )
            for r in rows
        ]  # fmt: skip

    async def load_context(self, user_id: str) -> UserContext | None:
        rows = await self._fetch(
            "SELECT context, revision, updated_at FROM user_contexts WHERE user_id = ?",
            (user_id,),
        )
        if not rows:
            return None
        context, revision, updated_at = rows[0]
        return UserContext(
            user_id=user_id,
            context=orjson.loads(context),
            revision=revision,
            updated_at=_time(updated_at),
        )

    async def save_context(self, context: UserContext, *, expected: int) -> bool:
        values = (orjson.dumps(context.context).decode(), context.revision, iso(context.updated_at))
        async with self._transaction() as db:
            if expected == 0:
                written = await db.execute(
                    "INSERT INTO user_contexts (user_id, context, revision, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                    (context.user_id, *values),
                )
            else:
                written = await db.execute(
                    "UPDATE user_contexts SET context = ?, revision = ?, updated_at = ? "
                    "WHERE user_id = ? AND revision = ?",
                    (*values, context.user_id, expected),
                )
            return bool(written)

    @staticmethod
    async def _delete_rooms(db: Tx, room_ids: Sequence[str]) -> int:
        deleted = 0
        for room_id in room_ids:
            deleted += await db.execute("DELETE FROM sessions WHERE room_id = ?", (room_id,))
            for table in ("messages", "session_users", "files", "history", "checkpoints"):
                await db.execute(f"DELETE FROM {table} WHERE room_id = ?", (room_id,))
        return deleted
