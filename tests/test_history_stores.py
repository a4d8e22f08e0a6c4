"""History, checkpoints, restore, export and import and the user's context through a real
server, on every store (SQLite, MongoDB in-process and over the wire, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import Client, fast_settings, running_server

pytest_plugins = ("tests.store_backends",)
ROOM = "STORES1"


class Borrowed:
    """The test's store, lent to a server: the fixture that opened it closes it."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.remote = store.remote

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def close(self) -> None: ...


async def test_going_back_in_time_works_on_every_store(tmp_path: Path, store: Any) -> None:
    async with running_server(fast_settings(tmp_path), Borrowed(store)) as server:
        ann = await Client().connect(server.url)
        try:
            assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
            versions = []
            for text in ("one\n", "one\ntwo\n", "one\ntwo\nthree\n"):
                answer = await ann.call("codeChange", {"roomId": ROOM, "code": text})
                versions.append(answer["version"])
            await ann.call("languageChange", {"roomId": ROOM, "language": "go"})
            await ann.call("chatMessage", {"roomId": ROOM, "message": "saved?"})
            made = await ann.call("createCheckpoint", {"roomId": ROOM, "name": "three lines"})
            assert made["ok"] is True, made
        finally:
            await ann.close()
        assert await server.flush(ROOM)

        status, body = await server.http("GET", f"/api/sessions/{ROOM}/history")
        assert status == 200, body
        assert [c["version"] for c in body["versions"] if c["kind"] == "text"] == versions[::-1]
        assert body["checkpoints"][0]["name"] == "three lines"
        status, body = await server.http("GET", f"/api/sessions/{ROOM}/versions/{versions[0]}")
        assert (body["code"], body["language"]) == ("one\n", "javascript")
        status, body = await server.http(
            "GET", f"/api/sessions/{ROOM}/diff?from={versions[0]}&to={versions[2]}"
        )
        assert "+two\n" in body["diff"] and "+three\n" in body["diff"]
        status, body = await server.http(
            "POST", f"/api/sessions/{ROOM}/restore", json={"version": versions[0]}
        )
        assert status == 200, body
        status, body = await server.http("GET", f"/api/sessions/{ROOM}")
        assert (body["session"]["code"], body["session"]["language"]) == ("one\n", "javascript")

        status, exported = await server.http("GET", f"/api/sessions/{ROOM}/export")
        assert status == 200, exported
        status, body = await server.http("POST", "/api/sessions/import", json=exported)
        assert status == 201, body
        status, again = await server.http("GET", f"/api/sessions/{body['roomId']}/export")
        volatile = {"roomId", "createdAt", "exportedAt"}
        assert {k: v for k, v in again.items() if k not in volatile} == {
            k: v for k, v in exported.items() if k not in volatile
        }

        status, body = await server.http("PUT", "/api/users/user-ann/context", json={"a": [1]})
        assert status == 200 and body["revision"] == 1
        status, body = await server.http("GET", "/api/users/user-ann/context")
        assert body["context"] == {"a": [1]}
