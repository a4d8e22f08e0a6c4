"""The SessionStore protocol every backend implements, and `open_store` to pick one."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from app.models import ChatRecord, SessionRecord, SessionSummary

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The store could not be reached or failed; the caller keeps its data and retries."""


class SessionStore(Protocol):
    """Persistence of sessions and their chat. Every method raises StoreError on failure."""

    async def open(self) -> None:
        """Connect and create tables or indexes."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Succeed only when the store answers."""

    async def load(self, room_id: str) -> SessionRecord | None:
        """The stored session, expired or not, with `version` at least its last chat's."""

    async def save(self, record: SessionRecord) -> bool:
        """Insert or replace, unless the stored version is newer. True when written."""

    async def append_messages(self, messages: Sequence[ChatRecord]) -> None:
        """Store chat messages; a message already stored (same room and version) is skipped."""

    async def list_messages(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[ChatRecord]:
        """The newest `limit` messages with version below `before`, oldest first."""

    async def delete(self, room_id: str) -> bool:
        """Delete the session and its chat. True when a session was there."""

    async def list_for_user(
        self, user_id: str, *, now: datetime, limit: int
    ) -> list[SessionSummary]:
        """Unexpired sessions the user created or joined, newest activity first."""

    async def purge_expired(self, now: datetime) -> int:
        """Delete sessions (and their chat) that expired before `now`; how many."""


def open_store(settings: Settings) -> SessionStore:
    """The backend the settings choose: MongoDB when MONGODB_URI is set, else SQLite."""
    if settings.mongodb_uri:
        from app.storage.mongo import MongoSessionStore

        log.info("store: MongoDB database %r", settings.mongodb_db)
        return MongoSessionStore.from_uri(
            settings.mongodb_uri, settings.mongodb_db, timeout=settings.store_timeout_seconds
        )
    from app.storage.sqlite import SqliteSessionStore

    path = settings.data_dir / "sessions.sqlite3"
    log.info("store: SQLite file %s", path.resolve())
    return SqliteSessionStore(path)
