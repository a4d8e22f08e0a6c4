"""Reconnecting clients: the replay of what they missed, the reconnect grace of a dropped
transport, and joins that repeat or move to another room. In-process server, real clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio

from app.config import Settings
from app.main import SIO_KEY
from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")  # one process, and a cluster of two

ROOM = "RECONNECT1"
OTHER_ROOM = "RECONNECT2"
REPLAYED = ("newMessage", "codeUpdate", "languageUpdate")
PRESENCE = ("roomUsers", "userJoined", "userLeft", "userTemporarilyDisconnected")
TRANSPORT_CLOSE = socketio.AsyncServer.reason.TRANSPORT_CLOSE
CLIENT_DISCONNECT = socketio.AsyncServer.reason.CLIENT_DISCONNECT


def sid(client: Client) -> str:
    """The Socket.IO id the server puts in payloads (Client.sid is the Engine.IO id)."""
    return str(client.sio.get_sid("/"))


async def hang_up(client: Client) -> None:
    """A deliberate disconnect, as socket.io-client's `socket.disconnect()`: the Socket.IO
    DISCONNECT packet (python-socketio's own `disconnect()` may close the websocket first)."""
    packet = client.sio.packet_class(socketio.packet.DISCONNECT, namespace="/")
    await client.sio._send_packet(packet)


async def drop(client: Client) -> None:
    """The network goes away: close the websocket under Engine.IO without sending either the
    Engine.IO CLOSE or the Socket.IO DISCONNECT packet. (`sio.eio.disconnect(abort=True)`
    sends CLOSE first, which the server rightly reports as a client disconnect.)"""
    await client.sio.eio.ws.close()


def since(client: Client, mark: int, kinds: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(event, data) for event, data in client.order[mark:] if event in kinds]


def names(events: list[tuple[str, Any]]) -> list[str]:
    return [event for event, _ in events]


def ids(users: list[dict[str, Any]]) -> list[str]:
    return [user["id"] for user in users]


@dataclass
class Harness:
    server: RunningServer
    reasons: dict[str, str]  # Socket.IO sid -> the disconnect reason the server's handler got
    made: list[Client] = field(default_factory=list)

    async def connect(self, auth: Any = None) -> Client:
        client = Client()
        self.made.append(client)
        return await client.connect(self.server.url, auth=auth)

    async def settled(self, **expected: int) -> None:
        """Wait (1 s at most) until the server's counts() have the expected values."""
        for _ in range(100):
            counts = self.server.counts()
            if all(counts[key] == value for key, value in expected.items()):
                return
            await asyncio.sleep(0.01)
        assert {key: counts[key] for key in expected} == expected

    async def reason_of(self, client_sid: str) -> str:
        for _ in range(100):
            if client_sid in self.reasons:
                return self.reasons[client_sid]
            await asyncio.sleep(0.01)
        raise AssertionError(f"the server saw no disconnect of {client_sid}")


@asynccontextmanager
async def harness(settings: Settings, count: int) -> AsyncIterator[tuple[Harness, list[Client]]]:
    """A server whose disconnect handler records the reason it is given, and `count` clients
    (closed before the server: a server stopping with open websockets waits for them)."""
    async with running_server(settings) as server:
        reasons: dict[str, str] = {}
        for app in server.apps:  # cluster mode: every process's
            sio = app[SIO_KEY]
            handler = sio.handlers["/"]["disconnect"]

            async def recording(client_sid: str, reason: str, handler: Any = handler) -> None:
                reasons[client_sid] = reason
                await handler(client_sid, reason)

            sio.handlers["/"]["disconnect"] = recording
        made = Harness(server, reasons)
        try:
            clients = [await made.connect() for _ in range(count)]
            yield made, clients
        finally:
            for client in made.made:
                await client.close()


async def join_all(clients: list[Client], names_: list[str], room_id: str = ROOM) -> None:
    """Join in order (app user id `user-<name>`); return once every join reached everyone."""
    for client, name in zip(clients, names_, strict=True):
        answer = await client.join(room_id, name, f"user-{name.lower()}")
        assert answer["ok"] is True, answer
    for position, client in enumerate(clients):
        await client.next("roomUsers", len(clients) - position)
        if later := len(clients) - 1 - position:
            await client.next("userJoined", later)


def highest_version_seen(client: Client, *answers: dict[str, Any]) -> int:
    """What a client would remember as the last version it saw: the acknowledgements of its
    own events and the versions of the code, language and chat events it received."""
    versions = [answer["version"] for answer in answers]
    versions += [data["version"] for event, data in client.order if event in REPLAYED]
    return max(versions)


# -- replay of what a reconnecting client missed ------------------------------------------------

Leave = Callable[[Client], Awaitable[None]]


@pytest.mark.parametrize(
    ("resume_with", "leave", "language_changes"),
    [
        pytest.param("lastSeenVersion", drop, True, id="lastSeenVersion-dropped-language"),
        pytest.param("lastSeenVersion", hang_up, False, id="lastSeenVersion-hung-up"),
        pytest.param("auth", drop, False, id="auth-offset-dropped"),
        pytest.param("auth", hang_up, True, id="auth-offset-hung-up-language"),
    ],
)
async def test_rejoin_with_the_last_version_seen_replays_exactly_what_was_missed(
    tmp_path: Path, resume_with: str, leave: Leave, language_changes: bool
) -> None:
    settings = fast_settings(tmp_path, reconnect_grace_seconds=5.0)
    async with harness(settings, 3) as (h, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])
        bob_joined = bob.events["roomUsers"][-1]
        own = await bob.call("chatMessage", {"roomId": ROOM, "message": "Bob was here"})
        await ann.call("chatMessage", {"roomId": ROOM, "message": "seen by Bob"})
        await cat.call("codeChange", {"roomId": ROOM, "code": "code Bob saw"})
        await bob.next("newMessage")
        await bob.next("codeUpdate")
        last_seen = highest_version_seen(bob, own)

        await leave(bob)
        await ann.next("userTemporarilyDisconnected" if leave is drop else "userLeft")
        away_mark = len(ann.order)

        # While Bob is away, the others chat (string and object forms) and type.
        sent = [await ann.call("chatMessage", {"roomId": ROOM, "message": "missed 1"})]
        await cat.call("codeChange", {"roomId": ROOM, "code": "typed while Bob was away"})
        message = {"id": "cat-2", "message": "missed 2"}
        sent.append(await cat.call("chatMessage", {"roomId": ROOM, "message": message}))
        if language_changes:
            await ann.call("languageChange", {"roomId": ROOM, "language": "python"})
        await cat.call("codeChange", {"roomId": ROOM, "code": "the current text"})
        sent.append(await ann.call("chatMessage", {"roomId": ROOM, "message": "missed 3"}))
        if resume_with == "auth":
            back = await h.connect(auth={"roomId": ROOM, "offset": last_seen})
            joined = await back.join(ROOM, "Bob", "user-bob")
        else:
            back = await h.connect()
            joined = await back.join(ROOM, "Bob", "user-bob", lastSeenVersion=last_seen)
        assert joined["ok"] is True
        await back.next("codeUpdate")
        await back.quiet(0.3)

        replay = since(back, 0, REPLAYED)
        expected = ["newMessage"] * 3 + ["codeUpdate"] + ["languageUpdate"] * language_changes
        assert names(replay) == expected, replay
        messages = [data for event, data in replay if event == "newMessage"]
        assert [m["version"] for m in messages] == [answer["version"] for answer in sent]
        assert [m["message"]["id"] for m in messages] == [answer["id"] for answer in sent]
        assert [m["message"]["message"] for m in messages] == ["missed 1", "missed 2", "missed 3"]
        assert [m["message"]["userName"] for m in messages] == ["Ann", "Cat", "Ann"]
        # Each is the message as delivered live, but for `userId` (live: the sender's socket
        # id; replayed: the stored app user id, as GET /api/sessions/:roomId gives it).
        live = {
            data["message"]["id"]: data
            for client in (ann, cat)
            for event, data in client.order
            if event == "newMessage"
        }
        for replayed in messages:
            delivered = live[replayed["message"]["id"]]
            assert {**replayed["message"], "userId": None} == {
                **delivered["message"],
                "userId": None,
            }
            assert replayed["version"] == delivered["version"]
        code = replay[3][1]
        assert code["code"] == "the current text"
        assert code["language"] == ("python" if language_changes else "javascript")
        assert code["version"] == joined["version"]
        if language_changes:
            assert replay[4][1]["language"] == "python"
        if leave is drop:  # resumed within the grace: the same member, nobody left or joined
            assert back.events["roomUsers"][-1][-1]["joinedAt"] == bob_joined[-1]["joinedAt"]
            assert names(since(ann, away_mark, PRESENCE)) == ["roomUsers"]


async def test_a_room_reloaded_from_the_store_replays_no_unchanged_language(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, room_idle_seconds=0.05)
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ann.call("codeChange", {"roomId": ROOM, "code": "before"})
        await bob.next("codeUpdate")
        last_seen = highest_version_seen(bob)
        await hang_up(bob)
        await ann.next("userLeft")
        said = await ann.call("chatMessage", {"roomId": ROOM, "message": "missed"})
        await ann.call("leaveRoom", {"roomId": ROOM})
        for _ in range(200):  # the room is written, then unloaded
            if ROOM not in h.server.rooms.rooms:
                break
            await asyncio.sleep(0.01)
        assert ROOM not in h.server.rooms.rooms

        back = await h.connect()
        await back.join(ROOM, "Bob", "user-bob", lastSeenVersion=last_seen)
        await back.next("newMessage")
        await back.quiet(0.3)

        replay = since(back, 0, REPLAYED)
        assert [(e, d["version"]) for e, d in replay if e == "newMessage"] == [
            ("newMessage", said["version"])
        ]
        assert "languageUpdate" not in names(replay), replay
        # Only chat was missed: a codeUpdate, if any, repeats the text the client has.
        assert [d["code"] for e, d in replay if e == "codeUpdate"] in ([], ["before"])


async def test_a_client_that_sends_no_last_version_gets_no_replay(settings: Settings) -> None:
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await hang_up(bob)
        await ann.next("userLeft")
        await ann.call("chatMessage", {"roomId": ROOM, "message": "missed"})
        await ann.call("codeChange", {"roomId": ROOM, "code": "changed"})
        await ann.call("languageChange", {"roomId": ROOM, "language": "python"})

        plain = await h.connect()
        elsewhere = await h.connect(auth={"roomId": OTHER_ROOM, "offset": 0})
        malformed = await h.connect(auth={"roomId": ROOM, "offset": -1})
        for client, name in [(plain, "Plain"), (elsewhere, "Elsewhere"), (malformed, "Bad")]:
            joined = await client.join(ROOM, name, f"user-{name.lower()}")
            assert joined["ok"] is True
            assert (joined["code"], joined["language"]) == ("changed", "python")
        await ann.quiet(0.3)
        for client in (plain, elsewhere, malformed):
            assert since(client, 0, REPLAYED) == []


# -- the reconnect grace ------------------------------------------------------------------------


async def test_dropped_transport_is_away_for_the_grace_then_leaves(tmp_path: Path) -> None:
    grace = 0.5
    settings = fast_settings(tmp_path, reconnect_grace_seconds=grace)
    async with harness(settings, 3) as (h, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])
        marks = [len(ann.order), len(cat.order)]
        bob_sid = sid(bob)

        dropped_at = time.monotonic()
        await drop(bob)

        away = await ann.next("userTemporarilyDisconnected", within=grace)
        assert time.monotonic() - dropped_at < grace / 2
        assert away == {"userId": bob_sid, "userName": "Bob"}
        assert await cat.next("userTemporarilyDisconnected", within=grace) == away
        assert await h.reason_of(bob_sid) == TRANSPORT_CLOSE
        assert h.server.counts()["grace_timers"] == 1

        await ann.next("userLeft", within=grace + 2)
        assert time.monotonic() - dropped_at >= grace - 0.05
        await cat.next("userLeft")
        for client, mark in zip((ann, cat), marks, strict=True):
            # Bob leaves the list at once (no phantom); his departure is told after the grace.
            seen = since(client, mark, PRESENCE)
            assert names(seen) == ["roomUsers", "userTemporarilyDisconnected", "userLeft"]
            assert ids(seen[0][1]) == [sid(ann), sid(cat)]
            assert seen[2][1] == {
                "userId": bob_sid,
                "userName": "Bob",
                "message": "Bob left the room",
            }
        await h.settled(grace_timers=0, sockets=2, call_timers=0)


async def test_rejoin_within_the_grace_resumes_the_member(tmp_path: Path) -> None:
    grace = 0.6
    settings = fast_settings(tmp_path, reconnect_grace_seconds=grace)
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        before = ann.events["roomUsers"][-1]
        mark = len(ann.order)
        await drop(bob)
        await ann.next("userTemporarilyDisconnected")
        assert ids(ann.events["roomUsers"][-1]) == [sid(ann)]  # no phantom while Bob is away

        lists = len(ann.events["roomUsers"])
        back = await h.connect()
        answer = await back.join(ROOM, "Bob", "user-bob")

        assert answer["ok"] is True
        users = await ann.next("roomUsers", lists + 1)
        assert [(u["id"], u["userId"], u["name"]) for u in users] == [
            (sid(ann), "user-ann", "Ann"),
            (sid(back), "user-bob", "Bob"),
        ]
        assert [u["joinedAt"] for u in users] == [u["joinedAt"] for u in before]
        await ann.quiet(grace + 0.3)  # past the grace of the dropped socket
        seen = names(since(ann, mark, PRESENCE))
        assert seen == ["roomUsers", "userTemporarilyDisconnected", "roomUsers"]
        assert "userJoined" not in back.events
        counts = h.server.counts()
        assert (counts["grace_timers"], counts["sockets"]) == (0, 2)
        # The resumed member is a full member.
        await back.call("codeChange", {"roomId": ROOM, "code": "back again"})
        assert (await ann.next("codeUpdate"))["userId"] == sid(back)


async def test_a_guest_reloading_within_the_grace_is_resumed_by_name_and_address(
    tmp_path: Path,
) -> None:
    grace = 0.4
    settings = fast_settings(tmp_path, reconnect_grace_seconds=grace)
    async with harness(settings, 2) as (h, (ann, guest)):
        await ann.join(ROOM, "Ann", "user-ann")
        await guest.join(ROOM, "Guest", None)
        await ann.next("userJoined")
        mark = len(ann.order)
        await drop(guest)
        await ann.next("userTemporarilyDisconnected")

        lists = len(ann.events["roomUsers"])
        back = await h.connect()
        await back.join(ROOM, "Guest", None)  # the same name from the same address

        users = await ann.next("roomUsers", lists + 1)
        assert ids(users) == [sid(ann), sid(back)]
        await ann.quiet(grace + 0.3)
        seen = names(since(ann, mark, PRESENCE))
        assert seen == ["roomUsers", "userTemporarilyDisconnected", "roomUsers"]


async def test_another_guest_joining_within_the_grace_resumes_nobody(tmp_path: Path) -> None:
    grace = 0.4
    settings = fast_settings(tmp_path, reconnect_grace_seconds=grace)
    async with harness(settings, 2) as (h, (ann, guest)):
        await ann.join(ROOM, "Ann", "user-ann")
        await guest.join(ROOM, "Guest", None)
        await ann.next("userJoined")
        mark, guest_sid = len(ann.order), sid(guest)
        await drop(guest)
        await ann.next("userTemporarilyDisconnected")

        other = await h.connect()
        await other.join(ROOM, "Visitor", None)  # no app user id and another name: another one

        await ann.next("userJoined", 2)
        left = await ann.next("userLeft", within=grace + 2)
        assert left["userId"] == guest_sid
        seen = since(ann, mark, PRESENCE)
        assert names(seen) == [
            "roomUsers",
            "userTemporarilyDisconnected",
            "roomUsers",
            "userJoined",
            "userLeft",
        ]
        assert ids(seen[0][1]) == [sid(ann)]
        assert ids(seen[2][1]) == [sid(ann), sid(other)]


async def test_rejoin_after_the_grace_is_an_ordinary_join(tmp_path: Path) -> None:
    grace = 0.3
    settings = fast_settings(tmp_path, reconnect_grace_seconds=grace)
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        joined_at = ann.events["roomUsers"][-1][1]["joinedAt"]
        await drop(bob)
        await ann.next("userLeft", within=grace + 2)
        mark = len(ann.order)
        await asyncio.sleep(0.01)  # joinedAt has millisecond resolution

        back = await h.connect()
        await back.join(ROOM, "Bob", "user-bob")

        await ann.next("userJoined")
        seen = since(ann, mark, PRESENCE)
        assert names(seen) == ["roomUsers", "userJoined"]
        assert ids(seen[0][1]) == [sid(ann), sid(back)]
        assert seen[0][1][1]["joinedAt"] > joined_at
        assert seen[1][1]["userId"] == sid(back)


async def test_no_grace_means_a_dropped_transport_leaves_at_once(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, reconnect_grace_seconds=0)
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        mark, bob_sid = len(ann.order), sid(bob)
        await drop(bob)
        await ann.next("userLeft", within=1.0)
        assert await h.reason_of(bob_sid) == TRANSPORT_CLOSE
        assert names(since(ann, mark, PRESENCE)) == ["roomUsers", "userLeft"]
        assert h.server.counts()["grace_timers"] == 0


async def test_leaving_or_disconnecting_deliberately_leaves_at_once_despite_a_grace(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, reconnect_grace_seconds=30)
    async with harness(settings, 3) as (h, (ann, bob, cat)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        mark = len(ann.order)

        await bob.call("leaveRoom", {"roomId": ROOM})
        assert (await ann.next("userLeft", within=1.0))["userName"] == "Bob"
        cat_sid = sid(cat)
        await hang_up(cat)
        assert (await ann.next("userLeft", 2, within=1.0))["userName"] == "Cat"

        assert await h.reason_of(cat_sid) == CLIENT_DISCONNECT
        seen = since(ann, mark, PRESENCE)
        assert names(seen) == ["roomUsers", "userLeft", "roomUsers", "userLeft"]
        assert ids(seen[2][1]) == [sid(ann)]
        counts = h.server.counts()
        assert (counts["grace_timers"], counts["sockets"]) == (0, 1)


# -- repeated joins -------------------------------------------------------------------------------


async def test_repeating_a_join_changes_nothing_but_the_name(settings: Settings) -> None:
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        first = bob.events["roomUsers"][-1]
        typed = await ann.call("codeChange", {"roomId": ROOM, "code": "some text"})
        await bob.next("codeUpdate")
        mark = len(ann.order)

        again = await bob.join(ROOM, "Bobby", "user-bob")
        other_id = await bob.join(ROOM, "Bobby", "someone-else")

        for answer in (again, other_id):
            assert answer == {
                "ok": True,
                "version": typed["version"],
                "epoch": answer["epoch"],
                "code": "some text",
                "language": "javascript",
            }
        users = await bob.next("roomUsers", 3)
        assert [(u["id"], u["name"], u["userId"], u["joinedAt"]) for u in users] == [
            (u["id"], "Bobby" if u["id"] == sid(bob) else u["name"], u["userId"], u["joinedAt"])
            for u in first
        ]
        said = await bob.call("chatMessage", {"roomId": ROOM, "message": "renamed"})
        assert said["ok"] is True
        assert (await ann.next("newMessage"))["message"]["userName"] == "Bobby"
        assert [event for event, _ in ann.order[mark:] if event != "sessionSaved"] == ["newMessage"]
        assert h.server.counts()["sockets"] == 2


async def test_joins_sent_at_once_announce_the_user_once(settings: Settings) -> None:
    async with harness(settings, 2) as (_, (ann, bob)):
        await join_all([ann], ["Ann"])
        mark = len(ann.order)
        join = {"roomId": ROOM, "userName": "Bob", "userId": "user-bob"}
        answers = await asyncio.gather(*(bob.call("joinRoom", join) for _ in range(3)))

        assert all(answer["ok"] for answer in answers)
        await ann.next("userJoined")
        await ann.quiet()
        assert names(since(ann, mark, PRESENCE)) == ["roomUsers", "userJoined"]
        assert ids(ann.events["roomUsers"][-1]) == [sid(ann), sid(bob)]


async def test_joining_another_room_without_leaving_leaves_the_first(
    settings: Settings,
) -> None:
    async with harness(settings, 3) as (h, (ann, bob, cat)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await join_all([cat], ["Cat"], OTHER_ROOM)
        ann_mark, cat_mark = len(ann.order), len(cat.order)

        moved = await bob.join(OTHER_ROOM, "Bob", "user-bob")

        assert moved["ok"] is True
        await ann.next("userLeft")
        await cat.next("userJoined")
        left = since(ann, ann_mark, PRESENCE)
        assert names(left) == ["roomUsers", "userLeft"]
        assert ids(left[0][1]) == [sid(ann)]
        assert left[1][1]["userId"] == sid(bob)
        arrived = since(cat, cat_mark, PRESENCE)
        assert names(arrived) == ["roomUsers", "userJoined"]
        assert ids(arrived[0][1]) == [sid(cat), sid(bob)]

        await bob.call("codeChange", {"roomId": OTHER_ROOM, "code": "in the other room"})
        refused = await bob.call("codeChange", {"roomId": ROOM, "code": "in the first room"})
        assert refused["error"]["code"] == "not_in_room"
        assert (await cat.next("codeUpdate"))["code"] == "in the other room"
        await ann.quiet()
        assert "codeUpdate" not in ann.events
        assert h.server.counts()["sockets"] == 3


async def test_a_rejoining_file_client_gets_exactly_the_files_changed_while_away(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, reconnect_grace_seconds=5.0)
    async with harness(settings, 2) as (h, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        for file_id in ("main.js", "notes.md", "untouched.txt"):
            opened = {"roomId": ROOM, "fileId": file_id, "name": file_id}
            assert (await bob.call("openFile", opened))["ok"]
        seen = await bob.call("changeFile", {"roomId": ROOM, "fileId": "notes.md", "content": "a"})
        await drop(bob)
        await ann.next("userTemporarilyDisconnected")

        for file_id, content in (("notes.md", "a, then b"), ("main.js", "code while away")):
            change = {"roomId": ROOM, "fileId": file_id, "content": content}
            assert (await ann.call("changeFile", change))["ok"]
        back = await h.connect()
        joined = await back.join(ROOM, "Bob", "user-bob", lastSeenVersion=seen["version"])
        assert joined["ok"] is True
        await back.next("fileContentUpdate", 2)
        await back.quiet(0.3)

        # The same person, back: still a file client (no codeUpdate), and only what changed.
        assert "codeUpdate" not in back.events
        replayed = {u["fileId"]: u for u in back.events["fileContentUpdate"]}
        assert {k: u["content"] for k, u in replayed.items()} == {
            "notes.md": "a, then b",
            "main.js": "code while away",
        }
        assert all(u["version"] == joined["version"] for u in replayed.values())
