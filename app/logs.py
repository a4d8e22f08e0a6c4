"""The server's log: one timestamp per line, text or JSON (LOG_FORMAT), and on every line
about a room or a connection, that room, socket and user.

Who a line is about is kept in a context variable: the socket event handler sets it for the
event (and what the event's tasks log), each room's writer for its room."""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Any

import orjson

ABOUT: ContextVar[dict[str, str] | None] = ContextVar("log_about", default=None)
FIELDS = ("room", "sid", "user")


def about(**who: str | None) -> Token[dict[str, str] | None]:
    """Lines logged from here on (in this task and the tasks it starts) are about `who`
    (until `ABOUT.reset` with the token answered)."""
    return ABOUT.set({key: value for key, value in who.items() if value is not None} or None)


class _About(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.about = ABOUT.get() or {}
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        who: dict[str, str] = getattr(record, "about", {})
        if not who:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below
        tags = " ".join(f"{key}={who[key]}" for key in FIELDS if key in who)
        return f"{head} [{tags}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "about", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def handler(form: str, stream: Any = None) -> logging.Handler:
    """A handler writing `form` ("text" or "json") lines to `stream` (default stderr)."""
    made = logging.StreamHandler(stream)
    made.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    made.addFilter(_About())
    return made


def configure(level: str, form: str) -> None:
    """The root logger writes to stderr in `form` at `level`."""
    logging.basicConfig(level=level, handlers=[handler(form)], force=True)
    # The SQLite driver logs every statement at DEBUG: never wanted in the server's log.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.root.level))
