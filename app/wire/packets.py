"""The JSON codec of Socket.IO packets: orjson, and a clear refusal for what it cannot decode."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# The event name at the start of an event packet's data: ["codeChange", ...
EVENT_NAME = re.compile(r'\[\s*("(?:[^"\\]|\\.)*")')


class Undecodable:
    """Stands for an event payload whose JSON could not be decoded (too deeply nested)."""


UNDECODABLE = Undecodable()


class OrjsonPackets:
    """The `json` module interface python-socketio asks for, backed by orjson."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(value: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        try:
            # orjson refuses escaped lone surrogates ("\ud800"), which browsers send: decode
            # them so that validation can refuse the event with a clear answer.
            return json.loads(text)
        except (ValueError, RecursionError):
            # Too deep to decode at all: keep the event name, so the sender gets an answer.
            match = EVENT_NAME.match(text)
            if match is None:
                raise
            return [json.loads(match.group(1)), UNDECODABLE]
