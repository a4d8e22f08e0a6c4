"""The Socket.IO Admin UI (python-socketio's instrument()): on only with ADMIN_UI_PASSWORD,
read-only, and only for its login."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.support import WAIT, Client, fast_settings, running_server

LOGIN = {"username": "admin", "password": "s3cret"}


async def admin_connect(
    url: str, auth: dict[str, str]
) -> tuple[socketio.AsyncClient, asyncio.Queue[Any]]:
    admin = socketio.AsyncClient(reconnection=False)
    stats: asyncio.Queue[Any] = asyncio.Queue()
    admin.on("server_stats", stats.put_nowait, namespace="/admin")
    await admin.connect(
        url, namespaces=["/admin"], auth=auth, transports=["websocket"], wait_timeout=WAIT
    )
    return admin, stats


async def test_the_admin_ui_sees_the_server_with_its_login(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, admin_ui_password=LOGIN["password"])
    async with running_server(settings) as server:
        admin, stats = await admin_connect(server.url, LOGIN)
        ann = await Client().connect(server.url)
        try:
            assert (await ann.join("ADMIN", "Ann", "user-ann"))["ok"]
            async with asyncio.timeout(WAIT):  # a summary every 2 s
                latest = await stats.get()
                while latest["clientsCount"] < 2:
                    latest = await stats.get()
            namespaces = {n["name"]: n["socketsCount"] for n in latest["namespaces"]}
            assert namespaces["/"] == 1
        finally:
            await ann.close()
            await admin.disconnect()


@pytest.mark.parametrize(
    ("password", "auth"),
    [
        pytest.param(LOGIN["password"], {**LOGIN, "password": "wrong"}, id="wrong-password"),
        pytest.param(None, LOGIN, id="admin-ui-off"),
    ],
)
async def test_the_admin_namespace_is_refused_without_the_login(
    tmp_path: Path, password: str | None, auth: dict[str, str]
) -> None:
    settings = fast_settings(tmp_path, admin_ui_password=password)
    async with running_server(settings) as server:
        admin = socketio.AsyncClient(reconnection=False)
        try:
            with pytest.raises(socketio.exceptions.ConnectionError):
                await admin.connect(
                    server.url, namespaces=["/admin"], auth=auth, transports=["websocket"],
                    wait_timeout=WAIT,
                )  # fmt: skip
        finally:
            await admin.disconnect()
            if admin.eio.http is not None:
                await admin.eio.http.close()
