"""The meeting page's events (positional arguments): who hears `join-call`, `signal`,
`chat-message` and a departure; meetings apart from one another and from the editor room of
the same id, both ways; and the input, size and rate limits that refuse them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import socketio

from app.config import Settings
from tests.support import WAIT, Client, fast_settings, serving

pytestmark = pytest.mark.usefixtures("each_mode")  # one process, and a cluster of two

MEETING = "MEET1"
OTHER_MEETING = "MEET2"
TRANSPORTS = [
    pytest.param(["websocket"], id="websocket"),
    pytest.param(["polling"], id="polling"),
]
MEETING_EVENTS = {"user-joined", "user-left", "signal", "chat-message"}
SDP = json.dumps({"sdp": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}})
ICE = json.dumps({"ice": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0"}})


# -- helpers ----------------------------------------------------------------------------------


def sid(client: Client) -> str:
    return str(client.sio.get_sid("/"))


async def call(client: Client, event: str, *args: Any) -> Any:
    """Send an event with positional arguments and wait for its acknowledgement."""
    return await client.sio.call(event, args if len(args) != 1 else args[0], timeout=WAIT)


async def meet(members: list[Client], meeting: str = MEETING) -> None:
    """Each sends `join-call` in turn; returns once every one heard every later arrival."""
    for member in members:
        assert await call(member, "join-call", meeting) == {"ok": True}
    for position, member in enumerate(members):
        await member.next("user-joined", len(members) - position)


async def hang_up(client: Client) -> None:
    """Disconnect deliberately, as socket.io-client does: send the DISCONNECT packet first."""
    packet = client.sio.packet_class(socketio.packet.DISCONNECT, namespace="/")
    await client.sio._send_packet(packet)


def names_since(client: Client, mark: int) -> list[str]:
    return [event for event, _ in client.order[mark:] if event != "sessionSaved"]


def marks(*clients: Client) -> list[int]:
    return [len(client.order) for client in clients]


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


# -- join-call ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_join_call_tells_every_meeting_socket_the_newcomer_and_everyone_in_join_order(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 4, transports) as (_, (amy, ben, cy, elsewhere)):
        assert await call(elsewhere, "join-call", OTHER_MEETING) == {"ok": True}
        await elsewhere.next("user-joined")
        elsewhere_mark = len(elsewhere.order)

        await meet([amy, ben, cy])

        first, second, third = sid(amy), sid(ben), sid(cy)
        assert amy.events["user-joined"] == [
            (first, [first]),
            (second, [first, second]),
            (third, [first, second, third]),
        ]
        assert ben.events["user-joined"] == [
            (second, [first, second]),
            (third, [first, second, third]),
        ]
        assert cy.events["user-joined"] == [(third, [first, second, third])]
        await amy.quiet()
        assert names_since(elsewhere, elsewhere_mark) == []
        assert all(set(c.events) == {"user-joined"} for c in (amy, ben, cy))


async def test_joining_another_meeting_leaves_the_first_one(settings: Settings) -> None:
    async with serving(settings, 3) as (_, (amy, ben, dee)):
        await meet([amy, ben])
        await meet([dee], OTHER_MEETING)

        assert await call(ben, "join-call", OTHER_MEETING) == {"ok": True}

        assert await amy.next("user-left") == sid(ben)
        assert await dee.next("user-joined", 2) == (sid(ben), [sid(dee), sid(ben)])
        assert await ben.next("user-joined", 2) == (sid(ben), [sid(dee), sid(ben)])
        assert_refused(await call(amy, "signal", sid(ben), SDP), amy, "signal", "not_in_room")


# -- signal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_signal_reaches_only_its_target_with_the_sender_id(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (_, (amy, ben, cy)):
        await meet([amy, ben, cy])
        amy_mark, cy_mark = marks(amy, cy)

        offered = await call(amy, "signal", sid(ben), SDP)
        answered = await call(ben, "signal", sid(amy), ICE)

        assert offered == answered == {"ok": True}
        assert await ben.next("signal") == (sid(amy), SDP)
        assert await amy.next("signal") == (sid(ben), ICE)
        await cy.quiet()
        assert names_since(amy, amy_mark) == ["signal"]
        assert names_since(cy, cy_mark) == []


async def test_signal_to_a_socket_outside_the_meeting_is_refused_and_delivers_nothing(
    settings: Settings,
) -> None:
    async with serving(settings, 4) as (_, (amy, ben, editor, elsewhere)):
        await meet([amy, ben])
        await meet([elsewhere], OTHER_MEETING)
        assert (await editor.join(MEETING, "Ed", "user-ed"))["ok"] is True
        watched = [ben, editor, elsewhere]
        before = marks(*watched)

        # The editor socket of the room with the meeting's id, another meeting's socket, the
        # sender itself, an id nobody has, the meeting's own name.
        for target in (sid(editor), sid(elsewhere), sid(amy), "no-such-socket", MEETING):
            assert_refused(await call(amy, "signal", target, SDP), amy, "signal", "not_in_room")

        await ben.quiet()
        for client, mark in zip(watched, before, strict=True):
            assert names_since(client, mark) == []


async def test_signal_and_chat_before_joining_a_meeting_are_refused(settings: Settings) -> None:
    async with serving(settings, 2) as (_, (amy, stranger)):
        await meet([amy])
        mark = len(amy.order)

        signalled = await call(stranger, "signal", sid(amy), SDP)
        assert_refused(signalled, stranger, "signal", "not_in_room")
        chatted = await call(stranger, "chat-message", "hello?", "Stranger")
        assert_refused(chatted, stranger, "chat-message", "not_in_room")

        await amy.quiet()
        assert names_since(amy, mark) == []


# -- chat-message ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_chat_message_reaches_the_others_of_the_meeting_with_the_sender_id(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 4, transports) as (_, (amy, ben, cy, elsewhere)):
        await meet([amy, ben, cy])
        await meet([elsewhere], OTHER_MEETING)
        amy_mark, elsewhere_mark = marks(amy, elsewhere)

        answer = await call(amy, "chat-message", "hello all", "Amy")

        assert answer == {"ok": True}
        assert await ben.next("chat-message") == ("hello all", "Amy", sid(amy))
        assert await cy.next("chat-message") == ("hello all", "Amy", sid(amy))
        await amy.quiet()
        assert names_since(amy, amy_mark) == []
        assert names_since(elsewhere, elsewhere_mark) == []
        # Rejoining the same meeting does not make a later message arrive twice.
        await call(amy, "join-call", MEETING)
        await call(amy, "chat-message", "once", "Amy")
        await ben.next("chat-message", 2)
        await ben.quiet()
        assert [args[0] for args in ben.events["chat-message"]] == ["hello all", "once"]


# -- leaving --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["hang-up", "dropped"])
async def test_a_departure_tells_the_others_of_the_meeting(settings: Settings, how: str) -> None:
    async with serving(settings, 4) as (server, (amy, ben, cy, elsewhere)):
        await meet([amy, ben, cy])
        await meet([elsewhere], OTHER_MEETING)
        ben_sid, elsewhere_mark = sid(ben), len(elsewhere.order)

        if how == "hang-up":
            await hang_up(ben)
        else:
            await ben.sio.eio.ws.close()  # no DISCONNECT packet: the network went away

        assert await amy.next("user-left") == ben_sid
        assert await cy.next("user-left") == ben_sid
        await amy.quiet()
        assert names_since(elsewhere, elsewhere_mark) == []
        # The one gone is no peer any more; a newcomer is listed without it.
        assert_refused(await call(amy, "signal", ben_sid, SDP), amy, "signal", "not_in_room")
        dee = await Client().connect(server.url)
        try:
            await call(dee, "join-call", MEETING)
            assert await dee.next("user-joined") == (sid(dee), [sid(amy), sid(cy), sid(dee)])
        finally:
            await dee.close()


# -- meetings and editor rooms of the same id ------------------------------------------------------


async def test_meetings_and_editor_rooms_with_the_same_ids_are_apart_both_ways(
    settings: Settings,
) -> None:
    async with serving(settings, 7) as (server, clients):
        amy, ben, cy, ed, eve, dee, dan = clients
        meetings = {MEETING: [amy, ben], OTHER_MEETING: [cy]}
        editors = {MEETING: [ed, eve], OTHER_MEETING: [dee, dan]}
        for room_id, members in editors.items():
            for member in members:
                assert (await member.join(room_id, f"editor {sid(member)}"))["ok"] is True
        for room_id, members in meetings.items():
            await meet(members, room_id)

        # Everything an editor room hears, and everything a meeting hears.
        for room_id, (first, second) in editors.items():
            await first.call("codeChange", {"roomId": room_id, "code": f"code of {room_id}"})
            await first.call("chatMessage", {"roomId": room_id, "message": "editor chat"})
            await first.call("whiteboardChange", {"roomId": room_id, "snapshot": [1]})
            await first.call("userReadyForCall", {"roomId": room_id})
            await second.call("raiseHand", {"roomId": room_id, "timestamp": 1})
            await second.next("newMessage")
        await call(amy, "signal", sid(ben), SDP)
        await call(ben, "chat-message", "meeting chat", "Ben")
        await call(cy, "chat-message", "alone", "Cy")
        await ben.next("signal")
        await amy.next("chat-message")
        ben_sid = sid(ben)
        await hang_up(ben)
        await amy.next("user-left")
        await ed.call("leaveRoom", {"roomId": MEETING})
        await eve.next("userLeft")
        await amy.quiet()

        for members in editors.values():
            for editor in members:
                assert not MEETING_EVENTS & set(editor.events), editor.events.keys()
        for members in meetings.values():
            for member in members:
                assert set(member.events) <= MEETING_EVENTS, member.events.keys()
        # Meeting peers list meeting sockets only; the room's users are its editors only.
        assert amy.events["user-joined"][-1] == (ben_sid, [sid(amy), ben_sid])
        assert cy.events["user-joined"] == [(sid(cy), [sid(cy)])]
        assert [u["id"] for u in dan.events["roomUsers"][-1]] == [sid(dee), sid(dan)]
        assert [u["id"] for u in eve.events["roomUsers"][-1]] == [sid(eve)]
        assert amy.events["chat-message"] == [("meeting chat", "Ben", ben_sid)]
        assert amy.events["user-left"] == [ben_sid]
        assert cy.events.get("chat-message") is None
        status, body = await server.http("GET", f"/api/sessions/{MEETING}")
        assert status == 200
        assert [m["message"] for m in body["session"]["messages"]] == ["editor chat"]


# -- bad input, limits and rates -------------------------------------------------------------------

LIMITS = {"max_signal_bytes": 64, "max_chat_length": 10, "max_user_name_length": 8}
NOTHING = object()  # the event is sent without any argument


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("join-call", (NOTHING,)),
        ("join-call", (42,)),
        ("join-call", ("MEET/../x",)),
        ("join-call", ("M" * 65,)),
        ("join-call", ({"roomId": MEETING},)),
        ("signal", ("TARGET",)),
        ("signal", ("TARGET", {"sdp": {}})),
        ("signal", ("TARGET", "x" * 65)),
        ("signal", ("", SDP)),
        ("signal", (7, SDP)),
        ("chat-message", (NOTHING,)),
        ("chat-message", (42, "Amy")),
        ("chat-message", ("x" * 11, "Amy")),
        ("chat-message", ("hi", "a-very-long-name")),
        ("chat-message", ("hi", 5)),
    ],
    ids=[
        "join-no-argument",
        "join-number",
        "join-malformed-id",
        "join-id-too-long",
        "join-object",
        "signal-no-message",
        "signal-message-object",
        "signal-message-over-signal-bytes",
        "signal-empty-target",
        "signal-target-number",
        "chat-no-argument",
        "chat-number",
        "chat-too-long",
        "chat-sender-too-long",
        "chat-sender-number",
    ],
)
async def test_invalid_meeting_event_is_refused_and_nothing_is_sent(
    tmp_path: Path, event: str, args: tuple[Any, ...]
) -> None:
    async with serving(fast_settings(tmp_path, **LIMITS), 2) as (_, (amy, ben)):
        await meet([amy, ben])
        ben_mark = len(ben.order)
        args = tuple(sid(ben) if arg == "TARGET" else arg for arg in args)

        if args == (NOTHING,):
            answer = await amy.sio.call(event, timeout=WAIT)
        else:
            answer = await call(amy, event, *args)

        assert_refused(answer, amy, event, "invalid_payload")
        await ben.quiet(0.1)
        assert names_since(ben, ben_mark) == []


async def test_a_full_meeting_refuses_the_next_socket_and_tells_nobody(tmp_path: Path) -> None:
    async with serving(fast_settings(tmp_path, max_clients_per_room=2), 3) as (_, (a, b, c)):
        await meet([a, b])
        a_mark, b_mark = marks(a, b)

        answer = await call(c, "join-call", MEETING)

        assert_refused(answer, c, "join-call", "room_full")
        await a.quiet()
        assert names_since(a, a_mark) == names_since(b, b_mark) == []
        assert "user-joined" not in c.events
        assert_refused(await call(c, "signal", sid(a), SDP), c, "signal", "not_in_room")


async def test_a_socket_refused_by_a_full_meeting_stays_in_its_own(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_clients_per_room=2)
    async with serving(settings, 4) as (_, (amy, ben, cy, dee)):
        await meet([amy, ben])
        await meet([cy, dee], OTHER_MEETING)
        dee_mark = len(dee.order)

        answer = await call(cy, "join-call", MEETING)

        assert_refused(answer, cy, "join-call", "room_full")
        await dee.quiet()
        assert names_since(dee, dee_mark) == []  # no `user-left` for Cy
        assert await call(cy, "signal", sid(dee), SDP) == {"ok": True}


# family: (the event, its arguments, what another member receives)
RATES: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "call": ("join-call", (MEETING,), "user-joined"),
    "signal": ("signal", ("TARGET", SDP), "signal"),
    "chat": ("chat-message", ("hi", "Amy"), "chat-message"),
}


@pytest.mark.parametrize("family", list(RATES))
async def test_meeting_events_over_their_rate_are_refused_with_rate_limited(
    tmp_path: Path, family: str
) -> None:
    event, args, relayed = RATES[family]
    overrides = {f"rate_{family}_per_second": 1, f"rate_{family}_burst": 1}
    async with serving(fast_settings(tmp_path, **overrides), 2) as (_, (amy, ben)):
        await meet([ben])
        if family != "call":  # Amy's one join-call is her only token of that family
            await meet([amy])
            await ben.next("user-joined", 2)
        args = tuple(sid(ben) if arg == "TARGET" else arg for arg in args)
        ben_mark = len(ben.order)

        answers = [await call(amy, event, *args) for _ in range(3)]

        assert answers[0] == {"ok": True}
        for answer in answers[1:]:
            assert answer["ok"] is False and answer["error"]["code"] == "rate_limited", answer
        # One error event per family per second; the second refusal is only acknowledged.
        assert [e for e in amy.events["error"] if e["code"] == "rate_limited"] == [
            {"event": event, "code": "rate_limited", "message": answers[1]["error"]["message"]}
        ]
        await ben.quiet(0.1)
        assert names_since(ben, ben_mark) == [relayed]
