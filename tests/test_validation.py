"""Hostile input, table-driven: every socket event and every REST body and path, with wrong
types, missing fields, sizes one past each limit (refused) and at the limit (accepted intact),
unicode edge cases and injection shapes.

A refused socket event gets exactly its documented answer: an `error {event, code, message}`
event to the sender and the `{ok: false, error: {code, message}}` acknowledgement. Nothing
else happens: the connection stays usable, a member of the sender's room and a healthy client
in another room see nothing (the healthy one keeps being served), and the store and the live
rooms hold nothing from it. A refused REST request answers JSON `{error, message}` with a 4xx
status (400, 413 or 415), never 5xx, and the store holds nothing from it either.

One server serves the whole module (it starts once; each case brings a fresh sender).
"Nothing arrived" is checked without sleeping: after the refused event the sender emits a
marker the member must relay-receive, and the healthy client makes a call of its own; anything
the refused event caused was queued to those sockets before the marker or the answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio

from app.config import Settings
from app.main import STORE_KEY
from app.storage import SessionStore
from tests.support import (
    Client,
    RunningServer,
    cluster_of,
    fast_settings,
    missing_tool,
    running_server,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOM = "VALIDATION-ROOM"
HEALTHY_ROOM = "HEALTHY-ROOM"
REST_ROOM = "REST-ROOM"
MEMBER = "<member sid>"  # replaced by the member's Socket.IO id when sent
HEALTHY = "<healthy sid>"  # replaced by the healthy client's Socket.IO id when sent
NO_ARGS = object()  # emit the event without any argument
RAW_TIMEOUT = 0.5  # an answer takes milliseconds; a missing one is a failure

MIB = 1_048_576
ASCII_LIMIT_CODE = "a" * MIB
EMOJI = "\U0001f600"  # 4 bytes in UTF-8
EMOJI_LIMIT_CODE = EMOJI * (MIB // 4)  # 262,144 emoji: exactly 1 MiB
ROOM_ID_64 = "R" * 63 + "z"
DEEP_JSON = "[" * 100_000 + "]" * 100_000
INJECTIONS = {
    "gt": {"$gt": ""},
    "where": {"$where": "sleep(1000)"},
    "ne": {"$ne": None},
}
# Unicode that must be stored and relayed exactly (escapes keep the source unambiguous).
UNICODE_TEXTS = {
    "nul": "a\x00b\x00",
    "rtl-ltr-marks": "\u200f\u05e9\u05dc\u05d5\u05dd\u200e abc \u202eevil\u202c \u2066x\u2069",
    "emoji": "\U0001f600 \U0001f469\u200d\U0001f4bb \U0001f1eb\U0001f1f7 \U0001f44d\U0001f3fd",
    "combining": "e\u0301 Z\u0337\u0322\u0353 n\u0303\u0308 \u0915\u094d\u0937",
    "bom-separators": "\ufeffline\u2028next\u2029end\r\n\t\x7f",
    "astral": "\U00020b9f\U0002a6b2 \U0001d54f\U0001d518\U0001d52f",
}
# Settings: limits at their defaults; abuse limits out of the way (they have their own tests);
# a deliberate or dropped socket leaves its room at once.
LAX = {
    "rate_code_per_second": 1e6,
    "rate_code_burst": 1e6,
    "rate_chat_per_second": 1e6,
    "rate_chat_burst": 1e6,
    "rate_cursor_per_second": 1e6,
    "rate_cursor_burst": 1e6,
    "rate_join_per_second": 1e6,
    "rate_join_burst": 1e6,
    "max_connections_per_address": 10_000,
    "new_connections_per_minute": 1_000_000,
    "rest_requests_per_minute": 1_000_000,
    "reconnect_grace_seconds": 0,
    "room_idle_seconds": 600,
}


# -- harness ----------------------------------------------------------------------------------


@dataclass
class Env:
    server: RunningServer
    settings: Settings
    member: Client  # in ROOM with every sender
    healthy: Client  # alone in HEALTHY_ROOM

    @property
    def store(self) -> SessionStore:
        return self.server.app[STORE_KEY]


def socket_id(client: Client) -> str:
    """The Socket.IO id the server uses in payloads (Client.sid is the Engine.IO id)."""
    return str(client.sio.get_sid("/"))


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=[0, 2], ids=["one-process", "cluster-of-2"]
)
async def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    """The module's server: one process, then two in cluster mode (the member and the healthy
    client on different processes, each sender on the next in turn)."""
    from tests.cluster_support import REDIS

    if request.param and REDIS is None:
        missing_tool("redis-server is not installed")
    settings = fast_settings(tmp_path_factory.mktemp("validation"), **LAX)
    with cluster_of(request.param):
        async with running_server(settings) as server:
            async for made in _env(server, settings):
                yield made


async def _env(server: RunningServer, settings: Settings) -> AsyncIterator[Env]:
    member, healthy = Client(), Client()
    try:
        await member.connect(server.url)
        await healthy.connect(server.url)
        assert (await member.join(ROOM, "Member", "user-member"))["ok"] is True
        assert (await healthy.join(HEALTHY_ROOM, "Healthy", "user-healthy"))["ok"] is True
        status, body = await server.http(
            "POST",
            "/api/sessions/create",
            json={"roomId": REST_ROOM, "creatorName": "Rita", "creatorUserId": "user-rest"},
        )
        assert status == 201, body
        yield Env(server, settings, member, healthy)
    finally:
        await member.close()
        await healthy.close()


async def wait_for(client: Client, event: str, matches: Callable[[Any], bool]) -> Any:
    """The first `event` received that `matches`, waiting for it if need be."""
    seen = 0
    while True:
        received = client.events[event]
        for data in received[seen:]:
            if matches(data):
                return data
        seen = len(received)
        await client.next(event, seen + 1)


@pytest_asyncio.fixture(loop_scope="module")
async def sender(env: Env) -> AsyncIterator[Client]:
    """A fresh client in ROOM; on teardown it leaves and the member has heard of it."""
    client = Client()
    await client.connect(env.server.url)
    assert (await client.join(ROOM, "Sender", "user-sender"))["ok"] is True
    me = socket_id(client)
    await wait_for(env.member, "userJoined", lambda data: data["userId"] == me)
    try:
        yield client
    finally:
        in_room = env.server.room_of(me) == ROOM
        await client.close()
        if in_room:
            await wait_for(env.member, "userLeft", lambda data: data["userId"] == me)


def fill(value: Any, env: Env) -> Any:
    """`value` with the MEMBER / HEALTHY placeholders replaced by real socket ids."""
    if value == MEMBER:
        return socket_id(env.member)
    if value == HEALTHY:
        return socket_id(env.healthy)
    if isinstance(value, dict):
        return {key: fill(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, env) for item in value]
    return value


async def raw_call(client: Client, event: str, json_text: str) -> Any:
    """Send an event whose argument is this JSON text, as a browser would, and await the ack.

    For what python-socketio cannot encode in this process (the app makes every Packet use
    orjson, which refuses lone surrogates): `json.dumps` writes a lone surrogate as the escape
    `\\ud800`, exactly as JSON.stringify does in a browser.
    """
    answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_ack(*args: Any) -> None:
        if not answered.done():
            answered.set_result(args[0] if len(args) == 1 else list(args))

    ack_id = client.sio._generate_ack_id("/", on_ack)
    await client.sio.eio.send(f"2{ack_id}[{json.dumps(event)},{json_text}]")
    return await asyncio.wait_for(answered, RAW_TIMEOUT)


async def send(client: Client, event: str, payload: Any, raw: str | None = None) -> Any:
    if raw is not None:
        return await raw_call(client, event, raw)
    if payload is NO_ARGS:
        return await client.sio.call(event, timeout=5)
    return await client.call(event, payload)


async def sync(env: Env, sender: Client) -> tuple[int, int]:
    """Marks in the member's and the healthy client's event logs, taken after everything the
    sender caused so far has reached them; proves the sender and the healthy client are served.
    """
    token = uuid.uuid4().hex
    answer = await sender.call("cursorMove", {"roomId": ROOM, "position": {"sync": token}})
    assert answer == {"ok": True}, answer
    await wait_for(env.member, "cursorUpdate", lambda data: data["position"] == {"sync": token})
    served = await env.healthy.call("userTyping", {"roomId": HEALTHY_ROOM})
    assert served == {"ok": True}, served
    return len(env.member.order), len(env.healthy.order)


def events_between(client: Client, start: int, end: int) -> list[tuple[str, Any]]:
    return [(name, data) for name, data in client.order[start:end] if name != "sessionSaved"]


async def state(env: Env) -> dict[str, Any]:
    """What a refused input must not change: live rooms and memberships on every process,
    sessions as GET reads them from every process, and the stored records."""
    sessions = {}
    stored = {}
    for process in range(len(env.server.urls)):
        for room_id in (ROOM, HEALTHY_ROOM, REST_ROOM):
            path = f"/api/sessions/{room_id}"
            sessions[process, room_id] = await env.server.http("GET", path, process=process)
    for room_id in (ROOM, HEALTHY_ROOM, REST_ROOM):
        assert await env.server.flush(room_id)
        stored[room_id] = await env.store.load(room_id)
    every = env.server.every_rooms()
    return {
        "live": [sorted(rooms.rooms) for rooms in every],
        "members": [dict(rooms.room_of) for rooms in every],
        "sessions": sessions,
        "stored": stored,
    }


async def assert_refused_quietly(
    env: Env, sender: Client, event: str, payload: Any, code: str, raw: str | None = None
) -> dict[str, Any]:
    """The refusal, its `error` event, and nothing else anywhere; the refusal's message."""
    await sync(env, sender)
    before = await state(env)
    member_mark, healthy_mark = await sync(env, sender)
    errors = len(sender.events["error"])

    answer = await send(sender, event, fill(payload, env), raw)

    assert isinstance(answer, dict) and answer.get("ok") is False, answer
    assert set(answer) == {"ok", "error"}, answer
    assert set(answer["error"]) == {"code", "message"}, answer
    assert answer["error"]["code"] == code, answer
    message = answer["error"]["message"]
    assert isinstance(message, str) and message
    error = await sender.next("error", errors + 1)
    assert error == {"event": event, "code": code, "message": message}
    member_end, healthy_end = await sync(env, sender)  # the sender's connection still works
    assert sender.sio.connected
    relayed = events_between(env.member, member_mark, member_end)
    assert [name for name, _ in relayed] == ["cursorUpdate"], relayed  # only the marker
    assert events_between(env.healthy, healthy_mark, healthy_end) == []
    assert len(sender.events["error"]) == errors + 1
    assert await state(env) == before
    return answer


# -- socket events: the cases ------------------------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "joinRoom": {"roomId": ROOM, "userName": "Sender", "userId": "user-sender"},
    "leaveRoom": {"roomId": ROOM},
    "requestCodeState": {"roomId": ROOM},
    "sendCodeState": {
        "roomId": ROOM,
        "code": "print(1)",
        "language": "python",
        "targetUserId": MEMBER,
    },
    "codeChange": {"roomId": ROOM, "code": "x = 1", "language": "python"},
    "languageChange": {"roomId": ROOM, "language": "python"},
    "cursorMove": {"roomId": ROOM, "position": {"lineNumber": 1, "column": 2}},
    "chatMessage": {"roomId": ROOM, "message": "hello"},
    "chatMessage(object)": {"roomId": ROOM, "message": {"id": "c-1", "message": "hello"}},
    "userTyping": {"roomId": ROOM},
    "userStoppedTyping": {"roomId": ROOM},
}
EVENTS = list(VALID)  # "chatMessage(object)" is the object form of chatMessage


def event_name(form: str) -> str:
    return form.split("(")[0]


def with_field(form: str, field: str, value: Any) -> dict[str, Any]:
    return {**VALID[form], field: value}


def without(form: str, field: str) -> dict[str, Any]:
    return {key: value for key, value in VALID[form].items() if key != field}


def chat_object(**message: Any) -> dict[str, Any]:
    return {"roomId": ROOM, "message": message}


@dataclass(frozen=True)
class Bad:
    event: str
    payload: Any


def bad_cases() -> list[Any]:
    cases: list[Any] = []

    def add(case_id: str, form: str, payload: Any) -> None:
        cases.append(pytest.param(Bad(event_name(form), payload), id=f"{form}-{case_id}"))

    for form in EVENTS:
        # Payloads that are not objects.
        add("no-payload", form, NO_ARGS)
        add("payload-string", form, ROOM)
        add("payload-list", form, [VALID[form]])
        add("payload-number", form, 7)
        # roomId: missing, wrong types, injection shapes, out of bounds.
        add("roomId-missing", form, without(form, "roomId"))
        add("roomId-null", form, with_field(form, "roomId", None))
        add("roomId-number", form, with_field(form, "roomId", 1))
        add("roomId-list", form, with_field(form, "roomId", [ROOM]))
        for name, shape in INJECTIONS.items():
            add(f"roomId-injection-{name}", form, with_field(form, "roomId", shape))
        add("roomId-empty", form, with_field(form, "roomId", ""))
        add("roomId-65-chars", form, with_field(form, "roomId", ROOM_ID_64 + "x"))
    for form in ("joinRoom", "codeChange", "chatMessage"):
        for text in ("bad id", "room/../x", "room.1", "ROOM\x00", "r\u00e9sum\u00e9", "$where"):
            add(
                f"roomId-{text.encode('unicode_escape').decode()}",
                form,
                with_field(form, "roomId", text),
            )

    # joinRoom fields.
    for field, limit in (("userName", 100), ("userId", 128)):
        add(
            f"{field}-{limit + 1}-chars",
            "joinRoom",
            with_field("joinRoom", field, "n" * (limit + 1)),
        )
        add(f"{field}-number", "joinRoom", with_field("joinRoom", field, 5))
        add(f"{field}-list", "joinRoom", with_field("joinRoom", field, ["x"]))
        for name, shape in INJECTIONS.items():
            add(f"{field}-injection-{name}", "joinRoom", with_field("joinRoom", field, shape))
    for name, value in (("negative", -1), ("string", "1"), ("float", 1.5), ("bool", True)):
        add(f"lastSeenVersion-{name}", "joinRoom", with_field("joinRoom", "lastSeenVersion", value))

    # code and language of codeChange / sendCodeState.
    for form in ("codeChange", "sendCodeState"):
        add("code-missing", form, without(form, "code"))
        add("code-null", form, with_field(form, "code", None))
        add("code-number", form, with_field(form, "code", 42))
        add("code-list", form, with_field(form, "code", ["x"]))
        for name, shape in INJECTIONS.items():
            add(f"code-injection-{name}", form, with_field(form, "code", shape))
        add("code-1MiB-plus-1-ascii", form, with_field(form, "code", ASCII_LIMIT_CODE + "a"))
        add("code-262145-emoji", form, with_field(form, "code", EMOJI_LIMIT_CODE + EMOJI))
    bad_languages = {
        "empty": "",
        "33-chars": "l" * 33,
        "space": "py thon",
        "trailing-newline": "python\n",
        "dollar": "$gt",
        "markup": "<script>",
        "non-ascii": "pyth\u00f6n",
        "number": 3,
        "list": ["python"],
        **{f"injection-{name}": shape for name, shape in INJECTIONS.items()},
    }
    for form in ("codeChange", "sendCodeState", "languageChange"):
        for name, value in bad_languages.items():
            add(f"language-{name}", form, with_field(form, "language", value))
    add("language-missing", "languageChange", without("languageChange", "language"))
    add("language-null", "languageChange", with_field("languageChange", "language", None))
    for name, value in (("negative", -1), ("string", "0"), ("float", 0.5), ("bool", False)):
        add(f"baseVersion-{name}", "codeChange", with_field("codeChange", "baseVersion", value))
    add(
        "baseVersion-injection-gt",
        "codeChange",
        with_field("codeChange", "baseVersion", {"$gt": 0}),
    )

    # A move without a position says nothing (the original relayed `position: null`).
    add("position-missing", "cursorMove", without("cursorMove", "position"))

    # sendCodeState target.
    add("targetUserId-missing", "sendCodeState", without("sendCodeState", "targetUserId"))
    add("targetUserId-empty", "sendCodeState", with_field("sendCodeState", "targetUserId", ""))
    add(
        "targetUserId-65-chars",
        "sendCodeState",
        with_field("sendCodeState", "targetUserId", "t" * 65),
    )
    add("targetUserId-number", "sendCodeState", with_field("sendCodeState", "targetUserId", 1))
    for name, shape in INJECTIONS.items():
        add(
            f"targetUserId-injection-{name}",
            "sendCodeState",
            with_field("sendCodeState", "targetUserId", shape),
        )

    # cursorMove: any JSON up to 1 KiB serialized.
    add(
        "position-1025-bytes-string", "cursorMove", with_field("cursorMove", "position", "p" * 1023)
    )
    add(
        "position-1025-bytes-object",
        "cursorMove",
        with_field("cursorMove", "position", {"k": "v" * 1017}),
    )
    add(
        "position-1026-bytes-2-byte-chars",
        "cursorMove",
        with_field("cursorMove", "position", "\u00e9" * 512),
    )
    add(
        "position-huge-list",
        "cursorMove",
        with_field("cursorMove", "position", list(range(10_000))),
    )

    # chatMessage, string and object forms.
    add("message-missing", "chatMessage", without("chatMessage", "message"))
    add("message-null", "chatMessage", with_field("chatMessage", "message", None))
    add("message-number", "chatMessage", with_field("chatMessage", "message", 12))
    add("message-list", "chatMessage", with_field("chatMessage", "message", ["hi"]))
    add("message-4001-chars", "chatMessage", with_field("chatMessage", "message", "m" * 4001))
    add("message-4001-emoji", "chatMessage", with_field("chatMessage", "message", EMOJI * 4001))
    for name, shape in INJECTIONS.items():
        add(f"message-injection-{name}", "chatMessage", with_field("chatMessage", "message", shape))
    add("message-missing", "chatMessage(object)", chat_object(id="c-1"))
    add("message-empty-object", "chatMessage(object)", chat_object())
    add("message-null", "chatMessage(object)", chat_object(id="c-1", message=None))
    add("message-number", "chatMessage(object)", chat_object(id="c-1", message=5))
    add("message-4001-chars", "chatMessage(object)", chat_object(id="c-1", message="m" * 4001))
    for name, shape in INJECTIONS.items():
        add(f"message-injection-{name}", "chatMessage(object)", chat_object(message=shape))
        add(f"id-injection-{name}", "chatMessage(object)", chat_object(id=shape, message="hi"))
    add("id-129-chars", "chatMessage(object)", chat_object(id="i" * 129, message="hi"))
    add("id-float", "chatMessage(object)", chat_object(id=1.5, message="hi"))
    add("id-list", "chatMessage(object)", chat_object(id=["x"], message="hi"))
    return cases


@pytest.mark.parametrize("case", bad_cases())
async def test_invalid_socket_payload_is_refused_and_changes_nothing(
    env: Env, sender: Client, case: Bad
) -> None:
    await assert_refused_quietly(env, sender, case.event, case.payload, "invalid_payload")


# Lone surrogates can only arrive as JSON escapes (`"\ud800"`): the server's orjson decoder
# refuses the whole Socket.IO packet, so no handler runs, no answer is sent and engineio logs
# the exception. Deeply nested JSON fails the same way (orjson's depth limit is 1024).
LONE = "\ud800"
UNDECODABLE = [
    pytest.param("joinRoom", {**VALID["joinRoom"], "roomId": f"R{LONE}"}, id="joinRoom-roomId"),
    pytest.param(
        "joinRoom", {**VALID["joinRoom"], "userName": f"a{LONE}b"}, id="joinRoom-userName"
    ),
    pytest.param("joinRoom", {**VALID["joinRoom"], "userId": f"{LONE}"}, id="joinRoom-userId"),
    pytest.param("codeChange", {**VALID["codeChange"], "code": f"x{LONE}"}, id="codeChange-code"),
    pytest.param("chatMessage", {"roomId": ROOM, "message": f"hi {LONE}"}, id="chatMessage-string"),
    pytest.param(
        "chatMessage", chat_object(id="c", message=f"{LONE}!"), id="chatMessage(object)-message"
    ),
    pytest.param("cursorMove", {"roomId": ROOM, "position": {"k": LONE}}, id="cursorMove-position"),
]


@pytest.mark.parametrize(("event", "payload"), UNDECODABLE)
async def test_lone_surrogate_is_refused_with_invalid_payload(
    env: Env, sender: Client, event: str, payload: dict[str, Any]
) -> None:
    text = json.dumps(fill(payload, env))  # ensure_ascii: the surrogate travels as "\ud800"
    assert "\\ud800" in text
    await assert_refused_quietly(env, sender, event, None, "invalid_payload", raw=text)


async def test_deeply_nested_socket_payload_is_refused_with_invalid_payload(
    env: Env, sender: Client
) -> None:
    text = '{"roomId":"' + ROOM + '","position":' + DEEP_JSON + "}"
    await assert_refused_quietly(env, sender, "cursorMove", None, "invalid_payload", raw=text)


async def test_well_formed_escapes_decode_to_the_same_text_as_raw_utf8(
    env: Env, sender: Client
) -> None:
    """Control for the surrogate cases: a surrogate PAIR sent as escapes is valid and arrives."""
    text = json.dumps({"roomId": ROOM, "position": {"k": EMOJI}})
    assert "\\ud83d\\ude00" in text
    assert await raw_call(sender, "cursorMove", text) == {"ok": True}
    update = await wait_for(
        env.member, "cursorUpdate", lambda data: data["position"] == {"k": EMOJI}
    )
    assert update["userId"] == socket_id(sender)


# -- socket events: the sender's room ----------------------------------------------------------

ROOM_EVENT_FORMS = [form for form in EVENTS if form not in ("joinRoom", "leaveRoom")]


@pytest.mark.parametrize("form", ROOM_EVENT_FORMS)
async def test_event_for_a_room_the_sender_did_not_join_is_refused_not_in_room(
    env: Env, sender: Client, form: str
) -> None:
    payload = with_field(form, "roomId", HEALTHY_ROOM)
    if form == "sendCodeState":
        payload["targetUserId"] = HEALTHY
    await assert_refused_quietly(env, sender, event_name(form), payload, "not_in_room")


@pytest.mark.parametrize("form", ROOM_EVENT_FORMS)
async def test_event_from_a_socket_in_no_room_is_refused_not_in_room(
    env: Env, sender: Client, form: str
) -> None:
    stranger = Client()
    await stranger.connect(env.server.url)
    try:
        member_mark = len(env.member.order)
        answer = await stranger.call(event_name(form), fill(VALID[form], env))
        assert answer["ok"] is False and answer["error"]["code"] == "not_in_room", answer
        error = await stranger.next("error")
        expected = {"event": event_name(form), "code": "not_in_room"}
        assert error == {**expected, "message": answer["error"]["message"]}
        member_end, _ = await sync(env, sender)
        assert [name for name, _ in events_between(env.member, member_mark, member_end)] == [
            "cursorUpdate"
        ]
    finally:
        await stranger.close()


async def test_code_state_for_a_socket_outside_the_senders_room_is_refused(
    env: Env, sender: Client
) -> None:
    payload = with_field("sendCodeState", "targetUserId", HEALTHY)
    await assert_refused_quietly(env, sender, "sendCodeState", payload, "not_in_room")
    assert "receiveCodeState" not in env.healthy.events


async def test_leaving_a_room_the_sender_is_not_in_changes_nothing(
    env: Env, sender: Client
) -> None:
    member_mark, healthy_mark = await sync(env, sender)
    before = await state(env)

    answer = await sender.call("leaveRoom", {"roomId": HEALTHY_ROOM})

    assert answer == {"ok": True}
    member_end, healthy_end = await sync(env, sender)  # still in ROOM
    assert [name for name, _ in events_between(env.member, member_mark, member_end)] == [
        "cursorUpdate"
    ]
    assert events_between(env.healthy, healthy_mark, healthy_end) == []
    assert await state(env) == before


# -- socket events: the limits themselves and unicode, accepted intact --------------------------


async def stored(env: Env, room_id: str = ROOM) -> Any:
    assert await env.server.flush(room_id)
    return await env.store.load(room_id)


async def session(env: Env, room_id: str = ROOM) -> dict[str, Any]:
    status, body = await env.server.http("GET", f"/api/sessions/{room_id}")
    assert status == 200, body
    result: dict[str, Any] = body["session"]
    return result


async def check_code_accepted(env: Env, sender: Client, code: str) -> None:
    answer = await sender.call("codeChange", {"roomId": ROOM, "code": code})
    assert answer["ok"] is True, answer
    update = await wait_for(env.member, "codeUpdate", lambda d: d["version"] == answer["version"])
    assert update["code"] == code
    assert (await session(env))["code"] == code
    assert (await stored(env)).code == code


async def check_code_state_accepted(env: Env, sender: Client, code: str) -> None:
    """Accepted; the target is then sent the room's own text (the server is the authority)."""
    payload = fill(with_field("sendCodeState", "code", code), env)
    assert await sender.call("sendCodeState", payload) == {"ok": True}


async def check_chat_accepted(env: Env, sender: Client, text: str, *, as_object: bool) -> None:
    message: Any = {"id": uuid.uuid4().hex, "message": text} if as_object else text
    answer = await sender.call("chatMessage", {"roomId": ROOM, "message": message})
    assert answer["ok"] is True, answer
    received = await wait_for(env.member, "newMessage", lambda d: d["version"] == answer["version"])
    assert received["message"]["message"] == text
    listed = {m["id"]: m for m in (await session(env))["messages"]}
    assert listed[answer["id"]]["message"] == text
    assert await env.server.flush(ROOM)  # cluster mode: stored by the room's writer
    saved = await env.store.list_messages(ROOM, before=answer["version"] + 1, limit=1)
    assert [m.message for m in saved] == [text]


async def check_position_accepted(env: Env, sender: Client, position: Any) -> None:
    answer = await sender.call("cursorMove", {"roomId": ROOM, "position": position})
    assert answer == {"ok": True}
    me = socket_id(sender)
    update = await wait_for(
        env.member,
        "cursorUpdate",
        lambda d: (
            d["userId"] == me
            and d["position"] == position
            and type(d["position"]) is type(position)
        ),
    )
    assert update["position"] == position


async def check_user_accepted(env: Env, name: str, user_id: str) -> None:
    """A new client joins ROOM as (name, user_id): relayed and stored exactly."""
    newcomer = Client()
    await newcomer.connect(env.server.url)
    try:
        answer = await newcomer.join(ROOM, name, user_id)
        assert answer["ok"] is True, answer
        me = socket_id(newcomer)
        joined = await wait_for(env.member, "userJoined", lambda d: d["userId"] == me)
        assert joined["userName"] == name
        users = await wait_for(env.member, "roomUsers", lambda d: me in [u["id"] for u in d])
        assert [(u["name"], u["userId"]) for u in users if u["id"] == me] == [(name, user_id)]
        participants = (await session(env))["participants"]
        assert {"name": name, "userId": user_id} in [
            {"name": p["name"], "userId": p["userId"]} for p in participants
        ]
        record = await stored(env)
        assert (user_id, name) in [(p.user_id, p.name) for p in record.participants]
    finally:
        await newcomer.close()
        await wait_for(env.member, "userLeft", lambda d: d["userId"] == me)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(ASCII_LIMIT_CODE, id="1MiB-ascii"),
        pytest.param(EMOJI_LIMIT_CODE, id="262144-emoji-1MiB"),
        pytest.param("\u00e9" * (MIB // 2), id="524288-2-byte-chars-1MiB"),
    ],
)
async def test_code_at_the_byte_limit_is_accepted_intact(
    env: Env, sender: Client, code: str
) -> None:
    assert len(code.encode()) == MIB
    await check_code_accepted(env, sender, code)
    await check_code_state_accepted(env, sender, code)


async def test_code_limit_counts_bytes_not_characters(env: Env, sender: Client) -> None:
    """262,145 emoji are far fewer than 1 Mi characters but more than 1 MiB: refused."""
    code = EMOJI_LIMIT_CODE + EMOJI
    assert len(code) < MIB < len(code.encode())
    await assert_refused_quietly(
        env, sender, "codeChange", {"roomId": ROOM, "code": code}, "invalid_payload"
    )


@pytest.mark.parametrize("as_object", [False, True], ids=["string", "object"])
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("m" * 4000, id="4000-chars"),
        pytest.param(EMOJI * 4000, id="4000-emoji"),
        pytest.param("<script>alert(1)</script>", id="markup"),
    ],
)
async def test_chat_at_the_limit_is_accepted_intact(
    env: Env, sender: Client, text: str, as_object: bool
) -> None:
    await check_chat_accepted(env, sender, text, as_object=as_object)


@pytest.mark.parametrize(
    "language", ["l" * 32, "c++", "c#", "objective-c", "F#", "x.y_z-1", "a"], ids=str
)
async def test_language_matching_the_pattern_is_accepted(
    env: Env, sender: Client, language: str
) -> None:
    answer = await sender.call("languageChange", {"roomId": ROOM, "language": language})
    assert answer["ok"] is True, answer
    assert (await session(env))["language"] == language
    assert (await stored(env)).language == language
    await sender.call("languageChange", {"roomId": ROOM, "language": "python"})
    code = await sender.call("codeChange", {"roomId": ROOM, "code": "c", "language": language})
    assert code["ok"] is True, code
    assert (await session(env))["language"] == language


@pytest.mark.parametrize(
    "position",
    [
        pytest.param("p" * 1022, id="1024-bytes-string"),
        pytest.param({"k": "v" * 1016}, id="1024-bytes-object"),
        pytest.param("\u00e9" * 511, id="1024-bytes-2-byte-chars"),
        pytest.param(None, id="null"),
        pytest.param(0, id="zero"),
        pytest.param(-1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param([], id="empty-list"),
        pytest.param({"lineNumber": 1, "column": 2, "sel": [1, {"a": None}]}, id="nested"),
        pytest.param({"$gt": ""}, id="injection-shape-is-just-data"),
    ],
)
async def test_cursor_position_up_to_1KiB_of_any_json_is_relayed_intact(
    env: Env, sender: Client, position: Any
) -> None:
    await check_position_accepted(env, sender, position)


async def test_names_and_ids_at_their_limits_are_accepted_intact(env: Env) -> None:
    await check_user_accepted(env, "n" * 100, "u" * 128)


async def test_room_id_of_64_allowed_characters_is_accepted(env: Env) -> None:
    room_id = "aZ09_-" * 10 + "last"
    assert len(room_id) == 64
    client = Client()
    await client.connect(env.server.url)
    try:
        answer = await client.join(room_id, "Edge", "user-edge")
        assert answer["ok"] is True, answer
        assert (await client.call("codeChange", {"roomId": room_id, "code": "edge"}))["ok"]
        assert (await session(env, room_id))["code"] == "edge"
        assert (await stored(env, room_id)).room_id == room_id
    finally:
        await client.close()


CARRIERS = ["code", "codeState", "chat-string", "chat-object", "position", "userName"]


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("text", list(UNICODE_TEXTS.values()), ids=list(UNICODE_TEXTS))
async def test_unicode_is_stored_and_relayed_exactly(
    env: Env, sender: Client, text: str, carrier: str
) -> None:
    if carrier == "code":
        await check_code_accepted(env, sender, text)
    elif carrier == "codeState":
        await check_code_state_accepted(env, sender, text)
    elif carrier == "chat-string":
        await check_chat_accepted(env, sender, text, as_object=False)
    elif carrier == "chat-object":
        await check_chat_accepted(env, sender, text, as_object=True)
    elif carrier == "position":
        await check_position_accepted(env, sender, {"label": text})
    else:
        await check_user_accepted(env, text, f"user-{uuid.uuid4().hex}")


# -- REST ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: Any


async def request(
    env: Env, method: str, path: str, *, body: bytes | None = None, json_body: Any = None,
    content_type: str = "application/json", query: dict[str, str] | None = None,
) -> Reply:  # fmt: skip
    data = json.dumps(json_body, ensure_ascii=False).encode() if json_body is not None else body
    headers = {"Content-Type": content_type} if data is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, env.server.url + path, data=data, headers=headers, params=query
        ) as response,
    ):
        raw = await response.read()
        parsed = json.loads(raw) if response.content_type == "application/json" else raw
        return Reply(response.status, response.content_type, parsed)


def assert_error(reply: Reply, status: int) -> None:
    assert reply.status == status, reply
    assert reply.content_type == "application/json", reply
    assert isinstance(reply.body, dict) and set(reply.body) == {"error", "message"}, reply
    assert isinstance(reply.body["error"], str) and reply.body["error"]
    assert isinstance(reply.body["message"], str) and reply.body["message"]


def fresh_room() -> str:
    return "room-" + uuid.uuid4().hex[:20]


def create_body(**fields: Any) -> dict[str, Any]:
    return {"roomId": fresh_room(), "creatorName": "Cleo", "creatorUserId": "user-cleo", **fields}


def create_without(field: str) -> dict[str, Any]:
    return {key: value for key, value in create_body().items() if key != field}


def bad_create_cases() -> list[Any]:
    cases: list[Any] = []

    def add(case_id: str, body: Any) -> None:
        cases.append(pytest.param(body, id=case_id))

    add("empty-object", {})
    add("array", [create_body()])
    add("string", "room")
    add("number", 5)
    add("null", None)
    add("roomId-missing", create_without("roomId"))
    add("creatorName-missing", create_without("creatorName"))
    add("creatorName-empty", create_body(creatorName=""))
    for field, values in {
        "roomId": {
            "65-chars": "r" * 65,
            "space": "bad id",
            "dot": "a.b",
            "slash": "a/b",
            "number": 5,
            "list": ["x"],
            "bool": True,
        },
        "creatorName": {"101-chars": "n" * 101, "number": 7, "list": ["Cleo"]},
        "creatorUserId": {"129-chars": "u" * 129, "number": 7},
        "code": {
            "1MiB-plus-1-ascii": ASCII_LIMIT_CODE + "a",
            "262145-emoji": EMOJI_LIMIT_CODE + EMOJI,
            "number": 1,
            "list": ["x"],
        },
        "language": {
            "33-chars": "l" * 33,
            "empty": "",
            "space": "py thon",
            "trailing-newline": "python\n",
            "number": 3,
        },
    }.items():
        for name, value in values.items():
            add(f"{field}-{name}", create_body(**{field: value}))
        for name, shape in INJECTIONS.items():
            add(f"{field}-injection-{name}", create_body(**{field: shape}))
    return cases


async def assert_nothing_stored(env: Env, before: dict[str, Any], body: Any) -> None:
    assert await state(env) == before
    room_id = body.get("roomId") if isinstance(body, dict) else None
    if isinstance(room_id, str) and room_id:
        for path in (f"/api/sessions/{quote(room_id, safe='')}",):
            reply = await request(env, "GET", path)
            assert reply.status in (400, 404), reply
        assert await env.store.load(room_id) is None


@pytest.mark.parametrize("body", bad_create_cases())
async def test_invalid_create_body_answers_400_and_stores_nothing(env: Env, body: Any) -> None:
    before = await state(env)
    reply = await request(env, "POST", "/api/sessions/create", body=json.dumps(body).encode())
    assert_error(reply, 400)
    await assert_nothing_stored(env, before, body)


MALFORMED_BODIES = {
    "truncated": b'{"roomId": "x", ',
    "trailing-garbage": b'{"roomId": "x", "creatorName": "y"} x',
    "single-quotes": b"{'roomId': 'x'}",
    "nan": b'{"roomId": "x", "creatorName": "y", "code": NaN}',
    "bare-word": b"undefined",
    "not-utf8": b'{"roomId": "\xff\xfe", "creatorName": "y"}',
    "lone-surrogate-escape": b'{"roomId": "LONE", "creatorName": "a\\ud800b"}',
    "lone-surrogate-code": b'{"roomId": "LONE2", "creatorName": "a", "code": "\\udfff"}',
    "deeply-nested-arrays": DEEP_JSON.encode(),
    "deeply-nested-in-field": b'{"roomId": "DEEP", "creatorName": "d", "code": '
    + DEEP_JSON.encode()
    + b"}",
    "deeply-nested-objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
}


@pytest.mark.parametrize("body", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
@pytest.mark.parametrize(
    "path", ["/api/sessions/create", f"/api/sessions/{REST_ROOM}/update"], ids=["create", "update"]
)
async def test_malformed_json_answers_400_and_stores_nothing(
    env: Env, path: str, body: bytes
) -> None:
    before = await state(env)
    reply = await request(env, "POST", path, body=body)
    assert_error(reply, 400)
    assert await state(env) == before
    for room_id in ("LONE", "LONE2", "DEEP"):
        assert (await request(env, "GET", f"/api/sessions/{room_id}")).status == 404


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]
)
@pytest.mark.parametrize(
    "path", ["/api/sessions/create", f"/api/sessions/{REST_ROOM}/update"], ids=["create", "update"]
)
async def test_json_sent_with_another_content_type_answers_415(
    env: Env, path: str, content_type: str
) -> None:
    before = await state(env)
    body = create_body()
    reply = await request(env, "POST", path, json_body=body, content_type=content_type)
    assert_error(reply, 415)
    await assert_nothing_stored(env, before, body)


@pytest.mark.parametrize(
    "path", ["/api/sessions/create", f"/api/sessions/{REST_ROOM}/update"], ids=["create", "update"]
)
async def test_body_over_the_limit_answers_413(env: Env, path: str) -> None:
    limit = env.settings.max_http_body_bytes
    prefix, suffix = b'{"roomId": "BIG", "creatorName": "b", "code": "', b'"}'
    body = prefix + b"a" * (limit + 1 - len(prefix) - len(suffix)) + suffix
    assert len(body) == limit + 1
    before = await state(env)
    reply = await request(env, "POST", path, body=body)
    assert_error(reply, 413)
    assert await state(env) == before
    assert (await request(env, "GET", "/api/sessions/BIG")).status == 404


def bad_update_cases() -> list[Any]:
    cases: list[Any] = []
    values: dict[str, dict[str, Any]] = {
        "code": {
            "1MiB-plus-1-ascii": ASCII_LIMIT_CODE + "a",
            "262145-emoji": EMOJI_LIMIT_CODE + EMOJI,
            "number": 5,
            "list": ["x"],
            **{f"injection-{n}": s for n, s in INJECTIONS.items()},
        },
        "language": {
            "33-chars": "l" * 33,
            "empty": "",
            "space": "py thon",
            "trailing-newline": "go\n",
            **{f"injection-{n}": s for n, s in INJECTIONS.items()},
        },
        "participants": {
            "object": {"userId": "u", "name": "n"},
            "string": "everyone",
            "list-of-strings": ["u"],
            "name-101-chars": [{"userId": "u-101", "name": "n" * 101}],
            "userId-129-chars": [{"userId": "u" * 129, "name": "n"}],
            "name-number": [{"name": 5}],
            "1001-participants": [{"userId": f"p{i}", "name": "p"} for i in range(1001)],
            **{
                f"userId-injection-{n}": [{"userId": s, "name": "x"}] for n, s in INJECTIONS.items()
            },
            **{f"name-injection-{n}": [{"name": s}] for n, s in INJECTIONS.items()},
        },
    }
    for field, named in values.items():
        for name, value in named.items():
            cases.append(pytest.param({field: value}, id=f"{field}-{name}"))
    cases += [
        pytest.param([{"code": "x"}], id="array"),
        pytest.param("code", id="string"),
        pytest.param(5, id="number"),
        pytest.param({"code": "fine", "language": "$gt"}, id="one-bad-field-spoils-all"),
    ]
    return cases


@pytest.mark.parametrize("body", bad_update_cases())
async def test_invalid_update_body_answers_400_and_changes_nothing(env: Env, body: Any) -> None:
    before = await state(env)
    reply = await request(env, "POST", f"/api/sessions/{REST_ROOM}/update", json_body=body)
    assert_error(reply, 400)
    assert await state(env) == before


BAD_PATH_ROOM_IDS = {
    "65-chars": "r" * 65,
    "space": "bad%20id",
    "dot": "a.b",
    "dollar-gt": "%24gt",
    "injection-dollar-where": "%24where",
    "nul": "a%00b",
    "non-ascii": "r%C3%A9sum%C3%A9",
    "emoji": "%F0%9F%98%80",
    "invalid-utf8": "%ED%A0%80",
    "plus": "a+b",
}


@pytest.mark.parametrize("room_id", list(BAD_PATH_ROOM_IDS.values()), ids=list(BAD_PATH_ROOM_IDS))
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/update")],
    ids=["get", "delete", "update"],
)
async def test_malformed_room_id_in_the_path_answers_400(
    env: Env, method: str, suffix: str, room_id: str
) -> None:
    before = await state(env)
    json_body = {"code": "overwritten?"} if method == "POST" else None
    reply = await request(env, method, f"/api/sessions/{room_id}{suffix}", json_body=json_body)
    assert_error(reply, 400)
    assert await state(env) == before


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"before": "-1"}, {"limit": "1.5"}],
    ids=["limit-0", "limit-1001", "limit-text", "before-negative", "limit-float"],
)
async def test_invalid_messages_query_answers_400(env: Env, query: dict[str, str]) -> None:
    assert_error(await request(env, "GET", f"/api/sessions/{REST_ROOM}", query=query), 400)


async def test_messages_query_at_its_limits_is_accepted(env: Env) -> None:
    for query in ({"limit": "1000"}, {"limit": "1"}, {"before": "0"}):
        reply = await request(env, "GET", f"/api/sessions/{REST_ROOM}", query=query)
        assert reply.status == 200, (query, reply)


async def test_room_id_of_64_characters_in_the_path_is_accepted(env: Env) -> None:
    reply = await request(env, "GET", f"/api/sessions/{ROOM_ID_64}")
    assert_error(reply, 404)  # well formed, just absent
    reply = await request(env, "DELETE", f"/api/sessions/{ROOM_ID_64}")
    assert_error(reply, 404)


async def test_user_id_in_the_path_one_past_the_limit_answers_400(env: Env) -> None:
    assert_error(await request(env, "GET", "/api/sessions/user/" + "u" * 129), 400)


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param(quote(json.dumps(shape), safe=""), id=f"injection-{name}")
        for name, shape in INJECTIONS.items()
    ]
    + [
        pytest.param("%24ne", id="dollar-ne"),
        pytest.param("%2A", id="star"),
        pytest.param("%25", id="percent"),
        pytest.param("%00", id="nul"),
        pytest.param("%ED%A0%80", id="invalid-utf8"),
        pytest.param(".%2A", id="regex"),
        pytest.param("%27%20OR%201%3D1%20--", id="sql"),
    ],
)
async def test_injection_shapes_as_user_id_in_the_path_match_no_session(
    env: Env, user_id: str
) -> None:
    """Sessions exist, yet an injection shape as user id lists none of them."""
    listed = await request(env, "GET", "/api/sessions/user/user-rest")
    assert listed.status == 200 and listed.body["sessions"], listed
    reply = await request(env, "GET", f"/api/sessions/user/{user_id}")
    assert reply.content_type == "application/json", reply
    assert reply.status == 200, reply
    assert reply.body == {"success": True, "sessions": []}


async def test_user_id_with_braces_lists_its_own_sessions(env: Env) -> None:
    """Any string of up to 128 characters is a user id (joinRoom and create accept it)."""
    user_id = '{"$ne": null}'
    body = create_body(creatorUserId=user_id)
    assert (await request(env, "POST", "/api/sessions/create", json_body=body)).status == 201
    reply = await request(env, "GET", "/api/sessions/user/" + quote(user_id, safe=""))
    assert reply.status == 200, reply
    assert [s["roomId"] for s in reply.body["sessions"]] == [body["roomId"]]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/update")],
    ids=["get", "delete", "update"],
)
async def test_room_id_with_braces_in_the_path_answers_400(
    env: Env, method: str, suffix: str
) -> None:
    room_id = quote('{"$ne":null}', safe="")
    json_body = {"code": "overwritten?"} if method == "POST" else None
    reply = await request(env, method, f"/api/sessions/{room_id}{suffix}", json_body=json_body)
    assert_error(reply, 400)


CREATE_LIMITS = {
    "roomId-64-chars": {"roomId": "c" * 32 + uuid.uuid4().hex},
    "creatorName-100-chars": {"creatorName": "n" * 100},
    "creatorUserId-128-chars": {"creatorUserId": "u" * 100 + uuid.uuid4().hex[:28]},
    "code-1MiB-ascii": {"code": ASCII_LIMIT_CODE},
    "code-262144-emoji": {"code": EMOJI_LIMIT_CODE},
    "language-32-chars": {"language": "l" * 32},
    **{f"creatorName-{name}": {"creatorName": text} for name, text in UNICODE_TEXTS.items()},
    **{f"code-{name}": {"code": text} for name, text in UNICODE_TEXTS.items()},
    **{f"creatorUserId-{name}": {"creatorUserId": text} for name, text in UNICODE_TEXTS.items()},
}


@pytest.mark.parametrize("fields", list(CREATE_LIMITS.values()), ids=list(CREATE_LIMITS))
async def test_create_at_the_limits_and_with_unicode_keeps_every_value_exactly(
    env: Env, fields: dict[str, Any]
) -> None:
    body = create_body(**fields)
    assert len(body["roomId"]) <= 64 and len(body["creatorUserId"]) <= 128
    reply = await request(env, "POST", "/api/sessions/create", json_body=body)
    assert reply.status == 201, reply
    got = await session(env, body["roomId"])
    assert got["roomId"] == body["roomId"]
    assert got["creatorName"] == body["creatorName"]
    assert got["creatorUserId"] == body["creatorUserId"]
    if "code" in body:
        assert got["code"] == body["code"]
    if "language" in body:
        assert got["language"] == body["language"]
    record = await env.store.load(body["roomId"])
    assert (record.creator_name, record.creator_user_id) == (
        body["creatorName"],
        body["creatorUserId"],
    )
    assert record.code == got["code"]
    mine = await request(env, "GET", "/api/sessions/user/" + quote(body["creatorUserId"], safe=""))
    assert mine.status == 200, mine
    assert body["roomId"] in [s["roomId"] for s in mine.body["sessions"]]


UPDATE_LIMITS = {
    "code-1MiB-ascii": {"code": ASCII_LIMIT_CODE},
    "code-262144-emoji": {"code": EMOJI_LIMIT_CODE},
    "language-32-chars": {"language": "l" * 32},
    "participant-at-limits": {"participants": [{"userId": "p" * 128, "name": "n" * 100}]},
    **{f"code-{name}": {"code": text} for name, text in UNICODE_TEXTS.items()},
    **{
        f"participant-{name}": {"participants": [{"userId": f"p-{name}", "name": text}]}
        for name, text in UNICODE_TEXTS.items()
    },
}


@pytest.mark.parametrize("fields", list(UPDATE_LIMITS.values()), ids=list(UPDATE_LIMITS))
async def test_update_at_the_limits_and_with_unicode_keeps_every_value_exactly(
    env: Env, fields: dict[str, Any]
) -> None:
    """Through REST into a session, a code or language into a new one (in a room with a
    history, a REST text is merged with the recent text closest to it, and a language a
    socket replaced a moment ago is a stale auto-save: see the keystroke tests)."""
    room_id = ROOM
    if "code" in fields or "language" in fields:
        room_id = f"REST-{uuid.uuid4().hex[:8]}"
        created = {"roomId": room_id, "creatorName": "Rex"}
        assert (await request(env, "POST", "/api/sessions/create", json_body=created)).status == 201
    reply = await request(env, "POST", f"/api/sessions/{room_id}/update", json_body=fields)
    assert reply.status == 200, reply
    got = await session(env, room_id)
    record = await stored(env, room_id)
    if "code" in fields:
        assert got["code"] == record.code == fields["code"]
    if "language" in fields:
        assert got["language"] == record.language == fields["language"]
    for participant in fields.get("participants", []):
        wanted = {"userId": participant["userId"], "name": participant["name"]}
        assert wanted in [{"userId": p["userId"], "name": p["name"]} for p in got["participants"]]
        assert (wanted["userId"], wanted["name"]) in [
            (p.user_id, p.name) for p in record.participants
        ]
