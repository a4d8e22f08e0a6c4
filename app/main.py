"""create_app(settings): the server, its store, rooms and writer, and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web

from app.clock import utc_now
from app.config import Settings
from app.domain.calls import Calls, Meetings
from app.domain.editing import Editing
from app.domain.rooms import Rooms
from app.domain.sessions import Sessions
from app.domain.throttle import AddressLimits, ConnectionGuard, Rate, TrustedProxies
from app.domain.writer import DebouncedWriter
from app.storage import SessionStore, StoreError, open_store
from app.transport.broadcast import BroadcastManager, direct_websocket
from app.transport.http.middleware import cors, json_errors, rest_rate_limit, security_headers
from app.transport.http.routes import SessionRoutes
from app.transport.notifier import SocketNotifier
from app.transport.polling import whole_bodies
from app.transport.sockets import SocketEvents
from app.wire.packets import OrjsonPackets

log = logging.getLogger(__name__)
STORE_KEY = web.AppKey("store", SessionStore)
ROOMS_KEY = web.AppKey("rooms", Rooms)
WRITER_KEY = web.AppKey("writer", DebouncedWriter)
SIO_KEY = web.AppKey("sio", socketio.AsyncServer)
EVENTS_KEY = web.AppKey("events", SocketEvents)
CLOSE_SOCKETS_SECONDS = 3.0
# Cancel a request's handler when its client goes away: a long-poll whose page was reloaded
# is then noticed at once (a transport error), not after the 45 s ping timeout.
HANDLER_CANCELLATION = True


def create_socketio(settings: Settings, manager: BroadcastManager) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=settings.allowed_origins(),
        max_http_buffer_size=settings.max_message_bytes,
        json=OrjsonPackets,
    )
    drivers = dict(sio.eio._async)
    drivers["translate_request"] = whole_bodies(drivers["translate_request"])
    if not settings.websocket_compression:
        drivers["websocket"] = direct_websocket(manager, settings.max_message_bytes)
    sio.eio._async = drivers
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
    manager = BroadcastManager()
    sio = create_socketio(settings, manager)
    notifier = SocketNotifier(manager)
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
    writer = DebouncedWriter(
        store,
        debounce=settings.save_debounce_seconds,
        max_delay=settings.save_max_delay_seconds,
        retry_max=settings.store_retry_max_seconds,
        notifier=notifier,
    )
    rooms = Rooms(store, writer, settings, notifier)
    editing = Editing(rooms, notifier, settings)
    events = SocketEvents(
        sio, settings, guard, notifier, rooms, editing, Calls(rooms, notifier),
        Meetings(notifier, settings),
    )  # fmt: skip
    events.register()
    SessionRoutes(Sessions(rooms, editing), settings, guard.address_of).register(app)
    app[STORE_KEY], app[ROOMS_KEY], app[WRITER_KEY], app[SIO_KEY] = store, rooms, writer, sio
    app[EVENTS_KEY] = events
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
