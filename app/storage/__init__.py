"""The SessionStore protocol every backend implements, and the table of backends by URL scheme."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from app.storage.records import (
    ChatRecord,
    Checkpoint,
    HistoryEntry,
    SessionRecord,
    SessionSummary,
    UserContext,
)

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)


FOLDED = "folded"  # the `op` of a history snapshot that older changes were folded into


class StoreError(Exception):
    """The store could not be reached or failed; the caller keeps its data and retries."""


class SessionStore(Protocol):
    """Persistence of sessions and their chat. Every method raises StoreError on failure."""

    # A server of its own (MongoDB): one that is down at start-up is waited for while the
    # server runs (not ready); an embedded store that cannot open stops the start-up.
    remote: bool

    async def open(self) -> None:
        """Connect and create tables or indexes."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Succeed only when the store answers."""

    async def load(self, room_id: str) -> SessionRecord | None:
        """The stored session, expired or not, with `version` at least its last chat's."""

    async def save(self, record: SessionRecord) -> bool:
        """Insert or replace (files included), unless the stored version is newer. True when
        written."""

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

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Store history entries; one already stored (same room, text, kind, version) is
        skipped."""

    async def list_history(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[HistoryEntry]:
        """The newest `limit` changes (ops and languages, not snapshots) below version
        `before`, newest first."""

    async def text_history(
        self, room_id: str, doc_id: str, version: int
    ) -> tuple[HistoryEntry | None, list[HistoryEntry]]:
        """What rebuilds text `doc_id` at `version`: its newest snapshot at or before it,
        and its ops after that snapshot up to `version`, oldest first. (None, []) when the
        changes before it were folded away (a snapshot whose `op` is "folded" after it) and
        no snapshot is at exactly `version`."""

    async def language_at(self, room_id: str, version: int) -> str | None:
        """The language recorded last at or before `version`."""

    async def old_history(self, before: datetime, limit: int) -> list[tuple[str, str, int]]:
        """Up to `limit` (room, text, newest version) that have changes recorded before
        `before` (`text` "" is the language)."""

    async def drop_history(self, room_id: str, doc_id: str, upto: int) -> None:
        """Forget the text's changes up to `upto` and its snapshots before it, but those of
        checkpoints (pinned)."""

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint (again: unchanged)."""

    async def list_checkpoints(self, room_id: str) -> list[Checkpoint]:
        """The session's checkpoints, newest first."""

    async def load_context(self, user_id: str) -> UserContext | None:
        """A user's stored context (preferences and state), None when they have none."""

    async def save_context(self, context: UserContext, *, expected: int) -> bool:
        """Store `context` (its `revision` is `expected` + 1) only if the stored one is still
        at revision `expected` (0: none stored). True when written."""


# URL scheme -> "module:Class"; each class has `from_settings(settings, url)`. Only the chosen
# backend's module is imported. The store contract suite runs on every entry.
BACKENDS = {
    "sqlite": "app.storage.sqlite:SqliteSessionStore",
    "mongodb": "app.storage.mongo:MongoSessionStore",
    "mongodb+srv": "app.storage.mongo:MongoSessionStore",
    "postgresql": "app.storage.postgres:PostgresSessionStore",
    "postgres": "app.storage.postgres:PostgresSessionStore",
}


def store_url(settings: Settings) -> str:
    """The store the settings choose: STORE_URL, else MONGODB_URI, else the SQLite file in
    DATA_DIR."""
    if settings.store_url:
        return settings.store_url
    if settings.mongodb_uri:
        return settings.mongodb_uri
    return f"sqlite:///{(settings.data_dir / 'sessions.sqlite3').resolve()}"


def open_store(settings: Settings) -> SessionStore:
    url = store_url(settings)
    scheme = url.split(":", 1)[0].lower()
    target = BACKENDS.get(scheme)
    if target is None:
        raise ValueError(f"no session store for URLs of scheme {scheme!r}")
    module, name = target.split(":")
    backend = getattr(importlib.import_module(module), name)
    store: SessionStore = backend.from_settings(settings, url)
    return store
