"""Merge concurrent full-text code changes by operational transformation over a version history."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import fast_diff_match_patch as fdmp

__all__ = ["Rebased", "TextHistory"]

# Common text kept on each side of a change before calling the diff library: enough for its
# semantic clean-up to slide the edit onto a word or line boundary, small enough that a
# keystroke in a 100 KB document is diffed in microseconds (we trim the rest ourselves).
_DIFF_CONTEXT = 256
# Upper bound (seconds) on one diff of two unrelated texts; the library then returns a
# coarser but still valid diff instead of blocking the event loop.
_DIFF_TIMELIMIT = 0.1
# Stands for the implicit "retain the rest of the text" that ends every operation.
_ENDLESS = sys.maxsize


@dataclass(frozen=True, slots=True)
class _Delete:
    """Deletion of `text`; keeping the deleted characters makes every operation invertible."""

    text: str


# An operation is a tuple of components, like ot.js TextOperation: an int n > 0 retains n
# characters, a str inserts it, a _Delete deletes its text. A trailing retain is implicit,
# so an operation does not depend on the document length and () is the identity.
_Component = int | str | _Delete
_Op = tuple[_Component, ...]


def _size(component: _Component | None) -> int:
    """Number of characters a component spans (None is the implicit endless retain)."""
    if component is None:
        return _ENDLESS
    if isinstance(component, int):
        return component
    if isinstance(component, str):
        return len(component)
    return len(component.text)


class _Builder:
    """Accumulates components in canonical form (merged runs, insert before delete)."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[_Component] = []

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
        at = len(parts) - 1 if parts and isinstance(parts[-1], _Delete) else len(parts)
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
        if isinstance(last, _Delete):
            parts[-1] = _Delete(last.text + text)
        else:
            parts.append(_Delete(text))

    def add(self, component: _Component) -> None:
        if isinstance(component, int):
            self.retain(component)
        elif isinstance(component, str):
            self.insert(component)
        else:
            self.delete(component.text)

    def build(self) -> _Op:
        parts = self._parts
        if parts and isinstance(parts[-1], int):
            parts.pop()  # the trailing retain is implicit
        return tuple(parts)


class _Cursor:
    """Walks an operation, handing out whole inserts or n-character pieces of the rest."""

    __slots__ = ("_i", "_op", "head")

    def __init__(self, op: _Op) -> None:
        self._op = op
        self._i = 0
        self.head: _Component | None = op[0] if op else None

    def skip(self) -> None:
        self._i += 1
        self.head = self._op[self._i] if self._i < len(self._op) else None

    def take(self, n: int) -> _Component:
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
        self.head = _Delete(head.text[n:])
        return _Delete(head.text[:n])


def _apply(op: _Op, text: str) -> str:
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


def _invert(op: _Op) -> _Op:
    """The operation that undoes op (maps its result back to its input)."""
    out = _Builder()
    for component in op:
        if isinstance(component, int):
            out.retain(component)
        elif isinstance(component, str):
            out.delete(component)
        else:
            out.insert(component.text)
    return out.build()


def _compose(first: _Op, second: _Op) -> _Op:
    """One operation with the effect of applying first, then second."""
    out = _Builder()
    a, b = _Cursor(first), _Cursor(second)
    while True:
        if isinstance(a.head, _Delete):  # deleted by first: second never sees these characters
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
            if isinstance(piece_b, _Delete):
                if isinstance(piece_a, int):
                    out.delete(piece_b.text)
                # else: inserted by first and deleted by second, nothing remains
            else:
                out.add(piece_a)  # a retain or the part of first's insert that second kept


def _transform(prior: _Op, other: _Op) -> tuple[_Op, _Op]:
    """Transform two ops on the same text: returns (prior', other') with
    other' after prior == prior' after other.

    Inserts always survive whole: an insert meeting the other side's delete is emitted first,
    which splits the delete around it; at the same position prior's insert goes first.
    """
    prior_out, other_out = _Builder(), _Builder()
    a, b = _Cursor(prior), _Cursor(other)
    while True:
        if isinstance(a.head, str):
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
            piece_a, piece_b = a.take(n), b.take(n)
            if isinstance(piece_a, int) and isinstance(piece_b, int):
                prior_out.retain(n)
                other_out.retain(n)
            elif isinstance(piece_a, _Delete) and isinstance(piece_b, int):
                prior_out.delete(piece_a.text)
            elif isinstance(piece_a, int) and isinstance(piece_b, _Delete):
                other_out.delete(piece_b.text)
            # both deleted the same characters: neither has anything left to do


def _compose_all(ops: Iterable[_Op]) -> _Op:
    result: _Op = ()
    for op in ops:
        result = _compose(result, op)
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


def _diff(old: str, new: str) -> _Op:
    """The edit turning old into new, computed by the diff library around the changed span."""
    if old == new:
        return ()
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
    start = max(0, prefix - _DIFF_CONTEXT)
    tail = max(0, suffix - _DIFF_CONTEXT)
    old_mid, new_mid = old[start : len(old) - tail], new[start : len(new) - tail]
    pairs: list[tuple[str, int]] = fdmp.diff(
        old_mid, new_mid, timelimit=_DIFF_TIMELIMIT, cleanup="Semantic"
    )
    out = _Builder()
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


def _transform_past(edit: _Op, chain: Sequence[_Op]) -> tuple[_Op, _Op]:
    """Move edit past each op of chain (those win ties); return (edit', chain') where
    chain' is the chain transformed past edit, composed into one op (the bridge)."""
    bridge: list[_Op] = []
    for op in chain:
        op_after_edit, edit = _transform(op, edit)
        bridge.append(op_after_edit)
    return edit, _compose_all(bridge)


@dataclass(frozen=True)
class Rebased:
    """Outcome of TextHistory.rebase, to be handed to TextHistory.commit.

    text: the room text this change produces; merged: True when a three-way merge was done;
    reason: "base_too_old" when the given baseVersion fell out of history, else None.
    """

    text: str
    merged: bool
    reason: str | None
    _author: str = field(repr=False, compare=False)
    _sent: str = field(repr=False, compare=False)
    _op: _Op = field(repr=False, compare=False)  # room text -> text
    _bridge: _Op = field(repr=False, compare=False)  # sent text -> text
    _from_version: int = field(repr=False, compare=False)
    _owner: object = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    op: _Op  # text of the previous version -> text of this version
    at: float  # clock time this version became the room text


@dataclass(frozen=True, slots=True)
class _AuthorState:
    version: int  # version at which the author's last change was accepted
    sent: str  # the text the author sent with it
    bridge: _Op  # maps `sent` to the room text at `version`


class TextHistory:
    """The room text, its recent versions as invertible ops, and per-author merge state.

    A change's edit is diff(base text, sent text), where the base text is what the client had
    just before: its own previous sent text if that change was accepted after the change's
    baseVersion (the client has not applied that acknowledgement yet), else the room text at
    baseVersion. The edit is transformed past every op accepted since; for the own-text case
    the chain starts with the author's bridge (its previous sent text -> room text), so the
    mapping stays exact even when that previous change was itself merged.

    Choices:
    - Only the current text is stored; older texts are rebuilt by composing inverted ops, so
      memory is one document plus the recent edits, not one document per version.
    - A version is kept while it is among the last `min_versions` or was the room text at any
      moment of the last `min_seconds` (its age counts from when a newer version replaced it).
    - An author state is dropped as soon as its acceptance version leaves the history. This
      loses nothing: a change that would need it has an even older baseVersion, which is out
      of history too, so it falls back to last-writer-wins with reason "base_too_old".
    - Conversely, an author state still in history takes precedence over a baseVersion that
      fell out: the client's own previous text is a valid, exact base, so a fast typist with a
      stale base overwrites the room once (base_too_old) instead of on every keystroke.
    - `author` must identify one connection (e.g. the Socket.IO sid), and forget() must only
      be called when it can send no more changes; otherwise its own accepted changes would
      be merged in a second time.
    """

    def __init__(
        self,
        text: str,
        version: int,
        *,
        min_versions: int = 100,
        min_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_versions < 1 or min_seconds < 0:
            raise ValueError("min_versions must be >= 1 and min_seconds >= 0")
        self._text = text
        self._version = version
        self._oldest = version  # oldest version whose text can still be rebuilt
        self._entries: deque[_Entry] = deque()
        self._authors: dict[str, _AuthorState] = {}
        self._min_versions = min_versions
        self._min_seconds = min_seconds
        self._clock = clock
        self._token = object()  # tells commit() which history a Rebased came from

    @property
    def text(self) -> str:
        return self._text

    @property
    def version(self) -> int:
        return self._version

    @property
    def oldest_version(self) -> int:
        """The oldest baseVersion that can still be merged."""
        return self._oldest

    def rebase(self, author: str, sent_text: str, base_version: int | None) -> Rebased:
        """Compute, without changing anything, the room text produced by this change."""
        if base_version is None:
            return self._last_writer_wins(author, sent_text, None)
        base_version = min(base_version, self._version)
        state = self._authors.get(author)
        if state is not None and state.version > base_version:
            base_text = state.sent
            chain = [state.bridge, *self._ops_after(state.version)]
        elif base_version >= self._oldest:
            base_text = self._text_at(base_version)
            chain = self._ops_after(base_version)
        else:
            return self._last_writer_wins(author, sent_text, "base_too_old")
        edit, bridge = _transform_past(_diff(base_text, sent_text), chain)
        return self._rebased(author, sent_text, _apply(edit, self._text), edit, bridge, True, None)

    def commit(self, rebased: Rebased, version: int) -> None:
        """Record a rebased change as `version` and remember its author's state."""
        if version <= self._version:
            raise ValueError(f"version {version} is not after {self._version}")
        if rebased._owner is not self._token or rebased._from_version != self._version:
            raise ValueError("the history changed since this change was rebased")
        self._append(version, rebased._op, rebased.text)
        self._authors[rebased._author] = _AuthorState(version, rebased._sent, rebased._bridge)
        self._prune()

    def advance(self, version: int, text: str | None = None) -> None:
        """Record a version that is not a merged code change (None: text unchanged)."""
        if version <= self._version:
            raise ValueError(f"version {version} is not after {self._version}")
        if text is None:
            self._append(version, (), self._text)
        else:
            self._append(version, _diff(self._text, text), text)
        self._prune()

    def forget(self, author: str) -> None:
        """Drop the state of an author that left."""
        self._authors.pop(author, None)

    def _last_writer_wins(self, author: str, sent_text: str, reason: str | None) -> Rebased:
        # The op is still a real diff so that changes merged past it later keep their place.
        op = _diff(self._text, sent_text)
        return self._rebased(author, sent_text, sent_text, op, (), False, reason)

    def _rebased(
        self,
        author: str,
        sent_text: str,
        text: str,
        op: _Op,
        bridge: _Op,
        merged: bool,
        reason: str | None,
    ) -> Rebased:
        return Rebased(
            text=text,
            merged=merged,
            reason=reason,
            _author=author,
            _sent=sent_text,
            _op=op,
            _bridge=bridge,
            _from_version=self._version,
            _owner=self._token,
        )

    def _ops_after(self, version: int) -> list[_Op]:
        """The non-empty ops of the versions after `version`, oldest first."""
        ops: list[_Op] = []
        for entry in reversed(self._entries):
            if entry.version <= version:
                break
            if entry.op:
                ops.append(entry.op)
        ops.reverse()
        return ops

    def _text_at(self, version: int) -> str:
        """The room text at `version` (>= oldest), rebuilt from the current text."""
        undo = _compose_all(_invert(op) for op in reversed(self._ops_after(version)))
        return _apply(undo, self._text)

    def _append(self, version: int, op: _Op, text: str) -> None:
        self._entries.append(_Entry(version, op, self._clock()))
        self._version = version
        self._text = text

    def _prune(self) -> None:
        """Drop versions beyond both limits, then author states that need a dropped version."""
        horizon = self._clock() - self._min_seconds
        entries = self._entries
        pruned = False
        # entries[0].at is when the oldest kept version stopped being the room text.
        while len(entries) >= self._min_versions and entries[0].at <= horizon:
            self._oldest = entries.popleft().version
            pruned = True
        if pruned:
            stale = [a for a, s in self._authors.items() if s.version < self._oldest]
            for author in stale:
                del self._authors[author]
