"""Sessions that follow their user: a context document per app user id, read and replaced
over REST, one key changed over a socket, pushed at once to that user's other connections
(another tab, another device; in cluster mode on another process) and to nobody else."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from tests.support import Client, RunningServer, fast_settings, running_server

pytestmark = pytest.mark.usefixtures("each_mode")
SECRET = "a-context-test-secret-of-32-bytes!!"


def token(user: str) -> str:
    return jwt.encode({"userId": user, "exp": int(time.time()) + 600}, SECRET, "HS256")


async def connection(server: RunningServer, room: str, user: str | None) -> Client:
    client = await Client().connect(server.url)
    assert (await client.join(room, f"name-{user}", user))["ok"] is True
    return client


async def test_a_key_changed_on_one_connection_reaches_the_users_others_only(
    tmp_path: Path,
) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        tab = await connection(server, "ROOM1", "ann")
        phone = await connection(server, "ROOM2", "ann")  # another room, another process
        bob = await connection(server, "ROOM1", "bob")
        try:
            answer = await tab.call(
                "updateContext", {"userId": "ann", "key": "theme", "value": "dark"}
            )
            assert answer["ok"] is True and answer["revision"] == 1
            pushed = await phone.next("contextUpdated")
            assert pushed == {"userId": "ann", "key": "theme", "value": "dark"}
            await tab.quiet()
            assert tab.events["contextUpdated"] == [] and bob.events["contextUpdated"] == []
            status, body = await server.http("GET", "/api/users/ann/context")
            assert status == 200 and body["context"] == {"theme": "dark"}
            assert body["revision"] == 1
            removed = await phone.call("updateContext", {"userId": "ann", "key": "theme"})
            assert removed["revision"] == 2
            assert (await tab.next("contextUpdated"))["value"] is None
            status, body = await server.http("GET", "/api/users/ann/context")
            assert body["context"] == {}
        finally:
            for client in (tab, phone, bob):
                await client.close()


async def test_a_replaced_context_is_stored_and_each_changed_key_pushed(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        tab = await connection(server, "ROOM1", "ann")
        try:
            status, body = await server.http("GET", "/api/users/ann/context")
            assert status == 200 and (body["context"], body["revision"]) == ({}, 0)
            document = {"theme": "light", "fontSize": 14, "recent": ["ROOM1"]}
            status, body = await server.http("PUT", "/api/users/ann/context", json=document)
            assert status == 200 and body["context"] == document and body["revision"] == 1
            await tab.next("contextUpdated", 3)
            assert {e["key"] for e in tab.events["contextUpdated"]} == set(document)
            status, body = await server.http(
                "PUT", "/api/users/ann/context", json={"theme": "light"}
            )
            assert body["revision"] == 2
            await tab.next("contextUpdated", 5)
            gone = {e["key"]: e["value"] for e in tab.events["contextUpdated"][3:]}
            assert gone == {"fontSize": None, "recent": None}
            status, body = await server.http(
                "PUT", "/api/users/ann/context", json={"big": "x" * 70_000}
            )
            assert status == 413
            status, body = await server.http("GET", "/api/users/ann/context")
            assert body["context"] == {"theme": "light"}  # the refused one changed nothing
        finally:
            await tab.close()


async def test_a_context_survives_a_restart(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    async with running_server(settings) as server:
        status, _ = await server.http("PUT", "/api/users/ann/context", json={"a": 1})
        assert status == 200
    async with running_server(settings) as server:
        status, body = await server.http("GET", "/api/users/ann/context")
        assert body["context"] == {"a": 1} and body["revision"] == 1


async def test_bad_context_changes_are_refused(tmp_path: Path) -> None:
    async with running_server(fast_settings(tmp_path)) as server:
        tab = await connection(server, "ROOM1", "ann")
        try:
            for bad in (
                {"key": "k", "value": 1},  # no user
                {"userId": "ann", "key": "", "value": 1},
                {"userId": "ann", "key": "k" * 129, "value": 1},
                {"userId": "ann", "key": "big", "value": "x" * 70_000},
            ):
                answer = await tab.call("updateContext", bad)
                assert answer["ok"] is False, bad
                assert answer["error"]["code"] in ("invalid_payload", "limit_exceeded"), answer
            _, body = await server.http("GET", "/api/users/ann/context")
            assert body["revision"] == 0
        finally:
            await tab.close()


async def test_with_access_control_only_the_user_reaches_their_context(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, auth_mode="optional", jwt_secret=SECRET)
    async with running_server(settings) as server:
        ann = Client()
        await ann.connect(server.url, auth={"token": token("ann")})
        other = Client()
        await other.connect(server.url, auth={"token": token("ann")})  # no room joined
        anonymous = await connection(server, "ROOM1", "ann")  # claims to be ann
        try:
            answer = await ann.call("updateContext", {"key": "theme", "value": "dark"})
            assert answer["ok"] is True
            assert (await other.next("contextUpdated"))["value"] == "dark"
            await anonymous.quiet()
            assert anonymous.events["contextUpdated"] == []  # a claim is not a token
            refused = await anonymous.call(
                "updateContext", {"userId": "ann", "key": "theme", "value": "x"}
            )
            assert refused["error"]["code"] == "forbidden"
            forged = await ann.call("updateContext", {"userId": "bob", "key": "k", "value": 1})
            assert forged["error"]["code"] == "forbidden"
            headers = {"Authorization": f"Bearer {token('ann')}"}
            status, body = await server.http("GET", "/api/users/ann/context", headers=headers)
            assert status == 200 and body["context"] == {"theme": "dark"}
            bob = {"Authorization": f"Bearer {token('bob')}"}
            status, _ = await server.http("GET", "/api/users/ann/context", headers=bob)
            assert status == 403
            status, _ = await server.http("GET", "/api/users/ann/context")
            assert status == 401
        finally:
            for client in (ann, other, anonymous):
                await client.close()
