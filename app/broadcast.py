"""A Socket.IO client manager that hands a broadcast to every recipient without a task each.

python-socketio's `AsyncManager.emit` encodes a room broadcast once, then creates one
asyncio task per recipient (each task runs `eio.send_packet`, which only puts the packet
on the recipient's Engine.IO queue) and awaits them all with `asyncio.wait`. Here the
already encoded Engine.IO packet is put on each recipient's queue directly: same packet,
same queue, same order, none of the per-recipient tasks, and `emit` no longer suspends the
handler that calls it.

Code updates are coalesced per recipient: when a recipient's queue still holds, as its
last packet, a `codeUpdate` of the same room that its writer has not taken yet, the new one
replaces it (each carries the room's whole text and version, so the newest supersedes the
older). That happens only when a client (or the server) cannot keep up; it bounds the
backlog instead of sending stale texts. Nothing else is ever coalesced: chat and every
other event keep one packet per emit, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

COALESCED_EVENTS = frozenset({"codeUpdate"})


class _RoomPacket(eio_packet.Packet):  # type: ignore[misc]
    """An Engine.IO MESSAGE shared by every recipient of one broadcast; `key` names the
    stream it belongs to when a newer packet of the same stream may replace it."""

    def __init__(self, data: str, key: tuple[str, str, str] | None) -> None:
        super().__init__(eio_packet.MESSAGE, data)
        self.key = key


class BroadcastManager(socketio.AsyncManager):  # type: ignore[misc]
    """`socketio.AsyncManager` whose room broadcasts enqueue directly (see module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.coalesced = 0  # packets replaced by a newer one before being sent

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or namespace not in self.rooms:
            # Acknowledged emits need one packet id per recipient: the stock path.
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
            return
        if isinstance(data, tuple):
            args = [event, *data]
        elif data is not None:
            args = [event, data]
        else:
            args = [event]
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=args
        ).encode()
        if not isinstance(encoded, str):  # binary attachments: several packets, stock path
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, **kwargs)
            return
        key = (namespace, room, event) if event in COALESCED_EVENTS and room is not None else None
        pkt = _RoomPacket(encoded, key)
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        self._enqueue(
            pkt,
            (eio_sid for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip),
        )

    def _enqueue(self, pkt: _RoomPacket, eio_sids: Iterable[str]) -> None:
        eio = self.server.eio
        sockets = eio.sockets
        ping_timeout = eio.ping_timeout
        now = time.time()
        for eio_sid in eio_sids:
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            last_ping = socket.last_ping
            if last_ping and now - last_ping > ping_timeout:
                # A client that stopped answering pings: the stock send closes it.
                task = asyncio.ensure_future(socket.send(pkt))
                task.add_done_callback(_ignore_result)
                continue
            queue = socket.queue
            pending = getattr(queue, "_queue", None)  # asyncio.Queue's deque
            if pkt.key is not None and pending and getattr(pending[-1], "key", None) == pkt.key:
                pending[-1] = pkt  # not sent yet: the newer full text supersedes it
                self.coalesced += 1
            else:
                queue.put_nowait(pkt)


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a closing socket may raise, nothing to do about it
