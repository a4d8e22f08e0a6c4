"""Changing a room: its texts (code and files), language, chat and whiteboard, and who hears it.

Versioned changes (text, language, chat) leave through the room's sequencer, so every client
receives versions in increasing order; chat and language changes are held there until stored
(bounded by CHAT_STORE_TIMEOUT_SECONDS). No socket is ever sent a text it already shows.

In cluster mode every change is first put in the room's log (`Rooms.order`, under the room's
lock) and only then made; the other processes make it when they read it there (the
`_apply_*` methods), and each process tells its own sockets.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.config import Settings
from app.domain.deltas import op_to_changes
from app.domain.errors import BaseTooOld, NotInRoom, StoreUnavailable
from app.domain.merge import digest
from app.domain.ot import Op, diff, op_from_json, op_to_json
from app.domain.ports import LogEntry, Notifier
from app.domain.room import Document, Member, Room
from app.domain.rooms import Missed, Rooms
from app.domain.sequencer import Ticket
from app.storage.records import DEFAULT_LANGUAGE, MAIN_FILE_ID, ChatRecord
from app.wire import outbound

MAX_OUTBOX = 10_000  # chat held in memory during a store outage, per room
MAX_TOLD_LANGUAGES = 8  # languages remembered per socket to recognise its echoes
# A REST language that a socket replaced less than this ago is a stale auto-save.
STALE_REST_LANGUAGE = timedelta(seconds=10)


@dataclass(frozen=True)
class TextAnswer:
    """The acknowledgement of a text change."""

    version: int
    text: str | None  # the room text, when it differs from what the sender sent
    merged: bool
    reason: str | None


@dataclass(frozen=True)
class TextOut:
    """A text as it was when its event was published, and the room version then."""

    doc_id: str
    text: str
    version: int
    language: str
    at: datetime
    delta: tuple[int, Op] | None = None  # the version before and the change (delta readers)


@dataclass(frozen=True)
class Upload:
    file_id: str
    name: str
    content: str
    mime: str
    size: int
    uploaded_by: str | None
    uploader_name: str | None
    source: str


@dataclass(frozen=True)
class Author:
    """Who made a change: a socket id and a name (of this process or another)."""

    sid: str
    name: str


Who = Member | Author


class Editing:
    """The domain operations behind the editing events and REST updates."""

    def __init__(self, rooms: Rooms, notifier: Notifier, settings: Settings) -> None:
        self.rooms = rooms
        self.notifier = notifier
        self.settings = settings
        self.monotonic = rooms.monotonic  # when texts were sent and changes arrived
        self.merge_seconds = 0.0  # spent working out socket text changes (metrics)
        self.merges: Counter[str] = Counter()  # outcomes: applied, merged, fallback (LWW)
        rooms.appliers.update(
            {
                "text": self._apply_text,
                "lang": self._apply_language,
                "chat": self._apply_chat,
                "file": self._apply_file,
                "active": self._apply_active,
                "upload": self._apply_upload,
                "describe": self._apply_describe,
                "delete": self._apply_delete,
                "wb": self._apply_whiteboard,
                "people": self._apply_participants,
                "saved": self._apply_saved,
                "state": self._apply_state,
            }
        )

    # -- texts -------------------------------------------------------------------------------

    async def change_text(
        self,
        sid: str,
        room_id: str,
        doc_id: str,
        text: str | None,
        base_version: int | None,
        language: str | None = None,
        *,
        as_file: bool = False,
        changes: Sequence[Any] | None = None,
        arrived: tuple[int, float] | None = None,
    ) -> TextAnswer:
        """A text from a socket (`codeChange` for the main text, `changeFile` for any): the
        whole text, or `changes` (a delta) on the text at `base_version`. `arrived`: the
        probes its socket had answered when it arrived, and when (default: now)."""
        room, member = await self.rooms.member(sid, room_id)
        if as_file:
            member.uses_files = True
        else:
            member.uses_code = True
        async with room.lock:
            doc = room.docs.get(doc_id)
            if doc is None or (as_file and not doc.listed):
                room.check_new_text(doc_id, text or "")  # a refused change makes no file
                doc = await self._create_file(room, doc_id, doc_id)
            answered, now = arrived if arrived is not None else (None, self.monotonic())
            if arrived is None:
                answered = self.notifier.answered(sid)
            while True:
                started = time.perf_counter()
                if changes is not None and base_version is not None:
                    rebased = room.rebase_delta(member, doc, changes, base_version)
                    if rebased is None:  # its base is gone: it starts again from the room text
                        member.stream(doc_id).held = None
                        self._publish_text(room, doc, [member], None, as_file=as_file)
                        raise BaseTooOld(f"baseVersion {base_version} is no longer kept")
                    sent = rebased.sent
                else:
                    sent = text or ""
                    rebased = room.rebase(member, doc, sent, base_version, now, answered)
                self.merge_seconds += time.perf_counter() - started
                new_language = self._code_language(member, room, language)
                if doc_id != MAIN_FILE_ID or new_language == room.language:
                    new_language = None
                if rebased.text == doc.text and new_language is None:
                    break  # it changes nothing: nothing to order
                room.check_text(doc_id, rebased.text)
                entry: dict[str, Any] = {
                    "k": "text",
                    "d": doc_id,
                    "op": op_to_json(rebased.op),
                    "s": sid,
                    "n": member.name,
                    "l": new_language,
                    "f": as_file,
                }
                if self.rooms.log is not None:  # what it sent: stale as an auto-save anywhere
                    entry["h"] = digest(sent)
                if await self.rooms.order(room, entry):
                    break
            change = room.apply_text(
                member, doc, rebased, sent, new_language, self.rooms.now(room), answered
            )
            if change is None:
                if member.deltas:  # its change is acknowledged in the order of the others
                    nothing = (room.version, ())
                    self._publish_text(room, doc, [member], member, as_file=as_file, delta=nothing)
                elif not member.shows(doc_id, doc.text):  # it changed nothing: bring it up to date
                    self._publish_text(room, doc, [member], None, as_file=as_file)
                return TextAnswer(room.version, doc.text if sent != doc.text else None, False, None)
            self.rooms.writer.changed(room)
            delta = doc.history.last_change()
            ticket = self._publish_text(room, doc, None, member, as_file=as_file, delta=delta)
            if change.language_changed:
                self._publish_language(room, member, skip=member.sid)
        outcome = "fallback" if change.reason else ("merged" if change.merged else "applied")
        self.merges[outcome] += 1
        await ticket.wait_sent()
        return TextAnswer(
            change.version, doc.text if change.echo else None, change.merged, change.reason
        )

    def _apply_text(self, room: Room, entry: LogEntry) -> None:
        body = entry.body
        doc = room.ensure_doc(body["d"])
        room.apply_op(doc, op_from_json(body["op"]), entry.version, body["s"], self.rooms.now(room))
        if isinstance(sent := body.get("h"), int):
            doc.history.remember_sent(sent)
        language = body.get("l")
        if language and language != room.language:
            room.replace_language(
                language, self.rooms.now(room), version=entry.version, author=body["s"]
            )
            room.language_version = entry.version
        self.rooms.writer.changed(room)
        remote = room.remote.get(body["s"]) if body["s"] is not None else None
        if remote is not None:  # which events it reads, should it come back here
            remote.uses_files = remote.uses_files or bool(body.get("f"))
            remote.uses_code = remote.uses_code or not body.get("f")
        author = Author(body["s"], body["n"]) if body["s"] is not None else None  # None: REST
        delta = doc.history.last_change()
        self._publish_text(room, doc, None, author, as_file=bool(body.get("f")), delta=delta)
        if language:
            self._publish_language(room, author)

    def _code_language(self, member: Member, room: Room, language: str | None) -> str | None:
        """The language a `codeChange` sets: its own only if the sender changed it (the
        editor sends its current language with every keystroke, maybe a stale one)."""
        if language is None or language == room.language or language in member.told:
            return None
        return language

    async def create_file(self, room: Room, file_id: str, name: str) -> Document:
        async with room.lock:
            return await self._create_file(room, file_id, name)

    async def _create_file(self, room: Room, file_id: str, name: str) -> Document:
        """The file, made (and announced) unless listed already; hold the room's lock."""
        while True:
            doc = room.docs.get(file_id)
            if doc is not None and doc.listed:
                return doc
            room.check_new_text(file_id, "")
            if await self.rooms.order(room, {"k": "file", "d": file_id, "name": name}):
                break
        return self._made_file(room, file_id, name)

    def _made_file(self, room: Room, file_id: str, name: str) -> Document:
        doc, created = room.create_file(file_id, name, self.rooms.now(room))
        if created:
            self.rooms.writer.changed(room)
            payload = outbound.file_opened(doc.doc_id, doc.name)
            room.sequencer.publish(
                lambda: self.notifier.broadcast(room.room_id, "fileOpened", payload)
            )
        return doc

    def _apply_file(self, room: Room, entry: LogEntry) -> None:
        self._made_file(room, entry.body["d"], entry.body["name"])

    def _publish_text(
        self,
        room: Room,
        doc: Document,
        members: list[Member] | None,
        author: Who | None,
        *,
        as_file: bool = False,
        delta: tuple[int, Op] | None = None,
    ) -> Ticket:
        """Send the text as it is now, labelled with the room's version now, in the room's
        event order: to `members` (None: whoever is in the room when it leaves). Members
        that read deltas get `delta` (the version before, and the change) instead."""
        out = TextOut(
            doc.doc_id, doc.text, room.version, room.language, self.rooms.now(room), delta
        )
        return room.sequencer.publish(
            lambda: self._send_text(room, out, members, author, as_file), version=out.version
        )

    def _send_text(
        self,
        room: Room,
        out: TextOut,
        members: list[Member] | None,
        author: Who | None,
        as_file: bool,
    ) -> None:
        """The text to each member that does not show it yet, in the event it reads
        (`as_file`: the change came as a file event)."""
        main = out.doc_id == MAIN_FILE_ID
        as_file = as_file or not main
        now = self.monotonic()
        code_to: list[str] = []
        file_to: list[str] = []
        code_delta_to: list[str] = []
        file_delta_to: list[str] = []
        probed: list[Member] = []
        for member in room.members.values() if members is None else members:
            by_delta = out.delta is not None and member.deltas
            stream = member.stream(out.doc_id)
            if not by_delta and (stream.held == out.text or stream.outdated(out.version)):
                continue
            stream.give(room.next_seq(), out.version, out.text, now)
            if stream.wants_probes:
                probed.append(member)
            if main and member.reads_code_updates(as_file):
                (code_delta_to if by_delta else code_to).append(member.sid)
            if member.reads_file_updates(as_file):
                (file_delta_to if by_delta else file_to).append(member.sid)
        sid, name = (author.sid, author.name) if author else (None, outbound.SERVER_NAME)
        key = f"{room.room_id}/{out.doc_id}"
        if code_to:
            payload = outbound.code_update(out.text, out.language, sid, name, out.at, out.version)
            self.notifier.send(code_to, "codeUpdate", payload, replaces=key)
        if file_to:
            update = outbound.file_content_update(out.doc_id, out.text, sid, name, out.version)
            self.notifier.send(file_to, "fileContentUpdate", update, replaces=key)
        if out.delta is not None and (code_delta_to or file_delta_to):
            base, op = out.delta
            changes = op_to_changes(op, out.text)
            if code_delta_to:
                payload = outbound.code_delta(
                    changes, base, out.language, sid, name, out.at, out.version
                )
                self.notifier.send(code_delta_to, "codeUpdate", payload)
            if file_delta_to:
                update = outbound.file_delta(out.doc_id, changes, base, sid, name, out.version)
                self.notifier.send(file_delta_to, "fileContentUpdate", update)
        for member in probed:
            self._probe(member, out.doc_id)

    def _probe(self, member: Member, doc_id: str) -> None:
        """A probe right behind the text just sent (see streams.py)."""
        stream = member.stream(doc_id)
        if stream.wants_probes:
            stream.probed(self.notifier.probe(member.sid))

    async def replace_text(
        self,
        room: Room,
        doc: Document,
        text: str | None,
        language: str | None,
        *,
        merge: bool = True,
    ) -> tuple[bool, bool]:
        """A REST update of a text and the language; which of them changed. A merged text
        that the room held recently changes nothing (see TextHistory.rebase_rest)."""
        text_changed = language_changed = False
        async with room.lock:
            while text is not None:
                if merge:
                    rebased = doc.history.rebase_rest(text)
                    op = rebased.op if rebased is not None else ()
                else:
                    rebased, op = None, diff(doc.text, text)
                if not op:
                    break
                room.check_text(doc.doc_id, rebased.text if rebased is not None else text)
                entry = {"k": "text", "d": doc.doc_id, "op": op_to_json(op), "s": None, "n": ""}
                if await self.rooms.order(room, entry):
                    room.commit_text(doc, rebased, op, self.rooms.now(room))
                    text_changed = True
                    break
            if merge and language is not None and self._stale_language(room, language):
                language = None
            while language is not None and language != room.language:
                entry = {"k": "lang", "l": language, "s": None, "n": outbound.SERVER_NAME}
                if await self.rooms.order(room, entry):
                    language_changed = room.set_language(language, self.rooms.now(room), live=False)
                    break
            if text_changed or language_changed:
                self.rooms.writer.changed(room)
            if text_changed:
                self._publish_text(room, doc, None, None, delta=doc.history.last_change())
            if language_changed:
                self._publish_language(room, None)
        return text_changed, language_changed

    def _stale_language(self, room: Room, language: str) -> bool:
        """A REST language that a socket's change replaced a moment ago: an auto-save sent
        before its author received that change (the editor saves two seconds after the last
        change it saw). It must not undo it; REST after REST always applies."""
        replaced = room.replaced_languages.get(language)
        return replaced is not None and self.rooms.now(room) - replaced < STALE_REST_LANGUAGE

    # -- replays -----------------------------------------------------------------------------------

    async def replay(self, room: Room, member: Member, last_seen: int, epoch: str | None) -> None:
        """Send a rejoining socket what it missed: chat in order, then changed texts and the
        language. The room's later events wait behind the replay, so versions stay in order."""
        upto = room.sequencer.sent_version  # later events reach the socket live
        now = self.rooms.now(room)
        texts = {d.doc_id: TextOut(d.doc_id, d.text, room.version, room.language, now)
                 for d in room.docs.values()}  # fmt: skip
        language = (room.language, room.version)
        ticket = room.sequencer.publish(lambda: None, held=True, version=room.version)
        try:
            missed = await self.rooms.missed(room, last_seen, epoch)
            ticket.emit = lambda: self._send_replay(room, member, missed, upto, texts, language)
        finally:
            room.sequencer.release(ticket)
        await ticket.wait_sent()

    def _send_replay(
        self,
        room: Room,
        member: Member,
        missed: Missed,
        upto: int,
        texts: dict[str, TextOut],
        language: tuple[str, int],
    ) -> None:
        if member.sid not in room.members:
            return
        for message in missed.messages:
            if message.version <= upto:
                replayed = outbound.new_message(message, None)
                self.notifier.send([member.sid], "newMessage", replayed)
        for doc_id in missed.docs:
            if (out := texts.get(doc_id)) is not None:
                self._send_text(room, out, [member], None, as_file=False)
        if missed.language_changed:
            self._send_language([member], *language, None)

    # -- the code state a joiner asks for ----------------------------------------------------------

    async def request_code_state(self, sid: str, room_id: str) -> None:
        """A joiner asks for the text: the server answers it (when anyone else is in the room,
        as peers did) and the peers still hear `codeStateRequest`."""
        room, member = await self.rooms.member(sid, room_id)
        if room.size() > 1:  # anyone else, on any process
            self.send_code_state(room, member)
        self.notifier.relay(room_id, "codeStateRequest", {"requesterId": sid}, skip=sid)

    async def answer_code_state(self, sid: str, room_id: str, target_sid: str) -> None:
        """A peer answers a joiner's request: the joiner is sent the room's own text, not the
        peer's (the room is the authority; the peer's editor may show another file, or be
        behind). In cluster mode a target on another process is sent it by its own process,
        which knows what its editor shows, in the order of the room's log."""
        room, _ = await self.rooms.member(sid, room_id)
        target = room.members.get(target_sid)
        if target is not None:
            self.send_code_state(room, target)
            return
        if target_sid not in room.remote:
            raise NotInRoom("targetUserId is not a socket in your room")
        async with room.lock:
            await self.rooms.order(room, {"k": "state", "to": target_sid}, versioned=False)

    def _apply_state(self, room: Room, entry: LogEntry) -> None:
        member = room.members.get(entry.body["to"])
        if member is not None:
            self.send_code_state(room, member)

    def send_code_state(self, room: Room, member: Member) -> None:
        """`receiveCodeState` with the room's text, unless the socket shows it already."""
        code, language, version = room.code, room.language, room.version

        def send() -> None:
            if member.shows(MAIN_FILE_ID, code):
                return
            member.stream(MAIN_FILE_ID).give(room.next_seq(), version, code, self.monotonic())
            self._remember_told(member, language)
            state = outbound.code_state(code, language, version)
            self.notifier.send([member.sid], "receiveCodeState", state)
            self._probe(member, MAIN_FILE_ID)

        room.sequencer.publish(send, version=version)

    # -- language ----------------------------------------------------------------------------------

    async def change_language(self, sid: str, room_id: str, language: str) -> int:
        """A socket's language. Editors echo every `languageUpdate` they receive, and send
        their default once on mount: those echoes change nothing (the socket is told the
        room's language again if it differs)."""
        room, member = await self.rooms.member(sid, room_id)
        first = not member.spoke_language
        member.spoke_language = True
        async with room.lock:
            if language == room.language:
                self._consume_told(member, language)
                return room.version
            echo = self._consume_told(member, language)
            if echo or (first and language == DEFAULT_LANGUAGE):
                current, version = room.language, room.version
                room.sequencer.publish(
                    lambda: self._send_language([member], current, version, None),
                    version=version,
                )
                return room.version
            while language != room.language:
                entry = {"k": "lang", "l": language, "s": sid, "n": member.name}
                if await self.rooms.order(room, entry):
                    room.set_language(language, self.rooms.now(room), author=sid)
                    break
            else:
                return room.version  # another process set it first
            version = room.language_version  # before the wait: others may change it again
            ticket = self._publish_language(room, member, skip=member.sid, held=True)
        await self._stored(room, ticket)
        return version

    def _apply_language(self, room: Room, entry: LogEntry) -> None:
        body = entry.body
        now, author = self.rooms.now(room), body.get("s")
        if room.set_language(body["l"], now, live=bool(author), author=author):
            self.rooms.writer.changed(room)
            author = Author(body["s"], body["n"]) if body.get("s") else None
            self._publish_language(room, author)

    @staticmethod
    def _remember_told(member: Member, language: str) -> None:
        member.told.append(language)
        del member.told[:-MAX_TOLD_LANGUAGES]

    @staticmethod
    def _consume_told(member: Member, language: str) -> bool:
        """True when the socket was told this language: its message is that echo."""
        if language not in member.told:
            return False
        del member.told[: member.told.index(language) + 1]
        return True

    def _publish_language(
        self, room: Room, author: Who | None, *, skip: str | None = None, held: bool = False
    ) -> Ticket:
        """`languageUpdate` with the language and version now, to the room but `skip`."""
        language, version = room.language, room.version
        return room.sequencer.publish(
            lambda: self._send_language(
                [m for m in room.members.values() if m.sid != skip], language, version, author
            ),
            version=version,
            held=held,
        )

    def _send_language(
        self, members: list[Member], language: str, version: int, author: Who | None
    ) -> None:
        sid, name = (author.sid, author.name) if author else (None, outbound.SERVER_NAME)
        for member in members:
            self._remember_told(member, language)
        payload = outbound.language_update(language, sid, name, version)
        self.notifier.send([m.sid for m in members], "languageUpdate", payload)

    # -- chat ----------------------------------------------------------------------------------

    async def chat(self, sid: str, room_id: str, text: str, client_id: str | None) -> ChatRecord:
        """Accept a chat message; the others hear it once it is stored (bounded wait)."""
        room, member = await self.rooms.member(sid, room_id)
        if len(room.outbox) >= MAX_OUTBOX:
            raise StoreUnavailable(
                "The session store is unavailable and this room's outbox is full"
            )
        message_id, now = client_id or uuid.uuid4().hex, self.rooms.clock()
        async with room.lock:
            while True:
                draft = room.chat_record(member, text, message_id, now, room.version + 1)
                entry = {"k": "chat", "m": draft.model_dump(mode="json"), "s": sid}
                entry["t"] = now.isoformat()  # the message's time is the change's
                if await self.rooms.order(room, entry):
                    break
            message = room.accept_chat(member, text, message_id, now)
            payload = outbound.new_message(message, sid)
            ticket = room.sequencer.publish(
                lambda: self.notifier.broadcast(room_id, "newMessage", payload, skip=sid),
                held=True,
                version=message.version,
            )
        await self._stored(room, ticket)
        return message

    def _apply_chat(self, room: Room, entry: LogEntry) -> None:
        message = ChatRecord.model_validate(entry.body["m"])
        room.add_chat(message, self.rooms.now(room))
        self.rooms.writer.changed(room)
        payload = outbound.new_message(message, entry.body.get("s"))
        room.sequencer.publish(
            lambda: self.notifier.broadcast(room.room_id, "newMessage", payload),
            version=message.version,
        )

    async def _stored(self, room: Room, ticket: Any) -> None:
        """Wait (bounded) until the room is stored, then let the held event go. In cluster
        mode the room's log (in Redis, with AOF) is where it is safe: no wait."""
        try:
            if self.rooms.log is None:
                within = self.settings.chat_store_timeout_seconds
                await self.rooms.writer.flush(room, within=within)
        finally:
            room.sequencer.release(ticket)
        await ticket.wait_sent()

    # -- files -----------------------------------------------------------------------------------

    async def open_file(self, sid: str, room_id: str, file_id: str, name: str | None) -> int:
        room, member = await self.rooms.member(sid, room_id)
        member.uses_files = True
        async with room.lock:
            doc = room.docs.get(file_id)
            if doc is None or not doc.listed:
                doc = await self._create_file(room, file_id, name or file_id)
            else:
                payload = outbound.file_opened(doc.doc_id, doc.name)
                room.sequencer.publish(lambda: self.notifier.relay(room_id, "fileOpened", payload))
            if room.active_file is None:
                await self._set_active(room, file_id)
            return room.version

    def request_file(self, room: Room, member: Member, file_id: str) -> None:
        """`fileContentSnapshot` to the asker, unless its editor shows that text already."""
        doc = room.docs.get(file_id)
        name, content, version = (doc.name, doc.text, room.version) if doc else (file_id, "", 0)

        def send() -> None:
            if doc is not None and member.shows(file_id, content):
                return
            if doc is not None:
                member.stream(file_id).give(room.next_seq(), version, content, self.monotonic())
            snapshot = outbound.file_snapshot(file_id, name, content, version)
            self.notifier.send([member.sid], "fileContentSnapshot", snapshot)
            if doc is not None:
                self._probe(member, file_id)

        room.sequencer.publish(send, version=version)

    async def set_active_file(self, room: Room, file_id: str) -> None:
        """Make `file_id` the room's active file; the room hears it only when it changes (an
        unchanged client that hears `activeFileChanged` for the file it shows reverts its
        editor to an old text, and its next keystroke would undo what others typed)."""
        async with room.lock:
            if room.active_file != file_id:
                await self._set_active(room, file_id)

    async def _set_active(self, room: Room, file_id: str) -> None:
        await self.rooms.order(room, {"k": "active", "d": file_id}, versioned=False)
        self._made_active(room, file_id)

    def _made_active(self, room: Room, file_id: str) -> None:
        room.set_active_file(file_id, self.rooms.now(room))
        self.rooms.writer.changed(room)
        payload = outbound.active_file_changed(file_id)
        room.sequencer.publish(
            lambda: self.notifier.broadcast(room.room_id, "activeFileChanged", payload)
        )

    def _apply_active(self, room: Room, entry: LogEntry) -> None:
        self._made_active(room, entry.body["d"])

    async def upload(self, room: Room, upload: Upload, uploader: Member | None = None) -> Document:
        """A whole file, new or replacing one: the room hears `fileUploaded`, then its text
        (which the uploader already has)."""
        async with room.lock:
            while True:
                room.check_upload(upload.file_id, upload.content)
                entry = {"k": "upload", "u": upload.__dict__}
                if await self.rooms.order(room, entry):
                    break
            doc = self._uploaded(room, upload, uploader)
        return doc

    def _uploaded(self, room: Room, upload: Upload, uploader: Member | None) -> Document:
        doc = room.upload(
            upload.file_id,
            name=upload.name,
            content=upload.content,
            mime=upload.mime,
            size=upload.size,
            uploaded_by=upload.uploaded_by,
            uploader_name=upload.uploader_name,
            now=self.rooms.now(room),
        )
        self.rooms.writer.write_soon(room)
        if uploader is not None:
            uploader.stream(doc.doc_id).held = doc.text
        uploaded = outbound.file_uploaded(
            doc.doc_id,
            doc.name,
            doc.mime,
            doc.size,
            doc.uploaded_by,
            doc.uploader_name,
            upload.source,
        )
        snapshot = outbound.file_snapshot(doc.doc_id, doc.name, doc.text, room.version)
        room.sequencer.publish(
            lambda: self._announce_upload(room, doc.doc_id, uploaded, snapshot),
            version=room.version,
        )
        return doc

    def _apply_upload(self, room: Room, entry: LogEntry) -> None:
        self._uploaded(room, Upload(**entry.body["u"]), None)

    def _announce_upload(
        self, room: Room, file_id: str, uploaded: outbound.Json, snapshot: outbound.Json
    ) -> None:
        """`fileUploaded` to the room; the text to whoever does not have it, in the event it
        reads (`codeUpdate` for an upload of the main file to an older client)."""
        self.notifier.broadcast(room.room_id, "fileUploaded", uploaded)
        content = snapshot["content"]
        code_to: list[str] = []
        file_to: list[str] = []
        for member in room.members.values():
            if member.shows(file_id, content):
                continue
            member.stream(file_id).give(
                room.next_seq(), snapshot["version"], content, self.monotonic()
            )
            if file_id == MAIN_FILE_ID and member.reads_code_updates(from_file_event=True):
                code_to.append(member.sid)
            if member.reads_file_updates(from_file_event=True):
                file_to.append(member.sid)
        self.notifier.send(file_to, "fileContentSnapshot", snapshot)
        if code_to:
            update = outbound.code_update(
                content,
                room.language,
                None,
                outbound.SERVER_NAME,
                self.rooms.now(room),
                snapshot["version"],
            )
            self.notifier.send(code_to, "codeUpdate", update)

    async def delete_file(self, room: Room, file_id: str) -> None:
        async with room.lock:
            while True:
                room.listed_doc(file_id)  # FileNotFound
                if await self.rooms.order(room, {"k": "delete", "d": file_id}):
                    break
            self._deleted(room, file_id)

    def _apply_delete(self, room: Room, entry: LogEntry) -> None:
        self._deleted(room, entry.body["d"])

    async def describe_file(self, room: Room, doc: Document, **description: Any) -> None:
        """Replace a file's description (name, mime, size, uploader)."""
        async with room.lock:
            entry = {"k": "describe", "d": doc.doc_id, "x": description}
            while not await self.rooms.order(room, entry):
                pass
            room.describe_file(doc, now=self.rooms.now(room), **description)
            self.rooms.writer.changed(room)

    def _apply_describe(self, room: Room, entry: LogEntry) -> None:
        room.describe_file(room.doc(entry.body["d"]), now=self.rooms.now(room), **entry.body["x"])
        self.rooms.writer.changed(room)

    async def add_participants(
        self, room: Room, participants: list[tuple[str | None, str]]
    ) -> None:
        """List the newcomers among `participants` and touch the session. When nobody is new,
        the touch is written only when due (`Room.activity_due`): an editor's auto-save of
        the text the room holds, about once a second per open tab, then writes nothing and
        tells nobody."""
        async with room.lock:
            now = self.rooms.now(room)
            if not room.newcomers(participants) and not room.activity_due(now):
                room.note_activity(now)
                return
            entry = {"k": "people", "p": participants}
            await self.rooms.order(room, entry, versioned=False)
            room.add_participants(participants, self.rooms.now(room))
            self.rooms.writer.changed(room)

    def _apply_participants(self, room: Room, entry: LogEntry) -> None:
        room.add_participants([(p[0], p[1]) for p in entry.body["p"]], self.rooms.now(room))
        self.rooms.writer.changed(room)

    def _deleted(self, room: Room, file_id: str) -> None:
        room.delete_file(file_id, self.rooms.now(room))
        self.rooms.writer.changed(room)
        for member in room.members.values():
            member.streams.pop(file_id, None)
        payload = outbound.file_deleted(file_id)
        room.sequencer.publish(
            lambda: self.notifier.broadcast(room.room_id, "fileDeleted", payload)
        )

    # -- whiteboard --------------------------------------------------------------------------------

    async def change_whiteboard(self, room: Room, member: Member, snapshot: Any) -> None:
        async with room.lock:
            entry = {"k": "wb", "w": snapshot, "s": member.sid}
            await self.rooms.order(room, entry, versioned=False)
            self._drawn(room, snapshot, member.sid)

    def _drawn(self, room: Room, snapshot: Any, sid: str | None) -> None:
        room.set_whiteboard(snapshot, self.rooms.now(room))
        self.rooms.writer.changed(room)
        self.notifier.broadcast(room.room_id, "whiteboardUpdate", {"snapshot": snapshot}, skip=sid)

    def _apply_whiteboard(self, room: Room, entry: LogEntry) -> None:
        self._drawn(room, entry.body["w"], None)

    # -- stored (cluster mode) -------------------------------------------------------------------

    def _apply_saved(self, room: Room, entry: LogEntry) -> None:
        """The writing process stored the room as it was after entry `c`: so it is here too."""
        version = room.saved_through(entry.body["c"])
        if version is not None:
            self.rooms.writer.stored_elsewhere(room)
            payload = outbound.session_saved(room.room_id, version, self.rooms.now(room))
            room.sequencer.publish(
                lambda: self.notifier.broadcast(room.room_id, "sessionSaved", payload)
            )
