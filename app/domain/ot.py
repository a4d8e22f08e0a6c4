"""Text operations: diff, apply, invert, compose and transform (operational transformation)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import fast_diff_match_patch as fdmp

# Common text kept on each side of a change before calling the diff library: enough for its
# semantic clean-up to slide the edit onto a word or line boundary (an edit slides at most
# its own length, or along a run that repeats it), small enough that a keystroke in a 100 KB
# document is diffed in microseconds (we trim the rest ourselves): the changed span's length
# plus _DIFF_SLACK, at most _DIFF_CONTEXT.
_DIFF_CONTEXT = 256
_DIFF_SLACK = 64
# Upper bound (seconds) on one diff of two unrelated texts; the library then returns a
# coarser but still valid diff instead of blocking the event loop.
_DIFF_TIMELIMIT = 0.1
# Stands for the implicit "retain the rest of the text" that ends every operation.
_ENDLESS = sys.maxsize


@dataclass(frozen=True, slots=True)
class Delete:
    """Deletion of `text`; keeping the deleted characters makes every operation invertible."""

    text: str


# An operation is a tuple of components, like ot.js TextOperation: an int n > 0 retains n
# characters, a str inserts it, a Delete deletes its text. A trailing retain is implicit,
# so an operation does not depend on the document length and () is the identity.
Component = int | str | Delete
Op = tuple[Component, ...]


def _size(component: Component | None) -> int:
    """Number of characters a component spans (None is the implicit endless retain)."""
    if component is None:
        return _ENDLESS
    if isinstance(component, int):
        return component
    if isinstance(component, str):
        return len(component)
    return len(component.text)


class Builder:
    """Accumulates components in canonical form (merged runs, insert before delete)."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[Component] = []

    def retain(self, n: int) -> None:
        if n <= 0:
            return
        parts = self._parts
        if parts and isinstance(parts[-1], int):
            parts[-1] += n
        else:
            parts.append(n)

    def insert(self, text: str) -> None:
        if not text:
            return
        parts = self._parts
        # Canonical order puts an insert before an adjacent delete, so equal edits compare equal.
        at = len(parts) - 1 if parts and isinstance(parts[-1], Delete) else len(parts)
        previous = parts[at - 1] if at > 0 else None
        if isinstance(previous, str):
            parts[at - 1] = previous + text
        else:
            parts.insert(at, text)

    def delete(self, text: str) -> None:
        if not text:
            return
        parts = self._parts
        last = parts[-1] if parts else None
        if isinstance(last, Delete):
            parts[-1] = Delete(last.text + text)
        else:
            parts.append(Delete(text))

    def add(self, component: Component) -> None:
        if isinstance(component, int):
            self.retain(component)
        elif isinstance(component, str):
            self.insert(component)
        else:
            self.delete(component.text)

    def build(self) -> Op:
        parts = self._parts
        if parts and isinstance(parts[-1], int):
            parts.pop()  # the trailing retain is implicit
        return tuple(parts)


class _Cursor:
    """Walks an operation, handing out whole inserts or n-character pieces of the rest."""

    __slots__ = ("_i", "_op", "head")

    def __init__(self, op: Op) -> None:
        self._op = op
        self._i = 0
        self.head: Component | None = op[0] if op else None

    def skip(self) -> None:
        self._i += 1
        self.head = self._op[self._i] if self._i < len(self._op) else None

    def take(self, n: int) -> Component:
        """Consume the first n characters of the head (n <= its size) and return them."""
        head = self.head
        if head is None:
            return n
        if n == _size(head):
            self.skip()
            return head
        if isinstance(head, int):
            self.head = head - n
            return n
        if isinstance(head, str):
            self.head = head[n:]
            return head[:n]
        self.head = Delete(head.text[n:])
        return Delete(head.text[:n])


def apply(op: Op, text: str) -> str:
    """Apply op to text; raise ValueError if op does not fit text."""
    parts: list[str] = []
    pos = 0
    for component in op:
        if isinstance(component, int):
            end = pos + component
            if end > len(text):
                raise ValueError("operation is longer than the text")
            parts.append(text[pos:end])
            pos = end
        elif isinstance(component, str):
            parts.append(component)
        else:
            # Checking the deleted characters catches a history/op mismatch instead of corrupting.
            if not text.startswith(component.text, pos):
                raise ValueError("operation deletes characters the text does not have")
            pos += len(component.text)
    parts.append(text[pos:])
    return "".join(parts)


def invert(op: Op) -> Op:
    """The operation that undoes op (maps its result back to its input)."""
    out = Builder()
    for component in op:
        if isinstance(component, int):
            out.retain(component)
        elif isinstance(component, str):
            out.delete(component)
        else:
            out.insert(component.text)
    return out.build()


def compose(first: Op, second: Op) -> Op:
    """One operation with the effect of applying first, then second."""
    out = Builder()
    a, b = _Cursor(first), _Cursor(second)
    while True:
        if isinstance(a.head, Delete):  # deleted by first: second never sees these characters
            out.delete(a.head.text)
            a.skip()
        elif isinstance(b.head, str):  # inserted by second: first never saw them
            out.insert(b.head)
            b.skip()
        elif a.head is None and b.head is None:
            return out.build()
        else:
            n = min(_size(a.head), _size(b.head))
            piece_a, piece_b = a.take(n), b.take(n)
            if isinstance(piece_b, Delete):
                if isinstance(piece_a, int):
                    out.delete(piece_b.text)
                # else: inserted by first and deleted by second, nothing remains
            else:
                out.add(piece_a)  # a retain or the part of first's insert that second kept


def transform(
    prior: Op, other: Op, *, other_first: bool = False, other_first_at: int | None = None
) -> tuple[Op, Op]:
    """Transform two ops on the same text: returns (prior', other') with
    other' after prior == prior' after other.

    Inserts always survive whole: an insert meeting the other side's delete is emitted first,
    which splits the delete around it; at the same position prior's insert goes first, unless
    `other_first` (other continues a run of its author's own typing there), or the position
    is `other_first_at` (where other's author last typed).
    """
    prior_out, other_out = Builder(), Builder()
    a, b = _Cursor(prior), _Cursor(other)
    at = 0  # position in the text both ops apply to
    while True:
        if (
            (other_first or at == other_first_at)
            and isinstance(a.head, str)
            and isinstance(b.head, str)
        ):
            prior_out.retain(len(b.head))
            other_out.insert(b.head)
            b.skip()
        elif isinstance(a.head, str):
            prior_out.insert(a.head)
            other_out.retain(len(a.head))
            a.skip()
        elif isinstance(b.head, str):
            prior_out.retain(len(b.head))
            other_out.insert(b.head)
            b.skip()
        elif a.head is None and b.head is None:
            return prior_out.build(), other_out.build()
        else:
            n = min(_size(a.head), _size(b.head))
            at += n
            piece_a, piece_b = a.take(n), b.take(n)
            if isinstance(piece_a, int) and isinstance(piece_b, int):
                prior_out.retain(n)
                other_out.retain(n)
            elif isinstance(piece_a, Delete) and isinstance(piece_b, int):
                prior_out.delete(piece_a.text)
            elif isinstance(piece_a, int) and isinstance(piece_b, Delete):
                other_out.delete(piece_b.text)
            # both deleted the same characters: neither has anything left to do


def compose_all(ops: Iterable[Op]) -> Op:
    result: Op = ()
    for op in ops:
        result = compose(result, op)
    return result


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by binary search on slices (C-speed compares)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix, at most limit (so it never overlaps the prefix)."""
    low, high = 0, limit
    len_a, len_b = len(a), len(b)
    while low < high:
        mid = (low + high + 1) // 2
        if a[len_a - mid : len_a - low] == b[len_b - mid : len_b - low]:
            low = mid
        else:
            high = mid - 1
    return low


def common_ends(old: str, new: str) -> tuple[int, int]:
    """The lengths of the common prefix and of the common suffix that does not overlap it."""
    prefix = _common_prefix(old, new)
    return prefix, _common_suffix(old, new, min(len(old), len(new)) - prefix)


def diff(old: str, new: str, ends: tuple[int, int] | None = None) -> Op:
    """The edit turning old into new, computed by the diff library around the changed span
    (`ends`: their common_ends, when known)."""
    if old == new:
        return ()
    prefix, suffix = common_ends(old, new) if ends is None else ends
    changed = max(len(old), len(new)) - prefix - suffix
    context = min(_DIFF_CONTEXT, changed + _DIFF_SLACK)
    start = max(0, prefix - context)
    tail = max(0, suffix - context)
    old_mid, new_mid = old[start : len(old) - tail], new[start : len(new) - tail]
    pairs: list[tuple[str, int]] = fdmp.diff(
        old_mid, new_mid, timelimit=_DIFF_TIMELIMIT, cleanup="Semantic"
    )
    out = Builder()
    out.retain(start)
    old_pos = new_pos = 0  # lengths are code points, like Python str indices
    for kind, length in pairs:
        if kind == "=":
            out.retain(length)
            old_pos += length
            new_pos += length
        elif kind == "+":
            out.insert(new_mid[new_pos : new_pos + length])
            new_pos += length
        else:
            out.delete(old_mid[old_pos : old_pos + length])
            old_pos += length
    return out.build()


def transform_past(
    edit: Op,
    chain: Sequence[Op],
    *,
    edit_first: bool = False,
    first_at: int | None = None,
    mine: Sequence[bool] = (),
) -> tuple[Op, Op]:
    """Move edit past each op of chain; return (edit', chain') where chain' is the chain
    transformed past edit, composed into one op (the bridge).

    Where both insert at one place the chain's op goes first, unless `edit_first`, or the
    place is `first_at`: the caret of edit's author (where its last insertion ended, in
    edit's text), followed along. An op of the chain that is the author's own (`mine`)
    inserting right where the edit inserts was typed just before it: the edit goes on after
    that text, and ahead of others' text inserted there."""
    if first_at is None and any(mine):
        first_at = _typed_on(edit, chain, mine)
    bridge: list[Op] = []
    for i, op in enumerate(chain):
        if not op:  # a change that changed nothing (the bridge of a change nobody crossed)
            continue
        own = i < len(mine) and mine[i]
        point = insertion(edit) if own else None
        op_after_edit, moved = transform(
            op,
            edit,
            other_first=edit_first and not own,  # its own earlier text stays before it
            other_first_at=None if own else first_at,
        )
        if point is not None and _inserts_at(op, point[0]):
            moved_at = insertion(moved)
            first_at = moved_at[0] if moved_at is not None else None
        else:
            first_at = caret_after(op, first_at)
        edit = moved
        bridge.append(op_after_edit)
    return edit, compose_all(bridge)


def _typed_on(edit: Op, chain: Sequence[Op], mine: Sequence[bool]) -> int | None:
    """Where `edit` inserts, when one of its author's own ops of the chain inserted at that
    same place of edit's text (typed just before it, not yet in the text it typed on): the
    edit then goes on after that text, ahead of others' text inserted there."""
    point = insertion(edit)
    if point is None:
        return None
    before: list[Op] = []
    for op, own in zip(chain, mine, strict=False):
        if own:
            for at in _insertion_points(op):
                for earlier in reversed(before):
                    at = _map_back(earlier, at)
                if at == point[0]:
                    return point[0]
        before.append(op)
    return None


def _insertion_points(op: Op) -> list[int]:
    points, at = [], 0
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str):
            points.append(at)
        else:
            at += len(component.text)
    return points


def _map_back(op: Op, position: int) -> int:
    """A position of the text after `op`, in the text before it (inside text `op` inserted:
    where it was inserted)."""
    old = new = 0
    for component in op:
        if isinstance(component, int):
            if position <= new + component:
                return old + position - new
            old += component
            new += component
        elif isinstance(component, str):
            if position <= new + len(component):
                return old
            new += len(component)
        else:
            old += len(component.text)
    return old + position - new


def _inserts_at(op: Op, position: int) -> bool:
    """Whether `op` inserts text at `position` of the text it applies to."""
    at = 0
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str):
            if at == position:
                return True
        else:
            at += len(component.text)
        if at > position:
            return False
    return False


def last_insertion_end(op: Op) -> int | None:
    """Where, in the op's output, its last inserted text ends (None: it inserts nothing)."""
    at, end = 0, None
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str):
            at += len(component)
            end = at
    return end


def insertion(op: Op) -> tuple[int, int] | None:
    """(where, where it ends) of the text a pure insertion op inserts, in the output's
    positions; None for any other op."""
    at, inserted = 0, None
    for component in op:
        if isinstance(component, int):
            if inserted is not None:
                return None
            at += component
        elif isinstance(component, str):
            if inserted is not None:
                return None
            inserted = component
        else:
            return None
    return None if inserted is None else (at, at + len(inserted))


def inserted(op: Op) -> str:
    """Everything `op` inserts, in order."""
    return "".join(c for c in op if isinstance(c, str))


def caret_after(op: Op, caret: int | None) -> int | None:
    """Where a typist's caret (the end of what it last typed) is once `op` has been applied:
    text inserted right at it goes after it; None once the character before it is deleted
    (what it was typing is gone)."""
    if caret is None:
        return None
    old = new = 0
    for component in op:
        if isinstance(component, int):
            if caret <= old + component:
                return new + caret - old
            old += component
            new += component
        elif isinstance(component, str):
            if old == caret:
                return new
            new += len(component)
        else:
            if caret <= old + len(component.text):
                return new if caret == old else None
            old += len(component.text)
    return new + caret - old


def _spans(op: Op, *, inserted: bool) -> list[tuple[int, int]]:
    """Ranges of the text after `op` that it inserted (`inserted`), or of the text before it
    that it deletes."""
    spans, at = [], 0
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str) == inserted:
            size = _size(component)
            spans.append((at, at + size))
            at += size
    return spans


def undoes(first: Op, second: Op) -> bool:
    """Whether `second` (applied after `first`) deletes some of what `first` inserted."""
    added = _spans(first, inserted=True)
    removed = _spans(second, inserted=False)
    return any(a < d_end and d < a_end for a, a_end in added for d, d_end in removed)


def _points(op: Op, *, inserted: bool) -> dict[int, str]:
    """Where in the text after `op` it deleted text, and what (`inserted` False); or where in
    the text before it it inserts, and what."""
    points: dict[int, str] = {}
    at = 0
    for component in op:
        if isinstance(component, int):
            at += component
        elif isinstance(component, str):
            if inserted:
                points[at] = component
            else:
                at += len(component)
        elif not inserted:
            points[at] = component.text
    return points


def restores(first: Op, second: Op) -> bool:
    """Whether `second` (applied after `first`) inserts again the beginning or the end of a
    text `first` deleted, where it was."""
    deleted = _points(first, inserted=False)
    return any(
        text and (gone.startswith(text) or gone.endswith(text))
        for at, text in _points(second, inserted=True).items()
        for gone in [deleted.get(at, "")]
        if gone
    )


def edit_cost(old: str, new: str) -> int:
    """A cheap measure of how much editing turns `old` into `new`: the lengths of the parts
    that differ once the common prefix and suffix are set aside (0: the same text)."""
    if old == new:
        return 0
    prefix, suffix = common_ends(old, new)
    return len(old) + len(new) - 2 * (prefix + suffix)


def op_to_json(op: Op) -> list[int | str | dict[str, str]]:
    """An op as JSON: retains as numbers, inserts as strings, deletes as {"d": text}."""
    return [{"d": c.text} if isinstance(c, Delete) else c for c in op]


def op_from_json(data: Sequence[object]) -> Op:
    out = Builder()
    for component in data:
        if isinstance(component, int) and not isinstance(component, bool):
            out.retain(component)
        elif isinstance(component, str):
            out.insert(component)
        elif isinstance(component, dict) and isinstance(component.get("d"), str):
            out.delete(component["d"])
        else:
            raise ValueError(f"not an op component: {component!r}")
    return out.build()
