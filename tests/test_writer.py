"""The debounced writer, seen through a real server: how often it writes and that it never loses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes import FlakyStore
from tests.support import Client, clients, fast_settings, running_server

ROOM = "WRITER01"


async def code(client: Client, text: str) -> dict[str, object]:
    answer: dict[str, object] = await client.call("codeChange", {"roomId": ROOM, "code": text})
    return answer


@pytest.fixture
def store(tmp_path: Path) -> FlakyStore:
    return FlakyStore(tmp_path / "sessions.sqlite3")


async def test_a_burst_of_changes_is_written_once(tmp_path: Path, store: FlakyStore) -> None:
    settings = fast_settings(tmp_path, save_debounce_seconds=0.3, save_max_delay_seconds=5)
    async with running_server(settings, store) as server, clients(server.url, 1) as (alice,):
        await alice.join(ROOM, "alice")
        await alice.next("sessionSaved")  # the join itself is persisted
        before = len(store.saves)
        for n in range(30):
            await code(alice, f"text {n}")
        saved = await alice.next("sessionSaved", count=2)
        await alice.quiet(0.5)
        assert len(store.saves) - before == 1
        assert saved["version"] == 30
        stored = await store.inner.load(ROOM)
        assert stored is not None and stored.code == "text 29"


async def test_continuous_typing_is_written_at_least_every_max_delay(
    tmp_path: Path, store: FlakyStore
) -> None:
    settings = fast_settings(tmp_path, save_debounce_seconds=0.2, save_max_delay_seconds=0.4)
    async with running_server(settings, store) as server, clients(server.url, 1) as (alice,):
        await alice.join(ROOM, "alice")
        await alice.next("sessionSaved")
        before = len(store.saves)
        loop = asyncio.get_running_loop()
        started = loop.time()
        keystrokes = 0
        while loop.time() - started < 2.0:  # never quiet for the debounce delay
            keystrokes += 1
            await code(alice, "x" * keystrokes)
            await asyncio.sleep(0.05)
        writes = len(store.saves) - before
        # 2 s of typing with a 0.4 s maximum delay: about 5 writes, never one per keystroke.
        assert 3 <= writes <= 7, writes
        assert keystrokes > 4 * writes


async def test_last_client_leaving_writes_at_once(tmp_path: Path, store: FlakyStore) -> None:
    settings = fast_settings(tmp_path, save_debounce_seconds=30, save_max_delay_seconds=60)
    async with running_server(settings, store) as server, clients(server.url, 2) as (a, b):
        await a.join(ROOM, "alice")
        await b.join(ROOM, "bob")
        await code(a, "typed just before leaving")
        await a.call("leaveRoom", {"roomId": ROOM})
        await asyncio.sleep(0.3)
        assert not any(s.code == "typed just before leaving" for s in store.saves)
        await b.call("leaveRoom", {"roomId": ROOM})
        for _ in range(250):  # "at once": well under the 30 s debounce, even on a busy machine
            if any(s.code == "typed just before leaving" for s in store.saves):
                break
            await asyncio.sleep(0.02)
        stored = await store.inner.load(ROOM)
        assert stored is not None and stored.code == "typed just before leaving"


async def test_saved_signal_reaches_the_whole_room_with_the_durable_version(
    tmp_path: Path, store: FlakyStore
) -> None:
    settings = fast_settings(tmp_path)
    async with running_server(settings, store) as server, clients(server.url, 2) as (a, b):
        await a.join(ROOM, "alice")
        await b.join(ROOM, "bob")
        answer = await code(a, "saved soon")
        for client in (a, b):
            for n in range(1, 10):
                saved = await client.next("sessionSaved", count=n)
                if saved["version"] >= answer["version"]:
                    break
            assert saved["roomId"] == ROOM
            assert saved["version"] == answer["version"]
            assert saved["savedAt"].endswith("Z")


async def test_store_outage_loses_nothing_and_converges(tmp_path: Path, store: FlakyStore) -> None:
    settings = fast_settings(tmp_path, chat_store_timeout_seconds=0.2)
    async with running_server(settings, store) as server, clients(server.url, 2) as (a, b):
        await a.join(ROOM, "alice")
        await b.join(ROOM, "bob")
        await a.next("sessionSaved")
        store.failing = True
        await code(a, "typed during the outage")
        await a.call("chatMessage", {"roomId": ROOM, "message": "said during the outage"})
        # Collaboration goes on: the chat is broadcast after the bounded wait.
        relayed = await b.next("newMessage")
        assert relayed["message"]["message"] == "said during the outage"
        await asyncio.sleep(0.5)
        store.failing = False
        for _ in range(100):
            stored = await store.inner.load(ROOM)
            if stored and stored.code == "typed during the outage":
                break
            await asyncio.sleep(0.05)
        assert stored is not None and stored.code == "typed during the outage"
        messages = await store.inner.list_messages(ROOM, before=None, limit=10)
        assert [m.message for m in messages] == ["said during the outage"]


async def test_shutdown_flushes_pending_changes(tmp_path: Path, store: FlakyStore) -> None:
    settings = fast_settings(tmp_path, save_debounce_seconds=30, save_max_delay_seconds=60)
    async with running_server(settings, store) as server:
        alice = await Client().connect(server.url)
        await alice.join(ROOM, "alice")
        await code(alice, "pending when the server stops")
    # running_server's exit ran the app's shutdown; the store is closed, read the file again.
    reopened = FlakyStore(tmp_path / "sessions.sqlite3")
    await reopened.open()
    stored = await reopened.load(ROOM)
    await reopened.close()
    assert stored is not None and stored.code == "pending when the server stops"


async def test_a_change_after_the_writer_closed_starts_no_write_on_the_closing_store(
    tmp_path: Path, store: FlakyStore
) -> None:
    """At shutdown the writer closes, then the store: a change that still arrives in
    between (in cluster mode, another process's, applied from the room's log) must not
    start a write that would run against the closed store."""
    settings = fast_settings(tmp_path, save_debounce_seconds=0.05, save_max_delay_seconds=0.1)
    async with running_server(settings, store) as server:
        alice = await Client().connect(server.url)
        await alice.join(ROOM, "alice")
        await code(alice, "written before the shutdown")
        assert await server.writer.flush(server.rooms.rooms[ROOM], within=5)
        room = server.rooms.rooms[ROOM]
        await alice.close()
        await server.writer.close()
        room.changes += 1  # a change applied after the writer closed
        server.writer.changed(room)
        assert server.writer.pending_rooms() == 0
        assert await server.writer.flush(room, within=1) is False
