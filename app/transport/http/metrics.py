"""Prometheus metrics at /metrics (off unless METRICS_ENABLED or METRICS_TOKEN).

The hot paths keep plain counters of their own (events, deliveries, merges, writes); this
collector reads them when the page is scraped, so serving metrics costs nothing per event.
Store operations are timed by a histogram (app/storage/timed.py)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from app.config import Settings
from app.domain.editing import Editing
from app.domain.rooms import Rooms
from app.domain.sessions import Sessions
from app.transport.sockets import SocketEvents

READY_TIMEOUT_SECONDS = 1.0
log = logging.getLogger(__name__)


@dataclass
class Sources:
    """What the metrics are read from."""

    rooms: Rooms
    editing: Editing
    events: SocketEvents
    sessions: Sessions
    sio: Any  # socketio.AsyncServer
    cluster: Any = None  # app.main.Cluster in cluster mode


class ServerCollector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.ready = 1.0  # set before each scrape (the store is asked asynchronously)

    def collect(self) -> Iterator[Metric]:
        src = self.sources
        rooms = src.rooms.rooms.values()
        live = GaugeMetricFamily("codecollab_rooms", "Rooms in memory", labels=["state"])
        active = sum(1 for room in rooms if room.members)
        live.add_metric(["active"], active)
        live.add_metric(["idle"], len(src.rooms.rooms) - active)
        yield live

        connections = GaugeMetricFamily(
            "codecollab_connections", "Engine.IO connections", labels=["transport"]
        )
        sockets = list(src.sio.eio.sockets.values())
        upgraded = sum(1 for socket in sockets if socket.upgraded)
        connections.add_metric(["websocket"], upgraded)
        connections.add_metric(["polling"], len(sockets) - upgraded)
        yield connections

        events = src.events
        for name, documentation, label, counts in (
            ("received", "Client events received", "event", events.received),
            ("sent", "Events sent (a broadcast counts once), by name", "event",
             events.notifier.sent),
            ("unknown", "Client events nobody serves", "event", events.unknown),
            ("refused", "Client events refused, by error code", "code", events.refused),
            ("rate_limited", "Client events dropped over their rate", "family",
             events.rate_limited),
        ):  # fmt: skip
            yield _by_label(f"codecollab_events_{name}", documentation, label, counts)

        manager = src.events.notifier.manager
        deliveries = CounterMetricFamily(
            "codecollab_deliveries", "Events delivered to sockets", labels=["path"]
        )
        deliveries.add_metric(["direct"], manager.written)
        deliveries.add_metric(["queued"], manager.queued)
        yield deliveries
        yield _counter(
            "codecollab_deliveries_coalesced",
            "Queued text updates replaced by a newer one before being sent",
            manager.coalesced,
        )
        yield _counter(
            "codecollab_slow_client_disconnects",
            "Clients disconnected for not reading what was sent to them",
            manager.slow_disconnects,
        )

        yield _by_label(
            "codecollab_text_changes", "Socket text changes, by outcome (applied, merged,"
            " fallback: last writer wins)", "outcome", src.editing.merges,
        )  # fmt: skip
        yield _counter(
            "codecollab_merge_seconds",
            "Time spent working out socket text changes (merges)",
            src.editing.merge_seconds,
        )

        writer = src.rooms.writer
        yield _counter("codecollab_room_writes", "Rooms written to the store", writer.writes)
        yield _gauge(
            "codecollab_rooms_waiting_for_write", "Rooms with changes not stored yet",
            writer.pending_rooms(),
        )  # fmt: skip
        yield _gauge(
            "codecollab_oldest_unsaved_change_seconds",
            "How long the oldest change not stored yet has waited",
            writer.oldest_unsaved_seconds(),
        )
        yield _gauge(
            "codecollab_chat_outbox_messages", "Chat messages not stored yet",
            sum(len(room.outbox) for room in rooms),
        )  # fmt: skip
        yield _gauge("codecollab_ready", "1 when the store answers", self.ready)
        yield _counter(
            "codecollab_access_revoked",
            "Sockets put out of a room by a change of its access rules",
            src.sessions.gate.revoked,
        )

        cluster = src.cluster
        if cluster is not None:
            yield _counter(
                "codecollab_cluster_append_retries",
                "Log appends that lost the race to another process and were retried",
                src.rooms.append_retries,
            )
            yield _gauge(
                "codecollab_cluster_log_lag_seconds",
                "From a log entry's append to its delivery here (the last one)",
                cluster.log.lag,
            )
            yield _counter(
                "codecollab_cluster_log_read_failures", "Room log reads that failed",
                cluster.log.read_failures,
            )  # fmt: skip
            yield _counter(
                "codecollab_cluster_relay_reconnects", "Relay subscriptions lost and renewed",
                cluster.notifier.reconnects,
            )  # fmt: skip
            relayed = CounterMetricFamily(
                "codecollab_cluster_relayed", "Relayed messages", labels=["direction"]
            )
            relayed.add_metric(["out"], cluster.notifier.relayed)
            relayed.add_metric(["in"], cluster.notifier.received)
            yield relayed


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _by_label(name: str, documentation: str, label: str, counts: Any) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([key], value)
    return family


class MetricsRoute:
    """GET /metrics: 404 when off; with METRICS_TOKEN, 401 without the token."""

    def __init__(self, settings: Settings, sources: Sources, store_seconds: Histogram) -> None:
        self.token = settings.metrics_token
        self.enabled = settings.metrics_enabled or self.token is not None
        self.sources = sources
        self.collector = ServerCollector(sources)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.registry.register(store_seconds)

    def register(self, app: web.Application) -> None:
        if self.enabled:
            app.router.add_get("/metrics", self.metrics)

    async def metrics(self, request: web.Request) -> web.Response:
        if self.token is not None:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPUnauthorized(
                    text='{"error": "Unauthorized", "message": "metrics need the token"}',
                    content_type="application/json",
                )
        problem = await self.sources.sessions.store_problem(within=READY_TIMEOUT_SECONDS)
        self.collector.ready = 0.0 if problem else 1.0
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class StatsLine:
    """The one-line summary logged every STATS_INTERVAL_SECONDS."""

    def __init__(self, sources: Sources, clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = sources
        self.clock = clock
        self._since = (clock(), self._events())

    def _events(self) -> int:
        return sum(self.sources.events.received.values())

    def line(self) -> str:
        """The figures now; events per minute since the previous line."""
        src = self.sources
        now, events = self.clock(), self._events()
        then, before = self._since
        self._since = (now, events)
        per_minute = (events - before) * 60 / (now - then) if now > then else 0.0
        active = sum(1 for room in src.rooms.rooms.values() if room.members)
        idle = len(src.rooms.rooms) - active
        connections = len(src.sio.eio.sockets)
        lag = src.rooms.writer.oldest_unsaved_seconds()
        return (
            f"rooms {active:,} active, {idle:,} idle; {connections:,} connections; "
            f"{per_minute:,.0f} events/min; writer lag {lag:.1f} s"
        )

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            log.info("%s", self.line())
