"""PostgreSQL as the server's store (STORE_URL=postgresql://...): a session typed, chatted in,
checkpointed and restarted comes back whole; and every store the server registers by URL
scheme is one the store contract suite runs on."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.storage import BACKENDS
from tests.store_backends import (
    ALL_BACKENDS,
    CLASSES,
    POSTGRES_DEFAULT_URL,
    POSTGRES_URL_VARIABLE,
)
from tests.support import Client, fast_settings, missing_tool, running_server


def test_every_registered_store_runs_the_contract_suite() -> None:
    registered = {target.split(":")[1] for target in BACKENDS.values()}
    assert registered == set(CLASSES)
    for backends in CLASSES.values():
        assert backends and set(backends) <= set(ALL_BACKENDS)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A STORE_URL on a fresh schema of the test PostgreSQL (dropped afterwards)."""
    import asyncpg

    url = os.environ.get(POSTGRES_URL_VARIABLE, POSTGRES_DEFAULT_URL)
    schema = f"server_{uuid.uuid4().hex[:16]}"
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        missing_tool(f"PostgreSQL at {url} does not answer: {error}")
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in url else "?"
        yield f"{url}{separator}search_path={schema}"
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()


async def test_a_session_on_postgresql_survives_a_restart(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = fast_settings(tmp_path, store_url=postgres_url)
    async with running_server(settings) as server:
        client = await Client().connect(server.url)
        try:
            assert (await client.join("PG1", "Ann", "user-ann"))["ok"]
            first = await client.call("codeChange", {"roomId": "PG1", "code": "one\x00\n"})
            await client.call("codeChange", {"roomId": "PG1", "code": "one\x00\ntwo\n"})
            await client.call("chatMessage", {"roomId": "PG1", "message": "stored?"})
            made = await client.call("createCheckpoint", {"roomId": "PG1", "name": "cp"})
            assert made["ok"] is True
        finally:
            await client.close()
        assert await server.flush("PG1")
        status, body = await server.http("GET", "/api/ready")
        assert status == 200, body
    async with running_server(settings) as server:
        status, body = await server.http("GET", "/api/sessions/PG1")
        assert status == 200, body
        session = body["session"]
        assert session["code"] == "one\x00\ntwo\n"
        assert [m["message"] for m in session["messages"]] == ["stored?"]
        status, body = await server.http("GET", f"/api/sessions/PG1/versions/{first['version']}")
        assert (status, body["code"]) == (200, "one\x00\n")
        status, body = await server.http("GET", "/api/sessions/user/user-ann")
        assert [s["roomId"] for s in body["sessions"]] == ["PG1"]
        assert body["sessions"][0]["messageCount"] == 1
