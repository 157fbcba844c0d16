"""Time formats at the edges: the core keeps UTC integer nanoseconds, people read RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime

NS_PER_SECOND = 1_000_000_000


def rfc3339(time_ns: int) -> str:
    """UTC time with microseconds, e.g. 2026-11-22T03:04:05.123456Z."""
    seconds, nanos = divmod(time_ns, NS_PER_SECOND)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=nanos // 1_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
