"""Where the memory of an idle connection goes.

Starts the app in this process (embedded SQLite in a temporary directory, uvloop as
`python -m app` uses it), connects `--conns` official `socket.io-client` 4.8 clients from
one Node process (websocket only, the same client as scripts/loadbench/gen.mjs), then
prints the server's RSS growth per connection and the Python allocations tracemalloc
attributes to them, per connection, by the line that allocated them (`--group file`: by
file). Python allocations are not all of RSS: the rest is the interpreter's allocator
slack, C libraries' own buffers (uvloop, the HTTP parser) and the heap's fragmentation.

    cd scripts/loadbench && npm ci      # once
    python scripts/conn_memory.py --conns 2000
    python scripts/conn_memory.py --conns 2000 --no-trace   # RSS only, no tracing overhead
    python scripts/conn_memory.py --conns 1000 --join       # clients also join rooms of 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADBENCH = ROOT / "scripts" / "loadbench"
sys.path.insert(0, str(ROOT))

CLIENTS_JS = r"""
import { io } from "socket.io-client";
const [url, n, join] = [process.argv[1], Number(process.argv[2]), process.argv[3] === "1"];
const sockets = [];
let connected = 0;
for (let i = 0; i < n; i += 1) {
  const s = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
  s.on("connect", () => {
    connected += 1;
    if (join) s.emit("joinRoom", { roomId: `mem-${Math.floor(i / 5)}`, userName: `u${i}` });
    if (connected === n) console.log("connected");
  });
  s.on("connect_error", (e) => { console.error("connect_error", e.message); process.exit(1); });
  sockets.push(s);
  if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
}
process.stdin.on("data", () => {});
process.stdin.on("end", () => { for (const s of sockets) s.close(); process.exit(0); });
"""


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def settle() -> None:
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.5)


async def measure(args: argparse.Namespace) -> dict[str, object]:
    from aiohttp import web

    from app.config import Settings
    from app.gc_tuning import tune_gc
    from app.main import create_app

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            port=0,
            data_dir=data_dir,
            log_level="warning",
            max_connections_per_address=100_000,
            new_connections_per_minute=1_000_000,
            max_clients_per_room=1000,
        )
        app = create_app(settings)
        tune_gc(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        # one client connected and gone first: lazily made per-server objects are not
        # counted as per-connection
        await clients(url, 5, args.join, hold=0.5)
        await settle()
        if args.trace:
            tracemalloc.start(args.frames)
        before_rss = rss_kb()
        before = tracemalloc.take_snapshot() if args.trace else None
        node = await clients(url, args.conns, args.join, hold=None)
        await settle()
        after_rss = rss_kb()
        after = tracemalloc.take_snapshot() if args.trace else None
        assert node.stdin is not None
        node.stdin.close()
        await node.wait()
        await runner.cleanup()
    result: dict[str, object] = {
        "conns": args.conns,
        "rss_kb_per_conn": round((after_rss - before_rss) / args.conns, 2),
    }
    if before is not None and after is not None:
        key = "filename" if args.group == "file" else "lineno"
        stats = after.compare_to(before, key)
        traced = sum(s.size_diff for s in stats)
        result["traced_kb_per_conn"] = round(traced / 1024 / args.conns, 2)
        result["top"] = [
            {
                "kb_per_conn": round(s.size_diff / 1024 / args.conns, 3),
                "blocks_per_conn": round(s.count_diff / args.conns, 2),
                "where": _where(s.traceback),
            }
            for s in stats[: args.top]
        ]
    return result


def _where(traceback: tracemalloc.Traceback) -> str:
    frame = traceback[0]
    name = frame.filename
    for marker in ("site-packages/", "lib/python3"):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    else:
        name = os.path.relpath(name, ROOT)
    return f"{name}:{frame.lineno}"


async def clients(url: str, n: int, join: bool, hold: float | None) -> asyncio.subprocess.Process:
    node = await asyncio.create_subprocess_exec(
        "node",
        "--input-type=module",
        "-e",
        CLIENTS_JS,
        url,
        str(n),
        "1" if join else "0",
        cwd=LOADBENCH,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert node.stdout is not None and node.stdin is not None
    line = await asyncio.wait_for(node.stdout.readline(), timeout=120)
    if line.strip() != b"connected":
        raise SystemExit(f"clients did not connect: {line!r}")
    if hold is not None:
        await asyncio.sleep(hold)
        node.stdin.close()
        await node.wait()
    return node


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--join", action="store_true", help="each client joins a room of 5")
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument("--frames", type=int, default=1, help="traceback depth kept")
    parser.add_argument("--group", choices=("line", "file"), default="line")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if not (LOADBENCH / "node_modules").exists():
        raise SystemExit(f"run `npm ci` in {LOADBENCH} first")
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['conns']} idle connections: {result['rss_kb_per_conn']} KB of RSS each")
    if "top" in result:
        print(f"traced Python allocations: {result['traced_kb_per_conn']} KB each; by line:")
        for row in result["top"]:  # type: ignore[attr-defined]
            kb, blocks, where = row["kb_per_conn"], row["blocks_per_conn"], row["where"]
            print(f"  {kb:8.3f} KB {blocks:6.2f} blocks  {where}")


if __name__ == "__main__":
    main()
