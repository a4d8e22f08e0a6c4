"""Abuse limits: per-connection rates per event family with flood disconnects, a flood that
must not starve other rooms, per-address socket and REST limits (and whose X-Forwarded-For is
believed), the room size limit, CORS for REST and Socket.IO, and the headers of every HTTP
answer."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from app.main import SIO_KEY
from tests.support import Client, RunningServer, fast_settings
from tests.support import serving as connected

ROOM = "LIMITS"
OTHER_ROOM = "LIMITS-OTHER"
ALLOWED_ORIGIN = "http://allowed.example"
OTHER_ORIGIN = "http://evil.example"
# Out of the way unless a test is about them.
ROOMY = {
    "reconnect_grace_seconds": 0,
    "max_connections_per_address": 10_000,
    "new_connections_per_minute": 100_000,
    "rest_requests_per_minute": 100_000,
}


def socket_id(client: Client) -> str:
    return str(client.sio.get_sid("/"))


def serving(
    tmp_path: Path, count: int = 0, **overrides: Any
) -> AbstractAsyncContextManager[tuple[RunningServer, list[Client]]]:
    """A server with these settings (abuse limits roomy) and `count` websocket clients."""
    return connected(fast_settings(tmp_path, **{**ROOMY, **overrides}), count)


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


def errors_with(client: Client, code: str) -> list[dict[str, Any]]:
    return [error for error in client.events["error"] if error["code"] == code]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- rates per connection and event family -------------------------------------------------------

# family: (event, payload of the i-th event, what the other member receives, defaults)
FAMILIES: dict[str, tuple[str, Callable[[int], dict[str, Any]], str, tuple[float, float]]] = {
    "code": ("codeChange", lambda i: {"roomId": ROOM, "code": f"c{i}"}, "codeUpdate", (60, 120)),
    "chat": ("chatMessage", lambda i: {"roomId": ROOM, "message": f"m{i}"}, "newMessage", (5, 10)),
    "cursor": ("cursorMove", lambda i: {"roomId": ROOM, "position": i}, "cursorUpdate", (30, 30)),
    "join": ("requestCodeState", lambda i: {"roomId": ROOM}, "codeStateRequest", (10, 10)),
}


async def burst(client: Client, event: str, payloads: list[Any]) -> tuple[list[Any], float]:
    """Emit every payload at once (as fast as the client can); every ack, and how long."""
    acks: list[Any] = [None] * len(payloads)
    done = asyncio.Event()
    remaining = [len(payloads)]

    def answer(index: int) -> Callable[..., None]:
        def on_ack(*args: Any) -> None:
            acks[index] = args[0] if args else None
            remaining[0] -= 1
            if not remaining[0]:
                done.set()

        return on_ack

    started = time.monotonic()
    for index, payload in enumerate(payloads):
        await client.sio.emit(event, payload, callback=answer(index))
    await asyncio.wait_for(done.wait(), 10)
    return acks, time.monotonic() - started


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_excess_events_of_a_family_are_dropped_with_one_rate_limited_error(
    tmp_path: Path, family: str
) -> None:
    event, payload, relayed, (rate, size) = FAMILIES[family]
    defaults = fast_settings(tmp_path).event_rates()[family]
    assert defaults == (rate, size)  # the documented defaults are in force
    async with serving(tmp_path, 2) as (server, (sender, member)):
        assert (await member.join(ROOM, "Member", "user-member"))["ok"]
        assert (await sender.join(ROOM, "Sender", "user-sender"))["ok"]  # one "join" token
        await member.next("userJoined")
        version = server.rooms.rooms[ROOM].version
        # Enough beyond the burst that the refill while the server takes them in (code
        # changes are merged one by one: on a loaded machine 150 took 0.9 s, 54 tokens)
        # cannot cover them all.
        extra = max(30, int(size * 1.5))

        acks, elapsed = await burst(sender, event, [payload(i) for i in range(int(size) + extra)])

        admitted = [ack for ack in acks if ack and ack.get("ok") is True]
        dropped = [ack for ack in acks if not (ack and ack.get("ok") is True)]
        print(f"{family}: {len(admitted)} admitted, {len(dropped)} dropped in {elapsed:.3f}s")
        assert size - 1 <= len(admitted) <= size + rate * elapsed + 1
        for ack in dropped:
            assert ack["ok"] is False and ack["error"]["code"] == "rate_limited", ack
        warnings = errors_with(sender, "rate_limited")
        assert 1 <= len(warnings) <= math.floor(elapsed) + 1
        assert all(w["event"] == event and w["message"] for w in warnings)
        assert errors_with(sender, "flooding") == []
        # Other families are not affected; the marker also orders the member's events.
        marker, marker_event = (
            ("requestCodeState", "codeStateRequest")
            if family == "cursor"
            else ("userTyping", "userIsTyping")
        )
        assert await sender.call(marker, {"roomId": ROOM}) == {"ok": True}
        await member.next(marker_event, 2 if marker_event == relayed else 1)
        expected = len(admitted) + (1 if marker_event == relayed else 0)
        assert len(member.events[relayed]) == expected
        room = server.rooms.rooms[ROOM]
        if family == "code":
            assert room.version == version + len(admitted)
        if family == "chat":
            status, body = await server.http("GET", f"/api/sessions/{ROOM}")
            assert status == 200
            assert len(body["session"]["messages"]) == len(admitted)
        assert sender.sio.connected


async def test_at_most_one_rate_limited_error_per_family_per_second(tmp_path: Path) -> None:
    async with serving(tmp_path, 1, flood_disconnect_seconds=30) as (_, (sender,)):
        assert (await sender.join(ROOM, "Sender", "user-sender"))["ok"]
        arrivals: dict[str, list[float]] = {"codeChange": [], "cursorMove": []}

        @sender.sio.on("error")
        async def on_error(data: Any) -> None:
            await sender._record("error", data)
            if data["code"] == "rate_limited":
                arrivals[data["event"]].append(time.monotonic())

        for sent in range(130):  # past both bursts at once ...
            await sender.emit("codeChange", {"roomId": ROOM, "code": f"c{sent}"})
            await sender.emit("cursorMove", {"roomId": ROOM, "position": sent})
        started = time.monotonic()
        while time.monotonic() - started < 2.2:  # ... then far over both rates for 2.2 s
            sent += 1
            await sender.emit("codeChange", {"roomId": ROOM, "code": f"c{sent}"})
            await sender.emit("cursorMove", {"roomId": ROOM, "position": sent})
            await asyncio.sleep(0.003)
        assert (await sender.call("requestCodeState", {"roomId": ROOM})) == {"ok": True}
        for event, times in arrivals.items():
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            print(f"{event}: {len(times)} rate_limited errors, gaps {gaps}")
            assert 2 <= len(times) <= 3, (event, times)
            assert all(gap > 0.9 for gap in gaps), (event, gaps)
        assert errors_with(sender, "flooding") == []
        assert sender.sio.connected


async def flood(client: Client, seconds: float, *, interval: float = 0.002) -> None:
    """Code changes far over the rate (first a burst past the bucket, then a steady stream),
    for `seconds` or until disconnected."""
    started, sent = time.monotonic(), 0
    while client.sio.connected and time.monotonic() - started < seconds:
        try:
            await client.emit("codeChange", {"roomId": ROOM, "code": f"flood {sent}"})
        except socketio.exceptions.BadNamespaceError:
            break
        sent += 1
        if sent > 130:
            await asyncio.sleep(interval)


async def test_a_client_still_flooding_after_the_allowed_time_is_disconnected(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, 2, flood_disconnect_seconds=1.0) as (server, (flooder, member)):
        assert (await member.join(ROOM, "Member", "user-member"))["ok"]
        assert (await flooder.join(ROOM, "Flooder", "user-flooder"))["ok"]
        me = socket_id(flooder)
        marks: dict[str, float] = {}

        @flooder.sio.on("error")
        async def on_error(data: Any) -> None:
            await flooder._record("error", data)
            marks.setdefault(data["code"], time.monotonic())

        @flooder.sio.on("disconnect")
        async def on_disconnect(*_: Any) -> None:
            marks.setdefault("disconnected", time.monotonic())

        await flood(flooder, 5.0)

        assert "disconnected" in marks, "the flooder was never disconnected"
        assert list(marks) == ["rate_limited", "flooding", "disconnected"], marks
        sustained = marks["disconnected"] - marks["rate_limited"]
        print(f"disconnected after {sustained:.3f}s of excess")
        assert 0.9 <= sustained <= 2.0
        assert len(errors_with(flooder, "rate_limited")) <= math.floor(sustained) + 1
        left = await wait_for(member, "userLeft", lambda data: data["userId"] == me)
        assert left["userName"] == "Flooder"
        await until(lambda: me not in server.rooms.room_of)
        assert me not in server.rooms.rooms[ROOM].members


async def test_excess_broken_by_pauses_is_not_a_flood(tmp_path: Path) -> None:
    async with serving(tmp_path, 1, flood_disconnect_seconds=1.0) as (_, (sender,)):
        assert (await sender.join(ROOM, "Sender", "user-sender"))["ok"]
        await flood(sender, 0.6)  # over the rate for 0.6 s ...
        await asyncio.sleep(1.15)  # ... a pause ends the flood ...
        await flood(sender, 0.6)  # ... so 1.2 s of excess in all is no sustained flood
        assert sender.sio.connected
        assert errors_with(sender, "flooding") == []
        assert len(errors_with(sender, "rate_limited")) == 2
        assert (await sender.call("userTyping", {"roomId": ROOM})) == {"ok": True}


# -- a flood must not starve other rooms ---------------------------------------------------------

FLOODER = r"""
import asyncio, json, sys, time
import socketio

async def main(url, room, seconds):
    sio = socketio.AsyncClient(reconnection=False)
    errors, marks = [], {}
    gone = asyncio.Event()

    @sio.on("error")
    async def on_error(data):
        errors.append([data.get("code"), time.monotonic() - marks["start"]])

    @sio.on("disconnect")
    async def on_disconnect(*args):
        marks.setdefault("disconnected", time.monotonic() - marks["start"])
        gone.set()

    await sio.connect(url, transports=["websocket"])
    await sio.call("joinRoom", {"roomId": room, "userName": "Flooder"})
    print("flooding", flush=True)
    marks["start"] = time.monotonic()
    sent = 0
    while not gone.is_set() and time.monotonic() - marks["start"] < seconds:
        try:
            await sio.emit("codeChange", {"roomId": room, "code": "flood %d" % sent})
        except socketio.exceptions.BadNamespaceError:
            break
        sent += 1
        if sent % 8 == 0:
            await asyncio.sleep(0)
    stopped = time.monotonic() - marks["start"]
    try:
        await asyncio.wait_for(gone.wait(), 5)
    except asyncio.TimeoutError:
        pass
    report = {"sent": sent, "stopped": stopped, "errors": errors,
              "disconnected": marks.get("disconnected")}
    print(json.dumps(report), flush=True)
    if sio.connected:
        await sio.disconnect()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def count_received(server: RunningServer) -> Counter[str]:
    """Engine.IO messages the server has taken in, per connection (test instrumentation)."""
    engine = server.app[SIO_KEY].eio
    handle = engine.handlers["message"]
    received: Counter[str] = Counter()

    async def counting(eio_sid: str, data: Any) -> Any:
        received[eio_sid] += 1
        return await handle(eio_sid, data)

    engine.handlers["message"] = counting
    return received


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def exchange(a: Client, b: Client, keep_going: Callable[[int], bool]) -> list[float]:
    """A and B take turns changing the code (each well under its rate); delivery latencies."""
    samples: list[float] = []
    interval = 0.01  # 100 changes/s between them: 50/s each, under the 60/s code rate
    start = time.monotonic()
    turn = 0
    while keep_going(turn):
        author, reader = (a, b) if turn % 2 == 0 else (b, a)
        count = len(reader.events["codeUpdate"]) + 1
        sent = time.perf_counter()
        await author.emit("codeChange", {"roomId": ROOM, "code": f"turn {turn}"})
        update = await reader.next("codeUpdate", count)
        samples.append(time.perf_counter() - sent)
        assert update["code"] == f"turn {turn}"
        turn += 1
        await asyncio.sleep(max(0.0, start + turn * interval - time.monotonic()))
    return samples


async def test_a_flood_in_one_room_does_not_starve_another(tmp_path: Path) -> None:
    flood_seconds = 1.5
    async with serving(tmp_path, 2, flood_disconnect_seconds=flood_seconds) as (
        server,
        (ann, bob),
    ):
        assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
        assert (await bob.join(ROOM, "Bob", "user-bob"))["ok"]
        received = count_received(server)
        unloaded = await exchange(ann, bob, lambda turn: turn < 100)

        flooder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOODER,
            server.url,
            OTHER_ROOM,
            "10",
            stdout=asyncio.subprocess.PIPE,
        )
        assert flooder.stdout is not None
        try:
            line = await asyncio.wait_for(flooder.stdout.readline(), 10)
            assert line.strip() == b"flooding", line
            started = time.monotonic()

            def flooder_present(_: int) -> bool:
                room = server.rooms.rooms.get(OTHER_ROOM)
                return room is not None and bool(room.members)

            loaded = await exchange(ann, bob, flooder_present)
            flood_time = time.monotonic() - started
            report = json.loads(await asyncio.wait_for(flooder.stdout.readline(), 10))
        finally:
            if flooder.returncode is None:
                flooder.kill()
            await flooder.wait()

        disconnected_at = report["disconnected"] or flood_time
        base_p50, base_p95 = percentile(unloaded, 0.5), percentile(unloaded, 0.95)
        p50, p95 = percentile(loaded, 0.5), percentile(loaded, 0.95)
        admitted = server.rooms.rooms[OTHER_ROOM].version
        taken_in = max(received.values())  # the flooder's connection
        print(
            f"\nflood figures: unloaded p50 {base_p50 * 1e3:.2f} ms, p95 {base_p95 * 1e3:.2f} ms,"
            f" max {max(unloaded) * 1e3:.2f} ms ({len(unloaded)} samples); during the flood"
            f" p50 {p50 * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms, max {max(loaded) * 1e3:.2f} ms"
            f" ({len(loaded)} samples over {flood_time:.2f} s); flooder sent {report['sent']}"
            f" ({report['sent'] / max(report['stopped'], 1e-9):.0f}/s), the server took in"
            f" {taken_in} ({taken_in / disconnected_at:.0f}/s), {admitted} admitted,"
            f" errors {[code for code, _ in report['errors']]},"
            f" disconnected at {report['disconnected']}"
        )
        assert len(loaded) >= 50
        # Measured on a 2-CPU machine (flooder in its own process): unloaded p50 0.55-0.72 ms;
        # during the flood p50 0.65-0.91 ms, p95 1-6.5 ms, max 9-26 ms, while the server took
        # in 9,000-24,000 flood events/s. With the throttle off the p50 stayed near 1 ms too:
        # the bound guards the event loop's fairness, the throttle guards the room's state.
        # Bounds a person would notice (starving means hundreds of ms), with room for a busy
        # machine: a CI host running other jobs made the p50 11 ms once.
        assert p50 <= 3 * base_p50 + 0.025
        assert p95 <= 10 * base_p95 + 0.05
        assert statistics.mean(loaded) < 0.05
        # The flooder was limited (at most one warning per second), then disconnected.
        codes = [code for code, _ in report["errors"]]
        assert codes[0] == "rate_limited"
        assert "flooding" in codes
        assert codes.index("flooding") == codes.count("rate_limited")
        disconnected = report["disconnected"]
        assert disconnected is not None and flood_seconds - 0.1 <= disconnected <= flood_seconds + 2
        assert codes.count("rate_limited") <= math.floor(disconnected) + 1
        assert admitted <= 120 + 60 * disconnected + 5
        assert taken_in > 10 * admitted  # it really flooded


# -- per-address limits --------------------------------------------------------------------------


async def connect(url: str, headers: dict[str, str] | None = None) -> Client:
    """A connected websocket client, or socketio's ConnectionError when refused."""
    client = Client()
    try:
        await client.sio.connect(
            url, transports=["websocket"], headers=headers or {}, wait_timeout=5
        )
    except socketio.exceptions.ConnectionError:
        await client.sio.eio.disconnect(abort=True)  # also closes its HTTP session
        raise
    return client


async def refused(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        client = await connect(url, headers)
    except socketio.exceptions.ConnectionError:
        return True
    await client.close()
    return False


async def connect_eventually(url: str, within: float = 3.0) -> Client:
    """Connect, retrying while the server has not yet counted a closed socket out."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await connect(url)
        except socketio.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


@pytest.mark.usefixtures("each_mode")
async def test_concurrent_sockets_per_address_are_limited(tmp_path: Path) -> None:
    async with serving(tmp_path, max_connections_per_address=3) as (server, _):
        clients = [await connect(server.url) for _ in range(3)]
        try:
            assert await refused(server.url)
            await clients.pop().close()
            clients.append(await connect_eventually(server.url))
            assert all(client.sio.connected for client in clients)
            assert await refused(server.url)
        finally:
            for client in clients:
                await client.close()


@pytest.mark.usefixtures("each_mode")
async def test_new_sockets_per_minute_per_address_are_limited(tmp_path: Path) -> None:
    async with serving(tmp_path, new_connections_per_minute=4) as (server, _):
        for _ in range(4):
            client = await connect(server.url)
            await client.close()
        assert await refused(server.url)  # none open, but the fifth new one this minute


async def rest(
    server: RunningServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers or {}) as response,
    ):
        body = await response.read()
        parsed = json.loads(body) if response.content_type == "application/json" else body
        return response.status, dict(response.headers), parsed


@pytest.mark.usefixtures("each_mode")
async def test_rest_requests_per_minute_answer_429_with_retry_after(tmp_path: Path) -> None:
    async with serving(tmp_path, rest_requests_per_minute=5) as (server, _):
        for _ in range(5):
            status, _, body = await rest(server, "GET", "/api/sessions/user/someone")
            assert status == 200, body
        for method, path in [
            ("GET", "/api/sessions/user/someone"),
            ("GET", "/api/sessions/ANY"),
            ("POST", "/api/sessions/create"),
            ("DELETE", "/api/sessions/ANY"),
        ]:
            status, headers, body = await rest(server, method, path)
            assert status == 429, (method, path, body)
            assert headers["Content-Type"].startswith("application/json")
            assert set(body) == {"error", "message"}
            assert 1 <= int(headers["Retry-After"]) <= 60
        for _ in range(10):  # health and readiness stay exempt
            for path in ("/api/health", "/api/ready"):
                status, _, body = await rest(server, "GET", path)
                assert status == 200, (path, body)


@pytest.mark.usefixtures("each_mode")
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-peer"])
async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, trusted: bool
) -> None:
    proxies = {"trusted_proxies": "127.0.0.1"} if trusted else {}
    async with serving(tmp_path, rest_requests_per_minute=3, **proxies) as (server, _):
        first = {"X-Forwarded-For": "203.0.113.1"}
        for _ in range(3):
            assert (await rest(server, "GET", "/api/sessions/user/u", first))[0] == 200
        assert (await rest(server, "GET", "/api/sessions/user/u", first))[0] == 429
        second = {"X-Forwarded-For": "203.0.113.2"}
        status = (await rest(server, "GET", "/api/sessions/user/u", second))[0]
        assert status == (200 if trusted else 429)
        # A client cannot mint itself a fresh budget by prepending addresses of its own choice:
        # the trusted proxy appended the address it saw, the right-most one.
        spoofed = {"X-Forwarded-For": "198.51.100.7, 203.0.113.1"}
        assert (await rest(server, "GET", "/api/sessions/user/u", spoofed))[0] == 429


@pytest.mark.usefixtures("each_mode")
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted-peer"])
async def test_forwarded_for_applies_to_socket_limits_only_from_trusted_proxies(
    tmp_path: Path, trusted: bool
) -> None:
    proxies = {"trusted_proxies": "127.0.0.0/8"} if trusted else {}
    async with serving(tmp_path, max_connections_per_address=1, **proxies) as (server, _):
        first = await connect(server.url, {"X-Forwarded-For": "203.0.113.1"})
        try:
            assert await refused(server.url, {"X-Forwarded-For": "203.0.113.1"})
            assert await refused(server.url, {"X-Forwarded-For": "203.0.113.2"}) is not trusted
        finally:
            await first.close()


# -- room size -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("each_mode")
async def test_a_full_room_refuses_the_next_join_and_its_members_hear_nothing(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, 4, max_clients_per_room=3) as (server, clients):
        members, late = clients[:3], clients[3]
        for index, member in enumerate(members):
            assert (await member.join(ROOM, f"M{index}", f"user-m{index}"))["ok"]
        # Every member has heard of the later joins (across processes in a cluster, member 1
        # may hear of member 2 after member 0 has).
        for index, member in enumerate(members):
            if index < 2:
                await member.next("userJoined", 2 - index)
            await wait_for(member, "roomUsers", lambda users: len(users) == 3)
        marks = [len(member.order) for member in members]

        answer = await late.join(ROOM, "Late", "user-late")

        assert answer["ok"] is False and answer["error"]["code"] == "room_full", answer
        error = await late.next("error")
        assert error == {"event": "joinRoom", "code": "room_full", **answer["error"]}
        # Markers, each relayed to the two other members, order "nothing else arrived".
        for index, member in enumerate(members):
            await member.call("cursorMove", {"roomId": ROOM, "position": f"marker {index}"})
        for index, member in enumerate(members):
            await member.next("cursorUpdate", 2)
            since = [name for name, _ in member.order[marks[index] :] if name != "sessionSaved"]
            assert since == ["cursorUpdate", "cursorUpdate"], since
        status, body = await server.http("GET", f"/api/sessions/{ROOM}")
        assert status == 200
        assert [p["name"] for p in body["session"]["participants"]] == ["M0", "M1", "M2"]
        assert server.room_of(socket_id(late)) is None
        # The refused socket is still usable, and joins once a place is free.
        assert (await late.join(OTHER_ROOM, "Late", "user-late"))["ok"]
        await members[2].close()
        await members[0].next("userLeft")
        assert (await late.join(ROOM, "Late", "user-late"))["ok"]


@pytest.mark.usefixtures("each_mode")
async def test_the_last_places_of_a_room_go_to_as_many_joiners_at_once(tmp_path: Path) -> None:
    """Many join at the same moment (cluster mode: on both processes): exactly the room's
    size get in, the others are told room_full, and everyone present sees the same list."""
    async with serving(tmp_path, 8, max_clients_per_room=3) as (_, clients):
        answers = await asyncio.gather(
            *(
                client.join(ROOM, f"J{index}", f"user-j{index}")
                for index, client in enumerate(clients)
            )
        )
        admitted = [c for c, answer in zip(clients, answers, strict=True) if answer["ok"]]
        refused = [answer["error"]["code"] for answer in answers if not answer["ok"]]
        assert len(admitted) == 3 and refused == ["room_full"] * 5, answers
        expected = sorted(socket_id(client) for client in admitted)
        for client in admitted:
            users = await wait_for(client, "roomUsers", lambda d: len(d) == 3)
            assert sorted(user["id"] for user in users) == expected


# -- CORS ----------------------------------------------------------------------------------------


async def http_raw(
    server: RunningServer, method: str, path: str, headers: dict[str, str], data: Any = None
) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, headers=headers, data=data) as response,
    ):
        return response.status, response.headers, await response.read()


async def close_polling(server: RunningServer, handshake: bytes) -> None:
    """End an Engine.IO polling session opened by a bare handshake (a CLOSE packet)."""
    sid = json.loads(handshake[1:])["sid"]
    path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    await http_raw(server, "POST", path, {"Content-Type": "text/plain"}, b"1")


async def test_cors_allows_only_the_configured_origin(tmp_path: Path) -> None:
    async with serving(tmp_path, cors_origins=ALLOWED_ORIGIN) as (server, _):
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        status, headers, _ = await http_raw(
            server, "OPTIONS", "/api/sessions/create", {"Origin": ALLOWED_ORIGIN, **preflight}
        )
        assert status in (200, 204)
        assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert "content-type" in headers["Access-Control-Allow-Headers"].lower()
        for path in ("/api/health", "/api/sessions/user/u", "/api/sessions/NOSUCH"):
            status, headers, _ = await http_raw(server, "GET", path, {"Origin": ALLOWED_ORIGIN})
            assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN, (path, status)
            assert "Origin" in headers.get("Vary", "")

        status, headers, body = await http_raw(
            server, "OPTIONS", "/api/sessions/create", {"Origin": OTHER_ORIGIN, **preflight}
        )
        assert status == 403, body
        assert "Access-Control-Allow-Origin" not in headers
        assert headers["Content-Type"].startswith("application/json")
        for path in ("/api/health", "/api/sessions/user/u"):
            status, headers, _ = await http_raw(server, "GET", path, {"Origin": OTHER_ORIGIN})
            assert status == 200
            assert "Access-Control-Allow-Origin" not in headers


async def test_socketio_applies_the_same_origins(tmp_path: Path) -> None:
    async with serving(tmp_path, cors_origins=ALLOWED_ORIGIN) as (server, _):
        handshake = "/socket.io/?EIO=4&transport=polling"
        status, headers, body = await http_raw(server, "GET", handshake, {"Origin": ALLOWED_ORIGIN})
        assert status == 200, body
        assert headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
        await close_polling(server, body)

        status, headers, body = await http_raw(server, "GET", handshake, {"Origin": OTHER_ORIGIN})
        assert status == 400, body
        assert "Access-Control-Allow-Origin" not in headers
        assert b'"sid"' not in body

        assert await refused(server.url, {"Origin": OTHER_ORIGIN})
        allowed = await connect(server.url, {"Origin": ALLOWED_ORIGIN})
        await allowed.close()


# -- the headers and content type of every HTTP answer ---------------------------------------------


async def test_every_http_answer_is_json_with_security_headers(tmp_path: Path) -> None:
    limits = {"max_code_bytes": 1000, "max_file_bytes": 1000, "rest_requests_per_minute": 30}
    async with serving(tmp_path, 1, **limits) as (server, (client,)):
        assert (await client.join(ROOM, "Ann", "user-ann"))["ok"]
        json_type = {"Content-Type": "application/json"}
        too_big = b'{"code": "' + b"a" * 80_000 + b'"}'
        requests: list[tuple[str, str, dict[str, str], Any, int]] = [
            ("GET", "/api/health", {}, None, 200),
            ("GET", "/api/ready", {}, None, 200),
            ("GET", "/api/openapi.json", {}, None, 200),
            ("GET", f"/api/sessions/{ROOM}", {}, None, 200),
            ("GET", "/api/sessions/user/user-ann", {}, None, 200),
            ("GET", "/api/sessions/NOSUCH", {}, None, 404),
            ("GET", "/api/sessions/bad.id", {}, None, 400),
            ("GET", "/api/<script>alert(1)</script>", {}, None, 404),
            ("PUT", "/api/sessions/create", {}, None, 405),
            ("PATCH", "/api/health", {}, None, 405),
            ("POST", "/api/sessions/create", json_type, b"{oops", 400),
            ("POST", "/api/sessions/create", {"Content-Type": "text/plain"}, b"{}", 415),
            ("POST", f"/api/sessions/{ROOM}/update", json_type, too_big, 413),
            ("DELETE", "/api/sessions/NOSUCH", {}, None, 404),
        ]
        for method, path, headers, data, expected in requests:
            status, got, body = await http_raw(server, method, path, headers, data)
            # An unknown method may answer 404 (no route has it) or 405.
            assert status == expected or (expected, status) == (405, 404), (path, status, body)
            assert got["Content-Type"].split(";")[0] == "application/json", (path, got)
            assert got["X-Content-Type-Options"] == "nosniff", path
            assert got["Referrer-Policy"], path
            assert got["Content-Security-Policy"], path
            json.loads(body)
        for _ in range(30):  # then the REST limit
            status, got, body = await http_raw(server, "GET", "/api/sessions/user/x", {})
        assert status == 429
        assert got["Content-Type"].split(";")[0] == "application/json"
        assert got["X-Content-Type-Options"] == "nosniff" and got["Content-Security-Policy"]


async def test_markup_in_chat_comes_back_as_json_data(tmp_path: Path) -> None:
    script = "<script>alert(document.cookie)</script>"
    async with serving(tmp_path, 2) as (server, (ann, bob)):
        assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
        assert (await bob.join(ROOM, "<img src=x onerror=alert(1)>", "user-bob"))["ok"]
        assert (await ann.call("chatMessage", {"roomId": ROOM, "message": script}))["ok"]
        assert (await bob.next("newMessage"))["message"]["message"] == script
        status, got, body = await http_raw(server, "GET", f"/api/sessions/{ROOM}", {})
        assert status == 200
        assert got["Content-Type"].split(";")[0] == "application/json"
        assert got["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in got["Content-Security-Policy"]
        session = json.loads(body)["session"]
        assert [m["message"] for m in session["messages"]] == [script]
        assert "<img src=x onerror=alert(1)>" in [p["name"] for p in session["participants"]]
        assert json.dumps(script).encode() in body  # a JSON string, not markup


async def raw_http(server: RunningServer, request: bytes) -> tuple[int, dict[str, str]]:
    """Send bytes as they are (no client library would send these); status and headers."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    finally:
        writer.close()
    status_line, *lines = head.strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "aiohttp's HTTP parser refuses a request line or header over 8190 bytes with its own "
        "text/plain 400 (aiohttp/web_protocol.py RequestHandler.handle_error) before any "
        "middleware of app/middleware.py runs: no JSON, no security headers"
    ),
)
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/sessions/user/" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 9000 + b"\r\n\r\n",
    ],
    ids=["9000-byte-url", "9000-byte-header"],
)
async def test_oversized_request_lines_get_a_json_answer_with_security_headers(
    tmp_path: Path, request_bytes: bytes
) -> None:
    async with serving(tmp_path) as (server, _):
        status, headers = await raw_http(server, request_bytes)
    assert 400 <= status < 500
    assert headers["Content-Type"].split(";")[0] == "application/json", headers
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
