"""Two unchanged editors typing at one spot: how many keys the merge keeps, loses or doubles.

The unchanged editor (no baseVersion, no deltas) replaces its text with every codeUpdate
and puts its cursor back at the start, so two people typing at once type at one spot. Each
simulated editor types one letter over and over (alice "Q", bob "Z": a key of one then
reads as well as a key of the other, the hardest case for inferring what a change was typed
on) at the start of what it shows, and handles what it received one message at a time (a
text replaces what it shows; a probe, an Engine.IO PING, is answered), so a key may come
between a text and the probe behind it, as in a browser. Sending is instant, receiving
waits for the editor's turn. The server is the real domain in-process (Rooms, Editing,
the merge) over bench_merge.py's in-memory store and notifier; no network, no timing: only
the order of events.

Interleavings (--mode):
  browser  each step one editor types a key, then each editor handles 1-4 of its pending
           messages with probability 0.7 (updates arrive between keys, sometimes late)
  any      each step is "type" or "handle one message" for a random editor

Printed: runs, keys typed, keys lost, keys doubled, runs with a lost or doubled key, runs
whose editors did not end with the room's text. Deterministic for a given --seed. To
compare with another commit, run the script with that checkout first on PYTHONPATH:

    python scripts/one_spot.py --runs 400 --seed 7
    git worktree add --detach /tmp/one-spot-base <commit>
    PYTHONPATH=/tmp/one-spot-base python scripts/one_spot.py --runs 400 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench_merge import MemoryStore, Notifier

from app.config import Settings
from app.domain.editing import Editing
from app.domain.rooms import Rooms
from app.domain.writer import DebouncedWriter
from app.storage.records import MAIN_FILE_ID

ROOM = "ONESPOT"
KEYS = {"alice": "Q", "bob": "Z"}


class Inboxes(Notifier):
    """bench_merge's notifier, read as one inbox per connection (a probe: ("ping", None))."""

    def inbox(self, sid: str) -> list[str | dict[str, Any]]:
        """What it was sent, in order: each event's payload, "ping" for a probe."""
        return [
            data if event != "ping" else "ping" for sids, event, data in self.out if sid in sids
        ]


def interleaving(rng: random.Random, mode: str) -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    for _ in range(rng.randint(4, 30)):
        if mode == "any":
            steps.append((rng.choice(["type", "handle"]), rng.choice(list(KEYS))))
            continue
        steps.append(("type", rng.choice(list(KEYS))))
        for sid in KEYS:
            if rng.random() < 0.7:
                steps += [("handle", sid)] * rng.randint(1, 4)
    return steps


async def run(steps: list[tuple[str, str]], data: Path) -> tuple[int, int, int, bool]:
    """Keys typed, lost, doubled; whether both editors end with the room's text."""
    now = [0.0]
    settings = Settings(data_dir=data, save_debounce_seconds=3600, save_max_delay_seconds=3600)
    notifier = Inboxes()
    store = MemoryStore()
    writer = DebouncedWriter(store, debounce=3600, max_delay=3600, retry_max=1)  # type: ignore[arg-type]
    rooms = Rooms(store, writer, settings, notifier, monotonic=lambda: now[0])  # type: ignore[arg-type]
    editing = Editing(rooms, notifier, settings)
    try:
        room = await rooms.open(ROOM, create=True)
        await editing.replace_text(room, room.main, "\n", None, merge=False)
        shown: dict[str, str] = {}
        read: Counter[str] = Counter()  # what each has handled of its inbox
        typed: Counter[str] = Counter()
        for n, sid in enumerate(KEYS):
            await rooms.join(sid, ROOM, sid, None, f"10.0.0.{n + 1}")
            read[sid] = len(notifier.inbox(sid))  # presence: not read
            shown[sid] = room.code

        def handle(sid: str) -> None:
            inbox = notifier.inbox(sid)
            data = inbox[read[sid]]
            read[sid] += 1
            if data == "ping":  # answered in order: its number is the count of probes so far
                notifier.answers[sid] = inbox[: read[sid]].count("ping")
            elif isinstance(data, dict) and "code" in data:  # a codeUpdate
                shown[sid] = data["code"]

        for step, sid in steps:
            if step == "type":
                shown[sid] = KEYS[sid] + shown[sid]
                typed[KEYS[sid]] += 1
                now[0] += 0.01
                await editing.change_text(sid, ROOM, MAIN_FILE_ID, shown[sid], None)
            elif read[sid] < len(notifier.inbox(sid)):
                handle(sid)
        for sid in KEYS:
            while read[sid] < len(notifier.inbox(sid)):
                handle(sid)
        kept = Counter(room.code)
        lost = sum(max(0, typed[k] - kept[k]) for k in KEYS.values())
        doubled = sum(max(0, kept[k] - typed[k]) for k in KEYS.values())
        converged = all(text == room.code for text in shown.values())
        return sum(typed.values()), lost, doubled, converged
    finally:
        rooms.close()
        await writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--mode", choices=["browser", "any"], action="append")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # "closing with unsaved changes": the store is a dict
    for mode in args.mode or ["browser", "any"]:
        rng = random.Random(args.seed)
        total: Counter[str] = Counter()
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                typed, lost, doubled, converged = await run(interleaving(rng, mode), Path(tmp))
                total.update(keys=typed, lost=lost, doubled=doubled)
                total.update(bad_runs=int(lost + doubled > 0), diverged=int(not converged))
        keys = total["keys"]
        print(
            f"{mode:8} runs {args.runs}  keys {keys}  lost {total['lost']} "
            f"({100 * total['lost'] / keys:.1f}%)  doubled {total['doubled']} "
            f"({100 * total['doubled'] / keys:.1f}%)  runs with a lost or doubled key "
            f"{total['bad_runs']}  not converged {total['diverged']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
