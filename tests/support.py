"""Test helpers: run the real app on port 0, and Socket.IO clients that record what they get."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import struct
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import engineio
import socketio
from aiohttp import web

from app.config import Settings
from app.domain.rooms import Rooms
from app.domain.writer import DebouncedWriter
from app.main import HANDLER_CANCELLATION, ROOMS_KEY, WRITER_KEY, create_app
from app.storage import SessionStore

WAIT = 5.0


def missing_tool(reason: str) -> None:
    """A test needs a tool this machine lacks: skipped here, failed under CI=true (where
    .ci/run installs every tool, so a missing one is a broken CI, not a pass)."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: every tool must be installed)", pytrace=False)
    pytest.skip(reason)


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with delays in hundredths of a second, data under tmp_path."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "save_debounce_seconds": 0.05,
        "save_max_delay_seconds": 0.3,
        "room_idle_seconds": 5.0,
        "purge_interval_seconds": 3600,
        "store_retry_max_seconds": 0.2,
        "chat_store_timeout_seconds": 1.0,
        "cors_origins": "*",
    }
    values.update(overrides)
    return Settings(**values)


# Cluster mode under test: a test server of N > 0 processes is N in-process apps in cluster
# mode, sharing a fresh redis-server and the test's store; each client connects to the next
# one in turn. TEST_CLUSTER_PROCESSES=N makes every test server so; the `each_mode` fixture
# runs a module's tests once on one process and once on two.
_mode = {"processes": int(os.environ.get("TEST_CLUSTER_PROCESSES") or 0)}


def cluster_processes() -> int:
    return _mode["processes"]


@contextmanager
def cluster_of(count: int) -> Iterator[None]:
    """Test servers made meanwhile are `count` processes (0: one, alone)."""
    previous, _mode["processes"] = _mode["processes"], count
    try:
        yield
    finally:
        _mode["processes"] = previous


class RunningServer:
    def __init__(self, urls: list[str], apps: list[web.Application]) -> None:
        self.urls = urls
        self.apps = apps
        self.app = apps[0]
        self._turn = 0

    @property
    def url(self) -> str:
        """The server's URL (cluster mode: the next process's, in turn)."""
        url = self.urls[self._turn % len(self.urls)]
        self._turn += 1
        return url

    @property
    def rooms(self) -> Rooms:
        return self.app[ROOMS_KEY]

    def counts(self) -> dict[str, int]:
        """Rooms.counts() summed over every process (cluster mode: a room live on two
        processes counts twice)."""
        total: dict[str, int] = {}
        for app in self.apps:
            for key, value in app[ROOMS_KEY].counts().items():
                total[key] = total.get(key, 0) + value
        return total

    @property
    def writer(self) -> DebouncedWriter:
        return self.app[WRITER_KEY]

    def every_rooms(self) -> list[Rooms]:
        """Each process's rooms (one process: a list of one)."""
        return [app[ROOMS_KEY] for app in self.apps]

    def room_of(self, sid: str) -> str | None:
        """The room a socket is in, whatever process serves it."""
        for rooms in self.every_rooms():
            if sid in rooms.room_of:
                return rooms.room_of[sid]
        return None

    async def flush(self, room_id: str, within: float | None = None) -> bool:
        """Wait until the store holds what every process has applied to the room (cluster
        mode: a process that does not hold the room's write lease may wait for it to run
        out, when its holder has nothing to write)."""
        if within is None:
            lease = self.app[ROOMS_KEY].settings.cluster_writer_lease_seconds
            within = WAIT + (lease if len(self.apps) > 1 else 0.0)
        for app in self.apps:
            room = app[ROOMS_KEY].rooms.get(room_id)
            if room is not None and not await app[WRITER_KEY].flush(room, within=within):
                return False
        return True

    async def http(
        self, method: str, path: str, *, process: int | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """A request to the server (cluster mode: to `process`, else to the next in turn)."""
        base = self.url if process is None else self.urls[process]
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, base + path, **kwargs) as response,
        ):
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


@asynccontextmanager
async def running_server(
    settings: Settings, store: SessionStore | None = None
) -> AsyncIterator[RunningServer]:
    if cluster_processes():
        async with _cluster(settings, store, cluster_processes()) as running:
            yield running
        return
    async with _serving(settings, store) as (url, app):
        yield RunningServer([url], [app])


@asynccontextmanager
async def _serving(
    settings: Settings, store: SessionStore | None
) -> AsyncIterator[tuple[str, web.Application]]:
    app = create_app(settings, store)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=HANDLER_CANCELLATION)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _cluster(
    settings: Settings, store: SessionStore | None, count: int
) -> AsyncIterator[RunningServer]:
    from tests.cluster_support import redis_server

    directory = Path(tempfile.mkdtemp(prefix="cluster-redis-"))
    try:
        with redis_server(directory) as redis:
            shared = settings.model_copy(
                update={"redis_url": redis.url, "cluster_shared_sqlite": True}
            )
            async with AsyncExitStack() as stack:
                served = [
                    await stack.enter_async_context(_serving(shared, store)) for _ in range(count)
                ]
                yield RunningServer([u for u, _ in served], [a for _, a in served])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class InOrderEngineIO(engineio.AsyncClient):  # type: ignore[misc]
    """Handles each message before it reads the next packet (and answers a PING), as a
    browser's engine.io-client does; the stock client handles messages in tasks of their own,
    so its PONG can overtake the handling of the message before it."""

    async def _trigger_event(self, event: str, *args: Any, run_async: bool = False) -> Any:
        return await super()._trigger_event(event, *args, run_async=False)


class InOrderClient(socketio.AsyncClient):  # type: ignore[misc]
    def _engineio_client_class(self) -> type[engineio.AsyncClient]:
        return InOrderEngineIO


class Client:
    """A real socketio.AsyncClient that keeps every event it receives, in order, per name."""

    def __init__(self, transports: list[str] | None = None) -> None:
        self.sio = InOrderClient(reconnection=False)
        self.transports = transports or ["websocket"]
        self.events: dict[str, list[Any]] = defaultdict(list)
        self.order: list[tuple[str, Any]] = []
        self._arrived = asyncio.Condition()
        self.sio.on("*", self._record)

    async def _record(self, event: str, *args: Any) -> None:
        # One argument is the payload; several (the meeting page's events) are kept as a tuple.
        data = args[0] if len(args) == 1 else (args or None)
        async with self._arrived:
            self.events[event].append(data)
            self.order.append((event, data))
            self._arrived.notify_all()

    @property
    def sid(self) -> str:
        """The Socket.IO id the server knows this client by (in `userId` of events)."""
        return str(self.sio.get_sid())

    async def connect(self, url: str, auth: Any = None) -> Client:
        await self.sio.connect(url, transports=self.transports, auth=auth, wait_timeout=WAIT)
        return self

    async def emit(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data)

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, timeout=WAIT)

    async def join(self, room_id: str, name: str, user_id: str | None = None, **extra: Any) -> Any:
        payload = {"roomId": room_id, "userName": name, "userId": user_id, **extra}
        return await self.call("joinRoom", payload)

    async def next(self, event: str, count: int = 1, within: float = WAIT) -> Any:
        """Wait until `count` events of this name have arrived; the last of them."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.events[event]) >= count), within
            )
            return self.events[event][count - 1]

    async def quiet(self, seconds: float = 0.2) -> None:
        """Let in-flight events arrive (for asserting that something did NOT arrive)."""
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


@asynccontextmanager
async def clients(
    url: str, count: int, transports: list[str] | None = None
) -> AsyncIterator[list[Client]]:
    made = [Client(transports) for _ in range(count)]
    try:
        for client in made:
            await client.connect(url)
        yield made
    finally:
        for client in made:
            await client.close()


@asynccontextmanager
async def serving(
    settings: Settings, count: int, transports: list[str] | None = None
) -> AsyncIterator[tuple[RunningServer, list[Client]]]:
    """A server and `count` connected clients (closed before the server stops)."""
    made = [Client(transports) for _ in range(count)]
    async with running_server(settings) as server:
        try:
            for client in made:
                await client.connect(server.url)
            yield server, made
        finally:
            for client in made:
                await client.close()


class RawWebSocket:
    """An Engine.IO WebSocket client written by hand: it can send several frames in one
    write, or stop reading altogether (`receive_buffer`: its socket's receive buffer, made
    small so that the server's side fills up soon)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str, receive_buffer: int | None = None) -> RawWebSocket:
        host, port = url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=receive_buffer or 2**16)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def join(self, room_id: str, name: str) -> None:
        """The Engine.IO and Socket.IO handshakes, then `joinRoom`, until it is answered."""
        assert (await self.receive())[:1] == "0"  # Engine.IO OPEN
        self.send("40")
        assert (await self.receive()).startswith("40")  # Socket.IO CONNECT
        self.send("420" + json.dumps(["joinRoom", {"roomId": room_id, "userName": name}]))
        while not (await self.receive()).startswith("430"):  # the join's answer
            pass

    @staticmethod
    def frame(text: str) -> bytes:
        """A masked text frame (a client's)."""
        payload, mask = text.encode(), os.urandom(4)
        size = len(payload)
        header = (
            struct.pack("!BB", 0x81, 0x80 | size)
            if size < 126
            else (struct.pack("!BBH", 0x81, 0x80 | 126, size))
        )
        return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    def send(self, *texts: str) -> None:
        """Text frames, in one write."""
        self.writer.write(b"".join(self.frame(text) for text in texts))

    async def receive(self) -> str:
        """The next message (WebSocket pings are skipped)."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        data = await self.reader.readexactly(size)
        if first & 0x0F == 0x9:  # a WebSocket ping: skip it
            return await self.receive()
        return data.decode()

    def close(self) -> None:
        self.writer.transport.abort()
