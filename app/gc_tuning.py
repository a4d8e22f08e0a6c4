"""Garbage-collector settings for a long-running server (measured in docs/benchmarks.md).

CPython's cyclic collector, left at its defaults (700, 10, 10), runs a young collection
every few hundred allocations and a full one whenever the heap has grown by a quarter; a
full collection walks every live object (a few hundred thousand with a thousand clients)
and stops the event loop for 100-300 ms, which is what set the server's p99 latency under
load. Two changes, both applied once the app is built:

- `gc.freeze()` moves everything that exists at start-up (modules, classes, pydantic
  schemas: ~60,000 objects) to the permanent generation, which no collection walks again;
- higher thresholds make young collections rarer. The server makes almost no cyclic
  garbage in steady state (reference counting frees its messages), so collecting less
  often costs no memory; objects that are garbage only through a cycle are still
  collected, later.
"""

from __future__ import annotations

import gc

from aiohttp import web

# (young, middle, old): a young collection after THRESHOLDS[0] net allocations of tracked
# objects, a middle one every THRESHOLDS[1] young ones, a full one every THRESHOLDS[2]
# middle ones (and only once the heap grew by 25% since the last).
THRESHOLDS = (50_000, 10, 1000)


def tune_now() -> None:
    """Collect what start-up left behind, freeze the survivors, raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def tune_gc(app: web.Application) -> None:
    """Apply the settings when `app` starts, after every module and object it needs exists."""

    async def on_startup(_: web.Application) -> None:
        tune_now()

    app.on_startup.append(on_startup)
