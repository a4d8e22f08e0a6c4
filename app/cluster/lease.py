"""Cluster mode: one writer per room (a lease in Redis), and each process's heartbeat, by which
the others tell that it died and its sockets dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from app.domain.errors import ClusterUnavailable

log = logging.getLogger(__name__)
PREFIX = "cc:"
PROCESS_PREFIX = f"{PREFIX}process:"  # + process id: its heartbeat key

# KEYS: the lease. ARGV: this process, lease milliseconds. Taken when free, renewed when ours.
HOLD = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisLease:
    """The WriterLease of cluster mode. A process that dies stops renewing: another takes the
    room over once the lease has run out (`seconds`)."""

    def __init__(self, client: redis.Redis, process: str, seconds: float) -> None:
        self.process = process
        self.milliseconds = int(seconds * 1000)
        self._hold = client.register_script(HOLD)
        self._release = client.register_script(RELEASE)

    @staticmethod
    def _key(room_id: str) -> str:
        return f"{PREFIX}room:{{{room_id}}}:writer"

    async def hold(self, room_id: str) -> bool:
        try:
            held = await self._hold(
                keys=[self._key(room_id)], args=[self.process, self.milliseconds]
            )
        except RedisError as error:
            raise ClusterUnavailable(f"The cluster's Redis is unavailable: {error}") from error
        return bool(held)

    async def release(self, room_id: str) -> None:
        with contextlib.suppress(RedisError):
            await self._release(keys=[self._key(room_id)], args=[self.process])


class Heartbeat:
    """Renews this process's key every `every` seconds (it expires after `lease`), and tells
    `gone` about each other process whose sockets are in a room here and whose key expired."""

    def __init__(
        self,
        client: redis.Redis,
        process: str,
        *,
        lease: float,
        every: float,
        peers: Callable[[], set[str]],
        gone: Callable[[str], None],
        tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.process = process
        self.lease = lease
        self.every = every
        self.peers = peers
        self.gone = gone
        self.tick = tick  # more to do every beat (meetings sweep their dead members)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError):
            await self.client.delete(self._key(self.process))

    @staticmethod
    def _key(process: str) -> str:
        return PROCESS_PREFIX + process

    async def beat(self) -> None:
        await self.client.set(self._key(self.process), 1, px=int(self.lease * 1000))

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
                peers = sorted(self.peers() - {self.process})
                if peers:
                    alive = await self.client.exists(*[self._key(p) for p in peers])
                    if alive < len(peers):
                        for peer in peers:
                            if not await self.client.exists(self._key(peer)):
                                log.warning("process %s stopped: its sockets dropped", peer)
                                self.gone(peer)
            except RedisError as error:
                log.warning("heartbeat failed: %s", error)
            if self.tick is not None:
                try:
                    await self.tick()
                except Exception:
                    log.exception("heartbeat: a periodic task failed")
            await asyncio.sleep(self.every)
