#!/usr/bin/env python3
"""Load benchmark of cluster mode: one process vs N processes sharing rooms through Redis.

Runs the same Socket.IO load (scripts/loadbench/gen.mjs, as scripts/bench.py does) against
several server configurations and measures what the Redis path costs per delivery.

SETUP (once)
    cd scripts/loadbench && npm ci          # socket.io-client 4.8
    redis-server on PATH (or --redis-server)

CONFIGURATIONS (--configs, comma separated; alternated A B C D A B C D over --rounds)
    single      one `python -m app` process, no Redis (its own SQLite data dir)
    cluster-N   N processes with REDIS_URL (a fresh redis-server per run) and
                CLUSTER_SHARED_SQLITE=true, all on one DATA_DIR (one SQLite file);
                cluster-1 is one process on the Redis path
    bare        one scripts/relay_bare.py --tuned process, no Redis
    bare-redis-N  N processes of scripts/relay_bare.py --tuned sharing rooms through
                python-socketio's AsyncRedisManager (every emit goes through Redis
                pub/sub): the framework's own fan-out, without our order, log, merge,
                validation or persistence; what it costs per delivery is the floor of
                that design, beside ours (cluster-N, delivered from the room log)
    Default: single,cluster-1,cluster-2,cluster-3.
    Every process gets bench.py's APP_ENV (abuse limits raised, LOG_LEVEL=warning) plus
    --env K=V overrides, a free port of 127.0.0.1, and must answer GET /api/ready 200
    before the load starts. redis-server runs with
        --save '' --appendonly yes --appendfsync <--appendfsync, default always>
    in a fresh temp dir (AOF on, as tests/cluster_support.py does).

LOAD (--scenarios, comma separated)
    a     --rooms x --clients (default 50 x 4), --rate codeChange/s per room (default
          10), --size bytes of full text (default 2048): bench.py's scenario a
    hot   one room of --hot-clients (default 50) at --hot-rate/s (default 20)
    The generator gets --urls with every process of the configuration: client i of
    each room connects to process i % N, so every room spans the processes and its
    typist (client 0) is on the first. In each room client 0 types, every other client
    measures the latency of the codeUpdate it receives (see bench.py).

WHAT IS MEASURED (one measure window of --seconds after --warmup; medians over rounds)
    deliv/s     codeUpdate deliveries/s (for changes sent in the window)
    minRatio    lowest delivery ratio over the rounds (received / expected; 1 = no loss)
    p50 p99 max end-to-end latency, ms
    app%        CPU of ALL app processes together (/proc utime+stime of each process
                tree over the window), % of one core
    app%each    the same per process (p0/p1/..; p0 holds every room's typist)
    redis%      CPU of redis-server over the same window
    gen%        the generator's own CPU
    oth%        the rest of the host's CPU in the window (other tenants: noise)
    load1       1-minute load average at the start of the run
    rssMB       peak RSS of all app processes together
    app_us/dlv  app CPU microseconds per delivery  (app% / 100 / deliv/s x 1e6)
    all_us/dlv  (app + redis) CPU microseconds per delivery
    rds_us/chg  redis CPU microseconds per codeChange sent
    CPU per delivery is the headline figure: unlike wall-clock latency it does not move
    much when other jobs share the cores. Any run that lost deliveries, any process that
    exited, any ERROR/Traceback line in a server log is listed under the table.

EXAMPLES
    # quick check (about 1 minute per configuration and round)
    python scripts/bench_cluster.py --seconds 5 --rounds 1
    # the measurement of docs/benchmarks.md, "Cluster mode"
    python scripts/bench_cluster.py --app-rev HEAD --rounds 2 --seconds 15 --scenarios a,hot \\
        --wait-quiet 50 --quiet-max-wait 20 --json-out /tmp/bench_cluster2.json
    # cheaper durability (fsync once a second) and a heavier load
    python scripts/bench_cluster.py --appendfsync everysec --rooms 100 --rate 20
    # only the cluster configurations, a different size
    python scripts/bench_cluster.py --configs cluster-1,cluster-2 --size 8192

Server and redis logs stay in --log-dir (default: a new temp dir, printed at start and
end). Every phase is bounded (start, /api/ready, connect, run, drain, stop; the whole run by
--max-total); every process started (app processes, redis-server, generators) is stopped at
the end, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # scripts/bench.py: processes, /proc, histograms, generator pool

# Settings of the environment running the benchmark that must not leak into the servers
# (a configuration decides them).
CLEARED_ENV = ("REDIS_URL", "CLUSTER_SHARED_SQLITE", "DATA_DIR", "MONGODB_URI", "PORT")
SERVER_LOG_ALARMS = ("ERROR", "Traceback", "CRITICAL", "Exception")

log = B.log


# --------------------------------------------------------------------------- configurations
@dataclass
class Config:
    name: str
    procs: int
    redis: bool
    target: str = "app"  # bench.py's target of each process


def parse_config(name: str) -> Config:
    if name == "single":
        return Config(name, 1, False)
    if name == "bare":
        return Config(name, 1, False, "bare-tuned")
    for prefix, target in (("cluster-", "app"), ("bare-redis-", "bare-tuned")):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            n = int(name[len(prefix) :])
            if n >= 1:
                return Config(name, n, True, target)
    raise SystemExit(f"unknown configuration {name!r} (single, cluster-N, bare, bare-redis-N)")


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes]
    directory: str
    log_file: Any

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def start_redis(args: argparse.Namespace, tag: str, directory: str) -> Redis:
    port = B.free_port()
    log_path = os.path.join(args.log_dir, f"redis-{tag}.log")
    lf = open(log_path, "wb")  # noqa: SIM115, ASYNC230 (closed in stop_redis)
    proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
        [
            args.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", args.appendfsync, "--dir", directory,
        ],
        stdin=subprocess.DEVNULL,
        stdout=lf,
        stderr=lf,
        start_new_session=True,
    )  # fmt: skip
    redis = Redis(port, proc, directory, lf)
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if await asyncio.to_thread(_redis_ping, port):
            return redis
        await asyncio.sleep(0.05)
    await stop_redis(redis)
    raise RuntimeError(f"redis-server did not answer PING (log {log_path})")


async def stop_redis(redis: Redis) -> None:
    if redis.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            redis.proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(redis.proc.wait), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                redis.proc.kill()
            await asyncio.to_thread(redis.proc.wait, 5)
    redis.log_file.close()


async def wait_ready(srv: B.Server, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if srv.proc is not None and srv.proc.returncode is not None:
            break
        if await asyncio.to_thread(B.http_ok, srv.url + "/api/ready", 1.0):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{srv.url}/api/ready did not answer 200 in {limit_s}s (log {srv.log_path})")


@dataclass
class Deployment:
    config: Config
    servers: list[B.Server] = field(default_factory=list)
    redis: Redis | None = None
    run_dir: str | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.pid]


async def deploy(args: argparse.Namespace, cfg: Config, tag: str) -> Deployment:
    run_dir = tempfile.mkdtemp(prefix=f"bench-cluster-{cfg.name}-")
    dep = Deployment(cfg, run_dir=run_dir)
    try:
        env = dict(args.env)
        if cfg.redis:
            redis_dir = os.path.join(run_dir, "redis")
            data_dir = os.path.join(run_dir, "data")
            os.makedirs(redis_dir)
            os.makedirs(data_dir)
            dep.redis = await start_redis(args, tag, redis_dir)
            env.update(REDIS_URL=dep.redis.url, CLUSTER_SHARED_SQLITE="true", DATA_DIR=data_dir)
            env.update(args.env)  # --env still wins
        # bench.start_server takes its environment from args.env
        sargs = argparse.Namespace(**vars(args))
        sargs.env = env
        for i in range(cfg.procs):  # one after the other: the first creates the SQLite file
            srv = await B.start_server(sargs, cfg.target, f"{tag}-p{i}")
            dep.servers.append(srv)
        for srv in dep.servers:
            await wait_ready(srv, args.start_timeout)
        return dep
    except BaseException:
        await undeploy(dep)
        raise


async def undeploy(dep: Deployment) -> None:
    for srv in dep.servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(B.stop_server(srv), 20)
    if dep.redis is not None:
        with contextlib.suppress(Exception):
            await stop_redis(dep.redis)
    if dep.run_dir:
        shutil.rmtree(dep.run_dir, ignore_errors=True)


def kill_descendants() -> None:
    """Last resort (Ctrl-C, a timeout in the middle of a start): every process this script
    started is still its child (new sessions keep the parent), so stop them by pid."""
    table = B._proc_table()
    mine = [p for p in B.tree_pids(os.getpid(), table) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in mine:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                alive.append(pid)
        if not alive:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            table = B._proc_table()
            alive = [p for p in alive if p in table]
            if not alive:
                return
            time.sleep(0.1)
        mine = alive


# --------------------------------------------------------------------------- measurement
def cpu_snapshot(app_pids: list[int], redis_pid: int | None) -> tuple[list[float], float | None]:
    """(CPU seconds of each app process tree, of redis-server) from one /proc walk."""
    table = B._proc_table()
    app = [sum(table[p][1] for p in B.tree_pids(pid, table)) / B.CLK_TCK for pid in app_pids]
    red = None
    if redis_pid is not None and redis_pid in table:
        red = table[redis_pid][1] / B.CLK_TCK
    return app, red


def rss_sum(pids: list[int]) -> float | None:
    vals = [v for v in (B.tree_rss_mb(p) for p in pids) if v is not None]
    return sum(vals) if vals else None


def alarms_in(path: str | None, limit: int = 5) -> tuple[int, list[str]]:
    if not path:
        return 0, []
    n, sample = 0, list[str]()
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        for line in f:
            if any(a in line for a in SERVER_LOG_ALARMS):
                n += 1
                if len(sample) < limit:
                    sample.append(line.rstrip()[:300])
    return n, sample


async def measure(
    args: argparse.Namespace, pool: B.GenPool, dep: Deployment, rate: float
) -> dict[str, Any]:
    cmd = {
        "cmd": "run",
        "rate": rate,
        "chatRate": 0,
        "warmup": args.warmup,
        "seconds": args.seconds,
        "drain": args.drain,
    }
    redis_pid = dep.redis.proc.pid if dep.redis is not None else None
    task = asyncio.ensure_future(pool.run(cmd))
    rss: list[float] = []
    try:
        await asyncio.sleep(args.warmup)
        t0, h0 = time.monotonic(), B.host_cpu()
        a0, r0 = cpu_snapshot(dep.pids, redis_pid)
        end = t0 + args.seconds
        while time.monotonic() < end and not task.done():
            r = await asyncio.to_thread(rss_sum, dep.pids)
            if r is not None:
                rss.append(r)
            await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))
        a1, r1 = cpu_snapshot(dep.pids, redis_pid)
        t1, h1 = time.monotonic(), B.host_cpu()
        parts = await task
    finally:
        if not task.done():
            task.cancel()
    wall = t1 - t0
    res = B.merge_results(parts)
    res["wall_s"] = wall
    # per process (the first one holds every room's typist), and all together
    res["app_cpu_pct_each"] = [100.0 * (y - x) / wall for x, y in zip(a0, a1, strict=True)]
    res["app_cpu_pct"] = sum(res["app_cpu_pct_each"])
    res["redis_cpu_pct"] = 100.0 * (r1 - r0) / wall if r0 is not None and r1 is not None else None
    res["host_cpu_pct"] = 100.0 * (h1[0] - h0[0]) / wall
    ours = res["app_cpu_pct"] + (res["redis_cpu_pct"] or 0.0) + (res["gen_cpu_pct"] or 0.0)
    res["other_cpu_pct"] = max(0.0, res["host_cpu_pct"] - ours)
    res["app_rss_mb"] = max(rss) if rss else None
    dps = res["deliveries_per_s"]
    cps = res["sent"] / res["measure_s"] if res["measure_s"] else None
    res["changes_per_s"] = cps
    if dps:
        res["app_us_per_delivery"] = res["app_cpu_pct"] / 100.0 / dps * 1e6
        res["all_us_per_delivery"] = (
            (res["app_cpu_pct"] + (res["redis_cpu_pct"] or 0.0)) / 100.0 / dps * 1e6
        )
    else:
        res["app_us_per_delivery"] = res["all_us_per_delivery"] = None
    res["redis_us_per_change"] = (
        res["redis_cpu_pct"] / 100.0 / cps * 1e6
        if cps and res["redis_cpu_pct"] is not None
        else None
    )
    return res


async def one_run(
    args: argparse.Namespace, cfg: Config, sc: dict[str, Any], tag: str
) -> dict[str, Any]:
    load1 = os.getloadavg()
    dep = await deploy(args, cfg, tag)
    try:
        log(
            f"  {cfg.name}: processes {dep.pids} at {dep.urls}"
            + (f", redis pid {dep.redis.proc.pid} :{dep.redis.port}" if dep.redis else "")
        )
        pool = B.GenPool(
            args, dep.urls[0], sc["rooms"], sc["clients"], args.size, args.procs,
            extra=["--urls", ",".join(dep.urls)],
        )  # fmt: skip
        try:
            ready = B.ready_summary(await pool.start())
            if ready["joined"] < ready["attempted"]:
                log(
                    f"  ! only {ready['connected']} connected / {ready['joined']} joined of "
                    f"{ready['attempted']} ({ready['connect_error_sample']})"
                )
            res = await measure(args, pool, dep, sc["rate"])
        finally:
            await pool.close()
        res["setup"] = ready
        res["load_avg_start"] = load1
        res["load_avg_end"] = os.getloadavg()
        res["exited"] = [
            {"pid": s.pid, "rc": s.proc.returncode, "log": s.log_path}
            for s in dep.servers
            if s.proc is not None and s.proc.returncode is not None
        ]
        if dep.redis is not None and dep.redis.proc.poll() is not None:
            res["exited"].append({"pid": dep.redis.proc.pid, "rc": dep.redis.proc.returncode})
    finally:
        await undeploy(dep)
    res["logs"] = [s.log_path for s in dep.servers]
    res["log_alarms"] = {}
    for s in dep.servers:
        n, sample = alarms_in(s.log_path)
        if n:
            res["log_alarms"][s.log_path] = {"count": n, "sample": sample}
    return res


# --------------------------------------------------------------------------- reporting
COLUMNS = [
    ("deliv/s", "deliveries_per_s", 0),
    ("minRatio", "min_ratio", 4),
    ("p50", "latency_ms.p50", 2),
    ("p99", "latency_ms.p99", 2),
    ("max", "latency_ms.max", 1),
    ("app%", "app_cpu_pct", 1),
    ("app%each", "app_cpu_pct_each", 0),
    ("redis%", "redis_cpu_pct", 1),
    ("gen%", "gen_cpu_pct", 0),
    ("oth%", "other_cpu_pct", 0),
    ("load1", "load1", 2),
    ("rssMB", "app_rss_mb", 0),
    ("app_us/dlv", "app_us_per_delivery", 1),
    ("all_us/dlv", "all_us_per_delivery", 1),
    ("rds_us/chg", "redis_us_per_change", 1),
]


def describe(sc: dict[str, Any]) -> str:
    return (
        f"{sc['rooms']} rooms x {sc['clients']} clients, {sc['rate']:g} codeChange/s/room, "
        f"{sc['size']} B"
    )


def summarize(runs: list[dict[str, Any] | None]) -> dict[str, Any]:
    ok = [r for r in runs if r is not None]
    out: dict[str, Any] = {"ok": len(ok), "runs": len(runs)}
    for _label, path, _nd in COLUMNS:
        if path == "min_ratio":
            vals = [r["ratio"] for r in ok if r.get("ratio") is not None]
            out[path] = min(vals) if vals else None
        elif path == "app_cpu_pct_each":
            each = [r[path] for r in ok if len(r.get(path) or []) > 1]
            out[path] = [B.med(list(v)) for v in zip(*each, strict=True)] if each else None
        elif path == "load1":
            out[path] = B.med([r["load_avg_start"][0] for r in ok])
        else:
            out[path] = B.med([B.get(r, path) for r in ok])
    return out


def _cell(v: Any, nd: int) -> str:
    if isinstance(v, list):
        return "/".join(B.fmt(x, nd) for x in v)
    return B.fmt(v, nd)


def print_table(
    name: str, sc: dict[str, Any], configs: list[Config], results: dict[str, list[Any]]
) -> dict[str, Any]:
    print(f"\n=== scenario {name}: {describe(sc)}; medians over rounds")
    rows = [["config", "procs", "ok/runs"] + [c[0] for c in COLUMNS]]
    summary: dict[str, Any] = {}
    warnings: list[str] = []
    for cfg in configs:
        s = summarize(results[cfg.name])
        summary[cfg.name] = s
        rows.append(
            [cfg.name, str(cfg.procs), f"{s['ok']}/{s['runs']}"]
            + [_cell(s[path], nd) for _l, path, nd in COLUMNS]
        )
        for i, r in enumerate(results[cfg.name]):
            where = f"{cfg.name} round {i + 1}"
            if r is None:
                warnings.append(f"{where}: failed (see the log above)")
                continue
            if r.get("ratio") is not None and r["ratio"] < 1.0:
                warnings.append(
                    f"{where}: deliveries missing after --drain (lost or later): received "
                    f"{r['received']} of {r['expected']} "
                    f"(ratio {r['ratio']:.4f})"
                )
            st = r["setup"]
            if st["joined"] < st["attempted"]:
                warnings.append(f"{where}: joined {st['joined']}/{st['attempted']}")
            if r["disconnects"]:
                warnings.append(f"{where}: {r['disconnects']} client disconnects")
            if r["sched_skipped"]:
                warnings.append(f"{where}: generator fell behind ({r['sched_skipped']} skipped)")
            ev = {k: v for k, v in r["other_events"].items() if k not in B.EXPECTED_EVENTS}
            if ev:
                warnings.append(f"{where}: unexpected events {json.dumps(ev)[:300]}")
            for e in r["exited"]:
                warnings.append(f"{where}: process {e['pid']} exited during the run rc={e['rc']}")
            for path, a in r["log_alarms"].items():
                warnings.append(f"{where}: {a['count']} alarm lines in {path}: {a['sample'][0]}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            c.rjust(w) if j else c.ljust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
    for w in warnings:
        print(f"  ! {w}")
    return summary


# --------------------------------------------------------------------------- main
def build_scenarios(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    known = {
        "a": {"rooms": args.rooms, "clients": args.clients, "rate": args.rate},
        "hot": {"rooms": 1, "clients": args.hot_clients, "rate": args.hot_rate},
    }
    out = {}
    for name in args.scenarios:
        if name not in known:
            raise SystemExit(f"unknown scenario {name!r} (a, hot)")
        out[name] = dict(known[name], size=args.size)
    return out


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k not in ("extra", "configs")},
        "host": host_info(args),
        "scenarios": {},
    }
    for name, sc in build_scenarios(args).items():
        log(f"scenario {name}: {describe(sc)}")
        results: dict[str, list[Any]] = {c.name: [] for c in args.configs}
        for rnd in range(args.rounds):
            for cfg in args.configs:
                if args.wait_quiet is not None:
                    await B.wait_quiet(args)
                tag = f"{name}-{cfg.name}-r{rnd + 1}"
                log(f" round {rnd + 1} {cfg.name} (load {os.getloadavg()[0]:.2f})")
                try:
                    res = await one_run(args, cfg, sc, tag)
                    res["round"] = rnd + 1
                    results[cfg.name].append(res)
                    log(
                        f"    deliv/s {B.fmt(res['deliveries_per_s'], 0)} ratio "
                        f"{B.fmt(res['ratio'], 4)} p50/p99 {B.fmt(res['latency_ms']['p50'])}/"
                        f"{B.fmt(res['latency_ms']['p99'])} ms app {B.fmt(res['app_cpu_pct'], 0)}%"
                        f" redis {B.fmt(res['redis_cpu_pct'], 0)}% gen "
                        f"{B.fmt(res['gen_cpu_pct'], 0)}% oth {B.fmt(res['other_cpu_pct'], 0)}%"
                        f" app_us/dlv {B.fmt(res['app_us_per_delivery'], 1)}"
                    )
                except Exception as e:  # keep going with the other runs
                    log(f"  ! {tag} failed: {type(e).__name__}: {e}")
                    results[cfg.name].append(None)
                await asyncio.sleep(args.pause)
        summary = print_table(name, sc, args.configs, results)
        report["scenarios"][name] = {"config": sc, "runs": results, "median": summary}
    report["load_avg_end"] = os.getloadavg()
    return report


def describe_source(args: argparse.Namespace) -> str:
    """Which app code runs; with --app-rev, export it and run the command from there."""
    git = ["git", "-C", B.ROOT]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if not args.app_rev:
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "app"], capture_output=True, text=True
        ).stdout.strip()
        edited = f", with uncommitted changes in app/: {len(dirty.splitlines())} files"
        return f"working tree at {head.stdout.strip()}" + (edited if dirty else "")
    rev = subprocess.run(
        [*git, "rev-parse", "--verify", args.app_rev + "^{commit}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    snap = tempfile.mkdtemp(prefix=f"bench-cluster-app-{rev[:8]}-")
    archive = subprocess.run([*git, "archive", rev, "app"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", snap], input=archive.stdout, check=True)
    args.app_snapshot = snap  # removed at the end
    args.app_cmd = f"env -C {shlex.quote(snap)} {args.app_cmd}"
    return f"git revision {rev} (exported to {snap})"


def host_info(args: argparse.Namespace) -> dict[str, Any]:
    redis_version = None
    with contextlib.suppress(Exception):
        redis_version = subprocess.run(
            [args.redis_server, "--version"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "redis": redis_version,
        "app": getattr(args, "app_source", None),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench_cluster.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--configs",
        default="single,cluster-1,cluster-2,cluster-3",
        help="comma list of single, cluster-N, bare, bare-redis-N",
    )
    ap.add_argument("--scenarios", default="a", help="comma list of a, hot (default a)")
    ap.add_argument("--rooms", type=int, default=50, help="scenario a: rooms (default 50)")
    ap.add_argument("--clients", type=int, default=4, help="scenario a: clients per room (4)")
    ap.add_argument("--rate", type=float, default=10.0, help="scenario a: changes/s/room (10)")
    ap.add_argument("--hot-clients", type=int, default=50, help="scenario hot: clients (50)")
    ap.add_argument("--hot-rate", type=float, default=20.0, help="scenario hot: changes/s (20)")
    ap.add_argument("--size", type=int, default=2048, help="codeChange text bytes (2048)")
    ap.add_argument("--rounds", type=int, default=2, help="A B C D rounds (default 2)")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (default 3)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measure window (default 10)")
    ap.add_argument(
        "--drain",
        type=float,
        default=3.0,
        help="max seconds to wait for in-window deliveries (default 3)",
    )
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between runs (default 1)")
    ap.add_argument(
        "--appendfsync",
        choices=("always", "everysec", "no"),
        default="always",
        help="redis-server AOF fsync policy (default always)",
    )
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="extra environment variable for the app processes",
    )
    ap.add_argument(
        "--app-cmd",
        default="{python} -m app",
        help="command of one app process (as bench.py's --app-cmd)",
    )
    ap.add_argument(
        "--app-rev",
        metavar="REV",
        help="run the app package of this git revision (git archive into a temp dir, the "
        "command runs there): a fixed snapshot while app/ is being edited; default: the "
        "working tree",
    )
    ap.add_argument("--python", default=sys.executable, help="python for {python}")
    ap.add_argument("--node", default=shutil.which("node") or "node", help="node binary")
    ap.add_argument("--procs", type=int, default=1, help="generator processes (room slices)")
    ap.add_argument("--connect-batch", type=int, default=100)
    ap.add_argument("--connect-timeout", type=float, default=20.0)
    ap.add_argument(
        "--no-deflate", action="store_true", help="clients do not offer permessage-deflate"
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        metavar="PCT",
        help="before each run wait until other processes use <= PCT%% of a core",
    )
    ap.add_argument("--quiet-max-wait", type=float, default=60.0)
    ap.add_argument(
        "--settle", type=float, default=0.5, help="seconds after a process is healthy (default 0.5)"
    )
    ap.add_argument(
        "--start-timeout",
        type=float,
        default=30.0,
        help="bound on each process start and /api/ready (default 30)",
    )
    ap.add_argument("--nofile", type=int, default=65536)
    ap.add_argument(
        "--max-total",
        type=float,
        default=3600.0,
        help="hard bound on the whole benchmark, seconds (default 3600)",
    )
    ap.add_argument("--json-out", help="write all raw results (JSON) to this file")
    ap.add_argument("--log-dir", help="server and redis logs (default: a new temp dir)")
    args = ap.parse_args(argv)
    args.configs = [parse_config(c.strip()) for c in args.configs.split(",") if c.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.env = dict(item.partition("=")[::2] for item in args.env)
    args.extra = {}  # bench.start_server's --extra-target table: none here
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="bench-cluster-logs-")
    os.makedirs(args.log_dir, exist_ok=True)
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(B.LB_DIR, "node_modules", "socket.io-client")):
        print(f"missing node modules: run `npm ci` in {B.LB_DIR}", file=sys.stderr)
        return 2
    if any(c.redis for c in args.configs) and not shutil.which(args.redis_server):
        print(f"redis-server not found ({args.redis_server})", file=sys.stderr)
        return 2
    for k in CLEARED_ENV:
        os.environ.pop(k, None)
    args.nofile = B.raise_nofile(args.nofile)
    args.app_source = describe_source(args)
    log(f"app: {args.app_source}")
    log(
        f"configs {[c.name for c in args.configs]}, scenarios {args.scenarios}, rounds "
        f"{args.rounds}, warmup {args.warmup}s, measure {args.seconds}s, appendfsync "
        f"{args.appendfsync}, nproc {os.cpu_count()}, load {os.getloadavg()}, "
        f"logs in {args.log_dir}"
    )
    t0 = time.monotonic()
    rc = 0
    report = None
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: clean up first
    try:
        report = asyncio.run(asyncio.wait_for(run_all(args), args.max_total))
    except TimeoutError:
        log(f"aborted: --max-total {args.max_total}s exceeded")
        rc = 3
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        kill_descendants()
        if getattr(args, "app_snapshot", None):
            shutil.rmtree(args.app_snapshot, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f}s; logs in {args.log_dir}")
    if report is not None:
        h = report["host"]
        print(
            f"\nhost: nproc {h['nproc']}, load average at start {h['load_avg']}, at end "
            f"{report['load_avg_end']}; {h['redis']}; appendfsync {args.appendfsync}; "
            f"app: {h['app']}; logs {args.log_dir}"
        )
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(report, f, indent=1, default=str)
            log(f"raw results written to {args.json_out}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
