"""SessionStore on one SQLite file (WAL), the embedded default; queries run off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from app.config import Settings
from app.storage import StoreError, sql
from app.storage.sql import SqlSessionStore, Tx

SCHEMA = sql.SCHEMA.format(int="INTEGER", rowid=" WITHOUT ROWID")


class _Connection:
    """An aiosqlite connection as a Tx."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self.db.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.db.executemany(sql, rows)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async with self.db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


class SqliteSessionStore(SqlSessionStore):
    """One connection, serialised by aiosqlite's worker thread; a locked file fails in ~1 s."""

    remote = False

    @classmethod
    def from_settings(cls, settings: Settings, url: str) -> SqliteSessionStore:
        """`sqlite:///<path>` (three slashes, then the path; a fourth for an absolute one)."""
        return cls(Path(url.removeprefix("sqlite:///")))

    def __init__(self, path: Path, *, busy_timeout: float = 1.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        # Transactions share the one connection: a second BEGIN while one is open would fail
        # (and its error path roll back the other's writes), so they take turns.
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None
            )
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.executescript(SCHEMA)
            await self._add_missing_columns()
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"SQLite {self.path} (DATA_DIR, --data-dir): {error}") from error

    async def _add_missing_columns(self) -> None:
        """Bring a file made by an earlier version of the schema up to date."""
        async with self.db.execute("PRAGMA table_info(sessions)") as cursor:
            columns = {row[1] for row in await cursor.fetchall()}
        added = {
            "code_version": "INTEGER NOT NULL DEFAULT 0",
            "language_version": "INTEGER NOT NULL DEFAULT 0",
            "active_file": "TEXT",
            "whiteboard": "TEXT",
            "access": "TEXT",
        }
        for column, kind in added.items():
            if column not in columns:
                await self.db.execute(f"ALTER TABLE sessions ADD COLUMN {column} {kind}")

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("SQLite store is not open")
        return self._db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        db = self.db
        async with self._write_lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield _Connection(db)
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.Error as error:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise StoreError(f"SQLite: {error}") from error

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Tx]:
        # Every write goes through a transaction under the lock: none lands meanwhile.
        async with self._write_lock:
            try:
                yield _Connection(self.db)
            except sqlite3.Error as error:
                raise StoreError(f"SQLite: {error}") from error

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            async with self.db.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            raise StoreError(f"SQLite: {error}") from error

    async def ping(self) -> None:
        # Take the write lock and let go: in WAL mode reads succeed even while another
        # connection holds the file locked, so only a write attempt shows that writes fail.
        async with self._transaction() as db:
            await db.execute("SELECT 1")
