"""Going back in time: a session's history in pages, the text and language at any recorded
version, the diff between two, restoring one (one new change through the live room, so it
can itself be undone), and checkpoints (named versions, made by people or automatically).

A checkpoint is ordered through the room's log like any change (cluster mode: every process
tells its sockets `checkpointCreated`); its texts are kept as snapshots for as long as its
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.domain.access import Identity, Need
from app.domain.editing import Editing
from app.domain.errors import InvalidPayload, StoreUnavailable, VersionNotFound
from app.domain.history import LANGUAGE, rebuild, unified_diff
from app.domain.ports import LogEntry, Notifier
from app.domain.room import Room
from app.domain.rooms import Rooms
from app.domain.sessions import Sessions
from app.storage import FOLDED, StoreError
from app.storage.records import MAIN_FILE_ID, Checkpoint, HistoryEntry
from app.wire import outbound

log = logging.getLogger(__name__)
LEFT_NAME = "When the last person left"
INTERVAL_NAME = "Every {minutes:g} minutes of work"
SCAN_SECONDS = 5.0  # how often live rooms are looked at for a periodic checkpoint
COMPACT_BATCH = 500  # texts folded per purge round


@dataclass(frozen=True)
class Version:
    version: int
    doc_id: str
    text: str
    language: str


class Versions:
    def __init__(
        self, rooms: Rooms, editing: Editing, sessions: Sessions, notifier: Notifier
    ) -> None:
        self.rooms = rooms
        self.editing = editing
        self.sessions = sessions
        self.notifier = notifier
        self.interval = rooms.settings.checkpoint_interval_seconds
        rooms.appliers["checkpoint"] = self._apply_checkpoint
        rooms.on_empty.append(self._last_left)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- reading -------------------------------------------------------------------------

    async def _readable(
        self, room_id: str, who: Identity | None, need: Need = "read"
    ) -> Room | None:
        """Check access; the live room (its history stored first), if there is one."""
        record, room = await self.sessions.record(room_id, who=who)
        self.sessions.allow_record(record, who, need)
        if room is not None:
            await self.rooms.persist(room)
        return room

    async def history(
        self, room_id: str, who: Identity | None, *, before: int | None, limit: int
    ) -> tuple[list[HistoryEntry], list[Checkpoint]]:
        await self._readable(room_id, who)
        try:
            entries = await self.rooms.store.list_history(room_id, before=before, limit=limit)
            checkpoints = await self.rooms.store.list_checkpoints(room_id)
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        return entries, checkpoints

    async def at(
        self, room_id: str, who: Identity | None, version: int, doc_id: str = MAIN_FILE_ID
    ) -> Version:
        room = await self._readable(room_id, who)
        return await self._at(room_id, room, version, doc_id)

    async def _at(self, room_id: str, room: Room | None, version: int, doc_id: str) -> Version:
        if room is not None and version > room.version:
            raise VersionNotFound(f"Version {version} is after the session's ({room.version})")
        try:
            snapshot, ops = await self.rooms.store.text_history(room_id, doc_id, version)
            language = await self.rooms.store.language_at(room_id, version)
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        text = rebuild(snapshot, ops)
        if text is None:
            raise VersionNotFound(f"Version {version} of {doc_id} is not in the history")
        if language is None:
            language = room.language if room is not None else (await self._language(room_id))
        return Version(version, doc_id, text, language)

    async def _language(self, room_id: str) -> str:
        record, _ = await self.sessions.record(room_id)
        return record.language

    async def diff(
        self, room_id: str, who: Identity | None, first: int, second: int, doc_id: str
    ) -> str:
        room = await self._readable(room_id, who)
        old = await self._at(room_id, room, first, doc_id)
        new = await self._at(room_id, room, second, doc_id)
        return unified_diff(old.text, new.text, doc_id, first, second)

    # -- restoring -------------------------------------------------------------------------

    async def restore(
        self,
        room_id: str,
        who: Identity | None,
        *,
        version: int | None,
        checkpoint_id: str | None,
        doc_id: str = MAIN_FILE_ID,
    ) -> int:
        """Make the text (and, for the main text, the language) what it was at `version` or
        at a checkpoint: one new change, merged and broadcast like any; the new version."""
        await self._readable(room_id, who, "write")
        if checkpoint_id is not None:
            version = await self._checkpoint_version(room_id, checkpoint_id)
        if version is None:
            raise InvalidPayload("give version or checkpointId")
        room = await self.rooms.open(room_id, create=False)
        target = await self._at(room_id, room, version, doc_id)
        doc = room.docs.get(doc_id)
        if doc is None:
            doc = await self.editing.create_file(room, doc_id, doc_id)
        language = target.language if doc_id == MAIN_FILE_ID else None
        await self.editing.replace_text(room, doc, target.text, language, merge=False)
        await self.rooms.persist(room)
        return room.version

    async def _checkpoint_version(self, room_id: str, checkpoint_id: str) -> int:
        try:
            checkpoints = await self.rooms.store.list_checkpoints(room_id)
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        for checkpoint in checkpoints:
            if checkpoint.id == checkpoint_id:
                return checkpoint.version
        raise VersionNotFound(f"No checkpoint {checkpoint_id}")

    # -- retention -------------------------------------------------------------------------

    async def compact(self, now: datetime) -> int:
        """Fold the changes older than HISTORY_RETENTION_DAYS into one snapshot per text:
        versions before it can no longer be rebuilt, but checkpoints' can. How many texts
        were folded."""
        before = now - timedelta(days=self.rooms.settings.history_retention_days)
        store = self.rooms.store
        folded = 0
        for room_id, doc_id, upto in await store.old_history(before, COMPACT_BATCH):
            if doc_id == LANGUAGE:
                text = await store.language_at(room_id, upto)
            else:
                text = rebuild(*(await store.text_history(room_id, doc_id, upto)))
            if text is None:
                continue  # nothing to start from: left as it is
            folded_at = HistoryEntry(
                room_id=room_id, version=upto, doc_id=doc_id, kind="snapshot", text=text,
                op=FOLDED, at=now,
            )  # fmt: skip
            await store.append_history([folded_at])
            await store.drop_history(room_id, doc_id, upto)
            folded += 1
        return folded

    # -- checkpoints -----------------------------------------------------------------------

    async def checkpoint(
        self,
        room_id: str,
        who: Identity | None,
        name: str,
        author: tuple[str | None, str | None] = (None, None),
    ) -> Checkpoint:
        """A named checkpoint of the room as it is now, stored before it is answered."""
        await self._readable(room_id, who, "write")
        room = await self.rooms.open(room_id, create=False)
        made = await self._make(room, name, author, auto=False)
        await self.rooms.persist(room)
        return made

    def _checkpoint_of(
        self, room: Room, name: str, author: tuple[str | None, str | None], *, auto: bool
    ) -> Checkpoint:
        return Checkpoint(
            room_id=room.room_id,
            # An automatic one is the same on every process that makes it.
            id=f"auto-{room.version}" if auto else uuid.uuid4().hex[:12],
            name=name,
            version=room.version,
            at=self.rooms.now(room),
            author_id=author[0],
            author_name=author[1],
            auto=auto,
        )

    async def _make(
        self, room: Room, name: str, author: tuple[str | None, str | None], *, auto: bool
    ) -> Checkpoint:
        async with room.lock:
            made = self._checkpoint_of(room, name, author, auto=auto)
            body = {"k": "checkpoint", "c": made.model_dump(mode="json")}
            await self.rooms.order(room, body, versioned=False)
            self._take(room, made)
        return made

    def _apply_checkpoint(self, room: Room, entry: LogEntry) -> None:
        self._take(room, Checkpoint.model_validate(entry.body["c"]))

    def _take(self, room: Room, made: Checkpoint) -> None:
        if made.id in room.history.checkpoint_ids or self.rooms.rooms.get(room.room_id) is not room:
            return  # made already, or the room left memory meanwhile (its writer let it go)
        texts = {MAIN_FILE_ID: room.main.text, **{doc.doc_id: doc.text for doc in room.files()}}
        room.history.checkpoint(made, texts, room.language)
        room.checkpointed = (room.text_version(), time.monotonic())
        room.changes += 1
        self.rooms.writer.changed(room)
        created = outbound.checkpoint_created(made)
        self.notifier.broadcast(room.room_id, "checkpointCreated", created)

    def _last_left(self, room: Room) -> None:
        """The last person left: an automatic checkpoint, if a text or the language changed
        since the last one; taken at once (one process), before the room is written."""
        if room.remote or room.remote_away or room.text_version() <= room.checkpointed[0]:
            return
        if self.rooms.log is None:
            self._take(room, self._checkpoint_of(room, LEFT_NAME, (None, None), auto=True))
        else:  # cluster mode: through the room's log (the last of every process)
            self._spawn(self._auto(room, LEFT_NAME))

    async def run(self) -> None:
        """Every CHECKPOINT_INTERVAL_SECONDS of work on a room: an automatic checkpoint."""
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(min(SCAN_SECONDS, self.interval))
            now = time.monotonic()
            for room in list(self.rooms.rooms.values()):
                version, at = room.checkpointed
                changed = room.text_version() > version
                if changed and now - at >= self.interval and room.members:
                    name = INTERVAL_NAME.format(minutes=self.interval / 60)
                    self._spawn(self._auto(room, name))

    async def _auto(self, room: Room, name: str) -> None:
        if self.rooms.rooms.get(room.room_id) is not room:
            return
        try:
            await self._make(room, name, (None, None), auto=True)
        except Exception as error:
            log.warning("room %s: automatic checkpoint failed: %s", room.room_id, error)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
