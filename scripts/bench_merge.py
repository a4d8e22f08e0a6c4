"""Merge cost per code change (TextHistory.rebase + commit), next to what any relay pays.

For a 2 KB and a 100 KB document, median microseconds per change of:
  merge          a change whose baseVersion is one version behind (another user's
                 keystroke came first): diff, transform, apply, record
  lww keystroke  a change without baseVersion (the original client): the sent text
                 replaces the room's; the history still records its diff
  lww 2 edits    the same, with edits at both ends of the text (what the load generator
                 of scripts/bench.py sends: a header at the top, a cut at the end)
  lww unrelated  a whole new text (paste over everything; 5 runs)
  relay          what a plain relay does with the same change at the least: decode the
                 codeChange packet and encode the codeUpdate packet (orjson), no merge

    python scripts/bench_merge.py
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.merge import TextHistory

RUNS = 300


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


def keystroke(text: str, rng: random.Random) -> str:
    """The text with one character typed at a random place."""
    at = rng.randrange(len(text) + 1)
    return text[:at] + "x" + text[at:]


def two_edits(text: str, rng: random.Random) -> str:
    """A new header line at the top and the last few characters changed."""
    header = f"/*lb:run:1:0:{rng.randrange(10**6)}:{rng.random() * 1e6:.3f}:1*/\n"
    cut = rng.randrange(1, 8)
    return header + text[text.index("\n") + 1 : len(text) - cut] + "y" * cut


def median_us(prepare: Callable[[], Callable[[], None]], runs: int) -> float:
    """Median time of the callables returned by prepare() (preparation is not timed)."""
    samples = []
    for _ in range(runs):
        step = prepare()
        start = time.perf_counter_ns()
        step()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def bench_merge(text: str, runs: int) -> float:
    """A change whose base is one version behind: another user's keystroke came first."""
    history = TextHistory(text, 0)
    rng = random.Random(2)

    def prepare() -> Callable[[], None]:
        base, base_text = history.version, history.text
        other = history.rebase("bob", keystroke(base_text, rng), base)
        history.commit(other, history.version + 1)
        sent = keystroke(base_text, rng)

        def step() -> None:
            rebased = history.rebase("alice", sent, base)
            history.commit(rebased, history.version + 1)
            assert rebased.merged

        return step

    return median_us(prepare, runs)


def bench_lww(text: str, runs: int, replace: Callable[[str, random.Random], str]) -> float:
    """A change without baseVersion: the sent text replaces the room text."""
    history = TextHistory(text, 0)
    rng = random.Random(3)

    def prepare() -> Callable[[], None]:
        sent = replace(history.text, rng)

        def step() -> None:
            rebased = history.rebase("legacy", sent, None)
            history.commit(rebased, history.version + 1)

        return step

    return median_us(prepare, runs)


def bench_relay(text: str, runs: int) -> float:
    """Decode the incoming codeChange packet, encode the outgoing codeUpdate packet."""
    rng = random.Random(4)

    def prepare() -> Callable[[], None]:
        incoming = orjson.dumps(
            ["codeChange", {"roomId": "room-1", "code": keystroke(text, rng), "language": "js"}]
        )

        def step() -> None:
            _, change = orjson.loads(incoming)
            update = {"code": change["code"], "language": change["language"], "userId": "sid",
                      "userName": "name", "timestamp": 1700000000000}
            orjson.dumps(["codeUpdate", update])

        return step

    return median_us(prepare, runs)


def main() -> None:
    rows = []
    for size in (2_000, 100_000):
        text = document(size, seed=1)
        unrelated = [document(size, seed) for seed in range(10, 14)]
        rows.append((
            size,
            bench_merge(text, RUNS),
            bench_lww(text, RUNS, keystroke),
            bench_lww(text, RUNS, two_edits),
            bench_lww(text, 5, lambda _, rng, u=unrelated: rng.choice(u)),
            bench_relay(text, RUNS),
        ))
    print("median us per change  doc size:   merge  lww keystroke  lww 2 edits  "
          "lww unrelated   relay")
    for size, merge, lww, two, unrelated_us, relay in rows:
        print(f"{size:>33} B {merge:9.1f} {lww:14.1f} {two:12.1f} {unrelated_us:14.1f} "
              f"{relay:7.1f}")


if __name__ == "__main__":
    main()
