"""A TCP proxy that delays every chunk by a random latency each way, in order: a network with
lag between a test client and a server (what a client processes, and when it answers the
server's pings, is then delayed as it would be over a real network)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class LagProxy:
    def __init__(self, target_port: int, low: float, high: float, seed: int) -> None:
        self.target_port = target_port
        self.low, self.high = low, high
        self.random = random.Random(seed)
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    def retarget(self, port: int) -> None:
        """New connections go to another server (the old one died)."""
        self.target_port = port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        last = 0.0

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not chunk:
                    sink.close()
                    return
                sink.write(chunk)
                await sink.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                chunk = await source.read(65536)
                due = max(last, loop.time() + self.random.uniform(self.low, self.high))
                last = due
                queue.put_nowait((due, chunk))
                if not chunk:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            sink.close()
            raise


@asynccontextmanager
async def lag(
    target_port: int, seed: int, low: float = 0.025, high: float = 0.075
) -> AsyncIterator[LagProxy]:
    proxy = LagProxy(target_port, low, high, seed)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
