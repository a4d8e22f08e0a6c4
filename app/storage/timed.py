"""A SessionStore that times every operation of another, by operation and outcome (metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from prometheus_client import Histogram

from app.storage import SessionStore
from app.storage.records import (
    ChatRecord,
    Checkpoint,
    HistoryEntry,
    SessionRecord,
    SessionSummary,
    UserContext,
)

T = TypeVar("T")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def store_histogram() -> Histogram:
    """The histogram a TimedStore fills (registered by whoever exposes it)."""
    return Histogram(
        "codecollab_store_operation_seconds",
        "Session store operations, by operation and outcome (ok, error)",
        ["operation", "outcome"],
        buckets=BUCKETS,
        registry=None,
    )


class TimedStore:
    def __init__(self, inner: SessionStore, histogram: Histogram) -> None:
        self.inner = inner
        self.remote = inner.remote
        self.histogram = histogram

    async def _timed(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await call()
            outcome = "ok"
            return result
        finally:
            self.histogram.labels(operation, outcome).observe(time.perf_counter() - started)

    async def open(self) -> None:
        await self._timed("open", self.inner.open)

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping)

    async def load(self, room_id: str) -> SessionRecord | None:
        return await self._timed("load", lambda: self.inner.load(room_id))

    async def save(self, record: SessionRecord) -> bool:
        return await self._timed("save", lambda: self.inner.save(record))

    async def append_messages(self, messages: Sequence[ChatRecord]) -> None:
        await self._timed("append_messages", lambda: self.inner.append_messages(messages))

    async def list_messages(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[ChatRecord]:
        return await self._timed(
            "list_messages",
            lambda: self.inner.list_messages(room_id, before=before, limit=limit),
        )

    async def delete(self, room_id: str) -> bool:
        return await self._timed("delete", lambda: self.inner.delete(room_id))

    async def list_for_user(
        self, user_id: str, *, now: datetime, limit: int
    ) -> list[SessionSummary]:
        return await self._timed(
            "list_for_user", lambda: self.inner.list_for_user(user_id, now=now, limit=limit)
        )

    async def purge_expired(self, now: datetime) -> int:
        return await self._timed("purge_expired", lambda: self.inner.purge_expired(now))

    async def load_context(self, user_id: str) -> UserContext | None:
        return await self._timed("load_context", lambda: self.inner.load_context(user_id))

    async def save_context(self, context: UserContext, *, expected: int) -> bool:
        return await self._timed(
            "save_context", lambda: self.inner.save_context(context, expected=expected)
        )

    async def append_history(self, entries: Sequence[HistoryEntry]) -> None:
        await self._timed("append_history", lambda: self.inner.append_history(entries))

    async def list_history(
        self, room_id: str, *, before: int | None, limit: int
    ) -> list[HistoryEntry]:
        return await self._timed(
            "list_history", lambda: self.inner.list_history(room_id, before=before, limit=limit)
        )

    async def text_history(
        self, room_id: str, doc_id: str, version: int
    ) -> tuple[HistoryEntry | None, list[HistoryEntry]]:
        return await self._timed(
            "text_history", lambda: self.inner.text_history(room_id, doc_id, version)
        )

    async def language_at(self, room_id: str, version: int) -> str | None:
        return await self._timed("language_at", lambda: self.inner.language_at(room_id, version))

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._timed("save_checkpoint", lambda: self.inner.save_checkpoint(checkpoint))

    async def list_checkpoints(self, room_id: str) -> list[Checkpoint]:
        return await self._timed("list_checkpoints", lambda: self.inner.list_checkpoints(room_id))

    async def old_history(self, before: datetime, limit: int) -> list[tuple[str, str, int]]:
        return await self._timed("old_history", lambda: self.inner.old_history(before, limit))

    async def drop_history(self, room_id: str, doc_id: str, upto: int) -> None:
        await self._timed("drop_history", lambda: self.inner.drop_history(room_id, doc_id, upto))
