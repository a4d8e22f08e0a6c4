"""Cluster mode: who is in each meeting of the meeting page, over every process.

Per meeting, a sorted set of `sid@process` in join order (the score comes from a counter).
A process that dies leaves its sockets listed until a process with sockets in the meeting
sweeps it (every third of the process lease): its heartbeat key is gone, so are they."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from app.cluster.lease import PROCESS_PREFIX
from app.domain.errors import ClusterUnavailable

PREFIX = "cc:meeting:"
PLACES_PREFIX = "cc:places:"  # the editor rooms' present sockets
KEPT_SECONDS = 86_400  # a meeting nobody joined for a day is forgotten

# KEYS: the set, its counter. ARGV: member, limit, seconds kept.
JOIN = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return false
  end
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: the set. ARGV: the process keys' prefix, this process, its sockets still in the meeting.
SWEEP = """
local mine = {}
for i = 3, #ARGV do
  mine[ARGV[i]] = true
end
local alive = {}
local gone = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local sid, process = string.match(member, '^(.*)@([^@]*)$')
  local keep
  if process == ARGV[2] then
    keep = mine[sid] == true
  else
    if alive[process] == nil then
      alive[process] = redis.call('EXISTS', ARGV[1] .. process) == 1
    end
    keep = alive[process]
  end
  if not keep then
    redis.call('ZREM', KEYS[1], member)
    table.insert(gone, sid)
  end
end
return gone
"""


def _sid(member: Any) -> str:
    text = member.decode() if isinstance(member, bytes) else str(member)
    return text.rpartition("@")[0]


class RedisRoster:
    """The Roster of cluster mode."""

    def __init__(self, client: redis.Redis, process: str, prefix: str = PREFIX) -> None:
        self.client = client
        self.process = process
        self.prefix = prefix  # one roster per use: the meetings, the editor rooms' places
        self._join = client.register_script(JOIN)
        self._sweep = client.register_script(SWEEP)

    def _member(self, sid: str) -> str:
        return f"{sid}@{self.process}"

    async def join(self, meeting: str, sid: str, limit: int) -> list[str] | None:
        keys = [self.prefix + meeting, f"{self.prefix}{meeting}:n"]
        try:
            members = await self._join(keys=keys, args=[self._member(sid), limit, KEPT_SECONDS])
        except RedisError as error:
            raise _unavailable(error) from error
        return None if members is None else [_sid(m) for m in members]

    async def leave(self, meeting: str, sid: str) -> None:
        try:
            await self.client.zrem(self.prefix + meeting, self._member(sid))
        except RedisError as error:
            raise _unavailable(error) from error

    async def members(self, meeting: str) -> list[str]:
        try:
            members: list[Any] = await self.client.zrange(self.prefix + meeting, 0, -1)
        except RedisError as error:
            raise _unavailable(error) from error
        return [_sid(m) for m in members]

    async def sweep(self, meeting: str, mine: set[str]) -> list[str]:
        args = [PROCESS_PREFIX, self.process, *sorted(mine)]
        try:
            gone: list[Any] = await self._sweep(keys=[self.prefix + meeting], args=args)
        except RedisError as error:
            raise _unavailable(error) from error
        return [g.decode() if isinstance(g, bytes) else str(g) for g in gone]


def _unavailable(error: Exception) -> ClusterUnavailable:
    return ClusterUnavailable(f"The cluster's Redis is unavailable: {error}")
