"""Sessions as REST sees them: create, read, update, delete, list, files; live rooms first."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from app.domain.access import Identity, Need, rules_of
from app.domain.editing import Editing
from app.domain.errors import (
    ClusterUnavailable,
    FileNotFound,
    Forbidden,
    SessionExists,
    SessionNotFound,
    StoreUnavailable,
)
from app.domain.gate import Gate
from app.domain.room import Room
from app.domain.rooms import Rooms
from app.storage import StoreError
from app.storage.records import (
    DEFAULT_CODE,
    DEFAULT_LANGUAGE,
    MAIN_FILE_ID,
    ChatRecord,
    FileRecord,
    SessionRecord,
    SessionSummary,
)


@dataclass(frozen=True)
class FileEntry:
    """A file as the REST routes save it (the original's whole-entry upsert)."""

    file_id: str
    name: str
    content: str
    mime: str
    size: int
    uploaded_by: str
    uploader_name: str


def with_main_content(record: SessionRecord) -> tuple[FileRecord, ...]:
    """The session's files, the main one carrying the session's code."""
    return tuple(
        f.model_copy(update={"content": record.code}) if f.file_id == MAIN_FILE_ID else f
        for f in record.files
    )


class Sessions:
    """Every operation goes through the live room when there is one, so the debounced writer
    can never later overwrite what REST changed."""

    def __init__(self, rooms: Rooms, editing: Editing, gate: Gate) -> None:
        self.rooms = rooms
        self.editing = editing
        self.gate = gate
        self.policy = gate.policy

    def _allow(self, room: Room, who: Identity | None, need: Need) -> None:
        self.policy.check(room.rules(), who, need, room.room_id)

    def allow_record(self, record: SessionRecord, who: Identity | None, need: Need) -> None:
        """As `_allow`, for a session as it is stored (or snapshotted)."""
        rules = rules_of(record.access, record.creator_user_id)
        self.policy.check(rules, who, need, record.room_id)

    async def create(
        self,
        room_id: str,
        creator_name: str,
        creator_user_id: str | None,
        code: str | None,
        language: str | None,
        who: Identity | None = None,
    ) -> Room:
        """Create a session, or complete one its creator's join already made. With access
        control, a token's user creates it as themselves, and owns it."""
        if who is not None and not who.admin:
            if creator_user_id is not None and creator_user_id != who.user_id:
                raise Forbidden("creatorUserId is not the user of your token")
            creator_user_id = who.user_id
        room = await self.rooms.open(room_id, create=True)
        await self.gate.establish(room, who)
        owner = room.rules().owner
        if (
            self.policy.enforced
            and owner is not None
            and self.policy.role(room.rules(), who) != "owner"
        ):
            raise SessionExists(f"Session {room_id} already exists")
        async with room.lock:
            if room.creator_name is None:
                # Cluster mode: another process's create may come first in the room's log
                # (applied here by `order`); the first one is the session's.
                entry = {"k": "creator", "name": creator_name, "user": creator_user_id}
                await self.rooms.order(room, entry, versioned=False)
            if room.creator_name is not None:
                raise SessionExists(f"Session {room_id} already exists")
            self.rooms.set_creator(room, creator_name, creator_user_id)
        # The creator's initial code and language apply to what nobody has changed yet (the
        # client joins, sends languageChange and may chat before it calls create).
        await self.editing.replace_text(
            room,
            room.main,
            code if room.code == DEFAULT_CODE else None,
            language if room.language == DEFAULT_LANGUAGE else None,
            merge=False,
        )
        await self.editing.add_participants(room, [(creator_user_id, creator_name)])
        await self.rooms.persist(room)
        return room

    async def delete(self, room_id: str, who: Identity | None = None) -> Room | None:
        """Delete the stored session; a live room is dropped. The dropped room, if any.

        Cluster mode: the room's log says `deleted` first (every process drops its copy and
        refuses further changes), then this process waits for the room's write lease, so that
        no write of another process lands after the deletion."""
        rooms = self.rooms
        if self.policy.enforced:
            record, _ = await self.record(room_id, who=who)
            self.allow_record(record, who, "own")
        live = False
        if rooms.log is not None:
            live = await rooms.log.delete(room_id)  # ClusterUnavailable: nothing happened
        room, dropped = rooms.detach(room_id)
        await dropped
        lease = rooms.settings.cluster_writer_lease_seconds + 1.0
        if not await rooms.writer.alone(room_id, within=lease):
            raise StoreUnavailable("Another process still writes this session; try again")
        try:
            deleted = await rooms.store.delete(room_id)
        except StoreError as error:
            if room is not None and rooms.log is None:
                rooms.reattach(room)
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        finally:
            await rooms.writer.release(room_id)
        if room is None and not deleted and not live:
            raise SessionNotFound(f"Session {room_id} not found")
        if room is not None:
            rooms.tell_deleted(room)
        return room

    async def sessions_of(
        self, user_id: str, *, limit: int, who: Identity | None = None
    ) -> list[SessionSummary]:
        """The user's unexpired sessions, as creator or participant, newest activity first
        (with access control: only to that user, or an admin)."""
        if self.policy.enforced and (who is None or not (who.admin or who.user_id == user_id)):
            raise Forbidden("Only that user may list their sessions")
        try:
            return await self.rooms.store.list_for_user(
                user_id, now=self.rooms.clock(), limit=limit
            )
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error

    async def store_problem(self, *, within: float) -> str | None:
        """None when the store (and in cluster mode the room log) answers within `within`
        seconds, else what is wrong."""
        if self.rooms.log is not None:
            try:
                problem = await asyncio.wait_for(self.rooms.log.problem(), within)
            except TimeoutError:
                problem = f"the cluster's Redis did not answer within {within} s"
            if problem is not None:
                return problem
        try:
            # Shielded: a probe cut short must not abandon a store operation half-way.
            await asyncio.wait_for(asyncio.shield(self.rooms.store.ping()), within)
        except StoreError as error:
            return str(error)
        except TimeoutError:
            return f"the store did not answer within {within} s"
        return None

    async def record(
        self, room_id: str, reader: str | None = None, who: Identity | None = None
    ) -> tuple[SessionRecord, Room | None]:
        """The session as it is now: the live room's state, else the stored one. A live
        room remembers which version it served to the `reader`'s address (an editor that
        restores its text over REST then types on it)."""
        room = self.rooms.rooms.get(room_id)
        if room is not None:
            room = await self.rooms.open(room_id, create=False)  # expired: SessionExpired
        elif self.rooms.log is not None:
            # Cluster mode: the room may be live on another process, ahead of the store.
            with contextlib.suppress(ClusterUnavailable):
                room = await self.rooms.open(room_id, create=False)
        if room is not None:
            await self.rooms.catch_up(room)
            self._allow(room, who, "read")
            if reader is not None:
                room.served.append((reader, room.version))
            return room.snapshot(), room
        record = await self.rooms.load_record(room_id)
        if record is None:
            raise SessionNotFound(f"Session {room_id} not found")
        self.allow_record(record, who, "read")
        return record, None

    async def session(
        self,
        room_id: str,
        *,
        before: int | None,
        limit: int,
        reader: str | None = None,
        who: Identity | None = None,
    ) -> tuple[SessionRecord, list[ChatRecord]]:
        """A session as it is now (live state first) with a page of its chat, oldest first."""
        record, room = await self.record(room_id, reader, who)
        try:
            messages = await self.rooms.store.list_messages(room_id, before=before, limit=limit)
        except StoreError as error:
            if room is None:
                raise StoreUnavailable(f"The session store is unavailable: {error}") from error
            messages = []
        if room is not None and room.outbox:
            stored = {m.version for m in messages}
            unsaved = [
                m
                for m in room.outbox
                if m.version not in stored and (before is None or m.version < before)
            ]
            messages = sorted(messages + unsaved, key=lambda m: m.version)[-limit:]
        return record, messages

    async def update(
        self,
        room_id: str,
        code: str | None,
        language: str | None,
        participants: list[tuple[str | None, str]],
        file_id: str | None = None,
        who: Identity | None = None,
    ) -> None:
        """Apply a REST update through the live room. `code` is the text of `file_id` when
        that names another file of the room (the current client sends its active file)."""
        room = await self.rooms.open(room_id, create=False)
        self._allow(room, who, "write")
        doc = room.main
        if file_id is not None and file_id != MAIN_FILE_ID:
            named = room.docs.get(file_id)
            if named is not None and named.listed:
                doc = named
            else:  # a file the room does not list (an editor's auto-save of a file it only
                code = None  # opened locally): its text is not the main text's, left alone
        await self.editing.replace_text(room, doc, code, language)
        await self.editing.add_participants(room, participants)  # touches the session
        await self.rooms.persist(room)

    # -- files -------------------------------------------------------------------------------

    async def files(
        self, room_id: str, reader: str | None = None, who: Identity | None = None
    ) -> tuple[FileRecord, ...]:
        record, _ = await self.record(room_id, reader, who)
        return with_main_content(record)

    async def file(
        self, room_id: str, file_id: str, reader: str | None = None, who: Identity | None = None
    ) -> FileRecord:
        for entry in await self.files(room_id, reader, who):
            if entry.file_id == file_id:
                return entry
        raise FileNotFound("No file found with this file ID")

    async def save_file(self, room_id: str, entry: FileEntry, who: Identity | None = None) -> None:
        """Create or replace a file entry; its text goes through the room like any change."""
        room = await self.rooms.open(room_id, create=False)
        self._allow(room, who, "write")
        doc = room.docs.get(entry.file_id)
        if doc is None or not doc.listed:
            room.check_new_text(entry.file_id, entry.content)  # a refused save makes no file
            doc = await self.editing.create_file(room, entry.file_id, entry.name)
        await self.editing.replace_text(room, doc, entry.content, None)
        await self.editing.describe_file(
            room,
            doc,
            name=entry.name,
            mime=entry.mime,
            size=entry.size,
            uploaded_by=entry.uploaded_by,
            uploader_name=entry.uploader_name,
        )
        await self.rooms.persist(room)

    async def delete_file(self, room_id: str, file_id: str, who: Identity | None = None) -> None:
        room = await self.rooms.open(room_id, create=False)
        self._allow(room, who, "write")
        await self.editing.delete_file(room, file_id)
        await self.rooms.persist(room)
