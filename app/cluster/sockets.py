"""Cluster mode: the sockets open from each client address, counted over every process.

Each process keeps its own counts in a hash (`address -> sockets`), listed in one set of
processes. A claim sums the counts of every process whose heartbeat key still exists (a
process that died is dropped from the set, with its hash) and adds one to this process's
count only when the sum is under the limit: one script, so two processes cannot both let in
the last socket allowed. Every heartbeat rewrites this process's hash from its own counts,
so what a Redis restart or a failed release left wrong is right again within a beat."""

from __future__ import annotations

import redis.asyncio as redis
from redis.exceptions import RedisError

from app.cluster.lease import PREFIX, PROCESS_PREFIX
from app.domain.errors import ClusterUnavailable

PROCESSES = f"{PREFIX}sockets"  # the set of processes that have counted sockets
COUNTS_PREFIX = f"{PREFIX}sockets:"  # + process id: its hash of counts per address

# KEYS: the set of processes, this process's hash. ARGV: the address, the limit, this
# process, the heartbeat keys' prefix, the hashes' prefix. (Keys built in the script: one
# Redis, not a Redis Cluster.)
CLAIM = """
local total = 0
for _, p in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if p == ARGV[3] or redis.call('EXISTS', ARGV[4] .. p) == 1 then
    total = total + tonumber(redis.call('HGET', ARGV[5] .. p, ARGV[1]) or '0')
  else
    redis.call('SREM', KEYS[1], p)
    redis.call('DEL', ARGV[5] .. p)
  end
end
if total >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1
"""
# KEYS: this process's hash. ARGV: the address.
RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
"""


class RedisOpenSockets:
    """The OpenSockets of cluster mode."""

    def __init__(self, client: redis.Redis, process: str) -> None:
        self.client = client
        self.process = process
        self.key = COUNTS_PREFIX + process
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)

    async def claim(self, address: str, limit: int) -> bool:
        try:
            claimed = await self._claim(
                keys=[PROCESSES, self.key],
                args=[address, limit, self.process, PROCESS_PREFIX, COUNTS_PREFIX],
            )
        except RedisError as error:
            raise ClusterUnavailable(f"The cluster's Redis is unavailable: {error}") from error
        return bool(claimed)

    async def release(self, address: str) -> None:
        try:
            await self._release(keys=[self.key], args=[address])
        except RedisError as error:
            raise ClusterUnavailable(f"The cluster's Redis is unavailable: {error}") from error

    async def refresh(self, counts: dict[str, int]) -> None:
        """Make this process's hash say exactly `counts` (every heartbeat)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            if counts:
                pipe.hset(self.key, items=[part for pair in counts.items() for part in pair])
                pipe.sadd(PROCESSES, self.process)
            await pipe.execute()

    async def forget(self) -> None:
        """This process stops: its sockets are closed."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.srem(PROCESSES, self.process)
            await pipe.execute()
