"""Room broadcasts: encoded once, handed to every recipient without a task each.

python-socketio's `AsyncManager.emit` encodes a room broadcast once, then creates one
asyncio task per recipient; each task puts the packet on the recipient's Engine.IO queue,
whose writer task wakes up (through `asyncio.wait_for`, one more task and timer), encodes
the text to UTF-8 and writes one WebSocket frame. `BroadcastManager` keeps the packets and
their order but drops that machinery:

- the WebSocket frame (header + UTF-8 payload) is built once per broadcast;
- a recipient whose Engine.IO writer is idle (blocked waiting for its queue: nothing is
  queued and nothing taken but unwritten) and whose socket buffer is not backed up gets
  the frame added to what its transport is written at the end of this turn of the event
  loop (`Corks`: one `writev` per recipient per turn); any other recipient gets the
  packet on its queue, behind what is already there, exactly like the stock path. Either
  way a recipient receives packets in the order they were emitted;
- `emit` never suspends the handler that calls it.

Texts are coalesced per recipient: when a recipient's queue still holds, as its last
packet but for the probes behind it, a `codeUpdate` or `fileContentUpdate` of the same text
that its writer has not taken yet, the new one replaces it (each carries the whole text and
its version, so the newest supersedes the older). That happens only when a client cannot
keep up; it bounds the backlog instead of sending stale texts. Nothing else is ever
coalesced: chat and every other event keep one packet per emit, in order. A recipient that
stays behind anyway (`slow_queue` packets waiting for `slow_seconds`) is disconnected.

Only WebSocket connections made through `direct_websocket` (permessage-deflate off) take
the direct path; long-polling clients and compressed WebSockets always use the queue. A
connection that opens as a WebSocket also runs `DirectWebSocket.serve`, a leaner Engine.IO
loop, from the route (`engineio_routes`) once python-engineio has answered its handshake,
with a writer task only while packets wait; one upgraded from long-polling keeps
python-engineio's loop. Its messages go through a `ParsedQueue`: the answers to PINGs are
counted as they are parsed and never wake the loop. Every socket's heartbeat PINGs come
from one timer (`keep_alive`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import MethodType
from typing import Any

import socketio
from aiohttp import WSMsgType, web
from aiohttp import helpers as aiohttp_helpers
from aiohttp._websocket import reader_py
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.web import WebSocketResponse
from engineio import exceptions as engineio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as engineio_aiohttp
from socketio import packet as sio_packet

log = logging.getLogger(__name__)
NAMESPACE = "/"
MAX_PROBES_PASSED = 64  # trailing probes a newer text looks past for the one it replaces
MAX_STAMPS = 1024  # arrivals of events not handled yet, per socket
SIO_EVENTS = ("2", "5")  # Socket.IO packet types of an event (plain and binary)
PONG = str(eio_packet.PONG)  # an Engine.IO PONG as it arrives: "3"
MESSAGE = str(eio_packet.MESSAGE)  # the first character of an Engine.IO message: "4"
COALESCED_EVENTS = frozenset({"codeUpdate"})
SLOW_CLIENT = "slow client"  # the disconnect reason of a recipient that stopped reading
# Write directly only while the socket's send buffer holds less than this; beyond, the
# queue's writer (which waits for the buffer to drain) takes over.
DIRECT_WRITE_BUFFER_LIMIT = 64 * 1024
DIRECT_WRITES = True  # benchmarks switch it off to measure what it brings
CORK_WRITES = True  # the same


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket text frame (RFC 6455 5.2) carrying `payload`."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class _RoomPacket(eio_packet.Packet):  # type: ignore[misc]
    """An Engine.IO packet (a MESSAGE, or a PING probe) shared by every recipient of one
    broadcast; `key` names the stream it belongs to when a newer packet of the same stream
    may replace it."""

    def __init__(
        self,
        data: str | None,
        key: tuple[str, str, str] | None,
        packet_type: int = eio_packet.MESSAGE,
        kept: bool = False,
    ) -> None:
        super().__init__(packet_type, data)
        self.key = key
        self.kept = kept  # its frame is kept once built (a packet sent again and again)
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        if self._frame is None:
            self._frame = text_frame(self.encode().encode("utf-8"))
        return self._frame

    def release_frame(self) -> None:
        if not self.kept:
            self._frame = None


class DirectWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.IO's aiohttp WebSocket without permessage-deflate, which can also be written
    to synchronously while its Engine.IO writer is idle (see `write_now`)."""

    max_message_bytes = 0  # set by direct_websocket()
    registry: dict[str, DirectWebSocket]  # Engine.IO sid -> its open WebSocket
    closing: set[asyncio.Future[Any]]  # the manager's: sockets being closed
    corks: Corks  # the manager's: what is written directly, per turn of the loop
    receipts: dict[str, Receipts]  # the manager's: PINGs sent and answered, per socket
    pending: list[bytes] | None = None  # frames written directly this turn, not sent yet

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = OpenedWebSocket(max_msg_size=self.max_message_bytes, compress=False)
        owner = getattr(self.handler, "__self__", None)  # the Engine.IO socket
        try:
            await self._sock.prepare(request)
        except ConnectionResetError:  # the browser left mid-handshake (a reload): its
            if owner is not None:  # Engine.IO socket goes now, not at its ping timeout
                await owner.close(wait=False, abort=True)
            return self._sock  # aiohttp ignores a client that went away
        self.transport: asyncio.Transport | None = request.transport
        self.sending = False
        # The handler is the Engine.IO socket's bound _websocket_handler.
        sid = getattr(owner, "sid", None)
        if isinstance(sid, str):
            self.registry[sid] = self
        if owner is not None and not owner.connected:
            # A WebSocket from the start: its loop runs once python-engineio's calls that
            # led here have returned (see `engineio_routes`).
            self.socket = owner
            self._sock.serve = self.serve
            return self._sock
        self.environ = environ
        await self._registered(sid, self.handler(self))  # an upgrade from polling
        return self._sock

    async def _registered(self, sid: object, loop: Awaitable[None]) -> None:
        try:
            await loop
        finally:
            self._unregister(sid)

    def _unregister(self, sid: object) -> None:
        self.transport = None
        if isinstance(sid, str) and self.registry.get(sid) is self:
            del self.registry[sid]

    async def serve(self) -> None:
        """Engine.IO's WebSocket loop for a connection that opened as a WebSocket, until it
        closes; without Engine.IO's `wait_for` around every read and every queue wait (a
        task and a timer each, per message, and two tasks held by every idle connection).
        Dead clients are found as before by Engine.IO's ping check, whose close ends the
        writer below. The writer is a task only while packets wait for it (an idle
        connection holds none)."""
        socket = self.socket
        socket.connected = socket.upgraded = True
        self.writer: asyncio.Future[None] | None = None
        queue = socket.queue
        queue.on_put = self._start_writer
        if not queue.empty():  # Engine.IO's OPEN packet
            self._start_writer()
        limit = socket.server.max_http_buffer_size
        reader = self._sock._reader  # PONGs and stamps taken where parsed, if a ParsedQueue
        parsing = reader if isinstance(reader, ParsedQueue) else None
        if parsing is not None:
            parsing.parsed = self.parsed
        try:
            while True:
                try:
                    data = await self.wait()
                except OSError:  # closed, or an error frame
                    break
                if data is None or len(data) > limit:
                    break
                if parsing is None and self.parsed(data):  # (aiohttp's queue: taken here)
                    await asyncio.sleep(0)
                    continue
                try:
                    await socket.receive(eio_packet.Packet(encoded_packet=data))
                except engineio_exceptions.UnknownPacketError:
                    pass
                except engineio_exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("Engine.IO receive failed")
                # A read returns at once while messages are buffered: let the others run
                # between two of them (a flooding client must not starve the loop).
                await asyncio.sleep(0)
        finally:
            if parsing is not None:
                parsing.parsed = None
            queue.put_nowait(None)  # the writer ends once it has written the rest
            # aiohttp cancels this handler when the client's connection is gone: the
            # socket's close (its disconnect handlers) still runs, to the end.
            closing = asyncio.ensure_future(self._close(socket, self.writer))
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)
            try:
                await asyncio.shield(closing)
            finally:
                self._unregister(socket.sid)

    def parsed(self, message: str | bytes) -> bool:
        """A message as it is parsed (see `ParsedQueue`), or as the loop reads it from
        aiohttp's own queue: whether it was taken (the answer to a PING, a probe or the
        heartbeat's: counted, as Engine.IO's receive and the manager's count of answers
        would, without the packet). An event is stamped."""
        socket = self.socket
        if message == PONG:
            if socket.closed:
                return False  # the loop ends on it
            receipts = self.receipts.get(socket.sid)
            if receipts is not None:
                receipts.answered += 1
            socket.schedule_ping()
            return True
        if message[:1] == MESSAGE and message[1:2] in SIO_EVENTS:
            receipts = self.receipts.get(socket.sid)
            if receipts is not None:
                receipts.stamp()
        return False

    @staticmethod
    async def _close(socket: Any, writer: asyncio.Future[None] | None) -> None:
        if writer is not None:
            await writer
        await socket.close(wait=False, abort=True, reason=socket.server.reason.TRANSPORT_CLOSE)
        sockets = socket.server.sockets
        if socket.closed and sockets.get(socket.sid) is socket:
            del sockets[socket.sid]  # (what python-engineio does once its loop has ended)

    def _start_writer(self) -> None:
        """A packet was queued: a writer unless one is writing already."""
        queue = self.socket.queue
        if not queue.busy:
            queue.busy = True
            self.writer = asyncio.ensure_future(self._write_queued(self.socket))

    async def _write_queued(self, socket: Any) -> None:
        """Write what is queued for the socket, in order, until the queue is empty (the
        writer ends; the next packet queued starts another) or the socket closes."""
        queue = socket.queue
        finished = False
        try:
            while not queue.empty():
                pkt = queue.get_nowait()
                queue.task_done()
                if pkt is None:
                    finished = True
                    break
                await self.send(pkt.encode())
                if pkt.packet_type == eio_packet.CLOSE:  # e.g. after a ping timeout
                    finished = True
                    break
        except Exception:  # the connection broke: the reader ends too
            finished = True
        finally:
            if finished:  # nothing more is written: what is queued from now on stays
                queue.on_put = None
                await self._sock.close()
            else:
                queue.busy = False
                self.writer = None

    async def send(self, message: str | bytes) -> None:
        """Called by the Engine.IO writer task for every queued packet."""
        self.flush()  # what was written directly goes first
        self.sending = True
        try:
            await super().send(message)
        finally:
            self.sending = False

    def write_now(self, frame: bytes) -> bool:
        """Write a whole frame now if nothing can be ahead of it; False: use the queue.
        The frame goes out with the others written to this socket in the same turn of the
        event loop, in one system call (see `Corks`)."""
        transport = self.transport
        if (
            transport is None
            or self.sending
            or self._sock.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_BUFFER_LIMIT
        ):
            return False
        if not CORK_WRITES:
            transport.write(frame)
        elif self.pending is None:
            self.pending = [frame]
            self.corks.add(self)
        else:
            self.pending.append(frame)
        return True

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        transport = self.transport
        if pending and transport is not None and not transport.is_closing():
            transport.writelines(pending)


class OpenedWebSocket(WebSocketResponse):
    """The WebSocket of a connection that opened as one: `serve` (set until it has run) is
    its Engine.IO loop, run by the route once python-engineio's calls that led to the
    handshake have returned (each would hold a frame, with the request's query and
    environ, for as long as the connection stays open: about 2 KB).

    Its messages are queued by a `ParsedQueue` (aiohttp's own, when its internals are not
    the ones this was written for: `PARSED_QUEUE`)."""

    serve: Callable[[], Awaitable[None]] | None = None

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        if not PARSED_QUEUE:
            super()._post_start(request, protocol, writer)
            return
        # aiohttp's _post_start (3.14) with a ParsedQueue for its queue.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        loop = self._loop
        assert loop is not None  # (set by _pre_start)
        limit = aiohttp_helpers.DEFAULT_CHUNK_SIZE
        queue = self._reader = ParsedQueue(request._protocol, limit, loop=loop)
        queue.parsed = None  # until its loop runs
        self._parser = WebSocketReader(
            queue,
            self._max_msg_size,
            compress=bool(self._compress),
            decode_text=self._decode_text,
        )
        received = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(self._parser, data_received_cb=received)
        request.protocol.keep_alive(False)


class ParsedQueue(WebSocketDataQueue):
    """aiohttp's queue of a WebSocket's messages, which shows each text message to its
    Engine.IO loop (`DirectWebSocket.parsed`) as soon as it is parsed: a PONG (the answer
    to every probe) is counted there and never queued, so it does not wake the loop, and
    an event is stamped there, in the order of the stream."""

    __slots__ = ("parsed",)
    parsed: Callable[[str], bool] | None

    def feed_data(self, data: Any, size: int) -> None:
        parsed = self.parsed
        if parsed is not None and data.type is WSMsgType.TEXT and parsed(data.data):
            return
        super().feed_data(data, size)


def _parsed_queue_fits() -> bool:
    """Whether aiohttp's WebSocket internals are those `OpenedWebSocket._post_start`
    replaces (else aiohttp's own queue is used, and the loop counts PONGs itself)."""
    try:
        post_start = inspect.signature(WebSocketResponse._post_start).parameters
        response = inspect.signature(WebSocketResponse).parameters
        reader = inspect.signature(reader_py.WebSocketReader).parameters  # (C: the same)
    except (TypeError, ValueError):
        return False
    return (
        list(post_start) == ["self", "request", "protocol", "writer"]
        and {"heartbeat", "decode_text"} <= set(response)
        and list(reader) == ["queue", "max_msg_size", "compress", "decode_text"]
        and all(
            hasattr(WebSocketResponse, name) for name in ("_reset_heartbeat", "_on_data_received")
        )
        and hasattr(aiohttp_helpers, "DEFAULT_CHUNK_SIZE")
    )


PARSED_QUEUE = _parsed_queue_fits()  # (tests switch it off to run the fallback too)


def engineio_routes(app: web.Application, engineio_server: Any, endpoint: str) -> None:
    """python-engineio's routes (its aiohttp driver's `create_route`), with the loop of an
    `OpenedWebSocket` run after python-engineio has answered the request."""

    async def get(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await engineio_server.handle_request(request)
        if isinstance(response, OpenedWebSocket) and response.serve is not None:
            serve, response.serve = response.serve, None
            await serve()
        return response

    app.router.add_get(endpoint, get)
    app.router.add_post(endpoint, engineio_server.handle_request)
    app.router.add_route("OPTIONS", endpoint, engineio_server.handle_request)


class Corks:
    """The WebSockets written to directly in this turn of the event loop. A recipient of a
    text gets a probe right behind it, and a busy room sends several events per turn: each
    socket's frames are written together when the turn ends (one `writev` instead of a
    system call per frame), in the order they were written."""

    __slots__ = ("scheduled", "sockets")

    def __init__(self) -> None:
        self.sockets: list[DirectWebSocket] = []
        self.scheduled = False

    def add(self, ws: DirectWebSocket) -> None:
        self.sockets.append(ws)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        sockets, self.sockets = self.sockets, []
        self.scheduled = False
        for ws in sockets:
            ws.flush()


def direct_websocket(manager: BroadcastManager, max_message_bytes: int) -> type[Any]:
    """The WebSocket class for Engine.IO's aiohttp driver, bound to `manager`."""
    return type(
        "DirectWebSocket",
        (DirectWebSocket,),
        {
            "max_message_bytes": max_message_bytes,
            "registry": manager.websockets,
            "closing": manager.closing,
            "corks": manager.corks,
            "receipts": manager.receipts,
        },
    )


class Receipts:
    """How many Engine.IO PINGs a socket was sent and has answered (PONG), both in order: a
    change that arrives before the answer to a PING was sent before the client processed
    anything sent after that PING."""

    __slots__ = ("answered", "sent", "stamps")

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        # Per event received, in order: the PINGs answered and the time when it arrived (its
        # handler runs later, in a task of its own, maybe after PONGs that came behind it).
        # (made on the first event: most connections are idle)
        self.stamps: deque[tuple[int, float]] | None = None

    def received(self, pkt: Any) -> None:
        """Count a PONG; stamp an event."""
        if pkt.packet_type == eio_packet.PONG:
            self.answered += 1
        elif pkt.packet_type == eio_packet.MESSAGE and str(pkt.data)[:1] in SIO_EVENTS:
            self.stamp()

    def stamp(self) -> None:
        """An event arrived (after all that was counted so far)."""
        if self.stamps is None:
            self.stamps = deque(maxlen=MAX_STAMPS)
        self.stamps.append((self.answered, time.monotonic()))


class BroadcastManager(socketio.AsyncManager):  # type: ignore[misc]
    """`socketio.AsyncManager` whose broadcasts skip the per-recipient tasks (module doc).

    A recipient with more than `slow_queue` packets waiting (its socket buffer full: it
    stopped reading) for `slow_seconds` is disconnected (reason `SLOW_CLIENT`); its
    connection is dropped at once, so the client's reconnection starts from the room's
    current state. Nobody else waits for it meanwhile."""

    def __init__(self, slow_queue: int = 1000, slow_seconds: float = 10.0) -> None:
        super().__init__()
        self.slow_queue = slow_queue
        self.slow_seconds = slow_seconds
        self.slow_since: dict[str, float] = {}  # Engine.IO sid -> when it went over
        self.slow_disconnects = 0
        # Sockets being closed (a client gone, or too slow), held until they are.
        self.closing: set[asyncio.Future[Any]] = set()
        self._probe = _RoomPacket(None, None, eio_packet.PING, kept=True)  # every probe
        self.websockets: dict[str, DirectWebSocket] = {}
        self.corks = Corks()
        self.receipts: dict[str, Receipts] = {}  # Engine.IO sid -> its PINGs and PONGs
        self.written = 0  # deliveries written directly
        self.queued = 0  # deliveries put on a queue
        self.coalesced = 0  # queued code updates replaced by a newer one before being sent

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
        if callback is not None or namespace != NAMESPACE or namespace not in self.rooms:
            # Acknowledged emits need one packet id per recipient: the stock path.
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
            return
        args = data if isinstance(data, tuple) else (() if data is None else (data,))
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        self.broadcast_now(event, args, room, skip)

    def _packet(self, event: str, args: tuple[Any, ...], key: Any = None) -> _RoomPacket:
        """A Socket.IO EVENT of the default namespace, without an id: its type and its data
        as JSON (what python-socketio's packet encodes, without its walk of the whole
        payload looking for binary parts: the server never sends any)."""
        encoded = str(sio_packet.EVENT) + self.server.packet_class.json.dumps([event, *args])
        return _RoomPacket(encoded, key)

    def broadcast_now(
        self, event: str, args: tuple[Any, ...], room: str | None, skip: Iterable[Any] = ()
    ) -> None:
        """To every socket of `room` (None: everyone) but `skip`, now, in order."""
        if NAMESPACE not in self.rooms:
            return
        key = (NAMESPACE, room, event) if event in COALESCED_EVENTS and room is not None else None
        skipped = set(skip)
        self.deliver(
            self._packet(event, args, key),
            (eio for sid, eio in self.get_participants(NAMESPACE, room) if sid not in skipped),
        )

    def send_now(
        self, event: str, args: tuple[Any, ...], sids: Iterable[str], key: Any = None
    ) -> None:
        """To these sockets, now, in order; gone sockets are skipped. A queued packet with the
        same `key` not yet taken by a socket's writer is replaced by this one."""
        if NAMESPACE not in self.rooms:
            return
        eio_sids = []
        for sid in sids:
            eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
            if eio_sid is not None:
                eio_sids.append(eio_sid)
        if eio_sids:
            self.deliver(self._packet(event, args, key), eio_sids)

    def track(self, sid: str) -> None:
        """Count a socket's PONGs and stamp its events (the PINGs it is sent are counted
        where they are sent: `probe` and the heartbeat's `_ping`)."""
        eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
        socket = self.server.eio.sockets.get(eio_sid) if eio_sid is not None else None
        if socket is None or eio_sid in self.receipts:
            return
        receipts = self.receipts[eio_sid] = Receipts()
        ws = self.websockets.get(eio_sid)
        if ws is not None and getattr(ws, "socket", None) is socket:
            return  # its loop (DirectWebSocket.serve) tells the receipts itself
        receive = socket.receive

        async def counted_receive(pkt: Any) -> None:
            receipts.received(pkt)
            await receive(pkt)

        socket.receive = counted_receive

    def keep_alive(self, eio: Any) -> None:
        """Engine.IO's heartbeat from one queue of PINGs due: python-engineio waits out the
        interval between a PONG and the next PING in a task per socket (a task, its
        coroutine, a future and a timer: about 1 KB held by every idle connection). Every
        socket waits the same interval, so PINGs fall due in the order they are scheduled:
        one timer, for the first of them. A PING goes out like a probe (in order with what
        was sent before, and counted in the socket's receipts); the ping timeout is checked
        as before, by python-engineio's service task."""
        handler = eio.handlers["connect"]
        due: deque[tuple[float, Any]] = deque()  # (when, Engine.IO socket)
        timer: asyncio.TimerHandle | None = None

        def schedule_ping(socket: Any) -> None:  # bound to each socket as its own
            nonlocal timer
            if socket.last_ping:  # the last PING was answered (python-engineio's rule)
                socket.last_ping = None
                loop = asyncio.get_running_loop()
                due.append((loop.time() + eio.ping_interval, socket))
                if timer is None:
                    timer = loop.call_at(due[0][0], ping_due)

        def ping_due() -> None:
            nonlocal timer
            loop = asyncio.get_running_loop()
            now = loop.time()
            while due and due[0][0] <= now:
                self._ping(due.popleft()[1])
            timer = loop.call_at(due[0][0], ping_due) if due else None

        async def connect(eio_sid: str, *args: Any) -> Any:
            socket = eio.sockets.get(eio_sid)
            if socket is not None:  # before python-engineio schedules the first PING
                socket.schedule_ping = MethodType(schedule_ping, socket)
            return await handler(eio_sid, *args)

        eio.handlers["connect"] = connect

    def _ping(self, socket: Any) -> None:
        if socket.closing or socket.closed:
            return
        socket.last_ping = time.time()
        self._send_ping(socket.sid)

    def _send_ping(self, eio_sid: str) -> int | None:
        """A PING to the socket now, in order with what was sent before, counted in its
        receipts; its number (None: the socket is not tracked)."""
        receipts = self.receipts.get(eio_sid)
        if receipts is not None:
            receipts.sent += 1
        self.deliver(self._probe, (eio_sid,))
        return None if receipts is None else receipts.sent

    def forget(self, sid: str) -> None:
        eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self.receipts.pop(eio_sid, None)
            self.slow_since.pop(eio_sid, None)

    def probe(self, sid: str) -> int | None:
        """Send the socket a PING now, in order with what was sent before; its number."""
        eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None or eio_sid not in self.receipts:
            return None
        return self._send_ping(eio_sid)

    def arrival(self, sid: str) -> tuple[int, float] | None:
        """For the event now being handled (call first thing, in arrival order): the PINGs
        the socket had answered when it arrived, and when."""
        eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
        receipts = self.receipts.get(eio_sid) if eio_sid is not None else None
        if receipts is None or not receipts.stamps:
            return None
        stamp = receipts.stamps.popleft()
        if not receipts.stamps:
            receipts.stamps = None
        return stamp

    def answered(self, sid: str) -> int | None:
        eio_sid = self.eio_sid_from_sid(sid, NAMESPACE)
        receipts = self.receipts.get(eio_sid) if eio_sid is not None else None
        return None if receipts is None else receipts.answered

    def deliver(self, pkt: _RoomPacket, eio_sids: Iterable[str]) -> None:
        eio = self.server.eio
        sockets = eio.sockets
        websockets = self.websockets if DIRECT_WRITES else {}
        ping_timeout = eio.ping_timeout
        now = time.time()
        for eio_sid in eio_sids:
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            last_ping = socket.last_ping
            if last_ping and now - last_ping > ping_timeout:
                # A client that stopped answering pings: the stock send closes it.
                task = asyncio.ensure_future(type(socket).send(socket, pkt))
                task.add_done_callback(_ignore_result)
                continue
            queue = socket.queue
            if (
                # Its writer waits for a packet: nothing is queued and nothing in flight
                # (a packet taken from the queue but not written yet would be overtaken).
                queue.reader_waiting
                and not socket.closing
                and socket.upgraded
                and not socket.upgrading
                and (ws := websockets.get(eio_sid)) is not None
                and ws.write_now(pkt.frame())
            ):
                self.written += 1
                continue
            pending = queue.pending
            at = self._superseded(pending, pkt.key) if pkt.key is not None and pending else None
            if at is not None and pending is not None:
                pending[at] = pkt  # not sent yet: the newer full text supersedes it
                self.coalesced += 1
            else:
                queue.put_nowait(pkt)
                self.queued += 1
            if queue.qsize() > self.slow_queue:
                self._slow(eio_sid, socket, now)
            elif self.slow_since:
                self.slow_since.pop(eio_sid, None)
        pkt.release_frame()  # queued copies keep only the text, not the frame as well

    def _superseded(self, pending: Any, key: tuple[str, str, str]) -> int | None:
        """Where in a queue the last packet is, not counting the probes behind it, when it is
        one of the stream `key` (a newer text replaces it there); else None. Its probes stay
        where they are: each is answered once the client has the newer text."""
        at = len(pending) - 1
        stop = max(-1, at - MAX_PROBES_PASSED)
        while at > stop and pending[at] is self._probe:
            at -= 1
        if at > stop and at >= 0 and getattr(pending[at], "key", None) == key:
            return at
        return None

    def _slow(self, eio_sid: str, socket: Any, now: float) -> None:
        since = self.slow_since.setdefault(eio_sid, now)
        if now - since < self.slow_seconds:
            return
        del self.slow_since[eio_sid]
        self.slow_disconnects += 1
        log.warning(
            "disconnecting a client that stopped reading: %d packets waiting for %.0f s",
            socket.queue.qsize(),
            now - since,
        )
        ws = self.websockets.get(eio_sid)
        if ws is not None and ws.transport is not None:
            ws.transport.abort()  # its writer, blocked on the full buffer, ends
        dropping = asyncio.ensure_future(socket.close(wait=False, abort=True, reason=SLOW_CLIENT))
        self.closing.add(dropping)
        dropping.add_done_callback(self.closing.discard)


def _ignore_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a closing socket may raise, nothing to do about it
