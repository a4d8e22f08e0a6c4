"""Going back in time: every change recorded (text and language, with its author), any
recorded version rebuilt, diffs, restores through the live room while people type,
checkpoints named by people and made automatically, all across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FlakyStore
from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")
ROOM = "HIST1"


async def typist(server: RunningServer, name: str) -> Client:
    client = await Client().connect(server.url)
    assert (await client.join(ROOM, name, f"user-{name.lower()}"))["ok"] is True
    return client


async def type_texts(client: Client, texts: list[str]) -> list[int]:
    versions = []
    for text in texts:
        answer = await client.call("codeChange", {"roomId": ROOM, "code": text})
        assert answer["ok"] is True, answer
        versions.append(answer["version"])
    return versions


async def get(server: RunningServer, path: str) -> Any:
    status, body = await server.http("GET", f"/api/sessions/{ROOM}{path}")
    assert status == 200, (path, body)
    return body


async def test_every_change_is_recorded_and_any_version_rebuilt(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        ann = await typist(server, "Ann")
        try:
            texts = ["a", "ab", "abc\n", "abc\nd"]
            versions = await type_texts(ann, texts)
            language = await ann.call("languageChange", {"roomId": ROOM, "language": "python"})
            body = await get(server, "/history")
            changes = body["versions"]
            assert [c["version"] for c in changes] == [language["version"], *versions[::-1]]
            assert changes[0]["kind"] == "language" and changes[0]["language"] == "python"
            newest = changes[1]
            assert newest["kind"] == "text" and newest["fileId"] == "main.js"
            assert newest["author"] == {"userId": "user-ann", "name": "Ann"}
            assert (newest["inserted"], newest["deleted"]) == (1, 0)
            for version, text in zip(versions, texts, strict=True):
                at = await get(server, f"/versions/{version}")
                assert (at["code"], at["language"]) == (text, "javascript")
            assert (await get(server, f"/versions/{language['version']}"))["language"] == "python"
            diff = (await get(server, f"/diff?from={versions[0]}&to={versions[-1]}"))["diff"]
            assert "-a\n" in diff and "+abc\n" in diff and "+d" in diff
            status, body = await server.http("GET", f"/api/sessions/{ROOM}/versions/999999")
            assert status == 404 and body["error"] == "Version not found"
        finally:
            await ann.close()


async def test_a_restore_is_one_change_that_keeps_what_people_type_after_it(
    tmp_path: Path,
) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        ann, bob = await typist(server, "Ann"), await typist(server, "Bob")
        try:
            (first,) = await type_texts(ann, ["good code\n"])
            await type_texts(ann, ["good code\nbad paste\n"])
            assert (await bob.next("codeUpdate", 2))["code"] == "good code\nbad paste\n"
            status, body = await server.http(
                "POST", f"/api/sessions/{ROOM}/restore", json={"version": first}
            )
            assert status == 200, body
            restored = body["version"]
            update = await bob.next("codeUpdate", 3)
            assert (update["code"], update["version"]) == ("good code\n", restored)
            assert (await ann.next("codeUpdate"))["code"] == "good code\n"
            # Typing goes on after the restore: kept.
            answer = await bob.call(
                "codeChange", {"roomId": ROOM, "code": "good code\nmore\n", "baseVersion": restored}
            )
            assert answer["ok"] is True
            session = (await get(server, ""))["session"]
            assert session["code"] == "good code\nmore\n"
            # The restore is in the history, and can itself be undone.
            changes = (await get(server, "/history"))["versions"]
            assert restored in [c["version"] for c in changes]
            status, body = await server.http(
                "POST", f"/api/sessions/{ROOM}/restore", json={"version": restored - 1}
            )
            assert status == 200
            assert (await get(server, ""))["session"]["code"] == "good code\nbad paste\n"
        finally:
            await ann.close()
            await bob.close()


async def test_checkpoints_are_heard_listed_and_restored(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, checkpoint_interval_seconds=0)
    async with running_server(settings) as server:
        ann, bob = await typist(server, "Ann"), await typist(server, "Bob")
        try:
            await type_texts(ann, ["draft one\n"])
            made = await ann.call("createCheckpoint", {"roomId": ROOM, "name": "Before refactor"})
            assert made["ok"] is True, made
            heard = await bob.next("checkpointCreated")
            assert heard["name"] == "Before refactor" and heard["id"] == made["checkpoint"]["id"]
            assert heard["author"] == {"userId": "user-ann", "name": "Ann"}
            await type_texts(ann, ["rewritten\n"])
            status, body = await server.http(
                "POST", f"/api/sessions/{ROOM}/checkpoints", json={"name": "After"}
            )
            assert status == 201, body
            listed = (await get(server, "/history"))["checkpoints"]
            assert [c["name"] for c in listed] == ["After", "Before refactor"]
            status, body = await server.http(
                "POST", f"/api/sessions/{ROOM}/restore", json={"checkpointId": heard["id"]}
            )
            assert status == 200, body
            assert (await get(server, ""))["session"]["code"] == "draft one\n"
            status, _ = await server.http(
                "POST", f"/api/sessions/{ROOM}/restore", json={"checkpointId": "nope"}
            )
            assert status == 404
        finally:
            await ann.close()
            await bob.close()


async def test_automatic_checkpoints_when_the_last_leaves_and_while_working(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path, checkpoint_interval_seconds=0.3)
    async with running_server(settings) as server:
        ann = await typist(server, "Ann")
        try:
            await type_texts(ann, ["x"])
            periodic = await ann.next("checkpointCreated", within=15)
            assert periodic["auto"] is True
            await type_texts(ann, ["xy"])
            await ann.call("leaveRoom", {"roomId": ROOM})
            for _ in range(50):
                checkpoints = (await get(server, "/history"))["checkpoints"]
                if any(c["name"] == "When the last person left" for c in checkpoints):
                    break
                await asyncio.sleep(0.1)
            left = [c for c in checkpoints if c["name"] == "When the last person left"]
            assert left and left[0]["auto"] is True
            assert (await get(server, f"/versions/{left[0]['version']}"))["code"] == "xy"
        finally:
            await ann.close()


async def test_history_survives_a_restart_and_rebuilds_across_snapshots(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, rate_code_per_second=1000, rate_code_burst=1000)
    texts = ["".join(f"{i}," for i in range(n)) for n in range(1, 131)]
    async with running_server(settings) as server:
        ann = await typist(server, "Ann")
        try:
            versions = await type_texts(ann, texts)
        finally:
            await ann.close()
        assert await server.flush(ROOM)
    async with running_server(settings) as server:
        for index in (0, 98, 99, 100, 129):
            at = await get(server, f"/versions/{versions[index]}")
            assert at["code"] == texts[index], index
        page = await get(server, "/history?limit=50")
        assert len(page["versions"]) == 50 and page["nextBefore"] is not None
        rest = await get(server, f"/history?limit=500&before={page['nextBefore']}")
        assert len(page["versions"]) + len(rest["versions"]) == len(texts)


async def test_history_adds_no_store_write_per_keystroke(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "counted.sqlite3")
    settings = fast_settings(tmp_path, save_debounce_seconds=0.3, save_max_delay_seconds=5)
    async with running_server(settings, store) as server:
        ann = await typist(server, "Ann")
        try:
            assert await server.flush(ROOM)
            before = len(store.saves)
            await type_texts(ann, [f"{'x' * n}" for n in range(1, 41)])
            assert await server.flush(ROOM)
            writes = len(store.saves) - before
            assert writes <= 3, writes  # forty keystrokes, one debounced batch (or two)
            assert len((await get(server, "/history?limit=500"))["versions"]) >= 40
        finally:
            await ann.close()


async def test_history_older_than_its_retention_is_folded_into_a_snapshot(
    tmp_path: Path,
) -> None:
    """Changes past HISTORY_RETENTION_DAYS go, one snapshot keeps their result; a
    checkpoint's version can still be restored."""
    settings = fast_settings(
        tmp_path, history_retention_days=1 / 86400, purge_interval_seconds=0.2,
        checkpoint_interval_seconds=0,
    )  # fmt: skip
    async with running_server(settings) as server:
        ann = await typist(server, "Ann")
        try:
            (first,) = await type_texts(ann, ["one\n"])
            made = await ann.call("createCheckpoint", {"roomId": ROOM, "name": "kept"})
            versions = await type_texts(ann, ["one\ntwo\n", "one\ntwo\nthree\n"])
            assert await server.flush(ROOM)
            for _ in range(50):
                if not (await get(server, "/history"))["versions"]:
                    break
                await asyncio.sleep(0.1)
            assert (await get(server, "/history"))["versions"] == []
            assert (await get(server, f"/versions/{versions[-1]}"))["code"] == "one\ntwo\nthree\n"
            status, _ = await server.http("GET", f"/api/sessions/{ROOM}/versions/{versions[0]}")
            assert status == 404  # folded away
            assert (await get(server, f"/versions/{first}"))["code"] == "one\n"  # checkpoint
            status, _ = await server.http(
                "POST", f"/api/sessions/{ROOM}/restore",
                json={"checkpointId": made["checkpoint"]["id"]},
            )  # fmt: skip
            assert status == 200
            assert (await get(server, ""))["session"]["code"] == "one\n"
        finally:
            await ann.close()
