"""Cluster mode under test: a real `redis-server` on a free port (with AOF, so that a restart
keeps the room logs), and server processes sharing it and one SQLite data directory."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server_process import ServerProcess, free_port

REDIS = shutil.which("redis-server")


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def cluster_env(redis: RedisServer, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis.url,
        "CLUSTER_SHARED_SQLITE": "true",
        "DATA_DIR": str(data_dir),
        "SAVE_DEBOUNCE_SECONDS": "0.3",
        "SAVE_MAX_DELAY_SECONDS": "1",
        "RECONNECT_GRACE_SECONDS": "3",
        "CLUSTER_PROCESS_LEASE_SECONDS": "1.5",
        "CLUSTER_WRITER_LEASE_SECONDS": "2",
        "LOG_LEVEL": "INFO",
        **extra,
    }


@contextmanager
def processes(env: dict[str, str], logs: Path, count: int) -> Iterator[list[ServerProcess]]:
    logs.mkdir(parents=True, exist_ok=True)
    started: list[ServerProcess] = []
    try:
        for n in range(count):
            started.append(ServerProcess(env, logs / f"process{n}.log"))
        yield started
    finally:
        for process in started:
            with contextlib.suppress(Exception):  # a process killed by the test
                process.terminate(grace=10)
