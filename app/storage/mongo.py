"""SessionStore on MongoDB through PyMongo's async API: sessions and chat in two collections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from app.config import Settings
from app.storage import FOLDED, StoreError
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

Document = dict[str, Any]
OLD_HISTORY_SCAN = 100_000  # history entries looked at per compaction round
DUPLICATE_KEY = 11000
# Chat expiry follows the session's; refreshing it in bulk only when it lags this far behind
# keeps a save during continuous typing from touching every message.
MAX_CHAT_EXPIRY_LAG = timedelta(hours=1)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _session_document(record: SessionRecord) -> Document:
    return {
        "roomId": record.room_id,
        "code": record.code,
        "language": record.language,
        "version": record.version,
        "codeVersion": record.code_version,
        "languageVersion": record.language_version,
        "creatorName": record.creator_name,
        "creatorUserId": record.creator_user_id,
        "participants": [
            {"userId": p.user_id, "name": p.name, "joinedAt": p.joined_at, "lastSeen": p.last_seen}
            for p in record.participants
        ],
        "userIds": record.user_ids,
        "files": [_file_document(f) for f in record.files],
        "fileCount": len(record.files),  # for the per-user listing, without reading the files
        "activeFile": record.active_file,
        # As JSON text: a snapshot's keys may hold characters MongoDB refuses in field names.
        "whiteboardJson": None
        if record.whiteboard is None
        else orjson.dumps(record.whiteboard).decode(),
        # As JSON text too: user ids are keys of its member map.
        "accessJson": None if record.access is None else record.access.model_dump_json(),
        "createdAt": record.created_at,
        "lastActivity": record.last_activity,
        "expiresAt": record.expires_at,
    }


def _whiteboard(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _access(text: str | None) -> AccessRecord | None:
    return None if text is None else AccessRecord.model_validate_json(text)


def _file_document(f: FileRecord) -> Document:
    return {
        "fileId": f.file_id,
        "name": f.name,
        "content": None if f.file_id == MAIN_FILE_ID else f.content,  # the code, kept once
        "mime": f.mime,
        "size": f.size,
        "uploadedBy": f.uploaded_by,
        "uploaderName": f.uploader_name,
        "uploadedAt": f.uploaded_at,
        "version": f.version,
    }


def _file_record(doc: Mapping[str, Any]) -> FileRecord:
    return FileRecord(
        file_id=doc["fileId"],
        name=doc.get("name") or doc["fileId"],
        content=doc.get("content") or "",
        mime=doc.get("mime") or "text/plain",
        size=doc.get("size") or 0,
        uploaded_by=doc.get("uploadedBy"),
        uploader_name=doc.get("uploaderName"),
        uploaded_at=_utc(doc["uploadedAt"]),
        version=doc.get("version", 0),
    )


def _session_record(doc: Mapping[str, Any], version: int) -> SessionRecord:
    return SessionRecord(
        room_id=doc["roomId"],
        code=doc["code"],
        language=doc["language"],
        version=version,
        # Documents written before these fields existed: assume a change at their version.
        code_version=doc.get("codeVersion", doc["version"]),
        language_version=doc.get("languageVersion", doc["version"]),
        creator_name=doc.get("creatorName"),
        creator_user_id=doc.get("creatorUserId"),
        participants=tuple(
            Participant(
                user_id=p.get("userId"),
                name=p.get("name", ""),
                joined_at=_utc(p["joinedAt"]),
                last_seen=_utc(p["lastSeen"]),
            )
            for p in doc.get("participants", [])
        ),
        files=tuple(_file_record(f) for f in doc.get("files") or []),
        active_file=doc.get("activeFile"),
        whiteboard=_whiteboard(doc.get("whiteboardJson")),
        access=_access(doc.get("accessJson")),
        created_at=_utc(doc["createdAt"]),
        last_activity=_utc(doc["lastActivity"]),
        expires_at=_utc(doc["expiresAt"]),
    )


def _history_entry(doc: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        room_id=doc["roomId"],
        doc_id=doc["docId"],
        kind=doc["kind"],
        version=doc["version"],
        op=None if doc.get("opJson") is None else orjson.loads(doc["opJson"]),
        text=doc.get("text"),
        pinned=bool(doc.get("pinned")),
        author_id=doc.get("authorId"),
        author_name=doc.get("authorName"),
        at=_utc(doc["at"]),
        inserted=doc.get("inserted", 0),
        deleted=doc.get("deleted", 0),
    )


def _chat_record(doc: Mapping[str, Any]) -> ChatRecord:
    return ChatRecord(
        room_id=doc["roomId"],
        version=doc["version"],
        id=doc["id"],
        user_id=doc.get("userId"),
        user_name=doc["userName"],
        message=doc["message"],
        timestamp=_utc(doc["timestamp"]),
        expires_at=_utc(doc["expiresAt"]),
    )


def _only_duplicates(error: BulkWriteError) -> bool:
    return all(e.get("code") == DUPLICATE_KEY for e in error.details.get("writeErrors", []))


class MongoSessionStore:
    """`sessions` (unique roomId, TTL on expiresAt, per-user index) and `messages`."""

    remote = True

    def __init__(self, database: Any, client: Any = None) -> None:
        self.sessions = database["sessions"]
        self.messages = database["messages"]
        self.contexts = database["contexts"]
        self.history = database["history"]
        self.checkpoints = database["checkpoints"]
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings, url: str) -> MongoSessionStore:
        return cls.from_uri(url, settings.mongodb_db, timeout=settings.store_timeout_seconds)

    @classmethod
    def from_uri(cls, uri: str, database: str, *, timeout: float) -> MongoSessionStore:
        timeout_ms = int(timeout * 1000)
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
        )
        return cls(client[database], client)

    async def open(self) -> None:
        try:
            await self.sessions.create_index("roomId", unique=True)
            await self.sessions.create_index("expiresAt", expireAfterSeconds=0)
            await self.sessions.create_index([("userIds", ASCENDING), ("lastActivity", DESCENDING)])
            await self.messages.create_index(
                [("roomId", ASCENDING), ("version", ASCENDING)], unique=True
            )
            await self.contexts.create_index("userId", unique=True)
            await self.history.create_index(
                [("roomId", ASCENDING), ("docId", ASCENDING), ("kind", ASCENDING),
                 ("version", ASCENDING)],
                unique=True,
            )  # fmt: skip
            await self.history.create_index([("roomId", ASCENDING), ("version", DESCENDING)])
            await self.history.create_index("at")
            await self.checkpoints.create_index(
                [("roomId", ASCENDING), ("id", ASCENDING)], unique=True
            )
            await self.messages.create_index("expiresAt", expireAfterSeconds=0)
            await self.messages.create_index([("roomId", ASCENDING), ("expiresAt", ASCENDING)])
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def ping(self) -> None:
        try:
            await self.sessions.find_one({"roomId": ""}, {"_id": 1})
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def load(self, room_id: str) -> SessionRecord | None:
        try:
            doc = await self.sessions.find_one({"roomId": room_id})
            if doc is None:
                return None
            last = await self.messages.find_one(
                {"roomId": room_id}, {"version": 1}, sort=[("version", DESCENDING)]
            )
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return _session_record(doc, max(doc["version"], last["version"] if last else 0))

    async def save(self, record: SessionRecord) -> bool:
        doc = _session_document(record)
        lag = min(MAX_CHAT_EXPIRY_LAG, (record.expires_at - record.last_activity) / 100)
        not_newer = {"roomId": record.room_id, "version": {"$lte": record.version}}
        try:
            result = await self.sessions.update_one(not_newer, {"$set": doc})
            if result.matched_count == 0:
                try:
                    await self.sessions.insert_one(dict(doc))  # insert_one adds an _id
                except DuplicateKeyError:
                    # Another writer inserted the room since; ours still wins unless older.
                    result = await self.sessions.update_one(not_newer, {"$set": doc})
                    if result.matched_count == 0:
                        return False  # a newer version is stored
            await self.messages.update_many(
                {"roomId": record.room_id, "expiresAt": {"$lt": record.expires_at - lag}},
                {"$set": {"expiresAt": record.expires_at}},
            )
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return True

    async def append_messages(self, messages: Sequence[ChatRecord]) -> None:
        if not messages:
            return  # insert_many refuses an empty batch (TypeError)
        docs = [
            {
                "roomId": m.room_id,
                "version": m.version,
                "id": m.id,
                "userId": m.user_id,
                "userName": m.user_name,
                "message": m.message,
                "timestamp": m.timestamp,
                "expiresAt": m.expires_at,
            }
            for m in messages
        ]
        try:
            await self.messages.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            if not _only_duplicates(error):
                raise StoreError(f"MongoDB: {error}") from error
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def list_messages(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[ChatRecord]:
        query: Document = {"roomId": room_id}
        if before is not None:
            query["version"] = {"$lt": before}
        try:
            cursor = self.messages.find(query).sort("version", DESCENDING).limit(limit)
            docs = await cursor.to_list(length=limit)
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return [_chat_record(doc) for doc in reversed(docs)]

    async def delete(self, room_id: str) -> bool:
        try:
            result = await self.sessions.delete_one({"roomId": room_id})
            for collection in (self.messages, self.history, self.checkpoints):
                await collection.delete_many({"roomId": room_id})
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return bool(result.deleted_count)

    async def list_for_user(
        self, user_id: str, *, now: datetime, limit: int
    ) -> list[SessionSummary]:
        query = {"userIds": user_id, "expiresAt": {"$gt": now}}
        fields = [
            "roomId",
            "creatorName",
            "participants",
            "language",
            "createdAt",
            "expiresAt",
            "lastActivity",
            "fileCount",
        ]
        try:
            cursor = self.sessions.find(query, fields).sort("lastActivity", DESCENDING)
            docs = await cursor.limit(limit).to_list(length=limit)
            chats = await self._chat_of([doc["roomId"] for doc in docs])
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return [
            SessionSummary(
                room_id=doc["roomId"],
                creator_name=doc.get("creatorName"),
                participant_count=len(doc.get("participants", [])),
                language=doc["language"],
                created_at=_utc(doc["createdAt"]),
                expires_at=_utc(doc["expiresAt"]),
                last_activity=_utc(doc["lastActivity"]),
                file_count=doc.get("fileCount", 0),
                message_count=chats.get(doc["roomId"], (0, None))[0],
                last_message=chats.get(doc["roomId"], (0, None))[1],
            )
            for doc in docs
        ]

    async def _chat_of(self, room_ids: list[str]) -> dict[str, tuple[int, ChatPreview | None]]:
        """Each room's message count and last message, in one query for all of them."""
        if not room_ids:
            return {}
        pipeline: list[Document] = [
            {"$match": {"roomId": {"$in": room_ids}}},
            {"$sort": {"version": DESCENDING}},
            {
                "$group": {
                    "_id": "$roomId",
                    "count": {"$sum": 1},
                    "userName": {"$first": "$userName"},
                    "message": {"$first": "$message"},
                    "timestamp": {"$first": "$timestamp"},
                }
            },
        ]
        cursor = await self.messages.aggregate(pipeline)
        found: dict[str, tuple[int, ChatPreview | None]] = {}
        async for row in cursor:
            preview = ChatPreview(
                user_name=row["userName"], message=row["message"], timestamp=_utc(row["timestamp"])
            )
            found[row["_id"]] = (row["count"], preview)
        return found

    async def purge_expired(self, now: datetime) -> int:
        # The TTL index does this within a minute on a real server; purging here as well makes
        # expiry exact for reads and works on servers without a TTL monitor.
        try:
            expired = await self.sessions.find({"expiresAt": {"$lte": now}}, ["roomId"]).to_list(
                length=None
            )
            room_ids = [doc["roomId"] for doc in expired]
            if not room_ids:
                return 0
            result = await self.sessions.delete_many(
                {"roomId": {"$in": room_ids}, "expiresAt": {"$lte": now}}
            )
            await self.messages.delete_many({"roomId": {"$in": room_ids}})
            await self._delete_history({"$in": room_ids})
            await self._sweep_history()
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return int(result.deleted_count)

    async def _delete_history(self, rooms: Any) -> None:
        for collection in (self.history, self.checkpoints):
            await collection.delete_many({"roomId": rooms})

    async def _sweep_history(self) -> None:
        """History of sessions the TTL monitor deleted (it knows nothing of history)."""
        recorded = set(await self.history.distinct("roomId"))
        recorded |= set(await self.checkpoints.distinct("roomId"))
        if not recorded:
            return
        found = self.sessions.find({"roomId": {"$in": sorted(recorded)}}, ["roomId"])
        alive = {doc["roomId"] for doc in await found.to_list(length=None)}
        if recorded - alive:
            await self._delete_history({"$in": sorted(recorded - alive)})

    async def load_context(self, user_id: str) -> UserContext | None:
        try:
            doc = await self.contexts.find_one({"userId": user_id})
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        if doc is None:
            return None
        return UserContext(
            user_id=user_id,
            context=orjson.loads(doc["contextJson"]),
            revision=doc["revision"],
            updated_at=_utc(doc["updatedAt"]),
        )

    async def save_context(self, context: UserContext, *, expected: int) -> bool:
        # As JSON text: its keys are the client's, which MongoDB may refuse as field names.
        fields = {
            "contextJson": orjson.dumps(context.context).decode(),
            "revision": context.revision,
            "updatedAt": context.updated_at,
        }
        try:
            if expected == 0:
                await self.contexts.insert_one({"userId": context.user_id, **fields})
                return True
            result = await self.contexts.update_one(
                {"userId": context.user_id, "revision": expected}, {"$set": fields}
            )
        except DuplicateKeyError:
            return False
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return bool(result.matched_count)

    # -- history ------------------------------------------------------------------------

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        if not entries:
            return
        docs = [
            {
                "roomId": e.room_id, "docId": e.doc_id, "kind": e.kind, "version": e.version,
                "opJson": None if e.op is None else orjson.dumps(e.op).decode(),
                "text": e.text, "pinned": e.pinned, "authorId": e.author_id,
                "authorName": e.author_name, "at": e.at, "inserted": e.inserted,
                "deleted": e.deleted,
            }
            for e in entries
        ]  # fmt: skip
        try:
            await self.history.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            if not _only_duplicates(error):
                raise StoreError(f"MongoDB: {error}") from error
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def list_history(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[HistoryEntry]:
        query: Document = {"roomId": room_id, "kind": {"$ne": "snapshot"}}
        if before is not None:
            query["version"] = {"$lt": before}
        try:
            cursor = self.history.find(query).sort("version", DESCENDING).limit(limit)
            return [_history_entry(doc) for doc in await cursor.to_list(length=limit)]
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def text_history(
        self, room_id: str, doc_id: str, version: int
    ) -> tuple[HistoryEntry | None, list[HistoryEntry]]:
        try:
            found = await self.history.find_one(
                {"roomId": room_id, "docId": doc_id, "kind": "snapshot",
                 "version": {"$lte": version}},
                sort=[("version", DESCENDING)],
            )  # fmt: skip
            snapshot = _history_entry(found) if found is not None else None
            if snapshot is None or snapshot.version != version:
                fold = await self.history.find_one(
                    {"roomId": room_id, "docId": doc_id, "kind": "snapshot",
                     "opJson": orjson.dumps(FOLDED).decode(), "version": {"$gt": version}}
                )  # fmt: skip
                if fold is not None:
                    return None, []
            start = snapshot.version if snapshot is not None else -1
            cursor = self.history.find(
                {"roomId": room_id, "docId": doc_id, "kind": "op",
                 "version": {"$gt": start, "$lte": version}}
            ).sort("version", ASCENDING)  # fmt: skip
            ops = [_history_entry(doc) for doc in await cursor.to_list(length=None)]
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return snapshot, ops

    async def language_at(self, room_id: str, version: int) -> str | None:
        try:
            # The language's own changes, and its snapshots (docId "", the name in `text`).
            found = await self.history.find_one(
                {"roomId": room_id, "docId": "", "version": {"$lte": version}},
                sort=[("version", DESCENDING), ("kind", ASCENDING)],
            )
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        if found is None:
            return None
        if found.get("opJson") is not None:
            return str(orjson.loads(found["opJson"]))
        return str(found["text"])

    async def old_history(self, before: datetime, limit: int) -> list[tuple[str, str, int]]:
        # Grouped here, not by the server: old changes are folded as they age, so few wait.
        query = {"kind": {"$in": ["op", "language"]}, "at": {"$lt": before}}
        newest: dict[tuple[str, str], int] = {}
        try:
            cursor = self.history.find(query, ["roomId", "docId", "version"])
            async for doc in cursor.limit(OLD_HISTORY_SCAN):
                key = (doc["roomId"], doc["docId"])
                newest[key] = max(newest.get(key, -1), doc["version"])
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return [(room, doc, version) for (room, doc), version in newest.items()][:limit]

    async def drop_history(self, room_id: str, doc_id: str, upto: int) -> None:
        try:
            await self.history.delete_many(
                {"roomId": room_id, "docId": doc_id, "$or": [
                    {"kind": {"$in": ["op", "language"]}, "version": {"$lte": upto}},
                    {"kind": "snapshot", "pinned": False, "version": {"$lt": upto}},
                ]}
            )  # fmt: skip
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        c = checkpoint
        doc = {
            "roomId": c.room_id, "id": c.id, "name": c.name, "version": c.version, "at": c.at,
            "authorId": c.author_id, "authorName": c.author_name, "auto": c.auto,
        }  # fmt: skip
        try:
            await self.checkpoints.insert_one(doc)
        except DuplicateKeyError:
            return
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error

    async def list_checkpoints(self, room_id: str) -> list[Checkpoint]:
        try:
            cursor = self.checkpoints.find({"roomId": room_id}).sort(
                [("version", DESCENDING), ("at", DESCENDING)]
            )
            docs = await cursor.to_list(length=None)
        except PyMongoError as error:
            raise StoreError(f"MongoDB: {error}") from error
        return [
            Checkpoint(
                room_id=room_id, id=d["id"], name=d["name"], version=d["version"],
                at=_utc(d["at"]), author_id=d.get("authorId"), author_name=d.get("authorName"),
                auto=bool(d.get("auto")),
            )
            for d in docs
        ]  # fmt: skip
