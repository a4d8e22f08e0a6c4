"""Time as the server keeps and shows it: UTC, milliseconds, ISO-8601 with `Z`."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now in UTC, truncated to milliseconds (what MongoDB and the wire keep)."""
    # From whole milliseconds: a third of the cost of now() and replace(), several times
    # per change (a float of milliseconds / 1000 rounds back to the exact millisecond).
    return datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 with milliseconds and `Z`, as the original server answered."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
