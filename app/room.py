"""One live room: its members and its session state; every method is synchronous."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.merge import TextHistory
from app.models import ChatRecord, Participant, SessionRecord

MAX_PARTICIPANTS = 500


@dataclass
class Member:
    """A socket in the room."""

    sid: str
    name: str
    user_id: str | None
    joined_at: datetime


@dataclass(frozen=True)
class CodeApplied:
    """What a code change did to the room."""

    version: int
    code: str
    language: str
    changed: bool  # the room's text or language changed, so the version grew
    echo: bool  # the room's text differs from what the sender sent
    merged: bool
    reason: str | None


def _participant_key(user_id: str | None, name: str) -> str:
    return f"user:{user_id}" if user_id is not None else f"name:{name}"


class Room:
    """The in-memory truth of a session while anyone uses it; the writer persists snapshots."""

    def __init__(self, record: SessionRecord, ttl: timedelta, history: TextHistory) -> None:
        self.room_id = record.room_id
        self.code = record.code
        self.language = record.language
        self.version = record.version
        self.creator_name = record.creator_name
        self.creator_user_id = record.creator_user_id
        self.created_at = record.created_at
        self.last_activity = record.last_activity
        self.expires_at = record.expires_at
        self.participants = {_participant_key(p.user_id, p.name): p for p in record.participants}
        self.ttl = ttl
        self.history = history
        self.members: dict[str, Member] = {}
        self.outbox: list[ChatRecord] = []  # chat accepted but not yet stored, in order
        self.changes = 0  # grows with every mutation that must reach the store
        self.saved_changes = 0
        self.saved_version = record.version
        self.code_version = record.code_version  # versions of the last code and language
        self.language_version = record.language_version  # change, for replays
        # Versions above the stored one may have been handed out by a process that crashed
        # before writing them: each load is a new epoch, in which they are handed out again.
        self.epoch = uuid.uuid4().hex[:12]
        self.loaded_version = record.version

    @property
    def needs_save(self) -> bool:
        return self.changes > self.saved_changes or bool(self.outbox)

    def _touch(self, now: datetime) -> None:
        self.last_activity = now
        self.expires_at = now + self.ttl
        self.changes += 1

    def add_member(self, sid: str, name: str, user_id: str | None, now: datetime) -> Member:
        member = Member(sid=sid, name=name, user_id=user_id, joined_at=now)
        self.members[sid] = member
        key = _participant_key(user_id, name)
        known = self.participants.pop(key, None)
        self.participants[key] = Participant(
            user_id=user_id, name=name, joined_at=known.joined_at if known else now, last_seen=now
        )
        while len(self.participants) > MAX_PARTICIPANTS:
            del self.participants[next(iter(self.participants))]
        self._touch(now)
        return member

    def remove_member(self, sid: str, now: datetime) -> Member | None:
        member = self.members.pop(sid, None)
        if member is None:
            return None
        self.history.forget(sid)
        key = _participant_key(member.user_id, member.name)
        if (known := self.participants.get(key)) is not None:
            self.participants[key] = known.model_copy(update={"last_seen": now})
        self._touch(now)
        return member

    def apply_code(
        self, sid: str, code: str, language: str | None, base_version: int | None, now: datetime
    ) -> CodeApplied:
        rebased = self.history.rebase(sid, code, base_version)
        new_language = language or self.language
        changed = rebased.text != self.code or new_language != self.language
        if changed:
            self.version += 1
            self.history.commit(rebased, self.version)
            if rebased.text != self.code:
                self.code = rebased.text
                self.code_version = self.version
            if new_language != self.language:
                self.language = new_language
                self.language_version = self.version
            self._touch(now)
        return CodeApplied(
            version=self.version,
            code=self.code,
            language=self.language,
            changed=changed,
            echo=rebased.text != code,
            merged=rebased.merged,
            reason=rebased.reason,
        )

    def set_language(self, language: str, now: datetime) -> bool:
        if language == self.language:
            return False
        self.version += 1
        self.history.advance(self.version)
        self.language = language
        self.language_version = self.version
        self._touch(now)
        return True

    def replace(self, code: str | None, language: str | None, now: datetime) -> tuple[bool, bool]:
        """A whole-state update from outside the room (REST); which of code, language changed."""
        code_changed = code is not None and code != self.code
        language_changed = language is not None and language != self.language
        if code_changed:
            assert code is not None
            self.version += 1
            self.history.advance(self.version, code)
            self.code = code
            self.code_version = self.version
        if language_changed:
            assert language is not None
            self.set_language(language, now)
        self._touch(now)
        return code_changed, language_changed

    def add_participants(self, participants: list[tuple[str | None, str]], now: datetime) -> None:
        for user_id, name in participants:
            key = _participant_key(user_id, name)
            if key not in self.participants and len(self.participants) < MAX_PARTICIPANTS:
                self.participants[key] = Participant(
                    user_id=user_id, name=name, joined_at=now, last_seen=now
                )
        self._touch(now)

    def accept_chat(
        self, member: Member, text: str, client_id: str | None, now: datetime
    ) -> ChatRecord:
        self.version += 1
        self.history.advance(self.version)
        self._touch(now)
        message = ChatRecord(
            room_id=self.room_id,
            version=self.version,
            id=client_id or uuid.uuid4().hex,
            user_id=member.user_id,
            user_name=member.name,
            message=text,
            timestamp=now,
            expires_at=self.expires_at,
        )
        self.outbox.append(message)
        return message

    def snapshot(self) -> SessionRecord:
        return SessionRecord(
            room_id=self.room_id,
            code=self.code,
            language=self.language,
            version=self.version,
            code_version=self.code_version,
            language_version=self.language_version,
            creator_name=self.creator_name,
            creator_user_id=self.creator_user_id,
            participants=tuple(self.participants.values()),
            created_at=self.created_at,
            last_activity=self.last_activity,
            expires_at=self.expires_at,
        )

    def mark_saved(self, record: SessionRecord, changes: int, messages: int) -> None:
        """The snapshot taken at `changes` mutations and the first `messages` chats are stored."""
        self.saved_changes = max(self.saved_changes, changes)
        self.saved_version = max(self.saved_version, record.version)
        del self.outbox[:messages]
