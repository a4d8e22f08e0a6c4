"""The log: one timestamp per line, text or JSON, and the room, socket and user of the
connection or room a line is about."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import logs
from tests.fakes import FlakyStore
from tests.support import Client, fast_settings, running_server

ROOM = "LOGGED"


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logs.handler(request.param, stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


@pytest.mark.parametrize("captured", ["json"], indirect=True)
async def test_json_lines_name_the_room_socket_and_user(
    tmp_path: Path, captured: io.StringIO
) -> None:
    store = FlakyStore(tmp_path / "sessions.sqlite3")
    async with running_server(fast_settings(tmp_path), store) as server:
        ann = await Client().connect(server.url)
        try:
            assert (await ann.join(ROOM, "Ann", "user-ann"))["ok"]
            store.failing = True
            assert (await ann.call("codeChange", {"roomId": ROOM, "code": "kept"}))["ok"]
            await ann.quiet(0.5)  # the writer tries, and fails
            store.failing = False
            await ann.next("sessionSaved")
        finally:
            await ann.close()

    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    failed = [line for line in lines if "write of version" in line["message"]]
    assert failed, lines
    assert failed[0]["level"] == "WARNING"
    assert failed[0]["room"] == ROOM
    assert set(failed[0]) >= {"time", "level", "logger", "message", "room"}


def test_a_text_line_has_one_timestamp_and_its_tags_before_any_traceback() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.logs")
    handler = logs.handler("text", stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logs.about(room="R1", sid="abc", user="u-1")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("applying failed")
        logs.about()
        logger.warning("about nobody")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, *trace = stream.getvalue().splitlines()
    assert first.endswith("ERROR test.logs: applying failed [room=R1 sid=abc user=u-1]")
    assert first.count(":") == 3  # hh:mm:ss and the logger's colon: one timestamp
    assert trace[0] == "Traceback (most recent call last):"
    assert stream.getvalue().splitlines()[-1].endswith("WARNING test.logs: about nobody")


def test_the_sqlite_driver_never_logs_its_statements() -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        logs.configure("DEBUG", "text")
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("app").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
