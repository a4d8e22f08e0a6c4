"""Who may do what in a room: identities, roles and the access mode (AUTH_MODE).

`open`: no identities; everyone is an editor of every room (the room id is the key).
`optional`: a socket or request with a token is the user its token names; without one it is
anonymous, and reaches public rooms only. `required`: nothing without a valid token.

A room's rules (`AccessRecord`) name its owner, whether it is public (anyone joins, as its
`public_role`) or private (members only), and its members' roles.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from app.domain.errors import Forbidden, InvalidPayload, SessionNotFound
from app.storage.records import AccessRecord, GivenRole

Mode = Literal["open", "optional", "required"]
Role = Literal["owner", "editor", "viewer"]
# What an event or route needs: to see the room, to chat in it, to change it, to manage it.
Need = Literal["read", "chat", "write", "own"]
RANK: dict[str, int] = {"viewer": 1, "editor": 2, "owner": 3}


@dataclass(frozen=True)
class Identity:
    """A verified user: the token's user id, and when the token expires (epoch seconds)."""

    user_id: str
    expires_at: float | None = None
    admin: bool = False  # ADMIN_TOKEN (REST only): the owner of every room


@dataclass(frozen=True)
class AccessChange:
    """What an owner changes of a room's rules; None: left as it is (`members`, when given,
    is the whole list)."""

    visibility: Literal["public", "private"] | None = None
    public_role: GivenRole | None = None
    viewers_chat: bool | None = None
    members: dict[str, GivenRole] | None = None


@dataclass(frozen=True)
class Invite:
    """An invite to one room with one role, usable once before it expires."""

    invite_id: str
    room_id: str
    role: GivenRole
    expires_at: datetime


def given_role(value: object) -> GivenRole | None:
    """`value` as a role an owner gives, else None."""
    return "editor" if value == "editor" else "viewer" if value == "viewer" else None


def rules_of(access: AccessRecord | None, creator_user_id: str | None) -> AccessRecord:
    """A session's rules; one made before access control is public and its creator's."""
    return access if access is not None else AccessRecord(owner=creator_user_id)


def allows(role: str | None, need: Need, rules: AccessRecord) -> bool:
    if role is None:
        return False
    if need == "read":
        return True
    if need == "own":
        return role == "owner"
    if role == "viewer":
        return need == "chat" and rules.viewers_chat
    return True


class Policy:
    """The access mode's answers; in `open` mode everyone is an editor and nothing is
    checked."""

    def __init__(self, mode: Mode, max_members: int = 1000) -> None:
        self.mode = mode
        self.max_members = max_members

    @property
    def enforced(self) -> bool:
        return self.mode != "open"

    def role(self, rules: AccessRecord, who: Identity | None) -> str | None:
        """The role of `who` (None: anonymous) in a room with these rules; None: no access."""
        if not self.enforced:
            return "editor"
        if who is not None:
            if who.admin or who.user_id == rules.owner:
                return "owner"
            member = rules.members.get(who.user_id)
            if member is not None:
                return member
        if rules.visibility == "public":
            return rules.public_role
        return None

    def check(self, rules: AccessRecord, who: Identity | None, need: Need, room_id: str) -> str:
        """The role of `who`, which must allow `need`. No access at all answers exactly as a
        session that does not exist (no oracle); too little access, Forbidden."""
        role = self.role(rules, who)
        if role is None:
            raise SessionNotFound(f"Session {room_id} not found")
        if not allows(role, need, rules):
            raise Forbidden(FORBIDDEN[need])
        return role

    def changed(self, rules: AccessRecord, change: AccessChange) -> AccessRecord:
        """The rules with an owner's change; its owner and used invites stay."""
        members = rules.members
        if change.members is not None:
            members = {user: role for user, role in change.members.items() if user != rules.owner}
            if len(members) > self.max_members:
                raise InvalidPayload(f"A room has at most {self.max_members} members")
        viewers_chat = rules.viewers_chat if change.viewers_chat is None else change.viewers_chat
        return rules.model_copy(
            update={
                "visibility": change.visibility or rules.visibility,
                "public_role": change.public_role or rules.public_role,
                "viewers_chat": viewers_chat,
                "members": members,
            }
        )

    def new_rules(self, who: Identity | None) -> AccessRecord:
        """The rules of a session made now by `who`: public, theirs (anonymous: nobody's)."""
        return AccessRecord(owner=None if who is None or who.admin else who.user_id)

    def invite(self, room_id: str, role: GivenRole, expires_in: float, now: datetime) -> Invite:
        expires_at = now + timedelta(seconds=expires_in)
        return Invite(uuid.uuid4().hex, room_id, role, expires_at)

    def redeemed(
        self, rules: AccessRecord, invite: Invite, user_id: str, now: datetime
    ) -> AccessRecord:
        """The rules once `user_id` has used the invite: it is used up (used ones that have
        expired are forgotten: nobody can present them any more), and the user has at least
        its role. An invite used already changes nothing."""
        if invite.invite_id in rules.used_invites:
            return rules
        used = {key: held for key, held in rules.used_invites.items() if held[1] > now}
        used[invite.invite_id] = (user_id, invite.expires_at)
        members = dict(rules.members)
        current = "owner" if user_id == rules.owner else members.get(user_id)
        room_for_one = user_id in members or len(members) < self.max_members
        if room_for_one and (current is None or RANK[invite.role] > RANK[current]):
            members[user_id] = invite.role
        return rules.model_copy(update={"used_invites": used, "members": members})


FORBIDDEN: dict[str, str] = {
    "read": "You may not see this session",
    "chat": "Viewers may not chat in this room",
    "write": "You may only view this room",
    "own": "Only the session's owner may do this",
}
