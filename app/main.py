"""create_app(settings): the server, its store, rooms and writer, and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import socketio
from aiohttp import web

from app.broadcast import BroadcastManager, direct_websocket
from app.config import Settings
from app.events import SocketEvents
from app.middleware import cors, json_errors, rest_rate_limit, security_headers
from app.models import Limits, utc_now
from app.packets import OrjsonPackets
from app.rooms import Rooms, RoomSettings
from app.routes import SessionRoutes
from app.sessions import Sessions
from app.storage import SessionStore, StoreError, open_store
from app.throttle import AddressLimits, ConnectionGuard, Rate, TrustedProxies
from app.writer import DebouncedWriter

log = logging.getLogger(__name__)
STORE_KEY = web.AppKey("store", SessionStore)
ROOMS_KEY = web.AppKey("rooms", Rooms)
WRITER_KEY = web.AppKey("writer", DebouncedWriter)
SIO_KEY = web.AppKey("sio", socketio.AsyncServer)
CLOSE_SOCKETS_SECONDS = 3.0


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_room_id_length=settings.max_room_id_length,
        max_user_name_length=settings.max_user_name_length,
        max_user_id_length=settings.max_user_id_length,
        max_code_bytes=settings.max_code_bytes,
        max_chat_length=settings.max_chat_length,
        max_cursor_bytes=settings.max_cursor_bytes,
    )


def create_socketio(settings: Settings) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=BroadcastManager(),
        cors_allowed_origins=settings.allowed_origins(),
        max_http_buffer_size=settings.max_http_body_bytes,
        json=OrjsonPackets,
    )
    if not settings.websocket_compression:
        sio.eio._async = {
            **sio.eio._async,
            "websocket": direct_websocket(sio.manager, settings.max_http_body_bytes),
        }
    return sio


def create_guard(settings: Settings) -> ConnectionGuard:
    return ConnectionGuard(
        AddressLimits(
            max_connections=settings.max_connections_per_address,
            connections_per_minute=settings.new_connections_per_minute,
            requests_per_minute=settings.rest_requests_per_minute,
        ),
        TrustedProxies(settings.trusted_proxies),
        {family: Rate(*rate) for family, rate in settings.event_rates().items()},
        settings.flood_disconnect_seconds,
    )


def create_app(settings: Settings, store: SessionStore | None = None) -> web.Application:
    """The whole server; `store` replaces the configured one (tests inject failing stores)."""
    store = store if store is not None else open_store(settings)
    sio = create_socketio(settings)
    guard = create_guard(settings)
    app = web.Application(
        client_max_size=settings.max_http_body_bytes,
        middlewares=[
            security_headers,
            cors(settings.allowed_origins()),
            json_errors,
            rest_rate_limit(guard),
        ],
    )
    sio.attach(app)
    events_holder: dict[str, SocketEvents] = {}

    async def on_saved(room_id: str, version: int, saved_at: Any) -> None:
        await events_holder["events"].send.session_saved(room_id, version, saved_at)

    writer = DebouncedWriter(
        store,
        debounce=settings.save_debounce_seconds,
        max_delay=settings.save_max_delay_seconds,
        retry_max=settings.store_retry_max_seconds,
        on_saved=on_saved,
    )
    rooms = Rooms(
        store,
        writer,
        RoomSettings(
            ttl=timedelta(seconds=settings.session_ttl_seconds),
            idle_seconds=settings.room_idle_seconds,
            max_clients=settings.max_clients_per_room,
            chat_timeout=settings.chat_store_timeout_seconds,
            reconnect_grace=settings.reconnect_grace_seconds,
        ),
    )
    limits = limits_from(settings)
    events = SocketEvents(sio, rooms, limits, guard)
    events_holder["events"] = events
    events.register()
    SessionRoutes(Sessions(rooms), events.send, limits).register(app)
    app[STORE_KEY], app[ROOMS_KEY], app[WRITER_KEY], app[SIO_KEY] = store, rooms, writer, sio
    app.cleanup_ctx.append(_lifecycle(settings))
    app.on_shutdown.append(_disconnect_clients)
    return app


def _lifecycle(settings: Settings) -> Any:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE_KEY]
        await store.open()
        purger = asyncio.create_task(_purge_periodically(store, settings.purge_interval_seconds))
        yield
        # Shutdown, in order: sockets were closed by on_shutdown (which made every room write
        # at once); flush what is pending, then close the store.
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        app[ROOMS_KEY].close()
        writer = app[WRITER_KEY]
        if not await writer.flush_all(settings.shutdown_flush_seconds):
            log.error("shutdown: some rooms could not be written")
        await writer.close()
        await store.close()

    return lifecycle


async def _disconnect_clients(app: web.Application) -> None:
    """Close every socket (each departure makes its room write at once), bounded in time."""
    sio = app[SIO_KEY]
    await sio.shutdown()
    closing = [
        asyncio.create_task(sio.eio.disconnect(eio_sid)) for eio_sid in list(sio.eio.sockets)
    ]
    if closing:
        _, late = await asyncio.wait(closing, timeout=CLOSE_SOCKETS_SECONDS)
        if late:
            log.warning("shutdown: %d clients did not close in time", len(late))


async def _purge_periodically(store: SessionStore, interval: float) -> None:
    while True:
        try:
            purged = await store.purge_expired(utc_now())
            if purged:
                log.info("purged %d expired sessions", purged)
        except StoreError as error:
            log.warning("purge failed: %s", error)
        await asyncio.sleep(interval)
