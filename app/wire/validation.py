"""Turning untrusted input into pydantic models, with one clear message on failure."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from app.config import Settings
from app.domain.errors import InvalidPayload
from app.wire.packets import Undecodable

ModelT = TypeVar("ModelT", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """The first problem, as `field: message` (pydantic's full text is too noisy for clients)."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


def parse(model: type[ModelT], data: object, settings: Settings) -> ModelT:
    if isinstance(data, Undecodable):
        raise InvalidPayload("payload: malformed or too deeply nested JSON")
    if not isinstance(data, dict):
        raise InvalidPayload("payload: expected a JSON object")
    try:
        return model.model_validate(data, context=settings)
    except ValidationError as error:
        raise InvalidPayload(describe(error)) from None
