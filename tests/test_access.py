"""Access control (AUTH_MODE optional and required): tokens, roles, viewers, private rooms,
invites, the owner's changes reaching live sockets at once, token expiry, REST guarded.

Tokens are made as the original Node backend makes them (HS256, issuer `prepmate-api`,
audience `prepmate-client`, the user id in `userId`), or RS256 from a JWKS served here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio
from aiohttp import web

from app.config import Settings
from app.main import EVENTS_KEY, ROOMS_KEY
from app.wire.catalog import EVENTS
from tests.support import (
    WAIT,
    Client,
    RunningServer,
    cluster_of,
    fast_settings,
    running_server,
)

SECRET = "a-test-secret-of-at-least-32-bytes!!"
ADMIN = "an-operator-token"
ISSUER, AUDIENCE = "prepmate-api", "prepmate-client"
ROOM = "ROOM1"
OWNER, EDITOR, VIEWER, OTHER = "u-owner", "u-editor", "u-viewer", "u-other"


def token(
    user: str | None,
    *,
    expires_in: float = 3600,
    key: str = SECRET,
    audience: str = AUDIENCE,
    issuer: str = ISSUER,
    claim: str = "userId",
) -> str:
    """A token as the original backend signs it."""
    claims: dict[str, Any] = {"email": f"{user}@example.com", "role": "user"}
    if user is not None:
        claims[claim] = user
    claims.update(iss=issuer, aud=audience, exp=int(time.time() + expires_in))
    return jwt.encode(claims, key, algorithm="HS256")


def settings_for(tmp_path: Path, mode: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_mode": mode,
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "admin_token": ADMIN,
    }
    values.update(overrides)
    return fast_settings(tmp_path, **values)


def bearer(value: str | None) -> dict[str, str]:
    return {} if value is None else {"Authorization": f"Bearer {value}"}


class Refusable(Client):
    """A client that keeps why a connection was refused."""

    def __init__(self, transports: list[str] | None = None) -> None:
        super().__init__(transports)
        self.refused: Any = None
        self.closed = asyncio.Event()
        self.sio.on("connect_error", self._refused)
        self.sio.on("disconnect", self._closed)

    async def _refused(self, data: Any) -> None:
        self.refused = data

    async def _closed(self, *args: Any) -> None:
        self.closed.set()


async def connect(server: RunningServer, credential: str | None, **auth: Any) -> Refusable:
    client = Refusable()
    given = {**auth, **({"token": credential} if credential is not None else {})}
    await client.connect(server.url, auth=given or None)
    return client


@asynccontextmanager
async def private_room(server: RunningServer) -> AsyncIterator[Refusable]:
    """ROOM, made by OWNER (whose socket stays in it), private, EDITOR an editor and VIEWER
    a viewer."""
    owner = await connect(server, token(OWNER))
    try:
        answer = await owner.join(ROOM, "Owner", OWNER)
        assert answer["ok"] is True and answer["role"] == "owner", answer
        typed = await owner.call("codeChange", {"roomId": ROOM, "code": "the owner's code"})
        assert typed["version"] == 1, typed
        status, body = await server.http(
            "PUT",
            f"/api/sessions/{ROOM}/access",
            json={
                "visibility": "private",
                "members": [
                    {"userId": EDITOR, "role": "editor"},
                    {"userId": VIEWER, "role": "viewer"},
                ],
            },
            headers=bearer(token(OWNER)),
        )
        assert status == 200, body
        status, body = await server.http(
            "POST",
            f"/api/sessions/{ROOM}/files",
            json={"fileId": "shared.txt", "name": "shared.txt", "content": "shared"},
            headers=bearer(token(OWNER)),
        )
        assert status == 200, body
        yield owner
    finally:
        await owner.close()


def room_state(server: RunningServer, room_id: str = ROOM) -> tuple[Any, ...]:
    room = server.rooms.rooms[room_id]
    files = tuple(sorted((d.doc_id, d.text) for d in room.files()))
    return room.code, room.language, files, room.whiteboard, room.active_file


# -- tokens at the door ------------------------------------------------------------------------

BAD_TOKENS = {
    "expired": lambda: token(OTHER, expires_in=-60),
    "wrong signature": lambda: token(OTHER, key="another-secret-of-at-least-32-bytes"),
    "wrong audience": lambda: token(OTHER, audience="someone-else"),
    "wrong issuer": lambda: token(OTHER, issuer="someone-else"),
    "no user": lambda: token(None),
    "not a jwt": lambda: "not-a-token",
}
BAD_CODES = {"expired": "token_expired"}


@pytest.mark.parametrize("mode", ["optional", "required"])
@pytest.mark.parametrize("bad", list(BAD_TOKENS))
async def test_a_bad_token_is_refused_at_the_door(tmp_path: Path, mode: str, bad: str) -> None:
    async with running_server(settings_for(tmp_path, mode)) as server:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(server, BAD_TOKENS[bad]())
        for path in (f"/api/sessions/{ROOM}", f"/api/sessions/user/{OTHER}"):
            status, body = await server.http("GET", path, headers=bearer(BAD_TOKENS[bad]()))
            assert status == 401, body
            assert body["error"] == "Unauthorized"


async def test_the_refusal_says_why(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server:
        for credential, code in [
            (None, "unauthorized"),
            (token(OTHER, expires_in=-60), "token_expired"),
            (token(OTHER, audience="x"), "invalid_token"),
        ]:
            client = Refusable()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(
                    server.url, auth=None if credential is None else {"token": credential}
                )
            assert client.refused["data"]["code"] == code, client.refused


async def test_required_mode_lets_nobody_in_without_a_token(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(server, None)
        for method, path in [
            ("GET", f"/api/sessions/{ROOM}"),
            ("POST", "/api/sessions/create"),
            ("GET", f"/api/sessions/{ROOM}/files"),
            ("GET", f"/api/sessions/user/{OWNER}"),
            ("DELETE", f"/api/sessions/{ROOM}"),
        ]:
            status, body = await server.http(method, path, json={})
            assert status == 401, (method, path, body)
        status, _ = await server.http("GET", "/api/health")
        assert status == 200


async def test_a_token_in_the_query_string_is_accepted(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server:
        client = Client()
        await client.sio.connect(
            f"{server.url}?token={token(OWNER)}", transports=["websocket"], wait_timeout=WAIT
        )
        try:
            answer = await client.join(ROOM, "Owner", OWNER)
            assert answer["ok"] is True and answer["role"] == "owner"
        finally:
            await client.close()


async def test_sub_names_the_user_when_user_id_is_absent(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server:
        client = await connect(server, token(OWNER, claim="sub"))
        try:
            assert (await client.join(ROOM, "Owner"))["role"] == "owner"
        finally:
            await client.close()


async def test_a_join_claiming_another_user_is_forbidden(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "optional")) as server:
        client = await connect(server, token(OTHER))
        try:
            answer = await client.join(ROOM, "Mallory", OWNER)
            assert answer["ok"] is False and answer["error"]["code"] == "forbidden"
            assert (await client.next("error"))["code"] == "forbidden"
            assert ROOM not in server.rooms.rooms or not server.rooms.rooms[ROOM].members
        finally:
            await client.close()


async def test_open_mode_ignores_tokens(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "open")) as server:
        client = await connect(server, "not-a-token")
        try:
            answer = await client.join(ROOM, "Anyone", "someone")
            assert answer["ok"] is True and "role" not in answer
            status, _ = await server.http("DELETE", f"/api/sessions/{ROOM}")
            assert status == 200
            status, body = await server.http("GET", f"/api/sessions/{ROOM}/access")
            assert status == 404 and body["error"] == "Endpoint not found"
        finally:
            await client.close()


# -- every event x every role ------------------------------------------------------------------

SAMPLES: dict[str, Any] = {
    "joinRoom": None,  # joined by the test itself
    "leaveRoom": None,  # would end the test's membership: covered by the join tests
    "refreshToken": None,  # covered by the expiry tests
    "requestCodeState": {"roomId": ROOM},
    "sendCodeState": {"roomId": ROOM, "code": "x", "targetUserId": "{owner}"},
    "codeChange": {"roomId": ROOM, "code": "changed by {who}"},
    "languageChange": {"roomId": ROOM, "language": "python"},
    "chatMessage": {"roomId": ROOM, "message": "hello from {who}"},
    "cursorMove": {"roomId": ROOM, "position": {"lineNumber": 1, "column": 1}},
    "userTyping": {"roomId": ROOM},
    "userStoppedTyping": {"roomId": ROOM},
    "openFile": {"roomId": ROOM, "fileId": "new-{who}.py", "name": "new.py"},
    "changeFile": {"roomId": ROOM, "fileId": "main.js", "content": "file by {who}"},
    "requestFile": {"roomId": ROOM, "fileId": "main.js"},
    "setActiveFile": {"roomId": ROOM, "fileId": "main.js"},
    "uploadFile": {"roomId": ROOM, "fileId": "up-{who}.txt", "name": "up.txt", "content": "u"},
    "whiteboardChange": {"roomId": ROOM, "snapshot": {"by": "{who}"}},
    "whiteboardOpened": {"roomId": ROOM},
    "whiteboardClosed": {"roomId": ROOM},
    "userReadyForCall": {"roomId": ROOM},
    "webrtc-offer": {"roomId": ROOM, "to": "{owner}", "offer": {"sdp": "x"}},
    "webrtc-answer": {"roomId": ROOM, "to": "{owner}", "answer": {"sdp": "x"}},
    "ice-candidate": {"roomId": ROOM, "to": "{owner}", "candidate": {"c": "x"}},
    "userLeftCall": {"roomId": ROOM},
    "checkRoomCallStatus": {"roomId": ROOM},
    "media-track-ended": {"roomId": ROOM, "to": "{owner}", "kind": "video"},
    "userReadyForScreenShare": {"roomId": ROOM},
    "screenShareStarted": {"roomId": ROOM},
    "screenShareStopped": {"roomId": ROOM},
    "raiseHand": {"roomId": ROOM, "timestamp": 1},
    "lowerHand": {"roomId": ROOM},
    "createCheckpoint": {"roomId": ROOM, "name": "by {who}"},
    "updateContext": {"key": "theme", "value": "{who}"},
    "join-call": ("MEET1",),
    "signal": ("nobody", {"type": "offer"}),
    "chat-message": ({"text": "hi"}, "someone"),
}
ACCESS_CODES = {"read_only", "forbidden", "access_revoked"}


def test_every_event_of_the_catalog_has_a_sample() -> None:
    assert set(SAMPLES) == {event.name for event in EVENTS}


def expected(role: str, needs: str, viewers_chat: bool) -> str | None:
    """The access refusal an event gets from a member with `role` (None: none)."""
    if role == "viewer" and (needs == "write" or (needs == "chat" and not viewers_chat)):
        return "read_only"
    return None


def filled(sample: Any, who: str, owner: str) -> Any:
    if isinstance(sample, dict):
        return {
            k: (v.format(who=who, owner=owner) if isinstance(v, str) else v)
            for k, v in sample.items()
        }
    return sample


@pytest.mark.parametrize("mode", ["optional", "required"])
@pytest.mark.parametrize("role", ["owner", "editor", "viewer"])
@pytest.mark.parametrize("viewers_chat", [True, False])
async def test_every_event_answers_as_the_role_table_says(
    tmp_path: Path, mode: str, role: str, viewers_chat: bool
) -> None:
    """Each role sends every event: a viewer's changes are refused with `read_only` and
    change nothing; everything else is served as without access control."""
    user = {"owner": OWNER, "editor": EDITOR, "viewer": VIEWER}[role]
    async with (
        running_server(settings_for(tmp_path, mode)) as server,
        private_room(server) as owner,
    ):
        status, _ = await server.http(
            "PUT",
            f"/api/sessions/{ROOM}/access",
            json={"viewersCanChat": viewers_chat},
            headers=bearer(token(OWNER)),
        )
        assert status == 200
        sender = owner if role == "owner" else await connect(server, token(user))
        try:
            if role != "owner":
                answer = await sender.join(ROOM, role, user)
                assert answer["ok"] is True and answer["role"] == role, answer
            for event in EVENTS:
                sample = SAMPLES[event.name]
                if sample is None:
                    continue
                before = room_state(server)
                data = filled(sample, role, owner.sid)
                args = data if isinstance(data, tuple) else (data,)
                answer = (
                    await sender.sio.call(event.name, args, timeout=WAIT)
                    if len(args) > 1
                    else await sender.sio.call(event.name, args[0], timeout=WAIT)
                )
                refusal = expected(role, event.needs, viewers_chat)
                code = (
                    (answer or {}).get("error", {}).get("code")
                    if isinstance(answer, dict)
                    else None
                )
                if refusal is not None:
                    assert code == refusal, (event.name, answer)
                    assert room_state(server) == before, event.name
                else:
                    assert code not in ACCESS_CODES, (event.name, answer)
        finally:
            if sender is not owner:
                await sender.close()


@pytest.mark.parametrize("mode", ["optional", "required"])
@pytest.mark.parametrize("who", ["anonymous", "other user"])
async def test_outsiders_cannot_join_a_private_room(tmp_path: Path, mode: str, who: str) -> None:
    async with (
        running_server(settings_for(tmp_path, mode)) as server,
        private_room(server) as owner,
    ):
        if who == "anonymous" and mode == "required":
            with pytest.raises(socketio.exceptions.ConnectionError):
                await connect(server, None)
            return
        outsider = await connect(server, None if who == "anonymous" else token(OTHER))
        try:
            answer = await outsider.join(ROOM, "Outsider", None if who == "anonymous" else OTHER)
            assert answer["ok"] is False and answer["error"]["code"] == "forbidden"
            before = room_state(server)
            heard = len(owner.order)
            for event in EVENTS:  # every room event: refused, nothing changes, nobody hears
                sample = SAMPLES[event.name]
                if not isinstance(sample, dict) or "roomId" not in sample:
                    continue  # the meeting page's and the user's events name no editor room
                data = filled(sample, "outsider", owner.sid)
                answer = await outsider.sio.call(event.name, data, timeout=WAIT)
                assert answer["ok"] is False, (event.name, answer)
                assert answer["error"]["code"] == "not_in_room", (event.name, answer)
            await owner.quiet()
            assert room_state(server) == before
            assert owner.order[heard:] == []
            assert server.rooms.rooms[ROOM].code == "the owner's code"
            assert outsider.sid not in server.rooms.rooms[ROOM].members
        finally:
            await outsider.close()


async def test_anonymous_clients_use_public_rooms_in_optional_mode(tmp_path: Path) -> None:
    """The unchanged editor sends no token: in optional mode it works in public rooms, and
    a room it makes is nobody's (public, editable by all, deletable by nobody but an admin)."""
    async with running_server(settings_for(tmp_path, "optional")) as server:
        first, second = await connect(server, None), await connect(server, None)
        try:
            assert (await first.join(ROOM, "Ann", "app-user-1"))["role"] == "editor"
            assert (await second.join(ROOM, "Bob", "app-user-2"))["role"] == "editor"
            answer = await first.call("codeChange", {"roomId": ROOM, "code": "typed"})
            assert answer["ok"] is True
            assert (await second.next("codeUpdate"))["code"] == "typed"
            status, body = await server.http(
                "POST", f"/api/sessions/{ROOM}/update", json={"code": "saved"}
            )
            assert status == 200, body
            status, _ = await server.http("DELETE", f"/api/sessions/{ROOM}")
            assert status == 403
            status, _ = await server.http(
                "DELETE", f"/api/sessions/{ROOM}", headers=bearer(token(OTHER))
            )
            assert status == 403
            status, _ = await server.http("GET", f"/api/sessions/{ROOM}/access")
            assert status == 403
        finally:
            await first.close()
            await second.close()


async def test_a_public_room_can_make_newcomers_viewers(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "optional")) as server:
        owner = await connect(server, token(OWNER))
        guest = await connect(server, None)
        try:
            await owner.join(ROOM, "Owner")
            status, body = await server.http(
                "PUT",
                f"/api/sessions/{ROOM}/access",
                json={"publicRole": "viewer"},
                headers=bearer(token(OWNER)),
            )
            assert status == 200 and body["access"]["publicRole"] == "viewer"
            assert (await guest.join(ROOM, "Guest"))["role"] == "viewer"
            refused = await guest.call("codeChange", {"roomId": ROOM, "code": "x"})
            assert refused["error"]["code"] == "read_only"
        finally:
            await owner.close()
            await guest.close()


# -- REST: every route x every caller ----------------------------------------------------------

ROUTES: list[tuple[str, str, str, Any]] = [
    # (name, method, path, body); `need` below
    ("read session", "GET", f"/api/sessions/{ROOM}", None),
    ("list files", "GET", f"/api/sessions/{ROOM}/files", None),
    ("read file", "GET", f"/api/sessions/{ROOM}/files/shared.txt", None),
    ("update", "POST", f"/api/sessions/{ROOM}/update", {"code": "rest"}),
    ("save file", "POST", f"/api/sessions/{ROOM}/files", {"fileId": "r.txt", "name": "r"}),
    ("delete file", "DELETE", f"/api/sessions/{ROOM}/files/r.txt", None),
    ("read access", "GET", f"/api/sessions/{ROOM}/access", None),
    ("change access", "PUT", f"/api/sessions/{ROOM}/access", {"viewersCanChat": True}),
    ("invite", "POST", f"/api/sessions/{ROOM}/invites", {"role": "viewer"}),
    ("history", "GET", f"/api/sessions/{ROOM}/history", None),
    ("export", "GET", f"/api/sessions/{ROOM}/export", None),
    ("version", "GET", f"/api/sessions/{ROOM}/versions/1", None),
    ("diff", "GET", f"/api/sessions/{ROOM}/diff?from=1&to=1", None),
    ("checkpoint", "POST", f"/api/sessions/{ROOM}/checkpoints", {"name": "cp"}),
    ("restore", "POST", f"/api/sessions/{ROOM}/restore", {"version": 1}),
    ("delete session", "DELETE", f"/api/sessions/{ROOM}", None),
]
NEEDS = {
    "read session": "read",
    "list files": "read",
    "read file": "read",
    "update": "write",
    "save file": "write",
    "delete file": "write",
    "read access": "own",
    "change access": "own",
    "invite": "own",
    "history": "read",
    "export": "read",
    "version": "read",
    "diff": "read",
    "checkpoint": "write",
    "restore": "write",
    "delete session": "own",
}
CALLERS = {
    "anonymous": lambda: None,
    "viewer": lambda: token(VIEWER),
    "editor": lambda: token(EDITOR),
    "owner": lambda: token(OWNER),
    "admin": lambda: ADMIN,
    "other user": lambda: token(OTHER),
    "expired": lambda: token(OWNER, expires_in=-60),
    "wrong signature": lambda: token(OWNER, key="another-secret-of-at-least-32-bytes"),
    "wrong audience": lambda: token(OWNER, audience="nobody"),
}
RANKS = {"viewer": 1, "editor": 2, "owner": 3, "admin": 3}
NEED_RANK = {"read": 1, "write": 2, "own": 3}


def rest_status(mode: str, caller: str, need: str) -> int:
    if caller in ("expired", "wrong signature", "wrong audience"):
        return 401
    if caller == "anonymous" and mode == "required":
        return 401
    if caller in ("anonymous", "other user"):
        return 404  # a private room answers as a missing one
    return 200 if RANKS[caller] >= NEED_RANK[need] else 403


@pytest.mark.parametrize("mode", ["optional", "required"])
@pytest.mark.parametrize("caller", list(CALLERS))
async def test_every_route_answers_as_the_role_table_says(
    tmp_path: Path, mode: str, caller: str
) -> None:
    async with running_server(settings_for(tmp_path, mode)) as server, private_room(server):
        for name, method, path, body in ROUTES:
            before = room_state(server)
            credential = CALLERS[caller]()
            kwargs: dict[str, Any] = {"headers": bearer(credential)}
            if body is not None:
                kwargs["json"] = body
            status, answer = await server.http(method, path, **kwargs)
            want = rest_status(mode, caller, NEEDS[name])
            if want == 200 and name in ("invite", "checkpoint"):
                want = 201
            assert status == want, (name, answer)
            if want >= 400:
                assert room_state(server) == before or ROOM not in server.rooms.rooms, name
            if status == 404:
                assert answer == {
                    "error": "Session not found",
                    "message": f"Session {ROOM} not found",
                }, (name, answer)


@pytest.mark.parametrize("mode", ["optional", "required"])
async def test_a_private_room_and_a_missing_one_answer_the_same(tmp_path: Path, mode: str) -> None:
    async with running_server(settings_for(tmp_path, mode)) as server, private_room(server):
        outsider = bearer(token(OTHER))
        for method, suffix in [("GET", ""), ("GET", "/files"), ("DELETE", ""), ("GET", "/access")]:
            private = await server.http(method, f"/api/sessions/{ROOM}{suffix}", headers=outsider)
            missing = await server.http(method, f"/api/sessions/NOROOM{suffix}", headers=outsider)
            assert private[0] == missing[0] == 404
            assert private[1]["error"] == missing[1]["error"]
            assert private[1]["message"].replace(ROOM, "X") == missing[1]["message"].replace(
                "NOROOM", "X"
            )


@pytest.mark.parametrize("mode", ["optional", "required"])
async def test_a_user_lists_only_their_own_sessions(tmp_path: Path, mode: str) -> None:
    async with running_server(settings_for(tmp_path, mode)) as server, private_room(server):
        assert await server.flush(ROOM)
        status, body = await server.http(
            "GET", f"/api/sessions/user/{OWNER}", headers=bearer(token(OWNER))
        )
        assert status == 200 and [s["roomId"] for s in body["sessions"]] == [ROOM]
        status, body = await server.http(
            "GET", f"/api/sessions/user/{OWNER}", headers=bearer(ADMIN)
        )
        assert status == 200 and len(body["sessions"]) == 1
        status, _ = await server.http(
            "GET", f"/api/sessions/user/{OWNER}", headers=bearer(token(OTHER))
        )
        assert status == 403
        status, _ = await server.http("GET", f"/api/sessions/user/{OWNER}")
        assert status == 401


async def test_create_makes_the_token_user_the_owner(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server:
        mine = bearer(token(OWNER))
        status, body = await server.http(
            "POST",
            "/api/sessions/create",
            json={"roomId": "MADE", "creatorName": "Owner", "creatorUserId": OTHER},
            headers=mine,
        )
        assert status == 403, body  # not the token's user
        status, body = await server.http(
            "POST",
            "/api/sessions/create",
            json={"roomId": "MADE", "creatorName": "O"},
            headers=mine,
        )
        assert status == 201, body
        status, body = await server.http("GET", "/api/sessions/MADE/access", headers=mine)
        assert status == 200 and body["access"]["owner"] == OWNER
        status, _ = await server.http(
            "POST",
            "/api/sessions/create",
            json={"roomId": "MADE", "creatorName": "Other"},
            headers=bearer(token(OTHER)),
        )
        assert status == 400  # exists


# -- live changes: downgrade, revocation, expiry -----------------------------------------------


async def test_a_viewer_sees_an_editors_keystrokes_and_cannot_type(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server, private_room(server):
        editor, viewer = await connect(server, token(EDITOR)), await connect(server, token(VIEWER))
        try:
            await editor.join(ROOM, "Editor")
            await viewer.join(ROOM, "Viewer")
            for text in ("a", "ab", "abc"):
                assert (await editor.call("codeChange", {"roomId": ROOM, "code": text}))["ok"]
            assert (await viewer.next("codeUpdate", 3))["code"] == "abc"
            refused = await viewer.call("codeChange", {"roomId": ROOM, "code": "mine"})
            assert refused["error"]["code"] == "read_only"
            assert (await viewer.next("error"))["code"] == "read_only"
            await editor.quiet()
            assert [u["code"] for u in editor.events["codeUpdate"]] == []
            assert server.rooms.rooms[ROOM].code == "abc"
            chat = await viewer.call("chatMessage", {"roomId": ROOM, "message": "nice"})
            assert chat["ok"] is True  # viewers chat unless the owner says otherwise
        finally:
            await editor.close()
            await viewer.close()


async def test_an_owner_downgrades_an_editor_mid_typing(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server, private_room(server):
        editor = await connect(server, token(EDITOR))
        try:
            await editor.join(ROOM, "Editor")
            typing = asyncio.create_task(_type(editor, "abcdefghijklmnopqrstuvwxyz"))
            await asyncio.sleep(0.1)
            status, _ = await server.http(
                "PUT",
                f"/api/sessions/{ROOM}/access",
                json={"members": [{"userId": EDITOR, "role": "viewer"}]},
                headers=bearer(token(OWNER)),
            )
            assert status == 200
            told = await editor.next("accessChanged")
            assert told["role"] == "viewer" and told["roomId"] == ROOM
            answers = await typing
            refused = [a for a in answers if not a["ok"]]
            assert refused and all(a["error"]["code"] == "read_only" for a in refused)
            # Once refused, every later keystroke is refused too.
            first = answers.index(refused[0])
            assert all(not a["ok"] for a in answers[first:])
            after = await editor.call("codeChange", {"roomId": ROOM, "code": "more"})
            assert after["error"]["code"] == "read_only"
            accepted = [a for a in answers if a["ok"]]
            assert server.rooms.rooms[ROOM].version >= len(accepted)
        finally:
            await editor.close()


async def _type(client: Client, letters: str) -> list[Any]:
    answers = []
    for end in range(1, len(letters) + 1):
        answers.append(await client.call("codeChange", {"roomId": ROOM, "code": letters[:end]}))
        await asyncio.sleep(0.02)
    return answers


async def test_a_removed_member_is_disconnected_within_a_second(tmp_path: Path) -> None:
    async with (
        running_server(settings_for(tmp_path, "required")) as server,
        private_room(server) as owner,
    ):
        editor = await connect(server, token(EDITOR))
        try:
            await editor.join(ROOM, "Editor")
            await owner.next("userJoined")
            started = time.monotonic()
            status, _ = await server.http(
                "PUT",
                f"/api/sessions/{ROOM}/access",
                json={"members": [{"userId": VIEWER, "role": "viewer"}]},
                headers=bearer(token(OWNER)),
            )
            assert status == 200
            error = await editor.next("error", within=1.0)
            assert error["code"] == "access_revoked"
            await asyncio.wait_for(editor.closed.wait(), 1.0)
            assert time.monotonic() - started < 1.0
            assert (await owner.next("userLeft"))["userName"] == "Editor"
            assert server.app[EVENTS_KEY].gate.revoked == 1
            again = await connect(server, token(EDITOR))
            try:
                answer = await again.join(ROOM, "Editor")
                assert answer["error"]["code"] == "forbidden"
            finally:
                await again.close()
        finally:
            await editor.close()


async def test_a_token_expiring_mid_session_disconnects_unless_refreshed(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server:
        lapsing = await connect(server, token(OWNER, expires_in=1.5))
        refreshing = await connect(server, token(EDITOR, expires_in=1.5))
        try:
            await lapsing.join(ROOM, "Owner")
            await refreshing.join(ROOM, "Editor")
            fresh = token(EDITOR, expires_in=3600)
            refreshed = await refreshing.call("refreshToken", {"token": fresh})
            assert refreshed["ok"] is True
            wrong = await refreshing.call("refreshToken", {"token": token(OTHER)})
            assert wrong["error"]["code"] == "forbidden"
            error = await lapsing.next("error", within=3.0)
            assert error["code"] == "token_expired"
            await asyncio.wait_for(lapsing.closed.wait(), 1.0)
            await asyncio.sleep(0.5)
            assert refreshing.sio.connected
            answer = await refreshing.call("codeChange", {"roomId": ROOM, "code": "still here"})
            assert answer["ok"] is True
        finally:
            await lapsing.close()
            await refreshing.close()


# -- invites -----------------------------------------------------------------------------------


async def test_an_invite_is_used_once_then_refused(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "required")) as server, private_room(server):
        status, body = await server.http(
            "POST",
            f"/api/sessions/{ROOM}/invites",
            json={"role": "editor", "expiresIn": 600},
            headers=bearer(token(OWNER)),
        )
        assert status == 201, body
        invite = body["token"]
        first = await connect(server, token(OTHER))
        second = await connect(server, token("u-late"), invite=invite)
        try:
            answer = await first.join(ROOM, "Invited", invite=invite)
            assert answer["ok"] is True and answer["role"] == "editor"
            refused = await second.join(ROOM, "Late")
            assert refused["error"]["code"] == "invite_used"
            status, body = await server.http(
                "GET", f"/api/sessions/{ROOM}/access", headers=bearer(token(OWNER))
            )
            assert {"userId": OTHER, "role": "editor"} in body["access"]["members"]
            await first.close()
            again = await connect(server, token(OTHER))  # a member now: no invite needed
            try:
                assert (await again.join(ROOM, "Invited"))["role"] == "editor"
            finally:
                await again.close()
        finally:
            await first.close()
            await second.close()


async def test_an_invite_for_another_room_or_forged_is_refused(tmp_path: Path) -> None:
    async with running_server(settings_for(tmp_path, "optional")) as server, private_room(server):
        status, body = await server.http(
            "POST", f"/api/sessions/{ROOM}/invites", json={}, headers=bearer(token(OWNER))
        )
        assert status == 201
        forged = jwt.encode(
            {"iss": "codecollab-invite", "jti": "x", "room": ROOM, "role": "editor",
             "exp": int(time.time()) + 60},
            "not-the-key-not-the-key-not-the-key",
            algorithm="HS256",
        )  # fmt: skip
        client = await connect(server, token(OTHER))
        try:
            other = await client.join("ROOM2", "X", invite=body["token"])
            assert other["error"]["code"] == "invalid_invite"
            fake = await client.join(ROOM, "X", invite=forged)
            assert fake["error"]["code"] == "invalid_invite"
        finally:
            await client.close()
        anonymous = await connect(server, None)
        try:
            answer = await anonymous.join(ROOM, "Anon", invite=body["token"])
            assert answer["error"]["code"] == "forbidden"  # sign in to use an invite
        finally:
            await anonymous.close()


async def test_rules_survive_a_restart(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "required")
    async with running_server(settings) as server, private_room(server):
        assert await server.flush(ROOM)
    async with running_server(settings) as server:
        status, body = await server.http(
            "GET", f"/api/sessions/{ROOM}/access", headers=bearer(token(OWNER))
        )
        assert status == 200
        assert body["access"]["visibility"] == "private"
        assert {m["userId"] for m in body["access"]["members"]} == {EDITOR, VIEWER}
        status, _ = await server.http("GET", f"/api/sessions/{ROOM}", headers=bearer(token(OTHER)))
        assert status == 404


# -- RS256 tokens from a JWKS ------------------------------------------------------------------


async def test_rs256_tokens_are_verified_with_keys_from_a_jwks(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public.update(kid="k1", use="sig", alg="RS256")

    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [public]})

    app = web.Application()
    app.router.add_get("/jwks.json", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/jwks.json"
    claims = {"sub": OWNER, "exp": int(time.time()) + 600}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    unknown = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k2"})
    settings = fast_settings(
        tmp_path, auth_mode="required", jwt_jwks_url=url, invite_secret="i" * 32
    )
    try:
        async with running_server(settings) as server:
            client = await connect(server, good)
            try:
                assert (await client.join(ROOM, "Owner"))["role"] == "owner"
            finally:
                await client.close()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await connect(server, unknown)
            hs = token(OWNER)  # no JWT_SECRET: HS256 is not accepted
            status, _ = await server.http("GET", f"/api/sessions/{ROOM}", headers=bearer(hs))
            assert status == 401
    finally:
        await runner.cleanup()


def test_an_enforced_mode_without_keys_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JWT_SECRET or JWT_JWKS_URL"):
        fast_settings(tmp_path, auth_mode="required")


# -- cluster mode: rules reach every process -----------------------------------------------------


async def test_revocation_and_invites_reach_every_process(
    tmp_path: Path, needs_redis: None
) -> None:
    """The owner changes the rules on one process: a member connected to the other is put out
    within a second; an invite presented on both processes at once is used once."""
    with cluster_of(2):
        async with running_server(settings_for(tmp_path, "required")) as server:
            assert len(server.apps) == 2
            owner = await connect(server, token(OWNER))  # process 0
            editor = await connect(server, token(EDITOR))  # process 1
            try:
                await owner.join(ROOM, "Owner")
                assert (await editor.join(ROOM, "Editor"))["role"] == "editor"
                assert [len(app[ROOMS_KEY].room_of) for app in server.apps] == [1, 1]
                status, body = await server.http(
                    "POST",
                    f"/api/sessions/{ROOM}/invites",
                    json={"role": "viewer"},
                    headers=bearer(token(OWNER)),
                    process=1,
                )
                assert status == 201
                invite = body["token"]
                first = await connect(server, token("u-a"))  # process 0
                second = await connect(server, token("u-b"))  # process 1
                answers = await asyncio.gather(
                    first.join(ROOM, "A", invite=invite), second.join(ROOM, "B", invite=invite)
                )
                assert sorted(a["ok"] for a in answers) == [False, True], answers
                assert [a["error"]["code"] for a in answers if not a["ok"]] == ["invite_used"]
                await first.close()
                await second.close()

                started = time.monotonic()
                status, _ = await server.http(
                    "PUT",
                    f"/api/sessions/{ROOM}/access",
                    json={"visibility": "private", "members": []},
                    headers=bearer(token(OWNER)),
                    process=0,
                )
                assert status == 200
                assert (await editor.next("error", within=1.0))["code"] == "access_revoked"
                await asyncio.wait_for(editor.closed.wait(), 1.0)
                assert time.monotonic() - started < 1.0
                assert owner.sio.connected
            finally:
                await owner.close()
                await editor.close()
