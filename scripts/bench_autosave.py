"""What open editors' auto-saves cost the server when nobody types.

Both PrepMate editors POST `/api/sessions/:roomId/update` with their whole text about once a
second per open tab, whether it changed or not. This starts the server of each `--tree` (a
checkout; default this one) with `python -m app` on embedded SQLite, opens `--rooms` rooms
of `--tabs` joined Socket.IO clients, then has every tab auto-save the room's unchanged text
once a second for `--seconds`, and prints per tree: updates answered, the server's CPU (its
share of one core and µs per update), store writes (`codecollab_store_operation_seconds`
count of `save`) and `sessionSaved` deliveries received.

    python scripts/bench_autosave.py --rooms 40 --tabs 5 --seconds 20
    git worktree add --detach /tmp/autosave-base <commit>
    python scripts/bench_autosave.py --tree /tmp/autosave-base --tree .
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
CODE = "def main():\n    print('hello')\n" * 50  # about 1.6 KB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def saves(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    pattern = r'codecollab_store_operation_seconds_count\{operation="save",outcome="ok"\} (\S+)'
    found = re.search(pattern, text)
    return int(float(found.group(1))) if found else 0


async def measure(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="bench-autosave-")
    env = dict(
        os.environ,
        PORT=str(port),
        HOST="127.0.0.1",
        DATA_DIR=data_dir,
        METRICS_ENABLED="true",
        LOG_LEVEL="WARNING",
        REST_REQUESTS_PER_MINUTE="1000000",
        NEW_CONNECTIONS_PER_MINUTE="1000000",
        MAX_CONNECTIONS_PER_ADDRESS="100000",
    )
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", cwd=tree, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    clients: list[socketio.AsyncClient] = []
    received = {"sessionSaved": 0}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(url + "/api/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            rooms = [f"AS{i:04d}" for i in range(args.rooms)]
            for room in rooms:
                body = {"roomId": room, "creatorName": "Ann", "code": CODE, "language": "python"}
                async with http.post(url + "/api/sessions/create", json=body) as response:
                    assert response.status == 201, await response.text()
            for room in rooms:
                for tab in range(args.tabs):
                    client = socketio.AsyncClient(reconnection=False)

                    @client.on("sessionSaved")
                    def saved(_: Any) -> None:
                        received["sessionSaved"] += 1

                    await client.connect(url, transports=["websocket"])
                    await client.call("joinRoom", {"roomId": room, "userName": f"tab{tab}"})
                    clients.append(client)
            await asyncio.sleep(3.0)  # the joins' own writes (debounced 2 s)
            received["sessionSaved"] = 0
            writes_before = await saves(http, url)
            answered = 0

            async def tab(room: str) -> None:
                nonlocal answered
                await asyncio.sleep(random.random())  # tabs do not save in step
                end = time.monotonic() + args.seconds
                body = {"code": CODE, "language": "python"}
                while time.monotonic() < end:
                    async with http.post(f"{url}/api/sessions/{room}/update", json=body) as r:
                        answered += r.status == 200
                    await asyncio.sleep(1.0)

            assert server.pid is not None
            cpu_before, started = cpu_seconds(server.pid), time.monotonic()
            await asyncio.gather(*(tab(room) for room in rooms for _ in range(args.tabs)))
            cpu = cpu_seconds(server.pid) - cpu_before
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.5)
            writes = await saves(http, url) - writes_before
    finally:
        for client in clients:
            await client.disconnect()
        server.terminate()
        await server.wait()
    return {
        "updates": answered,
        "cpu_share": cpu / elapsed,
        "us_per_update": cpu / max(answered, 1) * 1e6,
        "writes": writes,
        "session_saved": received["sessionSaved"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout (repeatable)")
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--tabs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    trees = args.tree or [ROOT]
    print(f"{args.rooms} rooms x {args.tabs} tabs, each auto-saving the unchanged text 1/s")
    print(f"{'tree':40} {'updates':>8} {'CPU':>6} {'µs/update':>10} {'writes':>7} {'saved':>7}")
    for tree in trees:
        r = await measure(tree.absolute(), args)
        print(
            f"{tree!s:40} {r['updates']:>8} {r['cpu_share']:>6.0%} "
            f"{r['us_per_update']:>10.0f} {r['writes']:>7} {r['session_saved']:>7}"
        )


if __name__ == "__main__":
    asyncio.run(main())
