"""Presence as people see it: a reload never shows a phantom user, over either transport.

A reload closes the page's socket without a word (the websocket closes; a long-poll request
is aborted) and a new socket of the same person joins a moment later.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import Client, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")  # one process, and a cluster of two

ROOM = "RELOAD"
GRACE = 1.0
PRESENCE = ("roomUsers", "userJoined", "userLeft")


async def vanish(client: Client) -> None:
    """The page goes away: its transport closes, no Engine.IO or Socket.IO goodbye."""
    if client.sio.eio.current_transport == "websocket":
        await client.sio.eio.ws.close()
    else:
        await client.sio.eio.http.close()  # aborts the pending long-poll request


def sid(client: Client) -> str:
    return str(client.sio.get_sid("/"))


def entries(users: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(user["name"], user["id"]) for user in users]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("user_id", [None, "user-bob"], ids=["guest", "signed-in"])
async def test_a_reload_shows_one_entry_for_the_person_within_two_seconds(
    tmp_path: Path, transport: str, user_id: str | None
) -> None:
    settings = fast_settings(tmp_path, reconnect_grace_seconds=GRACE)
    ann, bob = Client(["websocket"]), Client([transport])
    reloaded = Client([transport])
    try:
        async with running_server(settings) as server:
            await ann.connect(server.url)
            await bob.connect(server.url)
            await ann.join(ROOM, "Ann", "user-ann")
            await bob.join(ROOM, "Bob", user_id)
            await ann.next("userJoined")
            mark = len(ann.order)

            await vanish(bob)
            await asyncio.sleep(0.2)  # the new page loads
            await reloaded.connect(server.url)
            await reloaded.join(ROOM, "Bob", user_id)
            joined_at = time.monotonic()

            expected = [("Ann", sid(ann)), ("Bob", sid(reloaded))]
            while entries(ann.events["roomUsers"][-1]) != expected:
                assert time.monotonic() - joined_at < 2.0, ann.events["roomUsers"][-1]
                await asyncio.sleep(0.02)
            await ann.quiet(GRACE + 0.5)  # past the grace: still no departure, no arrival
            seen = [(event, data) for event, data in ann.order[mark:] if event in PRESENCE]
            assert [event for event, _ in seen] == ["roomUsers", "roomUsers"], seen
            assert all(len(users) <= 2 for _, users in seen)  # never a phantom third entry
            assert entries(seen[-1][1]) == expected
            await ann.close()
    finally:
        # Long-polling clients close fast once the server is gone (else they wait for the poll).
        for client in (reloaded, bob, ann):
            await client.close()
