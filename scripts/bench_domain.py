"""The domain's CPU per change in the load benchmark's scenario (b), without the network.

One room of five unchanged editors (whole texts, no baseVersion): the typist sends a 2 KB
text whose first line changes each time (what scripts/loadbench/gen.mjs sends), the four
readers answer each probe before the next change. Timed, in CPU time of the process: each
`Editing.change_text` of the typist, from the validated payload to the answer, with the
events encoded once each (the fake notifier of scripts/bench_merge.py) and the readers'
per-text bookkeeping (given texts, probes). Not timed: decoding, validation, throttles, the
frames and their writes, the store (in memory).

    python scripts/bench_domain.py                  # this tree
    python scripts/bench_domain.py --tree /tmp/wt   # another checkout (e.g. a worktree)
    python scripts/bench_domain.py --profile        # then cProfile's top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = 2048
READERS = 4


async def run(changes: int, warmup: int, profile: bool) -> None:
    import bench_merge as bm  # (after sys.path holds the tree measured)

    api = bm.Api()
    settings = api.Settings(
        data_dir=Path(tempfile.mkdtemp()),
        save_debounce_seconds=3600,
        save_max_delay_seconds=3600,
        cors_origins="*",
    )
    store = bm.MemoryStore()
    writer = api.DebouncedWriter(store, debounce=3600, max_delay=3600, retry_max=1)
    notifier = bm.Notifier()
    rooms = api.Rooms(store, writer, settings, notifier)
    editing = api.Editing(rooms, notifier, settings)
    await rooms.open(bm.ROOM, create=True)
    sids = [f"c{i}" for i in range(READERS + 1)]
    for i, sid in enumerate(sids):
        await rooms.join(sid, bm.ROOM, sid, None, f"10.0.0.{i}", 0.01)
    rng = random.Random(1)
    padding = "".join(rng.choice("abcdefghij (){};=\n") for _ in range(SIZE))

    async def change(k: int) -> None:
        header = f"/*lb-bench-room-0:{k}:{time.time():.3f}:1*/\n"
        code = header + padding[: SIZE - len(header)]
        await editing.change_text(sids[0], bm.ROOM, api.main, code, None)
        for sid in sids[1:]:  # every reader answers its probes before the next change
            notifier.answers[sid] = notifier.probes[sid]
        notifier.out.clear()

    for k in range(warmup):
        await change(k)
    started = time.process_time()
    for k in range(warmup, warmup + changes):
        await change(k)
    elapsed = time.process_time() - started
    print(f"{1e6 * elapsed / changes:.1f} µs of CPU per change ({READERS} readers, {SIZE} B)")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for k in range(warmup + changes, warmup + 2 * changes):
            await change(k)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(HERE.parent), help="the checkout measured")
    parser.add_argument("--changes", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sys.path[:0] = [str(HERE), args.tree]
    asyncio.run(run(args.changes, args.warmup, args.profile))


if __name__ == "__main__":
    main()
