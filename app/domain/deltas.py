"""Changes as clients count them (`{from, to, insert}`, offsets in UTF-16 code units, as
JavaScript strings and Monaco do) to and from the server's operations (code points)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.domain.errors import InvalidPayload
from app.domain.ot import Builder, Delete, Op, apply, invert


def _astral_before(text: str) -> list[int]:
    """Code point indices of the characters outside the BMP (two UTF-16 units each)."""
    if text.isascii():
        return []
    return [i for i, c in enumerate(text) if ord(c) > 0xFFFF]


def _to_code_points(text: str, astral: list[int], unit: int) -> int:
    """The code point index of the UTF-16 offset `unit` (refused inside a surrogate pair)."""
    index = unit
    for position in astral:  # each astral character before it took one unit more
        if position < index:
            index -= 1
        else:
            break
    if index > len(text) or (index > 0 and _units(astral, index) != unit):
        raise InvalidPayload(f"changes: offset {unit} is outside the text or inside a character")
    return index


def _units(astral: list[int], index: int) -> int:
    """The UTF-16 offset of code point index `index`."""
    return index + sum(1 for position in astral if position < index)


def changes_to_op(text: str, changes: Sequence[Any]) -> Op:
    """The operation of non-overlapping changes, in order, all against `text`."""
    astral = _astral_before(text)
    out = Builder()
    at = 0
    for change in changes:
        start = _to_code_points(text, astral, change.from_)
        end = _to_code_points(text, astral, change.to)
        if start < at or end < start:
            raise InvalidPayload("changes: ranges must be in order and must not overlap")
        out.retain(start - at)
        out.insert(change.insert)
        out.delete(text[start:end])
        at = end
    return out.build()


def op_to_changes(op: Op, after: str) -> list[dict[str, Any]]:
    """The changes of `op`, whose result is `after`, in UTF-16 offsets of the text before."""
    if after.isascii() and all(
        isinstance(c, int) or (isinstance(c, Delete) and c.text.isascii()) for c in op
    ):
        astral: list[int] = []  # the text before is ASCII too (inserts are in `after`)
    else:
        astral = _astral_before(apply(invert(op), after))
    changes: list[dict[str, Any]] = []
    at = 0
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str):
            unit = _units(astral, at)
            if changes and changes[-1]["to"] == unit and not changes[-1]["insert"]:
                changes[-1]["insert"] = component
            else:
                changes.append({"from": unit, "to": unit, "insert": component})
        elif isinstance(component, Delete):
            start, end = _units(astral, at), _units(astral, at + len(component.text))
            if changes and changes[-1]["to"] == start:
                changes[-1]["to"] = end
            else:
                changes.append({"from": start, "to": end, "insert": ""})
            at += len(component.text)
    return changes
