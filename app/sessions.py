"""Sessions as REST sees them: create, read, update, delete, list; live rooms first."""

from __future__ import annotations

import asyncio

from app.errors import SessionExists, SessionNotFound, StoreUnavailable
from app.models import (
    DEFAULT_CODE,
    DEFAULT_LANGUAGE,
    ChatRecord,
    SessionRecord,
    SessionSummary,
)
from app.room import Room
from app.rooms import Rooms
from app.storage import StoreError


class Sessions:
    """Every operation goes through the live room when there is one, so the debounced writer
    can never later overwrite what REST changed."""

    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms

    async def create(
        self,
        room_id: str,
        creator_name: str,
        creator_user_id: str | None,
        code: str | None,
        language: str | None,
    ) -> Room:
        """Create a session, or complete one its creator's join already made."""
        room = await self.rooms.open(room_id, create=True)
        if room.creator_name is not None:
            raise SessionExists(f"Session {room_id} already exists")
        now = self.rooms.clock()
        room.creator_name = creator_name
        room.creator_user_id = creator_user_id
        # The creator's initial code and language apply to what nobody has changed yet (the
        # client joins, sends languageChange and may chat before it calls create).
        room.replace(
            code if room.code == DEFAULT_CODE else None,
            language if room.language == DEFAULT_LANGUAGE else None,
            now,
        )
        room.add_participants([(creator_user_id, creator_name)], now)
        await self.persist(room)
        return room

    async def persist(self, room: Room) -> None:
        if not await self.rooms.writer.flush(room, within=self.rooms.settings.chat_timeout):
            raise StoreUnavailable("The session store did not answer in time; retrying")

    async def delete(self, room_id: str) -> Room | None:
        """Delete the stored session; a live room is dropped. The dropped room, if any."""
        room = self.rooms.detach(room_id)
        try:
            deleted = await self.rooms.store.delete(room_id)
        except StoreError as error:
            if room is not None:
                self.rooms.reattach(room)
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error
        if room is None and not deleted:
            raise SessionNotFound(f"Session {room_id} not found")
        if room is not None:
            self.rooms.writer.forget(room_id)
        return room

    async def sessions_of(self, user_id: str, *, limit: int) -> list[SessionSummary]:
        """The user's unexpired sessions, as creator or participant, newest activity first."""
        try:
            return await self.rooms.store.list_for_user(
                user_id, now=self.rooms.clock(), limit=limit
            )
        except StoreError as error:
            raise StoreUnavailable(f"The session store is unavailable: {error}") from error

    async def store_problem(self, *, within: float) -> str | None:
        """None when the store answers within `within` seconds, else what is wrong."""
        try:
            # Shielded: a probe cut short must not abandon a store operation half-way.
            await asyncio.wait_for(asyncio.shield(self.rooms.store.ping()), within)
        except StoreError as error:
            return str(error)
        except TimeoutError:
            return f"the store did not answer within {within} s"
        return None

    async def session(
        self, room_id: str, *, before: int | None, limit: int
    ) -> tuple[SessionRecord, list[ChatRecord]]:
        """A session as it is now (live state first) with a page of its chat, oldest first."""
        room = self.rooms.rooms.get(room_id)
        if room is None:
            record = await self.rooms.load_record(room_id)
            if record is None:
                raise SessionNotFound(f"Session {room_id} not found")
        else:
            record = room.snapshot()
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
    ) -> tuple[Room, bool, bool]:
        """Apply a REST update through the live room; which of code and language changed."""
        room = await self.rooms.open(room_id, create=False)
        now = self.rooms.clock()
        code_changed, language_changed = room.replace(code, language, now)
        if participants:
            room.add_participants(participants, now)
        await self.persist(room)
        return room, code_changed, language_changed
