"""One live room: members, texts (the code and the files), chat, whiteboard and call.

Every method is synchronous: a read-check-mutate of room state never spans an `await`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.clock import utc_now
from app.config import Settings
from app.domain.access import rules_of
from app.domain.deltas import changes_to_op
from app.domain.errors import FileNotFound, InvalidPayload, LimitExceeded
from app.domain.history import RoomHistory
from app.domain.merge import Rebased, TextHistory
from app.domain.ot import Op
from app.domain.sequencer import Sequencer
from app.domain.streams import Stream
from app.storage.records import (
    DEFAULT_CODE,
    MAIN_FILE_ID,
    AccessRecord,
    ChatRecord,
    FileRecord,
    Participant,
    SessionRecord,
)

MAX_PARTICIPANTS = 500
MAX_REPLACED_LANGUAGES = 8  # replaced languages remembered per room
# An activity alone (nothing else changed) is written at most this often (see note_activity).
ACTIVITY_WRITE_INTERVAL = timedelta(minutes=1)


@dataclass(eq=False)
class Member:
    """A socket in the room, and what the server believes that socket's editor shows."""

    sid: str
    name: str
    user_id: str | None
    joined_at: datetime
    address: str = "unknown"
    uses_code: bool = False  # it sent `codeChange`: it reads `codeUpdate`
    uses_files: bool = False  # it sent a file event: it reads `fileContentUpdate`
    joined_version: int = 0  # the room version when it joined
    round_trip: float = 0.0  # its connection's round trip when it connected, seconds
    streams: dict[str, Stream] = field(default_factory=dict)  # what it has of each text
    told: list[str] = field(default_factory=list)  # languages it was told and has not echoed
    spoke_language: bool = False  # it has sent a languageChange
    deltas: bool = False  # it reads every change as a delta, its own included (extension)
    process: str = ""  # cluster mode: the process whose socket it is ("": this one)
    role: str = "editor"  # owner, editor or viewer (see access.py)
    account: str | None = None  # the user id its token proved (None: anonymous)

    def stream(self, doc_id: str) -> Stream:
        stream = self.streams.get(doc_id)
        if stream is None:
            stream = self.streams[doc_id] = Stream(self.joined_version, self.round_trip / 2)
            stream.versioned = self.deltas  # it names its bases: nothing to infer
        return stream

    def shows(self, doc_id: str, text: str) -> bool:
        """Whether its editor shows (or will, once what is in flight arrives) this text."""
        stream = self.streams.get(doc_id)
        return stream is not None and stream.held == text

    @property
    def identity(self) -> str:
        """Who this is across sockets: the app user id, else the name at one address."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"guest:{self.name}@{self.address}"

    def reads_code_updates(self, from_file_event: bool) -> bool:
        """Whether it reads `codeUpdate`: it sent `codeChange`, or nothing tells it does not
        and the change came as one (a room of one generation hears what the original sent)."""
        return self.uses_code or (not self.uses_files and not from_file_event)

    def reads_file_updates(self, from_file_event: bool) -> bool:
        return self.uses_files or (not self.uses_code and from_file_event)


@dataclass(eq=False)
class Document:
    """A text of the room with its merge history: the code (the main file) or another file."""

    doc_id: str
    history: TextHistory
    name: str
    uploaded_at: datetime
    version: int = 0  # the room version of its last change
    listed: bool = True  # one of the session's files (the main text is, once opened)
    mime: str = "text/plain"
    size: int = 0
    uploaded_by: str | None = None
    uploader_name: str | None = None

    @property
    def text(self) -> str:
        return self.history.text

    def record(self) -> FileRecord:
        return FileRecord(
            file_id=self.doc_id,
            name=self.name,
            content=self.text,
            mime=self.mime,
            size=self.size,
            uploaded_by=self.uploaded_by,
            uploader_name=self.uploader_name,
            uploaded_at=self.uploaded_at,
            version=self.version,
        )


@dataclass(frozen=True)
class TextChange:
    """What a text change did: the room text it produced and whether it was merged."""

    doc: Document
    version: int
    sent: str  # the text the sender sent
    merged: bool
    reason: str | None
    language_changed: bool

    @property
    def echo(self) -> bool:
        """The room text differs from the sender's: the sender must be told."""
        return self.doc.text != self.sent


def _participant_key(user_id: str | None, name: str) -> str:
    return f"user:{user_id}" if user_id is not None else f"name:{name}"


class Room:
    """The in-memory truth of a session while anyone uses it; the writer persists snapshots."""

    def __init__(
        self,
        record: SessionRecord,
        settings: Settings,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.monotonic = monotonic
        self.room_id = record.room_id
        self.language = record.language
        self.version = record.version
        self.creator_name = record.creator_name
        self.creator_user_id = record.creator_user_id
        self.access = record.access  # who may use it (None: made before access control)
        self.fresh = False  # made here now, not loaded: its maker may own it
        self.renewed = False  # made because its session had expired (its first joiner is told)
        self.created_at = record.created_at
        self.born = False  # cluster mode: made here, not loaded (see Rooms._first_entry)
        self.deleted = False  # its session was deleted: nothing of it is written any more
        # Cluster mode, while the lock is held: when the log entry being applied happened, as
        # its process stamped it (every process then stamps the same time).
        self.stamp: datetime | None = None
        self.last_activity = record.last_activity
        self.expires_at = record.expires_at
        self.activity_marked = record.last_activity  # the last activity counted as a change
        self.participants = {_participant_key(p.user_id, p.name): p for p in record.participants}
        self.history = RoomHistory(self.room_id, lambda: self.stamp or utc_now())
        self.docs: dict[str, Document] = {}
        self._load_docs(record)
        self.active_file = record.active_file
        self.whiteboard: Any = record.whiteboard
        self.members: dict[str, Member] = {}
        self.away: dict[str, Member] = {}  # dropped sockets whose departure is held
        self.outbox: list[ChatRecord] = []  # chat accepted but not yet stored, in order
        self.changes = 0  # grows with every mutation that must reach the store
        self.saved_changes = 0
        self.language_version = record.language_version  # for replays
        # The version of the last checkpoint and when (monotonic): loaded counts as one.
        self.checkpointed = (self.text_version(), monotonic())
        # Languages the room held before, and when each was replaced: a REST auto-save that
        # names one of them soon after is stale (see Editing.replace_text).
        self.replaced_languages: dict[str, datetime] = {}
        self.sequencer = Sequencer(record.version)
        self.seq = 0  # orders what each socket was sent and sent (see streams.py)
        self.served: deque[tuple[str, int]] = deque(maxlen=64)  # REST reads: (address, version)
        self.call_active = False
        self.call: dict[str, None] = {}  # call participants' socket ids, in order
        # Versions above the stored one may have been handed out by a process that crashed
        # before writing them: each load is a new epoch, in which they are handed out again.
        self.epoch = uuid.uuid4().hex[:12]
        self.loaded_version = record.version
        # Cluster mode: members on other processes, the last log entry applied, and the
        # change count and version after each recent entry (what a `saved` entry covers).
        self.remote: dict[str, Member] = {}
        self.remote_away: dict[str, Member] = {}
        self.log_id = "0-0"
        self.marks: deque[tuple[str, int, int]] = deque(maxlen=4096)
        self.lock = _RoomLock(self)  # one change at a time is ordered (cluster mode)
        self._unsettled: str | None = None  # this process's entry, being applied

    def _history(self, doc_id: str, text: str, version: int) -> TextHistory:
        history = TextHistory(
            text,
            version,
            min_versions=self.settings.merge_history_versions,
            min_seconds=self.settings.merge_history_seconds,
            clock=self.monotonic,
            # What every session starts with: an editor that never got the room's text
            # auto-saves it (on any process, whatever this one holds of the room's past).
            stale=(DEFAULT_CODE,),
        )

        def record(version: int, op: Op, before: str, after: str, author: str | None) -> None:
            self.history.op(doc_id, version, op, before, after, self.author(author), self.language)

        history.recorder = record
        return history

    def author(self, sid: str | None) -> tuple[str | None, str | None]:
        """Who a change came from, for the history: (app user id, name)."""
        if sid is None:
            return None, "server"
        member = (
            self.members.get(sid)
            or self.away.get(sid)
            or self.remote.get(sid)
            or self.remote_away.get(sid)
        )
        if member is None:
            return None, None
        return member.account or member.user_id, member.name

    def _load_docs(self, record: SessionRecord) -> None:
        files = {f.file_id: f for f in record.files}
        main = files.pop(MAIN_FILE_ID, None)
        self.docs[MAIN_FILE_ID] = Document(
            doc_id=MAIN_FILE_ID,
            history=self._history(MAIN_FILE_ID, record.code, record.version),
            name=main.name if main else MAIN_FILE_ID,
            uploaded_at=main.uploaded_at if main else record.created_at,
            version=record.code_version,
            listed=main is not None,
        )
        for f in files.values():
            self.docs[f.file_id] = Document(
                doc_id=f.file_id,
                history=self._history(f.file_id, f.content, record.version),
                name=f.name,
                uploaded_at=f.uploaded_at,
                version=f.version,
                mime=f.mime,
                size=f.size,
                uploaded_by=f.uploaded_by,
                uploader_name=f.uploader_name,
            )

    # -- state ---------------------------------------------------------------------------

    @property
    def main(self) -> Document:
        return self.docs[MAIN_FILE_ID]

    @property
    def code(self) -> str:
        return self.main.text

    @property
    def code_version(self) -> int:
        return self.main.version

    @property
    def needs_save(self) -> bool:
        return self.changes > self.saved_changes or bool(self.outbox)

    def files(self) -> Iterator[Document]:
        return (doc for doc in self.docs.values() if doc.listed)

    def touch(self, now: datetime) -> None:
        self.note_activity(now)
        self.activity_marked = now
        self.changes += 1

    def note_activity(self, now: datetime) -> None:
        """The session was used and nothing in it changed (an open editor auto-saves the text
        the room holds about once a second): kept in memory, written with the next change."""
        self.last_activity = now
        self.expires_at = now + self.settings.ttl

    def activity_due(self, now: datetime) -> bool:
        """Whether an activity alone is to be written: the last written is a while ago."""
        return now - self.activity_marked >= ACTIVITY_WRITE_INTERVAL

    def newcomers(self, participants: list[tuple[str | None, str]]) -> bool:
        """Whether adding `participants` would list anyone new."""
        return len(self.participants) < MAX_PARTICIPANTS and any(
            _participant_key(user_id, name) not in self.participants
            for user_id, name in participants
        )

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    # -- members ---------------------------------------------------------------------------

    def add_member(
        self, sid: str, name: str, user_id: str | None, address: str, now: datetime
    ) -> Member:
        member = Member(
            sid=sid,
            name=name,
            user_id=user_id,
            joined_at=now,
            address=address,
            joined_version=self.version,
        )
        self.members[sid] = member
        self.add_participant(user_id, name, now)
        return member

    def add_participant(self, user_id: str | None, name: str, now: datetime) -> None:
        key = _participant_key(user_id, name)
        known = self.participants.pop(key, None)
        self.participants[key] = Participant(
            user_id=user_id, name=name, joined_at=known.joined_at if known else now, last_seen=now
        )
        while len(self.participants) > MAX_PARTICIPANTS:
            del self.participants[next(iter(self.participants))]
        self.touch(now)

    def participant_left(self, user_id: str | None, name: str, now: datetime) -> None:
        key = _participant_key(user_id, name)
        if (known := self.participants.get(key)) is not None:
            self.participants[key] = known.model_copy(update={"last_seen": now})
        self.touch(now)

    def away_member(self, identity: str) -> Member | None:
        candidates = (*self.away.values(), *self.remote_away.values())
        return next((m for m in candidates if m.identity == identity), None)

    def everyone(self) -> list[Member]:
        """The present members on every process, in the order they joined."""
        if not self.remote:
            return list(self.members.values())
        return sorted((*self.members.values(), *self.remote.values()), key=lambda m: m.joined_at)

    def size(self) -> int:
        return len(self.members) + len(self.remote)

    def present_twin(self, member: Member) -> Member | None:
        """Another present socket of the same person (a reload whose new socket came first)."""
        present = (*self.members.values(), *self.remote.values())
        return next((m for m in present if m is not member and m.identity == member.identity), None)

    def remove_member(self, sid: str, now: datetime) -> Member | None:
        """Forget a socket, present or away; its participant entry keeps the time it left."""
        member = self.members.pop(sid, None) or self.away.pop(sid, None)
        if member is None:
            return None
        for doc in self.docs.values():
            doc.history.forget(sid)
        self.participant_left(member.user_id, member.name, now)
        return member

    def add_participants(self, participants: list[tuple[str | None, str]], now: datetime) -> None:
        for user_id, name in participants:
            key = _participant_key(user_id, name)
            if key not in self.participants and len(self.participants) < MAX_PARTICIPANTS:
                self.participants[key] = Participant(
                    user_id=user_id, name=name, joined_at=now, last_seen=now
                )
        self.touch(now)

    # -- texts -----------------------------------------------------------------------------

    def _limit_of(self, doc_id: str) -> int:
        if doc_id == MAIN_FILE_ID:
            return self.settings.max_code_bytes
        return self.settings.max_file_bytes

    def check_text(self, doc_id: str, text: str) -> None:
        self._check_size(doc_id, text)

    def _check_size(self, doc_id: str, text: str) -> None:
        """Refuse a text over its limit, or one that would take the room's files over theirs."""
        limit = self._limit_of(doc_id)
        if len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
            raise LimitExceeded(f"{doc_id} would be larger than {limit} bytes")
        total_limit = self.settings.max_room_files_bytes
        others = [d.text for d in self.docs.values() if d.doc_id != doc_id]
        if (len(text) + sum(map(len, others))) * 4 <= total_limit:
            return
        total = len(text.encode("utf-8")) + sum(len(t.encode("utf-8")) for t in others)
        if total > total_limit:
            raise LimitExceeded(f"the room's texts would be larger than {total_limit} bytes")

    def doc(self, doc_id: str) -> Document:
        doc = self.docs.get(doc_id)
        if doc is None:
            raise FileNotFound(f"No file {doc_id!r} in room {self.room_id}")
        return doc

    def _check_count(self) -> None:
        if sum(1 for _ in self.files()) >= self.settings.max_files_per_room:
            raise LimitExceeded(f"a room holds at most {self.settings.max_files_per_room} files")

    def _new_doc(self, file_id: str, name: str, now: datetime) -> Document:
        doc = Document(file_id, self._history(file_id, "", self.version), name, now)
        self.docs[file_id] = doc
        return doc

    def check_new_text(self, file_id: str, text: str) -> None:
        """Refuse, before anything is made, a file (or text) the limits would refuse."""
        doc = self.docs.get(file_id)
        if doc is None or not doc.listed:
            self._check_count()
        self._check_size(file_id, text)

    def create_file(self, file_id: str, name: str, now: datetime) -> tuple[Document, bool]:
        """The file, made (empty) if unknown; True when it was made or newly listed."""
        doc = self.docs.get(file_id)
        if doc is not None and doc.listed:
            return doc, False
        self._check_count()
        version = self._next_version()
        if doc is None:
            doc = self._new_doc(file_id, name, now)
            doc.version = version
        else:  # the main text, opened as a file: its text is unchanged
            doc.listed, doc.name, doc.uploaded_at = True, name, now
        self.touch(now)
        return doc, True

    def rebase(
        self,
        member: Member,
        doc: Document,
        text: str,
        base_version: int | None,
        now: float,
        answered: int | None = None,
    ) -> Rebased:
        """Work out, without changing anything, the room text this change (arrived at the
        monotonic time `now`, its socket having answered `answered` probes) produces."""
        stream = member.stream(doc.doc_id)
        fetched = [version for address, version in self.served if address == member.address]
        return stream.rebase(doc.history, member.sid, text, base_version, now, answered, fetched)

    def rebase_delta(
        self, member: Member, doc: Document, changes: Sequence[Any], base_version: int
    ) -> Rebased | None:
        """A delta (changes on the text at `base_version`) moved past what was accepted
        since; None when that version is no longer kept."""
        if base_version > self.version:
            raise InvalidPayload(f"baseVersion {base_version} is ahead of the room")
        if base_version < doc.history.oldest_version:
            return None
        base = doc.history.text_at(base_version)
        op = changes_to_op(base, changes)
        return doc.history.rebase_op(member.sid, op, base_version, base)

    def apply_text(
        self,
        member: Member,
        doc: Document,
        rebased: Rebased,
        sent: str,
        language: str | None,
        now: datetime,
        answered: int | None = None,
    ) -> TextChange | None:
        """Make a rebased change the room text; None when it changes nothing. `answered`: the
        probes its socket had answered when it arrived."""
        new_language = language if language and doc.doc_id == MAIN_FILE_ID else self.language
        text_changed = rebased.text != doc.text
        language_changed = new_language != self.language
        if text_changed:
            self._check_size(doc.doc_id, rebased.text)
        stream = member.stream(doc.doc_id)
        versioned = rebased.base_version is not None
        if not text_changed and not language_changed:
            doc.history.note(rebased)
            stream.accepted(rebased, sent, self.next_seq(), doc.version, versioned, answered)
            return None
        version = self._next_version()
        doc.history.commit(rebased, version)
        if text_changed:
            doc.version = version
        stream.accepted(rebased, sent, self.next_seq(), doc.version, versioned, answered)
        if language_changed:
            self.replace_language(new_language, now, version=version, author=member.sid)
            self.language_version = version
        self.touch(now)
        return TextChange(doc, version, sent, rebased.merged, rebased.reason, language_changed)

    def apply_op(
        self, doc: Document, op: Op, version: int, author: str | None, now: datetime
    ) -> None:
        """A text change another process accepted (cluster mode), as version `version`."""
        doc.history.advance_op(version, op, author)
        self.version = version
        if op:
            doc.version = version
        self.touch(now)

    def commit_text(self, doc: Document, rebased: Rebased | None, op: Op, now: datetime) -> None:
        """A text change from outside a socket (REST): `rebased` (merged) or `op`."""
        version = self._next_version()
        if rebased is not None:
            doc.history.commit(rebased, version)
        else:
            doc.history.advance_op(version, op)
        doc.version = version
        self.touch(now)

    def ensure_doc(self, doc_id: str) -> Document:
        """The text, made unlisted if unknown (a log entry of a text made elsewhere)."""
        doc = self.docs.get(doc_id)
        return doc if doc is not None else self._new_doc(doc_id, doc_id, self.last_activity)

    def check_upload(self, file_id: str, content: str) -> None:
        doc = self.docs.get(file_id)
        if doc is None or not doc.listed:
            self._check_count()
        self._check_size(file_id, content)

    def upload(
        self,
        file_id: str,
        *,
        name: str,
        content: str,
        mime: str,
        size: int,
        uploaded_by: str | None,
        uploader_name: str | None,
        now: datetime,
    ) -> Document:
        """Create or replace a whole file entry (the original's upsert by fileId)."""
        self.check_upload(file_id, content)
        doc = self.docs.get(file_id)
        if doc is None:
            doc = self._new_doc(file_id, name, now)
        version = self._next_version()
        if content != doc.text:
            doc.history.advance(version, content)
        doc.listed, doc.version = True, version
        doc.name, doc.mime, doc.size = name, mime, size
        doc.uploaded_by, doc.uploader_name, doc.uploaded_at = uploaded_by, uploader_name, now
        self.touch(now)
        return doc

    def describe_file(
        self,
        doc: Document,
        *,
        name: str,
        mime: str,
        size: int,
        uploaded_by: str | None,
        uploader_name: str | None,
        now: datetime,
    ) -> None:
        """Replace a file's description (the original's whole-entry upsert, text apart)."""
        doc.name, doc.mime, doc.size = name, mime, size
        doc.uploaded_by, doc.uploader_name, doc.uploaded_at = uploaded_by, uploader_name, now
        doc.version = self._next_version()
        self.touch(now)

    def listed_doc(self, file_id: str) -> Document:
        doc = self.docs.get(file_id)
        if doc is None or not doc.listed:
            raise FileNotFound("No file found with this file ID")
        return doc

    def delete_file(self, file_id: str, now: datetime) -> Document:
        """Remove a file; the main text is only taken off the list (it is the session's code)."""
        doc = self.listed_doc(file_id)
        if file_id == MAIN_FILE_ID:
            doc.listed = False
        else:
            del self.docs[file_id]
        if self.active_file == file_id:
            self.active_file = None
        self._next_version()
        self.touch(now)
        return doc

    def replace_language(
        self,
        language: str,
        now: datetime,
        *,
        version: int,
        author: str | None = None,
        live: bool = True,
    ) -> None:
        """Make `language` the room's as of `version`. `live`: a socket changed it, so the
        one it replaces is remembered (see Editing.replace_text)."""
        if language != self.language:
            self.history.language(version, language, self.language, self.author(author))
        replaced = self.replaced_languages
        replaced.pop(language, None)
        if live:
            replaced[self.language] = now
            while len(replaced) > MAX_REPLACED_LANGUAGES:
                del replaced[next(iter(replaced))]
        self.language = language

    def set_language(
        self, language: str, now: datetime, *, live: bool = True, author: str | None = None
    ) -> bool:
        if language == self.language:
            return False
        self.language_version = self._next_version()
        self.replace_language(
            language, now, version=self.language_version, author=author, live=live
        )
        self.touch(now)
        return True

    def set_active_file(self, file_id: str, now: datetime) -> None:
        if self.active_file != file_id:
            self.active_file = file_id
            self.touch(now)

    def set_whiteboard(self, snapshot: Any, now: datetime) -> None:
        self.whiteboard = snapshot
        self.touch(now)

    # -- chat ------------------------------------------------------------------------------

    def chat_record(
        self, member: Member, text: str, message_id: str, now: datetime, version: int
    ) -> ChatRecord:
        return ChatRecord(
            room_id=self.room_id,
            version=version,
            id=message_id,
            user_id=member.user_id,
            user_name=member.name,
            message=text,
            timestamp=now,
            expires_at=now + self.settings.ttl,
        )

    def accept_chat(self, member: Member, text: str, message_id: str, now: datetime) -> ChatRecord:
        version = self._next_version()
        self.touch(now)
        message = self.chat_record(member, text, message_id, now, version)
        self.outbox.append(message)
        return message

    # -- persistence -----------------------------------------------------------------------

    def text_version(self) -> int:
        """The version of the last change of a text or the language (not chat, not
        presence): what a checkpoint is worth making for."""
        return max([self.language_version, *(doc.version for doc in self.docs.values())])

    def rules(self) -> AccessRecord:
        return rules_of(self.access, self.creator_user_id)

    def local_members(self) -> list[Member]:
        """This process's sockets in the room, present and away."""
        return [m for m in (*self.members.values(), *self.away.values()) if not m.process]

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
            files=tuple(doc.record() for doc in self.files()),
            active_file=self.active_file,
            whiteboard=self.whiteboard,
            access=self.access,
            created_at=self.created_at,
            last_activity=self.last_activity,
            expires_at=self.expires_at,
        )

    def mark_saved(self, changes: int, messages: int) -> None:
        """The snapshot taken at `changes` mutations and the first `messages` chats are stored."""
        self.saved_changes = max(self.saved_changes, changes)
        del self.outbox[:messages]

    def add_chat(self, message: ChatRecord, now: datetime) -> None:
        """A chat message another process accepted (cluster mode)."""
        self.version = message.version
        self.outbox.append(message)
        self.touch(now)

    def mark(self, entry_id: str, *, applied: bool = True) -> None:
        """The log entry `entry_id` is applied (cluster mode); `applied` False: it is this
        process's own, applied by its caller before the room's lock is released."""
        self.settle()
        self.log_id = entry_id
        if applied:
            self.marks.append((entry_id, self.changes, self.version))
        else:
            self._unsettled = entry_id

    def settle(self) -> None:
        """Record the room as it is after this process's own entry (see `mark`)."""
        if self._unsettled is not None:
            self.marks.append((self._unsettled, self.changes, self.version))
            self._unsettled = None

    def saved_through(self, entry_id: str) -> int | None:
        """Another process stored this room as it was after `entry_id`: mark it stored here
        too; the version stored (None: that entry is too old to tell)."""
        self.settle()
        for mark_id, changes, version in reversed(self.marks):
            if mark_id == entry_id:
                self.saved_changes = max(self.saved_changes, changes)
                self.outbox = [m for m in self.outbox if m.version > version]
                self.history.stored(version)
                return version
        return None


class _RoomLock(asyncio.Lock):
    """A room's lock; releasing it records the state after the holder's own log entry."""

    def __init__(self, room: Room) -> None:
        super().__init__()
        self._room = room

    def release(self) -> None:
        self._room.settle()
        self._room.stamp = None
        super().release()
