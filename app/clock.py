"""Time as the server keeps and shows it: UTC, milliseconds, ISO-8601 with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now in UTC, truncated to milliseconds (what MongoDB and the wire keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    """ISO-8601 with milliseconds and `Z`, as the original server answered."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
