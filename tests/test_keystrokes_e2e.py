"""Every keystroke kept, whatever the client, over real Socket.IO connections: unchanged
editors (no baseVersion, every codeUpdate replaces their text) typing at once behind laggy
links, the auto-save racing a keystroke, a language echo storm, and a client that reads
deltas typing beside an unchanged editor.

Lag is the network's: each client's link delays every Engine.IO packet, both ways, by a
random 25-75 ms (seeded) and keeps them in order, as TCP does. The server's probes (PINGs
it sends right behind each text) travel the same links: a PONG never overtakes a keystroke
typed before it, and a text and the PING behind it arrive and are processed together (a
keystroke is typed before both or after both), as a browser does with what comes in one
TCP segment. The server relies on that (docs/protocol.md, "How a whole-text change is
merged"); a link that let a keystroke be typed between a text and its PING would break it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from engineio import packet as eio_packet

from app.domain.deltas import changes_to_op, op_to_changes
from app.domain.ot import Op, apply, compose, diff, transform
from app.wire.inbound import TextEdit
from tests.fakes import FlakyStore
from tests.support import WAIT, Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")

ROOM = "KEYS01"
LAG = (0.025, 0.075)  # seconds each packet takes, each way
THINK = (0.005, 0.03)  # seconds between one typist's keystrokes
TOGETHER = 0.005  # packets sent less than this apart travel together
NO_LAG = (0.0, 0.0)
WORDS = {
    "a": ["apple", "apricot", "avocado", "almond"],
    "b": ["banana", "blueberry", "blackcurrant", "bilberry"],
    "c": ["cherry", "coconut", "cranberry", "currant"],
}


class Link:
    """One direction of a laggy connection: a packet arrives 25-75 ms after it was sent,
    never before one sent earlier. Packets sent together travel together and are processed
    together, as when they come in one TCP segment: those less than TOGETHER apart, and a
    text with the PING the server sends right behind it (`holds`: a packet that the next
    one belongs with)."""

    def __init__(
        self,
        rng: random.Random,
        deliver: Callable[[Any], Awaitable[None]],
        holds: Callable[[Any], bool] = lambda pkt: False,
        lag: tuple[float, float] = LAG,
        first: float = 0.0,
    ) -> None:
        self.rng = rng
        self.lag = lag
        self.first = first  # more for the first packet (the handshake's way back, uplink)
        self.deliver = deliver
        self.holds = holds
        self.queue: deque[tuple[int, float, Any]] = deque()  # (group, arrival, packet)
        self.group = 0
        self.held = False  # the last packet waits for the one that belongs with it
        self.sent_at = -1.0
        self.arrival = 0.0
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task = asyncio.ensure_future(self._run())

    def put(self, pkt: Any) -> None:
        now = asyncio.get_running_loop().time()
        if not self._open(now):
            self.group += 1
            self.arrival = max(self.arrival, now + self.rng.uniform(*self.lag) + self.first)
            self.first = 0.0
        self.held = self.holds(pkt)
        self.sent_at = now
        self.queue.append((self.group, self.arrival, pkt))
        self.idle.clear()
        self.wake.set()

    def _open(self, now: float) -> bool:
        """Whether the last group may still grow."""
        since = now - self.sent_at
        return since <= TOGETHER or (self.held and since <= WAIT)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self.idle.set()
                self.wake.clear()
                await self.wake.wait()
                continue
            group, arrival, _ = self.queue[0]
            wait = arrival - loop.time()
            if group == self.group and self._open(loop.time()):
                wait = max(wait, 0.001)  # more of it may still come
            if wait > 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), wait)
                continue
            while self.queue and self.queue[0][0] == group:  # the group, without yielding
                await self.deliver(self.queue.popleft()[2])

    async def drain(self) -> None:
        await asyncio.wait_for(self.idle.wait(), WAIT)


class Editor(Client):
    """A recording client with an editor's text, optionally behind a laggy link."""

    def __init__(self, label: str, seed: int) -> None:
        super().__init__()
        self.label = label
        self.rng = random.Random(seed)
        self.text = ""
        self.links: list[Link] = []
        self.errors: list[Any] = []
        self.unapplied = 0  # events delivered to it, not yet handled
        self.applied = asyncio.Event()
        self.applied.set()

    def lag(self, between: tuple[float, float] = LAG) -> None:
        """Every packet either way takes 25-75 ms (seeded; or `between`), in order, a text
        processed together with the PING behind it. Called before `connect`, so that the
        server measures the connection's round trip with the lag (the Engine.IO handshake's
        first packet does not go through here: the answer to it takes its time too)."""
        eio = self.sio.eio
        receive_now = eio._receive_packet

        async def arrive(pkt: Any) -> None:
            if pkt.packet_type == eio_packet.MESSAGE and str(pkt.data).startswith("2"):
                self.unapplied += 1  # an event: the editor handles it before anything else
                self.applied.clear()
            await receive_now(pkt)

        up = Link(self.rng, eio._send_packet, lag=between, first=self.rng.uniform(*between))
        down = Link(self.rng, arrive, holds=self.probed_after, lag=between)

        async def send(pkt: Any) -> None:
            up.put(pkt)

        async def receive(pkt: Any) -> None:
            down.put(pkt)

        eio._send_packet, eio._receive_packet = send, receive
        self.links = [up, down]

    def probed_after(self, pkt: Any) -> bool:
        """Whether the server sends a PING right behind this packet: a text, to a client
        whose changes it infers."""
        return False

    async def settle(self) -> None:
        """Everything it sent has reached the server and everything sent to it arrived."""
        for link in self.links:
            await link.drain()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.settle()
        for link in self.links:
            link.task.cancel()
        eio = self.sio.eio
        for name in ("_send_packet", "_receive_packet"):
            eio.__dict__.pop(name, None)  # back to the real methods
        self.links = []
        await super().close()

    async def _record(self, event: str, *args: Any) -> None:
        data = args[0] if len(args) == 1 else (args or None)
        if event == "error":
            self.errors.append(data)
        await self.received(event, data)
        if self.unapplied:
            self.unapplied -= 1
            if not self.unapplied:
                self.applied.set()
        await super()._record(event, *args)

    async def keystroke(self) -> None:
        """A keystroke waits for the events that arrived before it to be applied (an
        editor handles an event as it arrives; the user types on the result)."""
        while self.unapplied:
            await asyncio.wait_for(self.applied.wait(), WAIT)

    async def received(self, event: str, data: Any) -> None:
        """What the editor does with an event, before it is recorded."""

    def line_end(self, text: str | None = None) -> int:
        """Where its typist types: at the end of its own line (`<label>:`)."""
        text = self.text if text is None else text
        start = text.index(f"{self.label}:")
        end = text.find("\n", start)
        return len(text) if end < 0 else end

    async def type(self, character: str) -> None:
        raise NotImplementedError

    async def type_words(self, words: list[str]) -> None:
        """Type each word (with a space before it) at the end of its line, one keystroke
        at a time, without waiting for anything."""
        for word in words:
            for character in " " + word:
                await self.type(character)
                await asyncio.sleep(self.rng.uniform(*THINK))


class UnchangedEditor(Editor):
    """The unchanged editor: every keystroke sends the whole text, no baseVersion, no
    callback; every codeUpdate replaces its text (never sent back: its remote-change flag)."""

    def __init__(self, label: str, seed: int) -> None:
        super().__init__(label, seed)
        self.sent: list[str] = []
        self.given: str | None = None  # the last text it was sent, if it typed nothing since
        self.repeated: list[dict[str, Any]] = []  # codeUpdates of the text it had been given

    def probed_after(self, pkt: Any) -> bool:
        return pkt.packet_type == eio_packet.MESSAGE and str(pkt.data).startswith('2["codeUpdate"')

    async def received(self, event: str, data: Any) -> None:
        if event == "codeUpdate":
            # The server cannot know a keystroke still on its way (which may even have typed
            # the same text), but it knows what it sent: never the same text twice in a row.
            if data["code"] == self.given:
                self.repeated.append(data)
            self.text = self.given = data["code"]

    async def type(self, character: str) -> None:
        await self.keystroke()
        at = self.line_end()
        self.text = self.text[:at] + character + self.text[at:]
        self.given = None
        self.sent.append(self.text)
        await self.emit("codeChange", {"roomId": ROOM, "code": self.text, "language": "javascript"})


class DeltaEditor(Editor):
    """A client like ot.js that joins with `deltas`: one change in flight, what it types
    meanwhile buffered, every change of others transformed past both; its own change coming
    back (userId = its sid) acknowledges it."""

    def __init__(self, label: str, seed: int) -> None:
        super().__init__(label, seed)
        self.server_text = ""
        self.revision = 0
        self.outstanding: Op | None = None
        self.buffer: Op | None = None
        self.sends = 0
        self.acks = 0
        self.whole_texts: list[dict[str, Any]] = []  # codeUpdates with `code` (none expected)
        self.gaps: list[tuple[int, int]] = []  # (its revision, the update's baseVersion)

    def joined(self, ack: dict[str, Any]) -> None:
        self.text = self.server_text = ack["code"]
        self.revision = ack["version"]

    async def received(self, event: str, data: Any) -> None:
        if event != "codeUpdate":
            return
        if "changes" not in data:
            self.whole_texts.append(data)
            return
        if data["baseVersion"] != self.revision:
            self.gaps.append((self.revision, data["baseVersion"]))
        edits = [TextEdit.model_validate(change) for change in data["changes"]]
        remote = changes_to_op(self.server_text, edits)
        self.server_text = apply(remote, self.server_text)
        self.revision = data["version"]
        if data["userId"] == self.sid:
            self.acks += 1
            buffered, self.outstanding, self.buffer = self.buffer, None, None
            if buffered is not None:
                await self._send(buffered)
            return
        if self.outstanding is not None:
            remote, self.outstanding = transform(remote, self.outstanding)
        if self.buffer is not None:
            remote, self.buffer = transform(remote, self.buffer)
        self.text = apply(remote, self.text)

    async def type(self, character: str) -> None:
        await self.keystroke()
        at = self.line_end()
        typed = self.text[:at] + character + self.text[at:]
        op = diff(self.text, typed)
        self.text = typed
        if self.outstanding is None:
            await self._send(op)
        else:
            self.buffer = op if self.buffer is None else compose(self.buffer, op)

    async def _send(self, op: Op) -> None:
        self.outstanding = op
        self.sends += 1
        changes = op_to_changes(op, apply(op, self.server_text))
        payload = {"roomId": ROOM, "changes": changes, "baseVersion": self.revision}
        await self.emit("codeChange", payload)


async def create_room(server: RunningServer, code: str) -> None:
    status, body = await server.http(
        "POST",
        "/api/sessions/create",
        json={"roomId": ROOM, "creatorName": "host", "code": code},
    )
    assert status == 201, body


async def room_session(server: RunningServer) -> dict[str, Any]:
    status, body = await server.http("GET", f"/api/sessions/{ROOM}")
    assert status == 200, body
    session: dict[str, Any] = body["session"]
    return session


@asynccontextmanager
async def editors(made: list[Editor]) -> AsyncIterator[list[Editor]]:
    try:
        yield made
    finally:
        for editor in made:
            await editor.close()


async def open_editor(
    server: RunningServer, editor: Editor, lag: tuple[float, float] | None = LAG
) -> None:
    """Connect (over a link with `lag`, None: none at all) and join as the editor does; an
    unchanged editor loads the text over REST."""
    if lag is not None:
        editor.lag(lag)
    await editor.connect(server.url)
    if isinstance(editor, DeltaEditor):
        editor.joined(await editor.join(ROOM, editor.label, f"user-{editor.label}", deltas=True))
    else:
        assert (await editor.join(ROOM, editor.label, f"user-{editor.label}"))["ok"]
        editor.text = (await room_session(server))["code"]


async def converged(server: RunningServer, made: list[Editor], within: float = WAIT) -> str:
    """Wait (bounded) until every editor shows the room text; that text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    def room_text() -> str:
        return server.rooms.rooms[ROOM].code

    while True:
        behind = [editor for editor in made if editor.text != room_text()]
        if not behind:
            return room_text()
        editor = behind[0]
        try:
            async with editor._arrived:
                await asyncio.wait_for(
                    editor._arrived.wait_for(lambda e=editor: e.text == room_text()),
                    max(0.0, deadline - loop.time()),
                )
        except TimeoutError:
            shown = {e.label: e.text for e in made}
            raise AssertionError(f"no convergence: room {room_text()!r}, editors {shown}") from None


def expected_text(labels: str, words: dict[str, list[str]]) -> str:
    return "".join(f"{label}:{''.join(' ' + w for w in words[label])}\n" for label in labels)


def assert_every_word_once(text: str, labels: str) -> None:
    counts = Counter(text.replace("\n", " ").split())
    for label in labels:
        for word in WORDS[label]:
            assert counts[word] == 1, f"{word!r} appears {counts[word]} times in {text!r}"


async def type_at_once(server: RunningServer, made: list[Editor]) -> str:
    """Everyone types its words at the same time behind laggy links; the room text once
    everything has arrived and the room is quiet."""
    labels = "".join(editor.label for editor in made)
    await create_room(server, "".join(f"{label}:\n" for label in labels))
    for editor in made:
        await open_editor(server, editor)
    await asyncio.gather(*(editor.type_words(WORDS[editor.label]) for editor in made))
    for editor in made:
        await editor.settle()
    await converged(server, made)
    for editor in made:
        await editor.quiet(0.2)  # anything still in flight arrives
        await editor.settle()
    final: str = (await room_session(server))["code"]
    for editor in made:
        assert editor.text == final, (editor.label, editor.text, final)
        assert editor.errors == []
    assert_every_word_once(final, labels)
    assert final == expected_text(labels, WORDS)
    return final


# -- unchanged editors typing at once -------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_unchanged_editors_typing_at_once_behind_lag_keep_every_word(
    server: RunningServer, seed: int
) -> None:
    made: list[Editor] = [UnchangedEditor("a", seed), UnchangedEditor("b", seed + 100)]
    async with editors(made):
        await type_at_once(server, made)
        for editor in made:
            assert isinstance(editor, UnchangedEditor)
            # Given its own text again, the editor would swallow its user's next keystroke.
            assert editor.repeated == [], f"{editor.label} was sent the text it showed"


@pytest.mark.parametrize("seed", [4, 5])
async def test_three_unchanged_editors_typing_at_once_behind_lag_keep_every_word(
    server: RunningServer, seed: int
) -> None:
    made: list[Editor] = [UnchangedEditor(label, seed * 10 + i) for i, label in enumerate("abc")]
    async with editors(made):
        await type_at_once(server, made)
        for editor in made:
            assert isinstance(editor, UnchangedEditor)
            assert editor.repeated == [], f"{editor.label} was sent the text it showed"


# -- the auto-save racing a keystroke --------------------------------------------------------
# These editors' links have no lag but still process a text with the PING behind it (the
# Python client on its own can run a handler, and its user type, before it has read that
# PING; a browser handles both at once).


async def autosave(server: RunningServer, code: str) -> None:
    """The editor's auto-save: its whole text, 2 s after its last change."""
    status, body = await server.http(
        "POST", f"/api/sessions/{ROOM}/update", json={"code": code, "language": "javascript"}
    )
    assert status == 200, body


async def wait_shows(editor: Editor, text: str) -> None:
    async with editor._arrived:
        await asyncio.wait_for(editor._arrived.wait_for(lambda: editor.text == text), WAIT)


@pytest.mark.parametrize("order", ["autosave_first", "keystroke_first", "together"])
async def test_an_autosave_of_a_stale_text_racing_a_keystroke_loses_nothing(
    server: RunningServer, order: str
) -> None:
    alice, bob = UnchangedEditor("a", 1), UnchangedEditor("b", 2)
    async with editors([alice, bob]):
        await create_room(server, "a:\nb:\n")
        for editor in (alice, bob):
            await open_editor(server, editor, NO_LAG)
        for character in " apple":
            await alice.type(character)
        await wait_shows(bob, "a: apple\nb:\n")
        room = server.rooms.rooms[ROOM]
        version = room.version
        stale = alice.text  # what Alice's auto-save sends: it has not seen Bob's keystroke

        async def keystroke() -> None:
            await bob.keystroke()
            at = bob.line_end()
            bob.text = bob.text[:at] + "x" + bob.text[at:]
            answer = await bob.call("codeChange", {"roomId": ROOM, "code": bob.text})
            assert answer["ok"], answer

        if order == "autosave_first":
            await autosave(server, stale)
            await keystroke()
        elif order == "keystroke_first":
            await keystroke()
            await autosave(server, stale)
        else:
            await asyncio.gather(autosave(server, stale), keystroke())
        expected = "a: apple\nb:x\n"
        assert await converged(server, [alice, bob]) == expected
        await alice.quiet()
        session = await room_session(server)
        assert session["code"] == expected
        assert (alice.text, bob.text) == (expected, expected)
        # The auto-saved text was one the room held (or Alice sent last): no version of its own.
        assert session["version"] == version + 1
        for editor in (alice, bob):
            assert all(u["userName"] != "server" for u in editor.events["codeUpdate"])


async def until(condition: Callable[[], bool], within: float = WAIT) -> None:
    """Wait (bounded) for a condition on the server's state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_an_autosave_of_a_text_the_room_never_held_loses_no_keystroke(
    server: RunningServer,
) -> None:
    """Alice's last keystroke crosses Bob's: the room never holds her text exactly. Her
    auto-save of it (once her keystroke has arrived) then races Bob's next keystroke."""
    alice, bob = UnchangedEditor("a", 1), UnchangedEditor("b", 2)
    async with editors([alice, bob]):
        await create_room(server, "a:\nb:\n")
        await open_editor(server, alice)  # Bob's keystroke takes at least 25 ms to reach her
        await open_editor(server, bob, NO_LAG)
        for character in " appl":
            await alice.type(character)
        await wait_shows(bob, "a: appl\nb:\n")
        room = server.rooms.rooms[ROOM]
        await bob.type("x")
        await until(lambda: room.code == "a: appl\nb:x\n")
        await alice.type("e")  # on "a: appl\nb:\n": Bob's keystroke is still on its way
        stale = alice.sent[-1]
        assert stale == "a: apple\nb:\n"
        await until(lambda: room.code == "a: apple\nb:x\n")
        assert stale not in [u["code"] for u in bob.events["codeUpdate"]]  # never the room's
        await asyncio.gather(autosave(server, stale), bob.type("y"))
        expected = "a: apple\nb:xy\n"
        assert await converged(server, [alice, bob]) == expected
        await alice.quiet()
        assert (await room_session(server))["code"] == expected
        assert (alice.text, bob.text) == (expected, expected)
        for editor in (alice, bob):
            assert all(u["userName"] != "server" for u in editor.events["codeUpdate"])


async def test_an_autosave_arriving_after_more_typing_reverts_nothing(
    server: RunningServer,
) -> None:
    """The auto-save of a text the room held, delayed past its author's next keystrokes and
    racing another's keystroke: it changes nothing."""
    alice, bob = UnchangedEditor("a", 1), UnchangedEditor("b", 2)
    async with editors([alice, bob]):
        await create_room(server, "a:\nb:\n")
        for editor in (alice, bob):
            await open_editor(server, editor, NO_LAG)
        for character in " apple":
            await alice.type(character)
        await wait_shows(bob, "a: apple\nb:\n")
        saved = alice.text
        for character in " pie":
            await alice.type(character)
        await wait_shows(bob, "a: apple pie\nb:\n")
        version = server.rooms.rooms[ROOM].version
        await asyncio.gather(autosave(server, saved), bob.type("x"))
        expected = "a: apple pie\nb:x\n"
        assert await converged(server, [alice, bob]) == expected
        await alice.quiet()
        session = await room_session(server)
        assert (session["code"], session["version"]) == (expected, version + 1)
        for editor in (alice, bob):
            assert all(u["userName"] != "server" for u in editor.events["codeUpdate"])


async def test_a_rest_save_with_new_text_is_merged_past_a_concurrent_keystroke(
    server: RunningServer,
) -> None:
    alice, bob = UnchangedEditor("a", 1), UnchangedEditor("b", 2)
    async with editors([alice, bob]):
        await create_room(server, "a:\nb:\n")
        for editor in (alice, bob):
            await open_editor(server, editor, NO_LAG)
        for character in " apple":
            await alice.type(character)
        await wait_shows(bob, "a: apple\nb:\n")
        version = server.rooms.rooms[ROOM].version
        await asyncio.gather(autosave(server, "a: apple\nb:\n// saved\n"), bob.type("x"))
        expected = "a: apple\nb:x\n// saved\n"
        assert await converged(server, [alice, bob]) == expected
        await alice.quiet()
        session = await room_session(server)
        assert (session["code"], session["version"]) == (expected, version + 2)


# -- the language echo storm ------------------------------------------------------------------


class EchoingEditor(Client):
    """The unchanged editor's language handling: its default once on mount, then every
    languageUpdate it receives shown and sent straight back as languageChange."""

    language = "javascript"

    async def _record(self, event: str, *args: Any) -> None:
        await super()._record(event, *args)
        if event == "languageUpdate":
            self.language = args[0]["language"]
            await self.emit("languageChange", {"roomId": ROOM, "language": self.language})

    async def choose(self, language: str) -> dict[str, Any]:
        self.language = language
        answer: dict[str, Any] = await self.call(
            "languageChange", {"roomId": ROOM, "language": language}
        )
        return answer


@asynccontextmanager
async def echoing_room(
    tmp_path: Path, count: int
) -> AsyncIterator[tuple[RunningServer, FlakyStore, list[EchoingEditor]]]:
    """`count` editors in a room, each having sent its mount default; nothing left to write."""
    store = FlakyStore(tmp_path / "sessions.sqlite3")
    async with running_server(fast_settings(tmp_path), store) as server:
        made = [EchoingEditor() for _ in range(count)]
        try:
            for n, editor in enumerate(made):
                await editor.connect(server.url)
                assert (await editor.join(ROOM, f"user{n}", f"u{n}"))["ok"]
                await editor.emit("languageChange", {"roomId": ROOM, "language": "javascript"})
            await made[0].quiet()
            assert await server.writer.flush(server.rooms.rooms[ROOM], within=WAIT)
            yield server, store, made
        finally:
            for editor in made:
                await editor.close()


async def test_five_editors_echoing_a_language_change_make_one_version_and_one_write(
    tmp_path: Path,
) -> None:
    async with echoing_room(tmp_path, 5) as (server, store, made):
        room = server.rooms.rooms[ROOM]
        writes, version = len(store.saves), room.version
        assert await made[0].choose("python") == {"ok": True, "version": version + 1}
        for editor in made[1:]:
            await editor.next("languageUpdate")
        for editor in made:
            await editor.quiet(0.3)  # every echo (and any answer to one) arrives

        assert "languageUpdate" not in made[0].events
        for editor in made[1:]:
            updates = editor.events["languageUpdate"]
            assert [(u["language"], u["version"]) for u in updates] == [("python", version + 1)]
            assert "error" not in editor.events
        assert len(store.saves) - writes == 1
        stored = store.saves[-1]
        assert (stored.language, stored.version) == ("python", version + 1)
        session = await room_session(server)
        assert (session["language"], session["version"]) == ("python", version + 1)


async def test_two_language_changes_crossing_in_an_echo_storm_settle_on_one_language(
    tmp_path: Path,
) -> None:
    async with echoing_room(tmp_path, 5) as (server, store, made):
        room = server.rooms.rooms[ROOM]
        writes, version = len(store.saves), room.version
        answers = await asyncio.gather(made[0].choose("python"), made[1].choose("go"))
        for editor in made:
            await editor.quiet(0.5)  # the echoes, and the echoes of the answers to them
        language = room.language
        assert language in ("python", "go")
        # Everyone shows the room's language (an editor whose change crossed the other is
        # told the room's again when it echoes the crossed one); two versions, no more.
        assert [editor.language for editor in made] == [language] * 5
        assert room.version == version + 2
        for editor in made:
            seen = [u["version"] for u in editor.events["languageUpdate"]]
            assert seen == sorted(seen) and set(seen) <= {version + 1, version + 2}
            assert "error" not in editor.events
        assert 1 <= len(store.saves) - writes <= 2
        assert (store.saves[-1].language, store.saves[-1].version) == (language, version + 2)
        session = await room_session(server)
        assert (session["language"], session["version"]) == (language, version + 2)
        # Each acknowledgement names the version of its own change.
        assert sorted(a["version"] for a in answers) == [version + 1, version + 2], answers


async def test_an_autosave_naming_the_language_just_replaced_does_not_undo_the_change(
    tmp_path: Path,
) -> None:
    async with echoing_room(tmp_path, 2) as (server, _store, made):
        room = server.rooms.rooms[ROOM]
        assert (await made[0].choose("python"))["ok"]
        await made[1].next("languageUpdate")
        version = room.version
        # The other editor's auto-save, sent before it received the change, arrives now.
        status, body = await server.http(
            "POST", f"/api/sessions/{ROOM}/update", json={"language": "javascript"}
        )
        assert status == 200, body
        for editor in made:
            await editor.quiet(0.3)
        assert (room.language, room.version) == ("python", version)
        assert [u["language"] for u in made[1].events["languageUpdate"]] == ["python"]
        assert "languageUpdate" not in made[0].events
        session = await room_session(server)
        assert session["language"] == "python"
        # A language the room never held is a real change, from REST too.
        status, body = await server.http(
            "POST", f"/api/sessions/{ROOM}/update", json={"language": "go"}
        )
        assert status == 200, body
        assert (await made[0].next("languageUpdate"))["language"] == "go"


# -- a client that reads deltas beside the unchanged editor -----------------------------------


@pytest.mark.parametrize("seed", [7, 8])
async def test_a_delta_client_and_an_unchanged_editor_typing_at_once_converge(
    server: RunningServer, seed: int
) -> None:
    delta, plain = DeltaEditor("a", seed), UnchangedEditor("b", seed + 1)
    made: list[Editor] = [delta, plain]
    async with editors(made):
        await type_at_once(server, made)
        # The delta client reads every change as changes, in order, its own acknowledged.
        assert delta.whole_texts == []
        assert delta.gaps == []
        assert delta.sends == delta.acks > 0
        updates = delta.events["codeUpdate"]
        assert updates and all("changes" in u and "code" not in u for u in updates)
        assert all(u["version"] > u["baseVersion"] for u in updates)
        # The unchanged editor reads whole texts, never changes.
        assert plain.events["codeUpdate"]
        assert all("code" in u and "changes" not in u for u in plain.events["codeUpdate"])
        assert plain.repeated == []
