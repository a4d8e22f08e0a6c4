"""The original client's wire session, played by the official socket.io-client (Node).

`tests/e2e_js/session.mjs` plays the typical session of the protocol (docs: the "typical
client session on the wire") with two clients against `python -m app` run as a real
subprocess, and checks every event and REST answer. Then the server is stopped, started again
on the same store, and the session the client left behind is read back from Python.
Parametrized over the embedded SQLite store and MongoDB over the wire (an nx-27017 server, see
tests/store_backends.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess, server_process
from tests.support import missing_tool

pytest_plugins = ("tests.store_backends",)

ROOT = Path(__file__).resolve().parent.parent
E2E_DIR = Path(__file__).resolve().parent / "e2e_js"
NODE_MIN_MAJOR = 20
NPM_CI_TIMEOUT = 180.0
# `docker stop` sends SIGTERM, then SIGKILL after 10 s: a graceful shutdown must fit in it.
STOP_GRACE_SECONDS = 10.0
CLIENT_TIMEOUT_SECONDS = 20  # the session script's own overall bound
LOG_TAIL_CHARS = 4000


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the e2e project's dependencies installed (`npm ci` if missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        missing_tool(f"{missing} not on PATH: the Node.js client tests need Node >= 20 and npm")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MIN_MAJOR:
        missing_tool(f"node {version} is too old: the client scripts need Node >= 20")
    if not (E2E_DIR / "node_modules" / "socket.io-client" / "package.json").exists():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=E2E_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
        )
        if result.returncode != 0:
            pytest.fail(
                f"npm ci in {E2E_DIR} failed ({result.returncode}):\n"
                f"{result.stdout[-LOG_TAIL_CHARS:]}\n{result.stderr[-LOG_TAIL_CHARS:]}"
            )
    return node


def http_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except FileNotFoundError:
        return "<no log>"


def stop_gracefully(server: ServerProcess) -> None:
    """SIGTERM must end the server, with exit code 0, within docker's grace period."""
    took = server.terminate(STOP_GRACE_SECONDS)
    assert took is not None, f"SIGTERM did not stop the server in {STOP_GRACE_SECONDS} s"
    assert server.process.returncode == 0, tail(server.log_path)


def run_node(node: str, script: str, *args: str, timeout: float) -> tuple[int, str, str]:
    result = subprocess.run(
        [node, str(E2E_DIR / script), *args],
        cwd=E2E_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stdout, result.stderr


def run_session(node: str, url: str, script: str = "session.mjs") -> dict[str, Any]:
    """Run a client session against `url`; its report (the test fails on a non-zero exit)."""
    code, stdout, stderr = run_node(
        node,
        script,
        url,
        "--timeout",
        str(CLIENT_TIMEOUT_SECONDS),
        timeout=CLIENT_TIMEOUT_SECONDS + 10,
    )
    try:
        report: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        report = {"unparsed stdout": stdout[-LOG_TAIL_CHARS:]}
    if code != 0:
        error = report.get("error") or report
        pytest.fail(
            f"the Node client failed (exit {code}):\n"
            f"{json.dumps(error, indent=2, ensure_ascii=False)}\n{stderr[-LOG_TAIL_CHARS:]}"
        )
    assert report.get("ok") is True, report
    return report


def base_settings(tmp_path: Path) -> dict[str, str]:
    return {
        "DATA_DIR": str(tmp_path / "data"),
        "SAVE_DEBOUNCE_SECONDS": "0.2",
        "SAVE_MAX_DELAY_SECONDS": "1",
        "STORE_RETRY_MAX_SECONDS": "0.5",
        "SHUTDOWN_FLUSH_SECONDS": "5",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(params=["sqlite", "nx27017"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Server settings for one store (the SQLite file under DATA_DIR, or MongoDB's wire)."""
    settings = base_settings(tmp_path)
    if request.param == "nx27017":
        settings["MONGODB_URI"] = request.getfixturevalue("nx_27017_uri")
        settings["MONGODB_DB"] = f"e2e_{uuid.uuid4().hex[:12]}"
    return settings


def test_original_client_session(node: str, store_settings: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with server_process(store_settings, log) as server:
        report = run_session(node, server.url)
        # At once: what is still pending must be written by the graceful shutdown.
        stop_gracefully(server)

    sqlite_file = Path(store_settings["DATA_DIR"]) / "sessions.sqlite3"
    assert sqlite_file.exists() == ("MONGODB_URI" not in store_settings), "the wrong store ran"

    room_id, expected = report["roomId"], report["expected"]
    with server_process(store_settings, log) as server:
        status, body = http_json(f"{server.url}/api/sessions/{room_id}")
    assert status == 200, (status, body, tail(log))
    session = body["session"]
    assert session["code"] == expected["code"]
    assert session["language"] == expected["language"]
    messages = [
        {"userId": m["userId"], "userName": m["userName"], "message": m["message"]}
        for m in session["messages"]
    ]
    assert messages == expected["messages"]
    participants = sorted(
        ({"userId": p["userId"], "name": p["name"]} for p in session["participants"]),
        key=lambda p: p["name"],
    )
    assert participants == expected["participants"]
    assert "Traceback" not in log.read_text(errors="replace"), tail(log)


def test_current_client_session(node: str, store_settings: dict[str, str], tmp_path: Path) -> None:
    """The current generation: files, autosaves, an upload, the whiteboard, the meeting page
    and a reload; then the files and the whiteboard survive a restart."""
    log = tmp_path / "server.log"
    with server_process(store_settings, log) as server:
        report = run_session(node, server.url, "session_head.mjs")
        stop_gracefully(server)
    room_id, expected = report["roomId"], report["expected"]
    with server_process(store_settings, log) as server:
        status, body = http_json(f"{server.url}/api/sessions/{room_id}")
    assert status == 200, (status, body, tail(log))
    session = body["session"]
    assert session["code"] == expected["code"]
    files = [
        {key: f[key] for key in ("fileId", "name", "content", "mime")} for f in session["files"]
    ]
    assert files == expected["files"]
    assert session["whiteboardElements"] == expected["whiteboard"]
    assert "Traceback" not in log.read_text(errors="replace"), tail(log)


def test_sigterm_after_a_polling_client_left(node: str, tmp_path: Path) -> None:
    """A closed long-polling tab must not hold a graceful shutdown past docker's 10 s.

    Engine.IO keeps the tab's last GET poll waiting for ping_interval + ping_timeout (45 s) after
    the tab sent its close packet; aiohttp's graceful shutdown waits for running handlers (60 s
    by default) before the cleanup that flushes pending writes and closes the store.
    """
    log = tmp_path / "server.log"
    with server_process(base_settings(tmp_path), log) as server:
        code, stdout, stderr = run_node(
            node, "poll_and_leave.mjs", server.url, "POLL0001", timeout=20
        )
        assert code == 0, (stdout, stderr)
        assert json.loads(stdout)["transport"] == "polling"
        stop_gracefully(server)

    with server_process(base_settings(tmp_path), log) as server:
        status, body = http_json(f"{server.url}/api/sessions/POLL0001")
    assert status == 200, (status, body, tail(log))
    assert body["session"]["code"] == "// typed over long-polling\n"


def test_access_control_with_the_official_client(node: str, tmp_path: Path) -> None:
    """Required mode with socket.io-client: a forged token is refused at connect, a viewer on
    long-polling sees an owner's keystrokes and cannot type, and is put out within a second
    when the owner's rules leave it no access."""
    import time

    import jwt

    secret = "an-e2e-secret-of-at-least-32-bytes!"

    def token(user: str, key: str = secret) -> str:
        claims = {"userId": user, "exp": int(time.time()) + 600}
        claims.update(iss="prepmate-api", aud="prepmate-client")
        return jwt.encode(claims, key, algorithm="HS256")

    settings = base_settings(tmp_path) | {
        "AUTH_MODE": "required",
        "JWT_SECRET": secret,
        "JWT_ISSUER": "prepmate-api",
        "JWT_AUDIENCE": "prepmate-client",
    }
    log = tmp_path / "server.log"
    forged = token("u-owner", "not-the-secret-not-the-secret-not-it")
    with server_process(settings, log) as server:
        code, stdout, stderr = run_node(
            node, "access.mjs", server.url, "ACCESS1", token("u-owner"), token("u-viewer"),
            forged, timeout=30,
        )  # fmt: skip
    assert code == 0, (stdout, stderr, tail(log))
    report = json.loads(stdout)
    assert report["forged"] == "invalid_token"
    assert (report["ownerRole"], report["viewerRole"]) == ("owner", "viewer")
    assert report["madePrivate"] == 200
    assert report["viewerSaw"] == "typed by the owner"
    assert report["viewerChange"] == "read_only"
    assert report["revocation"] == "access_revoked"
    assert report["disconnectReason"] == "io server disconnect"
    assert report["revokedWithinMs"] < 1000
    assert report["code"] == "typed by the owner"
    assert "Traceback" not in log.read_text(errors="replace"), tail(log)
