"""Stores for tests: a wrapper that counts writes and can be made to fail, around a real SQLite
store, and an in-memory store for the domain alone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from app.storage import StoreError
from app.storage.records import ChatRecord, SessionRecord, SessionSummary, UserContext
from app.storage.sqlite import SqliteSessionStore


class FlakyStore:
    """Delegates to SQLite; counts saves; raises StoreError while `failing` is set."""

    remote = False

    def __init__(self, path: Path) -> None:
        self.inner = SqliteSessionStore(path)
        self.failing = False
        self.saves: list[SessionRecord] = []
        self.appended: list[ChatRecord] = []

    def _check(self) -> None:
        if self.failing:
            raise StoreError("store is down (test)")

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        self._check()
        await self.inner.ping()

    async def load(self, room_id: str) -> SessionRecord | None:
        self._check()
        return await self.inner.load(room_id)

    async def save(self, record: SessionRecord) -> bool:
        self._check()
        written = await self.inner.save(record)
        self.saves.append(record)  # once it is in the file, so tests can read it back
        return written

    async def append_messages(self, messages: Sequence[ChatRecord]) -> None:
        self._check()
        self.appended.extend(messages)
        await self.inner.append_messages(messages)

    async def list_messages(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[ChatRecord]:
        self._check()
        return await self.inner.list_messages(room_id, before=before, limit=limit)

    async def delete(self, room_id: str) -> bool:
        self._check()
        return await self.inner.delete(room_id)

    async def list_for_user(
        self, user_id: str, *, now: datetime, limit: int
    ) -> list[SessionSummary]:
        self._check()
        return await self.inner.list_for_user(user_id, now=now, limit=limit)

    async def purge_expired(self, now: datetime) -> int:
        self._check()
        return await self.inner.purge_expired(now)

    def __getattr__(self, name: str) -> Any:
        """History and checkpoints: as the inner store, failing while `failing` is set."""
        inner = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return await inner(*args, **kwargs)

        return call

    async def load_context(self, user_id: str) -> UserContext | None:
        self._check()
        return await self.inner.load_context(user_id)

    async def save_context(self, context: UserContext, *, expected: int) -> bool:
        self._check()
        return await self.inner.save_context(context, expected=expected)


class MemoryStore:
    """Enough of a SessionStore for the domain: sessions in a dict, chat nowhere."""

    remote = False

    def __init__(self) -> None:
        self.sessions: dict[str, SessionRecord] = {}

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def load(self, room_id: str) -> SessionRecord | None:
        return self.sessions.get(room_id)

    async def save(self, record: SessionRecord) -> bool:
        self.sessions[record.room_id] = record
        return True

    async def append_messages(self, messages: Iterable[ChatRecord]) -> None: ...

    async def list_messages(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[ChatRecord]:
        return []

    async def delete(self, room_id: str) -> bool:
        return self.sessions.pop(room_id, None) is not None

    async def list_for_user(
        self, user_id: str, *, now: datetime, limit: int
    ) -> list[SessionSummary]:
        return []

    async def purge_expired(self, now: datetime) -> int:
        return 0

    async def append_history(self, entries: Iterable[object]) -> None: ...
