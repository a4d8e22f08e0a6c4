"""SessionStore on PostgreSQL (asyncpg, a pool of connections): the shared SQL of sql.py, its
`?` placeholders numbered as PostgreSQL wants them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

import asyncpg

from app.config import Settings
from app.storage import StoreError, sql
from app.storage.sql import SqlSessionStore, Tx

SCHEMA = sql.SCHEMA.format(int="BIGINT", rowid="")
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@cache
def numbered(query: str) -> str:
    """`?` placeholders as $1, $2... (the shared queries hold no other `?`)."""
    count = 0

    def number(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"\?", number, query)


# PostgreSQL text cannot hold NUL, which texts may: it is written as ESCAPE + "0" (and the
# escape character itself, from plane 15's private use area, as two of it).
ESCAPE = "\U000f0000"
ESCAPED = re.compile(ESCAPE + "(.)", re.DOTALL)


def _to_db(value: Any) -> Any:
    if isinstance(value, str) and ("\x00" in value or ESCAPE in value):
        return value.replace(ESCAPE, ESCAPE * 2).replace("\x00", ESCAPE + "0")
    return value


def _from_db(value: Any) -> Any:
    if isinstance(value, str) and ESCAPE in value:
        return ESCAPED.sub(lambda m: "\x00" if m.group(1) == "0" else ESCAPE, value)
    return value


def _changed(status: str) -> int:
    """The rows a command changed, from its status ("INSERT 0 1", "UPDATE 2", ...)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Connection:
    """An asyncpg connection as a Tx."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def execute(self, sql_text: str, params: Sequence[Any] = ()) -> int:
        values = [_to_db(v) for v in params]
        return _changed(await self.connection.execute(numbered(sql_text), *values))

    async def executemany(self, sql_text: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            values = [[_to_db(v) for v in row] for row in rows]
            await self.connection.executemany(numbered(sql_text), values)

    async def fetch(self, sql_text: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        values = [_to_db(v) for v in params]
        rows = await self.connection.fetch(numbered(sql_text), *values)
        return [tuple(_from_db(v) for v in row) for row in rows]


class PostgresSessionStore(SqlSessionStore):
    """`postgresql://user:password@host:port/database` (STORE_URL); with `schema`, its
    tables live in that schema (made when missing)."""

    remote = True
    GREATEST = "greatest"

    @classmethod
    def from_settings(cls, settings: Settings, url: str) -> PostgresSessionStore:
        return cls(url, timeout=settings.store_timeout_seconds)

    def __init__(self, url: str, *, timeout: float = 3.0, schema: str | None = None) -> None:
        if schema is not None and not SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"not a schema name: {schema!r}")
        self.url = url
        self.timeout = timeout
        self.schema = schema
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {"search_path": self.schema} if self.schema else None
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=10,
                timeout=self.timeout,
                command_timeout=self.timeout,
                server_settings=settings,
            )
            async with pool.acquire() as connection:
                if self.schema:
                    await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                await connection.execute("SELECT pg_advisory_lock(7411)")  # one creator
                try:
                    await connection.execute(SCHEMA)
                finally:
                    await connection.execute("SELECT pg_advisory_unlock(7411)")
        except FAILURES as error:
            raise StoreError(f"PostgreSQL (STORE_URL): {error}") from error
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise StoreError("PostgreSQL store is not open")
        return self._pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                yield _Connection(connection)
        except FAILURES as error:
            raise StoreError(f"PostgreSQL: {error}") from error

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Tx]:
        try:
            async with (
                self.pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield _Connection(connection)
        except FAILURES as error:
            raise StoreError(f"PostgreSQL: {error}") from error

    async def _fetch(self, sql_text: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        try:
            async with self.pool.acquire() as connection:
                return await _Connection(connection).fetch(sql_text, params)
        except FAILURES as error:
            raise StoreError(f"PostgreSQL: {error}") from error

    async def ping(self) -> None:
        await self._fetch("SELECT 1", ())
