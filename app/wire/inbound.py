"""Pydantic models of everything clients send: event payloads and REST bodies.

Limits come from `Settings`, given as the validation context (the defaults without one).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from app.config import Settings, default_settings

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
LANGUAGE_PATTERN = re.compile(r"[A-Za-z0-9+#._-]{1,32}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NUMBER = 2**53  # the largest integer a JavaScript client can send exactly


def limits(info: ValidationInfo) -> Settings:
    context = info.context
    return context if isinstance(context, Settings) else default_settings()


def _valid_unicode(value: str) -> str:
    # Python strings decoded from JSON may hold lone surrogates, which no store can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains a lone surrogate") from None
    return value


def _room_id(value: str, info: ValidationInfo) -> str:
    limit = limits(info).max_room_id_length
    if len(value) > limit or not ROOM_ID_PATTERN.fullmatch(value):
        raise ValueError(f"roomId must be 1-{limit} characters of A-Z, a-z, 0-9, _ or -")
    return value


def _max_chars(setting: str, what: str) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        limit = getattr(limits(info), setting)
        if len(value) > limit:
            raise ValueError(f"{what} is longer than {limit} characters")
        return value

    return AfterValidator(check)


def _max_utf8(setting: str, what: str) -> Any:
    def check(value: str, info: ValidationInfo) -> str:
        limit = getattr(limits(info), setting)
        # Cheap bound first: a string of n code points has at most 4n UTF-8 bytes.
        if len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
            raise ValueError(f"{what} is larger than {limit} bytes")
        return value

    return AfterValidator(check)


def _max_json(setting: str, what: str) -> Any:
    def check(value: Any, info: ValidationInfo) -> Any:
        limit = getattr(limits(info), setting)
        try:
            size = len(orjson.dumps(value))
        except (TypeError, orjson.JSONEncodeError):
            raise ValueError(f"{what} must be a JSON value") from None
        if size > limit:
            raise ValueError(f"{what} is larger than {limit} bytes serialized")
        return value

    return AfterValidator(check)


def _file_id(value: str, info: ValidationInfo) -> str:
    limit = limits(info).max_file_id_length
    if not value.strip() or len(value) > limit or CONTROL_CHARACTERS.search(value):
        raise ValueError(f"fileId must be 1-{limit} characters, not blank, no control characters")
    return value


def _language(value: str) -> str:
    if not LANGUAGE_PATTERN.fullmatch(value):
        raise ValueError("language must be 1-32 characters of A-Z, a-z, 0-9, +, #, ., _ or -")
    return value


def _null_as_empty(value: object) -> object:
    return "" if value is None else value


Text = Annotated[StrictStr, AfterValidator(_valid_unicode)]
RoomId = Annotated[
    StrictStr,
    AfterValidator(_room_id),
    Field(json_schema_extra={"pattern": "^[A-Za-z0-9_-]{1,64}$"}),
]
UserName = Annotated[Text, _max_chars("max_user_name_length", "userName")]
UserId = Annotated[Text, _max_chars("max_user_id_length", "userId")]
Code = Annotated[Text, _max_utf8("max_code_bytes", "code")]
FileText = Annotated[Text, _max_utf8("max_file_bytes", "content")]
ChatText = Annotated[Text, _max_chars("max_chat_length", "message")]
FileId = Annotated[Text, AfterValidator(_file_id)]
FileName = Annotated[Text, Field(min_length=1), _max_chars("max_file_id_length", "name")]
Language = Annotated[
    StrictStr,
    AfterValidator(_language),
    Field(json_schema_extra={"pattern": "^[A-Za-z0-9+#._-]{1,32}$"}),
]
Version = Annotated[StrictInt, Field(ge=0, le=MAX_NUMBER)]
SocketId = Annotated[StrictStr, Field(min_length=1, max_length=64)]
ShortText = Annotated[Text, Field(max_length=255)]
Epoch = Annotated[StrictStr, Field(min_length=1, max_length=64)]
Token = Annotated[StrictStr, Field(min_length=1, max_length=8192)]
Number = Annotated[StrictInt | StrictFloat, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]
Cursor = Annotated[Any, _max_json("max_cursor_bytes", "position")]
Signal = Annotated[Any, _max_json("max_signal_bytes", "signal")]
Whiteboard = Annotated[Any, _max_json("max_whiteboard_bytes", "snapshot")]


class Payload(BaseModel):
    """Base of every incoming payload: strict types, unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class RoomEvent(Payload):
    roomId: RoomId


# -- the room and its code -----------------------------------------------------------------


class JoinRoom(RoomEvent):
    userName: Annotated[UserName, BeforeValidator(_null_as_empty)] = ""
    userId: UserId | None = None
    lastSeenVersion: Version | None = None
    epoch: Epoch | None = None
    deltas: StrictBool = False  # extension: it reads and sends changes instead of texts
    invite: Token | None = None  # extension: an invite to this room, used up by this join


class RefreshToken(Payload):
    """Extension: a fresh token for the socket's user, before its current one expires."""

    token: Token


class ReconnectOffset(RoomEvent):
    """Socket.IO `auth` of a reconnecting client: the highest version it saw in `roomId`."""

    offset: Version
    epoch: Epoch | None = None


class SendCodeState(RoomEvent):
    code: Code
    language: Language | None = None
    targetUserId: SocketId


MAX_CHANGES = 1000  # changes in one delta


class TextEdit(Payload):
    """One change of a delta: the text between UTF-16 offsets `from` and `to`, replaced."""

    from_: Version = Field(validation_alias=AliasChoices("from", "from_"))
    to: Version
    insert: Text = ""


def _one_text(code: str | None, changes: object, base_version: int | None, key: str) -> None:
    if (code is None) == (changes is None):
        raise ValueError(f"give exactly one of {key} and changes")
    if changes is not None and base_version is None:
        raise ValueError("changes need the baseVersion they were made on")


Changes = Annotated[list[TextEdit], Field(max_length=MAX_CHANGES)]


class CodeChange(RoomEvent):
    code: Code | None = None
    changes: Changes | None = None  # extension: a delta against baseVersion
    language: Language | None = None
    baseVersion: Version | None = None

    @model_validator(mode="after")
    def _text_or_changes(self) -> CodeChange:
        _one_text(self.code, self.changes, self.baseVersion, "code")
        return self


class LanguageChange(RoomEvent):
    language: Language


class CursorMove(RoomEvent):
    position: Cursor  # required: a move without a position says nothing


class ChatMessageBody(Payload):
    """The object form of a chat message; the server keeps only `id` and `message`."""

    id: Annotated[StrictStr, Field(max_length=128)] | Version | None = None
    message: ChatText


class ChatMessage(RoomEvent):
    message: ChatText | ChatMessageBody

    @property
    def text(self) -> str:
        return self.message if isinstance(self.message, str) else self.message.message

    @property
    def client_id(self) -> str | None:
        if isinstance(self.message, str) or self.message.id is None:
            return None
        return str(self.message.id)


# -- files -----------------------------------------------------------------------------------


class FileEvent(RoomEvent):
    fileId: FileId


class OpenFile(FileEvent):
    name: Annotated[FileName | None, BeforeValidator(lambda v: v or None)] = None


class ChangeFile(FileEvent):
    content: FileText | None = None
    changes: Changes | None = None  # extension: a delta against baseVersion
    baseVersion: Version | None = None  # extension; the client's own `version` is ignored

    @model_validator(mode="after")
    def _text_or_changes(self) -> ChangeFile:
        _one_text(self.content, self.changes, self.baseVersion, "content")
        return self


class UploadFile(FileEvent):
    name: Annotated[FileName | None, BeforeValidator(lambda v: v or None)] = None
    mime: ShortText | None = None
    size: Version | None = None
    content: FileText | None = None
    uploadedBy: UserId | None = None
    uploaderName: UserName | None = None
    source: Annotated[Text, Field(max_length=64)] | None = None
    metadata: Signal = None  # validated for size, then dropped (as the original did)


# -- whiteboard, calls, screen share, hands ---------------------------------------------------


class WhiteboardChange(RoomEvent):
    snapshot: Whiteboard


class ReadyForCall(RoomEvent):
    isReconnecting: StrictBool = False


class Targeted(RoomEvent):
    to: SocketId


class WebrtcOffer(Targeted):
    offer: Signal


class WebrtcAnswer(Targeted):
    answer: Signal


class IceCandidate(Targeted):
    candidate: Signal


class MediaTrackEnded(Targeted):
    kind: ShortText | None = None


class RaiseHand(RoomEvent):
    timestamp: Number | None = None


# -- the meeting page (positional arguments, named here by position) ----------------------------


class JoinCall(Payload):
    roomId: RoomId


class MeetingSignal(Payload):
    to: SocketId
    message: Annotated[Text, _max_utf8("max_signal_bytes", "message")]


class MeetingChat(Payload):
    data: ChatText
    sender: Annotated[UserName, BeforeValidator(_null_as_empty)] = ""


# -- REST bodies ---------------------------------------------------------------------------------


class CreateSessionBody(Payload):
    roomId: RoomId
    creatorName: Annotated[UserName, Field(min_length=1)]
    creatorUserId: UserId | None = None
    code: Code | None = None
    language: Language | None = None


class ParticipantBody(Payload):
    userId: UserId | None = None
    name: Annotated[UserName, BeforeValidator(_null_as_empty)] = ""


class UpdateSessionBody(Payload):
    code: Code | None = None
    language: Language | None = None
    participants: Annotated[list[ParticipantBody], Field(max_length=1000)] | None = None
    fileId: FileId | None = None  # the current client's active file: `code` is its text


class SaveFileBody(Payload):
    fileId: FileId
    name: FileName
    content: FileText | None = None
    mime: ShortText | None = None
    size: Version | None = None
    uploadedBy: UserId | None = None
    uploaderName: UserName | None = None


class MessagesQuery(BaseModel):
    """`?before=&limit=` of GET /api/sessions/:roomId (query strings arrive as text)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    before: Annotated[int, Field(ge=0, le=MAX_NUMBER)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 200


# -- access control (AUTH_MODE optional and required) --------------------------------------

RoleName = Literal["editor", "viewer"]


class MemberBody(Payload):
    userId: UserId
    role: RoleName


class AccessBody(Payload):
    """PUT /api/sessions/:roomId/access: the room's rules; what is left out stays as it is
    (`members`, when given, is the whole list)."""

    visibility: Literal["public", "private"] | None = None
    publicRole: RoleName | None = None
    viewersCanChat: StrictBool | None = None
    members: Annotated[list[MemberBody], Field(max_length=10_000)] | None = None


class InviteBody(Payload):
    """POST /api/sessions/:roomId/invites."""

    role: RoleName = "editor"
    expiresIn: Annotated[StrictInt | StrictFloat, Field(gt=0)] = 7 * 86400.0


# -- user context (sessions that follow their user) -----------------------------------------

ContextKey = Annotated[Text, Field(min_length=1, max_length=128)]


class UpdateContext(Payload):
    """Extension: set one key of the user's context (null removes it)."""

    userId: UserId | None = None  # with access control: the token's user (may be left out)
    key: ContextKey
    value: Any = None  # any JSON value; the whole context is bounded (64 KiB)


# -- history -------------------------------------------------------------------------------

CheckpointName = Annotated[Text, Field(min_length=1, max_length=200)]


class HistoryQuery(BaseModel):
    """`?before=&limit=` of GET /api/sessions/:roomId/history."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    before: Annotated[int, Field(ge=0, le=MAX_NUMBER)] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 100


class VersionQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    fileId: Annotated[str, Field(min_length=1, max_length=255)] = "main.js"


class DiffQuery(VersionQuery):
    from_: Annotated[int, Field(ge=0, le=MAX_NUMBER, alias="from")]
    to: Annotated[int, Field(ge=0, le=MAX_NUMBER)]


class RestoreBody(Payload):
    version: Version | None = None
    checkpointId: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    fileId: FileId | None = None

    @model_validator(mode="after")
    def one_target(self) -> RestoreBody:
        if (self.version is None) == (self.checkpointId is None):
            raise ValueError("give exactly one of version and checkpointId")
        return self


class CheckpointBody(Payload):
    name: CheckpointName


class CreateCheckpoint(RoomEvent):
    """Extension: a named checkpoint of the room as it is now."""

    name: CheckpointName


# -- export and import -------------------------------------------------------------------------

EXPORT_FORMAT = "codecollab-session"
MAX_EXPORTED_MESSAGES = 100_000
MAX_EXPORTED_CHECKPOINTS = 1000


def _iso_time(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO-8601 time") from None
    return value


IsoTime = Annotated[StrictStr, AfterValidator(_iso_time)]


class ExportedFile(Payload):
    fileId: FileId
    name: FileName
    content: FileText = ""
    mime: ShortText = "text/plain"
    uploadedBy: UserId | None = None
    uploaderName: UserName | None = None


class ExportedParticipant(Payload):
    userId: UserId | None = None
    name: UserName


class ExportedMessage(Payload):
    id: ShortText
    userId: UserId | None = None
    userName: UserName
    message: ChatText
    timestamp: IsoTime


class ExportedCheckpoint(Payload):
    name: CheckpointName
    auto: StrictBool = False
    language: Language
    texts: Annotated[dict[FileId, FileText], Field(max_length=51)]


class SessionExport(Payload):
    """A whole session (GET .../export; POST /api/sessions/import takes it back)."""

    format: Literal["codecollab-session"]
    formatVersion: Literal[1]
    roomId: RoomId
    code: Code
    language: Language
    creatorName: UserName | None = None
    creatorUserId: UserId | None = None
    participants: Annotated[list[ExportedParticipant], Field(max_length=500)] = []
    files: Annotated[list[ExportedFile], Field(max_length=50)] = []
    activeFile: FileId | None = None
    whiteboardElements: Whiteboard = None
    messages: Annotated[list[ExportedMessage], Field(max_length=MAX_EXPORTED_MESSAGES)] = []
    checkpoints: Annotated[
        list[ExportedCheckpoint], Field(max_length=MAX_EXPORTED_CHECKPOINTS)
    ] = []
    createdAt: IsoTime
    exportedAt: IsoTime


class ImportQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    roomId: Annotated[str, Field(pattern="^[A-Za-z0-9_-]{1,64}$")] | None = None


class ExportQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    format: Literal["json", "zip"] = "json"
