"""A text's recent history, and the merge of full-text changes whose base must be inferred.

A client sends its whole text; the edit it made is that text minus the text it had just
before, its *base*. The server does not know the base for sure, but knows every text it could
be (each a `Base`):

- `own`: the text of the client's previous change (nothing reached it in between);
- `given`: a text the server sent it (an update, a code state, an acknowledgement);
- `own_on`: a given text with the client's own later changes applied (a client that keeps
  its unacknowledged edits when it applies an update, like ot.js);
- `at` / `recent`: a room text of a past version (one the client fetched over REST, or the
  one its `baseVersion` names).

`rebase_from` takes the candidate whose edit to the sent text is smallest (an editor only
sends when its text changed, so a candidate equal to the sent text is a base only if no
other explains it), transforms that edit past everything accepted since and applies it.

Choices:
- Only the current text is stored; older texts are rebuilt by applying inverted ops, so
  memory is one document plus the recent edits, not one document per version.
- A version is kept while it is among the last `min_versions` or was the room text at any
  moment of the last `min_seconds` (its age counts from when a newer version replaced it).
- An author's state (its previous text and how it maps to the room text) is dropped when its
  version leaves the history: a base that old cannot be mapped any more.
- `author` must identify one connection (e.g. the Socket.IO sid), and forget() must only be
  called when it can send no more changes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import takewhile

from app.domain.ot import (
    Op,
    apply,
    caret_after,
    common_ends,
    compose,
    diff,
    edit_cost,
    inserted,
    insertion,
    invert,
    last_insertion_end,
    transform,
    transform_past,
)

__all__ = ["Base", "Rebased", "TextHistory"]

Chain = Callable[[], list[Op]]
# Rank of a base in a tie: candidates from the client's stream (own, given) beat rebuilt
# history texts; within each, the newer wins.
STREAM, HISTORY = 1, 0
HELD_TEXTS = 10_000  # texts held or sent that a REST save of changes nothing (by digest)


def digest(text: str) -> int:
    """A text's fingerprint, the same in every process (Python's hash() is not)."""
    return int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest())


@dataclass(frozen=True)
class Base:
    """A text a change may have been typed on, and how it maps to the room text now."""

    text: str
    rank: tuple[int, int]  # (STREAM or HISTORY, when the client held it): higher wins a tie
    chain: Chain = field(repr=False, compare=False)
    kind: str = "given"
    version: int | None = None  # the room version it derives from (own: None)


@dataclass(frozen=True)
class Rebased:
    """Outcome of a rebase, to be handed to TextHistory.commit.

    text: the room text this change produces; merged: True when the edit was merged (False:
    last-writer-wins); reason: "base_too_old" when a given baseVersion fell out of history;
    base: the base chosen (None for last-writer-wins).
    """

    text: str
    merged: bool
    reason: str | None
    base: Base | None
    caret: int | None = field(repr=False, compare=False)  # where its insertion ended in `sent`
    base_version: int | None = field(repr=False, compare=False)  # the baseVersion it named
    _author: str | None = field(repr=False, compare=False)
    _sent: str = field(repr=False, compare=False)
    _op: Op = field(repr=False, compare=False)  # room text -> text
    _bridge: Op = field(repr=False, compare=False)  # sent text -> text
    _from_version: int = field(repr=False, compare=False)
    _owner: object = field(repr=False, compare=False)

    @property
    def op(self) -> Op:
        """From the room text it was computed on to the text it produces."""
        return self._op

    @property
    def sent(self) -> str:
        """The text its author sent (or, for a delta, made)."""
        return self._sent


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    op: Op  # text of the previous version -> text of this version
    author: str | None
    at: float  # clock time this version became the room text


@dataclass(frozen=True, slots=True)
class _AuthorState:
    version: int  # version at which the author's last change was accepted
    sent: str  # the text the author sent with it
    bridge: Op  # maps `sent` to the room text at `version`
    base: int | None  # the baseVersion it declared
    caret: int | None  # where, in `sent`, its last insertion ended (None: not an insertion)
    room_caret: int | None = None  # the same, in the room text at `version`


class TextHistory:
    """The room text, its recent versions as invertible ops, and per-author merge state."""

    def __init__(
        self,
        text: str,
        version: int,
        *,
        min_versions: int = 100,
        min_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        stale: Iterable[str] = (),
    ) -> None:
        if min_versions < 1 or min_seconds < 0:
            raise ValueError("min_versions must be >= 1 and min_seconds >= 0")
        # Texts a REST save of is stale (see rebase_rest): `stale`, the first text, and the
        # last HELD_TEXTS texts the room held or a connection sent, by digest (a text is not
        # kept for it).
        self._pinned = {digest(t) for t in (*stale, text)}
        self._held: dict[int, None] = {}
        self._text_digest: int | None = None  # the current text's digest, when known
        self._text = text
        self._version = version
        self._oldest = version  # oldest version whose text can still be rebuilt
        self._entries: deque[_Entry] = deque()
        self._authors: dict[str, _AuthorState] = {}
        self._min_versions = min_versions
        self._min_seconds = min_seconds
        self._clock = clock
        self._token = object()  # tells commit() which history a Rebased came from
        # Told of every change: (version, op, text before, text after, author).
        self.recorder: Callable[[int, Op, str, str, str | None], None] | None = None

    @property
    def text(self) -> str:
        return self._text

    @property
    def version(self) -> int:
        return self._version

    @property
    def oldest_version(self) -> int:
        """The oldest version whose text can still be rebuilt (and merged from)."""
        return self._oldest

    # -- bases ---------------------------------------------------------------------------

    def given(self, version: int, text: str, seq: int) -> Base | None:
        """A text the server gave the client, the room text at `version`."""
        if version < self._oldest:
            return None
        return Base(text, (STREAM, seq), lambda: self._ops_after(version), "given", version)

    def typed_by_other(self, version: int, author: str) -> str:
        """What the last change up to `version` inserted, if someone else than `author` made
        it ("" otherwise, or when it is no longer kept)."""
        for entry in reversed(self._entries):
            if entry.version <= version:
                return inserted(entry.op) if entry.author != author else ""
        return ""

    def typed_since(self, version: int, author: str) -> str:
        """What `author`'s changes after `version` inserted, newest first."""
        newer = takewhile(lambda e: e.version > version, reversed(self._entries))
        return "".join(inserted(e.op) for e in newer if e.author == author)

    def own(self, author: str, seq: int) -> Base | None:
        """The text of the author's previous change."""
        state = self._authors.get(author)
        if state is None:
            return None
        chain = [state.bridge, *self._ops_after(state.version)]
        return Base(state.sent, (STREAM, seq), lambda: chain, "own")

    def own_on(
        self, author: str, version: int, text: str, seq: int, *, ahead: bool = False
    ) -> Base | None:
        """The room text at `version` with the author's own later changes applied (None when
        it made none since). Its map to the room text is everyone else's changes since,
        each moved past the author's: their inverse transforms the author's change out.

        Where the author inserted at the place of text someone else deleted since, the room
        ops do not say on which side of that text it typed: `ahead` puts its insertion before
        the deleted text, else after (try both)."""
        if version < self._oldest or not any(
            e.author == author and e.op for e in self._entries if e.version > version
        ):
            return None
        mine: Op = ()
        others: Op = ()  # maps (text at version + mine) to the room text
        try:
            for entry in self._entries:
                if entry.version <= version or not entry.op:
                    continue
                if entry.author == author:
                    back_after, moved = transform(invert(others), entry.op, other_first=ahead)
                    mine = compose(mine, moved)
                    others = invert(back_after)
                else:
                    others = compose(others, entry.op)
            base_text = apply(mine, text)
        except ValueError:
            return None  # the ops do not fit together: not a base to trust
        rest = others
        return Base(base_text, (STREAM, seq), lambda: [rest], "own_on", version)

    def own_on_both(self, author: str, version: int, text: str, seq: int) -> list[Base]:
        """`own_on` both ways round a deleted text (one if they agree)."""
        bases: list[Base] = []
        for ahead in (False, True):
            base = self.own_on(author, version, text, seq, ahead=ahead)
            if base is not None and all(base.text != b.text for b in bases):
                bases.append(base)
        return bases

    def at(self, version: int, seq: int = 0) -> Base | None:
        """The room text at `version` (a `baseVersion`), rebuilt."""
        version = min(version, self._version)
        if version < self._oldest:
            return None
        return Base(self._text_at(version), (STREAM, seq), lambda: self._ops_after(version), "at")

    def recent(self, since: int) -> Iterator[tuple[int, str, float]]:
        """(version, text, when it became the room text) of every kept version from `since`
        on, newest first (the oldest kept text counts as always there)."""
        text, version = self._text, self._version
        entries = self._entries
        for i in range(len(entries) - 1, -1, -1):
            if version < since:
                return
            yield version, text, entries[i].at
            if entries[i].op:
                text = apply(invert(entries[i].op), text)
            version = entries[i - 1].version if i > 0 else self._oldest
        if version >= since:
            yield version, text, float("-inf")

    def history_bases(self, since: int, before: float = float("inf")) -> Iterator[Base]:
        """The room text at version `since`, and every kept one after it that was the room
        text before the time `before`, newest first, as bases."""
        for version, text, became in self.recent(max(since, self._oldest)):
            if became <= before or version <= since:
                yield Base(
                    text,
                    (HISTORY, version),
                    lambda v=version: self._ops_after(v),  # type: ignore[misc]
                    "history",
                    version,
                )

    # -- rebasing ------------------------------------------------------------------------

    def rebase_from(
        self,
        author: str | None,
        sent: str,
        bases: Iterable[Base],
        *,
        base_version: int | None = None,
        repeat: bool = False,
    ) -> Rebased:
        """Compute, without changing anything, the room text this change produces, from the
        candidate base that explains it with the smallest edit. An editor sends only when its
        text changed, so a candidate equal to the sent text is its base only when nothing
        else explains it, or when the sender is known to show that text already (`repeat`:
        the change is a repeat and changes nothing)."""
        best: Base | None = None
        best_key: tuple[int, tuple[int, int]] = (0, (0, 0))
        best_ends = (0, 0)  # its common_ends with the sent text
        same: Base | None = None  # a candidate equal to the sent text
        for base in bases:
            if best is not None and abs(len(base.text) - len(sent)) > -best_key[0]:
                continue  # an edit costs at least the difference in length: it cannot win
            if base.text == sent:
                if same is None or base.rank > same.rank:
                    same = base
                continue
            ends = common_ends(base.text, sent)  # the edit_cost, with what diff needs of it
            # The smallest edit; in a tie, the text the client held most recently.
            key = (2 * (ends[0] + ends[1]) - len(base.text) - len(sent), base.rank)
            if best is None or key > best_key:
                best, best_key, best_ends = base, key, ends
        chosen = (same or best) if repeat else (best or same)
        if chosen is None:
            return self._last_writer_wins(author, sent, None)
        edit = diff(chosen.text, sent, best_ends if chosen is best else None)
        try:
            chain, mine, caret = self._chain_of(author, chosen)
            moved, bridge = transform_past(edit, chain, first_at=caret, mine=mine)
            text = apply(moved, self._text)
        except ValueError:  # the ops do not fit together: never corrupt, replace instead
            return self._last_writer_wins(author, sent, None)
        return self._rebased(
            author, sent, text, moved, bridge, True, None, chosen, base_version, edit=edit
        )

    def _chain_of(self, author: str | None, base: Base) -> tuple[list[Op], list[bool], int | None]:
        """What a change on `base` is moved past, which of those ops are its author's own,
        and its author's caret in the base (see transform_past): a change that goes on typing
        where its author's last insertion ended stays with it, ahead of others' text."""
        state = self._authors.get(author) if author is not None else None
        if base.kind == "own":
            return base.chain(), [], state.caret if state is not None else None
        if base.version is None or base.kind == "own_on" or author is None:
            return base.chain(), [], None
        entries = [e for e in self._entries if e.version > base.version and e.op]
        chain = [e.op for e in entries]
        return chain, [e.author == author for e in entries], self._caret(author, base.version)

    def rebase(
        self, author: str, sent: str, base_version: int | None, *, applied: bool = True
    ) -> Rebased:
        """A change that names its base (`baseVersion`, None: last-writer-wins).

        A client whose base has not moved since its previous change has applied no update
        since: its text is its own previous one. A client whose base moved applied the update
        (or acknowledgement) of that version: its text is that room text, with its
        unacknowledged changes kept or not, whichever explains the change with the smallest
        edit; a version it was only acknowledged, never sent as a text (`applied` False),
        cannot have replaced its text, so its own later changes are kept. A base out of
        history leaves the author's own previous text, if any."""
        if base_version is None:
            return self._last_writer_wins(author, sent, None)
        version = min(base_version, self._version)
        state = self._authors.get(author)
        at = self.at(version)
        bases: list[Base | None] = []
        if at is not None and (state is None or state.base is None or version > state.base):
            kept = self.own_on_both(author, version, at.text, 0)
            if applied or not kept:
                bases += [at, *kept]
            else:  # only acknowledged: its own text, unless it rebased it onto updates
                bases += [self.own(author, 1), *kept]
        else:
            bases.append(self.own(author, 1))
        usable = [base for base in bases if base is not None]
        if not usable:
            return self._last_writer_wins(author, sent, "base_too_old", base_version)
        return self.rebase_from(author, sent, usable, base_version=version)

    def text_at(self, version: int) -> str:
        """The room text at a kept `version` (the current one beyond it)."""
        version = min(version, self._version)
        if version < self._oldest:
            raise ValueError(f"version {version} is no longer kept")
        return self._text_at(version)

    def rebase_op(
        self, author: str, op: Op, base_version: int, base: str | None = None
    ) -> Rebased | None:
        """A change given as an op on the room text at `base_version` (a delta), moved past
        everything accepted since (where both insert at one place, the earlier change comes
        first). None when that version is no longer kept. `base`: its text, if known."""
        version = min(base_version, self._version)
        if version < self._oldest:
            return None
        if base is None:
            base = self._text_at(version)
        sent = apply(op, base)  # ValueError: the op does not fit that text
        chain = self._ops_after(version)
        moved, bridge = transform_past(op, chain, first_at=self._caret(author, version))
        text = apply(moved, self._text)
        chosen = Base(base, (STREAM, 0), lambda: [], "at", version)
        return self._rebased(
            author, sent, text, moved, bridge, True, None, chosen, version, edit=op
        )

    def _caret(self, author: str, version: int) -> int | None:
        """Where the author's last insertion ended, in the room text at `version` (text
        inserted there since went after it; None once what it typed there was deleted).
        A delta inserting there goes on typing: it goes ahead of others' text inserted at
        that place since, so that its words stay whole."""
        state = self._authors.get(author)
        if state is None or state.room_caret is None or version < state.version:
            return None
        caret: int | None = state.room_caret
        for entry in self._entries:
            if state.version < entry.version <= version and entry.op:
                caret = caret_after(entry.op, caret)
        return caret

    def last_change(self) -> tuple[int, Op]:
        """The version before the newest one, and the op from its text to the current text."""
        if not self._entries:
            return self._version, ()
        previous = self._entries[-2].version if len(self._entries) > 1 else self._oldest
        return previous, self._entries[-1].op

    def rebase_rest(self, sent: str) -> Rebased | None:
        """A whole text from outside (a REST save): None if the room held it before (at a
        kept version, among its last HELD_TEXTS texts, or first) or a connection sent it (an
        editor's auto-save of a text it has sent already, since typed over), else merged from
        the closest kept room text."""
        if any(state.sent == sent for state in self._authors.values()):
            return None
        fingerprint = digest(sent)
        if fingerprint in self._pinned or fingerprint in self._held:
            return None
        # Each kept text is rebuilt once, newest first, and only the closest so far is kept
        # (one text in memory, whatever the history holds). An edit costs at least the
        # difference in length, so most texts are ruled out without measuring the edit; in
        # a tie the newer text wins, as in rebase_from.
        best: Base | None = None
        best_cost = 0
        for base in self.history_bases(self._oldest):
            if base.text == sent:
                return None
            if best is not None and abs(len(base.text) - len(sent)) >= best_cost:
                continue
            cost = edit_cost(base.text, sent)
            if best is None or cost < best_cost:
                best, best_cost = base, cost
        return self.rebase_from(None, sent, [] if best is None else [best])

    def commit(self, rebased: Rebased, version: int) -> None:
        """Record a rebased change as `version` and remember its author's state."""
        if version <= self._version:
            raise ValueError(f"version {version} is not after {self._version}")
        if rebased._owner is not self._token or rebased._from_version != self._version:
            raise ValueError("the history changed since this change was rebased")
        self._append(version, rebased._op, rebased.text, rebased._author)
        if rebased._author is not None:
            fingerprint = digest(rebased._sent)
            self.remember_sent(fingerprint)
            if rebased._sent == self._text:  # the next change's _append needs it again
                self._text_digest = fingerprint
            self._authors[rebased._author] = _AuthorState(
                version,
                rebased._sent,
                rebased._bridge,
                rebased.base_version,
                rebased.caret,
                last_insertion_end(rebased._op),
            )
        self._prune()

    def note(self, rebased: Rebased) -> None:
        """A rebased change that changed nothing: remember what its author sent."""
        fresh = rebased._owner is self._token and rebased._from_version == self._version
        if rebased._author is not None:
            self.remember_sent(digest(rebased._sent))
        if fresh and rebased._author is not None:
            self._authors[rebased._author] = _AuthorState(
                self._version, rebased._sent, rebased._bridge, rebased.base_version, rebased.caret
            )

    def advance(self, version: int, text: str | None = None) -> None:
        """Record a version that is not a merged change (None: text unchanged)."""
        if version <= self._version:
            raise ValueError(f"version {version} is not after {self._version}")
        if text is None:
            self._append(version, (), self._text, None)
        else:
            self._append(version, diff(self._text, text), text, None)
        self._prune()

    def advance_op(self, version: int, op: Op, author: str | None = None) -> None:
        """Record a change another process accepted (cluster mode): `op` on the current text."""
        if version <= self._version:
            raise ValueError(f"version {version} is not after {self._version}")
        self._append(version, op, apply(op, self._text), author)
        self._prune()

    def forget(self, author: str) -> None:
        """Drop the state of an author that left."""
        self._authors.pop(author, None)

    # -- internals -----------------------------------------------------------------------

    def _last_writer_wins(
        self, author: str | None, sent: str, reason: str | None, base_version: int | None = None
    ) -> Rebased:
        # The op is still a real diff so that changes merged past it later keep their place.
        op = diff(self._text, sent)
        return self._rebased(author, sent, sent, op, (), False, reason, None, base_version)

    def _rebased(
        self,
        author: str | None,
        sent: str,
        text: str,
        op: Op,
        bridge: Op,
        merged: bool,
        reason: str | None,
        base: Base | None,
        base_version: int | None = None,
        *,
        edit: Op | None = None,  # base -> sent, when known
    ) -> Rebased:
        if edit is None and base is not None:
            edit = diff(base.text, sent)
        inserted = insertion(edit) if edit is not None else None
        return Rebased(
            text=text,
            merged=merged,
            reason=reason,
            base=base,
            caret=inserted[1] if inserted is not None else None,
            base_version=base_version,
            _author=author,
            _sent=sent,
            _op=op,
            _bridge=bridge,
            _from_version=self._version,
            _owner=self._token,
        )

    def _ops_after(self, version: int) -> list[Op]:
        """The non-empty ops of the versions after `version`, oldest first."""
        ops: list[Op] = []
        for entry in reversed(self._entries):
            if entry.version <= version:
                break
            if entry.op:
                ops.append(entry.op)
        ops.reverse()
        return ops

    def _text_at(self, version: int) -> str:
        """The room text at `version` (>= oldest), rebuilt from the current text."""
        text = self._text
        for op in reversed(self._ops_after(version)):
            text = apply(invert(op), text)
        return text

    def remember_sent(self, fingerprint: int) -> None:
        """A connection sent the text of this digest (here, or on another process)."""
        held = self._held
        held.pop(fingerprint, None)
        held[fingerprint] = None  # newest last
        if len(held) > HELD_TEXTS:
            del held[next(iter(held))]

    def _append(self, version: int, op: Op, text: str, author: str | None) -> None:
        if op and self.recorder is not None:
            self.recorder(version, op, self._text, text, author)
        self._entries.append(_Entry(version, op, author, self._clock()))
        replaced = self._text_digest  # the text this version replaces
        self.remember_sent(digest(self._text) if replaced is None else replaced)
        self._text_digest = None
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
