"""Run `python -m app` as a real subprocess on a free port, for restart and fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # Only the settings given here: a MONGODB_URI (or any other setting) of the
        # environment running the tests must not leak into the server under test.
        inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        full_env = {**inherited, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app"],
                cwd=ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/api/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def terminate(self, grace: float) -> float | None:
        """As `docker stop`: SIGTERM, SIGKILL after `grace` s. Seconds it took, None if killed."""
        started = time.monotonic()
        try:
            self.stop(signal.SIGTERM, timeout=grace)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL, timeout=5)
            return None
        return time.monotonic() - started


@contextmanager
def server_process(env: dict[str, str], log_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(env, log_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)
