"""What a full-text change was typed on, decided case by case: the candidate base the server
picks for each kind of client, a large paste beside a small edit, an undo of another's
edit, and a text that comes back to an earlier one.

The room is the real domain (Rooms, Editing, the merge) with an in-memory store and a
notifier that drops every event into the recipient's inbox; a client "processes" what it
received when the test says so, answering the probes (PINGs) that came with it, as an
Engine.IO client does by itself."""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain.editing import Editing, TextAnswer
from app.domain.merge import Rebased, TextHistory
from app.domain.rooms import Rooms
from app.domain.streams import Stream
from app.domain.writer import DebouncedWriter
from app.storage.records import MAIN_FILE_ID
from tests.fakes import MemoryStore
from tests.support import fast_settings

ROOM = "INFER"


class Inboxes:
    """A notifier: every event into its recipient's inbox, in order; a probe is a ("ping",)
    entry there, answered when the client processes its inbox."""

    def __init__(self) -> None:
        self.inbox: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        self.groups: dict[str, list[str]] = defaultdict(list)
        self.probes: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()

    def send(self, sids: Iterable[str], event: str, *args: object, replaces: Any = None) -> None:
        for sid in sids:
            self.inbox[sid].append((event, args[0] if args else None))

    def broadcast(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        self.send([sid for sid in self.groups[group] if sid != skip], event, *args)

    def relay(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        self.broadcast(group, event, *args, skip=skip)

    def probe(self, sid: str) -> int | None:
        self.probes[sid] += 1
        self.inbox[sid].append(("ping", self.probes[sid]))
        return self.probes[sid]

    def answered(self, sid: str) -> int | None:
        return self.answers[sid]

    def close(self, sid: str) -> None:
        pass

    def enter(self, sid: str, group: str) -> None:
        self.groups[group].append(sid)

    def leave(self, sid: str, group: str) -> None:
        if sid in self.groups[group]:
            self.groups[group].remove(sid)


class Harness:
    """One room of the real domain and its clients' inboxes."""

    def __init__(self, tmp: Path) -> None:
        self.now = 0.0
        self.settings = fast_settings(tmp, save_debounce_seconds=3600, save_max_delay_seconds=3600)
        self.store = MemoryStore()
        self.notifier = Inboxes()
        self.writer = DebouncedWriter(self.store, debounce=3600, max_delay=3600, retry_max=1)
        self.rooms = Rooms(
            self.store,  # type: ignore[arg-type]
            self.writer,
            self.settings,
            self.notifier,
            monotonic=lambda: self.now,
        )
        self.editing = Editing(self.rooms, self.notifier, self.settings)
        self.read: Counter[str] = Counter()  # inbox entries each client has processed

    async def start(self, text: str) -> None:
        room = await self.rooms.open(ROOM, create=True)
        await self.editing.replace_text(room, room.main, text, None, merge=False)

    @property
    def room(self) -> Any:
        return self.rooms.rooms[ROOM]

    @property
    def text(self) -> str:
        return str(self.room.code)

    @property
    def version(self) -> int:
        return int(self.room.version)

    async def join(self, sid: str) -> str:
        """Join; the text its editor shows (the room's, as the join answer or REST gives)."""
        await self.rooms.join(sid, ROOM, sid, None, f"10.0.0.{len(self.room.members) + 1}")
        self.notifier.inbox[sid].clear()  # presence events
        return self.text

    def process(self, sid: str, shown: str) -> str:
        """The client handles everything it received: each text replaces what it shows (an
        unchanged editor); each probe is answered. What it shows then."""
        while self.read[sid] < len(self.notifier.inbox[sid]):
            shown = self.handle(sid, shown)
        return shown

    def handle(self, sid: str, shown: str) -> str:
        """The client handles the next message it received, if any: what it shows then."""
        inbox = self.notifier.inbox[sid]
        if self.read[sid] < len(inbox):
            event, data = inbox[self.read[sid]]
            self.read[sid] += 1
            if event == "ping":
                self.notifier.answers[sid] = data
            elif event in ("codeUpdate", "receiveCodeState") and "code" in data:
                shown = data["code"]
        return shown

    def texts_sent(self, sid: str) -> list[str]:
        return [data["code"] for event, data in self.notifier.inbox[sid] if event == "codeUpdate"]

    def rebase(self, sid: str, text: str, base: int | None = None) -> Rebased:
        """What the room would make of this change (nothing is changed)."""
        room = self.room
        member = room.members[sid]
        answered = self.notifier.answered(sid)
        return room.rebase(member, room.main, text, base, self.now, answered)  # type: ignore[no-any-return]

    async def send(self, sid: str, text: str, base: int | None = None) -> TextAnswer:
        self.now += 0.01
        return await self.editing.change_text(sid, ROOM, MAIN_FILE_ID, text, base)

    async def close(self) -> None:
        self.rooms.close()
        await self.writer.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path)
    try:
        yield made
    finally:
        await made.close()


# -- the candidate base of each kind of client ------------------------------------------------


async def test_an_unchanged_editor_types_on_the_last_text_it_processed(harness: Harness) -> None:
    await harness.start("hello\n")
    alice = await harness.join("alice")
    await harness.join("bob")
    await harness.send("bob", "hello\nbob\n")
    alice = harness.process("alice", alice)
    assert alice == "hello\nbob\n"
    typed = "hello world\nbob\n"
    rebased = harness.rebase("alice", typed)
    assert rebased.base is not None
    assert (rebased.base.kind, rebased.base.text) == ("given", "hello\nbob\n")
    assert rebased.base.version == harness.version
    await harness.send("alice", typed)
    assert harness.text == typed


async def test_an_unchanged_editor_that_has_not_processed_an_update_types_on_its_own_text(
    harness: Harness,
) -> None:
    await harness.start("hello\n")
    alice = await harness.join("alice")
    await harness.join("bob")
    await harness.send("alice", "hello!\n")
    await harness.send("bob", "bob\nhello\n")  # typed on the text Bob joined with
    assert harness.text == "bob\nhello!\n"
    # Bob's change reached Alice's inbox, with its probe, but she has not processed it: her
    # next keystroke is typed on her own previous text.
    assert harness.texts_sent("alice") == ["bob\nhello!\n"]
    rebased = harness.rebase("alice", "hello!!\n")
    assert rebased.base is not None
    assert (rebased.base.kind, rebased.base.text) == ("own", "hello!\n")
    await harness.send("alice", "hello!!\n")
    assert harness.text == "bob\nhello!!\n"
    # She is sent the room text: once her inbox is processed she shows it.
    assert harness.process("alice", alice) == "bob\nhello!!\n"


async def test_keystrokes_sent_one_after_another_are_each_typed_on_the_previous_one(
    harness: Harness,
) -> None:
    await harness.start("x\n")
    await harness.join("alice")
    for text in ["x\na", "x\nab", "x\nabc"]:
        await harness.send("alice", text)
    rebased = harness.rebase("alice", "x\nabcd")
    assert rebased.base is not None
    assert (rebased.base.kind, rebased.base.text) == ("own", "x\nabc")
    assert harness.notifier.inbox["alice"] == []  # nothing to tell her: the room is her text


async def test_a_first_change_is_typed_on_the_text_the_client_fetched_over_rest(
    harness: Harness,
) -> None:
    await harness.start("one\n")
    await harness.join("alice")  # joined at one version ...
    await harness.join("bob")
    await harness.send("bob", "one\ntwo\n")
    # ... then her editor loaded the session over REST (the room remembers what it served to
    # her address) without having processed the update.
    member = harness.room.members["alice"]
    harness.room.served.append((member.address, harness.version))
    rebased = harness.rebase("alice", "one\ntwo\nthree\n")
    assert rebased.base is not None
    assert rebased.base.text == "one\ntwo\n"
    assert rebased.text == "one\ntwo\nthree\n"


async def test_a_version_aware_replacer_types_on_the_version_it_names(harness: Harness) -> None:
    await harness.start("a = 1\n")
    alice = await harness.join("alice")
    await harness.join("bob")
    await harness.join("carol")
    await harness.send("bob", "a = 1\nb = 2\n")
    applied = harness.version
    alice = harness.process("alice", alice)  # she replaces her text with the update ...
    await harness.send("carol", "# carol\na = 1\n")  # ... while Carol types at the top
    typed = "a = 10\nb = 2\n"
    rebased = harness.rebase("alice", typed, applied)
    assert rebased.base is not None
    assert (rebased.base.kind, rebased.base.text) == ("at", alice)
    await harness.send("alice", typed, applied)
    assert harness.text == "# carol\na = 10\nb = 2\n"


async def test_the_recipe_sending_ahead_of_acknowledgements_types_on_its_own_text(
    harness: Harness,
) -> None:
    await harness.start("def f():\n    return 1\n")
    await harness.join("alice")
    await harness.join("bob")
    base = harness.version
    first = await harness.send("alice", "def f():\n    return 1\nx", base)
    await harness.send("bob", "# bob\ndef f():\n    return 1\n", base)
    # The recipe keeps its base until the acknowledgement of its last change: her second
    # change names the same base, and was typed on her first.
    typed = "def f():\n    return 1\nxy"
    rebased = harness.rebase("alice", typed, base)
    assert rebased.base is not None
    assert (rebased.base.kind, rebased.base.text) == ("own", "def f():\n    return 1\nx")
    await harness.send("alice", typed, base)
    assert harness.text == "# bob\ndef f():\n    return 1\nxy"
    assert first.version == base + 1


async def test_a_client_that_keeps_its_edits_through_an_update_types_on_both(
    harness: Harness,
) -> None:
    await harness.start("ab")
    await harness.join("alice")
    await harness.join("bob")
    base = harness.version
    await harness.send("bob", "abY", base)  # Bob's change, accepted first
    bobs = harness.version
    await harness.send("alice", "aXb", base)  # hers, typed before it arrived
    assert harness.text == "aXbY"
    # She applied Bob's update keeping her unacknowledged X, then typed Z after it.
    rebased = harness.rebase("alice", "aXZbY", bobs)
    assert rebased.base is not None
    assert (rebased.base.kind, rebased.base.text) == ("own_on", "aXbY")
    await harness.send("alice", "aXZbY", bobs)
    assert harness.text == "aXZbY"


# -- a large paste beside a small edit ----------------------------------------------------------


def block(lines: int) -> str:
    return "".join(f"pasted line {n:04d}: {'abcdefghij' * 2}\n" for n in range(lines))


@pytest.mark.parametrize("paste_first", [True, False], ids=["paste-first", "edit-first"])
async def test_a_large_paste_and_a_small_edit_elsewhere_are_both_kept(
    harness: Harness, paste_first: bool
) -> None:
    head, tail = "def main():\n", "    return 0\n"
    await harness.start(head + tail)
    alice = await harness.join("alice")
    bob = await harness.join("bob")
    pasted = block(600)
    assert len(pasted) > 20_000
    changes = [
        ("alice", head + pasted + tail),  # pastes between the two lines
        ("bob", head.replace("main", "main2") + tail),  # renames the function meanwhile
    ]
    for sid, text in changes if paste_first else reversed(changes):
        await harness.send(sid, text)
    expected = "def main2():\n" + pasted + tail
    assert harness.text == expected
    # Each keeps typing on what it shows once it processed what it was sent.
    alice = harness.process("alice", alice)
    bob = harness.process("bob", bob)
    assert alice == bob == expected
    await harness.send("bob", bob + "# end\n")
    await harness.send("alice", alice.replace("line 0300", "LINE 0300"))
    assert harness.text == expected.replace("line 0300", "LINE 0300") + "# end\n"
    assert harness.text.lower().count("pasted line") == 600


# -- an undo of another's edit -------------------------------------------------------------------


@pytest.mark.parametrize("undo_first", [True, False], ids=["undo-first", "other-edit-first"])
async def test_deleting_exactly_what_another_inserted_wins_and_duplicates_nothing(
    harness: Harness, undo_first: bool
) -> None:
    await harness.start("one\ntwo\n")
    alice = await harness.join("alice")
    bob = await harness.join("bob")
    await harness.send("alice", "one\nfoo two\n")
    alice = "one\nfoo two\n"
    bob = harness.process("bob", bob)
    assert bob == "one\nfoo two\n"
    # Bob deletes exactly what Alice inserted: his text is the room's text of before, which
    # a change never "sends again"; meanwhile Alice types elsewhere on her own text.
    changes = [("bob", "one\ntwo\n"), ("alice", "one!\nfoo two\n")]
    for sid, text in changes if undo_first else reversed(changes):
        await harness.send(sid, text)
    assert harness.text == "one!\ntwo\n"
    assert harness.process("alice", alice) == harness.process("bob", bob) == "one!\ntwo\n"


async def test_an_undo_seen_by_its_author_is_not_reverted_by_the_authors_next_keystroke(
    harness: Harness,
) -> None:
    await harness.start("let x;\n")
    alice = await harness.join("alice")
    bob = await harness.join("bob")
    await harness.send("alice", "let x = 42;\n")
    bob = harness.process("bob", bob)
    await harness.send("bob", "let x;\n")  # Bob undoes her " = 42"
    alice = harness.process("alice", "let x = 42;\n")
    assert alice == "let x;\n"
    await harness.send("alice", "let x;\n// ok\n")  # she accepts it and types on
    assert harness.text == "let x;\n// ok\n"
    assert "42" not in harness.text


# -- a text that comes back to an earlier one ----------------------------------------------------


async def test_a_change_typed_on_a_text_the_room_held_twice_merges_on_the_newer(
    harness: Harness,
) -> None:
    await harness.start("abc\n")
    alice = await harness.join("alice")
    await harness.join("bob")
    await harness.join("carol")
    await harness.send("bob", "c\n")  # A -> B: Bob deletes "ab" ...
    await harness.send("bob", "abc\n")  # ... B -> A: and types it back
    came_back = harness.version
    alice = harness.process("alice", alice)
    assert alice == "abc\n"
    await harness.send("carol", "abc\n// carol\n")  # concurrent, elsewhere
    typed = "aZbc\n"  # Alice types between a and b of the text she was last given
    rebased = harness.rebase("alice", typed)
    assert rebased.base is not None
    assert rebased.base.text == "abc\n"
    assert rebased.base.version == came_back  # not the first "abc\n": that Z would land
    await harness.send("alice", typed)  # where "ab" was deleted, before the retyped "ab"
    assert harness.text == "aZbc\n// carol\n"


async def test_a_rest_save_of_a_text_held_twice_merges_on_the_newer(harness: Harness) -> None:
    await harness.start("abc\n")
    await harness.join("bob")
    await harness.send("bob", "c\n")
    await harness.send("bob", "abc\n")
    await harness.send("bob", "abc\n// bob\n")
    room = harness.room
    changed, _ = await harness.editing.replace_text(room, room.main, "aZbc\n", None)
    assert changed
    assert harness.text == "aZbc\n// bob\n"


async def test_a_rest_save_of_any_recent_room_text_changes_nothing(harness: Harness) -> None:
    await harness.start("v0\n")
    await harness.join("bob")
    for n in range(1, 6):
        await harness.send("bob", f"v0\n{'x' * n}\n")
    version, text = harness.version, harness.text
    room = harness.room
    for old in ["v0\n", "v0\nxx\n", "v0\nxxxx\n"]:
        changed, _ = await harness.editing.replace_text(room, room.main, old, None)
        assert not changed
    assert (harness.version, harness.text) == (version, text)


# -- the history and the streams, directly ------------------------------------------------------


def test_the_stream_takes_the_last_text_whose_probe_was_answered() -> None:
    history = TextHistory("hello", 0)
    stream = Stream(since=0)
    for version, text in [(1, "hello,"), (2, "hello, w")]:
        rebased = history.rebase_from("other", text, [history.at(version - 1)])  # type: ignore[list-item]
        history.commit(rebased, version)
        stream.give(seq=version, version=version, text=text, at=0.0)
        stream.probed(version)
    # Both probes answered: it had processed "hello, w" when it typed.
    last = stream.rebase(history, "me", "hello, wo", None, now=0.0, answered=2)
    assert last.base is not None
    assert (last.base.kind, last.base.version, last.text) == ("given", 2, "hello, wo")
    # Only the first: it typed on "hello," (the second text was still on its way).
    first = stream.rebase(history, "me", "hello,!", None, now=0.0, answered=1)
    assert first.base is not None
    assert (first.base.kind, first.base.version, first.text) == ("given", 1, "hello, w!")


def test_the_history_prefers_the_newest_of_identical_texts() -> None:
    history = TextHistory("abc", 0)
    for version, text in [(1, "c"), (2, "abc")]:
        history.commit(history.rebase("bob", text, version - 1), version)
    bases = list(history.history_bases(0))
    assert [b.version for b in bases if b.text == "abc"] == [2, 0]
    result = history.rebase_from(None, "aZbc", bases)
    assert result.base is not None and result.base.version == 2
    assert result.text == "aZbc"


@pytest.mark.parametrize("typed_before", [False, True], ids=["first-change", "after-its-own"])
async def test_a_keystroke_between_a_text_and_the_probe_behind_it_is_typed_on_that_text(
    harness: Harness, typed_before: bool
) -> None:
    """A browser runs each WebSocket message as a task of its own, and a keystroke may run
    between a text and the PING sent right behind it: the change then arrives before the
    probe is answered, typed on the text (seen with the unchanged editor)."""
    await harness.start("// start\n")
    alice = await harness.join("alice")
    bob = await harness.join("bob")
    if typed_before:
        bob = "// start\n!"
        await harness.send("bob", bob)
        alice = harness.process("alice", alice)
    await harness.send("alice", alice + "a")
    inbox = harness.notifier.inbox["bob"]
    assert [event for event, _ in inbox[harness.read["bob"] :]] == ["codeUpdate", "ping"]
    shown = inbox[harness.read["bob"]][1]["code"]  # handled; the probe is not answered yet
    await harness.send("bob", "b" + shown)
    assert harness.text == "b" + shown  # Alice's "a" once, Bob's "b" once


async def test_a_key_typed_between_a_text_and_its_probe_is_not_taken_for_anothers_key(
    harness: Harness,
) -> None:
    """The unchanged editor sends its cursor to the start at every update, so two typists
    type at one spot. Bob typed on his own text; Alice's key crossed it and arrived; he typed
    again on her text before its probe was answered. His own text with her key explains his
    change as well as her text with his key, but nobody retypes another's key within a
    round trip: his key is kept, hers is not doubled (seen with the real editor)."""
    await harness.start("ZZQQZ\n")
    await harness.join("alice")
    bob = await harness.join("bob")
    await harness.send("alice", "ZQZQQZ\n")  # her Q at 1, on its way to Bob
    await harness.send("bob", "Z" + bob)  # typed before her text arrived
    inbox = harness.notifier.inbox["bob"]
    shown = inbox[harness.read["bob"]][1]["code"]  # her text, handled; its probe not answered
    assert shown == "ZQZQQZ\n"
    await harness.send("bob", "Z" + shown)
    assert (harness.text.count("Z"), harness.text.count("Q")) == (5, 3), harness.text


# -- two unchanged editors typing at one spot, every interleaving ------------------------------


ONE_SPOT = {"alice": "Q", "bob": "Z"}  # each types one letter, over and over
ONE_SPOT_BY_INITIAL = {sid[0]: sid for sid in ONE_SPOT}


async def type_at_one_spot(
    harness: Harness, steps: list[tuple[str, str]]
) -> tuple[dict[str, str], Counter[str]]:
    """Play `steps` in a room whose text is one newline: what each editor shows once it has
    handled everything, and the keys typed."""
    await harness.start("\n")
    shown = {sid: await harness.join(sid) for sid in ONE_SPOT}
    typed: Counter[str] = Counter()
    for step, sid in steps:
        if step == "type":
            shown[sid] = ONE_SPOT[sid] + shown[sid]
            typed[ONE_SPOT[sid]] += 1
            answer = await harness.send(sid, shown[sid])
            assert answer.version > 0
        else:
            shown[sid] = harness.handle(sid, shown[sid])
    return {sid: harness.process(sid, text) for sid, text in shown.items()}, typed


@st.composite
def typing_at_one_spot(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Steps: a client types a key at the start of its editor ("type"), or handles the next
    message it received ("handle": a text replaces what it shows, a probe is answered)."""
    steps = st.tuples(st.sampled_from(["type", "handle"]), st.sampled_from(["alice", "bob"]))
    return draw(st.lists(steps, min_size=1, max_size=30))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=typing_at_one_spot())
@example(  # its change repeats its own text while a text equal to it is maybe seen
    steps=[
        (step, {"a": "alice", "b": "bob"}[who])
        for step, who in [
            ("handle", "a"),
            ("handle", "b"),
            ("type", "b"),
            ("handle", "a"),
            ("handle", "b"),
            ("type", "a"),
            ("type", "b"),
            ("handle", "b"),
            ("type", "b"),
            ("handle", "a"),
            ("type", "b"),
            ("handle", "b"),
            ("type", "a"),
            ("handle", "b"),
            ("type", "b"),
            ("handle", "b"),
        ]
    ]
)
def test_two_unchanged_editors_typing_at_one_spot_converge_whatever_the_interleaving(
    steps: list[tuple[str, str]],
) -> None:
    """The unchanged editor sends its cursor to the start at every update, so two people
    typing at once type at one spot; each types one letter over and over (so one key reads
    as well as another's) and may type between a text and the probe behind it. Whatever the
    interleaving, every change is taken and both editors end with the room's text. (Which
    keys are kept is measured by scripts/one_spot.py: not every one is, see the README.)"""

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            harness = Harness(Path(tmp))
            try:
                shown, _ = await type_at_one_spot(harness, steps)
                assert shown == {sid: harness.text for sid in ONE_SPOT}, f"{steps} {shown}"
            finally:
                await harness.close()

    asyncio.run(run())


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(  # Bob's key goes in a run of Alice's: "QQ" is "Q" + Q at 0 or at 1
            "A A b b B b B",
            id="a-key-in-a-run-of-the-others-letter",
        ),
        pytest.param(  # Bob handles, after two changes of his own, a text that crossed them
            "A B b B b B b B",
            id="a-text-that-crossed-its-own-changes-shown-after-them",
        ),
    ],
)
async def test_two_unchanged_editors_at_one_spot_keep_every_key(
    harness: Harness, steps: str
) -> None:
    """Interleavings that once lost a key and doubled another (found by scripts/one_spot.py).
    Steps: "A" Alice types her letter, "a" she handles her next message; "B", "b" Bob."""
    played = [
        ("type" if s.isupper() else "handle", ONE_SPOT_BY_INITIAL[s.lower()]) for s in steps.split()
    ]
    shown, typed = await type_at_one_spot(harness, played)
    assert Counter(harness.text) == typed + Counter("\n"), harness.text
    assert shown == {sid: harness.text for sid in ONE_SPOT}
