"""`python -m app` as an operator meets it: a start-up problem is one line naming the setting
and a non-zero exit; "listening on" is said once the port is bound; a store server that is
down at start-up is waited for; `--help` describes every setting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.config import Settings
from tests.server_process import ROOT, free_port
from tests.store_backends import run_nx_27017

STARTUP_SECONDS = 20.0


def environment(**settings: str) -> dict[str, str]:
    """The test's environment without any setting of the server, plus `settings`."""
    kept = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return {**kept, **settings}


def run(tmp_path: Path, *flags: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = environment(**{"DATA_DIR": str(tmp_path / "data"), "HOST": "127.0.0.1", **settings})
    return subprocess.run(
        [sys.executable, "-m", "app", *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def not_a_directory(tmp_path: Path) -> str:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return str(blocker / "data")


PROBLEMS = [
    pytest.param(
        ["--port", "abc"],
        {},
        "error: PORT (--port): Input should be a valid integer, unable to parse string as an"
        " integer (got 'abc')",
        id="port-not-a-number",
    ),
    pytest.param(
        [],
        {"PORT": "70000"},
        "error: PORT (--port): Input should be less than or equal to 65535 (got '70000')",
        id="port-too-large",
    ),
    pytest.param(
        [],
        {"LOG_LEVEL": "verbose"},
        "error: LOG_LEVEL (--log-level): must be DEBUG, INFO, WARNING or ERROR (got 'verbose')",
        id="log-level",
    ),
    pytest.param(
        [],
        {"REDIS_URL": "redis://127.0.0.1:1/0"},
        "error: cluster mode (REDIS_URL) needs a store every process reaches: set MONGODB_URI"
        " (or CLUSTER_SHARED_SQLITE=true when every process runs on one machine)",
        id="cluster-on-sqlite",
    ),
]


@pytest.mark.parametrize(("flags", "settings", "line"), PROBLEMS)
def test_a_bad_setting_is_one_line_naming_it_and_a_non_zero_exit(
    tmp_path: Path, flags: list[str], settings: dict[str, str], line: str
) -> None:
    done = run(tmp_path, *flags, **settings)

    assert done.returncode == 2
    assert done.stderr == line + "\n"
    assert done.stdout == ""


def test_a_store_that_cannot_open_is_one_line_and_debug_adds_the_traceback(
    tmp_path: Path,
) -> None:
    data_dir = not_a_directory(tmp_path)

    done = run(tmp_path, DATA_DIR=data_dir)

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: the store cannot open: SQLite {data_dir}/")
    assert "(DATA_DIR, --data-dir)" in lines[0]
    debug = run(tmp_path, DATA_DIR=data_dir, LOG_LEVEL="DEBUG")
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == lines[0]


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        done = run(tmp_path, PORT=str(port))

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        f"error: cannot listen on 127.0.0.1:{port} (HOST/--host, PORT/--port): "
    )
    assert "address already in use" in done.stderr


def started(tmp_path: Path, port: int, **settings: str) -> subprocess.Popen[str]:
    env = environment(DATA_DIR=str(tmp_path / "data"), HOST="127.0.0.1", PORT=str(port), **settings)
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], needle: str) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if needle in line:
            return line
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no {needle!r} line (exit code {process.poll()})")


def test_listening_is_said_once_the_port_answers(tmp_path: Path) -> None:
    port = free_port()
    process = started(tmp_path, port)
    try:
        line = wait_for_line(process, "listening on")
        assert f"listening on http://127.0.0.1:{port}" in line
        assert status_of(f"http://127.0.0.1:{port}/api/health") == 200  # no retry needed
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    # A clean shutdown says what it wrote and how long it took.
    assert process.stderr is not None
    assert "stopped: 0 room writes in " in process.stderr.read()


def test_a_store_server_down_at_start_up_is_waited_for(tmp_path: Path) -> None:
    """MongoDB down at start-up: the server serves, not ready, and becomes ready (and
    stores) once MongoDB answers."""
    port, mongo_port = free_port(), free_port()
    uri = f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"
    process = started(tmp_path, port, MONGODB_URI=uri, STORE_TIMEOUT_SECONDS="0.5")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_line(process, "listening on")
        assert status_of(base + "/api/health") == 200
        assert status_of(base + "/api/ready") == 503
        with run_nx_27017(tmp_path / "nx", port=mongo_port):
            deadline = time.monotonic() + STARTUP_SECONDS
            while status_of(base + "/api/ready") != 200:
                assert time.monotonic() < deadline, "never ready"
                time.sleep(0.2)
            request = urllib.request.Request(
                base + "/api/sessions/create",
                data=b'{"roomId": "LATE", "creatorName": "Ann"}',
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as answer:
                assert answer.status == 201
            assert status_of(base + "/api/sessions/LATE") == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_help_describes_every_setting_with_its_environment_name_and_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "--help"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )

    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for name, field in Settings.model_fields.items():
        assert f"--{name.replace('_', '-')}" in text
        assert f"{field.description} [env {name.upper()}, default:" in text, name
