"""The current client's files over Socket.IO and REST: who hears `openFile`, `changeFile`,
`requestFile`, `setActiveFile` and `uploadFile`, in which dialect, with which keys; the file
routes; the limits and rates that refuse them; and files kept by every store across unloading
and restarts."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.storage.records import DEFAULT_CODE
from tests.support import Client, RunningServer, fast_settings, running_server, serving

pytestmark = pytest.mark.usefixtures("each_mode")  # one process, and a cluster of two

pytest_plugins = ("tests.store_backends",)

ROOM = "FILES1"
OTHER_ROOM = "FILES2"
MAIN = "main.js"
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TRANSPORTS = [
    pytest.param(["websocket"], id="websocket"),
    pytest.param(["polling"], id="polling"),
]
FILE_KEYS = {
    "fileId",
    "name",
    "content",
    "mime",
    "size",
    "uploadedBy",
    "uploaderName",
    "uploadedAt",
    "version",
}
NOT_FOUND = {"error": "File not found", "message": "No file found with this file ID"}


# -- helpers ----------------------------------------------------------------------------------


def sid(client: Client) -> str:
    return str(client.sio.get_sid("/"))


async def join_all(clients: list[Client], names: list[str], room_id: str = ROOM) -> None:
    """Join in order (app user id `user-<name>`); return once every join reached everyone."""
    for client, name in zip(clients, names, strict=True):
        assert (await client.join(room_id, name, f"user-{name.lower()}"))["ok"] is True
    for position, client in enumerate(clients):
        await client.next("roomUsers", len(clients) - position)


def since(client: Client, mark: int) -> list[tuple[str, Any]]:
    """Events received after `mark` (an index into client.order), store notices left out."""
    return [(event, data) for event, data in client.order[mark:] if event != "sessionSaved"]


def names_since(client: Client, mark: int) -> list[str]:
    return [event for event, _ in since(client, mark)]


def marks(*clients: Client) -> list[int]:
    return [len(client.order) for client in clients]


async def get_session(server: RunningServer, room_id: str = ROOM) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{room_id}")
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


def assert_refused(answer: Any, client: Client, event: str, code: str) -> None:
    """The acknowledgement says why, and the same reason reached the sender as its last error."""
    assert answer["ok"] is False, answer
    assert set(answer) == {"ok", "error"}
    assert set(answer["error"]) == {"code", "message"}
    assert answer["error"]["code"] == code, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    assert client.events["error"][-1] == {
        "event": event,
        "code": code,
        "message": answer["error"]["message"],
    }


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def by_id(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["fileId"]: f for f in files}


# -- openFile ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_open_file_announces_it_to_the_whole_room_and_the_first_one_becomes_active(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (server, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        ann_mark, bob_mark, outsider_mark = marks(ann, bob, outsider)

        first = await ann.call("openFile", {"roomId": ROOM, "fileId": "a.py", "name": "A.py"})
        second = await bob.call("openFile", {"roomId": ROOM, "fileId": "b.py"})

        assert first == {"ok": True, "version": first["version"]}
        assert second == {"ok": True, "version": second["version"]}
        assert second["version"] > first["version"] > 0
        for client, mark in ((ann, ann_mark), (bob, bob_mark)):
            await client.next("fileOpened", 2)
            assert since(client, mark) == [
                ("fileOpened", {"fileId": "a.py", "name": "A.py"}),
                ("activeFileChanged", {"fileId": "a.py"}),
                ("fileOpened", {"fileId": "b.py", "name": "b.py"}),  # name defaults to the id
            ]
        await outsider.quiet()
        assert names_since(outsider, outsider_mark) == []
        session = await get_session(server)
        assert [(f["fileId"], f["name"], f["content"]) for f in session["files"]] == [
            ("a.py", "A.py", ""),
            ("b.py", "b.py", ""),
        ]
        assert session["activeFile"] == "a.py"


async def test_opening_a_known_file_keeps_its_name_and_text(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ann.call("openFile", {"roomId": ROOM, "fileId": "a.py", "name": "first name"})
        await ann.call("changeFile", {"roomId": ROOM, "fileId": "a.py", "content": "kept"})
        await bob.next("fileContentUpdate")
        bob_mark = len(bob.order)

        again = await bob.call("openFile", {"roomId": ROOM, "fileId": "a.py", "name": "renamed"})

        assert again["ok"] is True
        assert await ann.next("fileOpened", 2) == {"fileId": "a.py", "name": "first name"}
        await bob.next("fileOpened", 2)
        # Bob already shows "kept" and a room with an active file keeps it.
        assert since(bob, bob_mark) == [("fileOpened", {"fileId": "a.py", "name": "first name"})]
        [entry] = (await get_session(server))["files"]
        assert (entry["name"], entry["content"]) == ("first name", "kept")


async def test_opening_main_js_lists_the_room_code_as_a_file(settings: Settings) -> None:
    async with serving(settings, 1) as (server, (ann,)):
        await ann.join(ROOM, "Ann", "user-ann")
        await ann.call("codeChange", {"roomId": ROOM, "code": "let shared = 1;"})
        assert (await get_session(server))["files"] == []

        assert (await ann.call("openFile", {"roomId": ROOM, "fileId": MAIN}))["ok"] is True

        assert await ann.next("fileOpened") == {"fileId": MAIN, "name": MAIN}
        session = await get_session(server)
        assert session["code"] == "let shared = 1;"
        assert [(f["fileId"], f["content"]) for f in session["files"]] == [
            (MAIN, "let shared = 1;")
        ]
        status, body = await server.http("GET", f"/api/sessions/{ROOM}/files/{MAIN}")
        assert status == 200
        assert body["file"]["content"] == "let shared = 1;"


# -- changeFile and the dialect of each member ----------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_file_change_reaches_others_as_file_content_update_but_not_sender(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (server, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        await ann.call("openFile", {"roomId": ROOM, "fileId": "a.py"})
        ann_mark, outsider_mark = marks(ann, outsider)

        answer = await ann.call(
            "changeFile",
            {"roomId": ROOM, "fileId": "a.py", "content": "x = 1\n", "version": 9, "timestamp": 1},
        )

        assert answer == {"ok": True, "version": answer["version"]}
        assert await bob.next("fileContentUpdate") == {
            "fileId": "a.py",
            "content": "x = 1\n",
            "userId": sid(ann),
            "userName": "Ann",
            "version": answer["version"],
        }
        await ann.quiet()
        assert names_since(ann, ann_mark) == []
        assert names_since(outsider, outsider_mark) == []
        assert by_id((await get_session(server))["files"])["a.py"]["content"] == "x = 1\n"


async def test_change_of_an_unknown_file_creates_it_named_after_its_id(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        answer = await ann.call("changeFile", {"roomId": ROOM, "fileId": "new.txt", "content": "n"})

        assert answer["ok"] is True
        assert await bob.next("fileOpened") == {"fileId": "new.txt", "name": "new.txt"}
        assert (await bob.next("fileContentUpdate"))["content"] == "n"
        [entry] = (await get_session(server))["files"]
        assert (entry["fileId"], entry["name"], entry["content"]) == ("new.txt", "new.txt", "n")


# What each member reads when Ann changes main.js, by the kind of event Ann sent: a member that
# sent file events reads fileContentUpdate, one that sent codeChange reads codeUpdate, and one
# that sent neither reads the kind that made the change.
DIALECTS = {
    "codeChange": {"files": "fileContentUpdate", "code": "codeUpdate", "neither": "codeUpdate"},
    "changeFile": {
        "files": "fileContentUpdate",
        "code": "codeUpdate",
        "neither": "fileContentUpdate",
    },
}


@pytest.mark.parametrize("kind", list(DIALECTS))
async def test_each_member_reads_a_main_js_change_in_the_dialect_it_speaks(
    settings: Settings, kind: str
) -> None:
    async with serving(settings, 4) as (server, (ann, fay, cody, nell)):
        await join_all([ann, fay, cody, nell], ["Ann", "Fay", "Cody", "Nell"])
        # Fay speaks files, Cody code (an unchanged text changes nothing), Nell has said nothing.
        assert (await fay.call("requestFile", {"roomId": ROOM, "fileId": MAIN}))["ok"] is True
        assert (await fay.next("fileContentSnapshot"))["content"] == DEFAULT_CODE
        assert (await cody.call("codeChange", {"roomId": ROOM, "code": DEFAULT_CODE}))["ok"]
        members = {"files": fay, "code": cody, "neither": nell}
        before = dict(zip(members, marks(*members.values()), strict=True))

        if kind == "codeChange":
            answer = await ann.call("codeChange", {"roomId": ROOM, "code": "shared text"})
        else:
            answer = await ann.call(
                "changeFile", {"roomId": ROOM, "fileId": MAIN, "content": "shared text"}
            )

        assert answer["ok"] is True
        version = answer["version"]
        for role, member in members.items():
            expected = DIALECTS[kind][role]
            payload = await member.next(expected)
            texts = [e for e in names_since(member, before[role]) if e.endswith("Update")]
            assert texts == [expected], (role, texts)
            if expected == "codeUpdate":
                assert set(payload) == {
                    "code",
                    "language",
                    "userId",
                    "userName",
                    "timestamp",
                    "version",
                }
                assert (payload["code"], payload["language"]) == ("shared text", "javascript")
                assert ISO_MS.match(payload["timestamp"])
            else:
                assert payload == {
                    "fileId": MAIN,
                    "content": "shared text",
                    "userId": sid(ann),
                    "userName": "Ann",
                    "version": version,
                }
            assert (payload["userId"], payload["userName"], payload["version"]) == (
                sid(ann),
                "Ann",
                version,
            )
        assert (await get_session(server))["code"] == "shared text"


async def test_an_upload_of_main_js_reaches_a_code_member_as_code_update(
    settings: Settings,
) -> None:
    async with serving(settings, 3) as (server, (ann, fay, cody)):
        await join_all([ann, fay, cody], ["Ann", "Fay", "Cody"])
        assert (await fay.call("requestFile", {"roomId": ROOM, "fileId": MAIN}))["ok"] is True
        await fay.next("fileContentSnapshot")
        assert (await cody.call("codeChange", {"roomId": ROOM, "code": DEFAULT_CODE}))["ok"]

        upload = {"roomId": ROOM, "fileId": MAIN, "content": "uploaded code"}
        assert (await ann.call("uploadFile", upload))["ok"] is True

        assert (await fay.next("fileContentSnapshot", 2))["content"] == "uploaded code"
        assert (await get_session(server))["code"] == "uploaded code"
        await cody.call("requestCodeState", {"roomId": ROOM})
        await cody.quiet()
        texts = [*cody.events["codeUpdate"], *cody.events["receiveCodeState"]]
        assert [text["code"] for text in texts] == ["uploaded code"]


async def test_a_text_a_socket_already_has_is_never_sent_to_it_again(settings: Settings) -> None:
    async with serving(settings, 3) as (_, (ann, bob, cat)):
        await join_all([ann, bob], ["Ann", "Bob"])
        change = {"roomId": ROOM, "fileId": "a.py", "content": "same"}
        await ann.call("changeFile", change)
        await bob.next("fileContentUpdate")
        await cat.join(ROOM, "Cat", "user-cat")  # after the change: it is not sent the text
        await cat.call("requestFile", {"roomId": ROOM, "fileId": "a.py"})
        snapshot = await cat.next("fileContentSnapshot")
        assert snapshot == {
            "fileId": "a.py",
            "name": "a.py",
            "content": "same",
            "version": snapshot["version"],
        }
        ann_mark, bob_mark, cat_mark = marks(ann, bob, cat)

        repeated = [
            await ann.call("changeFile", change),  # Ann sent it: everyone has it
            await bob.call("changeFile", change),  # Bob was sent it
            await bob.call("requestFile", {"roomId": ROOM, "fileId": "a.py"}),
            await cat.call("requestFile", {"roomId": ROOM, "fileId": "a.py"}),
        ]

        assert all(answer["ok"] is True for answer in repeated), repeated
        await ann.quiet()
        for client, mark in ((ann, ann_mark), (bob, bob_mark), (cat, cat_mark)):
            assert names_since(client, mark) == [], (client.sio.get_sid("/"), client.order[mark:])


async def test_request_file_answers_only_the_asker_and_unknown_files_are_empty(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ann.call("openFile", {"roomId": ROOM, "fileId": "a.py", "name": "Script"})
        written = await ann.call("changeFile", {"roomId": ROOM, "fileId": "a.py", "content": "1"})
        await bob.next("fileContentUpdate")
        ann_mark, bob_mark = marks(ann, bob)

        known = await ann.call("requestFile", {"roomId": ROOM, "fileId": MAIN})
        unknown = await ann.call("requestFile", {"roomId": ROOM, "fileId": "nope.txt"})

        assert known == unknown == {"ok": True}
        await ann.next("fileContentSnapshot", 2)
        snapshots = since(ann, ann_mark)
        assert snapshots[0] == (
            "fileContentSnapshot",
            {"fileId": MAIN, "name": MAIN, "content": DEFAULT_CODE, "version": written["version"]},
        )
        assert snapshots[1][1]["fileId"] == "nope.txt"
        assert snapshots[1][1]["name"] == "nope.txt"
        assert snapshots[1][1]["content"] == ""
        assert set(snapshots[1][1]) == {"fileId", "name", "content", "version"}
        await bob.quiet()
        assert names_since(bob, bob_mark) == []
        # Asking creates nothing.
        assert [f["fileId"] for f in (await get_session(server))["files"]] == ["a.py"]


# -- setActiveFile ------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_set_active_file_tells_the_whole_room_and_is_stored(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (server, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        outsider_mark = len(outsider.order)

        answer = await bob.call("setActiveFile", {"roomId": ROOM, "fileId": "b.py"})

        assert answer == {"ok": True}
        assert await ann.next("activeFileChanged") == {"fileId": "b.py"}
        assert await bob.next("activeFileChanged") == {"fileId": "b.py"}
        await outsider.quiet()
        assert names_since(outsider, outsider_mark) == []
        assert (await get_session(server))["activeFile"] == "b.py"


async def test_setting_the_file_that_is_active_already_tells_nobody(settings: Settings) -> None:
    """A newcomer's page announces the file it opens, the active one: the others' unchanged
    editors, told it again, would revert to an old text and undo typing with their next key."""
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        assert (await ann.call("setActiveFile", {"roomId": ROOM, "fileId": "b.py"}))["ok"]
        await bob.next("activeFileChanged")
        answer = await bob.call("setActiveFile", {"roomId": ROOM, "fileId": "b.py"})
        assert answer == {"ok": True}
        await ann.quiet()
        assert len(ann.events["activeFileChanged"]) == 1
        assert len(bob.events["activeFileChanged"]) == 1
        assert (await get_session(server))["activeFile"] == "b.py"


# -- uploadFile ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transports", TRANSPORTS)
async def test_upload_announces_the_file_then_sends_its_text_to_members_without_it(
    settings: Settings, transports: list[str]
) -> None:
    async with serving(settings, 3, transports) as (server, (ann, bob, outsider)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await outsider.join(OTHER_ROOM, "Olga", "user-olga")
        ann_mark, bob_mark, outsider_mark = marks(ann, bob, outsider)
        upload = {
            "roomId": ROOM,
            "fileId": "data.csv",
            "name": "Data.csv",
            "mime": "text/csv",
            "size": 8,
            "content": "a,b\n1,2\n",
            "uploadedBy": "user-x",
            "uploaderName": "Xena",
            "source": "local-upload",
            "metadata": {"lastModified": 1700000000000},
        }

        answer = await ann.call("uploadFile", upload)

        assert answer == {"ok": True, "version": answer["version"]}
        announced = {
            "fileId": "data.csv",
            "name": "Data.csv",
            "mime": "text/csv",
            "size": 8,
            "uploadedBy": "user-x",
            "uploaderName": "Xena",
            "source": "local-upload",
        }
        await bob.next("fileContentSnapshot")
        assert since(bob, bob_mark) == [
            ("fileUploaded", announced),
            (
                "fileContentSnapshot",
                {
                    "fileId": "data.csv",
                    "name": "Data.csv",
                    "content": "a,b\n1,2\n",
                    "version": answer["version"],
                },
            ),
        ]
        await ann.next("fileUploaded")
        await ann.quiet()
        assert since(ann, ann_mark) == [("fileUploaded", announced)]  # it has its own text
        assert names_since(outsider, outsider_mark) == []
        [entry] = (await get_session(server))["files"]
        assert set(entry) == FILE_KEYS  # `source` and `metadata` are not kept
        assert {key: entry[key] for key in announced if key != "source"} == {
            key: value for key, value in announced.items() if key != "source"
        }
        assert entry["content"] == "a,b\n1,2\n"
        assert ISO_MS.match(entry["uploadedAt"])


async def test_upload_defaults_come_from_the_uploading_socket(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        answer = await ann.call("uploadFile", {"roomId": ROOM, "fileId": "notes"})

        assert answer["ok"] is True
        assert await bob.next("fileUploaded") == {
            "fileId": "notes",
            "name": "notes",
            "mime": "text/plain",
            "size": 0,
            "uploadedBy": "user-ann",
            "uploaderName": "Ann",
            "source": "upload",
        }
        assert (await bob.next("fileContentSnapshot"))["content"] == ""
        [entry] = (await get_session(server))["files"]
        assert (entry["mime"], entry["size"], entry["uploadedBy"], entry["uploaderName"]) == (
            "text/plain",
            0,
            "user-ann",
            "Ann",
        )


async def test_uploading_over_a_file_replaces_it_and_sends_only_new_text(
    settings: Settings,
) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        upload = {"roomId": ROOM, "fileId": "a.txt", "content": "one", "mime": "text/x-a"}
        await ann.call("uploadFile", upload)
        await bob.next("fileContentSnapshot")

        await ann.call("uploadFile", {**upload, "name": "A", "mime": "text/x-b"})  # same text
        await bob.next("fileUploaded", 2)
        await ann.call("uploadFile", {**upload, "content": "two"})

        assert (await bob.next("fileUploaded", 3))["name"] == "a.txt"
        second = await bob.next("fileContentSnapshot", 2)
        assert second["content"] == "two"
        assert len(bob.events["fileContentSnapshot"]) == 2  # not one for the unchanged text
        [entry] = (await get_session(server))["files"]
        assert (entry["name"], entry["mime"], entry["content"]) == ("a.txt", "text/x-a", "two")


# -- REST: /api/sessions/:roomId/files ------------------------------------------------------------


async def test_post_file_saves_it_and_both_gets_return_it(settings: Settings) -> None:
    async with serving(settings, 0) as (server, _):
        await server.http("POST", "/api/sessions/create", json={"roomId": ROOM, "creatorName": "A"})
        body = {
            "fileId": "a.py",
            "name": "a.py",
            "content": "print(1)",
            "mime": "text/x-python",
            "size": 8,
            "uploadedBy": "user-ann",
            "uploaderName": "Ann",
            "version": 3,  # the client's own fields are ignored
            "timestamp": 1700000000000,
        }

        status, saved = await server.http("POST", f"/api/sessions/{ROOM}/files", json=body)
        assert (status, saved) == (
            200,
            {"success": True, "message": "File saved successfully", "fileId": "a.py"},
        )
        status, defaults = await server.http(
            "POST", f"/api/sessions/{ROOM}/files", json={"fileId": "b", "name": "B"}
        )
        assert status == 200, defaults

        status, listed = await server.http("GET", f"/api/sessions/{ROOM}/files")
        assert status == 200
        assert set(listed) == {"success", "files"} and listed["success"] is True
        a, b = listed["files"]
        assert set(a) == set(b) == FILE_KEYS
        assert {k: a[k] for k in FILE_KEYS - {"uploadedAt", "version"}} == {
            "fileId": "a.py",
            "name": "a.py",
            "content": "print(1)",
            "mime": "text/x-python",
            "size": 8,
            "uploadedBy": "user-ann",
            "uploaderName": "Ann",
        }
        assert ISO_MS.match(a["uploadedAt"])
        assert (b["name"], b["content"], b["mime"], b["size"]) == ("B", "", "text/plain", 0)
        assert (b["uploadedBy"], b["uploaderName"]) == ("anonymous", "Anonymous")
        status, one = await server.http("GET", f"/api/sessions/{ROOM}/files/a.py")
        assert (status, one) == (200, {"success": True, "file": a})
        assert (await get_session(server))["files"] == [a, b]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "a.py"},
        {"fileId": "a.py"},
        {"fileId": "", "name": "a.py"},
        {"fileId": "a", "name": ""},
    ],
    ids=["empty", "no-file-id", "no-name", "empty-file-id", "empty-name"],
)
async def test_post_file_without_file_id_or_name_answers_400(
    server: RunningServer, body: dict[str, Any]
) -> None:
    await server.http("POST", "/api/sessions/create", json={"roomId": ROOM, "creatorName": "A"})

    status, answer = await server.http("POST", f"/api/sessions/{ROOM}/files", json=body)

    assert (status, answer) == (
        400,
        {"error": "Missing required fields", "message": "fileId and name are required"},
    )
    assert (await get_session(server))["files"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/files", {"fileId": "a", "name": "a"}),
        ("GET", "/files", None),
        ("GET", "/files/a", None),
        ("DELETE", "/files/a", None),
    ],
    ids=["post", "list", "get", "delete"],
)
async def test_file_routes_of_a_missing_session_answer_404(
    server: RunningServer, method: str, path: str, body: Any
) -> None:
    status, answer = await server.http(method, f"/api/sessions/NOSUCH{path}", json=body)

    assert status == 404
    assert answer["error"] == "Session not found"
    assert isinstance(answer["message"], str)
    status, _ = await server.http("GET", "/api/sessions/NOSUCH")
    assert status == 404  # nothing was created


async def test_unknown_file_answers_404_file_not_found(server: RunningServer) -> None:
    await server.http("POST", "/api/sessions/create", json={"roomId": ROOM, "creatorName": "A"})

    for method in ("GET", "DELETE"):
        status, answer = await server.http(method, f"/api/sessions/{ROOM}/files/nope.txt")
        assert (status, answer) == (404, NOT_FOUND)


async def test_delete_file_removes_it_and_tells_live_members(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ann.call("changeFile", {"roomId": ROOM, "fileId": "a.py", "content": "gone soon"})
        await bob.next("fileContentUpdate")
        bob_mark = len(bob.order)

        status, answer = await server.http("DELETE", f"/api/sessions/{ROOM}/files/a.py")

        assert (status, answer) == (200, {"success": True, "message": "File deleted successfully"})
        assert await bob.next("fileDeleted") == {"fileId": "a.py"}
        assert await ann.next("fileDeleted") == {"fileId": "a.py"}
        assert names_since(bob, bob_mark) == ["fileDeleted"]
        assert (await get_session(server))["files"] == []
        status, again = await server.http("DELETE", f"/api/sessions/{ROOM}/files/a.py")
        assert (status, again) == (404, NOT_FOUND)
        status, missing = await server.http("GET", f"/api/sessions/{ROOM}/files/a.py")
        assert (status, missing) == (404, NOT_FOUND)


async def test_deleting_main_js_unlists_it_and_keeps_the_code(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        await ann.call("changeFile", {"roomId": ROOM, "fileId": MAIN, "content": "keep me"})
        await bob.next("fileContentUpdate")

        status, _ = await server.http("DELETE", f"/api/sessions/{ROOM}/files/{MAIN}")

        assert status == 200
        assert await bob.next("fileDeleted") == {"fileId": MAIN}
        session = await get_session(server)
        assert (session["files"], session["code"]) == ([], "keep me")
        status, missing = await server.http("GET", f"/api/sessions/{ROOM}/files/{MAIN}")
        assert (status, missing) == (404, NOT_FOUND)
        # Opened again, it is listed with the code it kept.
        await bob.call("openFile", {"roomId": ROOM, "fileId": MAIN})
        assert [(f["fileId"], f["content"]) for f in (await get_session(server))["files"]] == [
            (MAIN, "keep me")
        ]


async def test_rest_file_changes_reach_live_members_like_any_change(settings: Settings) -> None:
    async with serving(settings, 2) as (server, (fay, cody)):
        await join_all([fay, cody], ["Fay", "Cody"])
        await fay.call("openFile", {"roomId": ROOM, "fileId": "a.py"})
        await cody.call("codeChange", {"roomId": ROOM, "code": DEFAULT_CODE})
        files = f"/api/sessions/{ROOM}/files"

        await server.http("POST", files, json={"fileId": "a.py", "name": "a.py", "content": "A"})
        await server.http("POST", files, json={"fileId": MAIN, "name": MAIN, "content": "M"})

        update = await fay.next("fileContentUpdate")
        assert update == {
            "fileId": "a.py",
            "content": "A",
            "userId": None,
            "userName": "server",
            "version": update["version"],
        }
        assert (await fay.next("fileContentUpdate", 2))["content"] == "M"
        assert (await cody.next("codeUpdate"))["code"] == "M"
        fay_mark, cody_mark = marks(fay, cody)
        # Saving the text a member already shows (the client's autosave) sends it nothing.
        await server.http("POST", files, json={"fileId": MAIN, "name": MAIN, "content": "M"})
        await fay.call("changeFile", {"roomId": ROOM, "fileId": "a.py", "content": "A2"})
        await server.http("POST", files, json={"fileId": "a.py", "name": "a.py", "content": "A2"})
        await fay.quiet()
        assert "fileContentUpdate" not in names_since(fay, fay_mark)
        assert "codeUpdate" not in names_since(cody, cody_mark)
        assert (await get_session(server))["code"] == "M"


# -- bad input and limits -------------------------------------------------------------------------

LIMITS = {
    "max_files_per_room": 3,
    "max_file_bytes": 64,
    "max_room_files_bytes": 120,
    "max_file_id_length": 16,
    "max_signal_bytes": 64,
}
TOO_LONG_ID = "f" * 17


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("openFile", {"roomId": ROOM}),
        ("openFile", {"roomId": ROOM, "fileId": 7}),
        ("openFile", {"roomId": ROOM, "fileId": "   "}),
        ("openFile", {"roomId": ROOM, "fileId": "a\nb"}),
        ("openFile", {"roomId": ROOM, "fileId": TOO_LONG_ID}),
        ("openFile", {"roomId": ROOM, "fileId": "a", "name": "n" * 17}),
        ("changeFile", {"roomId": ROOM, "fileId": "a"}),
        ("changeFile", {"roomId": ROOM, "content": "x"}),
        ("changeFile", {"roomId": ROOM, "fileId": "a", "content": 12}),
        ("changeFile", {"roomId": ROOM, "fileId": "a", "content": "é" * 33}),
        ("changeFile", {"roomId": ROOM, "fileId": TOO_LONG_ID, "content": "x"}),
        ("requestFile", {"roomId": ROOM}),
        ("setActiveFile", {"roomId": ROOM}),
        ("setActiveFile", {"roomId": ROOM, "fileId": ["a"]}),
        ("uploadFile", {"roomId": ROOM}),
        ("uploadFile", {"roomId": ROOM, "fileId": "a", "content": "x" * 65}),
        ("uploadFile", {"roomId": ROOM, "fileId": "a", "size": -1}),
        ("uploadFile", {"roomId": ROOM, "fileId": "a", "size": "8"}),
        ("uploadFile", {"roomId": ROOM, "fileId": "a", "mime": "m" * 256}),
        ("uploadFile", {"roomId": ROOM, "fileId": "a", "metadata": {"x": "y" * 64}}),
        ("uploadFile", {"roomId": ROOM, "fileId": "a", "uploadedBy": {"$ne": None}}),
    ],
    ids=[
        "open-no-file-id",
        "open-file-id-number",
        "open-file-id-blank",
        "open-file-id-control",
        "open-file-id-too-long",
        "open-name-too-long",
        "change-no-content",
        "change-no-file-id",
        "change-content-number",
        "change-content-over-file-bytes",
        "change-file-id-too-long",
        "request-no-file-id",
        "active-no-file-id",
        "active-file-id-array",
        "upload-no-file-id",
        "upload-content-over-file-bytes",
        "upload-negative-size",
        "upload-size-string",
        "upload-mime-too-long",
        "upload-metadata-over-signal-bytes",
        "upload-uploaded-by-object",
    ],
)
async def test_invalid_file_event_is_refused_and_nothing_changes(
    tmp_path: Path, event: str, payload: dict[str, Any]
) -> None:
    async with serving(fast_settings(tmp_path, **LIMITS), 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        before = await get_session(server)
        bob_mark = len(bob.order)

        answer = await ann.call(event, payload)

        assert_refused(answer, ann, event, "invalid_payload")
        await bob.quiet(0.1)
        assert names_since(bob, bob_mark) == []
        assert await get_session(server) == before


# The room below holds a.py (60 bytes) and b.py (20): with the 24 bytes of the default code,
# 104 of the 120 bytes its texts may hold, and 2 files.
OVER_THE_LIMIT = [
    ("openFile", {"fileId": "c.py"}, {"max_files_per_room": 2}),
    ("openFile", {"fileId": MAIN}, {"max_files_per_room": 2}),
    ("uploadFile", {"fileId": "c.py", "content": "c"}, {"max_files_per_room": 2}),
    ("changeFile", {"fileId": "c.py", "content": "c"}, {"max_files_per_room": 2}),
    ("changeFile", {"fileId": "b.py", "content": "é" * 32}, {}),  # 116 characters, 148 bytes
    ("uploadFile", {"fileId": "b.py", "content": "b" * 64}, {}),
    ("uploadFile", {"fileId": "c.py", "content": "c" * 20}, {}),
    ("codeChange", {"code": "c" * 60}, {}),
]


@pytest.mark.parametrize(
    ("event", "fields", "overrides"),
    OVER_THE_LIMIT,
    ids=[
        "open-one-file-too-many",
        "open-main-js-one-file-too-many",
        "upload-one-file-too-many",
        "change-one-file-too-many",
        "change-over-the-room-bytes",
        "upload-replacing-over-the-room-bytes",
        "upload-new-over-the-room-bytes",
        "code-over-the-room-bytes",
    ],
)
async def test_file_event_over_a_limit_is_refused_and_nothing_changes(
    tmp_path: Path, event: str, fields: dict[str, Any], overrides: dict[str, Any]
) -> None:
    settings = fast_settings(tmp_path, **{**LIMITS, **overrides})
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        for file_id, size in (("a.py", 60), ("b.py", 20)):
            change = {"roomId": ROOM, "fileId": file_id, "content": "x" * size}
            assert (await ann.call("changeFile", change))["ok"] is True
        await bob.next("fileContentUpdate", 2)
        before = await get_session(server)
        bob_mark = len(bob.order)

        answer = await ann.call(event, {"roomId": ROOM, **fields})

        assert_refused(answer, ann, event, "limit_exceeded")
        await bob.quiet(0.1)
        assert names_since(bob, bob_mark) == []
        assert await get_session(server) == before


@pytest.mark.parametrize(
    ("fields", "overrides"),
    [
        ({"fileId": "c.py", "content": "c" * 60}, {"max_room_files_bytes": 60}),
        ({"fileId": MAIN, "content": "m" * 40}, {"max_code_bytes": 32}),
    ],
    ids=["new-file-over-room-bytes", "unlisted-main-js-over-code-bytes"],
)
async def test_change_file_over_a_size_limit_does_not_create_the_file(
    tmp_path: Path, fields: dict[str, Any], overrides: dict[str, Any]
) -> None:
    settings = fast_settings(tmp_path, **{**LIMITS, **overrides})
    async with serving(settings, 2) as (server, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])
        before = await get_session(server)
        bob_mark = len(bob.order)

        answer = await ann.call("changeFile", {"roomId": ROOM, **fields})

        assert_refused(answer, ann, "changeFile", "limit_exceeded")
        await bob.quiet(0.1)
        assert names_since(bob, bob_mark) == []
        assert (await get_session(server))["files"] == before["files"] == []


async def test_rest_file_over_a_limit_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, **{**LIMITS, "max_files_per_room": 1})
    async with serving(settings, 1) as (server, (bob,)):
        await bob.join(ROOM, "Bob", "user-bob")
        files = f"/api/sessions/{ROOM}/files"
        ok = await server.http("POST", files, json={"fileId": "a", "name": "a", "content": "x"})
        assert ok[0] == 200
        before = await get_session(server)
        bob_mark = len(bob.order)

        too_big = {"fileId": "a", "name": "a", "content": "x" * 65}
        status, answer = await server.http("POST", files, json=too_big)
        assert status == 400
        assert answer["error"] == "Invalid request"
        status, answer = await server.http("POST", files, json={"fileId": "b", "name": "b"})
        assert status == 413
        assert answer["error"] == "Limit exceeded"
        long_id = {"fileId": TOO_LONG_ID, "name": "a"}
        status, answer = await server.http("POST", files, json=long_id)
        assert status == 400
        status, answer = await server.http("GET", f"{files}/{TOO_LONG_ID}")
        assert status == 400

        await bob.quiet(0.1)
        assert names_since(bob, bob_mark) == []
        assert await get_session(server) == before


async def test_rest_new_file_over_the_room_bytes_does_not_create_it(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, **{**LIMITS, "max_room_files_bytes": 60})
    async with serving(settings, 1) as (server, (bob,)):
        await bob.join(ROOM, "Bob", "user-bob")
        bob_mark = len(bob.order)

        status, answer = await server.http(
            "POST",
            f"/api/sessions/{ROOM}/files",
            json={"fileId": "a", "name": "a", "content": "x" * 50},
        )

        assert (status, answer["error"]) == (413, "Limit exceeded")
        await bob.quiet(0.1)
        assert names_since(bob, bob_mark) == []
        assert (await get_session(server))["files"] == []


async def test_file_events_from_a_socket_outside_the_room_are_refused(
    settings: Settings,
) -> None:
    async with serving(settings, 3) as (server, (ann, stranger, intruder)):
        await ann.join(ROOM, "Ann", "user-ann")
        await intruder.join(OTHER_ROOM, "Ivan", "user-ivan")
        before = await get_session(server)
        ann_mark = len(ann.order)
        payloads = {
            "openFile": {"fileId": "a"},
            "changeFile": {"fileId": "a", "content": "x"},
            "requestFile": {"fileId": "a"},
            "setActiveFile": {"fileId": "a"},
            "uploadFile": {"fileId": "a", "content": "x"},
        }

        for client in (stranger, intruder):
            for event, fields in payloads.items():
                answer = await client.call(event, {"roomId": ROOM, **fields})
                assert_refused(answer, client, event, "not_in_room")

        await ann.quiet(0.1)
        assert names_since(ann, ann_mark) == []
        assert await get_session(server) == before


# -- rates --------------------------------------------------------------------------------------

# family: (the event, its payload, what another member receives)
RATES: dict[str, tuple[str, dict[str, Any], str]] = {
    "file": ("openFile", {"roomId": ROOM, "fileId": "a"}, "fileOpened"),
    "upload": ("uploadFile", {"roomId": ROOM, "fileId": "a"}, "fileUploaded"),
}


@pytest.mark.parametrize("family", list(RATES))
async def test_file_events_over_their_rate_are_refused_with_rate_limited(
    tmp_path: Path, family: str
) -> None:
    event, payload, relayed = RATES[family]
    overrides = {f"rate_{family}_per_second": 1, f"rate_{family}_burst": 1}
    async with serving(fast_settings(tmp_path, **overrides), 2) as (_, (ann, bob)):
        await join_all([ann, bob], ["Ann", "Bob"])

        answers = [await ann.call(event, payload) for _ in range(3)]

        assert answers[0]["ok"] is True
        for answer in answers[1:]:
            assert answer["ok"] is False and answer["error"]["code"] == "rate_limited", answer
        # One error event per family per second; the second refusal is only acknowledged.
        assert [e for e in ann.events["error"] if e["code"] == "rate_limited"] == [
            {"event": event, "code": "rate_limited", "message": answers[1]["error"]["message"]}
        ]
        await bob.quiet(0.1)
        assert len(bob.events[relayed]) == 1
        # Another family is not affected.
        assert (await ann.call("changeFile", {"roomId": ROOM, "fileId": "z", "content": "z"}))[
            "ok"
        ] is True


# -- files across unloading and restarts, on every store ------------------------------------------


class Outliving:
    """The test's store, used by one server after another: the fixture opens and closes it, as
    a database outlives the server processes that use it."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def open(self) -> None:
        """Open already."""

    async def close(self) -> None:
        """Left open for the next server."""


async def test_files_survive_unloading_and_a_restart_on_every_store(
    tmp_path: Path, store: Any
) -> None:
    settings = fast_settings(tmp_path, room_idle_seconds=0.05)
    async with running_server(settings, Outliving(store)) as server:
        ann = await Client().connect(server.url)
        try:
            await ann.join(ROOM, "Ann", "user-ann")
            await ann.call("codeChange", {"roomId": ROOM, "code": "main code"})
            await ann.call("openFile", {"roomId": ROOM, "fileId": MAIN})
            await ann.call(
                "uploadFile",
                {"roomId": ROOM, "fileId": "up.csv", "content": "a,b", "mime": "text/csv"},
            )
            await ann.call("changeFile", {"roomId": ROOM, "fileId": "b.py", "content": "ünï"})
            await ann.call("setActiveFile", {"roomId": ROOM, "fileId": "b.py"})
            live = await get_session(server)
            await ann.call("leaveRoom", {"roomId": ROOM})
            await wait_until(lambda: ROOM not in server.rooms.rooms)

            unloaded = await get_session(server)
            # REST on an unloaded room loads it, saves the file, and it is unloaded again.
            saved = {"fileId": "rest.md", "name": "README", "content": "# hi", "size": 4}
            status, _ = await server.http("POST", f"/api/sessions/{ROOM}/files", json=saved)
            assert status == 200
            await wait_until(lambda: ROOM not in server.rooms.rooms)
            after_rest = await get_session(server)
            # A member back in the room is sent the stored text it asks for.
            await ann.join(ROOM, "Ann", "user-ann")
            await ann.call("requestFile", {"roomId": ROOM, "fileId": "up.csv"})
            assert (await ann.next("fileContentSnapshot"))["content"] == "a,b"
            await ann.call("leaveRoom", {"roomId": ROOM})
        finally:
            await ann.close()

    async with running_server(settings, Outliving(store)) as restarted:
        stored = await get_session(restarted)
        status, listed = await restarted.http("GET", f"/api/sessions/{ROOM}/files")
        status_one, one = await restarted.http("GET", f"/api/sessions/{ROOM}/files/rest.md")

    assert [(f["fileId"], f["content"]) for f in live["files"]] == [
        (MAIN, "main code"),
        ("up.csv", "a,b"),
        ("b.py", "ünï"),
    ]
    assert (live["activeFile"], live["code"]) == ("b.py", "main code")
    assert unloaded["files"] == live["files"]
    assert unloaded["activeFile"] == "b.py"
    assert after_rest["files"][:3] == live["files"]
    assert [f["fileId"] for f in after_rest["files"]] == [MAIN, "up.csv", "b.py", "rest.md"]
    assert stored["files"] == after_rest["files"]
    assert (stored["activeFile"], stored["code"]) == ("b.py", "main code")
    assert status == 200 and listed["files"] == stored["files"]
    assert status_one == 200 and one["file"] == stored["files"][3]
    assert (one["file"]["name"], one["file"]["content"], one["file"]["size"]) == (
        "README",
        "# hi",
        4,
    )
