"""Server-side cost of one text change (a keystroke), through the domain, per kind of client.

Each scenario is a room whose text is a code-like document of 10 KB, 100 KB or 500 KB, with
clients typing concurrently at their own places (one keystroke every 75-225 ms each, one in
ten a backspace) over links with 25-75 ms delays, FIFO both ways, as in
tests/test_merge_clients.py. The server is the real domain in-process (Rooms, Editing, the
merge history, the sequencer, the debounced writer over an in-memory store); the notifier is
a fake that encodes every event once with orjson (what the broadcast manager does once per
send) and hands it to the simulated clients after the timing. Engine.IO probes: the domain's
bookkeeping is real (Stream, one probe after each text sent to a client that sends no
baseVersion); the fake counts the probe instead of writing a PING frame, and the simulated
clients answer each in order, as every Engine.IO client does. Time is simulated, so the
merge history holds what 30 s of such typing leaves (the first 30 s are a warm-up).

Timed, in CPU time of the thread (immune to other processes taking the core; wall time is
in --verbose): each `Editing.change_text` call of the timed client kind, from the validated
payload to the answer, events encoded (for REST, `Editing.replace_text`: the merge and the
broadcast, not the store write). Not timed: decoding the Socket.IO packet, validation, rate
limits, the per-recipient frame writes, the acknowledgement.

Scenarios (--only picks them by key; delta-mixed is not run by default):
  1  text-k1/k3/k5    a full-text keystroke with no baseVersion (the unchanged editor: its
                      base is inferred), 1, 3 or 5 other such clients typing
     text-k0          the same, alone in the room
  2  versioned-k0/k3  a full-text keystroke with baseVersion (the client that replaces its
                      text with every newer update), alone or with 3 others
  3  delta-k0/k3      a keystroke as a delta (changes + baseVersion, joined with deltas), alone
                      or with 3 other delta clients; delta-mixed: with 3 unchanged editors
  4  rest             4 unchanged editors typing; every 10 keystrokes a REST auto-save of
                      (a) the room text of 2 s ago (held: must change nothing), then (b) the
                      same text with a keystroke the room never got (stale: merged)

Baseline (--baseline DIR, a checkout of another commit, e.g. fb15eab, before inference):
scenarios 1 and 2 run again with that tree's `app` and the ratios new / baseline are
printed. Each tree runs in its own interpreter with PYTHONPATH=its checkout (--tree: the
tree measured, default this one), size by size, alternating; the driver adapts to the older
API (no probes, no deltas, no merge of REST texts).

    python scripts/bench_merge.py                  # about 45 s of CPU on 2 cores
    git worktree add --detach /tmp/bench-base fb15eab
    python scripts/bench_merge.py --baseline /tmp/bench-base --rounds 2
    git worktree remove /tmp/bench-base
    python scripts/bench_merge.py --sizes 100 --only rest --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import inspect
import io
import json
import math
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
ROOM = "BENCH"
ALPHABET = "abcdefghijklmnopqrstuvwxyz (){}=:.\n"
TYPING_INTERVAL = 0.15  # seconds between two keystrokes of one typist, on average
WARMUP_SECONDS = 30.0  # simulated: the merge history's window (MERGE_HISTORY_SECONDS)
REST_EVERY = 10  # rest scenario: an auto-save pair every this many timed keystrokes


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    subject: str  # the kind of client whose changes are timed: text, versioned, delta
    others: tuple[str, ...] = ()
    rest: bool = False
    baseline: bool = False  # also measured on the baseline tree
    default: bool = True  # run when --only is not given


SCENARIOS = [
    Scenario("text-k0", "1 no baseVersion, alone", "text", (), baseline=True),
    Scenario("text-k1", "1 no baseVersion, 1 other typing", "text", ("text",), baseline=True),
    Scenario("text-k3", "1 no baseVersion, 3 others typing", "text", ("text",) * 3,
             baseline=True),
    Scenario("text-k5", "1 no baseVersion, 5 others typing", "text", ("text",) * 5,
             baseline=True),
    Scenario("versioned-k0", "2 baseVersion, alone", "versioned", (), baseline=True),
    Scenario("versioned-k3", "2 baseVersion, 3 others typing", "versioned",
             ("versioned",) * 3, baseline=True),
    Scenario("delta-k0", "3 delta, alone", "delta"),
    Scenario("delta-k3", "3 delta, 3 other delta clients typing", "delta", ("delta",) * 3),
    Scenario("delta-mixed", "3 delta, 3 unchanged editors typing", "delta", ("text",) * 3,
             default=False),
    Scenario("rest", "4 REST auto-save (4 unchanged editors typing)", "text", ("text",) * 3,
             rest=True),
]  # fmt: skip
BY_KEY = {s.key: s for s in SCENARIOS}


# -- the document ----------------------------------------------------------------------------


def document(size: int, seed: int) -> str:
    """Code-like text: short indented lines of keywords and punctuation."""
    rng = random.Random(seed)
    words = ["def", "return", "self", "value", "items", "for", "in", "if", "(", ")", ":", "=", "1"]
    lines: list[str] = []
    total = 0
    while total < size:
        line = "    " * rng.randrange(3) + " ".join(rng.choice(words) for _ in range(6))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


# -- the app under test, whichever commit it is ------------------------------------------------


class Api:
    """The app's domain classes, and which of the newer features this tree has."""

    def __init__(self) -> None:
        import app
        from app.config import Settings
        from app.domain.editing import Editing
        from app.domain.rooms import Rooms
        from app.domain.writer import DebouncedWriter
        from app.storage.records import MAIN_FILE_ID

        self.app_file = app.__file__
        self.main: str = MAIN_FILE_ID
        self.Settings: Any = Settings
        self.Editing: Any = Editing
        self.Rooms: Any = Rooms
        self.DebouncedWriter: Any = DebouncedWriter
        self.rooms_monotonic = "monotonic" in inspect.signature(Rooms.__init__).parameters
        self.join_round_trip = "round_trip" in inspect.signature(Rooms.join).parameters
        self.replace_merge = "merge" in inspect.signature(Editing.replace_text).parameters
        self.deltas = "changes" in inspect.signature(Editing.change_text).parameters
        self.TextEdit: Any = None
        self.ot: Any = None
        if self.deltas:
            from app.domain import ot
            from app.wire.inbound import TextEdit

            self.TextEdit, self.ot = TextEdit, ot
        try:
            from app.gc_tuning import tune_now

            self.tune_gc: Callable[[], object] = tune_now
        except ImportError:
            self.tune_gc = gc.collect


class MemoryStore:
    """Enough of a SessionStore for the domain: sessions in a dict, chat nowhere."""

    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def load(self, room_id: str) -> Any:
        return self.sessions.get(room_id)

    async def save(self, record: Any) -> bool:
        self.sessions[record.room_id] = record
        return True

    async def append_messages(self, messages: Iterable[Any]) -> None: ...

    async def list_messages(self, room_id: str, *, before: int | None, limit: int) -> list[Any]:
        return []

    async def delete(self, room_id: str) -> bool:
        return self.sessions.pop(room_id, None) is not None

    async def list_for_user(self, user_id: str, *, now: Any, limit: int) -> list[Any]:
        return []

    async def purge_expired(self, now: Any) -> int:
        return 0


class Notifier:
    """Encodes each event once (orjson, as the broadcast manager does once per send) and keeps
    it, in order, for the simulation to deliver after the timed call; counts probes and the
    bytes of every codeUpdate per recipient."""

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {}
        self.probes: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.out: list[tuple[list[str], str, Any]] = []
        self.full_bytes: list[int] = []  # one per recipient of a whole-text codeUpdate
        self.delta_bytes: list[int] = []  # one per recipient of a delta codeUpdate

    def send(self, sids: Iterable[str], event: str, *args: Any, replaces: Any = None) -> None:
        recipients = list(sids)
        if not recipients:
            return
        size = len(orjson.dumps([event, *args])) + 2  # "42": Engine.IO message, Socket.IO event
        if event == "codeUpdate":
            delta = bool(args) and "changes" in args[0]
            (self.delta_bytes if delta else self.full_bytes).extend([size] * len(recipients))
        self.out.append((recipients, event, args[0] if args else None))

    def broadcast(self, group: str, event: str, *args: Any, skip: str | None = None) -> None:
        self.send([sid for sid in self.groups.get(group, []) if sid != skip], event, *args)

    def probe(self, sid: str) -> int | None:
        self.probes[sid] += 1
        self.out.append(([sid], "ping", None))
        return self.probes[sid]

    def answered(self, sid: str) -> int | None:
        return self.answers[sid]

    def enter(self, sid: str, group: str) -> None:
        self.groups.setdefault(group, []).append(sid)

    def leave(self, sid: str, group: str) -> None:
        if sid in self.groups.get(group, []):
            self.groups[group].remove(sid)


# -- the clients ---------------------------------------------------------------------------


@dataclass
class Client:
    """A typist at the end of a link: `latency` each way (each message 0.5 to 1.5 times it),
    FIFO both ways. Kinds: text (the unchanged editor: whole texts, no baseVersion, every
    update replaces its text), versioned (whole texts, baseVersion = the last update it
    applied), delta (ot.js-like: changes on baseVersion, one in flight, a buffer)."""

    sid: str
    kind: str
    clock: Callable[[], float]
    latency: float
    rng: random.Random
    text: str
    version: int
    cursor: int
    ot: Any = None
    next_key: float = 0.0
    outbox: deque[tuple[float, dict[str, Any] | None]] = field(default_factory=deque)
    inbox: deque[tuple[float, str, Any]] = field(default_factory=deque)
    sent_at: dict[int, float] = field(default_factory=dict)
    lag: dict[int, float] = field(default_factory=dict)
    # delta clients (the OtClient of tests/test_merge_clients.py)
    server_text: str = ""
    caret: int | None = None
    outstanding: Any = None
    buffer: Any = None
    outstanding_caret: int | None = None
    buffer_caret: int | None = None

    def __post_init__(self) -> None:
        self.server_text = self.text

    def _arrival(self, queue: deque[Any]) -> float:
        """When a message sent now arrives: what is sent at one moment travels together."""
        now = self.clock()
        if self.sent_at.get(id(queue)) != now:
            self.sent_at[id(queue)] = now
            self.lag[id(queue)] = self.latency * self.rng.uniform(0.5, 1.5)
        at = now + self.lag[id(queue)]
        return max(at, queue[-1][0]) if queue else at

    def deliver(self, event: str, data: Any) -> None:
        self.inbox.append((self._arrival(self.inbox), event, data))

    def send(self, change: dict[str, Any] | None) -> None:
        self.outbox.append((self._arrival(self.outbox), change))

    def keystroke(self) -> None:
        """Type one character at its cursor, or (one in ten) delete the one before it."""
        text = self.text
        at = min(self.cursor, len(text))
        if at > 0 and self.rng.random() < 0.1:
            new, removed, typed = text[: at - 1] + text[at:], text[at - 1], ""
            self.cursor = at - 1
        else:
            typed = self.rng.choice(ALPHABET)
            new, removed = text[:at] + typed + text[at:], ""
            self.cursor = at + 1
        self.text = new
        if self.kind == "text":
            self.send({"code": new})
        elif self.kind == "versioned":
            self.send({"code": new, "baseVersion": self.version})
        else:
            self._typed(self._op(at - len(removed), typed, removed))

    def _op(self, at: int, typed: str, removed: str) -> Any:
        out = self.ot.Builder()
        out.retain(at)
        out.insert(typed)
        out.delete(removed)
        return out.build()

    def receive(self) -> None:
        _, event, data = self.inbox.popleft()
        if event == "ping":
            self.send(None)  # the PONG
        elif event in ("codeUpdate", "receiveCodeState"):
            self.update(data)

    def update(self, data: dict[str, Any]) -> None:
        if self.kind == "text":
            self.text = data["code"]
        elif self.kind == "versioned":
            if data["version"] > self.version:
                self.text, self.version = data["code"], data["version"]
        else:
            self._delta_update(data)

    # -- delta clients -------------------------------------------------------------------

    def _typed(self, op: Any) -> None:
        if self.outstanding is None:
            self._send_delta(op, self.caret)
        elif self.buffer is None:
            self.buffer = op
            self.buffer_caret = self.ot.last_insertion_end(self.outstanding)
        else:
            self.buffer = self.ot.compose(self.buffer, op)

    def _send_delta(self, op: Any, caret: int | None) -> None:
        self.outstanding, self.outstanding_caret = op, caret
        self.send({"changes": op_to_edits(self.ot, op), "baseVersion": self.version})

    def _delta_update(self, data: dict[str, Any]) -> None:
        ot = self.ot
        if "changes" not in data:  # a whole text: nothing in flight can be kept
            self.text = self.server_text = data["code"]
            self.version = data["version"]
            return
        remote = edits_to_op(ot, data["changes"], self.server_text)
        self.server_text = ot.apply(remote, self.server_text)
        self.version = data["version"]
        if data["userId"] == self.sid:  # its own change: acknowledged
            self.caret = ot.last_insertion_end(remote)
            buffer, caret = self.buffer, self.buffer_caret
            self.outstanding = self.buffer = None
            if buffer is not None:
                self._send_delta(buffer, caret)
            return
        self.caret = ot.caret_after(remote, self.caret)
        if self.outstanding is not None:
            caret = self.outstanding_caret
            self.outstanding_caret = ot.caret_after(remote, caret)
            remote, self.outstanding = ot.transform(remote, self.outstanding, other_first_at=caret)
        if self.buffer is not None:
            caret = self.buffer_caret
            self.buffer_caret = ot.caret_after(remote, caret)
            remote, self.buffer = ot.transform(remote, self.buffer, other_first_at=caret)
        self.text = ot.apply(remote, self.text)
        self.cursor = ot.caret_after(remote, self.cursor) or min(self.cursor, len(self.text))


def op_to_edits(ot: Any, op: Any) -> list[dict[str, Any]]:
    """`{from, to, insert}` changes of an op (the texts here are ASCII: code point = unit)."""
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


def edits_to_op(ot: Any, edits: list[dict[str, Any]], text: str) -> Any:
    out, at = ot.Builder(), 0
    for edit in edits:
        out.retain(edit["from"] - at)
        out.insert(edit["insert"])
        out.delete(text[edit["from"] : edit["to"]])
        at = edit["to"]
    return out.build()


# -- the simulation ------------------------------------------------------------------------


@dataclass
class Samples:
    """Nanoseconds per timed call: CPU time of the thread (what the server spends; immune to
    other processes taking the core) and wall time."""

    changes: list[int] = field(default_factory=list)
    changes_wall: list[int] = field(default_factory=list)
    rest_held: list[int] = field(default_factory=list)
    rest_stale: list[int] = field(default_factory=list)
    merged: int = 0
    rest_noop_violations: int = 0


class Timer:
    """Times one call: CPU time of this thread and wall time, optionally under cProfile."""

    def __init__(self, profiler: cProfile.Profile | None) -> None:
        self.profiler = profiler
        self.cpu = self.wall = 0

    def __enter__(self) -> Timer:
        if self.profiler is not None:
            self.profiler.enable()
        self.wall = time.perf_counter_ns()
        self.cpu = time.thread_time_ns()
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu = time.thread_time_ns() - self.cpu
        self.wall = time.perf_counter_ns() - self.wall
        if self.profiler is not None:
            self.profiler.disable()


class Simulation:
    def __init__(
        self, api: Api, scenario: Scenario, text: str, seed: int, data: Path, stale_seconds: float
    ) -> None:
        self.api = api
        self.stale_seconds = stale_seconds
        self.scenario = scenario
        self.text = text
        self.now = 0.0
        self.rng = random.Random(seed)
        self.notifier = Notifier()
        settings = api.Settings(
            data_dir=data,
            save_debounce_seconds=3600,
            save_max_delay_seconds=3600,
            cors_origins="*",
        )
        self.store = MemoryStore()
        writer = api.DebouncedWriter(self.store, debounce=3600, max_delay=3600, retry_max=1)
        extra = {"monotonic": self.clock} if api.rooms_monotonic else {}
        self.rooms = api.Rooms(self.store, writer, settings, self.notifier, **extra)
        self.editing = api.Editing(self.rooms, self.notifier, settings)
        self.kinds = [scenario.subject, *scenario.others]
        self.clients: list[Client] = []
        self.by_sid: dict[str, Client] = {}
        self.samples = Samples()
        self.timing = False
        self.profiler: cProfile.Profile | None = None
        self.snapshots: deque[tuple[float, str]] = deque()  # (when, room text), newest last
        self.rest_due = REST_EVERY

    def clock(self) -> float:
        return self.now

    @property
    def room(self) -> Any:
        return self.rooms.rooms[ROOM]

    async def start(self) -> None:
        api = self.api
        room = await self.rooms.open(ROOM, create=True)
        if not api.rooms_monotonic:  # an older tree's history reads the real clock
            for doc in room.docs.values():
                doc.history._clock = self.clock
        if api.replace_merge:
            await self.editing.replace_text(room, room.main, self.text, None, merge=False)
        else:
            await self.editing.replace_text(room, room.main, self.text, None)
        n = len(self.kinds)
        for i, kind in enumerate(self.kinds):
            if kind == "delta" and not api.deltas:
                raise SystemExit(f"{api.app_file}: this tree has no deltas")
            sid = f"c{i}"
            latency = self.rng.uniform(0.025, 0.075)
            args: list[Any] = [sid, ROOM, sid, None, f"10.0.0.{i}"]
            if api.join_round_trip:
                args.append(2 * latency)
            await self.rooms.join(*args)
            if kind == "delta":
                room.members[sid].deltas = True
            client = Client(
                sid,
                kind,
                self.clock,
                latency,
                random.Random(self.rng.random()),
                room.code,
                room.version,
                cursor=len(room.code) * (2 * i + 1) // (2 * n),
                ot=api.ot,
                next_key=self.rng.uniform(0, TYPING_INTERVAL),
            )
            self.clients.append(client)
            self.by_sid[sid] = client
        self.notifier.out.clear()  # presence events
        self.snapshots.append((self.now, room.code))

    def _dispatch(self) -> None:
        """Hand what the server emitted to the clients' links, in order."""
        for sids, event, data in self.notifier.out:
            for sid in sids:
                self.by_sid[sid].deliver(event, data)
        self.notifier.out.clear()

    def _timed(self, client: Client) -> bool:
        return self.timing and client.kind == self.scenario.subject

    async def to_server(self, client: Client) -> None:
        _, change = client.outbox.popleft()
        if change is None:
            self.notifier.answers[client.sid] += 1
            return
        kwargs: dict[str, Any] = {}
        if "changes" in change:
            kwargs["changes"] = [self.api.TextEdit.model_validate(c) for c in change["changes"]]
        timed = self._timed(client)
        editing, main = self.editing, self.api.main
        with Timer(self.profiler if timed else None) as timer:
            answer = await editing.change_text(
                client.sid, ROOM, main, change.get("code"), change.get("baseVersion"), **kwargs
            )
        self._dispatch()
        self.snapshots.append((self.now, self.room.code))
        while self.snapshots[0][0] < self.now - self.stale_seconds - 1:
            self.snapshots.popleft()
        if timed:
            self.samples.changes.append(timer.cpu)
            self.samples.changes_wall.append(timer.wall)
            self.samples.merged += bool(answer.merged)
            if self.scenario.rest:
                self.rest_due -= 1
                if self.rest_due == 0:
                    self.rest_due = REST_EVERY
                    await self.autosave()

    def _text_of(self, seconds_ago: float) -> str:
        """The room text as it was `seconds_ago` (the newest snapshot not after that)."""
        when = self.now - seconds_ago
        found = self.snapshots[0][1]
        for at, text in self.snapshots:
            if at > when:
                break
            found = text
        return found

    async def autosave(self) -> None:
        """The unchanged editor's auto-save over REST: a text the room held, then a stale one."""
        room, editing = self.room, self.editing
        held = self._text_of(self.stale_seconds)
        version = room.version
        with Timer(self.profiler) as timer:
            changed = await editing.replace_text(room, room.main, held, None)
        self.samples.rest_held.append(timer.cpu)
        if changed != (False, False) or room.version != version:
            self.samples.rest_noop_violations += 1
        self._dispatch()
        at = self.rng.randrange(len(held) + 1)
        stale = held[:at] + "#" + held[at:]  # a keystroke the room never got
        with Timer(self.profiler) as timer:
            await editing.replace_text(room, room.main, stale, None)
        self.samples.rest_stale.append(timer.cpu)
        self._dispatch()
        self.snapshots.append((self.now, room.code))

    async def run(self, until: Callable[[], bool], typing: bool = True) -> None:
        """Process keystrokes and deliveries in time order until `until()` (without typing:
        until nothing is in flight)."""
        clients = self.clients
        while not until():
            best = math.inf
            action: tuple[int, Client] | None = None
            for client in clients:
                if client.outbox and client.outbox[0][0] < best:
                    best, action = client.outbox[0][0], (0, client)
                if client.inbox and client.inbox[0][0] < best:
                    best, action = client.inbox[0][0], (1, client)
                if typing and client.next_key < best:
                    best, action = client.next_key, (2, client)
            if action is None:
                return
            self.now = max(self.now, best)
            kind, client = action
            if kind == 0:
                await self.to_server(client)
            elif kind == 1:
                client.receive()
            else:
                client.keystroke()
                client.next_key = self.now + TYPING_INTERVAL * client.rng.uniform(0.5, 1.5)

    def converged(self) -> bool:
        code = self.room.code
        return all(client.text == code for client in self.clients)


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] / 1000


def summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": statistics.median(values) / 1000,
        "p99": percentile(values, 0.99),
        "n": len(values),
    }


def targets(args: argparse.Namespace, size: int) -> tuple[int, int]:
    """Timed keystrokes per scenario, and auto-save pairs of the rest scenario, at `size` KB."""
    if size <= 100:
        return args.changes, args.saves
    return max(100, args.changes // args.large_divisor), max(5, args.saves // args.large_divisor)


async def measure(
    api: Api, scenario: Scenario, size: int, args: argparse.Namespace
) -> dict[str, Any]:
    changes, saves = targets(args, size // 1000)
    with tempfile.TemporaryDirectory() as data:
        text = document(size, seed=1)
        sim = Simulation(api, scenario, text, args.seed, Path(data), args.stale_seconds)
        await sim.start()
        api.tune_gc()  # as the app does once started
        await sim.run(lambda: sim.now >= WARMUP_SECONDS)
        history = sim.room.main.history
        sim.notifier.full_bytes.clear()
        sim.notifier.delta_bytes.clear()
        sim.timing = True
        if args.profile:
            sim.profiler = cProfile.Profile(time.thread_time_ns, 1e-9)  # CPU time
        wall = time.perf_counter()
        if scenario.rest:
            await sim.run(lambda: len(sim.samples.rest_stale) >= saves)
        else:
            await sim.run(lambda: len(sim.samples.changes) >= changes)
        wall = time.perf_counter() - wall
        simulated = sim.now - WARMUP_SECONDS
        sim.timing = False
        kept = len(getattr(history, "_entries", ()))
        await sim.run(lambda: False, typing=False)
        result: dict[str, Any] = {
            "scenario": scenario.key,
            "size": size,
            "app": api.app_file,
            "change": summary(sim.samples.changes),
            "change_wall": summary(sim.samples.changes_wall),
            "merged": sim.samples.merged / max(1, len(sim.samples.changes)),
            "rest_held": summary(sim.samples.rest_held),
            "rest_stale": summary(sim.samples.rest_stale),
            "rest_noop_violations": sim.samples.rest_noop_violations,
            "full_bytes": statistics.mean(sim.notifier.full_bytes or [0]),
            "delta_bytes": statistics.mean(sim.notifier.delta_bytes or [0]),
            "history_versions": kept,
            "changes_per_second": len(sim.samples.changes) / simulated if simulated else 0.0,
            "converged": sim.converged(),
            "wall_seconds": wall,
        }
        if sim.profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(sim.profiler, stream=out)
            stats.strip_dirs().sort_stats("tottime").print_stats(18)
            stats.sort_stats("cumulative").print_stats(30)
            result["profile"] = out.getvalue()
            if scenario.rest:
                result["profile"] += rest_breakdown(api, sim)
        return result


def rest_breakdown(api: Api, sim: Simulation) -> str:
    """The parts of one stale auto-save's merge (TextHistory.rebase_rest), each timed alone
    (CPU time, median of 5) on the room's history as the run left it, without the profiler
    (whose overhead inflates the many small calls of compose). Each part runs with the memory
    rebase_rest holds at that point: the whole calls first, with nothing else held."""
    history = sim.room.main.history
    ot = api.ot
    if ot is None or not hasattr(history, "rebase_rest"):
        return ""
    held = sim._text_of(sim.stale_seconds)
    stale = held[: len(held) // 2] + "#" + held[len(held) // 2 :]

    def cpu(label: str, step: Callable[[], object]) -> str:
        samples = []
        for _ in range(5):
            start = time.thread_time_ns()
            step()
            samples.append(time.thread_time_ns() - start)
        return f"  {statistics.median(samples) / 1e6:10.2f}  {label}"

    kept = len(getattr(history, "_entries", ())) + 1
    lines = [
        "\nparts of a stale auto-save, each timed alone (CPU ms, median of 5):",
        cpu("TextHistory.rebase_rest(stale), whole", lambda: history.rebase_rest(stale)),
        cpu("TextHistory.rebase_rest(held), whole", lambda: history.rebase_rest(held)),
        cpu(
            f"rebuild the {kept} kept texts, held in a list (history_bases: apply(invert(op)))",
            lambda: list(history.history_bases(history.oldest_version)),
        ),
    ]
    bases = list(history.history_bases(history.oldest_version))
    lines.append(
        cpu(
            "edit_cost(kept text, sent) for each of them (rebase_from's loop)",
            lambda: [ot.edit_cost(base.text, stale) for base in bases],
        )
    )
    best = min(bases, key=lambda base: ot.edit_cost(base.text, stale))
    chain, edit = best.chain(), ot.diff(best.text, stale)
    lines.append(cpu("diff(closest text, sent)", lambda: ot.diff(best.text, stale)))
    lines.append(
        cpu(
            f"transform_past over the {len(chain)} ops since (compose_all of the bridge)",
            lambda: ot.transform_past(edit, chain),
        )
    )
    bases.clear()  # rebase_rest below starts with nothing else held
    tracemalloc.start()
    history.rebase_rest(stale)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    lines.append(f"  peak memory allocated by one rebase_rest(stale): {peak / 1e6:,.0f} MB")
    return "\n".join(lines) + "\n"


def worker(args: argparse.Namespace) -> None:
    """Measure the scenarios on the `app` this interpreter imports; one JSON line each."""
    api = Api()
    for key in args.only:
        scenario = BY_KEY[key]
        if scenario.subject == "delta" and not api.deltas:
            continue
        for size in args.sizes:
            result = asyncio.run(measure(api, scenario, size * 1000, args))
            print(json.dumps(result), flush=True)


# -- the driver ------------------------------------------------------------------------------


def run_tree(root: Path, args: argparse.Namespace, keys: list[str]) -> list[dict[str, Any]]:
    """Run the worker in a fresh interpreter whose `app` is the one under `root`."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--sizes", ",".join(map(str, args.sizes)),
        "--only", ",".join(keys),
        "--changes", str(args.changes),
        "--large-divisor", str(args.large_divisor),
        "--saves", str(args.saves),
        "--seed", str(args.seed),
        "--stale-seconds", str(args.stale_seconds),
    ]  # fmt: skip
    if args.profile:
        command.append("--profile")
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the worker for {root} failed")
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for result in results:
        if not Path(result["app"]).resolve().is_relative_to(root.resolve()):
            raise SystemExit(f"{root}: the worker imported {result['app']}")
    return results


def describe(root: Path) -> str:
    """The commit checked out at `root`, and whether its app/ has uncommitted changes."""

    def git(*command: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *command], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else "?"

    dirty = git("status", "--porcelain", "--", "app")
    return f"{root} at {git('rev-parse', '--short', 'HEAD')}" + (
        " + uncommitted changes in app/" if dirty else ""
    )


def cell(stats: dict[str, float]) -> str:
    if not stats:
        return "-"
    return f"{stats['median']:,.0f} / {stats['p99']:,.0f}"


def median_of(runs: list[dict[str, Any]], name: str) -> dict[str, float]:
    """The median of each statistic over the rounds."""
    values = [run[name] for run in runs if run.get(name)]
    if not values:
        return {}
    return {k: statistics.median(v[k] for v in values) for k in ("median", "p99", "n")}


def report(args: argparse.Namespace, new: list[dict[str, Any]], base: list[dict[str, Any]]) -> None:
    sizes = args.sizes
    width = 46

    def runs(results: list[dict[str, Any]], key: str, size: int) -> list[dict[str, Any]]:
        return [r for r in results if r["scenario"] == key and r["size"] == size * 1000]

    def row(label: str, cells: Iterable[str]) -> None:
        print(f"{label:<{width}}" + "".join(f"{c:>20}" for c in cells))

    def times(label: str, results: list[dict[str, Any]], key: str, name: str) -> None:
        row(label, (cell(median_of(runs(results, key, s), name)) for s in sizes))

    counts = "; ".join(f"{s} KB: {targets(args, s)[0]} keystrokes, {targets(args, s)[1]} saves"
                       for s in sizes)  # fmt: skip
    print("\nserver CPU time per change, microseconds, median / p99"
          + (" (under cProfile: inflated)" if args.profile else ""))  # fmt: skip
    print(f"(timed per scenario, {counts}; {args.rounds} round(s), medians of rounds)")
    row("scenario", (f"{s} KB" for s in sizes))
    for key in args.only:
        scenario = BY_KEY[key]
        if scenario.rest:
            times("4 REST auto-save of a held text (no-op)", new, key, "rest_held")
            times("4 REST auto-save of a stale text (merged)", new, key, "rest_stale")
            times("  the 4 typists' keystrokes meanwhile", new, key, "change")
        else:
            times(scenario.label, new, key, "change")
    keys = [key for key in args.only if BY_KEY[key].baseline]
    if base:
        print("\nbaseline, the same clients")
        for key in keys:
            times(BY_KEY[key].label, base, key, "change")
        print("\nratio new / baseline: median, p99")
        for key in keys:
            cells = []
            for s in sizes:
                a, b = (
                    median_of(runs(new, key, s), "change"),
                    median_of(runs(base, key, s), "change"),
                )
                cells.append(f"{a['median'] / b['median']:.2f}x, {a['p99'] / b['p99']:.2f}x"
                             if a and b else "-")  # fmt: skip
            row(BY_KEY[key].label, cells)
    print("\ncodeUpdate bytes per recipient")
    for label, key, name in (
        ("whole text (scenario 1, 3 others)", "text-k3", "full_bytes"),
        ("delta (scenario 3, 3 others)", "delta-k3", "delta_bytes"),
    ):
        values = [[r[name] for r in runs(new, key, s) if r[name]] for s in sizes]
        row(label, (f"{statistics.median(v):,.0f}" if v else "-" for v in values))
    print("\nchecks")
    bad = 0
    for tree, results in (("new", new), ("baseline", base)):
        for result in results:
            notes = []
            if not result["converged"]:
                notes.append("the replicas did not converge")
            if result["rest_noop_violations"]:
                notes.append(f"{result['rest_noop_violations']} held auto-saves changed the text")
            bad += bool(notes)
            if notes or args.verbose:
                print(f"  {tree} {result['scenario']} {result['size'] // 1000} KB: wall "
                      f"{cell(result['change_wall'])} us, {result['merged']:.0%} merged, history "
                      f"{result['history_versions']} versions, {result['changes_per_second']:.0f}"
                      f" timed changes/s simulated, {result['wall_seconds']:.1f} s: "
                      + ("; ".join(notes) or "ok"))  # fmt: skip
    if not bad:
        print("  every room converged; every auto-save of a held text changed nothing")
    for result in new + base:
        if "profile" in result:
            print(f"\n== cProfile (CPU time) of the timed calls: {result['scenario']}, "
                  f"{result['size'] // 1000} KB, {result['app']}")  # fmt: skip
            print(result["profile"])


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--sizes", default="10,100,500", help="document sizes, KB (1000 characters)")
    default = ",".join(s.key for s in SCENARIOS if s.default)
    add("--only", default=default, help=f"scenarios, comma-separated, of {', '.join(BY_KEY)}")
    add("--changes", type=int, default=600, help="timed keystrokes per scenario up to 100 KB")
    add("--saves", type=int, default=20, help="timed auto-save pairs (rest) up to 100 KB")
    add("--large-divisor", type=int, default=2, help="above 100 KB: --changes, --saves / this")
    add("--rounds", type=int, default=1, help="new and baseline alternate, medians of rounds")
    add("--tree", type=Path, default=ROOT, help="the checkout measured (default: this one)")
    add("--baseline", type=Path, help="a checkout of the commit to compare with")
    add("--seed", type=int, default=7)
    add("--stale-seconds", type=float, default=2.0, help="rest: age of the auto-saved texts")
    add("--profile", action="store_true", help="cProfile (CPU time) of the timed calls")
    add("--verbose", action="store_true", help="per-scenario checks and wall times")
    add("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.only = [k for k in args.only.split(",") if k]
    unknown = [k for k in args.only if k not in BY_KEY]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(BY_KEY)}")
    return args


def main() -> None:
    args = parse()
    if args.worker:
        worker(args)
        return
    base_keys = [k for k in args.only if BY_KEY[k].baseline]
    new: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    started = time.perf_counter()
    for round_ in range(args.rounds):
        for size in args.sizes:  # new and baseline alternate, size by size
            one = argparse.Namespace(**{**vars(args), "sizes": [size]})
            print(f"round {round_ + 1}, {size} KB: new", file=sys.stderr, flush=True)
            new += run_tree(args.tree, one, args.only)
            if args.baseline is not None and base_keys:
                print(f"round {round_ + 1}, {size} KB: baseline", file=sys.stderr, flush=True)
                base += run_tree(args.baseline, one, base_keys)
    print(f"measured: {describe(args.tree)}")
    if args.baseline is not None:
        print(f"baseline: {describe(args.baseline)}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    report(args, new, base)


if __name__ == "__main__":
    main()
