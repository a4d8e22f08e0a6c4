"""Every keystroke kept, whatever the client: four client models type concurrently into one
room through the real domain (Rooms, Editing, the merge), over FIFO links with random
delivery, and must all converge on the room's text with every live token exactly once.

The models (docs/protocol.md, "What the server guarantees for each kind of client"):
1. the unchanged editor: no baseVersion; every update replaces its text on arrival; its
   auto-save POSTs its whole text now and then;
2. a version-aware client that replaces its text with every newer update and sends the
   version of the last one it applied as baseVersion;
3. the documented recipe (acknowledgements, in-flight changes);
4. a client like ot.js: it sends changes (deltas), keeps its unacknowledged edits and
   transforms each incoming change past them.
Fast typists send without waiting for anything. Hypothesis seeds every run (derandomized in
CI through the `ci` profile, see conftest.py), so a failing example replays.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain.editing import Editing
from app.domain.gate import Gate
from app.domain.ot import (
    Builder,
    Op,
    apply,
    caret_after,
    compose,
    diff,
    last_insertion_end,
    transform,
)
from app.domain.rooms import Rooms
from app.domain.sessions import Sessions
from app.domain.writer import DebouncedWriter
from app.storage.records import MAIN_FILE_ID
from app.wire.inbound import TextEdit
from tests.fakes import MemoryStore
from tests.support import fast_settings

ROOM = "MERGE"
# A token is a word that starts with a character of its own (an ideograph numbered after the
# token) and ends with a newline. From a full text alone the server cannot tell which of two
# identical neighbouring characters was just typed: with two people typing at one spot, words
# that begin with the same character could interleave (a limit docs/protocol.md states).
TOKEN = re.compile(r"[\u4e00-\u9fff]([a-z]\d+)\n")


def token_text(name: str) -> str:
    letter, number = name[0], int(name[1:])
    return f"{chr(0x4E00 + (ord(letter) - ord('a')) * 1000 + number)}{name}\n"


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


class Notifier:
    """Delivers into each client's FIFO inbox, as a socket would, in the order emitted."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientModel] = {}
        self.groups: dict[str, list[str]] = {}
        self.probes: Counter[str] = Counter()  # probes sent, per socket
        self.answers: Counter[str] = Counter()  # probes answered, per socket

    def probe(self, sid: str) -> int | None:
        """An Engine.IO PING: the client answers it (PONG) when it processes it, in order."""
        self.probes[sid] += 1
        self.clients[sid].deliver("ping", None)
        return self.probes[sid]

    def answered(self, sid: str) -> int | None:
        return self.answers[sid]

    def send(self, sids: Iterable[str], event: str, *args: object, replaces: Any = None) -> None:
        for sid in sids:
            self.clients[sid].deliver(event, args[0] if args else None)

    def broadcast(self, group: str, event: str, *args: object, skip: str | None = None) -> None:
        self.send([sid for sid in self.groups.get(group, []) if sid != skip], event, *args)

    def close(self, sid: str) -> None:
        pass

    def enter(self, sid: str, group: str) -> None:
        self.groups.setdefault(group, []).append(sid)

    def leave(self, sid: str, group: str) -> None:
        if sid in self.groups.get(group, []):
            self.groups[group].remove(sid)


@dataclass
class ClientModel:
    """A client at the end of a link with `latency` each way (each message takes 0.5 to 1.5
    times it), FIFO both ways; `clock` is the simulation's."""

    sid: str
    clock: Any
    latency: float
    random: Any
    text: str = ""
    made: int = 0
    outbox: deque[tuple[float, dict[str, Any] | None]] = field(default_factory=deque)
    inbox: deque[tuple[float, str, Any]] = field(default_factory=deque)
    sent_at: dict[int, float] = field(default_factory=dict)
    lag: dict[int, float] = field(default_factory=dict)

    def _arrival(self, queue: deque[Any]) -> float:
        """When a message sent now arrives: what is sent at one moment travels together."""
        now = self.clock()
        if self.sent_at.get(id(queue)) != now:
            self.sent_at[id(queue)] = now
            self.lag[id(queue)] = self.latency * self.random.uniform(0.5, 1.5)
        at = now + self.lag[id(queue)]
        return max(at, queue[-1][0]) if queue else at

    def deliver(self, event: str, data: Any) -> None:
        self.inbox.append((self._arrival(self.inbox), event, data))

    def joined(self, text: str, version: int) -> None:
        self.text = text

    def new_token(self) -> str:
        self.made += 1
        return f"{self.sid}{self.made}"

    def edit(self, text: str) -> None:
        self.text = text
        self.outbox.append((self._arrival(self.outbox), self.change()))

    def change(self) -> dict[str, Any]:
        return {"code": self.text}

    def receive(self) -> None:
        _, event, data = self.inbox.popleft()
        if event == "ping":
            self.outbox.append((self._arrival(self.outbox), None))  # the PONG
        elif event in ("codeUpdate", "receiveCodeState"):
            self.update(data)
        elif event == "ack":
            self.ack(data)

    def update(self, data: dict[str, Any]) -> None: ...

    def ack(self, data: dict[str, Any]) -> None: ...


class Unchanged(ClientModel):
    """(1) The unchanged editor: every update replaces its text; no baseVersion."""

    def update(self, data: dict[str, Any]) -> None:
        self.text = data["code"]


class Replacer(ClientModel):
    """(2) Replaces its text with every newer update; baseVersion = the last one applied."""

    base = 0

    def joined(self, text: str, version: int) -> None:
        self.text, self.base = text, version

    def change(self) -> dict[str, Any]:
        return {"code": self.text, "baseVersion": self.base}

    def update(self, data: dict[str, Any]) -> None:
        if data["version"] > self.base:
            self.text, self.base = data["code"], data["version"]


class Recipe(ClientModel):
    """(3) The recipe of docs/protocol.md."""

    base = 0
    in_flight = 0

    def joined(self, text: str, version: int) -> None:
        self.text, self.base = text, version

    def change(self) -> dict[str, Any]:
        self.in_flight += 1
        return {"code": self.text, "baseVersion": self.base}

    def update(self, data: dict[str, Any]) -> None:
        if self.in_flight == 0 and data["version"] > self.base:
            self.text, self.base = data["code"], data["version"]

    def ack(self, data: dict[str, Any]) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.base = data["version"]
            if data.get("code") is not None:
                self.text = data["code"]


def op_to_edits(op: Op) -> list[dict[str, Any]]:
    """A client's own conversion of an op to `{from, to, insert}` changes (the texts here are
    all in the Basic Multilingual Plane: a code point is one UTF-16 unit)."""
    edits: list[dict[str, Any]] = []
    at = 0
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str):
            edits.append({"from": at, "to": at, "insert": component})
        else:
            edits.append({"from": at, "to": at + len(component.text), "insert": ""})
            at += len(component.text)
    return edits


def edits_to_op(edits: list[dict[str, Any]], text: str) -> Op:
    """The op of `{from, to, insert}` changes on `text`."""
    out, at = Builder(), 0
    for edit in edits:
        out.retain(edit["from"] - at)
        out.insert(edit["insert"])
        out.delete(text[edit["from"] : edit["to"]])
        at = edit["to"]
    return out.build()


class OtClient(ClientModel):
    """(4) Like ot.js: it joins with `deltas`, keeps one change in flight and buffers what it
    types meanwhile; each change from others is transformed past both, and its own change
    coming back acknowledges it. Where both insert at one place, its own change goes first
    at the place its last insertion ended (docs/protocol.md), else theirs."""

    revision = 0
    server_text = ""  # the room text at `revision`
    caret: int | None = None  # where its last acknowledged insertion ended, in server_text
    outstanding: Op | None = None  # sent, not acknowledged (on server_text)
    buffer: Op | None = None  # typed since (on server_text + outstanding)
    outstanding_caret: int | None = None  # its ties: the caret, in the outstanding's base
    buffer_caret: int | None = None  # where the outstanding's last insertion ended

    def joined(self, text: str, version: int) -> None:
        self.text, self.server_text, self.revision = text, text, version

    def edit(self, text: str) -> None:
        op = diff(self.text, text)
        self.text = text
        if self.outstanding is None:
            self._send(op, self.caret)
        elif self.buffer is None:
            self.buffer = op
            self.buffer_caret = last_insertion_end(self.outstanding)
        else:
            self.buffer = compose(self.buffer, op)

    def _send(self, op: Op, caret: int | None) -> None:
        self.outstanding, self.outstanding_caret = op, caret
        change = {"changes": op_to_edits(op), "baseVersion": self.revision}
        self.outbox.append((self._arrival(self.outbox), change))

    def update(self, data: dict[str, Any]) -> None:
        if "changes" not in data:  # a whole text: nothing in flight can be kept
            assert self.outstanding is None, "a whole text reached a client with changes in flight"
            self.text = self.server_text = data["code"]
            self.revision = data["version"]
            return
        remote = edits_to_op(data["changes"], self.server_text)
        self.server_text = apply(remote, self.server_text)
        self.revision = data["version"]
        if data["userId"] == self.sid:  # its own change: acknowledged
            self.caret = last_insertion_end(remote)
            buffer, caret = self.buffer, self.buffer_caret
            self.outstanding = self.buffer = None
            if buffer is not None:
                self._send(buffer, caret)
            return
        self.caret = caret_after(remote, self.caret)
        if self.outstanding is not None:
            caret = self.outstanding_caret
            self.outstanding_caret = caret_after(remote, caret)
            remote, self.outstanding = transform(remote, self.outstanding, other_first_at=caret)
        if self.buffer is not None:
            caret = self.buffer_caret
            self.buffer_caret = caret_after(remote, caret)
            remote, self.buffer = transform(remote, self.buffer, other_first_at=caret)
        self.text = apply(remote, self.text)


MODELS = {"unchanged": Unchanged, "replacer": Replacer, "recipe": Recipe, "ot": OtClient}


class Simulation:
    def __init__(self, tmp: Path, kinds: list[str], initial: int, seed: int) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self.settings = fast_settings(tmp, save_debounce_seconds=3600, save_max_delay_seconds=3600)
        self.store = MemoryStore()
        self.notifier = Notifier()
        writer = DebouncedWriter(self.store, debounce=3600, max_delay=3600, retry_max=1)
        self.rooms = Rooms(
            self.store,  # type: ignore[arg-type]
            writer,
            self.settings,
            self.notifier,
            monotonic=lambda: self.now,
        )
        self.editing = Editing(self.rooms, self.notifier, self.settings)
        self.sessions = Sessions(self.rooms, self.editing, Gate(self.rooms, self.notifier))
        self.clients = [
            MODELS[kind](chr(ord("a") + i), lambda: self.now, self.random.uniform(0.025, 0.075),
                         self.random)
            for i, kind in enumerate(kinds)
        ]  # fmt: skip
        self.initial = "".join(token_text(f"s{i}") for i in range(initial))
        self.alive = {f"s{i}" for i in range(initial)}

    async def start(self) -> None:
        room = await self.rooms.open(ROOM, create=True)
        await self.editing.replace_text(room, room.main, self.initial, None, merge=False)
        for client in self.clients:
            self.notifier.clients[client.sid] = client
            address = f"10.0.0.{client.sid}"
            await self.rooms.join(client.sid, ROOM, client.sid, None, address, 2 * client.latency)
            client.inbox.clear()  # presence events
            self.rooms.rooms[ROOM].members[client.sid].deltas = isinstance(client, OtClient)
            client.joined(room.code, room.version)

    @property
    def room_text(self) -> str:
        return self.rooms.rooms[ROOM].code

    def insert(self, client: ClientModel, pick: int) -> None:
        """Type a new token at a token boundary, one keystroke (one change) per character."""
        # After a whole token (or at the start): never inside a token, even one that
        # another client is still typing (its first characters may have arrived).
        boundaries = [0] + [match.end() for match in TOKEN.finditer(client.text)]
        offset = boundaries[pick % len(boundaries)]
        name = client.new_token()
        self.alive.add(name)
        for i, character in enumerate(token_text(name)):
            client.edit(client.text[: offset + i] + character + client.text[offset + i :])

    def delete(self, client: ClientModel, pick: int) -> None:
        """Select a whole token and delete it: one change."""
        names = tokens(client.text)
        if not names:
            self.insert(client, pick)
            return
        name = names[pick % len(names)]
        self.alive.discard(name)
        client.edit(client.text.replace(token_text(name), "", 1))

    async def to_server(self, client: ClientModel) -> None:
        _, change = client.outbox.popleft()
        if change is None:
            self.notifier.answers[client.sid] += 1
            return
        answer = await self.editing.change_text(
            client.sid,
            ROOM,
            MAIN_FILE_ID,
            change.get("code"),
            change.get("baseVersion"),
            changes=[TextEdit.model_validate(c) for c in change["changes"]]
            if "changes" in change
            else None,
        )
        client.deliver("ack", {"version": answer.version, "code": answer.text})

    async def autosave(self, client: ClientModel) -> None:
        """The unchanged editor's auto-save: its whole text over REST, once it has been
        quiet (its changes reached the server long before)."""
        if not any(change is not None for _, change in client.outbox):
            await self.sessions.update(ROOM, client.text, None, [])

    async def deliver_due(self) -> None:
        """Everything whose time has come, in time order."""
        while True:
            due = [(c.outbox[0][0], 0, i) for i, c in enumerate(self.clients) if c.outbox] + [
                (c.inbox[0][0], 1, i) for i, c in enumerate(self.clients) if c.inbox
            ]
            due = [d for d in due if d[0] <= self.now]
            if not due:
                return
            _, kind, i = min(due)
            if kind == 0:
                await self.to_server(self.clients[i])
            else:
                self.clients[i].receive()

    async def step(self, action: str, who: int, pick: int) -> None:
        client = self.clients[who % len(self.clients)]
        if action == "insert":
            self.insert(client, pick)
        elif action == "delete":
            self.delete(client, pick)
        elif action == "wait":
            self.now += pick / 1000 * 0.05  # up to 50 ms
            await self.deliver_due()
        elif action == "autosave" and isinstance(client, Unchanged):
            await self.autosave(client)

    async def settle(self) -> None:
        while any(c.outbox or c.inbox for c in self.clients):
            times = [c.outbox[0][0] for c in self.clients if c.outbox]
            times += [c.inbox[0][0] for c in self.clients if c.inbox]
            self.now = max(self.now, min(times))
            await self.deliver_due()

    def check(self) -> None:
        final = self.room_text
        assert TOKEN.sub("", final) == "", f"a token was garbled: {final!r}"
        counts = Counter(tokens(final))
        duplicated = {name for name, n in counts.items() if n > 1}
        assert not duplicated, f"duplicated: {duplicated} in {final!r}"
        assert set(counts) == self.alive, (
            f"lost {self.alive - set(counts)}, revived {set(counts) - self.alive}"
        )
        for client in self.clients:
            assert client.text == final, f"{client.sid} ({type(client).__name__}) diverged"


def simulate(
    tmp: Path, kinds: list[str], initial: int, seed: int, steps: list[tuple[str, int, int]]
) -> None:
    async def run() -> None:
        simulation = Simulation(tmp, kinds, initial, seed)
        await simulation.start()
        for action, who, pick in steps:
            await simulation.step(action, who, pick)
        await simulation.settle()
        simulation.check()

    asyncio.run(run())


actions = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "delete", "wait", "wait", "wait", "autosave"]),
        st.integers(0, 3),
        st.integers(0, 1000),
    ),
    max_size=50,
)
kinds = st.lists(st.sampled_from(sorted(MODELS)), min_size=2, max_size=4)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure replays
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(kinds=kinds, initial=st.integers(1, 4), seed=st.integers(0, 2**32), steps=actions)
# A change that overtook the probes of texts it could not have seen: not explained by a text
# that holds the start of another's new word (it deleted a whole token), nor by one without
# a character it had typed itself (it deleted a token after that character).
@example(
    kinds=["unchanged"] * 4,
    initial=1,
    seed=4096,
    steps=[("delete", 2, 396), ("insert", 2, 508), ("delete", 3, 429)],
)
@example(
    kinds=["unchanged"] * 4,
    initial=1,
    seed=4096,
    steps=[("delete", 3, 414), ("insert", 3, 166), ("delete", 3, 414), ("insert", 3, 538),
           ("insert", 2, 508), ("delete", 3, 429), ("delete", 2, 851)],
)  # fmt: skip
def test_every_kind_of_client_converges_and_keeps_every_live_token_exactly_once(
    tmp_path: Path, kinds: list[str], initial: int, seed: int, steps: list[tuple[str, int, int]]
) -> None:
    simulate(tmp_path, kinds, initial, seed, steps)
