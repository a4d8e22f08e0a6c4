"""Time TextHistory.rebase + commit on a 100 KB document (median microseconds per change)."""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.merge import TextHistory

SIZE = 100_000
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


def main() -> None:
    text = document(SIZE, seed=1)
    unrelated = [document(SIZE, seed) for seed in range(10, 14)]
    print(f"{len(text)}-character document, median per rebase+commit")
    print(f"  merge, one concurrent change in between: {bench_merge(text, RUNS):10.1f} us")
    print(f"  last-writer-wins, one keystroke:         {bench_lww(text, RUNS, keystroke):10.1f} us")
    rewrite = bench_lww(text, 5, lambda _, rng: rng.choice(unrelated))
    print(f"  last-writer-wins, unrelated text:        {rewrite:10.1f} us (5 runs)")


if __name__ == "__main__":
    main()
