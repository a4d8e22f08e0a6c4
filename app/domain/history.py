"""Version history: every accepted change of a room's texts and language, recorded as the
operation the room computed, with its version, time and author, plus full snapshots (every
SNAPSHOT_EVERY versions of a text, when the room goes idle, and at each checkpoint) from which
any recorded version is rebuilt quickly.

Entries wait in the room's outbox and ride on the debounced writer's batches (no store write
per keystroke); they are idempotent by (room, version, text, kind).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from datetime import datetime

from app.domain.ot import Delete, Op, apply, op_from_json, op_to_json
from app.storage.records import Checkpoint, HistoryEntry

LANGUAGE = ""  # the doc_id of the language's entries (a language snapshot: its name)
SNAPSHOT_EVERY = 100  # versions of one text between two snapshots
# Entries held while the store is down; beyond, they are dropped and each text starts again
# from a snapshot (a hole in the history: versions inside it rebuild as the one before it).
MAX_OUTBOX = 20_000


def sizes(op: Op) -> tuple[int, int]:
    """(characters inserted, characters deleted) by an op."""
    inserted = sum(len(c) for c in op if isinstance(c, str))
    deleted = sum(len(c.text) for c in op if isinstance(c, Delete))
    return inserted, deleted


class RoomHistory:
    """One room's entries not stored yet, and when each text was last snapshotted."""

    def __init__(self, room_id: str, clock: Callable[[], datetime]) -> None:
        self.room_id = room_id
        self.clock = clock  # when an entry is recorded
        self.outbox: list[HistoryEntry] = []
        self.based: set[str] = set()  # texts whose text before this lifetime is recorded
        self.since_snapshot: dict[str, int] = {}  # changes of each text since its snapshot
        self.checkpoints: list[Checkpoint] = []  # made, not stored yet
        self.checkpoint_ids: set[str] = set()  # made in this lifetime (applied once)

    def op(
        self,
        doc_id: str,
        version: int,
        op: Op,
        before: str,
        after: str,
        author: tuple[str | None, str | None],
        language: str,
    ) -> None:
        """A change of the text `doc_id`: `before` is its text at `version` - 1, `language`
        the room's then."""
        if LANGUAGE not in self.based:
            self.based.add(LANGUAGE)
            self.snapshot(LANGUAGE, version - 1, language)
        if doc_id not in self.based:
            self.based.add(doc_id)  # what this lifetime starts from, to rebuild on
            self.snapshot(doc_id, version - 1, before)
        inserted, deleted = sizes(op)
        self._add(
            HistoryEntry(
                room_id=self.room_id,
                version=version,
                doc_id=doc_id,
                kind="op",
                op=op_to_json(op),
                author_id=author[0],
                author_name=author[1],
                at=self.clock(),
                inserted=inserted,
                deleted=deleted,
            )
        )
        count = self.since_snapshot.get(doc_id, 0) + 1
        self.since_snapshot[doc_id] = count
        if version % SNAPSHOT_EVERY == 0:
            self.snapshot(doc_id, version, after)

    def language(
        self, version: int, language: str, before: str, author: tuple[str | None, str | None]
    ) -> None:
        if LANGUAGE not in self.based:
            self.based.add(LANGUAGE)
            self.snapshot(LANGUAGE, version - 1, before)
        self._add(self._language(version, language, author))

    def _language(
        self, version: int, language: str, author: tuple[str | None, str | None]
    ) -> HistoryEntry:
        return HistoryEntry(
            room_id=self.room_id,
            version=version,
            doc_id=LANGUAGE,
            kind="language",
            op=language,
            author_id=author[0],
            author_name=author[1],
            at=self.clock(),
        )

    def snapshot(self, doc_id: str, version: int, text: str, *, pinned: bool = False) -> None:
        """The whole text at `version` (`pinned`: a checkpoint's, kept as long as its
        session)."""
        self.since_snapshot[doc_id] = 0
        self._add(
            HistoryEntry(
                room_id=self.room_id,
                version=version,
                doc_id=doc_id,
                kind="snapshot",
                text=text,
                pinned=pinned,
                at=self.clock(),
            )
        )

    def checkpoint(self, made: Checkpoint, texts: dict[str, str], language: str) -> None:
        """A checkpoint of the room at `made.version`: its texts, kept with it."""
        self.checkpoint_ids.add(made.id)
        for doc_id, text in texts.items():
            self.snapshot(doc_id, made.version, text, pinned=True)
        self.snapshot(LANGUAGE, made.version, language, pinned=True)
        self.checkpoints.append(made)

    def changed_since_snapshot(self) -> list[str]:
        return [d for d, count in self.since_snapshot.items() if count and d != LANGUAGE]

    def _add(self, entry: HistoryEntry) -> None:
        if len(self.outbox) >= MAX_OUTBOX:
            self.outbox.clear()
            self.based.clear()  # the next change of each text records its text first
        self.outbox.append(entry)

    def stored(self, version: int) -> None:
        """Entries up to `version` are stored (by this process's writer or another's)."""
        self.outbox = [e for e in self.outbox if e.version > version]
        self.checkpoints = [c for c in self.checkpoints if c.version > version]


def rebuild(snapshot: HistoryEntry | None, ops: Sequence[HistoryEntry]) -> str | None:
    """The text a snapshot and the ops after it (in version order) make; None without a
    snapshot to start from."""
    if snapshot is None or snapshot.text is None:
        return None
    text = snapshot.text
    for entry in ops:
        text = apply(op_from_json(entry.op), text)
    return text


def unified_diff(old: str, new: str, name: str, before: int, after: int) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{name}@{before}",
        tofile=f"{name}@{after}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)  # fmt: skip
