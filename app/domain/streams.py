"""What one connection has of one text: the texts the server gave it and the changes it sent.

A full-text change is typed on whatever the client's editor showed: a text the server gave
it, its own previous text, one of those with its unacknowledged changes kept, or a text it
fetched over REST. `Stream.rebase` offers the merge exactly those candidates; `accepted`
then works out what the client will show once everything in flight has arrived, so that it
is sent the room text when (and only when) that differs.

Which texts the client had processed when it sent a change is known exactly: each text is
followed by a *probe* (an Engine.IO PING, which every client answers by itself, in order).
A change that arrives after the answer to a text's probe was typed after the client
processed that text; one that arrives before it, before (a client processes a text and the
probe right behind it at once). Without probes (a transport that cannot send them), texts
sent less than half the connection's round trip before a change arrived count as unseen.

Positions (`seq`) order everything the server sent to and received from the connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from app.domain.merge import HISTORY, STREAM, Base, Rebased, TextHistory
from app.domain.ot import Delete, Op, diff, insertion, restores, undoes

MAYBE = HISTORY - 1  # the rank of a text that may have been seen: below any other
RETYPED = STREAM + 1  # such a text, when the alternative is retyping others' keys: above
MAX_MAYBE_SEEN = 32  # the earliest texts whose probe is not answered yet, as candidates

MAX_GIVEN = 64  # texts remembered per connection and text (a passive reader's last updates)


@dataclass(frozen=True, slots=True)
class Given:
    seq: int
    version: int
    text: str
    at: float  # when it was sent
    probe: int | None = None  # the number of the probe sent right after it


class Stream:
    """One connection's view of one text."""

    __slots__ = (
        "answered_at_own",
        "base_seq",
        "changed",
        "given",
        "held",
        "own_seq",
        "own_version",
        "round_trip",
        "since",
        "versioned",
        "versions_given",
    )

    def __init__(self, since: int, round_trip: float = 0.0) -> None:
        self.given: deque[Given] = deque(maxlen=MAX_GIVEN)
        self.versions_given: deque[int] = deque(maxlen=MAX_GIVEN)  # never pruned by a base
        self.held: str | None = None  # what its editor shows once everything has arrived
        self.base_seq = -1  # where the base of its last change was
        self.own_seq = -1  # where its last change was received
        self.own_version = -1  # the text's version once its last change was accepted
        self.answered_at_own: int | None = None  # probes it had answered by its last change
        self.changed = False
        self.versioned = False  # its last change named its base (baseVersion)
        self.since = since  # the room version when it joined
        self.round_trip = round_trip  # the connection's shortest round trip, seconds

    @property
    def wants_probes(self) -> bool:
        """Whether its changes will be inferred: it has not named a base (baseVersion)."""
        return not self.versioned

    def outdated(self, version: int) -> bool:
        """Whether the text at `version` leaves (in the room's event order) after a change of
        its own that was merged onto it: what that text holds, it has or will be sent merged,
        and the older text would only undo its own edits in its editor for a moment."""
        return version < self.own_version

    def give(self, seq: int, version: int, text: str, at: float) -> None:
        """The server sent it `text`, the room text at `version`, at time `at`."""
        self.given.append(Given(seq, version, text, at))
        self.versions_given.append(version)
        self.held = text

    def probed(self, probe: int | None) -> None:
        """The probe numbered `probe` was sent right after the last text given."""
        if probe is not None and self.given:
            g = self.given[-1]  # (not dataclasses.replace: this runs per recipient per text)
            self.given[-1] = Given(g.seq, g.version, g.text, g.at, probe)

    def rebase(
        self,
        history: TextHistory,
        author: str,
        sent: str,
        base_version: int | None,
        now: float,
        answered: int | None = None,
        fetched: Iterable[int] = (),
    ) -> Rebased:
        """The room text this change, arrived at time `now` after `answered` probes were
        answered, produces (nothing is changed). `fetched`: the room versions its client
        was served over REST since it joined."""
        if base_version is not None:  # it says what it applied last: the history's rule
            applied = base_version in self.versions_given
            return history.rebase(author, sent, base_version, applied=applied)
        shown = self._shown(history, author, answered, now)
        repeat = shown is not None and sent == shown  # it sends what it shows: a repeat
        bases = self._bases(history, author, now, answered, fetched, sent)
        return history.rebase_from(author, sent, bases, repeat=repeat)

    def _seen(self, answered: int | None, now: float) -> list[Given]:
        """The texts given after its last base that it had processed when it sent."""
        fresh = [g for g in self.given if g.seq > self.base_seq]
        if answered is not None and all(g.probe is not None for g in fresh):
            return [g for g in fresh if g.probe is not None and g.probe <= answered]
        reached = now - self.round_trip  # without probes: what had had time to arrive
        return [g for g in fresh if g.at <= reached]

    def _maybe_seen(
        self,
        history: TextHistory,
        seen: list[Given],
        anchor: str | None,
        sent: str,
        now: float,
        author: str | None = None,
    ) -> list[Base]:
        """Texts given after the last one known to be seen: a browser runs each WebSocket
        message as a task of its own and a keystroke may come between a text and the probe
        behind it, so a change that overtook a probe may have been typed on such a text
        (the round trip cannot tell: it includes the time the editor takes to show a text,
        and a keystroke may come before that is over). A text that had not arrived explains
        the change worse (it holds others' edits the change would undo). These lose every
        tie to a text known to be seen, and among them the earliest wins a tie: the fewer
        texts it must have processed, the likelier (texts are processed in order). Nor is
        such a text a base when the change would delete some of what others inserted since
        the `anchor` (the text known to be shown), or insert again what they deleted: nobody
        does that within the moment it takes a probe to come back, but a change typed on the
        anchor, next to what changed, is explained by such a text with a smaller edit. (A
        text that crossed its own last change lacks that change's keys: when that is all it
        lacks, typing them again is no reason to refuse it.)

        One exception to the tie rule: when the anchor is its own previous text (`author`
        given) and the change, read on it, only types again, where it was typed, what another
        author's change that made such a text typed, that text wins the tie if it was sent a
        whole round trip before the change arrived (time to arrive and for a key typed on it
        to come back). Two people typing at one spot (the unchanged editor sends its cursor
        to the start at every update) would otherwise see one key doubled and the other
        lost."""
        after = seen[-1].seq if seen else self.base_seq
        bases = []
        on_anchor: Op | None = None  # the change read on the anchor (once, if needed)
        for given in [g for g in self.given if g.seq > after][:MAX_MAYBE_SEEN]:
            rank = MAYBE
            if anchor is not None:
                others, change = diff(anchor, given.text), diff(given.text, sent)
                if undoes(others, change):
                    continue
                if restores(others, change) and not (
                    author is not None
                    and given.seq < self.own_seq
                    and _lacks_only(others, history.typed_since(given.version, author))
                ):
                    continue
                if author is not None and now - given.at >= 2 * self.round_trip:
                    on_anchor = diff(anchor, sent) if on_anchor is None else on_anchor
                    typed = _retyped(anchor, sent, on_anchor, others)
                    if typed and typed in history.typed_by_other(given.version, author):
                        rank = RETYPED
            base = history.given(given.version, given.text, given.seq)
            if base is not None:
                bases.append(replace(base, rank=(rank, -given.seq)))
        return bases

    def _typed_after(self, latest: Given | None) -> bool:
        """Whether its previous change was sent after it had processed `latest`."""
        if latest is None:
            return True
        if latest.probe is not None and self.answered_at_own is not None:
            return self.answered_at_own >= latest.probe
        return latest.seq < self.own_seq

    def _shown(
        self, history: TextHistory, author: str, answered: int | None, now: float
    ) -> str | None:
        """What its editor showed when it sent the change, when that is known."""
        seen = self._seen(answered, now)
        latest = seen[-1] if seen else None
        own = history.own(author, 0)
        if own is not None and self._typed_after(latest):
            return own.text
        return latest.text if latest is not None else None

    def _bases(
        self,
        history: TextHistory,
        author: str,
        now: float,
        answered: int | None,
        fetched: Iterable[int],
        sent: str,
    ) -> list[Base]:
        seen = self._seen(answered, now)
        latest = seen[-1] if seen else None
        own = history.own(author, self.own_seq)
        bases: list[Base] = []
        if own is not None and self._typed_after(latest):
            bases.append(own)  # nothing processed since its previous change replaced it
            bases += self._maybe_seen(history, seen, own.text, sent, now, author)  # or lags
        else:
            # An editor that names no base replaces its text with each text it is given (a
            # client that keeps its own edits through updates needs versions: baseVersion).
            exact = answered is not None and all(g.probe is not None for g in seen)
            for given in seen[-1:] if exact else seen:
                base = history.given(given.version, given.text, given.seq)
                if base is not None:
                    bases.append(base)
            if latest is not None:
                anchor: str | None = latest.text
            else:
                joined = None if self.changed else history.at(self.since, self.since)
                anchor = joined.text if joined is not None else None
            bases += self._maybe_seen(history, seen, anchor, sent, now)
            if own is not None and not exact:
                bases.append(own)
        if not self.changed:  # a first change: typed on the text it joined with, or fetched
            for version in sorted({self.since, *(v for v in fetched if v >= self.since)}):
                base = history.at(version, version)
                if base is not None:
                    bases.append(replace(base, rank=(HISTORY, version), kind="history"))
        return bases

    def accepted(
        self,
        rebased: Rebased,
        sent: str,
        seq: int,
        version: int,
        versioned: bool = False,
        answered: int | None = None,
    ) -> None:
        """Its change was accepted (received at position `seq`, after `answered` probes were
        answered; the text is at `version` now): what does it show now?"""
        base = rebased.base
        if base is None or base.version is None:
            pass  # typed on its own text: what was in flight before still is
        elif base.kind in ("given", "own_on"):
            rank, seq = base.rank
            self.base_seq = -seq if rank in (MAYBE, RETYPED) else seq  # see _maybe_seen
        else:  # a room text of some version: what was given up to it was applied
            self.base_seq = max(
                [g.seq for g in self.given if g.version <= base.version], default=self.base_seq
            )
        # Texts given after its base were on their way: its editor ends with the last of them
        # (an editor that applies every update), else with what it sent.
        crossing = [g for g in self.given if g.seq > self.base_seq]
        self.held = crossing[-1].text if crossing else sent
        while self.given and self.given[0].seq <= self.base_seq:
            self.given.popleft()
        self.own_seq = seq
        self.own_version = version
        self.answered_at_own = answered
        self.changed = True
        self.versioned = versioned


def _retyped(text: str, sent: str, change: Op, others: Op) -> str:
    """What `change` (`text` -> `sent`) inserts when it only inserts, at one place, some of
    what `others` inserted there (also on `text`; "there": where others inserted, or in what
    they replaced right after; an insertion into a run of itself may be anywhere in the
    run); else ""."""
    span = insertion(change)
    if span is None:
        return ""
    at, end = span
    typed, size = sent[at:end], end - at
    first = last = at
    while first >= size and text[first - size : first] == typed:
        first -= size
    while text[last : last + size] == typed:
        last += size
    position = 0
    for i, component in enumerate(others):
        if isinstance(component, int):
            position += component
        elif isinstance(component, str):
            following = others[i + 1] if i + 1 < len(others) else None
            reach = len(following.text) if isinstance(following, Delete) else 0
            if typed in component and first <= position + reach and position <= last:
                return typed
        else:
            position += len(component.text)
    return ""


def _lacks_only(others: Op, typed: str) -> bool:
    """Whether every deletion of `others` deletes only some of `typed`."""
    deleted = [c.text for c in others if isinstance(c, Delete)]
    return bool(deleted) and all(text in typed for text in deleted)
