"""The room log in Redis: one order per room, decided by one atomic compare-and-append.

Per room, a version key and a stream. An append runs one Lua script: when it names the
version its change was computed on and the room has moved past it, nothing is written and
the caller catches up and tries again (as ShareDB does); otherwise the entry is added to the
stream (with the next version if it is versioned). Every process with the room open reads
the stream in order from the last entry it applied, so nothing depends on pub/sub delivery:
a process that was cut off reads on from where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from app.domain.errors import ClusterUnavailable
from app.domain.ports import Appended, LogEntry
from app.domain.rooms import entry_after

log = logging.getLogger(__name__)

PREFIX = "cc:"
# A follower's blocking read (below the client's 5 s socket timeout); a new room to follow
# interrupts it.
BLOCK_MS = 2_000
READ_COUNT = 500
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)

# KEYS: version, stream, deleted mark. ARGV: expected ('' = unversioned), body, seed version,
# process. Answers {0, version} (lost the race), {1, version, id, previous id} (appended; the
# id of the entry it follows, or '' when the log was empty) or {2} (deleted).
APPEND = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {2}
end
local version = redis.call('GET', KEYS[1])
if not version then
  version = ARGV[3]
  redis.call('SET', KEYS[1], version)
end
version = tonumber(version)
if ARGV[1] ~= '' then
  if version ~= tonumber(ARGV[1]) then
    return {0, version}
  end
  version = version + 1
  redis.call('SET', KEYS[1], version)
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local previous = ''
if last[1] then
  previous = last[1][1]
end
local id = redis.call('XADD', KEYS[2], '*', 'v', version, 'p', ARGV[4], 'e', ARGV[2])
return {1, version, id, previous}
"""

# KEYS: version, stream, deleted mark. ARGV: the stored version, '1' when nothing is stored. A
# version key below the store's (a Redis that lost its data) is raised to it. A deleted room's
# id used again for a new session starts a new log; a stored one is being deleted: false.
OPEN = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  if ARGV[2] ~= '1' then
    return false
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
local version = redis.call('GET', KEYS[1])
if (not version) or tonumber(version) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""

# KEYS: version, stream, deleted mark. ARGV: process, seconds the marks are kept. The last entry
# tells every process following the room to drop it; appends are refused from now on. Answers
# 1 when the room had a log (it was live somewhere, maybe not stored yet).
DELETE = """
local live = redis.call('EXISTS', KEYS[2]) == 1 and redis.call('EXISTS', KEYS[3]) == 0
redis.call('SET', KEYS[3], 1, 'EX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'v', redis.call('GET', KEYS[1]) or 0, 'p', ARGV[1],
           'e', '{"k":"deleted"}')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if live then
  return 1
end
return 0
"""
DELETED_KEPT_SECONDS = 3600  # how long appends of a deleted room are refused

Deliver = Callable[[str, list[LogEntry]], Awaitable[None]]


def _keys(room_id: str) -> tuple[str, str, str]:
    """The room's version, log and deleted mark (one hash slot: a Redis Cluster works too)."""
    room = f"{PREFIX}room:{{{room_id}}}"
    return f"{room}:v", f"{room}:log", f"{room}:deleted"


def _entry(raw_id: Any, fields: Any) -> LogEntry:
    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    return LogEntry(
        id=entry_id,
        version=int(fields[b"v"]),
        process=fields[b"p"].decode(),
        body=orjson.loads(fields[b"e"]),
    )


class RedisRoomLog:
    """The RoomLog of cluster mode, and the follower that feeds every open room's entries to
    the domain (`deliver`, given at start) in order."""

    def __init__(
        self, client: redis.Redis, process: str, reader: redis.Redis | None = None
    ) -> None:
        self.client = client
        # The follower's blocking reads have a client of their own: a read cut short (the
        # rooms followed changed) drops its connection, never one a command is waiting on.
        self.reader = reader if reader is not None else client
        self.process = process
        self._append = client.register_script(APPEND)
        self._open = client.register_script(OPEN)
        self._delete = client.register_script(DELETE)
        self._following: dict[str, str] = {}  # room id -> last entry id read
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        self.available = True
        self.read_failures = 0  # metrics: the follower's reads that failed
        self.lag = 0.0  # metrics: seconds from an entry's append to its delivery here (last)

    # -- the RoomLog port ---------------------------------------------------------------

    async def open(self, room_id: str, stored_version: int, *, new: bool) -> list[LogEntry] | None:
        keys = _keys(room_id)
        stream = keys[1]
        try:
            if await self._open(keys=keys, args=[stored_version, int(new)]) is None:
                return None
            raw: Any = await self.client.xrange(stream, "-", "+")
        except RedisError as error:
            raise self._unavailable(error) from error
        entries = [_entry(entry_id, fields) for entry_id, fields in raw]
        self._following[room_id] = entries[-1].id if entries else "0-0"
        self._changed.set()
        return entries

    async def since(self, room_id: str, after: str | None) -> list[LogEntry]:
        try:
            return await self._read(_keys(room_id)[1], after or "0-0")
        except RedisError as error:
            raise self._unavailable(error) from error

    def close(self, room_id: str) -> None:
        if self._following.pop(room_id, None) is not None:
            self._changed.set()

    async def append(
        self,
        room_id: str,
        body: dict[str, Any],
        *,
        expected: int | None,
        after: str | None,
        held: int,
    ) -> Appended:
        keys = _keys(room_id)
        stream = keys[1]
        args = ["" if expected is None else expected, orjson.dumps(body), held]
        try:
            result = await self._append(keys=keys, args=[*args, self.process])
            if result[0] == 2:
                return Appended(None, [], deleted=True)
            if result[0] == 0:
                return Appended(None, await self._read(stream, after) if after else [])
            entry_id, previous = (r.decode() if isinstance(r, bytes) else r for r in result[2:4])
            # What others appended since `after` (none when the new entry follows it: no read)
            missed = (
                await self._read(stream, after, before=entry_id)
                if after and previous != after
                else []
            )
        except RedisError as error:
            raise self._unavailable(error) from error
        entry = LogEntry(entry_id, int(result[1]), self.process, body)
        return Appended(entry, missed)

    async def exists(self, room_id: str) -> bool:
        _, stream, deleted = _keys(room_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.exists(stream)
                pipe.exists(deleted)
                found = await pipe.execute()
        except RedisError as error:
            raise self._unavailable(error) from error
        return bool(found[0]) and not found[1]

    async def delete(self, room_id: str) -> bool:
        try:
            live = await self._delete(
                keys=_keys(room_id), args=[self.process, DELETED_KEPT_SECONDS]
            )
        except RedisError as error:
            raise self._unavailable(error) from error
        return bool(live)

    async def trim(self, room_id: str, before: str) -> None:
        stream = _keys(room_id)[1]
        with contextlib.suppress(RedisError):
            await self.client.xtrim(stream, minid=before, approximate=False)

    # -- following ------------------------------------------------------------------------

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._task = asyncio.create_task(self._follow(), name="room-log-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.reader is not self.client:
            await self.reader.aclose()

    async def problem(self) -> str | None:
        try:
            await self.client.ping()
        except RedisError as error:
            self.available = False
            return f"the cluster's Redis does not answer: {error}"
        self.available = True
        return None

    async def _read(self, stream: str, after: str, before: str | None = None) -> list[LogEntry]:
        raw: Any = await self.client.xrange(
            stream, f"({after}", "+" if before is None else f"({before}"
        )
        return [_entry(entry_id, fields) for entry_id, fields in raw]

    async def _follow(self) -> None:
        failures = 0
        while True:
            if not self._following:
                self._changed.clear()
                await self._changed.wait()
                continue
            self._changed.clear()
            streams = {_keys(room_id)[1]: last for room_id, last in self._following.items()}
            read = asyncio.ensure_future(
                self.reader.xread(streams, count=READ_COUNT, block=BLOCK_MS)  # type: ignore[arg-type]
            )
            read.add_done_callback(_retrieve)
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({read, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                if not read.done():
                    read.cancel()  # the rooms followed changed (or stopping): read again
            if not read.done() or read.cancelled():
                with contextlib.suppress(asyncio.CancelledError, RedisError):
                    await read
                continue
            try:
                result: Any = read.result()
            except RedisError as error:
                failures += 1
                self.read_failures += 1
                self.available = False
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1]
                log.warning("room log: read failed (%s); retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self.available = True
            for stream_name, raw in result or []:
                name = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                room_id = name[len(PREFIX) + len("room:{") : -len("}:log")]
                entries = [_entry(entry_id, fields) for entry_id, fields in raw]
                if room_id not in self._following or not entries:
                    continue
                if entry_after(entries[-1].id, self._following[room_id]):
                    self._following[room_id] = entries[-1].id
                appended_ms = int(entries[-1].id.partition("-")[0])  # Redis's clock
                self.lag = max(0.0, time.time() - appended_ms / 1000)
                assert self._deliver is not None
                try:
                    await self._deliver(room_id, entries)
                except Exception:
                    log.exception("room %s: applying log entries failed", room_id)

    def _unavailable(self, error: Exception) -> ClusterUnavailable:
        self.available = False
        log.warning("room log unavailable: %s", error)
        return ClusterUnavailable("The cluster's room log (Redis) is unavailable; try again")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # looked at where it is needed; never "never retrieved"
