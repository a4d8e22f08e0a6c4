"""Pydantic models of wire payloads (events and REST bodies) and of stored documents."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
)

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
LANGUAGE_PATTERN = re.compile(r"[A-Za-z0-9+#._-]{1,32}")
DEFAULT_CODE = "// Start coding here...\n"
DEFAULT_LANGUAGE = "javascript"


@dataclass(frozen=True)
class Limits:
    """Size limits applied while validating; passed to pydantic as validation context."""

    max_room_id_length: int = 64
    max_user_name_length: int = 100
    max_user_id_length: int = 128
    max_code_bytes: int = 1_048_576
    max_chat_length: int = 4000
    max_cursor_bytes: int = 1024


def _limits(info: ValidationInfo) -> Limits:
    context = info.context
    return context if isinstance(context, Limits) else Limits()


def _valid_unicode(value: str) -> str:
    # Python strings decoded from JSON may hold lone surrogates, which no store can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains a lone surrogate") from None
    return value


def _room_id(value: str, info: ValidationInfo) -> str:
    if len(value) > _limits(info).max_room_id_length or not ROOM_ID_PATTERN.fullmatch(value):
        limit = _limits(info).max_room_id_length
        raise ValueError(f"roomId must be 1-{limit} characters of A-Z, a-z, 0-9, _ or -")
    return value


def _user_name(value: str, info: ValidationInfo) -> str:
    if len(value) > _limits(info).max_user_name_length:
        raise ValueError(f"userName is longer than {_limits(info).max_user_name_length}")
    return value


def _user_id(value: str, info: ValidationInfo) -> str:
    if len(value) > _limits(info).max_user_id_length:
        raise ValueError(f"userId is longer than {_limits(info).max_user_id_length}")
    return value


def _code(value: str, info: ValidationInfo) -> str:
    limit = _limits(info).max_code_bytes
    # Cheap bound first: a string of n code points has at most 4n UTF-8 bytes.
    if len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
        raise ValueError(f"code is larger than {limit} bytes")
    return value


def _chat_text(value: str, info: ValidationInfo) -> str:
    if len(value) > _limits(info).max_chat_length:
        raise ValueError(f"message is longer than {_limits(info).max_chat_length} characters")
    return value


def _language(value: str) -> str:
    if not LANGUAGE_PATTERN.fullmatch(value):
        raise ValueError("language must be 1-32 characters of A-Z, a-z, 0-9, +, #, ., _ or -")
    return value


def _cursor(value: Any, info: ValidationInfo) -> Any:
    limit = _limits(info).max_cursor_bytes
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise ValueError("position must be a JSON value") from None
    if size > limit:
        raise ValueError(f"position is larger than {limit} bytes serialized")
    return value


def _null_as_empty(value: object) -> object:
    return "" if value is None else value


Text = Annotated[StrictStr, AfterValidator(_valid_unicode)]
RoomId = Annotated[
    StrictStr,
    AfterValidator(_room_id),
    Field(json_schema_extra={"pattern": "^[A-Za-z0-9_-]{1,64}$"}),
]
UserName = Annotated[Text, AfterValidator(_user_name)]
UserId = Annotated[Text, AfterValidator(_user_id)]
Code = Annotated[Text, AfterValidator(_code)]
ChatText = Annotated[Text, AfterValidator(_chat_text)]
Language = Annotated[
    StrictStr,
    AfterValidator(_language),
    Field(json_schema_extra={"pattern": "^[A-Za-z0-9+#._-]{1,32}$"}),
]
Version = Annotated[StrictInt, Field(ge=0)]


class Payload(BaseModel):
    """Base of every incoming payload: strict types, unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class RoomEvent(Payload):
    roomId: RoomId


Epoch = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class JoinRoom(RoomEvent):
    userName: Annotated[UserName, BeforeValidator(_null_as_empty)] = ""
    userId: UserId | None = None
    lastSeenVersion: Version | None = None
    epoch: Epoch | None = None


class ReconnectOffset(RoomEvent):
    """Socket.IO `auth` of a reconnecting client: the highest version it saw in `roomId`."""

    offset: Version
    epoch: Epoch | None = None


class SendCodeState(RoomEvent):
    code: Code
    language: Language | None = None
    targetUserId: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class CodeChange(RoomEvent):
    code: Code
    language: Language | None = None
    baseVersion: Version | None = None


class LanguageChange(RoomEvent):
    language: Language


class CursorMove(RoomEvent):
    position: Annotated[Any, AfterValidator(_cursor)] = None


class ChatMessageBody(Payload):
    """The object form of a chat message; the server keeps only `id` and `message`."""

    id: Annotated[StrictStr, Field(max_length=128)] | StrictInt | None = None
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


class MessagesQuery(BaseModel):
    """`?before=&limit=` of GET /api/sessions/:roomId (query strings arrive as text)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    before: Annotated[int, Field(ge=0)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 200


def utc_now() -> datetime:
    """Now in UTC, truncated to milliseconds (what MongoDB and the wire keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    """ISO-8601 with milliseconds and `Z`, as the original server answered."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Participant(Record):
    user_id: str | None
    name: str
    joined_at: datetime
    last_seen: datetime


class SessionRecord(Record):
    """A room's persisted state; `version` guards writes (newer never overwritten by older)."""

    room_id: str
    code: str = DEFAULT_CODE
    language: str = DEFAULT_LANGUAGE
    version: int = 0
    code_version: int = 0  # the versions of the last code and language change
    language_version: int = 0
    creator_name: str | None = None
    creator_user_id: str | None = None
    participants: tuple[Participant, ...] = ()
    created_at: datetime
    last_activity: datetime
    expires_at: datetime

    @property
    def user_ids(self) -> list[str]:
        """App user ids that may list this session: the creator and every participant."""
        ids = [self.creator_user_id] + [p.user_id for p in self.participants]
        return sorted({user_id for user_id in ids if user_id})


class ChatRecord(Record):
    """One stored chat message; `version` is the room version it was accepted at."""

    room_id: str
    version: int
    id: str
    user_id: str | None
    user_name: str
    message: str
    timestamp: datetime
    expires_at: datetime


class SessionSummary(Record):
    room_id: str
    creator_name: str | None
    participant_count: int
    language: str
    created_at: datetime
    expires_at: datetime
    last_activity: datetime
