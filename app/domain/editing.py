"""Changing a room: its texts (code and files), language, chat and whiteboard, and who hears it.

Versioned changes (text, language, chat) leave through the room's sequencer, so every client
receives versions in increasing order; chat and language changes are held there until stored
(bounded by CHAT_STORE_TIMEOUT_SECONDS). No socket is ever sent a text it already shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.config import Settings
from app.domain.deltas import op_to_changes
from app.domain.errors import BaseTooOld, StoreUnavailable
from app.domain.ot import Op
from app.domain.ports import Notifier
from app.domain.room import Document, Member, Room
from app.domain.rooms import Missed, Rooms
from app.domain.sequencer import Ticket
from app.storage.records import DEFAULT_LANGUAGE, MAIN_FILE_ID, ChatRecord
from app.wire import outbound

MAX_OUTBOX = 10_000  # chat held in memory during a store outage, per room
MAX_TOLD_LANGUAGES = 8  # languages remembered per socket to recognise its echoes


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


class Editing:
    """The domain operations behind the editing events and REST updates."""

    def __init__(self, rooms: Rooms, notifier: Notifier, settings: Settings) -> None:
        self.rooms = rooms
        self.notifier = notifier
        self.settings = settings
        self.monotonic = rooms.monotonic  # when texts were sent and changes arrived

    @property
    def _now(self) -> datetime:
        return self.rooms.clock()

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
    ) -> TextAnswer:
        """A text from a socket (`codeChange` for the main text, `changeFile` for any): the
        whole text, or `changes` (a delta) on the text at `base_version`."""
        room, member = await self.rooms.member(sid, room_id)
        if as_file:
            member.uses_files = True
        else:
            member.uses_code = True
        doc = room.docs.get(doc_id)
        if doc is None or (as_file and not doc.listed):
            room.check_new_text(doc_id, text or "")  # a refused change makes no file
            doc = self.create_file(room, doc_id, doc_id)
        answered = self.notifier.answered(sid)
        if changes is not None and base_version is not None:
            rebased = room.rebase_delta(member, doc, changes, base_version)
            if rebased is None:  # its base is gone: it starts again from the room text
                member.stream(doc_id).held = None
                self._publish_text(room, doc, [member], None, as_file=as_file)
                raise BaseTooOld(f"baseVersion {base_version} is no longer kept")
            text = rebased.sent
        else:
            text = text or ""
            rebased = room.rebase(member, doc, text, base_version, self.monotonic(), answered)
        language = self._code_language(member, room, language)
        change = room.apply_text(member, doc, rebased, text, language, self._now, answered)
        if change is None:
            if member.deltas:  # its change is acknowledged in the order of the others
                nothing = (room.version, ())
                self._publish_text(room, doc, [member], member, as_file=as_file, delta=nothing)
            elif not member.shows(doc_id, doc.text):  # it changed nothing: bring it up to date
                self._publish_text(room, doc, [member], None, as_file=as_file)
            return TextAnswer(room.version, doc.text if text != doc.text else None, False, None)
        self.rooms.writer.changed(room)
        delta = doc.history.last_change()
        ticket = self._publish_text(room, doc, None, member, as_file=as_file, delta=delta)
        if change.language_changed:
            self._publish_language(room, member, skip=member.sid)
        await ticket.wait_sent()
        return TextAnswer(
            change.version, doc.text if change.echo else None, change.merged, change.reason
        )

    def _code_language(self, member: Member, room: Room, language: str | None) -> str | None:
        """The language a `codeChange` sets: its own only if the sender changed it (the
        editor sends its current language with every keystroke, maybe a stale one)."""
        if language is None or language == room.language or language in member.told:
            return None
        return language

    def create_file(self, room: Room, file_id: str, name: str) -> Document:
        doc, created = room.create_file(file_id, name, self._now)
        if created:
            self.rooms.writer.changed(room)
            payload = outbound.file_opened(doc.doc_id, doc.name)
            room.sequencer.publish(
                lambda: self.notifier.broadcast(room.room_id, "fileOpened", payload)
            )
        return doc

    def _publish_text(
        self,
        room: Room,
        doc: Document,
        members: list[Member] | None,
        author: Member | None,
        *,
        as_file: bool = False,
        delta: tuple[int, Op] | None = None,
    ) -> Ticket:
        """Send the text as it is now, labelled with the room's version now, in the room's
        event order: to `members` (None: whoever is in the room when it leaves). Members
        that read deltas get `delta` (the version before, and the change) instead."""
        out = TextOut(doc.doc_id, doc.text, room.version, room.language, self._now, delta)
        return room.sequencer.publish(
            lambda: self._send_text(room, out, members, author, as_file), version=out.version
        )

    def _send_text(
        self,
        room: Room,
        out: TextOut,
        members: list[Member] | None,
        author: Member | None,
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
            if not by_delta and member.shows(out.doc_id, out.text):
                continue
            stream = member.stream(out.doc_id)
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
        that the room held recently changes nothing (see Room.merge_text)."""
        now = self._now
        if text is None:
            text_changed = False
        elif merge:
            text_changed = room.merge_text(doc, text, now)
        else:
            text_changed = room.replace_text(doc, text, now)
        language_changed = language is not None and room.set_language(language, now)
        if text_changed or language_changed:
            self.rooms.writer.changed(room)
        if text_changed:
            self._publish_text(room, doc, None, None, delta=doc.history.last_change())
        if language_changed:
            self._publish_language(room, None)
        return text_changed, language_changed

    # -- replays -----------------------------------------------------------------------------------

    async def replay(self, room: Room, member: Member, last_seen: int, epoch: str | None) -> None:
        """Send a rejoining socket what it missed: chat in order, then changed texts and the
        language. The room's later events wait behind the replay, so versions stay in order."""
        upto = room.sequencer.sent_version  # later events reach the socket live
        texts = {d.doc_id: TextOut(d.doc_id, d.text, room.version, room.language, self._now)
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
        if len(room.members) > 1:
            self.send_code_state(room, member)
        self.notifier.broadcast(room_id, "codeStateRequest", {"requesterId": sid}, skip=sid)

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
        if language == room.language:
            self._consume_told(member, language)
            return room.version
        echo = self._consume_told(member, language)
        if echo or (first and language == DEFAULT_LANGUAGE):
            language, version = room.language, room.version
            room.sequencer.publish(
                lambda: self._send_language([member], language, version, None), version=version
            )
            return room.version
        room.set_language(language, self._now)
        ticket = self._publish_language(room, member, skip=member.sid, held=True)
        await self._stored(room, ticket)
        return room.language_version

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
        self, room: Room, author: Member | None, *, skip: str | None = None, held: bool = False
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
        self, members: list[Member], language: str, version: int, author: Member | None
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
        message = room.accept_chat(member, text, client_id, self._now)
        payload = outbound.new_message(message, sid)
        ticket = room.sequencer.publish(
            lambda: self.notifier.broadcast(room_id, "newMessage", payload, skip=sid),
            held=True,
            version=message.version,
        )
        await self._stored(room, ticket)
        return message

    async def _stored(self, room: Room, ticket: Any) -> None:
        """Wait (bounded) until the room is stored, then let the held event go."""
        try:
            await self.rooms.writer.flush(room, within=self.settings.chat_store_timeout_seconds)
        finally:
            room.sequencer.release(ticket)
        await ticket.wait_sent()

    # -- files -----------------------------------------------------------------------------------

    async def open_file(self, sid: str, room_id: str, file_id: str, name: str | None) -> int:
        room, member = await self.rooms.member(sid, room_id)
        member.uses_files = True
        doc = room.docs.get(file_id)
        if doc is None or not doc.listed:
            doc = self.create_file(room, file_id, name or file_id)
        else:
            payload = outbound.file_opened(doc.doc_id, doc.name)
            room.sequencer.publish(lambda: self.notifier.broadcast(room_id, "fileOpened", payload))
        if room.active_file is None:
            self._set_active(room, file_id)
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

    def set_active_file(self, room: Room, file_id: str) -> None:
        self._set_active(room, file_id)

    def _set_active(self, room: Room, file_id: str) -> None:
        room.set_active_file(file_id, self._now)
        self.rooms.writer.changed(room)
        payload = outbound.active_file_changed(file_id)
        room.sequencer.publish(
            lambda: self.notifier.broadcast(room.room_id, "activeFileChanged", payload)
        )

    def upload(self, room: Room, upload: Upload, uploader: Member | None = None) -> Document:
        """A whole file, new or replacing one: the room hears `fileUploaded`, then its text
        (which the uploader already has)."""
        doc = room.upload(
            upload.file_id,
            name=upload.name,
            content=upload.content,
            mime=upload.mime,
            size=upload.size,
            uploaded_by=upload.uploaded_by,
            uploader_name=upload.uploader_name,
            now=self._now,
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
                content, room.language, None, outbound.SERVER_NAME, self._now, snapshot["version"]
            )
            self.notifier.send(code_to, "codeUpdate", update)

    def delete_file(self, room: Room, file_id: str) -> None:
        room.delete_file(file_id, self._now)
        self.rooms.writer.changed(room)
        for member in room.members.values():
            member.streams.pop(file_id, None)
        payload = outbound.file_deleted(file_id)
        room.sequencer.publish(
            lambda: self.notifier.broadcast(room.room_id, "fileDeleted", payload)
        )

    # -- whiteboard --------------------------------------------------------------------------------

    def change_whiteboard(self, room: Room, member: Member, snapshot: Any) -> None:
        room.set_whiteboard(snapshot, self._now)
        self.rooms.writer.changed(room)
        self.notifier.broadcast(
            room.room_id, "whiteboardUpdate", {"snapshot": snapshot}, skip=member.sid
        )
