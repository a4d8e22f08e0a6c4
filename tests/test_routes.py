"""Every REST route of the reference protocol, with its success and error shapes exactly."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.storage.records import DEFAULT_CODE, DEFAULT_LANGUAGE
from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")  # one process, and a cluster of two

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SESSION_KEYS = {
    "roomId",
    "code",
    "language",
    "participants",
    "messages",
    "createdAt",
    "expiresAt",
    "lastActivity",
    "files",
    "activeFile",
    "whiteboardElements",
}
SUMMARY_KEYS = {
    "startedAt",
    "messageCount",
    "lastMessage",
    "roomId",
    "creatorName",
    "participantCount",
    "language",
    "createdAt",
    "expiresAt",
    "lastActivity",
    "fileCount",
}
NOT_FOUND = "Session not found"


def when(text: str) -> datetime:
    assert ISO_MS.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_error(status: int, body: Any, expected_status: int, error: str | None) -> None:
    """`{error, message}` JSON with this status (and this `error` text when given)."""
    assert status == expected_status, body
    assert isinstance(body, dict), body
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    if error is not None:
        assert body["error"] == error


async def create(
    server: RunningServer, room_id: str, name: str = "Ann", **fields: Any
) -> dict[str, Any]:
    status, body = await server.http(
        "POST", "/api/sessions/create", json={"roomId": room_id, "creatorName": name, **fields}
    )
    assert status == 201, body
    result: dict[str, Any] = body
    return result


async def get_session(
    server: RunningServer, room_id: str, query: str = "", process: int | None = None
) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{room_id}{query}", process=process)
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


async def user_sessions(server: RunningServer, user_id: str) -> list[dict[str, Any]]:
    status, body = await server.http("GET", f"/api/sessions/user/{user_id}")
    assert status == 200, body
    assert set(body) == {"success", "sessions"}
    assert body["success"] is True
    sessions: list[dict[str, Any]] = body["sessions"]
    return sessions


@asynccontextmanager
async def member_of(server: RunningServer, room_id: str) -> AsyncIterator[Client]:
    client = await Client().connect(server.url)
    try:
        assert (await client.join(room_id, "Ann", "user-ann"))["ok"] is True
        yield client
    finally:
        await client.close()


# -- POST /api/sessions/create ------------------------------------------------------------------


async def test_create_answers_201_with_the_session_dates(server: RunningServer) -> None:
    status, body = await server.http(
        "POST",
        "/api/sessions/create",
        json={"roomId": "AB12CD34", "creatorName": "Ann", "creatorUserId": "user-ann"},
    )

    assert status == 201, body
    assert body == {
        "success": True,
        "message": "Session created successfully",
        "session": {
            "roomId": "AB12CD34",
            "expiresAt": body["session"]["expiresAt"],
            "createdAt": body["session"]["createdAt"],
        },
    }
    lifetime = when(body["session"]["expiresAt"]) - when(body["session"]["createdAt"])
    assert timedelta(days=7) <= lifetime < timedelta(days=7, seconds=5)


async def test_create_applies_defaults_when_no_code_or_language_is_given(
    server: RunningServer,
) -> None:
    await create(server, "DEFAULTS")

    session = await get_session(server, "DEFAULTS")

    assert (session["code"], session["language"]) == (DEFAULT_CODE, DEFAULT_LANGUAGE)
    assert session["creatorName"] == "Ann"
    assert session["creatorUserId"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"roomId": "ROOM1"},
        {"creatorName": "Ann"},
        {"roomId": "", "creatorName": "Ann"},
        {"roomId": "ROOM1", "creatorName": ""},
        {"roomId": None, "creatorName": "Ann"},
    ],
    ids=["empty", "no-name", "no-room", "empty-room", "empty-name", "null-room"],
)
async def test_create_without_required_fields_answers_400(
    server: RunningServer, body: dict[str, Any]
) -> None:
    status, answer = await server.http("POST", "/api/sessions/create", json=body)

    assert_error(status, answer, 400, "Missing required fields")
    assert await user_sessions(server, "user-ann") == []


async def test_create_twice_answers_400_and_keeps_the_first_session(
    server: RunningServer,
) -> None:
    await create(server, "TAKEN", "Ann", creatorUserId="user-ann", code="first")

    status, body = await server.http(
        "POST",
        "/api/sessions/create",
        json={"roomId": "TAKEN", "creatorName": "Eve", "creatorUserId": "eve", "code": "mine"},
    )

    assert_error(status, body, 400, "Session already exists")
    session = await get_session(server, "TAKEN")
    assert (session["creatorName"], session["creatorUserId"]) == ("Ann", "user-ann")
    assert session["code"] == "first"
    assert await user_sessions(server, "eve") == []


@pytest.mark.parametrize(
    "body",
    [
        {"roomId": "bad room!", "creatorName": "Ann"},
        {"roomId": {"$gt": ""}, "creatorName": "Ann"},
        {"roomId": 12345, "creatorName": "Ann"},
        {"roomId": "ROOM1", "creatorName": ["Ann"]},
        {"roomId": "ROOM1", "creatorName": "Ann", "code": 42},
        {"roomId": "ROOM1", "creatorName": "Ann", "language": "no spaces"},
        ["ROOM1", "Ann"],
        "ROOM1",
    ],
    ids=[
        "room-chars",
        "room-object",
        "room-number",
        "name-array",
        "code-number",
        "language-malformed",
        "array-body",
        "string-body",
    ],
)
async def test_create_with_malformed_fields_answers_400_json(
    server: RunningServer, body: Any
) -> None:
    status, answer = await server.http("POST", "/api/sessions/create", json=body)

    assert_error(status, answer, 400, None)
    status, _ = await server.http("GET", "/api/sessions/ROOM1")
    assert status == 404


# -- GET /api/sessions/:roomId ------------------------------------------------------------------


async def test_get_returns_every_key_of_the_session(server: RunningServer) -> None:
    created = await create(
        server, "FULL", "Ann", creatorUserId="user-ann", code="x = 1\n", language="python"
    )

    status, body = await server.http("GET", "/api/sessions/FULL")

    assert status == 200, body
    assert set(body) == {"success", "session"}
    assert body["success"] is True
    session = body["session"]
    assert set(session) >= SESSION_KEYS
    assert isinstance(session["version"], int)
    assert session["roomId"] == "FULL"
    assert (session["code"], session["language"]) == ("x = 1\n", "python")
    assert session["messages"] == []
    [creator] = session["participants"]
    assert set(creator) == {"userId", "name", "joinedAt", "lastSeen"}
    assert (creator["userId"], creator["name"]) == ("user-ann", "Ann")
    assert when(creator["joinedAt"]) <= when(creator["lastSeen"])
    assert session["createdAt"] == created["session"]["createdAt"]
    assert when(session["createdAt"]) <= when(session["lastActivity"])
    assert when(session["expiresAt"]) > when(session["lastActivity"])


async def test_get_of_a_missing_session_answers_404(server: RunningServer) -> None:
    status, body = await server.http("GET", "/api/sessions/NOSUCH")

    assert_error(status, body, 404, NOT_FOUND)


async def test_get_of_an_expired_session_answers_410_and_deletes_it(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, session_ttl_seconds=0.3, room_idle_seconds=0.05)
    async with running_server(settings) as server:
        await create(server, "OLD", creatorUserId="user-ann")
        status, body = await server.http("GET", "/api/sessions/OLD")
        assert status == 200, body

        await asyncio.sleep(0.4)
        status, body = await server.http("GET", "/api/sessions/OLD")

        assert_error(status, body, 410, "Session expired")
        status, body = await server.http("GET", "/api/sessions/OLD")
        assert_error(status, body, 404, NOT_FOUND)
        status, body = await server.http("DELETE", "/api/sessions/OLD")
        assert_error(status, body, 404, NOT_FOUND)


# -- POST /api/sessions/:roomId/update ----------------------------------------------------------


async def test_update_changes_code_language_and_participants(server: RunningServer) -> None:
    await create(server, "UPD", "Ann", creatorUserId="user-ann")

    status, body = await server.http(
        "POST",
        "/api/sessions/UPD/update",
        json={
            "code": "fn main() {}",
            "language": "rust",
            "participants": [{"userId": "user-bob", "name": "Bob"}],
        },
    )

    assert status == 200, body
    assert body == {"success": True, "message": "Session updated successfully"}
    session = await get_session(server, "UPD")
    assert (session["code"], session["language"]) == ("fn main() {}", "rust")
    assert {(p["userId"], p["name"]) for p in session["participants"]} >= {
        ("user-ann", "Ann"),
        ("user-bob", "Bob"),
    }
    assert [s["roomId"] for s in await user_sessions(server, "user-bob")] == ["UPD"]


async def test_update_with_an_empty_body_only_touches_the_session(server: RunningServer) -> None:
    await create(server, "TOUCH", code="same")
    before = await get_session(server, "TOUCH", process=0)
    await asyncio.sleep(0.002)

    status, body = await server.http("POST", "/api/sessions/TOUCH/update", process=0, json={})

    assert status == 200, body
    after = await get_session(server, "TOUCH", process=0)  # (the process that was told)
    assert after["code"] == "same"
    assert when(after["lastActivity"]) > when(before["lastActivity"])


async def test_an_auto_save_of_what_the_room_holds_writes_nothing_until_the_touch_is_due(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open editor auto-saves about once a second, changed or not: a save that changes
    nothing writes nothing and tells nobody (`sessionSaved`); the touch it makes is
    written with the next change, or once the last written is a minute old."""
    await create(server, "IDLE", code="same", language="python")
    async with member_of(server, "IDLE") as ann:
        await ann.quiet(0.5)  # the join's own write
        saved = len(ann.events["sessionSaved"])
        for _ in range(5):
            status, body = await server.http(
                "POST",
                "/api/sessions/IDLE/update",
                json={
                    "code": "same",
                    "language": "python",
                    "participants": [{"userId": "user-ann"}],
                },
            )
            assert status == 200, body
        await ann.quiet(0.5)
        assert len(ann.events["sessionSaved"]) == saved

        monkeypatch.setattr("app.domain.room.ACTIVITY_WRITE_INTERVAL", timedelta(0))
        processes = range(len(server.urls))
        stamps = [(await get_session(server, "IDLE", process=p))["lastActivity"] for p in processes]
        before = max(when(stamp) for stamp in stamps)
        status, _ = await server.http("POST", "/api/sessions/IDLE/update", json={"code": "same"})
        assert status == 200
        await ann.next("sessionSaved", saved + 1)  # the touch, written
        for process in processes:  # every process reads it
            after = await get_session(server, "IDLE", process=process)
            assert when(after["lastActivity"]) > before


async def test_update_of_a_missing_session_answers_404(server: RunningServer) -> None:
    status, body = await server.http("POST", "/api/sessions/NOSUCH/update", json={"code": "x"})

    assert_error(status, body, 404, NOT_FOUND)
    status, _ = await server.http("GET", "/api/sessions/NOSUCH")
    assert status == 404


async def test_update_of_a_live_room_sends_code_update_only_when_the_code_changed(
    server: RunningServer,
) -> None:
    await create(server, "LIVE", code="v1")
    async with member_of(server, "LIVE") as ann:
        await server.http("POST", "/api/sessions/LIVE/update", json={"code": "v2"})

        update = await ann.next("codeUpdate")
        assert set(update) == {"code", "language", "userId", "userName", "timestamp", "version"}
        assert (update["code"], update["language"]) == ("v2", DEFAULT_LANGUAGE)
        assert (update["userId"], update["userName"]) == (None, "server")
        assert ISO_MS.match(update["timestamp"])
        assert update["version"] == (await get_session(server, "LIVE"))["version"]

        status, _ = await server.http(
            "POST", "/api/sessions/LIVE/update", json={"code": "v2", "language": DEFAULT_LANGUAGE}
        )
        assert status == 200
        await ann.quiet()
        assert len(ann.events["codeUpdate"]) == 1
        assert "languageUpdate" not in ann.events

        await server.http(
            "POST", "/api/sessions/LIVE/update", json={"code": "v3", "language": "go"}
        )
        both = await ann.next("codeUpdate", 2)
        assert (both["code"], both["language"]) == ("v3", "go")


async def test_an_auto_save_of_a_file_the_room_does_not_list_leaves_the_code_alone(
    server: RunningServer,
) -> None:
    """The current editor auto-saves its active file with `fileId`; a file it only opened
    locally is not the main text (the original wrote it over the code)."""
    await create(server, "UNLISTED", code="typed")
    async with member_of(server, "UNLISTED") as ann:
        status, body = await server.http(
            "POST",
            "/api/sessions/UNLISTED/update",
            json={"code": "// Write your code here...", "fileId": "second.js"},
        )

        assert status == 200, body
        assert (await get_session(server, "UNLISTED"))["code"] == "typed"
        await ann.quiet()
        assert "codeUpdate" not in ann.events and "fileContentUpdate" not in ann.events


async def test_a_stale_auto_save_never_undoes_typing(tmp_path: Path) -> None:
    """An editor auto-saves a text the room held long ago (its first text, before it got
    the room's; or one since typed over), after the merge history has forgotten it: nothing
    changes, on the typist's process and (cluster mode) on one that never had the room open.
    A new text is merged as ever."""
    settings = fast_settings(tmp_path, merge_history_versions=1, merge_history_seconds=0)
    async with running_server(settings) as server:
        other = len(server.urls) - 1
        ann = await Client().connect(server.urls[0])
        try:
            assert (await ann.join("STALE", "Ann", "user-ann"))["ok"] is True
            for text in ("a\n", "ab\n", "abc\n", "abcd\n"):
                assert (await ann.call("codeChange", {"roomId": "STALE", "code": text}))["ok"]
            stale = [(0, DEFAULT_CODE), (0, "ab\n"), (other, DEFAULT_CODE)]
            for process, text in stale:
                status, body = await server.http(
                    "POST", "/api/sessions/STALE/update", process=process, json={"code": text}
                )
                assert status == 200, body
                status, body = await server.http("GET", "/api/sessions/STALE", process=process)
                assert body["session"]["code"] == "abcd\n", (process, text)
            await ann.quiet()
            assert "codeUpdate" not in ann.events

            await server.http(
                "POST", "/api/sessions/STALE/update", process=other, json={"code": "abcd\nnew\n"}
            )
            assert (await ann.next("codeUpdate"))["code"] == "abcd\nnew\n"
        finally:
            await ann.close()


async def test_an_auto_save_of_a_text_its_editor_sent_earlier_changes_nothing(
    tmp_path: Path,
) -> None:
    """Ann's change merged with Bob's: the text Ann sent was never the room's. Her editor's
    auto-save of it a moment later (on her process or another) undoes nothing of Bob's."""
    async with running_server(fast_settings(tmp_path)) as server:
        ann = await Client().connect(server.urls[0])
        bob = await Client().connect(server.urls[-1])
        try:
            assert (await ann.join("SENT", "Ann", "user-ann"))["ok"] is True
            assert (await bob.join("SENT", "Bob", "user-bob"))["ok"] is True
            first = await ann.call("codeChange", {"roomId": "SENT", "code": "x\n"})
            base = first["version"]
            assert (
                await bob.call(
                    "codeChange", {"roomId": "SENT", "code": "x\nB\n", "baseVersion": base}
                )
            )["ok"]
            merged = await ann.call(
                "codeChange", {"roomId": "SENT", "code": "A\nx\n", "baseVersion": base}
            )
            assert merged["ok"] and merged["code"] == "A\nx\nB\n"
            for process in (0, len(server.urls) - 1):
                status, body = await server.http(
                    "POST", "/api/sessions/SENT/update", process=process, json={"code": "A\nx\n"}
                )
                assert status == 200, body
                status, body = await server.http("GET", "/api/sessions/SENT", process=process)
                assert body["session"]["code"] == "A\nx\nB\n", process
        finally:
            await ann.close()
            await bob.close()


async def test_a_rest_update_is_answered_once_stored_whoever_writes_the_room(
    tmp_path: Path,
) -> None:
    """With the default debounce, a REST update to a process that does not write the room
    (cluster mode) is stored at once by the one that does, and answered 200 in time."""
    settings = fast_settings(
        tmp_path,
        save_debounce_seconds=2.0,
        save_max_delay_seconds=10.0,
        chat_store_timeout_seconds=1.0,
    )
    async with running_server(settings) as server:
        ann = await Client().connect(server.urls[0])
        try:
            assert (await ann.join("WRITER", "Ann", "user-ann"))["ok"] is True
            assert (await ann.call("codeChange", {"roomId": "WRITER", "code": "x"}))["ok"]
            await ann.next("sessionSaved", within=5)  # Ann's process writes the room
            for round_ in range(3):
                # ... and has a change to write: its write lease is held
                change = {"roomId": "WRITER", "code": f"x{round_}y"}
                assert (await ann.call("codeChange", change))["ok"]
                status, body = await server.http(
                    "POST",
                    "/api/sessions/WRITER/update",
                    process=len(server.urls) - 1,
                    json={"code": f"x{round_}", "participants": [{"userId": f"u{round_}"}]},
                )
                assert status == 200, body
                listed = await user_sessions(server, f"u{round_}")
                assert [s["roomId"] for s in listed] == ["WRITER"]
        finally:
            await ann.close()


async def test_update_of_the_language_alone_sends_language_update(server: RunningServer) -> None:
    await create(server, "LANG")
    async with member_of(server, "LANG") as ann:
        await server.http("POST", "/api/sessions/LANG/update", json={"language": "kotlin"})

        update = await ann.next("languageUpdate")
        assert update == {
            "language": "kotlin",
            "userId": None,
            "userName": "server",
            "version": (await get_session(server, "LANG"))["version"],
        }
        assert "codeUpdate" not in ann.events


# -- DELETE /api/sessions/:roomId ---------------------------------------------------------------


async def test_delete_answers_200_then_the_session_is_gone(server: RunningServer) -> None:
    await create(server, "GONE", creatorUserId="user-ann")

    status, body = await server.http("DELETE", "/api/sessions/GONE")

    assert status == 200, body
    assert body == {"success": True, "message": "Session deleted successfully"}
    status, body = await server.http("GET", "/api/sessions/GONE")
    assert_error(status, body, 404, NOT_FOUND)
    assert await user_sessions(server, "user-ann") == []
    status, body = await server.http("DELETE", "/api/sessions/GONE")
    assert_error(status, body, 404, NOT_FOUND)


async def test_delete_of_a_missing_session_answers_404(server: RunningServer) -> None:
    status, body = await server.http("DELETE", "/api/sessions/NOSUCH")

    assert_error(status, body, 404, NOT_FOUND)


async def test_delete_of_a_live_room_tells_its_members(server: RunningServer) -> None:
    await create(server, "LIVE")
    async with member_of(server, "LIVE") as ann:
        status, _ = await server.http("DELETE", "/api/sessions/LIVE")

        assert status == 200
        assert await ann.next("sessionDeleted") == {"roomId": "LIVE"}
        answer = await ann.call("codeChange", {"roomId": "LIVE", "code": "too late"})
        assert answer["error"]["code"] == "not_in_room"
        status, _ = await server.http("GET", "/api/sessions/LIVE")
        assert status == 404


# -- GET /api/sessions/user/:userId -------------------------------------------------------------


async def test_user_sessions_list_creator_and_participant_sessions_newest_first(
    server: RunningServer,
) -> None:
    await create(server, "MINE", "Ann", creatorUserId="user-ann", language="python")
    await asyncio.sleep(0.002)
    await create(server, "LISTED", "Bob", creatorUserId="user-bob")
    await server.http(
        "POST",
        "/api/sessions/LISTED/update",
        json={"participants": [{"userId": "user-ann", "name": "Ann"}]},
    )
    await asyncio.sleep(0.002)
    await create(server, "JOINED", "Cat", creatorUserId="user-cat")
    await create(server, "OTHERS", "Dan", creatorUserId="user-dan")
    async with member_of(server, "JOINED") as ann:
        await ann.next("sessionSaved")  # the join is stored
        await asyncio.sleep(0.002)
        await server.http("POST", "/api/sessions/MINE/update", json={"code": "latest"})

        sessions = await user_sessions(server, "user-ann")

    assert [s["roomId"] for s in sessions] == ["MINE", "JOINED", "LISTED"]
    for summary in sessions:
        assert set(summary) == SUMMARY_KEYS
        for key in ("createdAt", "expiresAt", "lastActivity"):
            assert ISO_MS.match(summary[key])
    mine, joined, listed = sessions
    assert (mine["creatorName"], mine["participantCount"], mine["language"]) == (
        "Ann",
        1,
        "python",
    )
    assert (joined["creatorName"], joined["participantCount"]) == ("Cat", 2)
    assert (listed["creatorName"], listed["participantCount"]) == ("Bob", 2)
    assert await user_sessions(server, "nobody") == []


async def test_user_sessions_show_message_count_last_message_and_start(
    server: RunningServer,
) -> None:
    """The recent-sessions listing: how many messages, the last one (trimmed to 200
    characters) and when the session started."""
    created = await create(server, "CHATTY", "Ann", creatorUserId="user-ann")
    await create(server, "QUIET", "Ann", creatorUserId="user-ann")
    async with member_of(server, "CHATTY") as ann:
        for text in ("first", "second", "x" * 300):
            assert (await ann.call("chatMessage", {"roomId": "CHATTY", "message": text}))["ok"]
        await ann.call("codeChange", {"roomId": "CHATTY", "code": "latest"})
        assert await server.flush("CHATTY")
        sessions = {s["roomId"]: s for s in await user_sessions(server, "user-ann")}
    chatty, quiet = sessions["CHATTY"], sessions["QUIET"]
    assert chatty["messageCount"] == 3
    last = chatty["lastMessage"]
    assert last["message"] == "x" * 200 and last["userName"] == "Ann"
    assert ISO_MS.match(last["timestamp"])
    assert chatty["startedAt"] == chatty["createdAt"] == created["session"]["createdAt"]
    assert (quiet["messageCount"], quiet["lastMessage"]) == (0, None)


async def test_user_sessions_are_at_most_ten_most_recent(server: RunningServer) -> None:
    for n in range(12):
        await create(server, f"R{n:02d}", creatorUserId="busy")
        await asyncio.sleep(0.002)

    sessions = await user_sessions(server, "busy")

    assert [s["roomId"] for s in sessions] == [f"R{n:02d}" for n in range(11, 1, -1)]


async def test_user_sessions_leave_out_expired_ones(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, session_ttl_seconds=0.3, room_idle_seconds=0.05)
    async with running_server(settings) as server:
        await create(server, "OLD", creatorUserId="user-ann")
        await asyncio.sleep(0.4)
        await create(server, "NEW", creatorUserId="user-ann")

        sessions = await user_sessions(server, "user-ann")

    assert [s["roomId"] for s in sessions] == ["NEW"]


# -- health, unknown paths, malformed requests --------------------------------------------------


async def test_health_reports_ok_with_a_timestamp(server: RunningServer) -> None:
    status, body = await server.http("GET", "/api/health")

    assert status == 200
    assert set(body) == {"status", "message", "timestamp"}
    assert body["status"] == "OK"
    assert isinstance(body["message"], str)
    assert ISO_MS.match(body["timestamp"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/nope"),
        ("POST", "/api/sessions/ROOM1/files/extra"),
        ("DELETE", "/api/sessions/ROOM1/extra"),
    ],
)
async def test_unknown_path_answers_404_endpoint_not_found(
    server: RunningServer, method: str, path: str
) -> None:
    status, body = await server.http(method, path, json={})

    assert_error(status, body, 404, "Endpoint not found")
    assert body["message"] == f"Cannot {method} {path}"


@pytest.mark.parametrize(
    "path", ["/api/sessions/create", "/api/sessions/ROOM1/update"], ids=["create", "update"]
)
@pytest.mark.parametrize(
    "body", [b"{roomId: 1}", b'{"roomId": "ROOM1",', b"\xff\xfe"], ids=["bare-key", "cut", "bytes"]
)
async def test_malformed_json_answers_400_json(
    server: RunningServer, path: str, body: bytes
) -> None:
    await create(server, "ROOM1", code="kept")

    status, answer = await server.http(
        "POST", path, data=body, headers={"Content-Type": "application/json"}
    )

    assert_error(status, answer, 400, None)
    assert (await get_session(server, "ROOM1"))["code"] == "kept"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
@pytest.mark.parametrize(
    "path", ["/api/sessions/create", "/api/sessions/ROOM1/update"], ids=["create", "update"]
)
async def test_body_that_is_not_json_answers_415_json(
    server: RunningServer, content_type: str, path: str
) -> None:
    await create(server, "ROOM1", code="kept")

    status, answer = await server.http(
        "POST",
        path,
        data=b'{"roomId": "ROOM2", "creatorName": "Ann", "code": "x"}',
        headers={"Content-Type": content_type},
    )

    assert_error(status, answer, 415, None)
    assert (await get_session(server, "ROOM1"))["code"] == "kept"
    status, _ = await server.http("GET", "/api/sessions/ROOM2")
    assert status == 404


@pytest.mark.parametrize(
    "room_id", ["bad$id", "a.b", "R" * 65, "%24gt", "sp%20ace"], ids=str.__str__
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/update"), ("DELETE", "")],
    ids=["get", "update", "delete"],
)
async def test_malformed_room_id_in_the_path_answers_400(
    server: RunningServer, room_id: str, method: str, suffix: str
) -> None:
    status, body = await server.http(method, f"/api/sessions/{room_id}{suffix}", json={})

    assert_error(status, body, 400, None)


async def test_too_long_user_id_in_the_path_answers_400(server: RunningServer) -> None:
    status, body = await server.http("GET", "/api/sessions/user/" + "u" * 200)

    assert_error(status, body, 400, None)


# -- messages paging ----------------------------------------------------------------------------


async def chat(server: RunningServer, room_id: str, count: int) -> None:
    """`count` chat messages "m0".."m<count-1>" from one member, seen by another."""
    sender, watcher = Client(), Client()
    try:
        await sender.connect(server.url)
        await watcher.connect(server.url)
        await sender.join(room_id, "Ann", "user-ann")
        await watcher.join(room_id, "Bob", "user-bob")
        for n in range(count):
            await sender.emit("chatMessage", {"roomId": room_id, "message": f"m{n}"})
        await watcher.next("newMessage", count)
    finally:
        await sender.close()
        await watcher.close()


def chatty(tmp_path: Path) -> Settings:
    """Fast settings without the chat rate limit (5 per second in production)."""
    return fast_settings(tmp_path, rate_chat_per_second=10_000, rate_chat_burst=10_000)


async def test_messages_are_the_most_recent_200_oldest_first(tmp_path: Path) -> None:
    async with running_server(chatty(tmp_path)) as server:
        await create(server, "CHATTY")
        await chat(server, "CHATTY", 205)

        messages = (await get_session(server, "CHATTY"))["messages"]

    assert [m["message"] for m in messages] == [f"m{n}" for n in range(5, 205)]
    versions = [m["version"] for m in messages]
    assert versions == sorted(versions)
    first = messages[0]
    assert (first["userId"], first["userName"]) == ("user-ann", "Ann")
    assert ISO_MS.match(first["timestamp"])


async def test_messages_page_back_with_before_and_limit(tmp_path: Path) -> None:
    async with running_server(chatty(tmp_path)) as server:
        await create(server, "PAGED")
        await chat(server, "PAGED", 12)

        last = (await get_session(server, "PAGED", "?limit=3"))["messages"]
        before = last[0]["version"]
        page = (await get_session(server, "PAGED", f"?before={before}&limit=2"))["messages"]
        before = page[0]["version"]
        rest = (await get_session(server, "PAGED", f"?before={before}"))["messages"]
        before = rest[0]["version"]
        none = await get_session(server, "PAGED", f"?before={before}")

    assert [m["message"] for m in last] == ["m9", "m10", "m11"]
    assert [m["message"] for m in page] == ["m7", "m8"]
    assert [m["message"] for m in rest] == [f"m{n}" for n in range(7)]
    assert none["messages"] == []
    assert none["code"] == DEFAULT_CODE


@pytest.mark.parametrize(
    "query", ["?limit=0", "?limit=abc", "?before=-1", "?before=x", "?limit=100000"]
)
async def test_bad_paging_parameters_answer_400(server: RunningServer, query: str) -> None:
    await create(server, "PAGED")

    status, body = await server.http("GET", f"/api/sessions/PAGED{query}")

    assert_error(status, body, 400, None)


async def test_dates_are_iso_with_milliseconds_and_z(settings: Settings) -> None:
    async with running_server(settings) as server:
        created = await create(server, "DATES", creatorUserId="user-ann")
        await chat(server, "DATES", 1)
        session = await get_session(server, "DATES")
        [summary] = await user_sessions(server, "user-ann")

    stamps = [
        created["session"]["createdAt"],
        created["session"]["expiresAt"],
        session["createdAt"],
        session["expiresAt"],
        session["lastActivity"],
        *(p[key] for p in session["participants"] for key in ("joinedAt", "lastSeen")),
        *(m["timestamp"] for m in session["messages"]),
        summary["createdAt"],
        summary["expiresAt"],
        summary["lastActivity"],
    ]
    assert len(stamps) == 13  # 2 participants (Ann, Bob), 1 message
    for stamp in stamps:
        assert ISO_MS.match(stamp), stamp


async def test_a_warm_room_whose_session_expired_answers_410_then_404(tmp_path: Path) -> None:
    """A room still in memory (ROOM_IDLE_SECONDS not over) whose session went idle past its
    TTL is expired like a stored one: 410 once, then 404; a join starts a new session and
    its acknowledgement says so."""
    settings = fast_settings(tmp_path, session_ttl_seconds=0.5, room_idle_seconds=30)
    async with running_server(settings) as server:
        client = Client()
        await client.connect(server.url)
        try:
            assert (await client.join("WARM", "Ann"))["ok"]
            await client.call("codeChange", {"roomId": "WARM", "code": "typed"})
            await client.call("leaveRoom", {"roomId": "WARM"})
            assert await server.flush("WARM")
            status, _ = await server.http("GET", "/api/sessions/WARM")
            assert status == 200
            await asyncio.sleep(0.7)
            assert "WARM" in server.rooms.rooms  # still warm in memory
            status, body = await server.http("GET", "/api/sessions/WARM")
            assert status == 410, body
            status, body = await server.http("GET", "/api/sessions/WARM")
            assert status == 404, body
            assert "expired" not in await client.join("WARM", "Ann")  # a new id by now

            assert (await client.join("WARM2", "Ann"))["ok"]
            await client.call("codeChange", {"roomId": "WARM2", "code": "typed"})
            await client.call("leaveRoom", {"roomId": "WARM2"})
            assert await server.flush("WARM2")
            await asyncio.sleep(0.7)
            assert "WARM2" in server.rooms.rooms
            answer = await client.join("WARM2", "Ann")
            assert answer["ok"] is True and answer["expired"] is True
            assert answer["code"] == DEFAULT_CODE
            again = Client()
            await again.connect(server.url)
            try:
                assert "expired" not in await again.join("WARM2", "Bob")
            finally:
                await again.close()
        finally:
            await client.close()


async def test_a_join_to_an_expired_stored_session_says_expired(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, session_ttl_seconds=0.3, room_idle_seconds=0.05)
    async with running_server(settings) as server:
        client = Client()
        await client.connect(server.url)
        try:
            assert "expired" not in await client.join("COLD", "Ann")
            await client.call("leaveRoom", {"roomId": "COLD"})
            await asyncio.sleep(0.5)
            assert "COLD" not in server.rooms.rooms  # unloaded, expired in the store
            answer = await client.join("COLD", "Ann")
            assert answer["ok"] is True and answer["expired"] is True
        finally:
            await client.close()
