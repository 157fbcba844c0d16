"""Daily chain heads: the journal's hash at the end of each trading day, published.

A hash chain proves the journal consistent with itself; it cannot, alone, prove that nobody
rewrote the whole chain. A head hash that a regulator copied out of the exchange earlier can:
`GET /v1/audit/verify?anchor_sequence=&anchor_hash=` checks the journal against it. So once a
day in Vietnam (UTC+7) is over, the exchange publishes that day's head: the sequence and hash of
the last record stamped that day. It is appended to `heads.jsonl` in the data directory (one
JSON object a line, fsynced), printed on stderr, and served at `GET /v1/audit/heads`.

A day is over when the clock has passed its midnight: record times never go backwards (the
sequencer stamps `max(clock, last time)`), so no later record can belong to it. Days without
any record publish nothing. Publishing reads only the durable journal after the last published
head, so it is idempotent: after a crash or a night with the server down, the next run
publishes whatever days closed meanwhile, each exactly once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec

from exchange.journal import read_committed
from exchange.times import NS_PER_SECOND

HEADS_FILE = "heads.jsonl"
VIETNAM_UTC_OFFSET_NS = 7 * 3600 * NS_PER_SECOND
NS_PER_DAY = 86_400 * NS_PER_SECOND


class DayHead(msgspec.Struct, frozen=True):
    """The journal as it stood at the end of one Vietnam trading day."""

    date: str  # YYYY-MM-DD, Vietnam time
    first_sequence: int
    last_sequence: int
    records: int
    head_hash: str  # hex SHA-256 chain hash of record `last_sequence`
    time_ns: int  # the last record's time stamp


def vietnam_date(time_ns: int) -> date:
    days = (time_ns + VIETNAM_UTC_OFFSET_NS) // NS_PER_DAY
    return datetime.fromtimestamp(days * 86_400, tz=UTC).date()


class DailyHeads:
    """The published heads of one data directory, oldest first."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / HEADS_FILE
        self._heads: list[DayHead] = self._load()

    def _load(self) -> list[DayHead]:
        if not self.path.exists():
            return []
        heads = []
        decoder = msgspec.json.Decoder(DayHead)
        for line in self.path.read_bytes().splitlines():
            try:
                heads.append(decoder.decode(line))
            except msgspec.DecodeError:
                break  # a line torn by a crash mid-append: that day is published again
        return heads

    @property
    def heads(self) -> list[DayHead]:
        return list(self._heads)

    @property
    def last_published_sequence(self) -> int:
        return self._heads[-1].last_sequence if self._heads else 0

    def publish_closed_days(
        self, journal_dir: Path, durable_through: int, now_ns: int
    ) -> list[DayHead]:
        """Publish every day that is over (before `now_ns`'s day) and not yet published."""
        start = self.last_published_sequence + 1
        if durable_through < start:
            return []
        today = vietnam_date(now_ns)
        closed: list[DayHead] = []
        day: date | None = None
        first = count = last = last_time = 0
        last_hash = b""
        for record in read_committed(journal_dir, start, durable_through):
            record_day = vietnam_date(record.time_ns)
            if record_day >= today:
                break  # this day and whatever follows is still open
            if record_day != day:
                if day is not None:
                    closed.append(DayHead(str(day), first, last, count, last_hash.hex(), last_time))
                day, first, count = record_day, record.sequence, 0
            count += 1
            last, last_time, last_hash = record.sequence, record.time_ns, record.hash
        if day is not None:
            closed.append(DayHead(str(day), first, last, count, last_hash.hex(), last_time))
        if closed:
            self._append(closed)
        return closed

    def _append(self, closed: list[DayHead]) -> None:
        # Rewrite a torn last line away first, so the file stays one object per line.
        lines = b"".join(msgspec.json.encode(head) + b"\n" for head in [*self._heads, *closed])
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with temporary.open("wb") as file:
            file.write(lines)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        self._heads.extend(closed)
        for head in closed:
            print(
                f"hogx: day {head.date} closed at sequence {head.last_sequence}: "
                f"head hash {head.head_hash}",
                file=sys.stderr,
            )


def seconds_to_next_vietnam_midnight(now_ns: int) -> float:
    local = now_ns + VIETNAM_UTC_OFFSET_NS
    return (NS_PER_DAY - local % NS_PER_DAY) / NS_PER_SECOND


async def publish_forever(
    heads: DailyHeads,
    journal_dir: Path,
    durable_through: Callable[[], int],
    clock: Callable[[], int] = time.time_ns,
) -> None:
    """Publish closed days now (catching up on any the server slept through), then again just
    after every Vietnam midnight. A failure is reported and retried at the next midnight: the
    market does not stop because a head could not be written."""
    while True:
        try:
            await asyncio.to_thread(
                heads.publish_closed_days, journal_dir, durable_through(), clock()
            )
        except Exception as error:  # e.g. a damaged journal: verify names it; trading goes on
            print(f"hogx: could not publish the day's head hash: {error!r}", file=sys.stderr)
        await asyncio.sleep(seconds_to_next_vietnam_midnight(clock()) + 1)
