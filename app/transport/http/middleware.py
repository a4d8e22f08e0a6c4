"""HTTP middlewares: JSON errors for every failure, CORS, and security headers."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from app.domain.errors import DomainError
from app.domain.throttle import ConnectionGuard

log = logging.getLogger(__name__)
HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(status: int, error: str, message: str) -> web.Response:
    return json_response({"error": error, "message": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    """Every failure answers JSON `{error, message}`; nothing answers an HTML page or a 500."""
    try:
        return await handler(request)
    except DomainError as error:
        return error_response(error.status, error.title, error.message)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        # As the original server: a path without a route for this method is not found.
        return error_response(404, "Endpoint not found", f"Cannot {request.method} {request.path}")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "Payload too large", "The request body is over the limit")
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, error.reason, error.text or error.reason)


def cors(allowed: list[str] | str) -> Middleware:
    """Answer preflights and tag responses for the allowed origins (`*` allows any)."""

    def allows(origin: str) -> bool:
        return allowed == "*" or origin in allowed

    @web.middleware
    async def middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            request.method == "OPTIONS"
            and origin
            and "Access-Control-Request-Method" in request.headers
        ):
            if not allows(origin):
                return error_response(403, "Origin not allowed", f"{origin} is not allowed")
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            requested = request.headers.get("Access-Control-Request-Headers")
            if requested:
                response.headers["Access-Control-Allow-Headers"] = requested
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if origin and allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    return middleware


@web.middleware
async def security_headers(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


UNLIMITED_PATHS = ("/api/health", "/api/ready")


def rest_rate_limit(guard: ConnectionGuard) -> Middleware:
    """REST requests per client address; health and readiness are exempt."""

    @web.middleware
    async def middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
        if request.path.startswith(UNLIMITED_PATHS):
            return await handler(request)
        retry_after = await guard.limits.request(guard.address_of(request))
        if retry_after is not None:
            response = error_response(429, "Too many requests", "Slow down and retry later")
            response.headers["Retry-After"] = str(math.ceil(retry_after))
            return response
        return await handler(request)

    return middleware


ENGINE_IO_PATH = "/socket.io/"  # Engine.IO's route


def http_only(*middlewares: Middleware) -> Middleware:
    """`middlewares` (outermost first) as one, which Engine.IO's requests pass straight
    through: Engine.IO applies its own origin rules, and a WebSocket holds its request's
    handler chain (a suspended frame per middleware) for as long as it stays open."""

    # Not a coroutine function: it hands aiohttp the handler's own awaitable, so no frame of
    # it stays suspended under a WebSocket (0.2 KB per connection).
    @web.middleware
    def middleware(request: web.Request, handler: HandlerT) -> Awaitable[web.StreamResponse]:
        if request.path.startswith(ENGINE_IO_PATH):
            return handler(request)
        for inner in reversed(middlewares):
            handler = partial(inner, handler=handler)
        return handler(request)

    return middleware
