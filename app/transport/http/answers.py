"""Pydantic models of REST answers: routes serialise through them; OpenAPI is built from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.clock import iso
from app.storage.records import (
    AccessRecord,
    ChatRecord,
    Checkpoint,
    FileRecord,
    HistoryEntry,
    Participant,
    SessionRecord,
    SessionSummary,
    UserContext,
)

IsoTime = str  # ISO-8601 UTC with milliseconds and `Z`, as the original server answered


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorAnswer(Answer):
    error: str = Field(description="A short title, such as `Session not found`")
    message: str = Field(description="What went wrong, for people")


class ParticipantOut(Answer):
    userId: str | None
    name: str
    joinedAt: IsoTime
    lastSeen: IsoTime

    @classmethod
    def of(cls, participant: Participant) -> ParticipantOut:
        return cls(
            userId=participant.user_id,
            name=participant.name,
            joinedAt=iso(participant.joined_at),
            lastSeen=iso(participant.last_seen),
        )


class MessageOut(Answer):
    id: str
    version: int = Field(description="The room version this message was accepted at")
    userId: str | None = Field(description="The app user id of the author (not a socket id)")
    userName: str
    message: str
    timestamp: IsoTime

    @classmethod
    def of(cls, message: ChatRecord) -> MessageOut:
        return cls(
            id=message.id,
            version=message.version,
            userId=message.user_id,
            userName=message.user_name,
            message=message.message,
            timestamp=iso(message.timestamp),
        )


class FileOut(Answer):
    fileId: str
    name: str
    content: str
    mime: str
    size: int
    uploadedBy: str | None
    uploaderName: str | None
    uploadedAt: IsoTime
    version: int = Field(description="The room version of the file's last change")

    @classmethod
    def of(cls, record: FileRecord) -> FileOut:
        return cls(
            fileId=record.file_id,
            name=record.name,
            content=record.content,
            mime=record.mime,
            size=record.size,
            uploadedBy=record.uploaded_by,
            uploaderName=record.uploader_name,
            uploadedAt=iso(record.uploaded_at),
            version=record.version,
        )


class SessionOut(Answer):
    roomId: str
    code: str
    language: str
    version: int = Field(description="Grows with every accepted change of code, language or chat")
    creatorName: str | None
    creatorUserId: str | None
    participants: list[ParticipantOut]
    messages: list[MessageOut] = Field(description="A page of chat, oldest first")
    files: list[FileOut] = Field(description="The files, in the order they were made")
    activeFile: str | None
    whiteboardElements: Any = Field(description="The latest whiteboard snapshot, as sent")
    createdAt: IsoTime
    expiresAt: IsoTime
    lastActivity: IsoTime

    @classmethod
    def of(
        cls, record: SessionRecord, messages: list[ChatRecord], files: tuple[FileRecord, ...]
    ) -> SessionOut:
        return cls(
            roomId=record.room_id,
            code=record.code,
            language=record.language,
            version=record.version,
            creatorName=record.creator_name,
            creatorUserId=record.creator_user_id,
            participants=[ParticipantOut.of(p) for p in record.participants],
            messages=[MessageOut.of(m) for m in messages],
            files=[FileOut.of(f) for f in files],
            activeFile=record.active_file,
            whiteboardElements=record.whiteboard,
            createdAt=iso(record.created_at),
            expiresAt=iso(record.expires_at),
            lastActivity=iso(record.last_activity),
        )


class SessionAnswer(Answer):
    success: Literal[True] = True
    session: SessionOut


class CreatedSession(Answer):
    roomId: str
    expiresAt: IsoTime
    createdAt: IsoTime


class CreatedAnswer(Answer):
    success: Literal[True] = True
    message: str
    session: CreatedSession


class DoneAnswer(Answer):
    success: Literal[True] = True
    message: str


PREVIEW_CHARS = 200  # of the last message, in the per-user listing


class LastMessageOut(Answer):
    userName: str
    message: str = Field(description=f"At most {PREVIEW_CHARS} characters")
    timestamp: IsoTime


class SummaryOut(Answer):
    roomId: str
    creatorName: str | None
    participantCount: int
    language: str
    createdAt: IsoTime
    expiresAt: IsoTime
    lastActivity: IsoTime
    fileCount: int
    startedAt: IsoTime = Field(description="When the session was made (as createdAt)")
    messageCount: int
    lastMessage: LastMessageOut | None

    @classmethod
    def of(cls, summary: SessionSummary) -> SummaryOut:
        last = summary.last_message
        return cls(
            roomId=summary.room_id,
            creatorName=summary.creator_name,
            participantCount=summary.participant_count,
            language=summary.language,
            createdAt=iso(summary.created_at),
            expiresAt=iso(summary.expires_at),
            lastActivity=iso(summary.last_activity),
            fileCount=summary.file_count,
            startedAt=iso(summary.created_at),
            messageCount=summary.message_count,
            lastMessage=None
            if last is None
            else LastMessageOut(
                userName=last.user_name,
                message=last.message[:PREVIEW_CHARS],
                timestamp=iso(last.timestamp),
            ),
        )


class UserSessionsAnswer(Answer):
    success: Literal[True] = True
    sessions: list[SummaryOut]


class HealthAnswer(Answer):
    status: Literal["OK"] = "OK"
    message: str
    timestamp: IsoTime


class ReadyAnswer(Answer):
    status: Literal["ready", "unavailable"]
    reason: str | None = None


class FilesAnswer(Answer):
    success: Literal[True] = True
    files: list[FileOut]


class FileAnswer(Answer):
    success: Literal[True] = True
    file: FileOut


class SavedFileAnswer(Answer):
    success: Literal[True] = True
    message: str
    fileId: str


class MemberOut(Answer):
    userId: str
    role: Literal["editor", "viewer"]


class AccessOut(Answer):
    roomId: str
    owner: str | None = Field(description="The user who made the session (null: nobody)")
    visibility: Literal["public", "private"]
    publicRole: Literal["editor", "viewer"] = Field(
        description="The role of anyone who joins a public room without one of their own"
    )
    viewersCanChat: bool
    members: list[MemberOut]

    @classmethod
    def of(cls, room_id: str, rules: AccessRecord) -> AccessOut:
        return cls(
            roomId=room_id,
            owner=rules.owner,
            visibility=rules.visibility,
            publicRole=rules.public_role,
            viewersCanChat=rules.viewers_chat,
            members=[
                MemberOut(userId=user, role=role) for user, role in sorted(rules.members.items())
            ],
        )


class AccessAnswer(Answer):
    success: Literal[True] = True
    access: AccessOut


class InviteAnswer(Answer):
    success: Literal[True] = True
    token: str = Field(description="Present once, in joinRoom's `invite` or Socket.IO `auth`")
    role: Literal["editor", "viewer"]
    expiresAt: IsoTime


class ContextAnswer(Answer):
    success: Literal[True] = True
    userId: str
    context: dict[str, Any] = Field(description="The user's document (at most 64 KiB of JSON)")
    revision: int = Field(description="How many times it was written (0: never)")
    updatedAt: IsoTime

    @classmethod
    def of(cls, found: UserContext) -> ContextAnswer:
        return cls(
            userId=found.user_id,
            context=found.context,
            revision=found.revision,
            updatedAt=iso(found.updated_at),
        )


class AuthorOut(Answer):
    userId: str | None
    name: str | None


class ChangeOut(Answer):
    version: int
    kind: Literal["text", "language"]
    fileId: str | None = Field(description="The text changed (null for the language)")
    language: str | None = Field(description="The new language (language changes)")
    at: IsoTime
    author: AuthorOut
    inserted: int = Field(description="Characters inserted")
    deleted: int = Field(description="Characters deleted")

    @classmethod
    def of(cls, entry: HistoryEntry) -> ChangeOut:
        text = entry.kind == "op"
        return cls(
            version=entry.version,
            kind="text" if text else "language",
            fileId=entry.doc_id if text else None,
            language=None if text else str(entry.op),
            at=iso(entry.at),
            author=AuthorOut(userId=entry.author_id, name=entry.author_name),
            inserted=entry.inserted,
            deleted=entry.deleted,
        )


class CheckpointOut(Answer):
    id: str
    name: str
    version: int
    at: IsoTime
    author: AuthorOut
    auto: bool = Field(description="Made by the server (last person left, or periodic)")

    @classmethod
    def of(cls, made: Checkpoint) -> CheckpointOut:
        return cls(
            id=made.id,
            name=made.name,
            version=made.version,
            at=iso(made.at),
            author=AuthorOut(userId=made.author_id, name=made.author_name),
            auto=made.auto,
        )


class HistoryAnswer(Answer):
    success: Literal[True] = True
    versions: list[ChangeOut] = Field(description="Newest first")
    checkpoints: list[CheckpointOut] = Field(description="Newest first")
    nextBefore: int | None = Field(description="`before` of the next page (null: no more)")


class VersionAnswer(Answer):
    success: Literal[True] = True
    version: int
    fileId: str
    code: str
    language: str


class DiffAnswer(Answer):
    success: Literal[True] = True
    fileId: str
    fromVersion: int
    toVersion: int
    diff: str = Field(description="A unified diff (empty: the same text)")


class RestoredAnswer(Answer):
    success: Literal[True] = True
    version: int = Field(description="The room's version after the restore")


class CheckpointAnswer(Answer):
    success: Literal[True] = True
    checkpoint: CheckpointOut


class ImportedAnswer(Answer):
    success: Literal[True] = True
    roomId: str = Field(description="The new session's room id")
