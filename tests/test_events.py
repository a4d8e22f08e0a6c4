"""Every client event of the reference protocol: who receives what, with which keys, and how
bad input is refused (an `error` event and an `{ok: false}` acknowledgement, nothing else)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import socketio

from app.config import Settings
from app.main import EVENTS_KEY
from app.storage.records import DEFAULT_CODE, DEFAULT_LANGUAGE
from tests.support import (
    Client,
    RunningServer,
    cluster_processes,
    fast_settings,
    running_server,
    serving,
)

# The protocol suite runs twice: on one process, and on two in cluster mode (clients in turn
# on each process), where every client must see what one process would show it.
pytestmark = pytest.mark.usefixtures("each_mode")

ROOM = "ROOM1"
OTHER_ROOM = "ROOM2"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TRANSPORTS = [
    pytest.param(["websocket"], id="websocket"),
    pytest.param(["polling"], id="polling"),
]
# Events the server answers only to members of the room named in the payload, each with an
# otherwise valid payload.
ROOM_EVENTS: dict[str, dict[str, Any]] = {
    "requestCodeState": {},
    "sendCodeState": {"code": "x", "language": "python", "targetUserId": "nobody"},
    "codeChange": {"code": "changed", "language": "python"},
    "languageChange": {"language": "python"},
    "cursorMove": {"position": {"lineNumber": 1, "column": 2}},
    "chatMessage": {"message": "hello"},
    "userTyping": {},
    "userStoppedTyping": {},
}
ALL_EVENTS = ["joinRoom", "leaveRoom", *ROOM_EVENTS]


async def join_all(clients: list[Client], names: list[str], room_id: str = ROOM) -> None:
    """Join in order (app user id `user-<name>`); return once every join reached everyone."""
    for client, name in zip(clients, names, strict=True):
        answer = await client.join(room_id, name, f"user-{name.lower()}")
        assert answer["ok"] is True, answer
    for position, client in enumerate(clients):
        await client.next("roomUsers", len(clients) - position)
        later = len(clients) - 1 - position
        if later:
            await client.next("userJoined", later)


async def hang_up(client: Client) -> None:
    """Disconnect deliberately, as socket.io-client's `socket.disconnect()` does: send the
    Socket.IO DISCONNECT packet. (python-socketio's `disconnect()` may close the websocket
    before that packet is written, which the server rightly treats as a dropped connection.)"""
    packet = client.sio.packet_class(socketio.packet.DISCONNECT, namespace="/")
    await client.sio._send_packet(packet)


def sid(client: Client) -> str:
    """The Socket.IO id the server puts in payloads (Client.sid is the Engine.IO id)."""
    return str(client.sio.get_sid("/"))


def names_since(client: Client, mark: int) -> list[str]:
    """Events received after `mark` (an index into client.order), store notices left out."""
    return [event for event, _ in client.order[mark:] if event != "sessionSaved"]


def marks(*clients: Client) -> list[int]:
    return [len(client.order) for client in clients]


async def get_session(server: RunningServer, room_id: str = ROOM) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{room_id}")
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


def assert_refused(answer: Any, client: Client, event: str, code: str, count: int) -> None:
    """The acknowledgement says why, and the same reason reached the sender as `error`."""
    assert answer["ok"] is False, answer
    assert answer["error"]["code"] == code
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    error = client.events["error"][count - 1]
    assert error == {"event": event, "code": code, "message": answer["error"]["message"]}


# -- joinRoom ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_join_sends_user_list_to_whole_room_and_announces_newcomer_to_others_only(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, bob, outsider)):
        first = await ann.join(ROOM, "Ann", "user-ann")
        assert first == {
            "ok": True,
            "epoch": first["epoch"],
            "version": 0,
            "code": DEFAULT_CODE,
            "language": DEFAULT_LANGUAGE,
        }
        alone = await ann.next("roomUsers")
        assert alone == [
            {"id": sid(ann), "name": "Ann", "userId": "user-ann", "joinedAt": alone[0]["joinedAt"]}
        ]
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        outsider_mark = len(outsider.order)

        await bob.join(ROOM, "Bob", "user-bob")

        both = await ann.next("roomUsers", 2)
        assert isinstance(both, list)
        assert [(u["id"], u["name"], u["userId"]) for u in both] == [
            (sid(ann), "Ann", "user-ann"),
            (sid(bob), "Bob", "user-bob"),
        ]
        for user in both:
            assert set(user) == {"id", "name", "userId", "joinedAt"}
            assert ISO_MS.match(user["joinedAt"])
        assert await bob.next("roomUsers") == both
        assert await ann.next("userJoined") == {
            "userId": sid(bob),
            "userName": "Bob",
            "message": "Bob joined the room",
        }
        await bob.quiet()
        assert "userJoined" not in bob.events
        assert names_since(outsider, outsider_mark) == []


async def test_join_without_app_user_id_lists_the_user_as_anonymous(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, guest)):
        await ann.join(ROOM, "Ann", "user-ann")
        answer = await guest.call("joinRoom", {"roomId": ROOM, "userName": "", "userId": None})
        assert answer["ok"] is True
        users = await ann.next("roomUsers", 2)
        assert users[1]["id"] == sid(guest)
        assert users[1]["name"] == ""
        assert users[1]["userId"] == "anonymous"
        joined = await ann.next("userJoined")
        assert joined["message"] == " joined the room"
        session = await get_session(server)
        assert [p["name"] for p in session["participants"]] == ["Ann", ""]


async def test_join_acknowledgement_carries_the_current_code_language_and_version(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await ann.join(ROOM, "Ann", "user-ann")
        typed = await ann.call("codeChange", {"roomId": ROOM, "code": "let x = 1;"})
        switched = await ann.call("languageChange", {"roomId": ROOM, "language": "typescript"})
        assert switched["version"] > typed["version"] > 0

        answer = await bob.join(ROOM, "Bob", "user-bob")

        assert answer == {
            "ok": True,
            "epoch": answer["epoch"],
            "version": switched["version"],
            "code": "let x = 1;",
            "language": "typescript",
        }


async def test_joining_the_same_room_again_does_not_announce_the_user_twice(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        mark = len(ann.order)

        again = await bob.join(ROOM, "Bob", "user-bob")

        assert again["ok"] is True
        users = await bob.next("roomUsers", 2)
        assert [u["id"] for u in users] == [sid(ann), sid(bob)]
        await ann.quiet()
        assert names_since(ann, mark) == []


async def test_joining_another_room_leaves_the_first_one(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        await bob.join(OTHER_ROOM, "Bob", "user-bob")

        assert [u["id"] for u in await ann.next("roomUsers", 3)] == [sid(ann)]
        assert (await ann.next("userLeft"))["message"] == "Bob left the room"
        refused = await bob.call("codeChange", {"roomId": ROOM, "code": "stale"})
        assert refused["error"]["code"] == "not_in_room"


# -- requestCodeState / sendCodeState ---------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_code_state_request_reaches_others_with_requester_id(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])

        answer = await bob.call("requestCodeState", {"roomId": ROOM})

        assert answer == {"ok": True}
        assert await ann.next("codeStateRequest") == {"requesterId": sid(bob)}
        assert await cat.next("codeStateRequest") == {"requesterId": sid(bob)}
        await bob.quiet()
        assert "codeStateRequest" not in bob.events


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_code_state_reaches_only_its_target(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])
        ann_mark, cat_mark = marks(ann, cat)

        # Cat answers (in cluster mode Cat and Bob are on different processes).
        answer = await cat.call(
            "sendCodeState",
            {"roomId": ROOM, "code": "print(1)", "language": "python", "targetUserId": sid(bob)},
        )

        assert answer == {"ok": True}
        # The room's text and language, not the peer's: the server is the authority.
        state = await bob.next("receiveCodeState")
        assert state["code"] == DEFAULT_CODE
        assert state["language"] == DEFAULT_LANGUAGE
        assert isinstance(state["version"], int)
        await ann.quiet()
        assert names_since(ann, ann_mark) == []
        assert names_since(cat, cat_mark) == []


async def test_code_state_for_a_socket_outside_the_room_is_refused(settings: Settings) -> None:
    async with serving(settings, 3) as (_, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        mark = len(outsider.order)

        answer = await ann.call(
            "sendCodeState", {"roomId": ROOM, "code": "secret", "targetUserId": sid(outsider)}
        )

        assert_refused(answer, ann, "sendCodeState", "not_in_room", 1)
        await outsider.quiet()
        assert names_since(outsider, mark) == []


# -- codeChange / languageChange / cursorMove -------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_code_change_reaches_others_with_every_key_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (server, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        outsider_mark = len(outsider.order)

        answer = await ann.call(
            "codeChange", {"roomId": ROOM, "code": "def f():\n    pass\n", "language": "python"}
        )

        assert answer == {"ok": True, "version": 1}
        update = await bob.next("codeUpdate")
        assert set(update) == {"code", "language", "userId", "userName", "timestamp", "version"}
        assert update["code"] == "def f():\n    pass\n"
        assert update["language"] == "python"
        assert update["userId"] == sid(ann)
        assert update["userName"] == "Ann"
        assert ISO_MS.match(update["timestamp"])
        assert update["version"] == 1
        await ann.quiet()
        assert "codeUpdate" not in ann.events
        assert "codeUpdate" not in outsider.events
        assert names_since(outsider, outsider_mark) == []
        session = await get_session(server)
        assert (session["code"], session["language"]) == ("def f():\n    pass\n", "python")


async def test_code_change_without_language_keeps_the_room_language(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ann.call("languageChange", {"roomId": ROOM, "language": "go"})

        await ann.call("codeChange", {"roomId": ROOM, "code": "package main"})

        update = await bob.next("codeUpdate")
        assert (update["code"], update["language"]) == ("package main", "go")


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_language_change_reaches_others_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 2, transports) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        answer = await bob.call("languageChange", {"roomId": ROOM, "language": "cpp"})

        assert answer == {"ok": True, "version": 1}
        assert await ann.next("languageUpdate") == {
            "language": "cpp",
            "userId": sid(bob),
            "userName": "Bob",
            "version": 1,
        }
        await bob.quiet()
        assert "languageUpdate" not in bob.events
        assert (await get_session(server))["language"] == "cpp"


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_cursor_move_reaches_others_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, bob, cat)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        position = {"lineNumber": 3, "column": 14}

        answer = await ann.call("cursorMove", {"roomId": ROOM, "position": position})

        assert answer == {"ok": True}
        expected = {"position": position, "userId": sid(ann), "userName": "Ann"}
        assert await bob.next("cursorUpdate") == expected
        assert await cat.next("cursorUpdate") == expected
        await ann.quiet()
        assert "cursorUpdate" not in ann.events


async def test_every_store_write_is_announced_to_the_whole_room(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        answer = await ann.call("codeChange", {"roomId": ROOM, "code": "saved soon"})

        for client in (ann, bob):
            for count in range(1, 10):
                saved = await client.next("sessionSaved", count)
                if saved["version"] >= answer["version"]:
                    break
            assert saved["roomId"] == ROOM
            assert saved["version"] == answer["version"]
            assert ISO_MS.match(saved["savedAt"])


# -- chatMessage --------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_chat_message_string_reaches_others_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        outsider_mark = len(outsider.order)

        answer = await ann.call("chatMessage", {"roomId": ROOM, "message": "hi there"})

        assert answer["ok"] is True
        received = await bob.next("newMessage")
        assert set(received) == {"message", "version"}
        message = received["message"]
        assert set(message) == {"id", "message", "userId", "userName", "timestamp"}
        assert message["message"] == "hi there"
        assert message["userId"] == sid(ann)
        assert message["userName"] == "Ann"
        assert message["id"] == answer["id"]
        assert ISO_MS.match(message["timestamp"])
        assert received["version"] == answer["version"]
        await ann.quiet()
        assert "newMessage" not in ann.events
        assert names_since(outsider, outsider_mark) == []


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_chat_message_object_keeps_its_id_and_reaches_others_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 2, transports) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        sent = {
            "id": 1700000000000,
            "userId": sid(ann),
            "userName": "Ann",
            "message": "shown locally already",
            "timestamp": "2024-01-01T00:00:00.000Z",
        }

        answer = await ann.call("chatMessage", {"roomId": ROOM, "message": sent})

        assert answer["ok"] is True
        message = (await bob.next("newMessage"))["message"]
        assert str(message["id"]) == "1700000000000"
        assert message["message"] == "shown locally already"
        assert (message["userId"], message["userName"]) == (sid(ann), "Ann")
        await ann.quiet()
        assert "newMessage" not in ann.events


async def test_chat_messages_are_stored_in_order_with_app_user_ids(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        await ann.call("chatMessage", {"roomId": ROOM, "message": "first"})
        await bob.call("chatMessage", {"roomId": ROOM, "message": {"id": "c-2", "message": "2nd"}})

        messages = (await get_session(server))["messages"]
        assert [(m["userId"], m["userName"], m["message"]) for m in messages] == [
            ("user-ann", "Ann", "first"),
            ("user-bob", "Bob", "2nd"),
        ]
        assert messages[1]["id"] == "c-2"
        assert all(ISO_MS.match(m["timestamp"]) for m in messages)


# -- userTyping / userStoppedTyping -------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_typing_indicators_reach_others_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 2, transports) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        started = await ann.call("userTyping", {"roomId": ROOM})
        stopped = await ann.call("userStoppedTyping", {"roomId": ROOM})

        assert started == stopped == {"ok": True}
        who = {"userId": sid(ann), "userName": "Ann"}
        assert await bob.next("userIsTyping") == who
        assert await bob.next("userStoppedTyping") == who
        await ann.quiet()
        assert "userIsTyping" not in ann.events
        assert "userStoppedTyping" not in ann.events


# -- leaveRoom / disconnect ---------------------------------------------------------------------


def assert_departure_seen(client: Client, mark: int, remaining: list[str], gone: Client) -> None:
    """`roomUsers` (without the one gone) and then `userLeft`, in that order."""
    events = [(e, d) for e, d in client.order[mark:] if e != "sessionSaved"]
    assert [e for e, _ in events] == ["roomUsers", "userLeft"]
    assert [u["id"] for u in events[0][1]] == remaining
    assert events[1][1] == {
        "userId": sid(gone),
        "userName": "Bob",
        "message": "Bob left the room",
    }


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_leaving_sends_updated_user_list_then_user_left_to_others(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])
        ann_mark, cat_mark, bob_mark = marks(ann, cat, bob)

        answer = await bob.call("leaveRoom", {"roomId": ROOM})

        assert answer == {"ok": True}
        await ann.next("userLeft")
        await cat.next("userLeft")
        assert_departure_seen(ann, ann_mark, [sid(ann), sid(cat)], bob)
        assert_departure_seen(cat, cat_mark, [sid(ann), sid(cat)], bob)
        await ann.call("codeChange", {"roomId": ROOM, "code": "after Bob left"})
        await cat.next("codeUpdate")
        await bob.quiet()
        assert names_since(bob, bob_mark) == []


async def test_leaving_another_room_keeps_the_sender_in_its_own_room(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        mark = len(ann.order)

        answer = await bob.call("leaveRoom", {"roomId": OTHER_ROOM})

        assert answer["ok"] is True
        assert (await bob.call("codeChange", {"roomId": ROOM, "code": "still here"}))["ok"]
        assert (await ann.next("codeUpdate"))["code"] == "still here"
        assert names_since(ann, mark) == ["codeUpdate"]


async def test_after_leaving_room_events_are_refused(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await bob.call("leaveRoom", {"roomId": ROOM})
        await ann.next("userLeft")
        mark = len(ann.order)

        answer = await bob.call("codeChange", {"roomId": ROOM, "code": "ghost edit"})

        assert_refused(answer, bob, "codeChange", "not_in_room", 1)
        await ann.quiet()
        assert names_since(ann, mark) == []
        assert (await get_session(server))["code"] == DEFAULT_CODE


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_disconnect_sends_updated_user_list_then_user_left_to_others(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])
        ann_mark, cat_mark = marks(ann, cat)

        await hang_up(bob)

        await ann.next("userLeft")
        await cat.next("userLeft")
        assert_departure_seen(ann, ann_mark, [sid(ann), sid(cat)], bob)
        assert_departure_seen(cat, cat_mark, [sid(ann), sid(cat)], bob)


async def test_dropped_connection_leaves_the_room_after_the_reconnect_grace(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, reconnect_grace_seconds=0.2)
    async with serving(settings, 3) as (_, (ann, cat, bob)):
        await join_all([ann, cat, bob], ["Ann", "Cat", "Bob"])
        ann_mark, bob_sid = len(ann.order), sid(bob)

        await bob.sio.eio.ws.close()  # the network goes away: no DISCONNECT packet

        await ann.next("userLeft")
        departure = [(e, d) for e, d in ann.order[ann_mark:] if e in ("roomUsers", "userLeft")]
        assert [e for e, _ in departure] == ["roomUsers", "userLeft"]
        assert [u["id"] for u in departure[0][1]] == [sid(ann), sid(cat)]
        assert departure[1][1] == {
            "userId": bob_sid,
            "userName": "Bob",
            "message": "Bob left the room",
        }
        await cat.next("userLeft")


async def test_events_sent_right_after_join_without_waiting_are_applied(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, room_idle_seconds=0.01)
    async with serving(settings, 2) as (server, (ann, bob)):
        await ann.join(ROOM, "Ann", "user-ann")
        await ann.call("codeChange", {"roomId": ROOM, "code": "stored"})
        await ann.call("leaveRoom", {"roomId": ROOM})
        for _ in range(100):  # the idle room is unloaded; Bob's join must load it again
            if ROOM not in server.rooms.rooms:
                break
            await ann.quiet(0.01)
        assert ROOM not in server.rooms.rooms
        await ann.join(ROOM, "Ann", "user-ann")

        await bob.emit("joinRoom", {"roomId": ROOM, "userName": "Bob", "userId": "user-bob"})
        await bob.emit("requestCodeState", {"roomId": ROOM})
        await bob.emit("codeChange", {"roomId": ROOM, "code": "stored + Bob"})

        assert await ann.next("codeStateRequest") == {"requesterId": sid(bob)}
        assert (await ann.next("codeUpdate"))["code"] == "stored + Bob"
        assert "error" not in bob.events


def without_times(session: dict[str, Any]) -> dict[str, Any]:
    times = ("lastActivity", "expiresAt", "joinedAt", "lastSeen", "leftAt", "updatedAt")
    kept = {k: v for k, v in session.items() if k not in times}
    kept["participants"] = [without_times(p) for p in session.get("participants", [])]
    return kept


# -- a whole session ----------------------------------------------------------------------------


async def test_two_client_session_end_to_end_is_persisted(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        ann_join = await ann.join(ROOM, "Ann", "user-ann")
        assert ann_join["code"] == DEFAULT_CODE
        await ann.call("requestCodeState", {"roomId": ROOM})
        await ann.call("languageChange", {"roomId": ROOM, "language": "javascript"})
        await bob.join(ROOM, "Bob", "user-bob")
        await bob.call("requestCodeState", {"roomId": ROOM})
        request = await ann.next("codeStateRequest")
        await ann.call(
            "sendCodeState",
            {
                "roomId": ROOM,
                "code": DEFAULT_CODE,
                "language": "javascript",
                "targetUserId": request["requesterId"],
            },
        )
        assert (await bob.next("receiveCodeState"))["code"] == DEFAULT_CODE

        for text in ["c", "co", "con", "cons", "const a = 1;"]:
            await ann.call("codeChange", {"roomId": ROOM, "code": text, "language": "javascript"})
        assert (await bob.next("codeUpdate", 5))["code"] == "const a = 1;"
        await bob.call("languageChange", {"roomId": ROOM, "language": "typescript"})
        assert (await ann.next("languageUpdate"))["language"] == "typescript"
        await bob.call("chatMessage", {"roomId": ROOM, "message": "looks good"})
        assert (await ann.next("newMessage"))["message"]["message"] == "looks good"
        await ann.call("chatMessage", {"roomId": ROOM, "message": {"id": 7, "message": "thx"}})
        assert (await bob.next("newMessage"))["message"]["message"] == "thx"

        await bob.call("leaveRoom", {"roomId": ROOM})
        assert (await ann.next("userLeft"))["userName"] == "Bob"
        await ann.call("leaveRoom", {"roomId": ROOM})
        await ann.close()
        await bob.close()
        live = await get_session(server)

    # A restarted server on the same data serves the same session: it was really stored.
    async with running_server(settings) as restarted:
        stored = await get_session(restarted)
    for session in (live, stored):
        assert session["code"] == "const a = 1;"
        assert session["language"] == "typescript"
        assert [(m["userId"], m["userName"], m["message"]) for m in session["messages"]] == [
            ("user-bob", "Bob", "looks good"),
            ("user-ann", "Ann", "thx"),
        ]
        assert [(p["userId"], p["name"]) for p in session["participants"]] == [
            ("user-ann", "Ann"),
            ("user-bob", "Bob"),
        ]
    if cluster_processes():  # each process stamps what it applies with its own clock
        assert without_times(stored) == without_times(live)
    else:
        assert stored == live


# -- a join before the session exists -----------------------------------------------------------


async def test_join_before_create_makes_a_session_that_create_then_completes(
    settings: Settings,
) -> None:
    async with serving(settings, 1) as (server, (ann,)):
        status, _ = await server.http("GET", "/api/sessions/NEWROOM")
        assert status == 404
        await ann.join("NEWROOM", "Ann", "user-ann")

        found = await get_session(server, "NEWROOM")
        assert (found["code"], found["language"]) == (DEFAULT_CODE, DEFAULT_LANGUAGE)
        assert found["creatorName"] is None

        status, body = await server.http(
            "POST",
            "/api/sessions/create",
            json={
                "roomId": "NEWROOM",
                "creatorName": "Ann",
                "creatorUserId": "user-ann",
                "code": "# template\n",
                "language": "python",
            },
        )

        assert status == 201, body
        assert body["success"] is True
        assert body["session"]["roomId"] == "NEWROOM"
        session = await get_session(server, "NEWROOM")
        assert (session["creatorName"], session["creatorUserId"]) == ("Ann", "user-ann")
        assert (session["code"], session["language"]) == ("# template\n", "python")
        assert [(p["userId"], p["name"]) for p in session["participants"]] == [("user-ann", "Ann")]
        assert session["createdAt"] == found["createdAt"]
        status, body = await server.http(
            "POST", "/api/sessions/create", json={"roomId": "NEWROOM", "creatorName": "Eve"}
        )
        assert status == 400
        assert body["error"] == "Session already exists"


async def test_chat_before_create_is_kept_by_the_session(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"], "NEWROOM")
        await bob.call("chatMessage", {"roomId": "NEWROOM", "message": "early bird"})

        status, _ = await server.http(
            "POST", "/api/sessions/create", json={"roomId": "NEWROOM", "creatorName": "Ann"}
        )

        assert status == 201
        messages = (await get_session(server, "NEWROOM"))["messages"]
        assert [(m["userName"], m["message"]) for m in messages] == [("Bob", "early bird")]


async def test_create_after_typing_keeps_the_typed_code(settings: Settings) -> None:
    async with serving(settings, 1) as (server, (ann,)):
        await ann.join("NEWROOM", "Ann", "user-ann")
        await ann.call("codeChange", {"roomId": "NEWROOM", "code": "typed first"})

        status, _ = await server.http(
            "POST",
            "/api/sessions/create",
            json={"roomId": "NEWROOM", "creatorName": "Ann", "code": "template"},
        )

        assert status == 201
        session = await get_session(server, "NEWROOM")
        assert session["code"] == "typed first"
        assert session["creatorName"] == "Ann"


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("languageChange", {"roomId": "NEWROOM", "language": "python"}),
        ("chatMessage", {"roomId": "NEWROOM", "message": "hello?"}),
    ],
    ids=["languageChange", "chatMessage"],
)
async def test_create_before_any_typing_applies_the_initial_code(
    settings: Settings, event: str, payload: dict[str, Any]
) -> None:
    async with serving(settings, 1) as (server, (ann,)):
        await ann.join("NEWROOM", "Ann", "user-ann")
        assert (await ann.call(event, payload))["ok"] is True

        status, _ = await server.http(
            "POST",
            "/api/sessions/create",
            json={
                "roomId": "NEWROOM",
                "creatorName": "Ann",
                "code": "# template\n",
                "language": "python",
            },
        )

        assert status == 201
        session = await get_session(server, "NEWROOM")
        assert (session["code"], session["language"]) == ("# template\n", "python")


# -- bad input ----------------------------------------------------------------------------------


def payload_for(event: str, room_id: Any) -> dict[str, Any]:
    if event == "joinRoom":
        return {"roomId": room_id, "userName": "Mallory", "userId": "user-mallory"}
    return {"roomId": room_id, **ROOM_EVENTS.get(event, {})}


async def assert_nothing_happened(
    server: RunningServer, bob: Client, bob_mark: int, ann: Client, rooms: set[str] | None = None
) -> None:
    """Bob saw nothing, the room is untouched (no other room made), Ann's connection works."""
    await bob.quiet()
    assert names_since(bob, bob_mark) == []
    session = await get_session(server)
    assert session["version"] == 0
    assert session["code"] == DEFAULT_CODE
    assert session["messages"] == []
    assert set(server.rooms.rooms) == (rooms or {ROOM})
    answer = await ann.call("codeChange", {"roomId": ROOM, "code": "still usable"})
    assert answer["ok"] is True
    assert (await bob.next("codeUpdate"))["code"] == "still usable"


MISSING = object()


@pytest.mark.parametrize(
    "room_id",
    [MISSING, 42, {"$gt": ""}, None, "", ["ROOM1"], "ROOM/../x", "R" * 65],
    ids=["missing", "number", "object", "null", "empty", "array", "slashes", "too-long"],
)
async def test_bad_room_id_is_refused_for_every_event(settings: Settings, room_id: Any) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        bob_mark = len(bob.order)

        for count, event in enumerate(ALL_EVENTS, start=1):
            payload = payload_for(event, room_id)
            if room_id is MISSING:
                del payload["roomId"]
            answer = await ann.call(event, payload)
            assert_refused(answer, ann, event, "invalid_payload", count)

        await assert_nothing_happened(server, bob, bob_mark, ann)


@pytest.mark.parametrize(
    "payload",
    ["ROOM1", 42, ["ROOM1"], None, True],
    ids=["string", "number", "array", "null", "boolean"],
)
async def test_payload_that_is_not_an_object_is_refused_for_every_event(
    settings: Settings, payload: Any
) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        bob_mark = len(bob.order)

        for count, event in enumerate(ALL_EVENTS, start=1):
            answer = await ann.call(event, payload)
            assert_refused(answer, ann, event, "invalid_payload", count)

        await assert_nothing_happened(server, bob, bob_mark, ann)


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("joinRoom", {"roomId": ROOM, "userName": 7, "userId": "user-ann"}),
        ("joinRoom", {"roomId": ROOM, "userName": "Ann", "userId": {"$ne": None}}),
        ("codeChange", {"roomId": ROOM, "code": 12}),
        ("codeChange", {"roomId": ROOM}),
        ("codeChange", {"roomId": ROOM, "code": "x", "language": "<script>"}),
        ("languageChange", {"roomId": ROOM, "language": ""}),
        ("languageChange", {"roomId": ROOM}),
        ("chatMessage", {"roomId": ROOM, "message": 3}),
        ("chatMessage", {"roomId": ROOM, "message": {"text": "no message key"}}),
        ("chatMessage", {"roomId": ROOM}),
        ("sendCodeState", {"roomId": ROOM, "code": "x"}),
        ("cursorMove", {"roomId": ROOM, "position": "x" * 2000}),
    ],
    ids=[
        "join-name-number",
        "join-user-id-object",
        "code-number",
        "code-missing",
        "language-malformed",
        "language-empty",
        "language-missing",
        "chat-number",
        "chat-object-without-message",
        "chat-missing",
        "code-state-without-target",
        "cursor-too-large",
    ],
)
async def test_bad_field_is_refused_and_nothing_changes(
    settings: Settings, event: str, payload: dict[str, Any]
) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        bob_mark = len(bob.order)

        answer = await ann.call(event, payload)

        assert_refused(answer, ann, event, "invalid_payload", 1)
        await assert_nothing_happened(server, bob, bob_mark, ann)


async def test_event_without_any_payload_is_refused(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        bob_mark = len(bob.order)

        answer = await ann.sio.call("codeChange", timeout=5)

        assert_refused(answer, ann, "codeChange", "invalid_payload", 1)
        await assert_nothing_happened(server, bob, bob_mark, ann)


async def test_events_before_joining_are_refused_with_not_in_room(settings: Settings) -> None:
    async with serving(settings, 3) as (server, (ann, bob, stranger)):
        await join_all([ann, bob], ["Ann", "Bob"])
        bob_mark = len(bob.order)
        payloads = {**ROOM_EVENTS, "sendCodeState": {**ROOM_EVENTS["sendCodeState"]}}
        payloads["sendCodeState"]["targetUserId"] = sid(bob)

        for count, (event, fields) in enumerate(payloads.items(), start=1):
            answer = await stranger.call(event, {"roomId": ROOM, **fields})
            assert_refused(answer, stranger, event, "not_in_room", count)

        await assert_nothing_happened(server, bob, bob_mark, ann)
        assert (await stranger.call("leaveRoom", {"roomId": ROOM})) == {"ok": True}
        await ann.quiet()
        assert "userLeft" not in ann.events
        assert (await stranger.join(ROOM, "Sam", "user-sam"))["ok"] is True
        assert (await ann.next("userJoined", 2))["userName"] == "Sam"


async def test_events_for_a_room_the_sender_did_not_join_are_refused(
    settings: Settings,
) -> None:
    async with serving(settings, 3) as (server, (ann, bob, intruder)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await intruder.join(OTHER_ROOM, "Ivan", "user-ivan")
        bob_mark = len(bob.order)

        for count, (event, fields) in enumerate(ROOM_EVENTS.items(), start=1):
            answer = await intruder.call(event, {"roomId": ROOM, **fields})
            assert_refused(answer, intruder, event, "not_in_room", count)

        await assert_nothing_happened(server, bob, bob_mark, ann, {ROOM, OTHER_ROOM})
        own = await intruder.call("codeChange", {"roomId": OTHER_ROOM, "code": "mine"})
        assert own["ok"] is True


async def test_an_unknown_event_is_counted_and_never_answered_with_an_error(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        marks_before = marks(ann, bob)
        for event in ("fileContentChange", "call-start", "sendMessage", "joinProject"):
            await ann.emit(event, {"roomId": ROOM, "anything": 1})
        await ann.call("userTyping", {"roomId": ROOM})  # the socket still works
        await bob.next("userIsTyping")
        assert names_since(ann, marks_before[0]) == []
        assert names_since(bob, marks_before[1]) == ["userIsTyping"]
        unknown = server.app[EVENTS_KEY].unknown
        assert unknown == {
            "fileContentChange": 1,
            "call-start": 1,
            "sendMessage": 1,
            "joinProject": 1,
        }
