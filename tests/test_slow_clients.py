"""Broadcasts with real clients at the edges: a recipient that stops reading, one that goes
away mid-broadcast, WebSocket and long-polling recipients in one room, a broadcast while
the server shuts down."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from app.main import SIO_KEY
from app.storage.sqlite import SqliteSessionStore
from tests.support import WAIT, Client, RawWebSocket, clients, fast_settings, running_server

ROOM = "slow-room"
CHAT = {"rate_chat_per_second": 10_000, "rate_chat_burst": 10_000}


async def stalled(url: str, room_id: str, name: str) -> RawWebSocket:
    """A WebSocket client that joins a room and then never reads its socket again (its
    receive buffer is made small, so the server's side fills up soon)."""
    client = await RawWebSocket.connect(url, receive_buffer=4096)
    await client.join(room_id, name)
    return client


async def chat(client: RawWebSocket, count: int) -> list[str]:
    """Read until `count` chat messages have come; their texts, in order."""
    texts: list[str] = []
    while len(texts) < count:
        frame = await client.receive()
        if frame.startswith('42["newMessage"'):
            texts.append(json.loads(frame[2:])[1]["message"]["message"])
    return texts


async def received_all(client: Client, count: int) -> list[str]:
    async with asyncio.timeout(WAIT * 2):
        while len(client.events["newMessage"]) < count:
            await client.quiet(0.05)
    return [m["message"]["message"] for m in client.events["newMessage"]]


async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fast_settings(
        tmp_path, slow_client_packets=20, slow_client_seconds=0.5, reconnect_grace_seconds=0.2,
        **CHAT,
    )  # fmt: skip
    async with running_server(settings) as server, clients(server.url, 2) as (typist, reader):
        await typist.join(ROOM, "Typist")
        await reader.join(ROOM, "Reader")
        stalled_client = await stalled(server.url, ROOM, "Stalled")
        await reader.next("userJoined", 1)
        try:
            # Texts of 500 KB fill the kernel's buffers towards the stalled client (a few MB)
            # and then coalesce in its queue; chat messages never do.
            for i in range(12):
                code = f"code {i}\n" + "y" * 500_000
                await typist.call("codeChange", {"roomId": ROOM, "code": code})
            sent = [f"{i:04d} " + "x" * 2000 for i in range(300)]
            for text in sent:
                await typist.emit("chatMessage", {"roomId": ROOM, "message": text})
                await asyncio.sleep(0.005)
            # Everyone but the stalled client got every message, in order, while it read nothing.
            assert await received_all(reader, len(sent)) == sent
            left = await reader.next("userLeft")  # dropped long before its ping timeout
            assert server.app[SIO_KEY].manager.slow_disconnects == 1
            assert left["userName"] == "Stalled"
            assert reader.events["codeUpdate"][-1]["code"].startswith("code 11\n")
            assert "stopped reading" in caplog.text
            # the others go on as before
            await typist.emit("chatMessage", {"roomId": ROOM, "message": "after"})
            assert (await received_all(reader, len(sent) + 1))[-1] == "after"
        finally:
            stalled_client.close()


async def test_a_reader_that_pauses_gets_everything_in_order_and_its_writer_task_ends(
    tmp_path: Path,
) -> None:
    """A connection's writer is a task only while packets wait in its queue (a reader that
    stopped reading for a while): it writes them in order once the reader reads again, then
    ends; an idle connection holds none."""
    settings = fast_settings(tmp_path, **CHAT)
    async with running_server(settings) as server, clients(server.url, 1) as (talker,):
        await talker.join(ROOM, "Talker")
        paused = await stalled(server.url, ROOM, "Paused")
        try:
            manager = server.app[SIO_KEY].manager
            before = manager.queued
            for i in range(12):  # texts of 500 KB fill the kernel's buffers towards it
                code = f"code {i}\n" + "y" * 500_000
                await talker.call("codeChange", {"roomId": ROOM, "code": code})
            sent = [f"{i:03d} " + "x" * 2000 for i in range(300)]
            for text in sent:
                await talker.emit("chatMessage", {"roomId": ROOM, "message": text})
            async with asyncio.timeout(WAIT * 2):
                # Its socket buffer is full: packets queue, and its writer waits to write them.
                while manager.queued == before or not any(
                    ws.writer is not None for ws in manager.websockets.values()
                ):
                    await talker.quiet(0.05)
            assert await chat(paused, len(sent)) == sent  # it reads again: all, in order
            async with asyncio.timeout(WAIT):
                while any(ws.writer is not None for ws in manager.websockets.values()):
                    await talker.quiet(0.05)
        finally:
            paused.close()


async def test_a_recipient_gone_mid_broadcast_costs_the_others_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = fast_settings(tmp_path, reconnect_grace_seconds=0.2, **CHAT)
    async with running_server(settings) as server, clients(server.url, 4) as everyone:
        typist, reader, leaver, other = everyone
        for i, client in enumerate(everyone):
            await client.join(ROOM, f"user{i}")
        sent = [f"message {i}" for i in range(200)]
        for i, text in enumerate(sent):
            await typist.emit("chatMessage", {"roomId": ROOM, "message": text})
            if i == 100:  # its connection breaks with broadcasts on their way to it
                leaver.sio.eio.ws._response.connection.transport.abort()
        for client in (reader, other):
            assert await received_all(client, len(sent)) == sent
        assert (await reader.next("userLeft"))["userName"] == "user2"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_websocket_and_polling_recipients_get_the_same_messages_in_order(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, **CHAT)
    async with running_server(settings) as server:
        polling = Client(transports=["polling"])
        await polling.connect(server.url)
        try:
            async with clients(server.url, 2) as (typist, websocket):
                for i, client in enumerate((typist, websocket, polling)):
                    await client.join(ROOM, f"user{i}")
                sent = [f"message {i}" for i in range(150)]
                for i, text in enumerate(sent):
                    await typist.emit("chatMessage", {"roomId": ROOM, "message": text})
                    if i % 30 == 0:
                        await typist.emit("codeChange", {"roomId": ROOM, "code": f"code {i}"})
                assert await received_all(websocket, len(sent)) == sent
                assert await received_all(polling, len(sent)) == sent
                for client in (websocket, polling):
                    async with asyncio.timeout(WAIT):
                        while client.events["codeUpdate"][-1]["code"] != "code 120":
                            await client.quiet(0.05)
        finally:
            await polling.close()
        manager = server.app[SIO_KEY].manager
        assert manager.written > 0 and manager.queued > 0  # both paths were taken


@pytest.mark.parametrize("compression", [False, True], ids=["direct", "compressed"])
async def test_the_heartbeat_keeps_clients_that_answer_and_drops_one_that_does_not(
    tmp_path: Path, compression: bool
) -> None:
    """Engine.IO's PINGs (a timer per socket) go on reaching WebSocket and long-polling
    clients, which stay connected (the Python client disconnects itself when no PING comes
    within pingInterval + pingTimeout); a client that stops answering is disconnected at
    its ping timeout, and the others are told it left."""
    settings = fast_settings(
        tmp_path,
        ping_interval_seconds=1,
        ping_timeout_seconds=1,
        reconnect_grace_seconds=0.2,
        websocket_compression=compression,  # python-engineio's own WebSocket loop
    )
    async with running_server(settings) as server:
        polling = Client(transports=["polling"])
        await polling.connect(server.url)
        silent: RawWebSocket | None = None
        try:
            async with clients(server.url, 1) as (websocket,):
                await websocket.join(ROOM, "Websocket")
                await polling.join(ROOM, "Polling")
                silent = await stalled(server.url, ROOM, "Silent")
                left = await websocket.next("userLeft", within=6)
                assert left["userName"] == "Silent"
                await asyncio.sleep(3.5)  # three more heartbeats
                assert websocket.sio.connected and polling.sio.connected
                manager = server.app[SIO_KEY].manager
                for client in (websocket, polling):
                    eio_sid = manager.eio_sid_from_sid(client.sid, "/")
                    assert manager.receipts[eio_sid].sent >= 4  # every PING counted
                await websocket.emit("chatMessage", {"roomId": ROOM, "message": "still here"})
                assert (await received_all(polling, 1)) == ["still here"]
                assert [u["userName"] for u in polling.events["userLeft"]] == ["Silent"]
        finally:
            if silent is not None:
                silent.close()
            await polling.close()


async def test_a_broadcast_during_shutdown_loses_nothing_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = fast_settings(tmp_path, **CHAT)
    acknowledged: list[dict[str, Any]] = []
    async with running_server(settings) as server:
        typist, reader = Client(), Client()
        await typist.connect(server.url)
        await reader.connect(server.url)
        await typist.join(ROOM, "Typist")
        await reader.join(ROOM, "Reader")

        async def type_until_gone() -> None:
            for i in range(10_000):
                if not typist.sio.connected:
                    return
                payload = {"roomId": ROOM, "message": f"m{i}"}
                try:
                    answer = await typist.sio.call("chatMessage", payload, timeout=1)
                except Exception:  # the server went away before it answered
                    return
                if answer.get("ok"):
                    acknowledged.append(answer)
                    if len(acknowledged) == 20:
                        typed.set()

        typed = asyncio.Event()
        typing = asyncio.ensure_future(type_until_gone())
        await asyncio.wait_for(typed.wait(), WAIT)
    # the server has stopped (every socket closed, every room written) while it was typing
    await asyncio.wait_for(typing, WAIT)
    for client in (typist, reader):
        await client.close()
    assert len(acknowledged) >= 20
    store = SqliteSessionStore(settings.data_dir / "sessions.sqlite3")
    await store.open()
    try:
        stored = {m.id for m in await store.list_messages(ROOM, before=None, limit=100_000)}
    finally:
        await store.close()
    assert {a["id"] for a in acknowledged} <= stored
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
