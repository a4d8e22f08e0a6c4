"""The try-it page in two real browser pages (Debian's chromium driven by puppeteer-core):
both type at once and every keystroke is kept, in both pages and in the server's session."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server_process import server_process
from tests.support import fast_settings, missing_tool, running_server

E2E_DIR = Path(__file__).resolve().parent / "e2e_js"


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    """node and chromium, with puppeteer-core installed."""
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if node is None or chromium is None:
        missing_tool("node and chromium are needed for the try-it page test")
    if not (E2E_DIR / "node_modules" / "puppeteer-core" / "package.json").exists():
        missing_tool("puppeteer-core is not installed (npm ci in tests/e2e_js)")
    assert node is not None and chromium is not None
    return node, chromium


def test_two_pages_typing_at_once_keep_every_keystroke(
    tmp_path: Path, browser: tuple[str, str]
) -> None:
    node, chromium = browser
    env = {"DATA_DIR": str(tmp_path / "data")}
    with server_process(env, tmp_path / "server.log") as server:
        done = subprocess.run(
            [node, "try_page.mjs", server.url, chromium],
            cwd=E2E_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    page_a, page_b = result["texts"]
    assert page_a == page_b == result["stored"]
    # Every word typed, once and whole (a word cut by another's keystrokes would not match).
    typed = result["typed"]["ann"].split() + result["typed"]["bob"].split()
    kept = re.findall(r"(?:ann|bob)\d+(?= )", result["stored"])
    assert sorted(kept) == sorted(typed), result["stored"]
    assert "// Start coding here..." in result["stored"]
    assert result["language"] == "python"
    assert result["saved"].startswith("saved v")


async def test_the_page_is_served_at_the_root_unless_turned_off(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        status, page = await server.http("GET", "/")
        assert status == 200
        assert '<script src="/static/try.js">' in page
        status, script = await server.http("GET", "/static/socket.io.min.js")
        assert status == 200 and "Socket.IO v4" in script
    async with running_server(fast_settings(tmp_path, try_page=False)) as server:
        status, body = await server.http("GET", "/")
        assert status == 404 and body["error"] == "Endpoint not found"
