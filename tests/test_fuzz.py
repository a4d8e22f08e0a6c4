"""Property-based fuzzing against a real server (one per test function).

Socket events: arbitrary JSON for every field of every event, and mutations of valid payloads.
Every call is answered with an acknowledgement (never `internal_error`), the connection stays
usable, and nothing logs an unhandled exception.

REST: schemathesis generates requests from GET /api/openapi.json (valid and invalid ones);
no answer is a 5xx and every answer conforms to the document (status, content type, schema).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import Client, RunningServer, fast_settings, running_server

ROOM = "FUZZ"
LAX = {
    "rate_code_per_second": 1e6,
    "rate_code_burst": 1e6,
    "rate_chat_per_second": 1e6,
    "rate_chat_burst": 1e6,
    "rate_cursor_per_second": 1e6,
    "rate_cursor_burst": 1e6,
    "rate_join_per_second": 1e6,
    "rate_join_burst": 1e6,
    "rest_requests_per_minute": 1_000_000,
    "new_connections_per_minute": 1_000_000,
    "reconnect_grace_seconds": 0,
}
WATCHED_LOGGERS = ("app", "engineio", "socketio", "aiohttp")
# The codes a refusal may carry; `internal_error` means a handler crashed.
EXPECTED_CODES = {"invalid_payload", "not_in_room", "room_full", "session_expired"}
# Seeded: a failure replays with the same inputs (FUZZ_SEED=<n> tries other ones).
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


class ErrorRecords(logging.Handler):
    """Keeps every ERROR (or worse) record."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    handler = ErrorRecords()
    loggers = [logging.getLogger(name) for name in WATCHED_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@dataclass
class Stage:
    server: RunningServer
    sender: Client
    member: Client
    logged: list[logging.LogRecord]

    def socket_id(self, client: Client) -> str:
        return str(client.sio.get_sid("/"))


@pytest_asyncio.fixture
async def stage(tmp_path: Path) -> AsyncIterator[Stage]:
    """A server, a sender and a member in ROOM, and the ERROR records logged meanwhile."""
    with errors_logged() as logged:
        async with running_server(fast_settings(tmp_path, **LAX)) as server:
            sender, member = Client(), Client()
            try:
                await sender.connect(server.url)
                await member.connect(server.url)
                assert (await member.join(ROOM, "Member", "user-member"))["ok"]
                assert (await sender.join(ROOM, "Sender", "user-sender"))["ok"]
                yield Stage(server, sender, member, logged)
            finally:
                await sender.close()
                await member.close()
        assert not logged, [record.getMessage() for record in logged]


# -- strategies ----------------------------------------------------------------------------------

MEMBER = "<member>"  # replaced by the member's socket id
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)  # orjson encodes 64-bit integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from([ROOM, MEMBER, "", "python", "$gt", "a" * 65, "\x00", "\u202e"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
injections = st.sampled_from([{"$gt": ""}, {"$where": "sleep(1000)"}, {"$ne": None}])
anything = json_values | injections

FIELDS: dict[str, dict[str, Any]] = {
    "joinRoom": {"roomId": ROOM, "userName": "Sender", "userId": "user-sender"},
    "leaveRoom": {"roomId": ROOM},
    "requestCodeState": {"roomId": ROOM},
    "sendCodeState": {"roomId": ROOM, "code": "x", "language": "go", "targetUserId": MEMBER},
    "codeChange": {"roomId": ROOM, "code": "x = 1", "language": "python", "baseVersion": 0},
    "languageChange": {"roomId": ROOM, "language": "rust"},
    "cursorMove": {"roomId": ROOM, "position": {"lineNumber": 1, "column": 1}},
    "chatMessage": {"roomId": ROOM, "message": {"id": "m-1", "message": "hello"}},
    "userTyping": {"roomId": ROOM},
    "userStoppedTyping": {"roomId": ROOM},
}
EVENTS = sorted(FIELDS)
EXTRA_FIELDS = {"joinRoom": ["lastSeenVersion"]}


@st.composite
def arbitrary_payloads(draw: st.DrawFn) -> tuple[str, Any]:
    """Any JSON in any field of the event (each field present or not), or any JSON at all."""
    event = draw(st.sampled_from(EVENTS))
    if draw(st.integers(0, 9)) == 0:
        return event, draw(anything)
    fields = [*FIELDS[event], *EXTRA_FIELDS.get(event, [])]
    payload = {}
    for field in fields:
        if draw(st.booleans()):
            payload[field] = draw(st.sampled_from([ROOM]) if field == "roomId" else anything)
    return event, payload


@st.composite
def mutated_payloads(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid payload with one or two mutations: a field replaced, removed, added, resized."""
    event = draw(st.sampled_from(EVENTS))
    payload: dict[str, Any] = dict(FIELDS[event])
    if event == "chatMessage" and draw(st.booleans()):
        payload["message"] = "hello"  # the string form
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from(sorted(payload) or ["roomId"]))
        operation = draw(st.sampled_from(["replace", "remove", "add", "grow", "wrap"]))
        if operation == "replace":
            payload[field] = draw(anything)
        elif operation == "remove":
            payload.pop(field, None)
        elif operation == "add":
            payload[draw(st.text(max_size=10))] = draw(anything)
        elif operation == "grow":
            size = draw(st.sampled_from([32, 33, 64, 65, 100, 101, 128, 129, 1023, 4000, 4001]))
            payload[field] = draw(st.sampled_from(["a", "\U0001f600", "\u00e9"])) * size
        else:
            payload[field] = draw(
                st.sampled_from([[payload.get(field)], {"v": payload.get(field)}])
            )
    return event, payload


def fill(value: Any, stage: Stage) -> Any:
    if value == MEMBER:
        return stage.socket_id(stage.member)
    if isinstance(value, dict):
        return {key: fill(item, stage) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, stage) for item in value]
    return value


async def fire(stage: Stage, event: str, payload: Any) -> None:
    """Send one event; the answer must be an ack that is a success or a documented refusal."""
    sender, logged = stage.sender, len(stage.logged)
    answer = await sender.call(event, fill(payload, stage))
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), (event, answer)
    if not answer["ok"]:
        code = answer["error"]["code"]
        assert code != "internal_error", (event, payload, answer)
        assert code in EXPECTED_CODES, (event, payload, answer)
        assert isinstance(answer["error"]["message"], str)
    assert sender.sio.connected
    assert [record.getMessage() for record in stage.logged[logged:]] == []
    # Back into ROOM when a join or leave moved the sender (so later events go deep).
    if stage.server.rooms.room_of.get(stage.socket_id(sender)) != ROOM:
        assert (await sender.join(ROOM, "Sender", "user-sender"))["ok"]


async def still_usable(stage: Stage) -> None:
    updates = len(stage.member.events["codeUpdate"])
    answer = await stage.sender.call("codeChange", {"roomId": ROOM, "code": "after the fuzz"})
    assert answer["ok"] is True, answer
    update = await stage.member.next("codeUpdate", updates + 1)
    assert update["code"] == "after the fuzz"


@FUZZ
@seed(SEED)
@given(case=arbitrary_payloads())
async def test_arbitrary_json_in_any_field_of_any_event_never_crashes_a_handler(
    stage: Stage, case: tuple[str, Any]
) -> None:
    await fire(stage, *case)


@FUZZ
@seed(SEED)
@given(case=mutated_payloads())
async def test_mutated_valid_payloads_never_crash_a_handler(
    stage: Stage, case: tuple[str, Any]
) -> None:
    await fire(stage, *case)


async def test_the_connection_is_usable_after_fuzzing(stage: Stage) -> None:
    """Both properties above, then a normal edit, on one connection; nothing logged."""
    for event in EVENTS:
        await fire(stage, event, {**FIELDS[event], "roomId": {"$ne": None}})
    await still_usable(stage)


# -- schemathesis against the OpenAPI document ---------------------------------------------------

API_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 30
INPUTLESS = {"/api/health", "/api/ready"}


def fuzz_operation(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, base_url: str
) -> None:
    checks = [*API_CHECKS]
    if mode is schemathesis.GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)  # what the document forbids is refused

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, checks=checks, timeout=10)

    call()


def run_schemathesis(base_url: str) -> list[str]:
    """Every operation, valid and invalid inputs; the failures found (runs in a worker thread:
    schemathesis is synchronous and the server runs on the test's event loop)."""
    schema = schemathesis.openapi.from_url(base_url + "/api/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/api/sessions/create",
        "/api/sessions/{roomId}",
        "/api/sessions/{roomId}/update",
        "/api/sessions/user/{userId}",
        "/api/health",
        "/api/ready",
    }
    for operation in operations:
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.path not in INPUTLESS:  # nothing there to make invalid
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            try:
                fuzz_operation(operation, mode, base_url)
            except (Exception, BaseExceptionGroup) as error:  # schemathesis raises groups
                failures.append(f"{operation.label} [{mode.value}]: {error}")
    return failures


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    tmp_path: Path,
) -> None:
    with errors_logged() as logged:
        async with running_server(fast_settings(tmp_path, **LAX)) as server:
            for room_id in ("EXISTS", "OTHER"):  # some paths that answer 200
                status, body = await server.http(
                    "POST",
                    "/api/sessions/create",
                    json={"roomId": room_id, "creatorName": "Ann", "creatorUserId": "user-ann"},
                )
                assert status == 201, body
            failures = await asyncio.to_thread(run_schemathesis, server.url)
    assert not failures, "\n\n".join(failures)
    assert not logged, [record.getMessage() for record in logged]
