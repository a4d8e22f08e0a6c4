"""GET /api/openapi.json: a valid OpenAPI 3.1 document with a path for every REST route, and
every real answer of every route (successes and errors, from running servers) validates
against the schema the document gives for that status."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakes import FlakyStore
from tests.support import Client, RunningServer, fast_settings, running_server

DOC_URI = "urn:codecollab:openapi"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
UNDOCUMENTED_ROUTES = {"/api/openapi.json"}  # the document does not describe itself
ROOM = "OPENAPI"
QUIET = {"reconnect_grace_seconds": 0, "rest_requests_per_minute": 100_000}


async def fetch_document(server: RunningServer) -> dict[str, Any]:
    status, document = await server.http("GET", "/api/openapi.json")
    assert status == 200, document
    assert isinstance(document, dict)
    return document


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) into the document."""
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def app_routes(server: RunningServer) -> set[tuple[str, str]]:
    """(path template, method) of every REST route the app serves."""
    routes = set()
    for route in server.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/") and route.method not in ("HEAD", "*"):
            routes.add((re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path), route.method.lower()))
    return routes


# -- the document itself -------------------------------------------------------------------------


async def test_the_document_is_valid_openapi_3_1(server: RunningServer) -> None:
    document = await fetch_document(server)
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]
    # The OpenAPI 3.1 meta-schema, then dangling references and path parameters; raises.
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_the_document_has_a_path_for_every_route(server: RunningServer) -> None:
    await check_every_route_is_described(server)


async def check_every_route_is_described(server: RunningServer) -> None:
    document = await fetch_document(server)
    served = {(path, method) for path, method in app_routes(server)}
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }
    assert served - {(p, m) for p, m in served if p in UNDOCUMENTED_ROUTES} == described
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation["responses"], (path, method)
            assert any(status.startswith("2") for status in operation["responses"])
            declared = item.get("parameters", []) + operation.get("parameters", [])
            in_path = {p["name"] for p in declared if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            assert all(p["required"] for p in declared if p["in"] == "path")
            archives = ["application/zip"] if path.endswith(("/export", "/import")) else []
            if method == "post":
                body = operation["requestBody"]["content"]
                assert list(body) == ["application/json", *archives], (path, body)
            for status, response in operation["responses"].items():
                assert response["description"], (path, method, status)
                media = ["application/json", *(archives if status == "200" else [])]
                assert list(response["content"]) == media, (path, status)


async def test_every_reference_resolves_and_every_schema_is_valid(server: RunningServer) -> None:
    document = await fetch_document(server)
    schemas = document["components"]["schemas"]
    assert schemas
    for ref in refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert isinstance(resolve(document, ref), dict), ref
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        assert schema.get("type") == "object", name


# -- real answers against the document -------------------------------------------------------------


@dataclass
class Answers:
    """Validates real answers against the document; remembers which statuses were seen."""

    document: dict[str, Any]
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)

    def documented(self) -> set[tuple[str, str, str]]:
        return {
            (path, method, status)
            for path, item in self.document["paths"].items()
            for method, operation in item.items()
            if method in METHODS
            for status in operation["responses"]
        }

    def check(self, template: str, method: str, status: int, content_type: str, body: Any) -> None:
        operation = self.document["paths"][template][method]
        assert str(status) in operation["responses"], (
            f"{method.upper()} {template} answered {status}, which the document does not list",
            body,
        )
        assert content_type == "application/json", (template, status, content_type)
        location = pointer(
            "paths",
            template,
            method,
            "responses",
            str(status),
            "content",
            "application/json",
            "schema",
        )
        validator = Draft202012Validator(
            {"$ref": DOC_URI + location},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert problems == [], (method.upper(), template, status, body)
        self.seen.add((template, method, str(status)))


async def call(
    server: RunningServer,
    answers: Answers,
    template: str,
    method: str,
    expected: int,
    *,
    path: str | None = None,
    body: bytes | None = None,
    json_body: Any = None,
    content_type: str = "application/json",
    token: str | None = None,
) -> Any:
    """Request `path` (default: the template), expect this status, validate the answer."""
    data = json.dumps(json_body).encode() if json_body is not None else body
    headers = {"Content-Type": content_type} if data is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method.upper(), server.url + (path or template), data=data, headers=headers
        ) as response,
    ):
        raw = await response.read()
        status, media = response.status, response.content_type
    assert status == expected, (method, path or template, status, raw[:300])
    parsed = json.loads(raw)
    answers.check(template, method, status, media, parsed)
    return parsed


@asynccontextmanager
async def serving(
    tmp_path: Path, store: Any = None, **overrides: Any
) -> AsyncIterator[RunningServer]:
    settings = fast_settings(tmp_path, **{**QUIET, **overrides})
    async with running_server(settings, store) as server:
        yield server


CREATE = "/api/sessions/create"
SESSION = "/api/sessions/{roomId}"
UPDATE = "/api/sessions/{roomId}/update"
USER = "/api/sessions/user/{userId}"
FILES = "/api/sessions/{roomId}/files"
FILE = "/api/sessions/{roomId}/files/{fileId}"
CONTEXT = "/api/users/{userId}/context"
HISTORY = "/api/sessions/{roomId}/history"
VERSION = "/api/sessions/{roomId}/versions/{version}"
DIFF = "/api/sessions/{roomId}/diff"
RESTORE = "/api/sessions/{roomId}/restore"
CHECKPOINTS = "/api/sessions/{roomId}/checkpoints"
EXPORT = "/api/sessions/{roomId}/export"
IMPORT = "/api/sessions/import"


async def test_every_documented_answer_of_every_route_matches_its_schema(tmp_path: Path) -> None:
    # A small code limit keeps the 413 body small (the limit is max_code_bytes * 6 + 64 KiB).
    async with serving(tmp_path / "main", max_code_bytes=1000, max_file_bytes=1000) as server:
        answers = Answers(await fetch_document(server))
        too_big = b'{"code": "' + b"a" * 80_000 + b'"}'

        # Successes, with every optional part present: participants, chat, sessions.
        created = {"roomId": ROOM, "creatorName": "Ann", "creatorUserId": "user-ann"}
        await call(server, answers, CREATE, "post", 201, json_body=created)
        client = Client()
        await client.connect(server.url)
        try:
            assert (await client.join(ROOM, "Bob", "user-bob"))["ok"]
            chat = {"roomId": ROOM, "message": {"id": "m-1", "message": "hi"}}
            assert (await client.call("chatMessage", chat))["ok"]
            assert (await client.call("chatMessage", {"roomId": ROOM, "message": "again"}))["ok"]
            anonymous = Client()
            await anonymous.connect(server.url)
            assert (await anonymous.call("joinRoom", {"roomId": ROOM, "userName": None}))["ok"]
            await anonymous.close()
            session = await call(server, answers, SESSION, "get", 200, path=f"/api/sessions/{ROOM}")
            assert len(session["session"]["messages"]) == 2
            assert len(session["session"]["participants"]) == 3
            update = {"code": "x", "language": "go", "participants": [{"name": "Cy"}]}
            await call(
                server,
                answers,
                UPDATE,
                "post",
                200,
                path=f"/api/sessions/{ROOM}/update",
                json_body=update,
            )
            files_path = f"/api/sessions/{ROOM}/files"
            saved = {"fileId": "a.py", "name": "a.py", "content": "print(1)", "mime": "text/x"}
            await call(server, answers, FILES, "post", 200, path=files_path, json_body=saved)
            listed_files = await call(server, answers, FILES, "get", 200, path=files_path)
            assert [f["fileId"] for f in listed_files["files"]] == ["a.py"]
            one = await call(server, answers, FILE, "get", 200, path=files_path + "/a.py")
            assert one["file"]["content"] == "print(1)"
            await call(server, answers, FILE, "delete", 200, path=files_path + "/a.py")
            await call(server, answers, FILE, "get", 404, path=files_path + "/a.py")
            await call(server, answers, FILE, "delete", 404, path=files_path + "/a.py")
            await call(server, answers, FILES, "post", 400, path=files_path, json_body={})
            await call(server, answers, FILES, "post", 400, path=files_path, body=b"{")
            await call(server, answers, FILES, "post", 413, path=files_path, body=too_big)
            await call(
                server, answers, FILES, "post", 415, path=files_path, body=b"{}",
                content_type="text/plain",
            )  # fmt: skip
            await call(server, answers, FILES, "get", 400, path="/api/sessions/a.b/files")
            await call(server, answers, FILE, "get", 400, path="/api/sessions/a.b/files/x")
            await call(server, answers, FILE, "delete", 400, path="/api/sessions/a.b/files/x")
            nosuch = "/api/sessions/NOSUCH/files"
            await call(server, answers, FILES, "get", 404, path=nosuch)
            await call(server, answers, FILES, "post", 404, path=nosuch, json_body=saved)

            # History: browse, a version, a diff, a checkpoint, a restore.
            room = f"/api/sessions/{ROOM}"
            typed = await client.call("codeChange", {"roomId": ROOM, "code": "typed\n"})
            first = typed["version"]
            listed_history = await call(server, answers, HISTORY, "get", 200,
                                        path=room + "/history?limit=1")  # fmt: skip
            assert listed_history["versions"][0]["version"] >= first
            await call(server, answers, HISTORY, "get", 400, path=room + "/history?limit=0")
            await call(server, answers, HISTORY, "get", 404, path="/api/sessions/NOSUCH/history")
            await call(server, answers, VERSION, "get", 200, path=f"{room}/versions/{first}")
            await call(server, answers, VERSION, "get", 404, path=f"{room}/versions/99999")
            await call(server, answers, VERSION, "get", 400, path="/api/sessions/a.b/versions/1")
            await call(
                server, answers, DIFF, "get", 200, path=f"{room}/diff?from={first}&to={first}"
            )
            await call(server, answers, DIFF, "get", 400, path=f"{room}/diff?from=x&to=1")
            await call(server, answers, DIFF, "get", 404, path=f"{room}/diff?from=0&to=99999")
            made = await call(server, answers, CHECKPOINTS, "post", 201, path=room + "/checkpoints",
                              json_body={"name": "cp"})  # fmt: skip
            await call(server, answers, CHECKPOINTS, "post", 400, path=room + "/checkpoints",
                       json_body={"name": ""})  # fmt: skip
            nosuch_checkpoints = "/api/sessions/NOSUCH/checkpoints"
            await call(server, answers, CHECKPOINTS, "post", 404, path=nosuch_checkpoints,
                       json_body={"name": "x"})  # fmt: skip
            await call(server, answers, CHECKPOINTS, "post", 413, path=room + "/checkpoints",
                       body=too_big)  # fmt: skip
            await call(server, answers, CHECKPOINTS, "post", 415, path=room + "/checkpoints",
                       body=b"{}", content_type="text/plain")  # fmt: skip
            restore = {"checkpointId": made["checkpoint"]["id"]}
            await call(server, answers, RESTORE, "post", 200, path=room + "/restore",
                       json_body=restore)  # fmt: skip
            await call(server, answers, RESTORE, "post", 400, path=room + "/restore", json_body={})
            await call(server, answers, RESTORE, "post", 404, path=room + "/restore",
                       json_body={"version": 99999})  # fmt: skip
            await call(server, answers, RESTORE, "post", 413, path=room + "/restore", body=too_big)
            await call(server, answers, RESTORE, "post", 415, path=room + "/restore", body=b"{}",
                       content_type="text/plain")  # fmt: skip
            exported = await call(server, answers, EXPORT, "get", 200, path=room + "/export")
            await call(server, answers, EXPORT, "get", 400, path=room + "/export?format=pdf")
            await call(server, answers, EXPORT, "get", 404, path="/api/sessions/NOSUCH/export")
            await call(server, answers, IMPORT, "post", 201, json_body=exported)
            await call(server, answers, IMPORT, "post", 400, json_body={"format": "x"})
            await call(server, answers, IMPORT, "post", 413, body=too_big)
            await call(server, answers, IMPORT, "post", 415, body=b"{}", content_type="text/plain")
        finally:
            await client.close()
        listed = await call(server, answers, USER, "get", 200, path="/api/sessions/user/user-ann")
        assert ROOM in [s["roomId"] for s in listed["sessions"]]  # and its imported copy
        await call(server, answers, USER, "get", 200, path="/api/sessions/user/nobody")
        await call(server, answers, "/api/health", "get", 200)
        await call(server, answers, "/api/ready", "get", 200)
        mine = "/api/users/user-ann/context"
        await call(server, answers, CONTEXT, "get", 200, path=mine)
        await call(server, answers, CONTEXT, "put", 200, path=mine, json_body={"theme": "dark"})
        await call(server, answers, CONTEXT, "put", 400, path=mine, json_body=[1])
        await call(server, answers, CONTEXT, "put", 400, path=mine, body=b"{")
        await call(
            server, answers, CONTEXT, "get", 400, path="/api/users/" + "u" * 129 + "/context"
        )
        await call(server, answers, CONTEXT, "put", 413, path=mine,
                   json_body={"big": "x" * 70_000})  # fmt: skip
        await call(server, answers, CONTEXT, "put", 415, path=mine, body=b"{}",
                   content_type="text/plain")  # fmt: skip

        # Refusals.
        await call(server, answers, CREATE, "post", 400, json_body={"roomId": "X"})
        await call(server, answers, CREATE, "post", 400, json_body={**created, "roomId": "a b"})
        await call(server, answers, CREATE, "post", 400, json_body=created)  # exists
        await call(server, answers, CREATE, "post", 400, body=b"{nope")
        await call(server, answers, CREATE, "post", 413, body=too_big)
        await call(server, answers, CREATE, "post", 415, body=b"{}", content_type="text/plain")
        await call(server, answers, SESSION, "get", 400, path="/api/sessions/a.b")
        await call(server, answers, SESSION, "get", 400, path=f"/api/sessions/{ROOM}?limit=0")
        await call(server, answers, SESSION, "get", 404, path="/api/sessions/NOSUCH")
        await call(server, answers, SESSION, "delete", 400, path="/api/sessions/a.b")
        await call(server, answers, SESSION, "delete", 404, path="/api/sessions/NOSUCH")
        update_path = f"/api/sessions/{ROOM}/update"
        await call(server, answers, UPDATE, "post", 400, path=update_path, json_body={"code": 1})
        await call(server, answers, UPDATE, "post", 400, path=update_path, body=b"[")
        await call(
            server, answers, UPDATE, "post", 400, path="/api/sessions/a.b/update", json_body={}
        )
        await call(
            server, answers, UPDATE, "post", 404, path="/api/sessions/NOSUCH/update", json_body={}
        )
        await call(server, answers, UPDATE, "post", 413, path=update_path, body=too_big)
        await call(
            server,
            answers,
            UPDATE,
            "post",
            415,
            path=update_path,
            body=b"{}",
            content_type="text/plain",
        )
        await call(server, answers, USER, "get", 400, path="/api/sessions/user/" + "u" * 129)
        await call(server, answers, SESSION, "delete", 200, path=f"/api/sessions/{ROOM}")

    # 429 from every limited route.
    async with serving(tmp_path / "limited", rest_requests_per_minute=1) as server:
        await call(server, answers, USER, "get", 200, path="/api/sessions/user/u")
        await call(server, answers, CREATE, "post", 429, json_body=created)
        await call(server, answers, SESSION, "get", 429, path="/api/sessions/ANY")
        await call(server, answers, SESSION, "delete", 429, path="/api/sessions/ANY")
        await call(
            server, answers, UPDATE, "post", 429, path="/api/sessions/ANY/update", json_body={}
        )
        await call(server, answers, USER, "get", 429, path="/api/sessions/user/u")
        for template, method in ((FILES, "post"), (FILES, "get"), (FILE, "get"), (FILE, "delete")):
            path = template.format(roomId="ANY", fileId="x")
            await call(server, answers, template, method, 429, path=path, json_body={})
        for method in ("get", "put"):
            path = CONTEXT.format(userId="u")
            await call(server, answers, CONTEXT, method, 429, path=path, json_body={})
        for template, method in (
            (HISTORY, "get"), (VERSION, "get"), (DIFF, "get"), (RESTORE, "post"),
            (CHECKPOINTS, "post"), (EXPORT, "get"), (IMPORT, "post"),
        ):  # fmt: skip
            path = template.format(roomId="ANY", version=1)
            await call(server, answers, template, method, 429, path=path, json_body={})

    # 410 for an expired session; 503 from every session route while the store is down.
    store = FlakyStore(tmp_path / "expiring.sqlite3")
    async with serving(
        tmp_path / "expiring", store, session_ttl_seconds=0.3, room_idle_seconds=0.05
    ) as server:
        await call(server, answers, CREATE, "post", 201, json_body={**created, "roomId": "OLD"})
        await asyncio.sleep(0.45)
        await call(server, answers, SESSION, "get", 410, path="/api/sessions/OLD")
        store.failing = True
        await call(server, answers, "/api/ready", "get", 503)
        for template, method, path, json_body in (p.values for p in STORE_DOWN_ROUTES):
            await call(server, answers, template, method, 503, path=path, json_body=json_body)
        store.failing = False

    assert answers.documented() - answers.seen == set()  # every documented answer was seen


IMPORTABLE = {
    "format": "codecollab-session", "formatVersion": 1, "roomId": "X", "code": "",
    "language": "python", "createdAt": "2026-01-01T00:00:00.000Z",
    "exportedAt": "2026-01-01T00:00:00.000Z",
}  # fmt: skip
STORE_DOWN_ROUTES = [
    pytest.param(
        CREATE, "post", "/api/sessions/create", {"roomId": "NEW", "creatorName": "A"}, id="create"
    ),
    pytest.param(SESSION, "get", "/api/sessions/COLD", None, id="get"),
    pytest.param(SESSION, "delete", "/api/sessions/COLD", None, id="delete"),
    pytest.param(UPDATE, "post", "/api/sessions/COLD/update", {"code": "x"}, id="update"),
    pytest.param(USER, "get", "/api/sessions/user/user-ann", None, id="user-sessions"),
    pytest.param(
        FILES, "post", "/api/sessions/COLD/files", {"fileId": "f", "name": "f"}, id="save-file"
    ),
    pytest.param(FILES, "get", "/api/sessions/COLD/files", None, id="files"),
    pytest.param(FILE, "get", "/api/sessions/COLD/files/f", None, id="file"),
    pytest.param(FILE, "delete", "/api/sessions/COLD/files/f", None, id="delete-file"),
    pytest.param(CONTEXT, "get", "/api/users/u/context", None, id="context"),
    pytest.param(EXPORT, "get", "/api/sessions/COLD/export", None, id="export"),
    pytest.param(IMPORT, "post", "/api/sessions/import", IMPORTABLE, id="import"),
    pytest.param(HISTORY, "get", "/api/sessions/COLD/history", None, id="history"),
    pytest.param(VERSION, "get", "/api/sessions/COLD/versions/1", None, id="version"),
    pytest.param(DIFF, "get", "/api/sessions/COLD/diff?from=0&to=1", None, id="diff"),
    pytest.param(RESTORE, "post", "/api/sessions/COLD/restore", {"version": 1}, id="restore"),
    pytest.param(
        CHECKPOINTS, "post", "/api/sessions/COLD/checkpoints", {"name": "c"}, id="checkpoint"
    ),
    pytest.param(CONTEXT, "put", "/api/users/u/context", {"a": 1}, id="put-context"),
]


@pytest.mark.parametrize(("template", "method", "path", "json_body"), STORE_DOWN_ROUTES)
async def test_while_the_store_is_down_the_session_routes_answer_503_json(
    tmp_path: Path, template: str, method: str, path: str, json_body: Any
) -> None:
    store = FlakyStore(tmp_path / "down.sqlite3")
    async with serving(tmp_path, store) as server:
        document = await fetch_document(server)
        store.failing = True
        data = json.dumps(json_body).encode() if json_body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method.upper(), server.url + path, data=data, headers=headers) as reply,
        ):
            assert reply.status == 503, await reply.text()
            assert reply.content_type == "application/json"
            body = await reply.json()
        store.failing = False
    error_schema = {"$ref": DOC_URI + "#/components/schemas/ErrorAnswer"}
    registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    assert list(Draft202012Validator(error_schema, registry=registry).iter_errors(body)) == []


@pytest.mark.parametrize(("template", "method", "path", "json_body"), STORE_DOWN_ROUTES)
async def test_the_503_answer_of_the_session_routes_is_documented(
    server: RunningServer, template: str, method: str, path: str, json_body: Any
) -> None:
    document = await fetch_document(server)
    responses = document["paths"][template][method]["responses"]
    assert "503" in responses, sorted(responses)
    schema = responses["503"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorAnswer"}


# -- with access control ---------------------------------------------------------------------

SECRET = "an-openapi-test-secret-of-32-bytes!"


def user_token(user: str, expires_in: float = 600) -> str:
    import time

    import jwt

    return jwt.encode({"userId": user, "exp": int(time.time() + expires_in)}, SECRET, "HS256")


ACCESS = "/api/sessions/{roomId}/access"
INVITES = "/api/sessions/{roomId}/invites"


@pytest.mark.parametrize("mode", ["optional", "required"])
async def test_with_access_control_every_route_and_answer_is_documented(
    tmp_path: Path, mode: str
) -> None:
    """The bearer scheme, the access routes, and 401/403 on the session routes; every answer
    of the access routes matches its schema."""
    async with serving(tmp_path, auth_mode=mode, jwt_secret=SECRET) as server:
        await check_every_route_is_described(server)
        document = await fetch_document(server)
        validate(document, cls=OpenAPIV31SpecValidator)
        scheme = document["components"]["securitySchemes"]["bearerAuth"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        get = document["paths"][SESSION]["get"]
        anonymous_allowed = {} in get["security"]
        assert anonymous_allowed == (mode == "optional")
        assert {"401", "403"} <= set(get["responses"])
        answers = Answers(document)
        owner, other = user_token("owner"), user_token("other")
        created = {"roomId": ROOM, "creatorName": "Owner"}
        await call(server, answers, CREATE, "post", 201, json_body=created, token=owner)
        path = f"/api/sessions/{ROOM}/access"
        await call(server, answers, ACCESS, "get", 200, path=path, token=owner)
        private = {"visibility": "private", "members": [{"userId": "ed", "role": "editor"}]}
        await call(server, answers, ACCESS, "put", 200, path=path, json_body=private, token=owner)
        await call(server, answers, ACCESS, "put", 400, path=path, json_body={"visibility": 1},
                   token=owner)  # fmt: skip
        await call(server, answers, ACCESS, "get", 403, path=path, token=user_token("ed"))
        await call(server, answers, ACCESS, "get", 404, path=path, token=other)
        await call(server, answers, ACCESS, "get", 401, path=path, token="forged")
        invites = f"/api/sessions/{ROOM}/invites"
        await call(server, answers, INVITES, "post", 201, path=invites, json_body={}, token=owner)
        await call(server, answers, INVITES, "post", 400, path=invites,
                   json_body={"role": "owner"}, token=owner)  # fmt: skip
        await call(server, answers, INVITES, "post", 403, path=invites, json_body={},
                   token=user_token("ed"))  # fmt: skip
        await call(server, answers, SESSION, "get", 404, path=f"/api/sessions/{ROOM}", token=other)
        await call(server, answers, SESSION, "get", 401, path=f"/api/sessions/{ROOM}",
                   token=user_token("owner", expires_in=-60))  # fmt: skip
        await call(server, answers, SESSION, "delete", 403, path=f"/api/sessions/{ROOM}",
                   token=user_token("ed"))  # fmt: skip
        await call(server, answers, USER, "get", 403, path="/api/sessions/user/owner", token=other)
