"""The whiteboard and the editor's calls: who hears each event with which keys, signalling that
only ever reaches another member of the sender's room, calls that end for those who leave or
drop, the limits and rates that refuse them, and whiteboards kept by every store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.support import (
    Client,
    RunningServer,
    cluster_processes,
    fast_settings,
    running_server,
    serving,
)

pytest_plugins = ("tests.store_backends",)

# Run on one process, and on two in cluster mode (clients in turn on each process).
pytestmark = pytest.mark.usefixtures("each_mode")

ROOM = "BOARD1"
OTHER_ROOM = "BOARD2"
TRANSPORTS = [
    pytest.param(["websocket"], id="websocket"),
    pytest.param(["polling"], id="polling"),
]
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"}
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}
# A tldraw `store.serialize()` map; keys MongoDB would refuse as field names on purpose.
SNAPSHOT = {
    "shape:a1": {"id": "shape:a1", "type": "geo", "x": 12.5, "y": -3, "props": {"w": 100}},
    "page.1": {"$ref": "not a reference", "name": "Page 1"},
}


# -- helpers ----------------------------------------------------------------------------------


def sid(client: Client) -> str:
    return str(client.sio.get_sid("/"))


def who(client: Client, name: str) -> dict[str, Any]:
    return {"userId": sid(client), "userName": name}


async def join_all(clients: list[Client], names: list[str], room_id: str = ROOM) -> None:
    """Join in order (app user id `user-<name>`); return once every join reached everyone."""
    for client, name in zip(clients, names, strict=True):
        assert (await client.join(room_id, name, f"user-{name.lower()}"))["ok"] is True
    for position, client in enumerate(clients):
        await client.next("roomUsers", len(clients) - position)


def since(client: Client, mark: int) -> list[tuple[str, Any]]:
    """Events received after `mark` (an index into client.order), store notices left out."""
    return [(event, data) for event, data in client.order[mark:] if event != "sessionSaved"]


def names_since(client: Client, mark: int) -> list[str]:
    return [event for event, _ in since(client, mark)]


def marks(*clients: Client) -> list[int]:
    return [len(client.order) for client in clients]


async def get_session(server: RunningServer, room_id: str = ROOM) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{room_id}")
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


def assert_refused(answer: Any, client: Client, event: str, code: str) -> None:
    """The acknowledgement says why, and the same reason reached the sender as its last error."""
    assert answer["ok"] is False, answer
    assert answer["error"]["code"] == code, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert client.events["error"][-1] == {
        "event": event,
        "code": code,
        "message": answer["error"]["message"],
    }


async def ready(*members: Client) -> None:
    """Each joins the call in turn."""
    for member in members:
        assert await member.call("userReadyForCall", {"roomId": ROOM}) == {"ok": True}


# -- whiteboard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_whiteboard_change_reaches_others_and_is_stored_as_sent(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (server, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        ann_mark, outsider_mark = marks(ann, outsider)
        assert (await get_session(server))["whiteboardElements"] is None

        answer = await ann.call("whiteboardChange", {"roomId": ROOM, "snapshot": SNAPSHOT})

        assert answer == {"ok": True}
        assert await bob.next("whiteboardUpdate") == {"snapshot": SNAPSHOT}
        assert (await get_session(server))["whiteboardElements"] == SNAPSHOT
        # An array snapshot (the older client's elements) is kept as an array.
        elements = [{"id": "e1", "type": "rectangle"}, {"id": "e2", "type": "arrow"}]
        await bob.call("whiteboardChange", {"roomId": ROOM, "snapshot": elements})
        assert await ann.next("whiteboardUpdate") == {"snapshot": elements}
        assert (await get_session(server))["whiteboardElements"] == elements
        await bob.quiet()
        assert names_since(ann, ann_mark) == ["whiteboardUpdate"]
        assert bob.events["whiteboardUpdate"] == [{"snapshot": SNAPSHOT}]
        assert names_since(outsider, outsider_mark) == []


class Outliving:
    """The test's store, used by one server after another: the fixture opens and closes it, as
    a database outlives the server processes that use it."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def open(self) -> None:
        """Open already."""

    async def close(self) -> None:
        """Left open for the next server."""


async def test_whiteboard_survives_unloading_and_a_restart_on_every_store(
    tmp_path: Path, store: Any
) -> None:
    settings = fast_settings(tmp_path, room_idle_seconds=0.05)
    async with running_server(settings, Outliving(store)) as server:
        ann = await Client().connect(server.url)
        try:
            await ann.join(ROOM, "Ann", "user-ann")
            await ann.call("whiteboardChange", {"roomId": ROOM, "snapshot": SNAPSHOT})
            await ann.call("leaveRoom", {"roomId": ROOM})
        finally:
            await ann.close()
        deadline = time.monotonic() + 5
        while ROOM in server.rooms.rooms:
            assert time.monotonic() < deadline, "the room was not unloaded"
            await asyncio.sleep(0.01)
        unloaded = await get_session(server)
    async with running_server(settings, Outliving(store)) as restarted:
        stored = await get_session(restarted)

    assert unloaded["whiteboardElements"] == stored["whiteboardElements"] == SNAPSHOT


# -- relays: whiteboard open/close, screen share, hands -------------------------------------------

# event sent (with its extra fields) -> the event others receive (its extra fields)
RELAYS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("whiteboardOpened", {}, "whiteboardOpenedByUser", {}),
    ("whiteboardClosed", {}, "whiteboardClosedByUser", {}),
    ("userReadyForScreenShare", {}, "userReadyForScreenShare", {}),
    ("screenShareStarted", {}, "userScreenShareStarted", {}),
    ("screenShareStopped", {}, "userScreenShareStopped", {}),
    ("raiseHand", {"timestamp": 1700000000123}, "userRaisedHand", {"timestamp": 1700000000123}),
    ("lowerHand", {}, "userLoweredHand", {}),
]


@pytest.mark.parametrize(("event", "sent", "relayed", "extra"), RELAYS, ids=[r[0] for r in RELAYS])
async def test_relayed_event_reaches_others_with_the_sender_but_not_the_sender(
    settings: Settings, event: str, sent: dict[str, Any], relayed: str, extra: dict[str, Any]
) -> None:
    async with serving(settings, 4) as (_, (ann, bob, cat, outsider)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        ann_mark, outsider_mark = marks(ann, outsider)

        answer = await ann.call(event, {"roomId": ROOM, **sent})

        assert answer == {"ok": True}
        expected = {**who(ann, "Ann"), **extra}
        assert await bob.next(relayed) == expected
        assert await cat.next(relayed) == expected
        await ann.quiet()
        assert names_since(ann, ann_mark) == []
        assert names_since(outsider, outsider_mark) == []


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_raised_and_lowered_hands_reach_others(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 2, transports) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        raised = await bob.call("raiseHand", {"roomId": ROOM, "timestamp": 1700000000000})
        lowered = await bob.call("lowerHand", {"roomId": ROOM})

        assert raised == lowered == {"ok": True}
        await ann.next("userLoweredHand")
        assert [(e, d) for e, d in ann.order if e.startswith("user") and "Hand" in e] == [
            ("userRaisedHand", {**who(bob, "Bob"), "timestamp": 1700000000000}),
            ("userLoweredHand", who(bob, "Bob")),
        ]


async def test_media_track_ended_is_accepted_and_sends_nothing(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        ann_mark, bob_mark = marks(ann, bob)

        answer = await ann.call(
            "media-track-ended", {"roomId": ROOM, "to": sid(bob), "kind": "video"}
        )

        assert answer == {"ok": True}
        await bob.quiet()
        assert names_since(ann, ann_mark) == names_since(bob, bob_mark) == []


# -- calls -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_a_call_between_two_members_connects_them_by_offer_answer_and_candidates(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 4, transports) as (_, (ann, bob, cat, outsider)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        cat_mark, outsider_mark = marks(cat, outsider)

        # Ann is first: nobody to list. Bob is told Ann is there; the room hears each.
        await ready(ann)
        assert await bob.next("userReadyForCall") == {**who(ann, "Ann"), "isReconnect": False}
        await ready(bob)
        assert await bob.next("existingCallParticipants") == {
            "participants": [who(ann, "Ann")],
            "isReconnect": False,
        }
        assert await ann.next("userReadyForCall") == {**who(bob, "Bob"), "isReconnect": False}
        assert "existingCallParticipants" not in ann.events
        ann_mark, bob_mark = marks(ann, bob)

        # Bob, the newcomer, offers; Ann answers; both trade candidates.
        offered = await bob.call(
            "webrtc-offer", {"roomId": ROOM, "to": sid(ann), "offer": OFFER, "isRestart": False}
        )
        answered = await ann.call(
            "webrtc-answer",
            {"roomId": ROOM, "to": sid(bob), "answer": ANSWER, "userName": "Mallory"},
        )
        from_ann = await ann.call(
            "ice-candidate", {"roomId": ROOM, "to": sid(bob), "candidate": CANDIDATE}
        )
        from_bob = await bob.call(
            "ice-candidate", {"roomId": ROOM, "to": sid(ann), "candidate": CANDIDATE}
        )

        assert offered == answered == from_ann == from_bob == {"ok": True}
        await ann.next("ice-candidate")
        await bob.next("ice-candidate")
        assert since(ann, ann_mark) == [
            ("webrtc-offer", {"offer": OFFER, "from": sid(bob), "userName": "Bob", "roomId": ROOM}),
            (
                "ice-candidate",
                {"candidate": CANDIDATE, "from": sid(bob), "userName": "Bob", "roomId": ROOM},
            ),
        ]
        assert since(bob, bob_mark) == [
            (  # the server's name for Ann, not the one the payload claims
                "webrtc-answer",
                {"answer": ANSWER, "from": sid(ann), "userName": "Ann", "roomId": ROOM},
            ),
            (
                "ice-candidate",
                {"candidate": CANDIDATE, "from": sid(ann), "userName": "Ann", "roomId": ROOM},
            ),
        ]
        await cat.quiet()
        assert names_since(cat, cat_mark) == ["userReadyForCall", "userReadyForCall"]
        assert names_since(outsider, outsider_mark) == []

        assert await cat.call("checkRoomCallStatus", {"roomId": ROOM}) == {"ok": True}
        assert await cat.next("roomCallStatus") == {
            "roomId": ROOM,
            "hasActiveCall": True,
            "participantCount": 2,
            "participants": [who(ann, "Ann"), who(bob, "Bob")],
        }


async def test_a_reconnecting_participant_is_announced_as_such(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ready(ann)

        answer = await bob.call("userReadyForCall", {"roomId": ROOM, "isReconnecting": True})

        assert answer == {"ok": True}
        assert await ann.next("userReadyForCall") == {**who(bob, "Bob"), "isReconnect": True}
        assert await bob.next("existingCallParticipants") == {
            "participants": [who(ann, "Ann")],
            "isReconnect": True,
        }


async def test_call_status_without_a_call_says_so(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        bob_mark = len(bob.order)

        assert await ann.call("checkRoomCallStatus", {"roomId": ROOM}) == {"ok": True}

        assert await ann.next("roomCallStatus") == {
            "roomId": ROOM,
            "hasActiveCall": False,
            "participantCount": 0,
            "participants": [],
        }
        await bob.quiet()
        assert names_since(bob, bob_mark) == []


@pytest.mark.parametrize("event", ["webrtc-offer", "webrtc-answer", "ice-candidate"])
async def test_signalling_to_a_socket_that_is_not_another_member_is_refused(
    settings: Settings, event: str
) -> None:
    async with serving(settings, 4) as (_, (ann, bob, outsider, lonely)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        await ready(ann, bob)
        await outsider.call("userReadyForCall", {"roomId": OTHER_ROOM})
        await ann.next("userReadyForCall")
        watched = [ann, bob, outsider, lonely]
        before = marks(*watched)
        key = {"webrtc-offer": "offer", "webrtc-answer": "answer"}.get(event, "candidate")

        # Another room's socket (in a call of its own), a socket in no room, the sender
        # itself, a socket id that does not exist, the room's own name.
        for target in (sid(outsider), sid(lonely), sid(ann), "no-such-socket", ROOM):
            payload = {"roomId": ROOM, "to": target, key: {"x": 1}}
            assert_refused(await ann.call(event, payload), ann, event, "not_in_room")

        await bob.quiet()
        for client, mark in zip(watched, before, strict=True):
            assert [e for e in names_since(client, mark) if e != "error"] == []


async def test_leaving_the_call_updates_the_count_and_tells_the_others(
    settings: Settings,
) -> None:
    async with serving(settings, 3) as (_, (ann, bob, cat)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        await ready(ann, bob, cat)
        await ann.next("userReadyForCall", 2)
        ann_mark, cat_mark = marks(ann, cat)

        assert await cat.call("userLeftCall", {"roomId": ROOM}) == {"ok": True}

        count = {"roomId": ROOM, "count": 2}
        await ann.next("userLeftCall")
        assert since(ann, ann_mark) == [
            ("callParticipantsCount", count),
            ("userLeftCall", who(cat, "Cat")),
        ]
        assert await cat.next("callParticipantsCount") == count  # the whole room
        await cat.quiet()
        assert since(cat, cat_mark) == [("callParticipantsCount", count)]
        await bob.call("checkRoomCallStatus", {"roomId": ROOM})
        status = await bob.next("roomCallStatus")
        assert (status["participantCount"], status["participants"]) == (2, [who(ann, "Ann")])


async def test_leaving_the_room_takes_a_participant_out_of_the_call(settings: Settings) -> None:
    if cluster_processes():
        pytest.skip(
            "a departure reaches the other processes a moment after it happens: a join there "
            "right after the last caller left may still hear of the call"
        )
    async with serving(settings, 4) as (_, (ann, bob, cat, dan)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        await ready(ann, bob, cat)
        await ann.next("userReadyForCall", 2)
        ann_mark = len(ann.order)
        cat_sid = sid(cat)

        assert await cat.call("leaveRoom", {"roomId": ROOM}) == {"ok": True}

        await ann.next("userLeftCall")
        assert [(e, d) for e, d in since(ann, ann_mark) if "all" in e] == [
            ("callParticipantsCount", {"roomId": ROOM, "count": 2}),
            ("userLeftCall", {"userId": cat_sid, "userName": "Cat"}),
        ]
        # The last ones out end the call: a newcomer hears of none.
        await bob.call("leaveRoom", {"roomId": ROOM})
        assert await ann.next("userLeftCall", 2) == who(bob, "Bob")
        await ann.call("leaveRoom", {"roomId": ROOM})
        await dan.join(ROOM, "Dan", "user-dan")
        await dan.call("checkRoomCallStatus", {"roomId": ROOM})
        assert (await dan.next("roomCallStatus"))["hasActiveCall"] is False
        assert "callActiveInRoom" not in dan.events
        assert "callParticipantsCount" not in dan.events


async def test_a_joiner_hears_of_the_active_call_before_the_user_list(
    settings: Settings,
) -> None:
    async with serving(settings, 3) as (_, (ann, bob, cat)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ready(ann, bob)

        await cat.join(ROOM, "Cat", "user-cat")

        await cat.next("roomUsers")
        assert cat.order[:3] == [
            ("callActiveInRoom", {"roomId": ROOM}),
            ("callParticipantsCount", {"roomId": ROOM, "count": 2}),
            ("roomUsers", cat.events["roomUsers"][0]),
        ]


async def test_a_dropped_participant_leaves_the_call_after_the_call_reconnect_delay(
    tmp_path: Path,
) -> None:
    delay = 0.3
    settings = fast_settings(tmp_path, call_reconnect_seconds=delay, reconnect_grace_seconds=5)
    async with serving(settings, 3) as (_, (ann, bob, cat)):
        await join_all([ann, bob, cat], ["Ann", "Bob", "Cat"])
        await ready(ann, bob)
        await ann.next("userReadyForCall")
        ann_mark, bob_who = len(ann.order), who(bob, "Bob")

        await bob.sio.eio.ws.close()  # the network goes away: no DISCONNECT packet
        dropped_at = time.monotonic()

        assert await ann.next("userTemporarilyDisconnected") == bob_who
        assert await cat.next("userTemporarilyDisconnected") == bob_who
        timeout = {**bob_who, "reason": "timeout"}
        assert await ann.next("userLeftCall", within=delay + 2) == timeout
        assert time.monotonic() - dropped_at >= delay - 0.05
        assert await cat.next("userLeftCall") == timeout
        await ann.quiet(0.1)
        calls = [e for e in names_since(ann, ann_mark) if "all" in e or "Disconnected" in e]
        assert calls == ["userTemporarilyDisconnected", "userLeftCall"]  # and no count
        await ann.call("checkRoomCallStatus", {"roomId": ROOM})
        assert (await ann.next("roomCallStatus"))["participantCount"] == 1


# -- bad input, strangers, limits, rates -----------------------------------------------------------

SIGNAL_LIMITS = {"max_signal_bytes": 64, "max_whiteboard_bytes": 64}


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        ("whiteboardChange", {}),
        ("whiteboardChange", {"snapshot": {"shape": "x" * 64}}),
        ("webrtc-offer", {"offer": OFFER}),
        ("webrtc-offer", {"to": "TARGET"}),
        ("webrtc-offer", {"to": "", "offer": {}}),
        ("webrtc-offer", {"to": "s" * 65, "offer": {}}),
        ("webrtc-offer", {"to": 7, "offer": {}}),
        ("webrtc-offer", {"to": "TARGET", "offer": {"sdp": "x" * 64}}),
        ("webrtc-answer", {"to": "TARGET"}),
        ("webrtc-answer", {"to": "TARGET", "answer": {"sdp": "x" * 64}}),
        ("ice-candidate", {"to": "TARGET"}),
        ("ice-candidate", {"to": "TARGET", "candidate": ["c" * 64]}),
        ("userReadyForCall", {"isReconnecting": "yes"}),
        ("raiseHand", {"timestamp": "now"}),
        ("raiseHand", {"timestamp": 2**60}),
        ("media-track-ended", {"kind": "video"}),
    ],
    ids=[
        "whiteboard-no-snapshot",
        "whiteboard-over-its-bytes",
        "offer-no-target",
        "offer-no-offer",
        "offer-empty-target",
        "offer-target-too-long",
        "offer-target-number",
        "offer-over-signal-bytes",
        "answer-no-answer",
        "answer-over-signal-bytes",
        "candidate-no-candidate",
        "candidate-over-signal-bytes",
        "ready-reconnecting-not-boolean",
        "hand-timestamp-string",
        "hand-timestamp-too-large",
        "track-ended-no-target",
    ],
)
async def test_invalid_whiteboard_or_call_event_is_refused_and_nothing_is_sent(
    tmp_path: Path, event: str, fields: dict[str, Any]
) -> None:
    async with serving(fast_settings(tmp_path, **SIGNAL_LIMITS), 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        payload = {
            "roomId": ROOM,
            **{k: sid(bob) if v == "TARGET" else v for k, v in fields.items()},
        }
        bob_mark = len(bob.order)

        answer = await ann.call(event, payload)

        assert_refused(answer, ann, event, "invalid_payload")
        await bob.quiet(0.1)
        assert names_since(bob, bob_mark) == []
        assert (await get_session(server))["whiteboardElements"] is None
        await ann.call("checkRoomCallStatus", {"roomId": ROOM})
        assert (await ann.next("roomCallStatus"))["hasActiveCall"] is False


ROOM_EVENTS: dict[str, dict[str, Any]] = {
    "whiteboardChange": {"snapshot": SNAPSHOT},
    "whiteboardOpened": {},
    "whiteboardClosed": {},
    "userReadyForCall": {},
    "webrtc-offer": {"to": "TARGET", "offer": OFFER},
    "webrtc-answer": {"to": "TARGET", "answer": ANSWER},
    "ice-candidate": {"to": "TARGET", "candidate": CANDIDATE},
    "userLeftCall": {},
    "checkRoomCallStatus": {},
    "media-track-ended": {"to": "TARGET", "kind": "audio"},
    "userReadyForScreenShare": {},
    "screenShareStarted": {},
    "screenShareStopped": {},
    "raiseHand": {"timestamp": 1},
    "lowerHand": {},
}


async def test_events_from_sockets_outside_the_room_are_refused_with_not_in_room(
    settings: Settings,
) -> None:
    async with serving(settings, 4) as (server, (ann, bob, stranger, intruder)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ready(ann)
        await intruder.join(OTHER_ROOM, "Ivan", "user-ivan")
        ann_mark, bob_mark = marks(ann, bob)

        for client in (stranger, intruder):
            for event, fields in ROOM_EVENTS.items():
                payload = {k: sid(ann) if v == "TARGET" else v for k, v in fields.items()}
                answer = await client.call(event, {"roomId": ROOM, **payload})
                assert_refused(answer, client, event, "not_in_room")

        await bob.quiet()
        assert names_since(ann, ann_mark) == names_since(bob, bob_mark) == []
        assert (await get_session(server))["whiteboardElements"] is None


# family: (the event, its payload, what another member receives)
RATES: dict[str, tuple[str, dict[str, Any], str]] = {
    "whiteboard": ("whiteboardChange", {"snapshot": [1]}, "whiteboardUpdate"),
    "call": ("raiseHand", {"timestamp": 1}, "userRaisedHand"),
    "signal": ("ice-candidate", {"to": "TARGET", "candidate": CANDIDATE}, "ice-candidate"),
}


@pytest.mark.parametrize("family", list(RATES))
async def test_whiteboard_and_call_events_over_their_rate_are_refused_with_rate_limited(
    tmp_path: Path, family: str
) -> None:
    event, fields, relayed = RATES[family]
    overrides = {f"rate_{family}_per_second": 1, f"rate_{family}_burst": 1}
    async with serving(fast_settings(tmp_path, **overrides), 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        payload = {"roomId": ROOM, **fields}
        if "to" in payload:
            payload["to"] = sid(bob)

        answers = [await ann.call(event, payload) for _ in range(3)]

        assert answers[0] == {"ok": True}
        for answer in answers[1:]:
            assert answer["ok"] is False and answer["error"]["code"] == "rate_limited", answer
        # One error event per family per second; the second refusal is only acknowledged.
        assert [e for e in ann.events["error"] if e["code"] == "rate_limited"] == [
            {"event": event, "code": "rate_limited", "message": answers[1]["error"]["message"]}
        ]
        await bob.quiet(0.1)
        assert len(bob.events[relayed]) == 1
        assert await ann.call("userTyping", {"roomId": ROOM}) == {"ok": True}  # other families
