"""create_app(settings): the server, its store, rooms and writer, and their lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import engineio.payload
import redis.asyncio as redis
import socketio
from aiohttp import web
from limits.aio.storage import RedisStorage, Storage
from redis.exceptions import RedisError

from app.clock import utc_now
from app.cluster.lease import Heartbeat, RedisLease
from app.cluster.log import RedisRoomLog
from app.cluster.notifier import ClusterNotifier
from app.cluster.roster import PLACES_PREFIX, RedisRoster
from app.cluster.sockets import RedisOpenSockets
from app.config import Settings
from app.domain.calls import Calls, Meetings
from app.domain.contexts import Contexts
from app.domain.editing import Editing
from app.domain.exports import Exports
from app.domain.gate import Gate
from app.domain.rooms import Rooms
from app.domain.sessions import Sessions
from app.domain.throttle import AddressLimits, ConnectionGuard, Rate, TrustedProxies
from app.domain.versions import Versions
from app.domain.writer import DebouncedWriter
from app.storage import SessionStore, StoreError, open_store, store_url
from app.storage.timed import TimedStore, store_histogram
from app.transport.broadcast import BroadcastManager, direct_websocket, engineio_routes
from app.transport.http import try_page
from app.transport.http.metrics import MetricsRoute, Sources, StatsLine
from app.transport.http.middleware import (
    cors,
    http_only,
    json_errors,
    rest_rate_limit,
    security_headers,
)
from app.transport.http.routes import SessionRoutes
from app.transport.notifier import SocketNotifier
from app.transport.polling import answer_polls_on_close, whole_bodies
from app.transport.queues import PacketQueue
from app.transport.sockets import SocketEvents
from app.transport.tokens import Tokens
from app.wire.packets import OrjsonPackets

log = logging.getLogger(__name__)
STORE_KEY = web.AppKey("store", SessionStore)
ROOMS_KEY = web.AppKey("rooms", Rooms)
WRITER_KEY = web.AppKey("writer", DebouncedWriter)
SIO_KEY = web.AppKey("sio", socketio.AsyncServer)
EVENTS_KEY = web.AppKey("events", SocketEvents)
VERSIONS_KEY = web.AppKey("versions", Versions)
CLOSE_SOCKETS_SECONDS = 3.0
# Cancel a request's handler when its client goes away: a long-poll whose page was reloaded
# is then noticed at once (a transport error), not after the 45 s ping timeout.
HANDLER_CANCELLATION = True


ADMIN_UI_ORIGIN = "https://admin.socket.io"
MAX_POLL_PACKETS = 1000  # packets in one long-polling POST


def listed_or_own(origins: list[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """Socket.IO's origin check: a listed origin, or the server's own (its try-it page)."""
    listed = set(origins)

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None or origin in listed:
            return True
        hosts = {environ.get("HTTP_HOST"), environ.get("HTTP_X_FORWARDED_HOST")}
        return urlsplit(origin).netloc in hosts - {None}

    return allowed


def create_socketio(settings: Settings, manager: BroadcastManager) -> socketio.AsyncServer:
    origins = settings.allowed_origins()
    check: str | Callable[[str | None, dict[str, Any]], bool] = "*"
    if not isinstance(origins, str):
        if settings.admin_ui_password:
            origins = [*origins, ADMIN_UI_ORIGIN]  # the Admin UI's origin only when it is on
        check = listed_or_own(origins)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=check,
        max_http_buffer_size=settings.max_message_bytes,
        ping_interval=settings.ping_interval_seconds,
        ping_timeout=settings.ping_timeout_seconds,
        json=OrjsonPackets,
    )
    # A browser's long-polling POST carries every packet queued since the last one (a typist
    # on a slow link: dozens); python-engineio drops a payload of more than 16 whole, silently.
    # The body stays bounded by max_http_buffer_size.
    engineio.payload.Payload.max_decode_packets = MAX_POLL_PACKETS
    drivers = dict(sio.eio._async)
    drivers["translate_request"] = whole_bodies(drivers["translate_request"])
    if not settings.websocket_compression:
        drivers["websocket"] = direct_websocket(manager, settings.max_message_bytes)
        drivers["create_route"] = engineio_routes
    sio.eio._async = drivers
    sio.eio.create_queue = PacketQueue  # every socket's packets, without asyncio.Queue's weight
    return sio


def instrument_admin_ui(
    app: web.Application, sio: socketio.AsyncServer, settings: Settings
) -> None:
    """The Socket.IO Admin UI, when ADMIN_UI_PASSWORD is set. instrument() patches
    python-engineio's socket class: the patch is undone, and its statistics stop, when the
    app stops."""
    if not settings.admin_ui_password:
        return
    login = {"username": settings.admin_ui_username, "password": settings.admin_ui_password}
    admin = sio.instrument(auth=login, mode="production", read_only=True)

    async def uninstrument(app: web.Application) -> None:
        if admin.stop_stats_event is not None:
            admin.stop_stats_event.set()
        admin.uninstrument()

    app.on_cleanup.append(uninstrument)


def shared_windows(settings: Settings) -> Storage | None:
    """Cluster mode: the per-address windows count over every process (in Redis)."""
    if settings.redis_url is None:
        return None
    url = settings.redis_url.replace("redis://", "async+redis://", 1)
    url = url.replace("rediss://", "async+rediss://", 1)
    return RedisStorage(
        url,
        implementation="redispy",
        key_prefix="cc:limits",
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
    )


def create_guard(settings: Settings, cluster: Cluster | None) -> ConnectionGuard:
    return ConnectionGuard(
        AddressLimits(
            max_connections=settings.max_connections_per_address,
            connections_per_minute=settings.new_connections_per_minute,
            requests_per_minute=settings.rest_requests_per_minute,
            storage=shared_windows(settings),
            shared=cluster.sockets if cluster is not None else None,
        ),
        TrustedProxies(settings.trusted_proxies),
        {family: Rate(*rate) for family, rate in settings.event_rates().items()},
        settings.flood_disconnect_seconds,
    )


@dataclass
class Cluster:
    """Cluster mode's parts (REDIS_URL set): the room log and its follower, the relay, the
    heartbeat and the writer lease."""

    client: Any
    log: RedisRoomLog
    notifier: ClusterNotifier
    lease: RedisLease
    roster: RedisRoster
    places: RedisRoster
    sockets: RedisOpenSockets
    heartbeat: Heartbeat | None = None

    async def start(self, rooms: Rooms, meetings: Meetings, limits: AddressLimits) -> None:
        async def tick() -> None:
            await meetings.sweep()
            await self.sockets.refresh(limits.open)

        self.heartbeat = Heartbeat(
            self.client,
            self.log.process,
            lease=rooms.settings.cluster_process_lease_seconds,
            every=rooms.settings.cluster_process_lease_seconds / 3,
            peers=rooms.remote_processes,
            gone=rooms.process_gone,
            tick=tick,
        )
        with contextlib.suppress(RedisError):
            await self.heartbeat.beat()
        self.heartbeat.start()
        self.log.start(rooms.deliver)
        self.notifier.start()

    async def stop(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.log.stop()
        await self.notifier.stop()
        with contextlib.suppress(RedisError):
            await self.sockets.forget()
        await self.client.aclose()


CLUSTER_KEY = web.AppKey("cluster", Cluster)
REDIS_TIMEOUT_SECONDS = 5.0


def create_cluster(settings: Settings, manager: BroadcastManager) -> Cluster | None:
    if settings.redis_url is None:
        return None
    if store_url(settings).startswith("sqlite") and not settings.cluster_shared_sqlite:
        raise ValueError(
            "cluster mode (REDIS_URL) needs a store every process reaches: set MONGODB_URI "
            "(or CLUSTER_SHARED_SQLITE=true when every process runs on one machine)"
        )

    def connect() -> redis.Redis:
        # Bounded: a Redis that stops answering fails each call within REDIS_TIMEOUT_SECONDS
        # (the follower's blocking reads wait BLOCK_MS, less than that).
        return redis.Redis.from_url(
            settings.redis_url,  # type: ignore[arg-type]
            protocol=2,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )

    client = connect()
    process = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return Cluster(
        client=client,
        log=RedisRoomLog(client, process, connect()),
        notifier=ClusterNotifier(manager, client, process),
        lease=RedisLease(client, process, settings.cluster_writer_lease_seconds),
        roster=RedisRoster(client, process),
        places=RedisRoster(client, process, PLACES_PREFIX),
        sockets=RedisOpenSockets(client, process),
    )


def create_app(settings: Settings, store: SessionStore | None = None) -> web.Application:
    """The whole server; `store` replaces the configured one (tests inject failing stores)."""
    store = store if store is not None else open_store(settings)
    manager = BroadcastManager(settings.slow_client_packets, settings.slow_client_seconds)
    sio = create_socketio(settings, manager)
    cluster = create_cluster(settings, manager)
    notifier = cluster.notifier if cluster is not None else SocketNotifier(manager)
    guard = create_guard(settings, cluster)
    app = web.Application(client_max_size=settings.max_http_body_bytes)
    sio.attach(app)
    instrument_admin_ui(app, sio, settings)
    answer_polls_on_close(sio.eio)  # after instrument(), which sets a handler of its own
    manager.keep_alive(sio.eio)
    store_seconds = store_histogram()
    timed = TimedStore(store, store_seconds)  # what the domain uses: every operation timed
    writer = DebouncedWriter(
        timed,
        debounce=settings.save_debounce_seconds,
        max_delay=settings.save_max_delay_seconds,
        retry_max=settings.store_retry_max_seconds,
        notifier=notifier,
        lease=cluster.lease if cluster is not None else None,
        log=cluster.log if cluster is not None else None,
        keep_versions=settings.merge_history_versions,
    )
    rooms = Rooms(
        timed,
        writer,
        settings,
        notifier,
        log=cluster.log if cluster else None,
        places=cluster.places if cluster else None,
    )
    editing = Editing(rooms, notifier, settings)
    gate, tokens = Gate(rooms, notifier), Tokens(settings)
    contexts = Contexts(timed, notifier, gate.policy, rooms.clock)
    sessions = Sessions(rooms, editing, gate)
    versions = Versions(rooms, editing, sessions, notifier)
    events = SocketEvents(
        sio, settings, guard, notifier, rooms, editing, Calls(rooms, notifier),
        Meetings(notifier, settings, cluster.roster if cluster is not None else None),
        gate, tokens, contexts, versions,
    )  # fmt: skip
    events.register()
    exports = Exports(rooms, sessions)
    routes = SessionRoutes(
        sessions, settings, guard.address_of, tokens, contexts, versions, exports
    )
    routes.register(app)
    app.middlewares.append(
        http_only(
            security_headers,
            cors(settings.allowed_origins()),
            json_errors,
            rest_rate_limit(guard),
            routes.identify,
        )
    )
    sources = Sources(rooms, editing, events, sessions, sio, cluster)
    MetricsRoute(settings, sources, store_seconds).register(app)
    if settings.try_page:
        try_page.register(app)
    stats = StatsLine(sources)
    app[STORE_KEY], app[ROOMS_KEY], app[WRITER_KEY], app[SIO_KEY] = store, rooms, writer, sio
    app[EVENTS_KEY] = events
    app[VERSIONS_KEY] = versions
    if cluster is not None:
        app[CLUSTER_KEY] = cluster
    app.cleanup_ctx.append(_lifecycle(settings, stats))
    app.on_shutdown.append(_disconnect_clients)
    return app


def _lifecycle(settings: Settings, stats: StatsLine) -> Any:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE_KEY]
        opening = await _open_store(store)
        cluster = app.get(CLUSTER_KEY)
        if cluster is not None:
            events = app[EVENTS_KEY]
            await cluster.start(app[ROOMS_KEY], events.meetings, events.guard.limits)
        purger = asyncio.create_task(
            _purge_periodically(store, app[VERSIONS_KEY], settings.purge_interval_seconds)
        )
        checkpoints = asyncio.create_task(app[VERSIONS_KEY].run())
        interval = settings.stats_interval_seconds
        stats_task = asyncio.create_task(stats.run(interval)) if interval > 0 else None
        yield
        # Shutdown, in order: sockets were closed by on_shutdown (which made every room write
        # at once); flush what is pending, then close the store.
        await app[VERSIONS_KEY].close()
        for task in (purger, opening, stats_task, checkpoints):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        app[ROOMS_KEY].close()
        writer = app[WRITER_KEY]
        if not await writer.flush_all(settings.shutdown_flush_seconds):
            log.error("shutdown: some rooms could not be written")
        for room_id in list(app[ROOMS_KEY].rooms):  # cluster mode: others may write them now
            await writer.release(room_id)
        await writer.close()
        if cluster is not None:
            await cluster.stop()
        await store.close()

    return lifecycle


STORE_REOPEN_SECONDS = 2.0


async def _open_store(store: SessionStore) -> asyncio.Task[None] | None:
    """Open the store. A store server that does not answer at start-up (MongoDB down) does
    not stop the server: it serves (not ready, joins of unloaded rooms refused as during any
    outage) and opens the store once it answers: the task that does."""
    try:
        await store.open()
    except StoreError as error:
        if not store.remote:
            raise
        log.warning("the store is unavailable at start-up (%s); serving, not ready", error)
        return asyncio.create_task(_reopen(store), name="store-open")
    return None


async def _reopen(store: SessionStore) -> None:
    while True:
        await asyncio.sleep(STORE_REOPEN_SECONDS)
        try:
            await store.open()
        except StoreError:
            continue
        log.info("the store answers: ready")
        return


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


async def _purge_periodically(store: SessionStore, versions: Versions, interval: float) -> None:
    """Expired sessions go; history older than its retention is folded into snapshots."""
    while True:
        try:
            purged = await store.purge_expired(utc_now())
            if purged:
                log.info("purged %d expired sessions", purged)
            folded = await versions.compact(utc_now())
            if folded:
                log.info("folded the old history of %d texts into snapshots", folded)
        except StoreError as error:
            log.warning("purge failed: %s", error)
        await asyncio.sleep(interval)
