"""Idle rooms: written when the last client leaves, kept warm for ROOM_IDLE_SECONDS, then
unloaded; thousands of rooms joined and left leave no room, socket, timer or task behind."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from app.storage.records import SessionRecord
from tests.fakes import FlakyStore
from tests.support import Client, clients, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")
ROOM = "IDLE1"
IDLE = 0.3
ROOMS_PER_CLIENT = 250
CLIENTS = 8
ROOMS = CLIENTS * (ROOMS_PER_CLIENT + 1)  # 2,008
# Each client joins, chats and leaves as fast as the server answers: no abuse limit applies.
UNTHROTTLED = {"rate_join_per_second": 1e6, "rate_join_burst": 1e6, "rate_chat_burst": 1e6}
TASK_SLACK = 2  # Engine.IO's service task and its wait, started by the first connection


class CountingStore(FlakyStore):
    """FlakyStore (real SQLite underneath) that also counts loads per room."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.loads: list[str] = []

    async def load(self, room_id: str) -> SessionRecord | None:
        self.loads.append(room_id)
        return await super().load(room_id)


def live_tasks() -> list[asyncio.Task[object]]:
    """The loop's tasks but Engine.IO's per-socket ping loops, which outlive a closed socket
    until their ping interval (25 s) ends; the server and the test clients share the loop."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") != "AsyncSocket._send_ping"
    ]


async def wait_until(condition: object, within: float, step: float = 0.01) -> float:
    """Poll `condition()` until true; the seconds it took (AssertionError after `within`)."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > within:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


async def test_last_one_out_writes_at_once_keeps_the_room_warm_then_unloads_it(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "sessions.sqlite3")
    # Debounce and maximum delay far beyond the test: only the departure can write.
    settings = fast_settings(
        tmp_path, save_debounce_seconds=30, save_max_delay_seconds=60, room_idle_seconds=IDLE
    )
    async with running_server(settings, store) as server, clients(server.url, 1) as (ann,):
        await ann.join(ROOM, "Ann", "user-ann")
        await ann.call("codeChange", {"roomId": ROOM, "code": "typed before leaving"})
        assert store.loads == [ROOM]
        assert not any(saved.code == "typed before leaving" for saved in store.saves)

        await ann.call("leaveRoom", {"roomId": ROOM})
        await wait_until(lambda: any(s.code == "typed before leaving" for s in store.saves), 0.5)
        assert ROOM in server.rooms.rooms

        # Back within the idle delay: the room is still in memory, nothing is loaded.
        await asyncio.sleep(IDLE / 3)
        assert ROOM in server.rooms.rooms
        back = await ann.join(ROOM, "Ann", "user-ann")
        assert back["code"] == "typed before leaving"
        assert store.loads == [ROOM]
        await asyncio.sleep(IDLE)  # a member holds the room however long it stays
        assert ROOM in server.rooms.rooms

        await ann.call("leaveRoom", {"roomId": ROOM})
        left_at = time.monotonic()
        await asyncio.sleep(IDLE / 2)
        assert ROOM in server.rooms.rooms
        await wait_until(lambda: ROOM not in server.rooms.rooms, IDLE + 1)
        assert time.monotonic() - left_at >= IDLE - 0.02
        assert server.rooms.counts() == {
            "rooms": 0,
            "sockets": 0,
            "unload_timers": 0,
            "grace_timers": 0,
            "call_timers": 0,
            "loading": 0,
            "pending_writes": 0,
        }

        # Unloaded: the next join loads it from the store, as it was written.
        again = await ann.join(ROOM, "Ann", "user-ann")
        assert again["code"] == "typed before leaving"
        assert store.loads == [ROOM, ROOM]


async def test_thousands_of_rooms_joined_and_left_leave_nothing_behind(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "sessions.sqlite3")
    grace = 0.2
    settings = fast_settings(
        tmp_path,
        room_idle_seconds=IDLE,
        reconnect_grace_seconds=grace,
        save_debounce_seconds=0.05,
        save_max_delay_seconds=0.3,
        **UNTHROTTLED,
    )
    async with running_server(settings, store) as server:
        await asyncio.sleep(0.05)
        baseline = len(live_tasks())  # the test's own and the server's
        made = [await Client().connect(server.url) for _ in range(CLIENTS)]
        try:

            async def roam(number: int, client: Client) -> None:
                for index in range(ROOMS_PER_CLIENT):
                    room_id = f"ROAM{number}-{index}"
                    joined = await client.join(room_id, f"client {number}", f"user-{number}")
                    assert joined["ok"] is True, joined
                    if index % 3 == 0:
                        said = await client.call(
                            "chatMessage", {"roomId": room_id, "message": f"hello {index}"}
                        )
                        assert said["ok"] is True, said
                    if index % 2 == 0:  # else the next join leaves this room
                        left = await client.call("leaveRoom", {"roomId": room_id})
                        assert left == {"ok": True}
                # The last room of every other client is left by a dropped transport (the
                # reconnect grace runs out), of the others by leaving deliberately.
                await client.join(f"LAST{number}", f"client {number}", f"user-{number}")
                if number % 2:
                    await client.sio.eio.ws.close()
                else:
                    await client.call("leaveRoom", {"roomId": f"LAST{number}"})

            await asyncio.gather(*(roam(n, c) for n, c in enumerate(made)))
            assert len(store.loads) == ROOMS

            def drained() -> bool:
                return all(value == 0 for value in server.counts().values())

            await wait_until(drained, IDLE + grace + 10, step=0.05)
        finally:
            for client in made:
                await client.close()
        # With the clients gone, the loop holds what it held before they came.
        try:
            slack = TASK_SLACK * len(server.apps)
            await wait_until(lambda: len(live_tasks()) <= baseline + slack, 5)
        except AssertionError:
            raise AssertionError((baseline, live_tasks())) from None
        # Every room reached the store (its chat too) before it was unloaded.
        assert len({saved.room_id for saved in store.saves}) == ROOMS
        stored = await store.inner.load("ROAM7-249")
        assert stored is not None
        messages = await store.inner.list_messages("ROAM7-249", before=None, limit=10)
        assert [m.message for m in messages] == ["hello 249"]
