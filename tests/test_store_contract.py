"""The SessionStore contract, run against every backend (see tests/store_backends.py).

Every test of the `store` fixture runs on sqlite, mongomock, a real MongoDB (when
MONGODB_TEST_URI is set) and nx-27017; the `sqlite_store` and `mongo_store` tests cover what
only one kind of backend has (file locking, WAL, indexes).
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.clock import utc_now
from app.storage import StoreError
from app.storage.mongo import MongoSessionStore
from app.storage.records import (
    AccessRecord,
    ChatRecord,
    Checkpoint,
    HistoryEntry,
    Participant,
    SessionRecord,
    SessionSummary,
    UserContext,
)
from app.storage.sqlite import SqliteSessionStore

pytest_plugins = ("tests.store_backends",)

DAY = timedelta(days=1)
UNICODE_CODE = "const s = 'nul:\x00 end';\n// ünïcødé ☃ 漢字 😀👩‍💻\r\n\tlast line"


def session(
    room_id: str,
    version: int = 1,
    *,
    now: datetime,
    code: str | None = None,
    creator_user_id: str | None = None,
    participants: Sequence[Participant] = (),
    last_activity: datetime | None = None,
    expires_at: datetime | None = None,
    **fields: Any,
) -> SessionRecord:
    return SessionRecord(
        room_id=room_id,
        version=version,
        code=f"code of {room_id} at v{version}" if code is None else code,
        creator_user_id=creator_user_id,
        participants=tuple(participants),
        created_at=now - timedelta(hours=1),
        last_activity=now if last_activity is None else last_activity,
        expires_at=now + DAY if expires_at is None else expires_at,
        **fields,
    )


def participant(user_id: str | None, name: str, at: datetime) -> Participant:
    return Participant(
        user_id=user_id,
        name=name,
        joined_at=at,
        last_seen=at + timedelta(seconds=1, milliseconds=7),
    )


def chat(room_id: str, version: int, *, now: datetime, expires_at: datetime) -> ChatRecord:
    return ChatRecord(
        room_id=room_id,
        version=version,
        id=f"{room_id}-{version}",
        user_id=f"user-{version % 3}",
        user_name=f"User {version % 3}",
        message=f"message {version} in {room_id} 💬",
        timestamp=now + timedelta(milliseconds=version),
        expires_at=expires_at,
    )


def versions(messages: Iterable[ChatRecord]) -> list[int]:
    return [m.version for m in messages]


def summary(record: SessionRecord) -> SessionSummary:
    return SessionSummary(
        room_id=record.room_id,
        creator_name=record.creator_name,
        participant_count=len(record.participants),
        language=record.language,
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_activity=record.last_activity,
    )


async def saved_room_with_chat(
    store: Any, room_id: str, count: int, now: datetime
) -> tuple[SessionRecord, list[ChatRecord]]:
    record = session(room_id, count, now=now)
    assert await store.save(record)
    messages = [
        chat(room_id, v, now=now, expires_at=record.expires_at) for v in range(1, count + 1)
    ]
    await store.append_messages(messages)
    return record, messages


# --- load and save ---------------------------------------------------------------------------


async def test_loading_a_missing_room_returns_none(store: Any) -> None:
    assert await store.load("no-such-room") is None


async def test_save_then_load_round_trips_every_field(store: Any) -> None:
    now = utc_now()
    record = SessionRecord(
        room_id="round-trip_1",
        code=UNICODE_CODE,
        language="c++",
        version=42,
        creator_name="Zoë 🦊",
        creator_user_id="creator-1",
        participants=(
            participant("creator-1", "Zoë 🦊", now - timedelta(minutes=5)),
            participant(None, "anonymous guest", now - timedelta(minutes=1, milliseconds=333)),
        ),
        created_at=now - timedelta(hours=2, milliseconds=1),
        last_activity=now,
        expires_at=now + timedelta(days=7, milliseconds=999),
    )

    assert await store.save(record) is True
    loaded = await store.load(record.room_id)

    assert loaded == record
    assert loaded.code.encode() == UNICODE_CODE.encode()
    moments = [loaded.created_at, loaded.last_activity, loaded.expires_at]
    moments += [t for p in loaded.participants for t in (p.joined_at, p.last_seen)]
    assert all(m.utcoffset() == timedelta(0) for m in moments), "datetimes come back in UTC"


async def test_a_sessions_access_rules_round_trip(store: Any) -> None:
    """Who may use a session: owner, visibility, members (user ids with dots and dollars,
    which MongoDB refuses as field names) and used invites, read back exactly."""
    now = utc_now()
    rules = AccessRecord(
        owner="owner-1",
        visibility="private",
        public_role="viewer",
        viewers_chat=False,
        members={"a.b@example.com": "editor", "$weird": "viewer"},
        used_invites={"inv-1": ("a.b@example.com", now + timedelta(days=1))},
    )
    record = session("access-1", 1, now=now).model_copy(update={"access": rules})
    assert await store.save(record)
    loaded = await store.load("access-1")
    assert loaded is not None and loaded.access == rules
    plain = session("access-2", 1, now=now)
    assert await store.save(plain)
    assert (await store.load("access-2")).access is None  # made before access control


async def test_save_refuses_an_older_version(store: Any) -> None:
    now = utc_now()
    assert await store.save(session("guarded", 5, now=now, code="five"))

    assert await store.save(session("guarded", 3, now=now, code="three")) is False

    loaded = await store.load("guarded")
    assert (loaded.version, loaded.code) == (5, "five")


async def test_save_rewrites_the_same_version(store: Any) -> None:
    now = utc_now()
    assert await store.save(session("same", 5, now=now, code="first"))

    assert await store.save(session("same", 5, now=now, code="again", language="python")) is True

    loaded = await store.load("same")
    assert (loaded.version, loaded.code, loaded.language) == (5, "again", "python")


async def test_save_accepts_a_newer_version(store: Any) -> None:
    now = utc_now()
    assert await store.save(session("newer", 5, now=now, code="five"))
    assert await store.save(session("newer", 3, now=now, code="three")) is False

    assert await store.save(session("newer", 6, now=now, code="six")) is True

    loaded = await store.load("newer")
    assert (loaded.version, loaded.code) == (6, "six")


@pytest.mark.parametrize("existing", [False, True], ids=["new-room", "existing-room"])
async def test_two_concurrent_writers_leave_the_higher_version_stored(
    store: Any, existing: bool
) -> None:
    now = utc_now()
    for attempt in range(4):
        for order in [(7, 8), (8, 7)]:
            room_id = f"race-{attempt}-{order[0]}"
            if existing:
                assert await store.save(session(room_id, 1, now=now))

            results = await asyncio.gather(
                *(store.save(session(room_id, v, now=now)) for v in order)
            )

            assert dict(zip(order, results, strict=True))[8] is True, f"v8 refused, order {order}"
            loaded = await store.load(room_id)
            assert (loaded.version, loaded.code) == (8, f"code of {room_id} at v8"), order


async def test_concurrent_writes_to_different_rooms_all_succeed(store: Any) -> None:
    now = utc_now()
    records = [session(f"busy-{i}", 2, now=now) for i in range(6)]
    messages = [chat(r.room_id, 1, now=now, expires_at=r.expires_at) for r in records]

    results = await asyncio.gather(
        *(store.save(r) for r in records), *(store.append_messages([m]) for m in messages)
    )

    assert results[: len(records)] == [True] * len(records)
    for record, message in zip(records, messages, strict=True):
        assert await store.load(record.room_id) == record
        assert await store.list_messages(record.room_id, before=None, limit=10) == [message]


# --- chat ------------------------------------------------------------------------------------


async def test_messages_are_listed_oldest_first_and_limited_to_the_newest(store: Any) -> None:
    now = utc_now()
    _, messages = await saved_room_with_chat(store, "chatty", 10, now)

    assert await store.list_messages("chatty", before=None, limit=100) == messages
    assert versions(await store.list_messages("chatty", before=None, limit=4)) == [7, 8, 9, 10]


async def test_before_pages_further_back(store: Any) -> None:
    now = utc_now()
    await saved_room_with_chat(store, "paged", 10, now)

    page = await store.list_messages("paged", before=7, limit=4)
    assert versions(page) == [3, 4, 5, 6]
    page = await store.list_messages("paged", before=page[0].version, limit=4)
    assert versions(page) == [1, 2]
    assert await store.list_messages("paged", before=1, limit=4) == []


async def test_messages_appended_in_any_order_are_listed_by_version(store: Any) -> None:
    now = utc_now()
    record = session("shuffled", 6, now=now)
    assert await store.save(record)
    messages = [chat("shuffled", v, now=now, expires_at=record.expires_at) for v in range(1, 7)]

    await store.append_messages([messages[4], messages[1], messages[5]])
    await store.append_messages([messages[3], messages[0], messages[2]])

    assert await store.list_messages("shuffled", before=None, limit=10) == messages


async def test_a_message_appended_twice_is_stored_once(store: Any) -> None:
    now = utc_now()
    _, messages = await saved_room_with_chat(store, "dupes", 3, now)
    resent = messages[1].model_copy(update={"id": "other-id", "message": "resent"})

    await store.append_messages([messages[1]])
    await store.append_messages([resent, messages[2]])

    assert await store.list_messages("dupes", before=None, limit=10) == messages


async def test_a_batch_with_duplicates_still_stores_its_new_messages(store: Any) -> None:
    now = utc_now()
    record, messages = await saved_room_with_chat(store, "mixed", 3, now)
    fresh = [chat("mixed", v, now=now, expires_at=record.expires_at) for v in (4, 5)]

    await store.append_messages([messages[0], fresh[0], messages[2], fresh[0], fresh[1]])

    assert await store.list_messages("mixed", before=None, limit=10) == messages + fresh


async def test_messages_of_other_rooms_are_not_mixed_in(store: Any) -> None:
    now = utc_now()
    _, room_a = await saved_room_with_chat(store, "room-a", 4, now)
    _, room_b = await saved_room_with_chat(store, "room-b", 6, now)
    _, prefixed = await saved_room_with_chat(store, "room-a-2", 2, now)

    assert await store.list_messages("room-a", before=None, limit=10) == room_a
    assert await store.list_messages("room-b", before=5, limit=10) == room_b[:4]
    assert await store.list_messages("room-a-2", before=None, limit=10) == prefixed
    assert await store.list_messages("room-c", before=None, limit=10) == []


async def test_load_reports_at_least_the_newest_message_version(store: Any) -> None:
    now = utc_now()
    record = session("behind", 3, now=now, code="saved at v3")
    assert await store.save(record)
    await store.append_messages(
        [chat("behind", v, now=now, expires_at=record.expires_at) for v in (2, 9, 5)]
    )

    loaded = await store.load("behind")

    assert loaded.version == 9
    assert loaded.code == "saved at v3"
    assert await store.save(session("behind", 8, now=now)) is True, "the stored record is v3"


async def test_appending_no_messages_does_nothing(store: Any) -> None:
    now = utc_now()
    _, messages = await saved_room_with_chat(store, "quiet", 2, now)

    await store.append_messages([])

    assert await store.list_messages("quiet", before=None, limit=10) == messages


async def test_saving_a_session_extends_its_messages_expiry(store: Any) -> None:
    now = utc_now()
    record = session("kept", 2, now=now, expires_at=now + timedelta(hours=1))
    assert await store.save(record)
    await store.append_messages(
        [chat("kept", v, now=now, expires_at=record.expires_at) for v in (1, 2)]
    )

    later = record.model_copy(update={"version": 3, "expires_at": now + 7 * DAY})
    assert await store.save(later)

    listed = await store.list_messages("kept", before=None, limit=10)
    assert [m.expires_at for m in listed] == [later.expires_at] * 2


# --- delete and purge ------------------------------------------------------------------------


async def test_delete_removes_the_session_and_its_messages(store: Any) -> None:
    now = utc_now()
    await saved_room_with_chat(store, "doomed", 3, now)
    await saved_room_with_chat(store, "survivor", 2, now)

    assert await store.delete("doomed") is True

    assert await store.load("doomed") is None
    assert await store.list_messages("doomed", before=None, limit=10) == []
    assert (await store.load("survivor")).version == 2
    assert versions(await store.list_messages("survivor", before=None, limit=10)) == [1, 2]


async def test_deleting_a_missing_room_returns_false(store: Any) -> None:
    now = utc_now()
    assert await store.delete("never-existed") is False
    await saved_room_with_chat(store, "once", 1, now)
    assert await store.delete("once") is True

    assert await store.delete("once") is False


async def test_a_deleted_room_can_be_created_again_from_version_zero(store: Any) -> None:
    now = utc_now()
    await saved_room_with_chat(store, "reborn", 5, now)
    assert await store.delete("reborn")

    assert await store.save(session("reborn", 0, now=now, code="fresh")) is True

    loaded = await store.load("reborn")
    assert (loaded.version, loaded.code) == (0, "fresh")


async def test_purge_expired_removes_expired_sessions_and_their_messages(store: Any) -> None:
    # Expiry a minute ahead, purged "two minutes later": a TTL index (MongoDB's monitor, or
    # mongomock and nx-27017 hiding expired documents at once) cannot get there first.
    now = utc_now()
    short, purge_time = now + timedelta(minutes=1), now + timedelta(minutes=2)
    for room_id in ("gone-1", "gone-2", "gone-3"):
        assert await store.save(session(room_id, 2, now=now, expires_at=short))
        await store.append_messages(
            [
                chat(room_id, 1, now=now, expires_at=short),
                chat(room_id, 2, now=now, expires_at=now + DAY),  # outliving its session
            ]
        )
    _, kept = await saved_room_with_chat(store, "kept", 2, now)

    assert await store.purge_expired(purge_time) == 3

    for room_id in ("gone-1", "gone-2", "gone-3"):
        assert await store.load(room_id) is None
        assert await store.list_messages(room_id, before=None, limit=10) == []
    assert (await store.load("kept")).version == 2
    assert await store.list_messages("kept", before=None, limit=10) == kept
    assert await store.purge_expired(purge_time) == 0


async def test_sessions_already_expired_are_gone_after_a_purge(store: Any) -> None:
    now = utc_now()
    past = now - timedelta(seconds=1)
    for room_id in ("old-1", "old-2"):
        assert await store.save(session(room_id, 1, now=now, creator_user_id="al", expires_at=past))
        await store.append_messages([chat(room_id, 1, now=now, expires_at=past)])
    _, kept = await saved_room_with_chat(store, "kept", 1, now)

    # A TTL index may have removed some already; the purge removes the rest.
    assert await store.purge_expired(now) <= 2

    for room_id in ("old-1", "old-2"):
        assert await store.load(room_id) is None
        assert await store.list_messages(room_id, before=None, limit=10) == []
    assert await store.list_for_user("al", now=now, limit=10) == []
    assert await store.list_messages("kept", before=None, limit=10) == kept


async def test_purge_expired_uses_the_given_time(store: Any) -> None:
    now = utc_now()
    assert await store.save(session("hour", now=now, expires_at=now + timedelta(hours=1)))
    assert await store.save(session("week", now=now, expires_at=now + 7 * DAY))

    assert await store.purge_expired(now) == 0
    assert await store.purge_expired(now + timedelta(hours=1)) == 1, "expiring exactly now"

    assert await store.load("hour") is None
    assert await store.load("week") is not None


# --- listing a user's sessions ---------------------------------------------------------------


async def test_list_for_user_returns_the_newest_sessions_the_user_created_or_joined(
    store: Any,
) -> None:
    now = utc_now()
    records = []
    for i in range(12):
        others = [participant(f"other-{j}", f"Other {j}", now) for j in range(i % 3)]
        if i % 2:  # alice created it
            record = session(
                f"mine-{i:02d}",
                now=now,
                creator_name="Alice",
                creator_user_id="alice",
                participants=others,
                last_activity=now - timedelta(minutes=i),
            )
        else:  # alice joined it
            record = session(
                f"joined-{i:02d}",
                now=now,
                creator_name="Bob",
                creator_user_id="bob",
                participants=[*others, participant("alice", "Alice", now)],
                last_activity=now - timedelta(minutes=i),
            )
        records.append(record)
    for record in reversed(records):
        assert await store.save(record)

    listed = await store.list_for_user("alice", now=now, limit=10)

    assert listed == [summary(r) for r in records[:10]]


async def test_list_for_user_leaves_out_expired_sessions(store: Any) -> None:
    now = utc_now()
    live = session("live", now=now, creator_user_id="alice", expires_at=now + timedelta(hours=1))
    for record in [
        live,
        session("expiring-now", now=now, creator_user_id="alice", expires_at=now),
        session(
            "expired",
            now=now,
            creator_user_id="alice",
            expires_at=now - timedelta(hours=1),
            last_activity=now + timedelta(minutes=1),
        ),
    ]:
        assert await store.save(record)

    assert await store.list_for_user("alice", now=now, limit=10) == [summary(live)]


async def test_list_for_user_is_empty_for_a_user_who_neither_created_nor_joined(
    store: Any,
) -> None:
    now = utc_now()
    assert await store.save(
        session(
            "private",
            now=now,
            creator_user_id="alice",
            participants=[participant("bob", "Bob", now), participant(None, "Guest", now)],
        )
    )

    assert await store.list_for_user("carol", now=now, limit=10) == []
    assert await store.list_for_user("", now=now, limit=10) == []


async def test_list_for_user_counts_participants_and_lists_a_session_once(store: Any) -> None:
    now = utc_now()
    record = session(
        "crowded",
        now=now,
        creator_name="Alice",
        creator_user_id="alice",
        participants=[
            participant("alice", "Alice", now),
            participant("bob", "Bob", now),
            participant(None, "Guest", now),
        ],
    )
    assert await store.save(record)

    listed = await store.list_for_user("alice", now=now, limit=10)

    assert listed == [summary(record)]
    assert listed[0].participant_count == 3
    assert await store.list_for_user("bob", now=now, limit=10) == [summary(record)]


async def test_list_for_user_counts_messages_and_gives_the_last_one(store: Any) -> None:
    """The recent-sessions listing shows each session's message count and last message
    (the one of the highest version, whatever order they were appended in)."""
    now = utc_now()
    chatty = session("chatty", now=now, creator_user_id="alice")
    quiet = session("quiet", now=now - timedelta(seconds=1), creator_user_id="alice")
    assert await store.save(chatty) and await store.save(quiet)
    messages = [chat("chatty", v, now=now, expires_at=chatty.expires_at) for v in (3, 1, 2)]
    await store.append_messages(messages)
    await store.append_messages([chat("elsewhere", 9, now=now, expires_at=chatty.expires_at)])

    listed = await store.list_for_user("alice", now=now, limit=10)

    assert [s.room_id for s in listed] == ["chatty", "quiet"]
    assert (listed[0].message_count, listed[1].message_count) == (3, 0)
    last = listed[0].last_message
    newest = messages[0]
    assert last is not None
    assert (last.user_name, last.message, last.timestamp) == (
        newest.user_name, newest.message, newest.timestamp,
    )  # fmt: skip
    assert listed[1].last_message is None


async def test_a_participant_dropped_by_a_later_save_no_longer_lists_the_session(
    store: Any,
) -> None:
    now = utc_now()
    bob = participant("bob", "Bob", now)
    assert await store.save(session("room", 1, now=now, participants=[bob]))
    assert len(await store.list_for_user("bob", now=now, limit=10)) == 1

    carol = participant("carol", "Carol", now)
    assert await store.save(session("room", 2, now=now, participants=[carol]))

    assert await store.list_for_user("bob", now=now, limit=10) == []
    assert len(await store.list_for_user("carol", now=now, limit=10)) == 1


async def test_a_refused_save_does_not_change_who_lists_the_session(store: Any) -> None:
    now = utc_now()
    bob = participant("bob", "Bob", now)
    carol = participant("carol", "Carol", now)
    assert await store.save(session("room", 5, now=now, participants=[bob]))

    assert await store.save(session("room", 4, now=now, participants=[carol])) is False

    assert len(await store.list_for_user("bob", now=now, limit=10)) == 1
    assert await store.list_for_user("carol", now=now, limit=10) == []


# --- health ----------------------------------------------------------------------------------


async def test_ping_succeeds_on_an_open_store(store: Any) -> None:
    await store.ping()
    assert await store.save(session("pinged", now=utc_now()))
    await store.ping()


# --- SQLite only -----------------------------------------------------------------------------


async def test_sqlite_creates_its_file_in_a_data_directory_that_did_not_exist(
    tmp_path: Path,
) -> None:
    path = tmp_path / "not" / "yet" / "there" / "sessions.sqlite3"
    store = SqliteSessionStore(path)
    await store.open()
    try:
        assert await store.save(session("first", now=utc_now()))
    finally:
        await store.close()

    assert path.is_file()
    reopened = SqliteSessionStore(path)
    await reopened.open()
    try:
        assert (await reopened.load("first")).room_id == "first"
    finally:
        await reopened.close()


async def test_sqlite_runs_in_wal_mode(sqlite_store: SqliteSessionStore) -> None:
    with sqlite3.connect(sqlite_store.path) as other:
        (mode,) = other.execute("PRAGMA journal_mode").fetchone()
    assert mode.lower() == "wal"


async def test_sqlite_save_fails_fast_while_another_connection_locks_the_file(
    sqlite_store: SqliteSessionStore,
) -> None:
    now = utc_now()
    assert await sqlite_store.save(session("locked", 1, now=now, code="one"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    locker = sqlite3.connect(sqlite_store.path, isolation_level=None)
    ticker = asyncio.create_task(tick())
    try:
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StoreError):
            await asyncio.wait_for(sqlite_store.save(session("locked", 2, now=now)), timeout=10)
        elapsed = time.monotonic() - started
        assert (await sqlite_store.load("locked")).code == "one", "reads go on meanwhile"
    finally:
        ticker.cancel()
        locker.execute("ROLLBACK")
        locker.close()

    assert elapsed < 5, f"save waited {elapsed:.1f} s for the lock (busy timeout ~1 s)"
    assert ticks >= 5, "the event loop stalled while save waited for the lock"
    assert await sqlite_store.save(session("locked", 2, now=now, code="two")) is True
    assert (await sqlite_store.load("locked")).code == "two"


async def test_sqlite_store_does_not_block_the_event_loop(
    sqlite_store: SqliteSessionStore,
) -> None:
    now = utc_now()
    records = [session(f"busy-{i}", i, now=now, creator_user_id="alice") for i in range(100)]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0)
        ticks = 0
        for record in records:
            assert await sqlite_store.save(record)
        await sqlite_store.list_for_user("alice", now=now, limit=10)
    finally:
        ticker.cancel()

    # Each save waits on SQLite's worker thread at least once; a store running queries on the
    # loop itself would not let the ticker run at all during the batch.
    assert ticks >= len(records)


# --- MongoDB only ----------------------------------------------------------------------------


def index_with_key(info: dict[str, Any], key: list[tuple[str, int]]) -> dict[str, Any]:
    for index in info.values():
        if [(field, int(direction)) for field, direction in index["key"]] == key:
            return dict(index)
    raise AssertionError(f"no index on {key}; indexes: {info}")


async def test_sessions_have_a_unique_room_id_index(mongo_store: MongoSessionStore) -> None:
    info = await mongo_store.sessions.index_information()
    assert index_with_key(info, [("roomId", 1)]).get("unique") is True


async def test_sessions_expire_through_a_ttl_index(mongo_store: MongoSessionStore) -> None:
    info = await mongo_store.sessions.index_information()
    assert index_with_key(info, [("expiresAt", 1)]).get("expireAfterSeconds") == 0


async def test_sessions_have_the_per_user_listing_index(
    mongo_store: MongoSessionStore, xfail_on_nx_27017: Callable[[str], None]
) -> None:
    xfail_on_nx_27017("listIndexes reports every key direction as 1 (lastActivity's -1 is lost)")
    info = await mongo_store.sessions.index_information()
    index_with_key(info, [("userIds", 1), ("lastActivity", -1)])


async def test_messages_have_a_unique_room_and_version_index(
    mongo_store: MongoSessionStore,
) -> None:
    info = await mongo_store.messages.index_information()
    assert index_with_key(info, [("roomId", 1), ("version", 1)]).get("unique") is True


async def test_messages_expire_through_a_ttl_index(mongo_store: MongoSessionStore) -> None:
    info = await mongo_store.messages.index_information()
    assert index_with_key(info, [("expiresAt", 1)]).get("expireAfterSeconds") == 0


async def test_mongo_ping_raises_store_error_when_the_server_does_not_answer() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = MongoSessionStore.from_uri(f"mongodb://127.0.0.1:{port}/", "unreachable", timeout=0.3)
    try:
        with pytest.raises(StoreError):
            await asyncio.wait_for(store.ping(), timeout=10)
    finally:
        await store.close()


async def test_opening_again_keeps_the_data_and_the_version_guard(
    mongo_store: MongoSessionStore,
) -> None:
    now = utc_now()
    assert await mongo_store.save(session("kept", 3, now=now))

    await mongo_store.open()

    assert (await mongo_store.load("kept")).version == 3
    assert await mongo_store.save(session("kept", 2, now=now)) is False


# --- user contexts ---------------------------------------------------------------------------


async def test_a_user_context_is_written_only_over_the_revision_it_was_read_at(
    store: Any,
) -> None:
    """Compare-and-set: two writers that read the same revision cannot both write."""
    now = utc_now()
    assert await store.load_context("ann") is None
    first = UserContext(
        user_id="ann", context={"a.b": {"$x": [1, "ü"]}}, revision=1, updated_at=now
    )
    assert await store.save_context(first, expected=0) is True
    assert await store.save_context(first, expected=0) is False  # someone wrote first
    assert await store.load_context("ann") == first
    second = first.model_copy(update={"context": {"theme": "dark"}, "revision": 2})
    stale = first.model_copy(update={"context": {"theme": "light"}, "revision": 2})
    assert await store.save_context(second, expected=1) is True
    assert await store.save_context(stale, expected=1) is False
    assert await store.load_context("ann") == second
    assert await store.load_context("bob") is None


# --- history ---------------------------------------------------------------------------------


def entry(version: int, kind: str, **fields: Any) -> HistoryEntry:
    values: dict[str, Any] = {
        "room_id": "hist", "version": version, "doc_id": "main.js", "kind": kind,
        "at": utc_now(), **fields,
    }  # fmt: skip
    return HistoryEntry(**values)


async def test_history_rebuilds_from_the_newest_snapshot_and_lists_changes(store: Any) -> None:
    """A text at any version: the newest snapshot at or before it and the ops after; the
    change list leaves snapshots out; entries stored twice are kept once."""
    await store.save(session("hist", 1, now=utc_now()))
    entries = [
        entry(0, "snapshot", text="ab"),
        entry(1, "op", op=[2, "c"], author_id="u1", author_name="Ann", inserted=1),
        entry(2, "op", op=[{"d": "a"}], deleted=1),
        entry(2, "snapshot", text="bc"),
        entry(3, "op", op=[2, "!"], inserted=1),
        entry(4, "language", doc_id="", op="python"),
        entry(1, "op", op=[1, "x"], doc_id="other.py"),
    ]
    await store.append_history(entries)
    await store.append_history(entries[:2])  # again: nothing doubles

    snapshot, ops = await store.text_history("hist", "main.js", 1)
    assert (snapshot.version, [o.version for o in ops]) == (0, [1])
    assert ops[0] == entries[1]
    snapshot, ops = await store.text_history("hist", "main.js", 3)
    assert (snapshot.text, [o.op for o in ops]) == ("bc", [[2, "!"]])
    assert await store.text_history("nohist", "main.js", 3) == (None, [])
    assert await store.language_at("hist", 3) is None
    assert await store.language_at("hist", 9) == "python"

    listed = await store.list_history("hist", before=None, limit=10)
    assert [(e.version, e.kind) for e in listed][:2] == [(4, "language"), (3, "op")]
    assert all(e.kind != "snapshot" for e in listed) and len(listed) == 5
    assert [e.version for e in await store.list_history("hist", before=3, limit=2)] == [2, 1]


async def test_checkpoints_are_listed_newest_first_and_go_with_their_session(store: Any) -> None:
    now = utc_now()
    await store.save(session("hist", 1, now=now))
    older = Checkpoint(room_id="hist", id="a", name="first", version=1, at=now, auto=True)
    newer = Checkpoint(room_id="hist", id="b", name="second", version=5, at=now,
                       author_id="u1", author_name="Ann")  # fmt: skip
    await store.save_checkpoint(older)
    await store.save_checkpoint(newer)
    await store.save_checkpoint(newer)
    assert await store.list_checkpoints("hist") == [newer, older]
    await store.append_history([entry(0, "snapshot", text="x")])
    assert await store.delete("hist")
    assert await store.list_checkpoints("hist") == []
    assert await store.text_history("hist", "main.js", 9) == (None, [])


async def test_old_history_is_found_by_time_and_dropped_but_for_checkpoints(store: Any) -> None:
    now = utc_now()
    old = now - timedelta(days=40)
    await store.save(session("hist", 1, now=now))
    await store.append_history([
        entry(0, "snapshot", text="", at=old),
        entry(1, "op", op=["a"], at=old),
        entry(1, "snapshot", text="a", pinned=True, at=old),
        entry(2, "op", op=[1, "b"], at=old),
        entry(3, "op", op=[2, "c"], at=now),
    ])  # fmt: skip
    assert await store.old_history(now - timedelta(days=30), 10) == [("hist", "main.js", 2)]
    await store.append_history([entry(2, "snapshot", text="ab", op="folded", at=now)])
    await store.drop_history("hist", "main.js", 2)
    assert [e.version for e in await store.list_history("hist", before=None, limit=10)] == [3]
    assert await store.old_history(now - timedelta(days=30), 10) == []
    snapshot, ops = await store.text_history("hist", "main.js", 3)
    assert (snapshot.text, [o.version for o in ops]) == ("ab", [3])
    assert (await store.text_history("hist", "main.js", 1))[0].text == "a"  # a checkpoint's
    assert await store.text_history("hist", "main.js", 0) == (None, [])  # folded away


async def test_history_and_checkpoints_go_when_their_session_expires(store: Any) -> None:
    # As above: expiry a minute ahead, purged two minutes later (no TTL index first).
    now = utc_now()
    short, purge_time = now + timedelta(minutes=1), now + timedelta(minutes=2)
    assert await store.save(session("gone", 1, now=now, expires_at=short))
    snapshot = entry(0, "snapshot", text="x").model_copy(update={"room_id": "gone"})
    await store.append_history([snapshot])
    await store.save_checkpoint(Checkpoint(room_id="gone", id="c", name="n", version=0, at=now))
    assert await store.purge_expired(purge_time) == 1
    assert await store.list_checkpoints("gone") == []
    assert await store.text_history("gone", "main.js", 9) == (None, [])
