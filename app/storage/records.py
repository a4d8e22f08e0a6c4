"""What the stores keep: pydantic records in, pydantic records out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

DEFAULT_CODE = "// Start coding here...\n"
DEFAULT_LANGUAGE = "javascript"
# The room's code is also its first file, under the name the current client opens first: both
# client generations then edit one text (`codeChange` and `changeFile` of "main.js").
MAIN_FILE_ID = "main.js"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Participant(Record):
    user_id: str | None
    name: str
    joined_at: datetime
    last_seen: datetime


class FileRecord(Record):
    """A file of a session. The main file's content is the session's code, kept once."""

    file_id: str
    name: str
    content: str = ""
    mime: str = "text/plain"
    size: int = 0
    uploaded_by: str | None = None
    uploader_name: str | None = None
    uploaded_at: datetime
    version: int = 0  # the room version of its last change


GivenRole = Literal["editor", "viewer"]  # the roles an owner gives


class AccessRecord(Record):
    """Who may use a session (AUTH_MODE optional or required): its owner, whether anyone may
    join (`public`, as `public_role`) or members only, each member's role, and the invites
    used so far (invite id -> (user id, when the invite expires)), which cannot be used again."""

    owner: str | None = None
    visibility: Literal["public", "private"] = "public"
    public_role: GivenRole = "editor"
    viewers_chat: bool = True
    members: dict[str, GivenRole] = {}  # user id -> role
    used_invites: dict[str, tuple[str, datetime]] = {}


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
    files: tuple[FileRecord, ...] = ()
    active_file: str | None = None
    whiteboard: Any = None  # the latest whiteboard snapshot, any JSON value
    access: AccessRecord | None = None  # None: made before access control (owner: creator)
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


class ChatPreview(Record):
    """The last chat message of a session, as the per-user listing shows it."""

    user_name: str
    message: str
    timestamp: datetime


class SessionSummary(Record):
    room_id: str
    creator_name: str | None
    participant_count: int
    language: str
    created_at: datetime
    expires_at: datetime
    last_activity: datetime
    file_count: int = 0
    message_count: int = 0
    last_message: ChatPreview | None = None


class UserContext(Record):
    """A user's preferences and state, shared by all their connections; `revision` counts
    its writes (compare-and-set)."""

    user_id: str
    context: dict[str, Any]
    revision: int
    updated_at: datetime


class HistoryEntry(Record):
    """One recorded change of a session: a text's op (`op`, as JSON), the language (`op`, the
    language's name), or a whole text at `version` (`kind` snapshot, in `text`)."""

    room_id: str
    version: int
    doc_id: str  # the text ("" for the language)
    kind: Literal["op", "language", "snapshot"]
    op: Any = None
    text: str | None = None
    pinned: bool = False  # a checkpoint's snapshot: kept as long as its session
    author_id: str | None = None
    author_name: str | None = None
    at: datetime
    inserted: int = 0
    deleted: int = 0


class Checkpoint(Record):
    """A named version of a session (`auto`: made by the server)."""

    room_id: str
    id: str
    name: str
    version: int
    at: datetime
    author_id: str | None = None
    author_name: str | None = None
    auto: bool = False
