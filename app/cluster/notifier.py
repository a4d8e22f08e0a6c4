"""Cluster delivery: the room's own events come from its log on every process; what is not in
the log (cursors, typing, call signalling, a message to a socket of another process) crosses
processes on one Redis pub/sub channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from app.transport.broadcast import NAMESPACE, BroadcastManager
from app.transport.notifier import SocketNotifier

log = logging.getLogger(__name__)
CHANNEL = "cc:relay"
RETRY_SECONDS = 0.5


class ClusterNotifier(SocketNotifier):
    """SocketNotifier whose `relay`, and `send` to sockets of other processes, go through
    Redis. `broadcast` stays local: each process tells its own sockets what its copy of the
    room's log says."""

    def __init__(self, manager: BroadcastManager, client: redis.Redis, process: str) -> None:
        super().__init__(manager)
        self.client = client
        self.process = process
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[Any]] = set()
        self.relayed = 0  # messages published
        self.received = 0  # messages from other processes delivered here
        self.reconnects = 0  # subscriptions lost and made again

    def send(
        self, sids: Iterable[str], event: str, *args: object, replaces: str | None = None
    ) -> None:
        here: list[str] = []
        elsewhere: list[str] = []
        for sid in sids:
            (here if self.manager.is_connected(sid, NAMESPACE) else elsewhere).append(sid)
        if here:
            super().send(here, event, *args, replaces=replaces)
        if elsewhere:
            self._publish({"t": elsewhere, "e": event, "a": list(args)})

    def relay(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        super().relay(group, event, *args, skip=skip)
        self._publish({"g": group, "e": event, "a": list(args), "s": skip})

    def _publish(self, message: dict[str, Any]) -> None:
        message["p"] = self.process
        data = orjson.dumps(message)
        self.relayed += 1
        task = asyncio.ensure_future(self._send(data))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _send(self, data: bytes) -> None:
        try:
            await self.client.publish(CHANNEL, data)
        except RedisError as error:  # ephemeral: a cursor or signal is not worth more
            log.warning("relay: publish failed: %s", error)

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="relay-listener")

    async def stop(self) -> None:
        for task in [self._task, *self._publishing]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _listen(self) -> None:
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(orjson.loads(message["data"]))
            except RedisError as error:
                self.reconnects += 1
                log.warning("relay: subscription lost (%s); resubscribing", error)
                await asyncio.sleep(RETRY_SECONDS)

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("p") == self.process:
            return
        self.received += 1
        args = tuple(message.get("a", ()))
        event = message["e"]
        if "g" in message:
            skip = message.get("s")
            self.manager.broadcast_now(event, args, message["g"], () if skip is None else (skip,))
        else:
            self.manager.send_now(event, args, message.get("t", ()))
