"""Durability under faults: a killed server, a locked SQLite file, a MongoDB server that goes
away and comes back, joins while the store is down, and two servers writing one room.

The process tests run `python -m app` as a real subprocess (tests/server_process.py); blocking
calls on it go through `asyncio.to_thread` so the test's loop keeps serving its clients."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from app.main import STORE_KEY
from app.storage.sqlite import SqliteSessionStore
from tests.fakes import FlakyStore
from tests.server_process import ServerProcess, server_process
from tests.support import Client, fast_settings, running_server

pytest_plugins = ("tests.store_backends",)

ROOM = "DURABLE1"
OTHER_ROOM = "DURABLE2"
DEBOUNCE = 0.2
MAX_DELAY = 0.5
# A write is a snapshot taken when it starts; a kill during it keeps the previous one. So the
# stored text may be older than MAX_DELAY by one keystroke interval, the time a keystroke takes
# to reach the server and the duration of one write.
WRITE_SLACK = 0.35
CHAT_TIMEOUT = 1.0
OUTAGE = 3.0
# Clients here type and chat far faster than people do, and the readiness probes poll often.
UNTHROTTLED = {
    "RATE_CODE_PER_SECOND": "1000",
    "RATE_CODE_BURST": "1000",
    "RATE_CHAT_PER_SECOND": "1000",
    "RATE_CHAT_BURST": "1000",
    "REST_REQUESTS_PER_MINUTE": "100000",
}


async def get_json(url: str) -> tuple[int, Any]:
    client_timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url) as response,
    ):
        return response.status, await response.json(content_type=None)


async def stored_session(url: str) -> dict[str, Any]:
    status, body = await get_json(f"{url}/api/sessions/{ROOM}?limit=1000")
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


def kill(server: ServerProcess) -> float:
    """SIGKILL the server; the monotonic time the signal was sent."""
    killed_at = time.monotonic()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    return killed_at


async def close_quietly(*clients: Client) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 2)


def assert_in_order_once(messages: list[dict[str, Any]]) -> None:
    versions = [m["version"] for m in messages]
    assert versions == sorted(set(versions)), versions
    ids = [m["id"] for m in messages]
    assert len(ids) == len(set(ids)), ids


class TimedClient(Client):
    """A recording client that also notes when each event arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str, Any]] = []

    async def _record(self, event: str, data: Any = None) -> None:
        self.arrivals.append((time.monotonic(), event, data))
        await super()._record(event, data)


# -- SIGKILL during continuous typing -------------------------------------------------------


@pytest.fixture(params=["sqlite", "nx27017"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"DATA_DIR": str(tmp_path / "data"), **UNTHROTTLED}
    if request.param == "nx27017":
        env["MONGODB_URI"] = request.getfixturevalue("nx_27017_uri")
        env["MONGODB_DB"] = f"durability_{tmp_path.name}"[:60]
    return env


def keystroke(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    if kind == "code":
        return "codeChange", {"roomId": ROOM, "code": f"keystroke {n}"}
    return "changeFile", {"roomId": ROOM, "fileId": "notes.md", "content": f"keystroke {n}"}


def typed_text(session: dict[str, Any], kind: str) -> str:
    if kind == "code":
        return str(session["code"])
    return next(str(f["content"]) for f in session["files"] if f["fileId"] == "notes.md")


@pytest.mark.parametrize("kind", ["code", "file"])
async def test_sigkill_during_continuous_typing_keeps_recent_code_and_acknowledged_chat(
    store_env: dict[str, str], tmp_path: Path, kind: str
) -> None:
    env = {
        **store_env,
        "SAVE_DEBOUNCE_SECONDS": str(DEBOUNCE),
        "SAVE_MAX_DELAY_SECONDS": str(MAX_DELAY),
        "CHAT_STORE_TIMEOUT_SECONDS": "10",  # with the store up, an acknowledgement means stored
    }
    log = tmp_path / "server.log"
    sent: dict[int, float] = {}  # keystroke number -> when it was sent
    alice_chat: list[str] = []  # acknowledged, in her room
    bob_chat: list[str] = []  # acknowledged, in another room, up to the kill
    stop = asyncio.Event()
    with server_process(env, log) as server:
        alice = await TimedClient().connect(server.url)
        bob = await Client().connect(server.url)
        assert (await alice.join(ROOM, "alice", "user-alice"))["ok"]
        assert (await bob.join(OTHER_ROOM, "bob", "user-bob"))["ok"]

        async def type_continuously() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                sent[n] = time.monotonic()
                try:
                    await alice.emit(*keystroke(kind, n))
                except socketio.exceptions.SocketIOError:  # the server is gone
                    return
                await asyncio.sleep(0.02)

        async def chat_continuously() -> None:
            k = 0
            while True:
                k += 1
                text = f"bob {k}"
                try:
                    answer = await bob.call("chatMessage", {"roomId": OTHER_ROOM, "message": text})
                except socketio.exceptions.SocketIOError:  # the server is gone
                    return
                assert answer["ok"] is True, answer
                bob_chat.append(text)
                await asyncio.sleep(0.03)

        typing = asyncio.create_task(type_continuously())
        chatting = asyncio.create_task(chat_continuously())
        # Alice chats now and then while she types (each chat also writes her code) ...
        for k in range(1, 6):
            text = f"alice {k}"
            answer = await alice.call("chatMessage", {"roomId": ROOM, "message": text})
            assert answer["ok"] is True, answer
            alice_chat.append(text)
            await asyncio.sleep(0.15)
        tail_from = time.monotonic()
        # ... then only types: from here on only the maximum delay writes her code. Kill the
        # server when that is worst for a writer that keeps its promise: just before the write
        # that is due MAX_DELAY after the last one.
        await asyncio.sleep(2 * MAX_DELAY)
        saves = len(alice.events["sessionSaved"])
        try:
            await alice.next("sessionSaved", saves + 1, within=MAX_DELAY + WRITE_SLACK)
        except TimeoutError:
            pytest.fail(f"continuous typing was not written within {MAX_DELAY + WRITE_SLACK} s")
        await asyncio.sleep(0.9 * MAX_DELAY)
        killed_at = await asyncio.to_thread(kill, server)
        stop.set()
        await asyncio.wait_for(typing, 5)
        chatting.cancel()  # a chat in flight at the kill is never acknowledged
        with contextlib.suppress(asyncio.CancelledError):
            await chatting
        await close_quietly(alice, bob)

    with server_process(env, log) as server:
        session = await stored_session(server.url)
        status, body = await get_json(f"{server.url}/api/sessions/{OTHER_ROOM}?limit=1000")
        assert status == 200, body
        other = body["session"]
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0, server.log()

    # While Alice only typed, her room was written at least every MAX_DELAY ...
    saved = [(at, data["version"]) for at, event, data in alice.arrivals if event == "sessionSaved"]
    tail = [tail_from] + [at for at, _ in saved if at > tail_from] + [killed_at]
    assert max(b - a for a, b in itertools.pairwise(tail)) <= MAX_DELAY + WRITE_SLACK
    # ... so what a restart finds is no older than that, and no older than a write announced.
    text = typed_text(session, kind)
    assert text.startswith("keystroke "), text
    last = int(text.removeprefix("keystroke "))
    assert killed_at - sent[last] <= MAX_DELAY + WRITE_SLACK, (last, len(sent))
    assert session["version"] >= max(version for _, version in saved)

    assert [m["message"] for m in session["messages"]] == alice_chat
    assert_in_order_once(session["messages"])
    stored_bob = [m["message"] for m in other["messages"]]
    assert len(bob_chat) > 10
    assert stored_bob[: len(bob_chat)] == bob_chat
    # Only the chat in flight at the kill may be there without its acknowledgement.
    assert stored_bob[len(bob_chat) :] in ([], [f"bob {len(bob_chat) + 1}"])
    assert_in_order_once(other["messages"])


async def test_rejoin_after_a_crash_replays_what_was_missed_since(tmp_path: Path) -> None:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "SAVE_DEBOUNCE_SECONDS": "30",  # only chat is written before the kill
        "SAVE_MAX_DELAY_SECONDS": "60",
        **UNTHROTTLED,
    }
    log = tmp_path / "server.log"
    with server_process(env, log) as server:
        ann, bob = await Client().connect(server.url), await Client().connect(server.url)
        await ann.join(ROOM, "Ann", "user-ann")
        await bob.join(ROOM, "Bob", "user-bob")
        await ann.call("chatMessage", {"roomId": ROOM, "message": "stored"})
        for n in range(1, 5):
            await ann.call("codeChange", {"roomId": ROOM, "code": f"lost {n}"})
        last_seen = (await bob.next("codeUpdate", 4))["version"]
        await asyncio.to_thread(kill, server)
        await close_quietly(ann, bob)

    with server_process(env, log) as server:
        ann, back = await Client().connect(server.url), await Client().connect(server.url)
        try:
            joined = await ann.join(ROOM, "Ann", "user-ann")
            assert joined["version"] < last_seen  # the typing was lost with the process
            sent = [
                await ann.call("chatMessage", {"roomId": ROOM, "message": f"after {k}"})
                for k in (1, 2)
            ]
            await back.join(ROOM, "Bob", "user-bob", lastSeenVersion=last_seen)
            await back.quiet(0.5)
            replayed = [d["message"]["message"] for e, d in back.order if e == "newMessage"]
            assert replayed == ["after 1", "after 2"], (sent, last_seen)
            codes = [d["code"] for e, d in back.order if e == "codeUpdate"]
            assert codes == [joined["code"]]  # Bob still shows "lost 4"
        finally:
            await close_quietly(ann, back)


# -- store outages while two clients type and chat ------------------------------------------


@dataclass
class Probe:
    """Results of polling one URL: (started, finished, status or None, body)."""

    results: list[tuple[float, float, int | None, Any]] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[tuple[float, float, int | None, Any]]:
        return [r for r in self.results if start <= r[0] and r[1] <= end]


@dataclass
class Chat:
    client: str
    id: str
    text: str
    sent_at: float
    acked_at: float
    version: int


class Collaboration:
    """Two clients in one room who type (every 50 ms) and chat (every 250 ms), and probes of
    /api/ready and /api/health every 100 ms, until `stop()`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients = {"ann": TimedClient(), "bob": TimedClient()}
        self.typed: dict[str, list[tuple[int, str]]] = {"ann": [], "bob": []}  # (version, text)
        self.chats: list[Chat] = []
        self.ready = Probe()
        self.health = Probe()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name, client in self.clients.items():
            await client.connect(self.url)
            assert (await client.join(ROOM, name, f"user-{name}"))["ok"]
        for name, client in self.clients.items():
            self._tasks.append(asyncio.create_task(self._type(name, client)))
            self._tasks.append(asyncio.create_task(self._chat(name, client)))
        self._tasks.append(asyncio.create_task(self._probe("/api/ready", self.ready)))
        self._tasks.append(asyncio.create_task(self._probe("/api/health", self.health)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await asyncio.sleep(0.3)  # broadcasts still on their way

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await close_quietly(*self.clients.values())

    async def _type(self, name: str, client: Client) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            text = f"{name} typed {n}"
            answer = await client.call("codeChange", {"roomId": ROOM, "code": text})
            assert answer["ok"] is True, answer
            # The room's text then: what was sent, or the merge of it the answer carries.
            self.typed[name].append((answer["version"], answer.get("code", text)))
            await asyncio.sleep(0.05)

    async def _chat(self, name: str, client: Client) -> None:
        k = 0
        while not self._stop.is_set():
            k += 1
            message = {"id": f"{name}-{k}", "message": f"{name} says {k}"}
            sent_at = time.monotonic()
            answer = await client.call("chatMessage", {"roomId": ROOM, "message": message})
            assert answer["ok"] is True, answer
            assert answer["id"] == message["id"]
            acked_at = time.monotonic()
            text, version = message["message"], answer["version"]
            self.chats.append(Chat(name, message["id"], text, sent_at, acked_at, version))
            await asyncio.sleep(0.25)

    async def _probe(self, path: str, probe: Probe) -> None:
        timeout = aiohttp.ClientTimeout(total=4)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    async with session.get(self.url + path) as response:
                        status, body = response.status, await response.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError) as error:
                    status, body = None, repr(error)
                probe.results.append((started, time.monotonic(), status, body))
                await asyncio.sleep(0.1)

    def last_text_seen(self, name: str) -> tuple[int, str]:
        """The text of the highest version this client saw: its own or another's change."""
        seen = list(self.typed[name])
        seen += [
            (d["version"], d["code"])
            for _, e, d in self.clients[name].arrivals
            if e == "codeUpdate"
        ]
        return max(seen)

    def received_at(self, name: str, message_id: str) -> float | None:
        for at, event, data in self.clients[name].arrivals:
            if event == "newMessage" and data["message"]["id"] == message_id:
                return at
        return None


@asynccontextmanager
async def collaborating(url: str) -> AsyncIterator[Collaboration]:
    work = Collaboration(url)
    try:
        await work.start()
        yield work
    finally:
        await work.close()


def assert_outage_seen(work: Collaboration, down_at: float, up_at: float) -> None:
    """Ready: 200 before, 503 with a reason within 5 s of the outage, 200 again within 5 s of
    its end. Health: 200 throughout. Chat during the outage: relayed within the chat timeout."""
    assert {status for _, _, status, _ in work.health.results} == {200}, work.health.results
    assert len(work.health.between(down_at, up_at)) >= 5
    before = work.ready.between(0, down_at)
    assert before and {status for _, _, status, _ in before} == {200}, before
    during = [r for r in work.ready.results if r[0] >= down_at and r[2] != 200]
    assert during, work.ready.results
    _, first_503_at, status, body = during[0]
    assert status == 503, during[0]
    assert first_503_at - down_at <= 5.0
    assert body["status"] == "unavailable"
    assert isinstance(body["reason"], str) and body["reason"]
    back = [r for r in work.ready.results if r[0] >= up_at and r[2] == 200]
    assert back, work.ready.results
    assert back[0][1] - up_at <= 5.0
    assert work.ready.results[-1][2] == 200

    affected = [c for c in work.chats if down_at <= c.sent_at <= up_at - CHAT_TIMEOUT]
    assert {c.client for c in affected} == {"ann", "bob"}, work.chats
    for chat in work.chats:
        other = "bob" if chat.client == "ann" else "ann"
        received_at = work.received_at(other, chat.id)
        assert received_at is not None, chat
        assert received_at - chat.sent_at <= CHAT_TIMEOUT + 0.5, (chat, received_at)
    # The outage was one: chat sent while the store is down waits for the timeout, and nothing
    # is written; once it is over, the writer's next retry (at most STORE_RETRY_MAX_SECONDS
    # away, plus one attempt of STORE_TIMEOUT_SECONDS) writes everything pending.
    assert max(c.acked_at - c.sent_at for c in affected) >= CHAT_TIMEOUT * 0.9
    saved = [at for at, event, _ in work.clients["ann"].arrivals if event == "sessionSaved"]
    assert not [at for at in saved if down_at + 0.1 < at < up_at], (saved, down_at, up_at)
    assert min(at for at in saved if at >= up_at) - up_at <= 0.5 + 1.0 + 0.5


def final_state(work: Collaboration) -> tuple[str, list[tuple[int, str, str]]]:
    """The last text both clients saw, and every acknowledged chat ordered by version."""
    ann, bob = work.last_text_seen("ann"), work.last_text_seen("bob")
    assert ann == bob, (ann, bob)
    chats = sorted((c.version, c.id, c.text) for c in work.chats)
    return ann[1], chats


def assert_stored(session: dict[str, Any], text: str, chats: list[tuple[int, str, str]]) -> None:
    assert session["code"] == text
    assert [(m["version"], m["id"], m["message"]) for m in session["messages"]] == chats


def outage_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATA_DIR": str(tmp_path / "data"),
        "SAVE_DEBOUNCE_SECONDS": str(DEBOUNCE),
        "SAVE_MAX_DELAY_SECONDS": str(MAX_DELAY),
        "CHAT_STORE_TIMEOUT_SECONDS": str(CHAT_TIMEOUT),
        "STORE_RETRY_MAX_SECONDS": "0.5",
        "STORE_TIMEOUT_SECONDS": "1",
        **UNTHROTTLED,
    }


def lock_database(path: Path) -> tuple[sqlite3.Connection, float]:
    """Another connection takes the file's write lock and keeps it; when it was taken."""
    connection = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN EXCLUSIVE")
    return connection, time.monotonic()


def unlock_database(connection: sqlite3.Connection) -> float:
    connection.execute("ROLLBACK")
    released_at = time.monotonic()
    connection.close()
    return released_at


async def test_sqlite_locked_by_another_connection_loses_nothing(tmp_path: Path) -> None:
    env = outage_env(tmp_path)
    log = tmp_path / "server.log"
    with server_process(env, log) as server:
        async with collaborating(server.url) as work:
            await asyncio.sleep(1.0)
            locker, locked_at = await asyncio.to_thread(
                lock_database, tmp_path / "data" / "sessions.sqlite3"
            )
            try:
                await asyncio.sleep(OUTAGE)
            finally:
                released_at = await asyncio.to_thread(unlock_database, locker)
            await asyncio.sleep(2.0)
            await work.stop()
            assert_outage_seen(work, locked_at, released_at)
            text, chats = final_state(work)
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0, server.log()
    with server_process(env, log) as server:
        assert_stored(await stored_session(server.url), text, chats)


async def test_a_readiness_probe_cut_short_leaves_no_write_lock_behind(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    path = settings.data_dir / "sessions.sqlite3"
    async with running_server(settings) as server:
        store = server.app[STORE_KEY]
        locker, _ = await asyncio.to_thread(lock_database, path)
        try:
            # As during an outage, the server's own transaction holds its connection while it
            # waits out the 1 s busy timeout; the probe's ping queues behind it.
            async with store._write_lock:
                probe = asyncio.create_task(server.http("GET", "/api/ready"))
                await asyncio.sleep(1.2)
            status, _ = await probe  # 2 s: the ping's BEGIN is still waiting for the lock
        finally:
            await asyncio.to_thread(unlock_database, locker)
        assert status == 503
        await asyncio.sleep(0.5)  # the outage is over; the server does nothing meanwhile

        def write_from_elsewhere() -> None:
            other = sqlite3.connect(path, timeout=0.5, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()

        await asyncio.to_thread(write_from_elsewhere)
        assert await server.http("GET", "/api/ready") == (200, {"status": "ready"})


class Nx27017:
    """An nx-27017 server of our own, to stop and start again on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        if importlib.util.find_spec("nx_27017") is None:
            pytest.skip("nx-27017 is not installed (pip install 'nx-27017==0.8.1')")
        self.workdir = workdir
        self.port = 0  # the first start lets the OS pick; later starts reuse it
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        # Imported here: the module is a pytest plugin of this one, registered after import.
        from tests.store_backends import (
            NX_27017_LAUNCHER,
            NX_27017_STARTUP_SECONDS,
            _listening_port,
        )

        self.starts += 1
        stderr_path = self.workdir / f"nx-27017.{self.starts}.stderr"
        with stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    NX_27017_LAUNCHER,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.workdir / "data"),
                    "--log-file",
                    str(self.workdir / "nx-27017.log"),
                    "--pid-file",
                    str(self.workdir / f"nx-27017.{self.starts}.pid"),
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + NX_27017_STARTUP_SECONDS
        while (port := _listening_port(stderr_path)) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = stderr_path.read_text(errors="replace")
                raise RuntimeError(f"nx-27017 did not start ({self.process.poll()}):\n{log}")
            time.sleep(0.02)
        assert self.port in (0, port)
        self.port = port

    def stop(self) -> float:
        """Terminate the server; the monotonic time it was asked to stop."""
        stopped_at = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return stopped_at

    def restart(self) -> float:
        """Start again on the same port and data; the monotonic time it listens again."""
        self.start()
        return time.monotonic()


@pytest.fixture
def nx_server(tmp_path: Path) -> Iterator[Nx27017]:
    server = Nx27017(tmp_path / "nx-27017")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_mongodb_server_stopped_and_restarted_loses_nothing(
    nx_server: Nx27017, tmp_path: Path
) -> None:
    env = {**outage_env(tmp_path), "MONGODB_URI": nx_server.uri, "MONGODB_DB": "outage"}
    log = tmp_path / "server.log"
    with server_process(env, log) as server:
        async with collaborating(server.url) as work:
            await asyncio.sleep(1.0)
            stopped_at = await asyncio.to_thread(nx_server.stop)
            await asyncio.sleep(OUTAGE)
            restarted_at = await asyncio.to_thread(nx_server.restart)
            await asyncio.sleep(2.5)
            await work.stop()
            assert_outage_seen(work, stopped_at, restarted_at)
            text, chats = final_state(work)
        assert await asyncio.to_thread(server.stop, signal.SIGTERM) == 0, server.log()
    with server_process(env, log) as server:
        assert_stored(await stored_session(server.url), text, chats)


# -- a join while the store is down -----------------------------------------------------------


async def test_join_while_the_store_is_down_is_refused_and_creates_nothing(
    tmp_path: Path,
) -> None:
    store = FlakyStore(tmp_path / "sessions.sqlite3")
    settings = fast_settings(tmp_path)
    async with running_server(settings, store) as server:
        ann = await Client().connect(server.url)
        try:
            store.failing = True
            answer = await ann.join(ROOM, "Ann", "user-ann")

            assert answer["ok"] is False
            assert answer["error"]["code"] == "store_unavailable"
            error = await ann.next("error")
            assert (error["event"], error["code"]) == ("joinRoom", "store_unavailable")
            assert ROOM not in server.rooms.rooms
            assert server.rooms.counts()["sockets"] == 0
            for event, payload in [
                ("codeChange", {"code": "lost"}),
                ("chatMessage", {"message": "lost"}),
                ("languageChange", {"language": "python"}),
            ]:
                refused = await ann.call(event, {"roomId": ROOM, **payload})
                assert refused["ok"] is False
                assert refused["error"]["code"] == "not_in_room", (event, refused)
            assert "roomUsers" not in ann.events

            store.failing = False
            await asyncio.sleep(0.5)  # any write the failed join had scheduled would be done
            assert await store.inner.load(ROOM) is None
            assert store.saves == []
            status, _ = await server.http("GET", f"/api/sessions/{ROOM}")
            assert status == 404
            assert ROOM not in server.rooms.rooms

            joined = await ann.join(ROOM, "Ann", "user-ann")
            assert joined["ok"] is True
            assert (await ann.call("codeChange", {"roomId": ROOM, "code": "now"}))["ok"]
        finally:
            await ann.close()


async def test_a_typist_is_never_sent_its_own_older_text_held_behind_a_chat_message(
    tmp_path: Path,
) -> None:
    """Texts leave in the room's event order, so while the store is down they wait behind a
    chat message being stored. By the time they leave, the typist's later changes were merged
    onto them: sent to it, the older texts would undo its last keys in its editor (and be
    taken for a base of its next change). Readers still get every text, in order."""
    store = FlakyStore(tmp_path / "sessions.sqlite3")
    settings = fast_settings(tmp_path, chat_store_timeout_seconds=1.0)
    async with running_server(settings, store) as server:
        typist, reader = await Client().connect(server.url), await Client().connect(server.url)
        try:
            await typist.join(ROOM, "Typist")
            await reader.join(ROOM, "Reader")
            store.failing = True
            await typist.emit("chatMessage", {"roomId": ROOM, "message": "held"})
            texts = [f"code {i}" for i in range(0, 150, 30)]
            for text in texts:
                await typist.emit("codeChange", {"roomId": ROOM, "code": text})
            await reader.next("newMessage", within=10)
            store.failing = False
            answer = await typist.call("codeChange", {"roomId": ROOM, "code": "code 150"})
            assert answer["ok"] is True
            await reader.next("codeUpdate", len(texts) + 1)
            assert [u["code"] for u in reader.events["codeUpdate"]] == [*texts, "code 150"]
            await typist.quiet(0.3)
            assert typist.events["codeUpdate"] == []
            status, body = await server.http("GET", f"/api/sessions/{ROOM}")
            assert (status, body["session"]["code"]) == (200, "code 150")
        finally:
            await typist.close()
            await reader.close()


# -- two servers, one file: newer is never overwritten by older -------------------------------


async def test_a_stale_server_never_overwrites_a_newer_version(tmp_path: Path) -> None:
    # Long delays: only the explicit flushes below write.
    settings = fast_settings(tmp_path, save_debounce_seconds=30, save_max_delay_seconds=60)
    async with running_server(settings) as a, running_server(settings) as b:
        ann, bob = await Client().connect(a.url), await Client().connect(b.url)
        try:
            await ann.join(ROOM, "Ann", "user-ann")
            await ann.call("codeChange", {"roomId": ROOM, "code": "base"})
            assert await a.writer.flush(a.rooms.rooms[ROOM])
            await bob.join(ROOM, "Bob", "user-bob")  # B loads the room as stored
            assert (b.rooms.rooms[ROOM].code, b.rooms.rooms[ROOM].version) == ("base", 1)

            for text in ("newer 1", "newer 2"):
                await ann.call("codeChange", {"roomId": ROOM, "code": text})
            assert await a.writer.flush(a.rooms.rooms[ROOM])
            stale = await bob.call("codeChange", {"roomId": ROOM, "code": "stale"})
            assert stale["version"] == 2  # older than A's 3
            writes = b.writer.writes
            assert await b.writer.flush(b.rooms.rooms[ROOM])
            assert b.writer.writes == writes + 1  # B did try, and the store refused it

            record = await a.rooms.store.load(ROOM)
            assert record is not None
            assert (record.code, record.version) == ("newer 2", 3)
            await bob.quiet(0.2)
            assert all(saved["version"] != 2 for saved in bob.events["sessionSaved"])
        finally:
            await ann.close()
            await bob.close()
    # Both servers flushed again on shutdown; B's state is still the older one.
    check = SqliteSessionStore(tmp_path / "data" / "sessions.sqlite3")
    await check.open()
    try:
        record = await check.load(ROOM)
    finally:
        await check.close()
    assert record is not None
    assert (record.code, record.version) == ("newer 2", 3)
