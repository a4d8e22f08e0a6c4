"""Both transports carry every legal event, up to the size limits, with multi-byte text.

Over long-polling an event travels in one HTTP POST body, a few hundred KB to a few MB once
the client has JSON-escaped its text (python-socketio's client escapes every non-ASCII
character, an emoji as 12 bytes); the server must read each body whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.storage.records import MAIN_FILE_ID
from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")

ROOM = "POLL"
MIB = 1024 * 1024
TRANSPORTS = [pytest.param(["polling"], id="polling"), pytest.param(["websocket"], id="websocket")]
TEXTS = [
    pytest.param("x" * MIB, id="1MiB-ascii"),
    pytest.param("\U0001f600" * (MIB // 4), id="262144-emoji"),
    pytest.param("\u00e9" * (MIB // 2), id="524288-2-byte"),
    pytest.param("a" * 300_000, id="300000-ascii"),
    pytest.param("\u4e2d" * 64_000, id="64000-cjk"),
    pytest.param("\U0001f680" * 32_000, id="32000-emoji"),
]


@asynccontextmanager
async def pair(
    tmp_path: Path, transports: list[str]
) -> AsyncIterator[tuple[RunningServer, Client, Client]]:
    """A sender on `transports` and a websocket receiver in one room."""
    settings = fast_settings(tmp_path, rate_upload_per_second=100, rate_upload_burst=100)
    async with running_server(settings) as server:
        sender, receiver = Client(transports), Client(["websocket"])
        try:
            await sender.connect(server.url)
            await receiver.connect(server.url)
            assert (await sender.join(ROOM, "Sender", "u-sender"))["ok"]
            assert (await receiver.join(ROOM, "Receiver", "u-receiver"))["ok"]
            yield server, sender, receiver
        finally:
            await receiver.close()
            await sender.close()


async def stored_session(server: RunningServer) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{ROOM}")
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


@pytest.mark.parametrize("transports", TRANSPORTS)
@pytest.mark.parametrize("text", TEXTS)
async def test_a_code_change_at_the_limits_arrives_intact(
    tmp_path: Path, transports: list[str], text: str
) -> None:
    async with pair(tmp_path, transports) as (server, sender, receiver):
        answer = await sender.call("codeChange", {"roomId": ROOM, "code": text})
        assert answer["ok"] is True, answer
        update = await receiver.next("codeUpdate")
        assert update["code"] == text
        assert (await stored_session(server))["code"] == text


@pytest.mark.parametrize("transports", TRANSPORTS)
@pytest.mark.parametrize("text", TEXTS[:3])
async def test_a_file_change_and_an_upload_at_the_limits_arrive_intact(
    tmp_path: Path, transports: list[str], text: str
) -> None:
    async with pair(tmp_path, transports) as (server, sender, receiver):
        change = {"roomId": ROOM, "fileId": MAIN_FILE_ID, "content": text, "version": 1}
        assert (await sender.call("changeFile", change))["ok"] is True
        assert (await receiver.next("fileContentUpdate"))["content"] == text
        upload = {"roomId": ROOM, "fileId": "big.txt", "name": "big.txt", "content": text}
        assert (await sender.call("uploadFile", upload))["ok"] is True
        snapshot = await receiver.next("fileContentSnapshot")
        assert (snapshot["fileId"], snapshot["content"]) == ("big.txt", text)
        files = {f["fileId"]: f["content"] for f in (await stored_session(server))["files"]}
        assert files == {MAIN_FILE_ID: text, "big.txt": text}


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_a_whiteboard_snapshot_and_a_chat_message_at_their_limits_arrive_intact(
    tmp_path: Path, transports: list[str]
) -> None:
    async with pair(tmp_path, transports) as (server, sender, receiver):
        # A JSON snapshot of just under 1 MiB serialized, mostly multi-byte text.
        snapshot = {"shape:1": {"text": "\u00e9" * (MIB // 2 - 64)}}
        assert (await sender.call("whiteboardChange", {"roomId": ROOM, "snapshot": snapshot}))["ok"]
        assert (await receiver.next("whiteboardUpdate"))["snapshot"] == snapshot
        message = "\U0001f600" * 4000
        answer = await sender.call("chatMessage", {"roomId": ROOM, "message": message})
        assert answer["ok"] is True
        assert (await receiver.next("newMessage"))["message"]["message"] == message
        session = await stored_session(server)
        assert session["whiteboardElements"] == snapshot
        assert session["messages"][-1]["message"] == message


async def test_a_long_polling_post_of_many_packets_delivers_every_one(tmp_path: Path) -> None:
    """A browser's POST carries every packet queued since the last one: 40 cursor moves in
    one body all arrive (python-engineio's default drops more than 16, silently)."""
    settings = fast_settings(tmp_path, rate_cursor_per_second=1000, rate_cursor_burst=1000)
    async with running_server(settings) as server:
        watcher = Client(["websocket"])
        await watcher.connect(server.urls[0])
        try:
            assert (await watcher.join(ROOM, "Watcher", "u-watcher"))["ok"]
            base = server.urls[0] + "/socket.io/?EIO=4&transport=polling"
            async with aiohttp.ClientSession() as http:
                async with http.get(base) as answer:
                    sid = json.loads((await answer.text())[1:])["sid"]
                url = f"{base}&sid={sid}"

                async def post(*packets: str) -> None:
                    async with http.post(url, data="\x1e".join(packets)) as answer:
                        assert answer.status == 200, await answer.text()

                await post("40")
                async with http.get(url) as answer:
                    assert (await answer.text()).startswith("40")
                join = {"roomId": ROOM, "userName": "Poller", "userId": None}
                await post("42" + json.dumps(["joinRoom", join]))
                await watcher.next("userJoined")
                moves = [
                    "42" + json.dumps(["cursorMove", {"roomId": ROOM, "position": n}])
                    for n in range(40)
                ]
                await post(*moves)
                await watcher.next("cursorUpdate", 40)
                assert [u["position"] for u in watcher.events["cursorUpdate"]] == list(range(40))
                await post("41")
        finally:
            await watcher.close()
