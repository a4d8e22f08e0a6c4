"""Every client event, declared once: its payload model, its rate family, and either the
handler that serves it or, for a pure relay, what the room hears.

Adding a relayed event is one line here. The transport registers every entry and refuses to
start when an entry's rate family has no rate in the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.domain.access import Need
from app.wire import inbound as m
from app.wire import outbound

Audience = Literal["others", "room"]
Build = Callable[[Any, str, str], outbound.Json]  # (payload, sender sid, sender name)


def _who(_: Any, sid: str, name: str) -> outbound.Json:
    return outbound.who(sid, name)


def _cursor(payload: m.CursorMove, sid: str, name: str) -> outbound.Json:
    return {"position": payload.position, "userId": sid, "userName": name}


def _hand(payload: m.RaiseHand, sid: str, name: str) -> outbound.Json:
    return {"userId": sid, "userName": name, "timestamp": payload.timestamp}


@dataclass(frozen=True)
class Relay:
    """What a relayed event becomes: `event` with `build(...)`, to the sender's room."""

    event: str
    build: Build = _who
    to: Audience = "others"


@dataclass(frozen=True)
class Event:
    name: str
    model: type[m.Payload]
    family: str
    handler: str | None = None  # the name of the transport's method serving it
    relay: Relay | None = None
    args: tuple[str, ...] = ()  # positional arguments (meeting page), named as in `model`
    needs: Need = "read"  # what the sender's role in its room must allow (access.py)

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.relay is None):
            raise ValueError(f"{self.name}: give exactly one of handler and relay")


EVENTS: tuple[Event, ...] = (
    # The room, its code and chat (both client generations).
    Event("joinRoom", m.JoinRoom, "join", handler="join_room"),
    Event("leaveRoom", m.RoomEvent, "join", handler="leave_room"),
    Event("refreshToken", m.RefreshToken, "join", handler="refresh_token"),
    Event("requestCodeState", m.RoomEvent, "join", handler="request_code_state"),
    Event("sendCodeState", m.SendCodeState, "code", handler="send_code_state"),
    Event("codeChange", m.CodeChange, "code", handler="code_change", needs="write"),
    Event("languageChange", m.LanguageChange, "code", handler="language_change", needs="write"),
    Event("chatMessage", m.ChatMessage, "chat", handler="chat_message", needs="chat"),
    Event("cursorMove", m.CursorMove, "cursor", relay=Relay("cursorUpdate", _cursor)),
    Event("userTyping", m.RoomEvent, "cursor", relay=Relay("userIsTyping")),
    Event("userStoppedTyping", m.RoomEvent, "cursor", relay=Relay("userStoppedTyping")),
    # Files (current generation).
    Event("openFile", m.OpenFile, "file", handler="open_file", needs="write"),
    Event("changeFile", m.ChangeFile, "code", handler="change_file", needs="write"),
    Event("requestFile", m.FileEvent, "file", handler="request_file"),
    Event("setActiveFile", m.FileEvent, "file", handler="set_active_file", needs="write"),
    Event("uploadFile", m.UploadFile, "upload", handler="upload_file", needs="write"),
    # Whiteboard (both).
    Event(
        "whiteboardChange",
        m.WhiteboardChange,
        "whiteboard",
        handler="whiteboard_change",
        needs="write",
    ),
    Event("whiteboardOpened", m.RoomEvent, "whiteboard", relay=Relay("whiteboardOpenedByUser")),
    Event("whiteboardClosed", m.RoomEvent, "whiteboard", relay=Relay("whiteboardClosedByUser")),
    # Calls, screen share and hands in the editor (older generation).
    Event("userReadyForCall", m.ReadyForCall, "call", handler="ready_for_call"),
    Event("webrtc-offer", m.WebrtcOffer, "signal", handler="webrtc_offer"),
    Event("webrtc-answer", m.WebrtcAnswer, "signal", handler="webrtc_answer"),
    Event("ice-candidate", m.IceCandidate, "signal", handler="ice_candidate"),
    Event("userLeftCall", m.RoomEvent, "call", handler="left_call"),
    Event("checkRoomCallStatus", m.RoomEvent, "call", handler="call_status"),
    Event("media-track-ended", m.MediaTrackEnded, "call", handler="track_ended"),
    Event("userReadyForScreenShare", m.RoomEvent, "call", relay=Relay("userReadyForScreenShare")),
    Event("screenShareStarted", m.RoomEvent, "call", relay=Relay("userScreenShareStarted")),
    Event("screenShareStopped", m.RoomEvent, "call", relay=Relay("userScreenShareStopped")),
    Event("raiseHand", m.RaiseHand, "call", relay=Relay("userRaisedHand", _hand)),
    Event("lowerHand", m.RoomEvent, "call", relay=Relay("userLoweredHand")),
    # History (extension).
    Event(
        "createCheckpoint", m.CreateCheckpoint, "file", handler="create_checkpoint", needs="write"
    ),
    # The user's context, on every connection of theirs (extension).
    Event("updateContext", m.UpdateContext, "context", handler="update_context"),
    # The meeting page (current generation): positional arguments.
    Event("join-call", m.JoinCall, "call", handler="join_call", args=("roomId",)),
    Event("signal", m.MeetingSignal, "signal", handler="meeting_signal", args=("to", "message")),
    Event("chat-message", m.MeetingChat, "chat", handler="meeting_chat", args=("data", "sender")),
)
