"""Deltas: changes as clients count them (`{from, to, insert}` in UTF-16 offsets, as
JavaScript and Monaco do) to and from the server's operations, and the delta extension of
`codeChange` / `changeFile` over real Socket.IO connections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.deltas import changes_to_op, op_to_changes
from app.domain.errors import InvalidPayload
from app.domain.ot import apply, diff
from app.wire.inbound import TextEdit
from tests.support import Client, RunningServer, clients, fast_settings, running_server

ROOM = "DELTAS1"
EMOJI = "\U0001f600"  # two UTF-16 units
CLEF = "\U0001d11e"  # two UTF-16 units


def edits(*changes: tuple[int, int, str]) -> list[TextEdit]:
    return [TextEdit.model_validate({"from": f, "to": t, "insert": i}) for f, t, i in changes]


def apply_as_javascript(text: str, changes: list[dict[str, Any]]) -> str:
    """What a JavaScript client gets applying the changes to its string: offsets are UTF-16
    code units, all on the original text (applied from the last one back)."""
    units = text.encode("utf-16-le")
    for change in reversed(changes):
        start, end = 2 * change["from"], 2 * change["to"]
        units = units[:start] + change["insert"].encode("utf-16-le") + units[end:]
    return units.decode("utf-16-le")  # strict: an offset inside a character fails here


# -- UTF-16 offsets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "change", "expected"),
    [
        ("a" + EMOJI + "b", (3, 4, "X"), "a" + EMOJI + "X"),  # after the emoji: offset + 1
        ("a" + EMOJI + "b", (1, 3, ""), "ab"),  # the emoji is two units
        ("a" + EMOJI + "b", (4, 4, "!"), "a" + EMOJI + "b!"),  # the end of the text
        ("a" + EMOJI + "b", (0, 0, EMOJI), EMOJI + "a" + EMOJI + "b"),
        (EMOJI + CLEF + "x" + EMOJI, (5, 7, "y"), EMOJI + CLEF + "xy"),
        ("é中" + EMOJI, (1, 2, "文"), "é文" + EMOJI),  # BMP characters are one unit
        ("", (0, 0, CLEF), CLEF),
    ],
)
def test_offsets_count_utf16_units_so_emoji_count_twice(
    text: str, change: tuple[int, int, str], expected: str
) -> None:
    op = changes_to_op(text, edits(change))
    assert apply(op, text) == expected
    as_javascript = [{"from": change[0], "to": change[1], "insert": change[2]}]
    assert apply_as_javascript(text, as_javascript) == expected


@pytest.mark.parametrize(
    "change",
    [(2, 2, "x"), (1, 2, ""), (2, 3, ""), (2, 4, "y")],
    ids=["insert-inside", "end-inside", "start-inside", "replace-from-inside"],
)
def test_an_offset_inside_a_surrogate_pair_is_refused(change: tuple[int, int, str]) -> None:
    with pytest.raises(InvalidPayload):
        changes_to_op("a" + EMOJI + "b", edits(change))


@pytest.mark.parametrize("change", [(5, 5, "x"), (0, 5, ""), (4, 6, "")])
def test_an_offset_past_the_end_of_the_text_is_refused(change: tuple[int, int, str]) -> None:
    with pytest.raises(InvalidPayload):
        changes_to_op("a" + EMOJI + "b", edits(change))  # 4 units


@pytest.mark.parametrize(
    "changes",
    [
        [(0, 2, ""), (1, 3, "")],  # overlapping
        [(2, 3, "x"), (0, 1, "y")],  # out of order
        [(3, 1, "")],  # ends before it starts
        [(0, 4, ""), (3, 3, "x")],  # an insert inside a replaced range
    ],
    ids=["overlapping", "out-of-order", "backwards", "insert-inside-a-range"],
)
def test_overlapping_or_out_of_order_ranges_are_refused(
    changes: list[tuple[int, int, str]],
) -> None:
    with pytest.raises(InvalidPayload):
        changes_to_op("abcdef", edits(*changes))


def test_adjacent_ranges_and_inserts_at_one_offset_apply_in_order() -> None:
    text = "abcdef"
    changes = edits((0, 1, "A"), (1, 2, "B"), (3, 3, "x"), (3, 3, "y"), (6, 6, "!"))
    assert apply(changes_to_op(text, changes), text) == "ABcxydef!"


def test_op_to_changes_gives_utf16_offsets_of_the_text_before() -> None:
    before = EMOJI + "ab" + CLEF + "cd"
    after = EMOJI + "aXb" + "cd" + EMOJI
    changes = op_to_changes(diff(before, after), after)
    assert changes == [
        {"from": 3, "to": 3, "insert": "X"},
        {"from": 4, "to": 6, "insert": ""},
        {"from": 8, "to": 8, "insert": EMOJI},
    ]
    assert apply_as_javascript(before, changes) == after


ALPHABET = st.sampled_from(["a", "b", " ", "\n", "é", "中", EMOJI, CLEF, "\u200d"])
TEXTS = st.lists(ALPHABET, max_size=24).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(before=TEXTS, after=TEXTS)
def test_changes_round_trip_through_operations(before: str, after: str) -> None:
    op = diff(before, after)
    changes = op_to_changes(op, after)
    assert apply_as_javascript(before, changes) == after
    assert changes_to_op(before, [TextEdit.model_validate(c) for c in changes]) == op
    ends = [c["to"] for c in changes]
    starts = [c["from"] for c in changes]
    assert all(s <= e for s, e in zip(starts, ends, strict=True))
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))


# -- over Socket.IO: validation ------------------------------------------------------------------


async def join_deltas(client: Client, name: str = "dora") -> dict[str, Any]:
    answer: dict[str, Any] = await client.join(ROOM, name, f"user-{name}", deltas=True)
    assert answer["ok"], answer
    return answer


async def refused(client: Client, event: str, payload: dict[str, Any], code: str) -> None:
    errors = len(client.events["error"])
    answer = await client.call(event, payload)
    assert answer["ok"] is False and answer["error"]["code"] == code, answer
    error = await client.next("error", errors + 1)
    assert (error["event"], error["code"]) == (event, code)


async def session(server: RunningServer) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{ROOM}")
    assert status == 200, body
    result: dict[str, Any] = body["session"]
    return result


@pytest.mark.parametrize(
    "payload",
    [
        {"code": "whole", "changes": [{"from": 0, "to": 0, "insert": "x"}], "baseVersion": 0},
        {"changes": [{"from": 0, "to": 0, "insert": "x"}]},  # no baseVersion
        {},  # neither
        {"changes": [{"from": 0, "to": 0, "insert": 1}], "baseVersion": 0},
        {"changes": [{"from": -1, "to": 0, "insert": "x"}], "baseVersion": 0},
        {"changes": [{"to": 0, "insert": "x"}], "baseVersion": 0},
    ],
    ids=["code-and-changes", "no-base", "neither", "insert-not-text", "negative", "no-from"],
)
async def test_a_malformed_delta_is_refused_and_changes_nothing(
    server: RunningServer, payload: dict[str, Any]
) -> None:
    async with clients(server.url, 2) as (dora, ann):
        answer = await join_deltas(dora)
        await ann.join(ROOM, "ann", "user-ann")
        version = answer["version"]
        await refused(dora, "codeChange", {"roomId": ROOM, **payload}, "invalid_payload")
        await ann.quiet()
        assert "codeUpdate" not in ann.events and "codeUpdate" not in dora.events
        stored = await session(server)
        assert (stored["code"], stored["version"]) == (answer["code"], version)


@pytest.mark.parametrize(
    "changes",
    [
        [{"from": 2, "to": 2, "insert": "x"}],  # inside the emoji
        [{"from": 0, "to": 9, "insert": ""}],  # past the end
        [{"from": 2, "to": 3, "insert": ""}, {"from": 0, "to": 1, "insert": ""}],
    ],
    ids=["inside-a-character", "past-the-end", "out-of-order"],
)
async def test_a_delta_that_does_not_fit_the_text_is_refused(
    server: RunningServer, changes: list[dict[str, Any]]
) -> None:
    async with clients(server.url, 2) as (ann, dora):
        await ann.join(ROOM, "ann", "user-ann")
        first = await ann.call("codeChange", {"roomId": ROOM, "code": "a" + EMOJI + "b"})
        await join_deltas(dora)
        payload = {"roomId": ROOM, "changes": changes, "baseVersion": first["version"]}
        await refused(dora, "codeChange", payload, "invalid_payload")
        stored = await session(server)
        assert (stored["code"], stored["version"]) == ("a" + EMOJI + "b", first["version"])


async def test_a_base_version_ahead_of_the_room_is_refused(server: RunningServer) -> None:
    async with clients(server.url, 1) as (dora,):
        answer = await join_deltas(dora)
        payload = {
            "roomId": ROOM,
            "changes": [{"from": 0, "to": 0, "insert": "x"}],
            "baseVersion": answer["version"] + 5,
        }
        await refused(dora, "codeChange", payload, "invalid_payload")
        stored = await session(server)
        assert (stored["code"], stored["version"]) == (answer["code"], answer["version"])


@pytest.fixture
def short_history(tmp_path: Path) -> Any:
    """A server that keeps only the last two versions of each text."""
    return running_server(
        fast_settings(tmp_path, merge_history_versions=2, merge_history_seconds=0)
    )


async def test_a_base_too_old_is_refused_and_the_whole_text_follows(short_history: Any) -> None:
    async with short_history as server, clients(server.url, 2) as (dora, ann):
        answer = await join_deltas(dora)
        await ann.join(ROOM, "ann", "user-ann")
        for n in range(6):
            await ann.call("codeChange", {"roomId": ROOM, "code": f"ann {n}"})
        await dora.next("codeUpdate", 6)
        room_text, version = "ann 5", answer["version"] + 6
        payload = {
            "roomId": ROOM,
            "changes": [{"from": 0, "to": 0, "insert": "dora "}],
            "baseVersion": answer["version"],
        }
        await refused(dora, "codeChange", payload, "base_too_old")
        # The whole text, to start again from.
        update = await dora.next("codeUpdate", 7)
        assert update["code"] == room_text and update["version"] == version
        assert "changes" not in update
        stored = await session(server)
        assert (stored["code"], stored["version"]) == (room_text, version)
        # Started again from it, its next delta is merged.
        payload = {
            "roomId": ROOM,
            "changes": [{"from": 0, "to": 0, "insert": "dora "}],
            "baseVersion": version,
        }
        assert (await dora.call("codeChange", payload))["ok"]
        assert (await ann.next("codeUpdate"))["code"] == "dora ann 5"


# -- over Socket.IO: what delta members read ---------------------------------------------------


async def test_a_delta_member_reads_every_change_as_changes_and_its_own_as_the_acknowledgement(
    server: RunningServer,
) -> None:
    async with clients(server.url, 2) as (dora, ann):
        await ann.join(ROOM, "ann", "user-ann")
        start = await ann.call("codeChange", {"roomId": ROOM, "code": "a" + EMOJI + "b\n"})
        joined = await join_deltas(dora)
        assert (joined["code"], joined["version"]) == ("a" + EMOJI + "b\n", start["version"])
        # Dora types after the emoji (offset 3, in UTF-16 units).
        mine = {
            "roomId": ROOM,
            "changes": [{"from": 3, "to": 3, "insert": "X"}],
            "baseVersion": joined["version"],
        }
        ack = await dora.call("codeChange", mine)
        assert ack["ok"] and ack["version"] == joined["version"] + 1
        own = await dora.next("codeUpdate")
        assert own["userId"] == dora.sid
        assert (own["changes"], own["baseVersion"], own["version"]) == (
            [{"from": 3, "to": 3, "insert": "X"}],
            joined["version"],
            ack["version"],
        )
        assert "code" not in own
        # Ann, who sends whole texts, reads the whole text.
        seen = await ann.next("codeUpdate")
        assert seen["code"] == "a" + EMOJI + "Xb\n" and "changes" not in seen
        # Ann's whole-text change reaches Dora as changes on the version before.
        await ann.call("codeChange", {"roomId": ROOM, "code": EMOJI + "a" + EMOJI + "Xb\n"})
        theirs = await dora.next("codeUpdate", 2)
        assert theirs["userId"] == ann.sid and "code" not in theirs
        assert theirs["baseVersion"] == ack["version"]
        assert theirs["changes"] == [{"from": 0, "to": 0, "insert": EMOJI}]


async def test_concurrent_deltas_on_one_base_are_both_kept(server: RunningServer) -> None:
    async with clients(server.url, 2) as (dora, dan):
        joined = await join_deltas(dora)
        await join_deltas(dan, "dan")
        base = joined["version"]
        text = joined["code"]
        end = len(text.encode("utf-16-le")) // 2

        def insert(at: int, what: str) -> dict[str, Any]:
            return {
                "roomId": ROOM,
                "changes": [{"from": at, "to": at, "insert": what}],
                "baseVersion": base,
            }

        first = await dora.call("codeChange", insert(0, "// dora\n"))
        second = await dan.call("codeChange", insert(end, "\n// dan"))
        assert first["ok"] and second["ok"]
        expected = "// dora\n" + text + "\n// dan"
        assert (await session(server))["code"] == expected
        # Both read both changes, in order; Dan's was moved past Dora's.
        for client in (dora, dan):
            updates = [await client.next("codeUpdate", n) for n in (1, 2)]
            assert [u["version"] for u in updates] == [first["version"], second["version"]]
            assert updates[1]["baseVersion"] == first["version"]
            assert updates[1]["changes"] == [
                {"from": end + len("// dora\n"), "to": end + len("// dora\n"), "insert": "\n// dan"}
            ]


async def test_a_delta_that_changes_nothing_comes_back_empty(server: RunningServer) -> None:
    async with clients(server.url, 1) as (dora,):
        joined = await join_deltas(dora)
        payload = {"roomId": ROOM, "changes": [], "baseVersion": joined["version"]}
        ack = await dora.call("codeChange", payload)
        assert ack["ok"] and ack["version"] == joined["version"]
        back = await dora.next("codeUpdate")
        assert back["changes"] == [] and back["userId"] == dora.sid
        assert (await session(server))["version"] == joined["version"]


# -- files -------------------------------------------------------------------------------------


async def test_file_deltas_reach_delta_members_as_changes_and_others_as_content(
    server: RunningServer,
) -> None:
    async with clients(server.url, 2) as (dora, fay):
        await fay.join(ROOM, "fay", "user-fay")
        opened = await fay.call(
            "changeFile", {"roomId": ROOM, "fileId": "notes.md", "content": "# notes\n"}
        )
        await join_deltas(dora)
        payload = {
            "roomId": ROOM,
            "fileId": "notes.md",
            "changes": [{"from": 8, "to": 8, "insert": "- " + EMOJI + "\n"}],
            "baseVersion": opened["version"],
        }
        ack = await dora.call("changeFile", payload)
        assert ack["ok"], ack
        own = await dora.next("fileContentUpdate")
        assert own["fileId"] == "notes.md" and own["userId"] == dora.sid
        assert own["changes"] == payload["changes"] and "content" not in own
        assert (own["baseVersion"], own["version"]) == (opened["version"], ack["version"])
        seen = await fay.next("fileContentUpdate")
        assert seen["content"] == "# notes\n- " + EMOJI + "\n" and "changes" not in seen
        # Fay's whole text reaches Dora as changes.
        await fay.call(
            "changeFile",
            {"roomId": ROOM, "fileId": "notes.md", "content": "# notes\n- " + EMOJI + "\n- b\n"},
        )
        theirs = await dora.next("fileContentUpdate", 2)
        assert theirs["changes"] == [{"from": 13, "to": 13, "insert": "- b\n"}]
        assert theirs["baseVersion"] == ack["version"]
        _, body = await server.http("GET", f"/api/sessions/{ROOM}/files/notes.md")
        assert body["file"]["content"] == "# notes\n- " + EMOJI + "\n- b\n"


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "x", "changes": [{"from": 0, "to": 0, "insert": "x"}], "baseVersion": 0},
        {"changes": [{"from": 0, "to": 0, "insert": "x"}]},
    ],
    ids=["content-and-changes", "no-base"],
)
async def test_a_malformed_file_delta_is_refused(
    server: RunningServer, payload: dict[str, Any]
) -> None:
    async with clients(server.url, 1) as (dora,):
        await join_deltas(dora)
        event = {"roomId": ROOM, "fileId": "notes.md", **payload}
        await refused(dora, "changeFile", event, "invalid_payload")
        _, body = await server.http("GET", f"/api/sessions/{ROOM}/files")
        assert all(f["fileId"] != "notes.md" for f in body["files"])


async def test_a_file_delta_on_a_base_too_old_is_refused_and_the_content_follows(
    short_history: Any,
) -> None:
    async with short_history as server, clients(server.url, 2) as (dora, fay):
        await fay.join(ROOM, "fay", "user-fay")
        first = await fay.call("changeFile", {"roomId": ROOM, "fileId": "f.txt", "content": "0"})
        await join_deltas(dora)
        for n in range(1, 6):
            await fay.call("changeFile", {"roomId": ROOM, "fileId": "f.txt", "content": str(n)})
        await dora.next("fileContentUpdate", 5)
        payload = {
            "roomId": ROOM,
            "fileId": "f.txt",
            "changes": [{"from": 0, "to": 0, "insert": "d"}],
            "baseVersion": first["version"],
        }
        await refused(dora, "changeFile", payload, "base_too_old")
        update = await dora.next("fileContentUpdate", 6)
        assert update["fileId"] == "f.txt" and update["content"] == "5"
        assert "changes" not in update
        _, body = await server.http("GET", f"/api/sessions/{ROOM}/files/f.txt")
        assert body["file"]["content"] == "5"
