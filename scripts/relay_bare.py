#!/usr/bin/env python3
"""Reference "bare relay": the smallest python-socketio server speaking the
collaborative-editing protocol, used as a performance baseline by
``scripts/bench.py``.

No database, no validation, no versioning: rooms live in memory and events are
relayed as-is.

Events (Socket.IO v5, namespace ``/``):

* ``joinRoom {roomId, userName, userId}`` -> room gets ``roomUsers [...]``,
  the others get ``userJoined {userId, userName}``
* ``codeChange {roomId, code, language}`` -> others get
  ``codeUpdate {code, language, userId, userName, timestamp}``
* ``chatMessage {roomId, message}`` -> others get ``newMessage {message}``
* ``leaveRoom {roomId}`` (and disconnect) -> others get ``userLeft`` and
  ``roomUsers``

REST: ``GET /api/health`` -> 200 ``{"status": "ok"}``.

Usage::

    python scripts/relay_bare.py --port 5055            # stock settings
    python scripts/relay_bare.py --port 5055 --tuned    # see below

``--tuned`` =
  * websocket permessage-deflate off (aiohttp's ``WebSocketResponse`` defaults
    to ``compress=True`` and python-engineio's aiohttp driver does not expose
    it, so the driver's WebSocket wrapper is replaced on this server instance
    with one that passes ``compress=False``). The Node socket.io server has
    ``perMessageDeflate: false`` by default, while socket.io-client/ws offer
    the extension, so a stock aiohttp server deflates every outgoing frame;
  * uvloop event loop;
  * raised GC thresholds and ``gc.freeze()`` once the app has started.

``--orjson`` (independent of ``--tuned``) makes python-socketio encode and
decode packets with orjson.

``--redis URL`` (or ``REDIS_URL`` in the environment) makes every emit go through
python-socketio's ``AsyncRedisManager``, so that several relay processes share rooms: the
framework's own way to spread rooms over processes, measured beside ours by
``scripts/bench_cluster.py`` (configuration ``bare-redis-N``).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from typing import Any

import socketio
from aiohttp import web


class _OrjsonModule:
    """json-module shim for python-socketio (``dumps`` must return ``str``)."""

    def __init__(self) -> None:
        import orjson

        self._orjson = orjson

    def dumps(self, obj: Any, **_kw: Any) -> str:
        return self._orjson.dumps(obj).decode()

    def loads(self, s: str | bytes, **_kw: Any) -> Any:
        return self._orjson.loads(s)


def _disable_ws_deflate(sio: socketio.AsyncServer) -> None:
    """Make this server's engine.io websockets refuse permessage-deflate."""
    from aiohttp.web import WebSocketResponse
    from engineio.async_drivers import aiohttp as eio_aiohttp

    class NoDeflateWebSocket(eio_aiohttp.WebSocket):
        async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
            request = environ["aiohttp.request"]
            self._sock = WebSocketResponse(
                max_msg_size=self.server.max_http_buffer_size, compress=False
            )
            await self._sock.prepare(request)
            self.environ = environ
            await self.handler(self)
            return self._sock

    eio = sio.eio
    # copy: the driver's ``_async`` dict is module-global and shared
    eio._async = dict(eio._async, websocket=NoDeflateWebSocket)


def build_app(
    tuned: bool = False, use_orjson: bool = False, redis_url: str | None = None
) -> web.Application:
    kwargs: dict[str, Any] = {
        "async_mode": "aiohttp",
        "cors_allowed_origins": "*",
        "logger": False,
        "engineio_logger": False,
    }
    if use_orjson:
        kwargs["json"] = _OrjsonModule()
    if redis_url:
        kwargs["client_manager"] = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(**kwargs)
    if tuned:
        _disable_ws_deflate(sio)

    app = web.Application()
    sio.attach(app)

    # roomId -> {sid: {"userId", "userName"}}
    rooms: dict[str, dict[str, dict[str, Any]]] = {}
    # sid -> {"userId", "userName", "rooms": set()}
    users: dict[str, dict[str, Any]] = {}

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/api/health", health)
    app.router.add_get("/api/ready", health)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        users[sid] = {"userId": None, "userName": None, "rooms": set()}

    async def _leave(sid: str, room_id: str) -> None:
        members = rooms.get(room_id)
        user = users.get(sid)
        if members is None or sid not in members:
            return
        info = members.pop(sid)
        if user is not None:
            user["rooms"].discard(room_id)
        await sio.leave_room(sid, room_id)
        if members:
            await sio.emit("userLeft", info, room=room_id)
            await sio.emit("roomUsers", list(members.values()), room=room_id)
        else:
            del rooms[room_id]

    @sio.event
    async def joinRoom(sid: str, data: dict[str, Any]) -> None:
        room_id = data["roomId"]
        user = users.setdefault(sid, {"userId": None, "userName": None, "rooms": set()})
        user["userId"] = data.get("userId")
        user["userName"] = data.get("userName")
        user["rooms"].add(room_id)
        info = {"userId": user["userId"], "userName": user["userName"]}
        rooms.setdefault(room_id, {})[sid] = info
        await sio.enter_room(sid, room_id)
        await sio.emit("userJoined", info, room=room_id, skip_sid=sid)
        await sio.emit("roomUsers", list(rooms[room_id].values()), room=room_id)

    @sio.event
    async def codeChange(sid: str, data: dict[str, Any]) -> None:
        user = users.get(sid) or {}
        await sio.emit(
            "codeUpdate",
            {
                "code": data.get("code"),
                "language": data.get("language"),
                "userId": user.get("userId"),
                "userName": user.get("userName"),
                "timestamp": int(time.time() * 1000),
            },
            room=data["roomId"],
            skip_sid=sid,
        )

    @sio.event
    async def chatMessage(sid: str, data: dict[str, Any]) -> None:
        await sio.emit(
            "newMessage", {"message": data.get("message")}, room=data["roomId"], skip_sid=sid
        )

    @sio.event
    async def leaveRoom(sid: str, data: dict[str, Any]) -> None:
        await _leave(sid, data["roomId"])

    @sio.event
    async def disconnect(sid: str, *_args: Any) -> None:
        user = users.pop(sid, None)
        if user is None:
            return
        for room_id in list(user["rooms"]):
            members = rooms.get(room_id)
            if members is None:
                continue
            info = members.pop(sid, None)
            if not members:
                rooms.pop(room_id, None)
            elif info is not None:
                await sio.emit("userLeft", info, room=room_id)
                await sio.emit("roomUsers", list(members.values()), room=room_id)

    if tuned:

        async def _freeze(_app: web.Application) -> None:
            gc.collect()
            gc.freeze()

        app.on_startup.append(_freeze)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5055)
    ap.add_argument(
        "--tuned",
        action="store_true",
        help="deflate off + uvloop + gc.freeze() + raised GC thresholds",
    )
    ap.add_argument("--orjson", action="store_true", help="encode/decode packets with orjson")
    ap.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL"),
        help="share rooms with other processes through this Redis (AsyncRedisManager)",
    )
    args = ap.parse_args()

    loop = None
    if args.tuned:
        import uvloop

        loop = uvloop.new_event_loop()
        gc.set_threshold(100_000, 50, 100)

    app = build_app(tuned=args.tuned, use_orjson=args.orjson, redis_url=args.redis)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=loop,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
