"""Engine.IO requests as the server needs them: bodies read whole, and stamped with the time
they arrived.

python-engineio reads a long-polling POST body with a single `read(length)`, which aiohttp
may answer short for bodies of a few hundred KB, so a legal event over polling could arrive
cut (and be refused as malformed JSON). The arrival time of the handshake request, compared
with when the client's Socket.IO CONNECT arrives, gives the connection's round trip."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import StreamReader


class WholeBody:
    """`wsgi.input` whose `read(n)` returns n bytes, or all there is before the end."""

    def __init__(self, content: StreamReader) -> None:
        self.content = content

    async def read(self, length: int = -1) -> bytes:
        if length < 0:
            return await self.content.read()
        chunks: list[bytes] = []
        remaining = length
        while remaining > 0:
            chunk = await self.content.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)


ARRIVED = "codecollab.arrived"  # the environ key of a request's arrival (monotonic seconds)


def whole_bodies(translate: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """Wrap engineio's aiohttp `translate_request`: the body read whole, the arrival stamped."""

    def translate_request(request: Any) -> dict[str, Any]:
        environ = translate(request)
        environ["wsgi.input"] = WholeBody(request.content)
        environ[ARRIVED] = time.monotonic()
        return environ

    return translate_request


def answer_polls_on_close(eio: Any) -> None:
    """When an Engine.IO socket closes, a long-polling GET still waiting on it is answered at
    once. python-engineio holds it until the ping timeout (30 s), and a client that closes
    (the Python client does) waits for that answer."""
    handler = eio.handlers["disconnect"]

    async def disconnect(eio_sid: str, reason: object = None) -> Any:
        try:
            return await handler(eio_sid, reason)
        finally:
            socket = eio.sockets.get(eio_sid)
            if socket is not None and not socket.upgraded:
                socket.queue.put_nowait(None)  # poll() answers [] for it

    eio.handlers["disconnect"] = disconnect
