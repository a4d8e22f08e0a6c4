"""Export a whole session (JSON, or a ZIP with the texts as files) and import it as a new
one: a round trip changes only ids and times; the import is a live session like any."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")
ROOM = "EXP1"
VOLATILE = {"roomId", "createdAt", "exportedAt"}


async def make_session(server: RunningServer) -> None:
    ann = await Client().connect(server.url)
    bob = await Client().connect(server.url)
    try:
        assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
        assert (await bob.join(ROOM, "Bob", None))["ok"]
        await ann.call("codeChange", {"roomId": ROOM, "code": "first draft\n"})
        made = await ann.call("createCheckpoint", {"roomId": ROOM, "name": "Draft"})
        assert made["ok"] is True
        await ann.call("codeChange", {"roomId": ROOM, "code": "print('final')\n"})
        await ann.call("languageChange", {"roomId": ROOM, "language": "python"})
        await ann.call("chatMessage", {"roomId": ROOM, "message": "hello"})
        await bob.call("chatMessage", {"roomId": ROOM, "message": "hi ü 😀"})
        await ann.call("whiteboardChange", {"roomId": ROOM, "snapshot": {"shapes": [1, 2]}})
        status, _ = await server.http(
            "POST",
            f"/api/sessions/{ROOM}/files",
            json={"fileId": "notes.md", "name": "notes.md", "content": "# notes\n"},
        )
        assert status == 200
    finally:
        await ann.close()
        await bob.close()


async def export(server: RunningServer, room_id: str) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{room_id}/export")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def stable(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in VOLATILE}


async def test_a_json_round_trip_changes_only_ids_and_times(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        await make_session(server)
        first = await export(server, ROOM)
        assert first["code"] == "print('final')\n" and first["language"] == "python"
        assert [m["message"] for m in first["messages"]] == ["hello", "hi ü 😀"]
        assert {f["fileId"] for f in first["files"]} == {"notes.md"}
        assert first["whiteboardElements"] == {"shapes": [1, 2]}
        (draft,) = first["checkpoints"]
        assert (draft["name"], draft["texts"]["main.js"]) == ("Draft", "first draft\n")
        assert draft["language"] == "javascript"

        status, body = await server.http("POST", "/api/sessions/import", json=first)
        assert status == 201, body
        copy = body["roomId"]
        assert copy != ROOM
        second = await export(server, copy)
        assert stable(second) == stable(first)

        # The copy is a session like any: joined, its checkpoint restored.
        client = await Client().connect(server.url)
        try:
            joined = await client.join(copy, "Cy")
            assert (joined["code"], joined["language"]) == ("print('final')\n", "python")
        finally:
            await client.close()
        status, body = await server.http("GET", f"/api/sessions/{copy}/history")
        checkpoint = body["checkpoints"][0]
        status, body = await server.http(
            "POST", f"/api/sessions/{copy}/restore", json={"checkpointId": checkpoint["id"]}
        )
        assert status == 200, body
        status, body = await server.http("GET", f"/api/sessions/{copy}")
        assert body["session"]["code"] == "first draft\n"


async def test_a_zip_holds_the_texts_and_imports_back(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        await make_session(server)
        first = await export(server, ROOM)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.url}/api/sessions/{ROOM}/export?format=zip") as response,
        ):
            assert response.status == 200
            assert response.content_type == "application/zip"
            archive = await response.read()
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            assert opened.read("files/main.js").decode() == "print('final')\n"
            assert opened.read("files/notes.md").decode() == "# notes\n"
            assert "session.json" in opened.namelist()
        status, body = await server.http(
            "POST",
            "/api/sessions/import?roomId=FROMZIP",
            data=archive,
            headers={"Content-Type": "application/zip"},
        )
        assert status == 201 and body["roomId"] == "FROMZIP", body
        assert stable(await export(server, "FROMZIP")) == stable(first)


async def test_bad_imports_are_refused_and_make_nothing(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        await make_session(server)
        document = await export(server, ROOM)
        status, body = await server.http(
            "POST", f"/api/sessions/import?roomId={ROOM}", json=document
        )
        assert status == 400 and body["error"] == "Session already exists"
        for bad in (
            {**document, "format": "something-else"},
            {**document, "code": 5},
            {**document, "messages": [{"id": "x"}]},
            {**document, "files": [{"fileId": "", "name": "x"}]},
        ):
            status, body = await server.http("POST", "/api/sessions/import?roomId=BAD1", json=bad)
            assert status == 400, body
        status, body = await server.http(
            "POST",
            "/api/sessions/import?roomId=BAD1",
            data=b"not a zip",
            headers={"Content-Type": "application/zip"},
        )
        assert status == 400, body
        status, _ = await server.http("GET", "/api/sessions/BAD1")
        assert status == 404
