"""Access to rooms (AUTH_MODE optional and required): who joins as what, what each socket may
send, the owner's changes of a room's rules and invites, and revocation on live sockets.

A change of the rules is a room change like any other: ordered through the room's log (cluster
mode: every process applies it, and re-examines its own sockets at once), stored before it is
answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.domain.access import AccessChange, Identity, Invite, Need, Policy, allows
from app.domain.errors import Forbidden, InviteUsed, ReadOnly
from app.domain.ports import LogEntry, Notifier
from app.domain.room import Member, Room
from app.domain.rooms import Rooms
from app.storage.records import AccessRecord, GivenRole
from app.wire import outbound

REVOKED = "Your access to this room was revoked"


class Gate:
    def __init__(self, rooms: Rooms, notifier: Notifier) -> None:
        self.rooms = rooms
        self.notifier = notifier
        self.policy = Policy(rooms.settings.auth_mode, rooms.settings.max_room_members)
        rooms.appliers["access"] = self._apply_access
        rooms.appliers["invite"] = self._apply_invite
        self.revoked = 0  # sockets put out of a room by a change of its rules (metrics)

    @property
    def enforced(self) -> bool:
        return self.policy.enforced

    # -- joining -----------------------------------------------------------------------------

    async def admit(self, room_id: str, who: Identity | None, invite: Invite | None) -> str:
        """The role `who` joins `room_id` with (a room that does not exist is made, theirs);
        an invite is used up first. Forbidden when they may not join."""
        room = await self.rooms.open(room_id, create=True)
        await self.establish(room, who)
        if invite is not None:
            await self._redeem(room, who, invite)
        role = self.policy.role(room.rules(), who)
        if role is None:
            raise Forbidden(f"You may not join room {room_id}")
        return role

    async def establish(self, room: Room, who: Identity | None) -> None:
        """A session made just now gets its rules: public, and its maker's (cluster mode: the
        first maker in the room's log)."""
        if not self.enforced or room.access is not None or not room.fresh:
            return
        async with room.lock:
            if room.access is not None:
                return
            rules = self.policy.new_rules(who)
            body = {"k": "access", "access": rules.model_dump(mode="json"), "first": True}
            await self.rooms.order(room, body, versioned=False)
            self._set(room, rules, first=True)

    async def _redeem(self, room: Room, who: Identity | None, invite: Invite) -> None:
        if who is None:
            raise Forbidden("Sign in to use an invite")
        if invite.invite_id not in room.rules().used_invites:
            async with room.lock:
                body = {
                    "k": "invite",
                    "id": invite.invite_id,
                    "user": who.user_id,
                    "role": invite.role,
                    "exp": invite.expires_at.isoformat(),
                }
                await self.rooms.order(room, body, versioned=False)
                self._use(room, invite, who.user_id)
            await self.rooms.persist(room)
        used = room.rules().used_invites.get(invite.invite_id)
        if used is None or used[0] != who.user_id:
            raise InviteUsed("This invite has been used already")

    # -- what each socket may send -------------------------------------------------------------

    async def check(self, sid: str, need: Need) -> None:
        """ReadOnly when the socket's role in its room does not allow `need`."""
        found = await self.rooms.settled(sid)
        if found is None:
            return  # not in a room: the handler answers that
        room, member = found
        if not allows(member.role, need, room.rules()):
            if need == "chat":
                raise ReadOnly("Viewers may not chat in this room")
            raise ReadOnly("You are a viewer in this room: you cannot change it")

    # -- the owner's changes -----------------------------------------------------------------

    async def change(self, room_id: str, who: Identity | None, change: AccessChange) -> Room:
        """Change the room's rules (owner only); live sockets follow at once."""
        room = await self.rooms.open(room_id, create=False)
        await self.rooms.catch_up(room)
        self.policy.check(room.rules(), who, "own", room_id)
        async with room.lock:
            rules = self.policy.changed(room.rules(), change)
            body = {"k": "access", "access": rules.model_dump(mode="json")}
            await self.rooms.order(room, body, versioned=False)
            self._set(room, rules)
        await self.rooms.persist(room)
        return room

    async def rules(self, room_id: str, who: Identity | None) -> Room:
        """The live room whose rules its owner reads."""
        room = await self.rooms.open(room_id, create=False)
        await self.rooms.catch_up(room)
        self.policy.check(room.rules(), who, "own", room_id)
        return room

    async def invite(
        self, room_id: str, who: Identity | None, role: GivenRole, expires_in: float
    ) -> Invite:
        room = await self.rooms.open(room_id, create=False)
        self.policy.check(room.rules(), who, "own", room_id)
        return self.policy.invite(room_id, role, expires_in, self.rooms.clock())

    # -- applying (this process's own changes, and in cluster mode the others') --------------

    def _apply_access(self, room: Room, entry: LogEntry) -> None:
        rules = AccessRecord.model_validate(entry.body["access"])
        self._set(room, rules, first=bool(entry.body.get("first")))

    def _apply_invite(self, room: Room, entry: LogEntry) -> None:
        body = entry.body
        invite = Invite(body["id"], room.room_id, body["role"], datetime.fromisoformat(body["exp"]))
        self._use(room, invite, body["user"])

    def _use(self, room: Room, invite: Invite, user_id: str) -> None:
        rules = room.rules()
        self._set(room, self.policy.redeemed(rules, invite, user_id, self.rooms.now(room)))

    def _set(self, room: Room, rules: AccessRecord, *, first: bool = False) -> None:
        if first and room.access is not None:
            return  # another process made the session first: its rules hold
        before = room.rules()
        room.access = rules
        room.changes += 1
        room.touch(self.rooms.now(room))
        self.rooms.writer.changed(room)
        if rules != before:
            self._reexamine(room, before)

    def _reexamine(self, room: Room, before: AccessRecord) -> None:
        """Every socket of this process in the room gets the role the new rules give it: one
        that has none left is put out and disconnected; one whose role (or, for a viewer,
        whether it may chat) changed is told."""
        rules = room.rules()
        for member in room.local_members():
            who = Identity(member.account) if member.account is not None else None
            role = self.policy.role(rules, who)
            if role is None:
                self._revoke(member)
                continue
            chat_changed = role == "viewer" and rules.viewers_chat != before.viewers_chat
            if role != member.role or chat_changed:
                member.role = role
                self.notifier.send([member.sid], "accessChanged", _told(room, role, rules))

    def _revoke(self, member: Member) -> None:
        self.revoked += 1
        self.rooms.leave(member.sid, "revoked")
        self.notifier.send(
            [member.sid], "error", outbound.error("access", "access_revoked", REVOKED)
        )
        self.notifier.close(member.sid)


def _told(room: Room, role: str, rules: AccessRecord) -> dict[str, Any]:
    return {
        "roomId": room.room_id,
        "role": role,
        "visibility": rules.visibility,
        "viewersCanChat": rules.viewers_chat,
    }
