"""app/broadcast.py: direct writes keep each recipient's order; only code updates coalesce."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.main import SIO_KEY
from app.transport import broadcast
from app.transport.broadcast import BroadcastManager, _RoomPacket, text_frame
from app.transport.queues import PacketQueue
from tests.support import (
    WAIT,
    Client,
    RawWebSocket,
    RunningServer,
    clients,
    fast_settings,
    running_server,
)


class FakeWebSocket:
    def __init__(self, accept: bool = True) -> None:
        self.frames: list[bytes] = []
        self.accept = accept

    def write_now(self, frame: bytes) -> bool:
        if self.accept:
            self.frames.append(frame)
        return self.accept


def fake_manager(**sockets: Any) -> BroadcastManager:
    manager = BroadcastManager()
    manager.server = SimpleNamespace(eio=SimpleNamespace(sockets=sockets, ping_timeout=20))
    return manager


def fake_socket() -> Any:
    return SimpleNamespace(
        queue=PacketQueue(),
        closed=False,
        closing=False,
        upgraded=True,
        upgrading=False,
        last_ping=None,
    )


def code_packet(room: str, text: str) -> _RoomPacket:
    # data is an encoded Socket.IO EVENT packet (type 2), as BroadcastManager.emit makes it
    return _RoomPacket(f'2["codeUpdate",{{"code":"{text}"}}]', ("/", room, "codeUpdate"))


def queued(socket: Any) -> list[Any]:
    return list(socket.queue.pending or ())


def test_text_frame_headers() -> None:
    assert text_frame(b"x" * 125)[:2] == bytes([0x81, 125])
    assert text_frame(b"x" * 126)[:4] == bytes([0x81, 126]) + struct.pack("!H", 126)
    assert text_frame(b"x" * 65536)[:10] == bytes([0x81, 127]) + struct.pack("!Q", 65536)
    assert text_frame(b"abc")[2:] == b"abc"


async def test_idle_writer_gets_the_frame_written_directly() -> None:
    socket = fake_socket()
    manager = fake_manager(e1=socket)
    ws = FakeWebSocket()
    manager.websockets["e1"] = ws  # type: ignore[assignment]
    waiting = asyncio.ensure_future(socket.queue.get())  # the Engine.IO writer, idle
    await asyncio.sleep(0)
    pkt = code_packet("r", "a")
    manager.deliver(pkt, ["e1"])
    assert ws.frames == [text_frame(b'42["codeUpdate",{"code":"a"}]')]
    assert queued(socket) == []
    assert manager.written == 1
    waiting.cancel()


async def test_a_packet_taken_but_not_written_is_never_overtaken() -> None:
    socket = fake_socket()
    manager = fake_manager(e1=socket)
    ws = FakeWebSocket()
    manager.websockets["e1"] = ws  # type: ignore[assignment]
    waiting = asyncio.ensure_future(socket.queue.get())
    await asyncio.sleep(0)
    socket.queue.put_nowait("ack")  # wakes the writer, which has not run yet
    manager.deliver(code_packet("r", "a"), ["e1"])
    assert ws.frames == []
    assert queued(socket)[-1].data.startswith('2["codeUpdate"')
    waiting.cancel()


async def test_backed_up_socket_falls_back_to_its_queue() -> None:
    socket = fake_socket()
    manager = fake_manager(e1=socket)
    manager.websockets["e1"] = FakeWebSocket(accept=False)  # type: ignore[assignment]
    waiting = asyncio.ensure_future(socket.queue.get())
    await asyncio.sleep(0)
    manager.deliver(code_packet("r", "a"), ["e1"])
    await asyncio.sleep(0)
    assert waiting.done() and waiting.result().data.startswith('2["codeUpdate"')


async def test_only_a_trailing_code_update_of_the_same_room_is_superseded() -> None:
    socket = fake_socket()
    manager = fake_manager(e1=socket)  # no WebSocket: every delivery is queued
    manager.deliver(code_packet("r", "v1"), ["e1"])
    manager.deliver(code_packet("r", "v2"), ["e1"])
    assert [p.data for p in queued(socket)] == ['2["codeUpdate",{"code":"v2"}]']
    chat = _RoomPacket('2["newMessage",{}]', None)
    manager.deliver(chat, ["e1"])
    manager.deliver(code_packet("r", "v3"), ["e1"])  # chat in between: nothing replaced
    manager.deliver(code_packet("other", "w1"), ["e1"])  # another room: appended
    assert [p.data for p in queued(socket)] == [
        '2["codeUpdate",{"code":"v2"}]',
        '2["newMessage",{}]',
        '2["codeUpdate",{"code":"v3"}]',
        '2["codeUpdate",{"code":"w1"}]',
    ]
    assert manager.coalesced == 1


async def test_a_newer_text_supersedes_a_queued_one_behind_its_probes() -> None:
    """Every text is followed by a probe: a reader that fell behind would otherwise keep
    every full text queued."""
    socket = fake_socket()
    manager = fake_manager(e1=socket)
    for text in ("v1", "v2", "v3"):
        manager.deliver(code_packet("r", text), ["e1"])
        manager.deliver(manager._probe, ["e1"])
    kinds = [(p.packet_type, p.data) for p in queued(socket)]
    assert kinds == [(4, '2["codeUpdate",{"code":"v3"}]'), (2, None), (2, None), (2, None)]
    assert manager.coalesced == 2


async def test_closed_sockets_get_nothing() -> None:
    socket = fake_socket()
    socket.closed = True
    manager = fake_manager(e1=socket)
    manager.deliver(code_packet("r", "a"), ["e1", "missing"])
    assert queued(socket) == []


@pytest.mark.usefixtures("each_mode")
async def test_every_receiver_ends_on_the_newest_text_in_order(server: RunningServer) -> None:
    """WebSocket readers take the direct path, the polling reader the queue; an acknowledged
    request in between puts packets on a queue too. Versions only ever grow (updates a slow
    reader had not taken yet may be superseded) and everyone ends on the newest text."""
    polling = Client(transports=["polling"])
    await polling.connect(server.url)
    try:
        async with clients(server.url, 3) as (typist, reader, asker):
            for i, client in enumerate((typist, reader, asker, polling)):
                await client.join("bcast", f"user{i}")
            for i in range(30):
                await typist.emit("codeChange", {"roomId": "bcast", "code": f"text {i}"})
                if i % 10 == 0:
                    assert (await asker.call("requestCodeState", {"roomId": "bcast"}))["ok"]
            for client in (reader, asker, polling):
                async with asyncio.timeout(WAIT):
                    while not client.events["codeUpdate"] or (
                        client.events["codeUpdate"][-1]["code"] != "text 29"
                    ):
                        await client.quiet(0.05)
                versions = [u["version"] for u in client.events["codeUpdate"]]
                assert versions == sorted(set(versions))
    finally:
        await polling.close()
    assert sum(app[SIO_KEY].manager.written for app in server.apps) > 0


async def test_a_client_gone_mid_handshake_leaves_no_error_and_no_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A browser that reloads while its WebSocket handshake is answered resets the TCP
    connection: no error is logged and no Engine.IO socket is left waiting for its ping
    timeout."""
    import base64
    import os
    import socket
    from urllib.parse import urlsplit

    async with running_server(fast_settings(tmp_path)) as server:
        address = urlsplit(server.url)
        for _ in range(5):
            raw = socket.create_connection((address.hostname, address.port))
            key = base64.b64encode(os.urandom(16)).decode()
            raw.sendall(
                (
                    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                    f"Host: {address.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()  # RST at once
        await asyncio.sleep(0.5)
        status, _ = await server.http("GET", "/api/health")
        assert status == 200
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        for _ in range(20):
            if not server.app[SIO_KEY].eio.sockets:
                break
            await asyncio.sleep(0.05)
        assert server.app[SIO_KEY].eio.sockets == {}


async def until(client: RawWebSocket, wanted: Callable[[str], bool]) -> str:
    """Read until a message is `wanted`, answering heartbeat PINGs on the way."""
    async with asyncio.timeout(WAIT):
        while True:
            text = await client.receive()
            if text == "2":
                client.send("3")
            elif wanted(text):
                return text


def test_pongs_are_taken_where_they_are_parsed_with_this_aiohttp() -> None:
    """The installed aiohttp's WebSocket internals are those `OpenedWebSocket` replaces
    (else it falls back to aiohttp's own queue, and every PONG wakes the loop again)."""
    assert broadcast.PARSED_QUEUE, "aiohttp changed: see OpenedWebSocket._post_start"


@pytest.mark.parametrize("parsed_queue", [True, False], ids=["parsed-queue", "aiohttp-queue"])
async def test_a_change_sent_before_the_answer_to_a_probe_is_merged_as_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parsed_queue: bool
) -> None:
    """An unchanged editor is sent a text and the probe (PING) behind it; it had typed on
    the text before, and its change and the PONG reach the server in one TCP segment, the
    change first. PONGs are counted as the stream is parsed, ahead of the connection's
    loop: the change must still count as typed before that text arrived, so both edits are
    kept (read as typed on the newer text, it would delete what the other typist added)."""
    monkeypatch.setattr(broadcast, "PARSED_QUEUE", parsed_queue and broadcast.PARSED_QUEUE)
    async with running_server(fast_settings(tmp_path)) as server:
        typist = Client()
        await typist.connect(server.url)
        await typist.join("probes", "typist")
        raw = await RawWebSocket.connect(server.url)
        try:
            await raw.join("probes", "raw")
            await typist.emit("codeChange", {"roomId": "probes", "code": "hello"})
            await until(raw, lambda t: t.startswith('42["codeUpdate"') and '"hello"' in t)
            assert await raw.receive() == "2"  # the probe right behind the text
            raw.send("3")  # it has seen "hello"
            await asyncio.sleep(0.2)
            await typist.emit("codeChange", {"roomId": "probes", "code": "hello world"})
            await until(raw, lambda t: t.startswith('42["codeUpdate"') and "hello world" in t)
            assert await raw.receive() == "2"  # the probe right behind the text
            # Typed on "hello" before the update was shown; then the update, then the PONG.
            change = '42["codeChange",{"roomId":"probes","code":"hello!"}]'
            raw.send(change, "3")
            async with asyncio.timeout(WAIT):
                while True:
                    await asyncio.sleep(0.05)
                    room = server.rooms.rooms.get("probes")
                    if room is not None and "!" in room.code:
                        break
            assert "world" in room.code and "!" in room.code, room.code
        finally:
            raw.close()
            await typist.close()
