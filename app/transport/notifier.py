"""The one thing that emits: the domain's Notifier, delivering through the broadcast manager."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from app.transport.broadcast import NAMESPACE, BroadcastManager


class SocketNotifier:
    """Single-process delivery: every socket is one of this process's."""

    def __init__(self, manager: BroadcastManager) -> None:
        self.manager = manager
        self.sent: dict[str, int] = {}  # deliveries by event name (metrics)
        self._closing: set[asyncio.Future[None]] = set()

    def _count(self, event: str, deliveries: int) -> None:
        self.sent[event] = self.sent.get(event, 0) + deliveries

    def send(
        self, sids: Iterable[str], event: str, *args: object, replaces: str | None = None
    ) -> None:
        recipients = list(sids)
        self._count(event, len(recipients))
        key = (NAMESPACE, replaces, event) if replaces is not None else None
        self.manager.send_now(event, args, recipients, key)

    def broadcast(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        self._count(event, 1)
        self.manager.broadcast_now(event, args, group, () if skip is None else (skip,))

    def relay(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        self.broadcast(group, event, *args, skip=skip)

    def probe(self, sid: str) -> int | None:
        return self.manager.probe(sid)

    def answered(self, sid: str) -> int | None:
        return self.manager.answered(sid)

    def close(self, sid: str) -> None:
        closing = asyncio.ensure_future(self.manager.server.disconnect(sid, namespace=NAMESPACE))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def enter(self, sid: str, group: str) -> None:
        manager = self.manager  # pre-connected: its connect handler is running
        if manager.is_connected(sid, NAMESPACE) or manager.is_pre_connected(sid, NAMESPACE):
            self.manager.basic_enter_room(sid, NAMESPACE, group)

    def leave(self, sid: str, group: str) -> None:
        with contextlib.suppress(KeyError, ValueError):  # the socket may be gone already
            self.manager.basic_leave_room(sid, NAMESPACE, group)
