"""Prometheus metrics: off by default, behind a token when one is set, and figures that move
with real traffic (parsed with prometheus-client's own parser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")

ROOM = "METRICS"


async def scrape(server: RunningServer, **headers: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    """Every sample of every process, summed: (name, sorted labels) -> value."""
    samples: dict[tuple[str, tuple[Any, ...]], float] = {}
    for process in range(len(server.urls)):
        status, text = await server.http("GET", "/metrics", process=process, headers=headers)
        assert status == 200, text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        status, _ = await server.http("GET", "/metrics")
        assert status == 404


async def test_a_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path, metrics_token="s3cret")) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, _ = await server.http("GET", "/metrics", headers=headers)
            assert status == 401
        assert await scrape(server, Authorization="Bearer s3cret")


async def test_the_figures_move_with_traffic(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, metrics_enabled=True, rate_chat_burst=3)
    async with running_server(settings) as server:
        before = await scrape(server)
        ann, bob = Client(), Client(["polling"])
        await ann.connect(server.url)
        await bob.connect(server.url)
        try:
            assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
            assert (await bob.join(ROOM, "Bob", "user-bob"))["ok"]
            for text in ("a", "ab", "abc"):
                assert (await ann.call("codeChange", {"roomId": ROOM, "code": text}))["ok"]
            await bob.next("codeUpdate", 3)
            refused = await ann.call("codeChange", {"roomId": ROOM, "code": 42})
            assert refused["error"]["code"] == "invalid_payload"
            chats = [
                await bob.call("chatMessage", {"roomId": ROOM, "message": f"hi {n}"})
                for n in range(6)
            ]
            assert any(not chat["ok"] for chat in chats)  # over the chat burst
            await ann.next("sessionSaved")
            during = await scrape(server)
        finally:
            await ann.close()
            await bob.close()

        moved = {
            "joins": value(during, "codecollab_events_received_total", event="joinRoom"),
            "code changes": value(during, "codecollab_events_received_total", event="codeChange"),
            "refused": value(during, "codecollab_events_refused_total", code="invalid_payload"),
            "rate limited": value(during, "codecollab_events_rate_limited_total", family="chat"),
            "applied": value(during, "codecollab_text_changes_total", outcome="applied")
            + value(during, "codecollab_text_changes_total", outcome="merged"),
            "deliveries": value(during, "codecollab_deliveries_total", path="direct")
            + value(during, "codecollab_deliveries_total", path="queued"),
            "writes": value(during, "codecollab_room_writes_total")
            - value(before, "codecollab_room_writes_total"),
            "saves": value(
                during, "codecollab_store_operation_seconds_count", operation="save", outcome="ok"
            ),
        }
        assert value(during, "codecollab_events_sent_total", event="codeUpdate") >= 3
        assert moved["joins"] == 2
        assert moved["code changes"] == 4  # three accepted, one refused
        assert moved["refused"] == 1
        assert moved["rate limited"] >= 1
        assert moved["applied"] == 3
        assert moved["deliveries"] >= 3
        assert moved["writes"] >= 1 and moved["saves"] >= 1, moved
        assert value(during, "codecollab_rooms", state="active") >= 1
        assert value(during, "codecollab_connections", transport="websocket") == 1
        assert value(during, "codecollab_connections", transport="polling") == 1
        assert value(during, "codecollab_ready") == len(server.urls)
        assert value(before, "codecollab_rooms", state="active") == 0


async def test_the_stats_line_counts_rooms_connections_and_events_per_minute(
    tmp_path: Path,
) -> None:
    from app.main import EVENTS_KEY, ROOMS_KEY, SIO_KEY
    from app.transport.http.metrics import Sources, StatsLine

    async with running_server(fast_settings(tmp_path)) as server:
        app = server.app
        events = app[EVENTS_KEY]
        now = [1000.0]
        sources = Sources(app[ROOMS_KEY], events.editing, events, None, app[SIO_KEY])  # type: ignore[arg-type]
        stats = StatsLine(sources, clock=lambda: now[0])
        ann = await Client().connect(server.urls[0])
        try:
            assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
            for text in ("a", "ab", "abc", "abcd"):
                assert (await ann.call("codeChange", {"roomId": ROOM, "code": text}))["ok"]
            now[0] += 30.0  # five events in half a minute

            line = stats.line()
        finally:
            await ann.close()

        figures, lag = line.split("; writer lag ")
        assert figures == "rooms 1 active, 0 idle; 1 connections; 10 events/min"
        assert lag.endswith(" s") and float(lag.removesuffix(" s")) >= 0
        now[0] += 60.0
        assert " 0 events/min;" in stats.line()
