"""Sessions that follow their user: a small JSON document of preferences and state per app
user id, stored, and pushed to every other connection of that user (another tab, another
device) as soon as one of them changes a key.

Connections of a user are the sockets in the group `user:<id>`: a socket enters it when it
joins a room as that user or changes that user's context (with access control, only as the
user of its token). In cluster mode the push crosses processes (a relay)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from app.domain.access import Identity, Policy
from app.domain.errors import Forbidden, LimitExceeded, StoreUnavailable
from app.domain.ports import Clock, Notifier
from app.storage import SessionStore, StoreError
from app.storage.records import UserContext

MAX_CONTEXT_BYTES = 64 * 1024
Change = Callable[[dict[str, Any]], dict[str, Any]]
ATTEMPTS = 5  # compare-and-set rounds before giving up (others kept writing meanwhile)


def group_of(user_id: str) -> str:
    return f"user:{user_id}"  # never a room id (those have no colon)


class Contexts:
    def __init__(
        self, store: SessionStore, notifier: Notifier, policy: Policy, clock: Clock
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.policy = policy
        self.clock = clock

    def _allow(self, user_id: str, who: Identity | None) -> None:
        """Open mode: the user id is the key. Else: that user's own token, or an admin."""
        if self.policy.enforced and (who is None or not (who.admin or who.user_id == user_id)):
            raise Forbidden("Only that user may read or change their context")

    async def get(self, user_id: str, who: Identity | None) -> UserContext:
        self._allow(user_id, who)
        try:
            found = await self.store.load_context(user_id)
        except StoreError as error:
            raise StoreUnavailable(f"The store is unavailable: {error}") from error
        return found or UserContext(
            user_id=user_id, context={}, revision=0, updated_at=self.clock()
        )

    async def replace(
        self, user_id: str, who: Identity | None, context: dict[str, Any]
    ) -> UserContext:
        """The whole document; every connection of the user hears each key that changed."""
        self._allow(user_id, who)
        _check_size(context)
        before: dict[str, Any] = {}

        def change(current: dict[str, Any]) -> dict[str, Any]:
            before.clear()
            before.update(current)
            return context

        saved = await self._write(user_id, change)
        for key in sorted(before.keys() | context.keys()):
            if before.get(key) != context.get(key) or (key in before) != (key in context):
                self._tell(user_id, key, context.get(key), skip=None)
        return saved

    async def set_key(
        self, sid: str, user_id: str, who: Identity | None, key: str, value: Any
    ) -> UserContext:
        """One key (a null value removes it); the user's other connections hear it at once."""
        self._allow(user_id, who)
        self.notifier.enter(sid, group_of(user_id))

        def change(current: dict[str, Any]) -> dict[str, Any]:
            updated = {k: v for k, v in current.items() if k != key}
            if value is not None:
                updated[key] = value
            _check_size(updated)
            return updated

        saved = await self._write(user_id, change)
        self._tell(user_id, key, value, skip=sid)
        return saved

    def follow(self, sid: str, user_id: str) -> None:
        """The socket is a connection of `user_id`: it hears their context's changes."""
        self.notifier.enter(sid, group_of(user_id))

    async def _write(self, user_id: str, change: Change) -> UserContext:
        """Read, change, compare-and-set; again when another write came in between."""
        try:
            for _ in range(ATTEMPTS):
                current = await self.store.load_context(user_id)
                revision = current.revision if current is not None else 0
                context = change(dict(current.context) if current is not None else {})
                updated = UserContext(
                    user_id=user_id, context=context, revision=revision + 1, updated_at=self.clock()
                )
                if await self.store.save_context(updated, expected=revision):
                    return updated
        except StoreError as error:
            raise StoreUnavailable(f"The store is unavailable: {error}") from error
        raise StoreUnavailable("The context kept changing under this write; try again")

    def _tell(self, user_id: str, key: str, value: Any, *, skip: str | None) -> None:
        payload = {"userId": user_id, "key": key, "value": value}
        self.notifier.relay(group_of(user_id), "contextUpdated", payload, skip=skip)


def _check_size(context: dict[str, Any]) -> None:
    size = len(orjson.dumps(context))
    if size > MAX_CONTEXT_BYTES:
        raise LimitExceeded(f"A context is at most {MAX_CONTEXT_BYTES} bytes of JSON ({size})")
