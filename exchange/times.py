"""Time formats at the edges: the core keeps UTC integer nanoseconds, people read RFC 3339."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

NS_PER_SECOND = 1_000_000_000


def rfc3339(time_ns: int) -> str:
    """UTC time with microseconds, e.g. 2026-11-22T03:04:05.123456Z."""
    seconds, nanos = divmod(time_ns, NS_PER_SECOND)
    return f"{_second(seconds)}.{nanos // 1_000:06d}Z"


@functools.lru_cache(maxsize=4_096)
def _second(seconds: int) -> str:
    """The date and time to the second: formatted once for the many events of one second."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
