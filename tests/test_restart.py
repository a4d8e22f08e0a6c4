"""A server stopped right after a change serves that change after a restart, on both stores."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import server_process
from tests.support import Client

pytest_plugins = ("tests.store_backends",)
ROOM = "RESTART1"


@pytest.fixture(params=["sqlite", "nx27017"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        # Long delays: only the shutdown flush can have written the last change.
        "SAVE_DEBOUNCE_SECONDS": "30",
        "SAVE_MAX_DELAY_SECONDS": "60",
    }
    if request.param == "nx27017":
        env["MONGODB_URI"] = request.getfixturevalue("nx_27017_uri")
        env["MONGODB_DB"] = f"restart_{tmp_path.name}"[:60]
    return env


def edit(kind: str, n: int) -> tuple[str, dict[str, object]]:
    if kind == "code":
        return "codeChange", {"roomId": ROOM, "code": f"edit {n}"}
    file_id = "main.js" if kind == "main-file" else "notes.md"
    return "changeFile", {"roomId": ROOM, "fileId": file_id, "content": f"edit {n}", "version": n}


@pytest.mark.parametrize("kind", ["code", "main-file", "other-file"])
async def test_sigterm_right_after_a_change_loses_nothing(
    store_env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    log = tmp_path / "server.log"
    with server_process(store_env, log) as server:
        alice = await Client().connect(server.url)
        await alice.join(ROOM, "alice", "user-1")
        await alice.call("chatMessage", {"roomId": ROOM, "message": "before the stop"})
        for n in range(1, 6):
            answer = await alice.call(*edit(kind, n))
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0, server.log()
        await alice.close()
    with server_process(store_env, log) as server:
        status, body = await _get(server.url + f"/api/sessions/{ROOM}")
        assert status == 200, body
        session: dict[str, Any] = body["session"]
        files = {f["fileId"]: f["content"] for f in session["files"]}
        if kind == "other-file":
            assert files == {"notes.md": "edit 5"}
            assert session["code"] != "edit 5"
        else:
            assert session["code"] == "edit 5"
            assert files == ({"main.js": "edit 5"} if kind == "main-file" else {})
        assert session["version"] == answer["version"]
        assert [m["message"] for m in session["messages"]] == ["before the stop"]
        assert [p["userId"] for p in session["participants"]] == ["user-1"]
        rejoined = await Client().connect(server.url)
        joined = await rejoined.join(ROOM, "alice", "user-1")
        assert joined["code"] == session["code"]
        await rejoined.close()


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()
