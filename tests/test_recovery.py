"""Recovery's rulebook: the journal rebuilds the exact state, whatever way we come back.

Replaying from scratch, from any snapshot, after a restart, with the CLI, after a SIGKILL in
the middle of trading (or of a background snapshot): every path gives the same state digest,
and nothing the exchange acknowledged is ever lost or changed. Damaged snapshots are skipped;
a torn journal tail is cut; damage in the middle of the journal stops start-up, naming the
sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest

from benchmarks.workload import MarketWorkload
from exchange import cli
from exchange.commands import decode_command, encode_command
from exchange.core import ExchangeCore
from exchange.journal import Journal, JournalCorruptError, record_hash, verify
from exchange.marketdata import MarketData
from exchange.sequencer import Exchange, RecoveryReport
from exchange.snapshots import (
    Recovered,
    build_snapshot,
    journal_dir,
    read_snapshot,
    snapshot_dir,
    snapshots_newest_first,
)

REPO = Path(__file__).resolve().parents[1]
CRASH_CHILD = Path(__file__).with_name("crash_child.py")
# The start of this UTC day: the workload's OCOP certificate is dated from today, so on a clock
# far from today its listing is refused and the sessions would trade two instruments, not three.
T0_NS = (time.time_ns() // 86_400_000_000_000) * 86_400_000_000_000
NEVER = 10**12  # a snapshot_every that never comes due

# ------------------------------------------------------------------------------------------------
# Helpers: sessions, replays, restarts.


def steady_clock() -> Callable[[], int]:
    """A clock for reproducible sessions: one microsecond per reading."""
    return itertools.count(T0_NS, 1_000).__next__


async def trade(exchange: Exchange, workload: MarketWorkload, count: int, chunk: int = 32) -> None:
    """Submit `count` workload commands, `chunk` at a time concurrently so real batches form."""
    while count > 0:
        commands = [workload.next_command() for _ in range(min(chunk, count))]
        results = await asyncio.gather(*(exchange.submit(command) for command in commands))
        for result in results:
            workload.observe(result.events)
        count -= len(commands)


async def set_up(exchange: Exchange, workload: MarketWorkload) -> None:
    for command in workload.setup():
        workload.observe((await exchange.submit(command)).events)


def market_data_hash(market_data: MarketData) -> str:
    """The market-data projection (tickers, candles, trades) is rebuilt by replay too."""
    return hashlib.sha256(msgspec.msgpack.encode(market_data.state())).hexdigest()


class Session(NamedTuple):
    data_dir: Path
    digest: str
    market_data: str
    last_sequence: int


def small_session(data_dir: Path, seed: int, orders: int, *, snapshot: bool = True) -> Session:
    """A quick seeded session (no fsync, no background snapshots), stopped cleanly."""

    async def run() -> Session:
        exchange = Exchange(data_dir, fsync=False, snapshot_every=NEVER, clock=steady_clock())
        await exchange.start()
        workload = MarketWorkload(seed)
        await set_up(exchange, workload)
        await trade(exchange, workload, orders)
        session = Session(
            data_dir,
            exchange.core.digest(),
            market_data_hash(exchange.market_data),
            exchange.core.last_sequence,
        )
        await exchange.stop(snapshot=snapshot)
        return session

    return asyncio.run(run())


def replay_from_scratch(data_dir: Path) -> Recovered:
    """Fresh state fed every journal record: the reference every other path must match."""
    recovered = Recovered()
    with Journal.open(journal_dir(data_dir), fsync=False) as journal:
        recovered.catch_up(journal.read(1))
    return recovered


def replay_from_snapshot(data_dir: Path, snapshot: Path) -> Recovered:
    info, body = read_snapshot(snapshot)
    recovered = Recovered((info, body))
    with Journal.open(journal_dir(data_dir), fsync=False) as journal:
        recovered.catch_up(journal.read(info.sequence))
    return recovered


class Restarted(NamedTuple):
    report: RecoveryReport
    digest: str
    market_data: str
    last_sequence: int


def restart(data_dir: Path, *, snapshot_on_stop: bool = False) -> Restarted:
    """Start an `Exchange` on `data_dir`, check its invariants, note its state and stop it."""

    async def run() -> Restarted:
        exchange = Exchange(data_dir, fsync=False, snapshot_every=NEVER)
        try:
            report = await exchange.start()
            exchange.core.check_invariants()
            return Restarted(
                report,
                exchange.core.digest(),
                market_data_hash(exchange.market_data),
                exchange.core.last_sequence,
            )
        finally:
            await exchange.stop(snapshot=snapshot_on_stop)

    return asyncio.run(run())


def copy_of(session: Session | DeterminismSession, tmp_path: Path) -> Path:
    """Tests that damage or extend a session's files work on their own copy."""
    data_dir = tmp_path / "data"
    shutil.copytree(session.data_dir, data_dir)
    return data_dir


def only_segment(data_dir: Path) -> Path:
    segments = sorted(journal_dir(data_dir).glob("journal-*.seg"))
    assert len(segments) == 1, segments
    return segments[0]


def record_offset(segment: Path, sequence: int) -> int:
    """Offset of the record with `sequence` in a journal's first segment, by its length fields."""
    data = segment.read_bytes()
    offset = 0
    for _ in range(sequence - 1):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 8 + length
    return offset


def flip_byte(path: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------
# 1. Determinism: every way back gives the digest the live exchange had.

SESSION_ORDERS = 20_000
SESSION_SNAPSHOT_EVERY = 5_000


class DeterminismSession(NamedTuple):
    data_dir: Path
    digest: str
    market_data: str
    last_sequence: int
    snapshots: list[Path]  # written in the background, newest first


async def wait_for_snapshot(data_dir: Path, at_least: int, timeout_s: float = 30.0) -> int:
    """Wait for the background writer to put a snapshot at `at_least` or later on disk."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        newest = snapshots_newest_first(data_dir)
        if newest and read_snapshot(newest[0])[0].sequence >= at_least:
            return read_snapshot(newest[0])[0].sequence
        await asyncio.sleep(0.02)
    pytest.fail(f"no background snapshot at or after sequence {at_least} within {timeout_s} s")


async def paced_session(data_dir: Path) -> DeterminismSession:
    """20,000 mixed orders; each time a background snapshot comes due, let it finish."""
    exchange = Exchange(
        data_dir, fsync=False, snapshot_every=SESSION_SNAPSHOT_EVERY, clock=steady_clock()
    )
    await exchange.start()
    try:
        workload = MarketWorkload(seed=2026)
        await set_up(exchange, workload)
        next_due, placed = SESSION_SNAPSHOT_EVERY, 0
        while placed < SESSION_ORDERS:
            chunk = min(500, SESSION_ORDERS - placed)
            await trade(exchange, workload, chunk)
            placed += chunk
            if exchange.core.last_sequence >= next_due:
                next_due = await wait_for_snapshot(data_dir, next_due) + SESSION_SNAPSHOT_EVERY
        exchange.core.check_invariants()
        digest, last_sequence = exchange.core.digest(), exchange.core.last_sequence
        market_data = market_data_hash(exchange.market_data)
    finally:
        await exchange.stop(snapshot=False)  # keep only the background writer's snapshots
    snapshots = snapshots_newest_first(data_dir)
    return DeterminismSession(data_dir, digest, market_data, last_sequence, snapshots)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> DeterminismSession:
    return asyncio.run(paced_session(tmp_path_factory.mktemp("determinism")))


@pytest.mark.timeout(120)
def test_a_long_session_writes_several_snapshots_in_the_background(
    session: DeterminismSession,
) -> None:
    assert session.last_sequence >= SESSION_ORDERS
    sequences = [read_snapshot(path)[0].sequence for path in session.snapshots]
    assert len(sequences) >= 3, sequences
    assert all(0 < sequence < session.last_sequence for sequence in sequences), sequences


@pytest.mark.timeout(60)
def test_replaying_the_journal_from_scratch_gives_the_same_digest(
    session: DeterminismSession,
) -> None:
    replayed = replay_from_scratch(session.data_dir)
    assert replayed.core.last_sequence == session.last_sequence
    assert replayed.core.digest() == session.digest
    assert market_data_hash(replayed.market_data) == session.market_data
    replayed.core.check_invariants()


@pytest.mark.timeout(60)
def test_every_snapshot_holds_exactly_the_state_at_its_sequence(
    session: DeterminismSession,
) -> None:
    wanted = {read_snapshot(path)[0].sequence: path for path in session.snapshots}
    replayed = Recovered()
    with Journal.open(journal_dir(session.data_dir), fsync=False) as journal:
        for record in journal.read(1):
            replayed.catch_up(iter([record]))
            if record.sequence in wanted:
                snapshot = Recovered(read_snapshot(wanted.pop(record.sequence)))
                assert snapshot.core.digest() == replayed.core.digest(), record.sequence
                assert market_data_hash(snapshot.market_data) == market_data_hash(
                    replayed.market_data
                ), record.sequence
    assert not wanted


@pytest.mark.timeout(60)
def test_starting_from_any_snapshot_and_replaying_the_rest_gives_the_same_digest(
    session: DeterminismSession,
) -> None:
    for snapshot in session.snapshots:
        replayed = replay_from_snapshot(session.data_dir, snapshot)
        assert replayed.core.last_sequence == session.last_sequence, snapshot.name
        assert replayed.core.digest() == session.digest, snapshot.name
        assert market_data_hash(replayed.market_data) == session.market_data, snapshot.name
        replayed.core.check_invariants()


@pytest.mark.timeout(60)
def test_stopping_and_restarting_the_exchange_gives_the_same_digest(
    session: DeterminismSession, tmp_path: Path
) -> None:
    data_dir = copy_of(session, tmp_path)
    newest = read_snapshot(session.snapshots[0])[0].sequence

    first = restart(data_dir, snapshot_on_stop=True)
    assert first.report.snapshot_sequence == newest
    assert first.report.replayed == session.last_sequence - newest
    assert (first.digest, first.last_sequence) == (session.digest, session.last_sequence)
    assert first.market_data == session.market_data

    second = restart(data_dir)  # now from the snapshot written at shutdown
    assert second.report.snapshot_sequence == session.last_sequence
    assert second.report.replayed == 0
    assert (second.digest, second.market_data) == (session.digest, session.market_data)


def hogx_program() -> list[str]:
    """The installed `hogx` entry point, or its module."""
    entry = Path(sys.executable).with_name("hogx")
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "exchange.cli"]


def hogx(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `hogx` in a child process."""
    return subprocess.run(
        [*hogx_program(), *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("options", [[], ["--from-snapshot"]], ids=["scratch", "from-snapshot"])
def test_the_replay_command_prints_the_same_digest(
    session: DeterminismSession, options: list[str]
) -> None:
    done = hogx("replay", "--data-dir", str(session.data_dir), *options)
    assert done.returncode == 0, done.stderr
    assert f"state digest: {session.digest}" in done.stdout.splitlines(), done.stdout
    assert f"last sequence: {session.last_sequence:,}" in done.stdout.splitlines()
    if options:
        assert "snapshot: sequence" in done.stdout


@pytest.mark.timeout(120)
def test_the_replay_command_stops_quietly_when_its_reader_goes_away(
    session: DeterminismSession,
) -> None:
    """`hogx replay | head -1`: the reader closes the pipe before the digest is printed; hogx
    exits with 1 and no traceback, as a Unix tool does."""
    child = subprocess.Popen(
        [*hogx_program(), "replay", "--data-dir", str(session.data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    child.stdout.close()  # gone before anything is printed
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 1 and b"Traceback" not in stderr, stderr


# ------------------------------------------------------------------------------------------------
# 2. Crashes: SIGKILL at a random moment loses nothing that was acknowledged.

CRASH_SNAPSHOT_EVERY = 400  # so a background snapshot is nearly always being written
CRASH_TASKS = 8
CRASH_CHILD_SECONDS = 60  # the child stops by itself after this, whatever happens here
CRASH_WAIT_S = 45.0
ORDERS_AFTER_RESTART = 64


class Acks:
    """Reads the child's acknowledgement lines on a thread, so the child never blocks on us."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[dict[str, Any]] = []
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        try:
            for raw in stream:
                if raw.endswith(b"\n"):  # a line cut by the kill was never fully printed
                    self.lines.append(json.loads(raw))
        finally:
            self.finished.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def by_sequence(self) -> dict[int, dict[str, Any]]:
        found = {line["s"]: line for line in self.lines}
        assert len(found) == len(self.lines), "a sequence was acknowledged twice"
        return found


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.append(int(entry))
    return members


def snapshot_writers(child: subprocess.Popen[bytes]) -> list[int]:
    """The background snapshot processes the child started (its own group, minus itself)."""
    return [pid for pid in process_group(child.pid) if pid != child.pid]


def kill_group(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and everything it started (its snapshot writer): a power cut."""
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)


def reap_killed(child: subprocess.Popen[bytes], acks: Acks, stderr: Path) -> None:
    """SIGKILL the child's group if it still runs, collect its last acks, see it is gone."""
    kill_group(child)
    child.wait(timeout=30)
    acks.join(timeout_s=30)
    assert child.stdout is not None
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL, stderr.read_text()[-3000:]
    wait_for_group_to_die(child)


def wait_for_group_to_die(child: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """A killed snapshot writer (not our child, so not ours to reap) takes a moment to exit."""
    deadline = time.monotonic() + timeout_s
    while process_group(child.pid):
        assert time.monotonic() < deadline, "a snapshot writer outlived the crash"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        time.sleep(0.01)


def wait_until(condition: Callable[[], bool], what: str, acks: Acks, stderr: Path) -> None:
    deadline = time.monotonic() + CRASH_WAIT_S
    while not condition():
        if acks.finished.is_set():
            pytest.fail(f"the child ended before {what}:\n{stderr.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def temporary_snapshots(data_dir: Path) -> list[Path]:
    return list(snapshot_dir(data_dir).glob(".snapshot-*.tmp"))


def plant_half_written_snapshot(data_dir: Path) -> None:
    """What a snapshot writer killed mid-write leaves: half a temporary file."""
    newest = snapshots_newest_first(data_dir)
    body = newest[0].read_bytes() if newest else b"HOGXSNAP" + bytes(500)
    sequence = read_snapshot(newest[0])[0].sequence + 1 if newest else 1
    temporary = snapshot_dir(data_dir) / f".snapshot-{sequence:020d}.snap.999999.tmp"
    temporary.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_bytes(body[: len(body) // 2])


def crash(data_dir: Path, seed: int, mode: str, tmp_path: Path) -> dict[int, dict[str, Any]]:
    """Run the child, SIGKILL it as `mode` says; return what it acknowledged, by sequence.

    Every mode first waits for a seeded random number of acknowledgements (200-3,000), then:
    `anywhere` kills at once; `during_snapshot` once a snapshot is on disk and a background
    writer is running; `mid_snapshot_write` once the writer's temporary file exists (it is
    being written); `snapshot_writer_killed` kills only the writer, lets trading go on, then
    kills the exchange and leaves a half-written temporary snapshot behind.
    """
    kill_after = random.Random(seed).randint(200, 3000)
    stderr = tmp_path / "child-stderr.txt"
    with stderr.open("wb") as stderr_file:
        child = subprocess.Popen(
            [sys.executable, str(CRASH_CHILD), str(data_dir), str(seed),
             str(CRASH_SNAPSHOT_EVERY), str(CRASH_TASKS), str(CRASH_CHILD_SECONDS)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=stderr_file, start_new_session=True,
        )  # fmt: skip
        acks = Acks(child.stdout)
        try:
            wait_until(lambda: len(acks.lines) >= kill_after, f"{kill_after} acks", acks, stderr)
            if mode == "during_snapshot":
                wait_until(
                    lambda: bool(snapshots_newest_first(data_dir) and snapshot_writers(child)),
                    "a snapshot on disk and the next one being written",
                    acks,
                    stderr,
                )
            elif mode == "mid_snapshot_write":
                wait_until(
                    lambda: bool(temporary_snapshots(data_dir)),
                    "a snapshot being written",
                    acks,
                    stderr,
                )
            elif mode == "snapshot_writer_killed":
                wait_until(lambda: bool(snapshot_writers(child)), "a snapshot writer", acks, stderr)
                for pid in snapshot_writers(child):
                    os.kill(pid, signal.SIGKILL)
                resumed_at = len(acks.lines) + 300  # the exchange must trade on without it
                wait_until(lambda: len(acks.lines) >= resumed_at, "trading on", acks, stderr)
            kill_group(child)
        finally:
            reap_killed(child, acks, stderr)
    if mode == "snapshot_writer_killed":
        plant_half_written_snapshot(data_dir)
    return acks.by_sequence()


Fingerprint = tuple[str, str]  # core digest, market-data hash


def fingerprint(core: ExchangeCore, market_data: MarketData) -> Fingerprint:
    return core.digest(), market_data_hash(market_data)


async def recover_and_trade_on(
    data_dir: Path, seed: int
) -> tuple[RecoveryReport, Fingerprint, Fingerprint]:
    """Restart after the crash; new orders must continue the sequence with no gap."""
    exchange = Exchange(data_dir, fsync=True, snapshot_every=NEVER)
    try:
        report = await exchange.start()
        exchange.core.check_invariants()
        recovered = fingerprint(exchange.core, exchange.market_data)
        workload = MarketWorkload(seed + 1_000)
        commands = [workload.next_command() for _ in range(ORDERS_AFTER_RESTART)]
        results = await asyncio.gather(*(exchange.submit(command) for command in commands))
        first = report.last_sequence + 1
        assert [r.sequence for r in results] == list(range(first, first + len(commands)))
        assert [r.command for r in results] == commands
        exchange.core.check_invariants()
        after = fingerprint(exchange.core, exchange.market_data)
    finally:
        await exchange.stop()
    return report, recovered, after


def replay_checking_acks(
    data_dir: Path, acks: dict[int, dict[str, Any]], fingerprint_at: int
) -> tuple[Fingerprint, ExchangeCore, MarketData]:
    """Replay from scratch; every acknowledged command must be there with the same events."""
    core, market_data = ExchangeCore(), MarketData()
    at: Fingerprint = ("", "")
    seen = 0
    with Journal.open(journal_dir(data_dir), fsync=False) as journal:
        for record in journal.read(1):
            events = core.apply(decode_command(record.payload), record.sequence, record.time_ns)
            market_data.observe(record.sequence, record.time_ns, events)
            ack = acks.get(record.sequence)
            if ack is not None:
                seen += 1
                assert ack["c"] == hashlib.sha256(record.payload).hexdigest(), record.sequence
                assert ack["t"] == record.time_ns, record.sequence
                events_hash = hashlib.sha256(msgspec.msgpack.encode(events)).hexdigest()
                assert ack["e"] == events_hash, record.sequence
            if record.sequence == fingerprint_at:
                at = fingerprint(core, market_data)
    assert seen == len(acks), "an acknowledged command is missing from the journal"
    return at, core, market_data


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("seed", "mode"),
    [
        (1, "anywhere"),
        (2, "anywhere"),
        (3, "during_snapshot"),
        (4, "mid_snapshot_write"),
        (5, "mid_snapshot_write"),
        (6, "snapshot_writer_killed"),
    ],
)
def test_a_crash_at_any_moment_loses_no_acknowledged_command(
    tmp_path: Path, seed: int, mode: str
) -> None:
    data_dir = tmp_path / "data"
    acks = crash(data_dir, seed, mode, tmp_path)
    assert len(acks) >= 200

    report, recovered, after = asyncio.run(recover_and_trade_on(data_dir, seed))
    assert max(acks) <= report.last_sequence, "acknowledged commands vanished"
    if mode == "during_snapshot":
        assert report.snapshot_sequence > 0, "recovery ignored the snapshots on disk"

    clean, core, market_data = replay_checking_acks(data_dir, acks, report.last_sequence)
    assert clean == recovered
    assert core.last_sequence == report.last_sequence + ORDERS_AFTER_RESTART
    assert fingerprint(core, market_data) == after
    core.check_invariants()
    again = restart(data_dir)  # what was traded after the restart is durable too
    assert (again.digest, again.market_data) == after


# ------------------------------------------------------------------------------------------------
# 3. A damaged snapshot is skipped: an older one, or the whole journal, is used instead.


@pytest.fixture(scope="module")
def snapshotted(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """A session with snapshots at 1,000, 2,000 and the last sequence."""
    session = small_session(tmp_path_factory.mktemp("snapshots"), seed=33, orders=3_000,
                            snapshot=False)  # fmt: skip
    for up_to in (1_000, 2_000, session.last_sequence):
        build_snapshot(session.data_dir, up_to)
    return session


def truncate_to(size: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: size(len(data))])

    return damage


def flip_at(offset: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        flip_byte(path, offset(path.stat().st_size))

    return damage


SNAPSHOT_DAMAGE = {
    "empty": truncate_to(lambda n: 0),
    "cut_inside_the_header": truncate_to(lambda n: 40),
    "cut_in_half": truncate_to(lambda n: n // 2),
    "last_byte_missing": truncate_to(lambda n: n - 1),
    "bad_magic": flip_at(lambda n: 0),
    "bad_version": flip_at(lambda n: 8),
    "bad_sequence_in_header": flip_at(lambda n: 12),
    "bad_checksum": flip_at(lambda n: 60),
    "flipped_body_byte": flip_at(lambda n: n // 2),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", SNAPSHOT_DAMAGE.keys())
def test_a_damaged_newest_snapshot_is_skipped_for_an_older_one(
    snapshotted: Session, tmp_path: Path, damage: str
) -> None:
    data_dir = copy_of(snapshotted, tmp_path)
    SNAPSHOT_DAMAGE[damage](snapshots_newest_first(data_dir)[0])
    recovered = restart(data_dir)
    assert recovered.report.snapshot_sequence == 2_000
    assert recovered.report.replayed == snapshotted.last_sequence - 2_000
    assert (recovered.digest, recovered.market_data) == (
        snapshotted.digest,
        snapshotted.market_data,
    )


@pytest.mark.timeout(60)
def test_a_snapshot_whose_journal_hash_does_not_match_is_skipped(
    snapshotted: Session, tmp_path: Path
) -> None:
    data_dir = copy_of(snapshotted, tmp_path)
    flip_byte(snapshots_newest_first(data_dir)[0], 30)  # inside the header's journal hash
    recovered = restart(data_dir)
    assert recovered.report.snapshot_sequence == 2_000
    assert (recovered.digest, recovered.market_data) == (
        snapshotted.digest,
        snapshotted.market_data,
    )


@pytest.mark.timeout(60)
def test_when_every_snapshot_is_damaged_the_whole_journal_is_replayed(
    snapshotted: Session, tmp_path: Path
) -> None:
    data_dir = copy_of(snapshotted, tmp_path)
    for index, snapshot in enumerate(snapshots_newest_first(data_dir)):
        list(SNAPSHOT_DAMAGE.values())[index](snapshot)
    recovered = restart(data_dir)
    assert recovered.report.snapshot_sequence == 0
    assert recovered.report.replayed == snapshotted.last_sequence
    assert (recovered.digest, recovered.market_data) == (
        snapshotted.digest,
        snapshotted.market_data,
    )


@pytest.mark.timeout(60)
def test_a_half_written_temporary_snapshot_is_ignored(snapshotted: Session, tmp_path: Path) -> None:
    data_dir = copy_of(snapshotted, tmp_path)
    plant_half_written_snapshot(data_dir)
    recovered = restart(data_dir)
    assert recovered.report.snapshot_sequence == snapshotted.last_sequence
    assert (recovered.digest, recovered.market_data) == (
        snapshotted.digest,
        snapshotted.market_data,
    )


# ------------------------------------------------------------------------------------------------
# 4. A torn tail (the unfinished write a crash leaves) is cut, and nothing else changes.


def next_record(data_dir: Path, session: Session) -> bytes:
    """The exact bytes the journal would append next: a real record to tear."""
    head_hash = bytes.fromhex(verify(journal_dir(data_dir)).head_hash)
    sequence, time_ns = session.last_sequence + 1, T0_NS + 10**12
    payload = encode_command(MarketWorkload(seed=99).next_command())
    body = struct.pack("<QQ", sequence, time_ns) + payload
    body += record_hash(head_hash, sequence, time_ns, payload)
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


def with_bad_crc(record: bytes) -> bytes:
    length, crc = struct.unpack_from("<II", record)
    return struct.pack("<II", length, crc ^ 0xFFFF) + record[8:]


TORN_TAILS: dict[str, Callable[[bytes], bytes]] = {
    "a_few_bytes": lambda record: record[:5],
    "a_header_only": lambda record: record[:24],
    "half_a_record": lambda record: record[: len(record) // 2],
    "all_but_the_last_byte": lambda record: record[:-1],
    "zeros": lambda record: bytes(4096),
    "a_record_with_a_bad_crc": with_bad_crc,
    "a_record_with_a_bad_crc_then_zeros": lambda record: with_bad_crc(record) + bytes(512),
}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return small_session(tmp_path_factory.mktemp("torn"), seed=44, orders=1_000)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tail", TORN_TAILS.keys())
@pytest.mark.parametrize("from_snapshot", [True, False], ids=["with-snapshot", "no-snapshot"])
def test_a_torn_tail_is_cut_and_the_state_is_as_before(
    stopped: Session, tmp_path: Path, tail: str, from_snapshot: bool
) -> None:
    data_dir = copy_of(stopped, tmp_path)
    if not from_snapshot:
        shutil.rmtree(snapshot_dir(data_dir))
    segment = only_segment(data_dir)
    clean_size = segment.stat().st_size
    garbage = TORN_TAILS[tail](next_record(data_dir, stopped))
    with segment.open("ab") as file:
        file.write(garbage)

    async def run() -> tuple[RecoveryReport, str, int]:
        exchange = Exchange(data_dir, fsync=True, snapshot_every=NEVER)
        try:
            report = await exchange.start()
            digest = exchange.core.digest()
            result = await exchange.submit(MarketWorkload(seed=5).next_command())
            return report, digest, result.sequence
        finally:
            await exchange.stop(snapshot=False)

    report, digest, next_sequence = asyncio.run(run())
    assert report.torn_tail_bytes == len(garbage)
    assert report.last_sequence == stopped.last_sequence
    assert digest == stopped.digest
    assert next_sequence == stopped.last_sequence + 1
    assert verify(journal_dir(data_dir)).ok
    assert segment.stat().st_size > clean_size  # the new record, where the garbage was
    assert replay_from_scratch(data_dir).core.last_sequence == stopped.last_sequence + 1


# ------------------------------------------------------------------------------------------------
# 5. Damage in the middle of the journal: refuse to start, and say where.

DAMAGED_SEQUENCE = 10
RECORD_FIELDS = {  # offset inside the record of a byte to flip
    "length": 0,
    "crc": 4,
    "sequence": 8,
    "time": 16,
    "payload": 26,
    "hash": -1,  # the record's last byte
}


def corrupt_record(data_dir: Path, sequence: int, field_offset: int, mask: int = 0x01) -> None:
    segment = only_segment(data_dir)
    start = record_offset(segment, sequence)
    if field_offset < 0:
        (length,) = struct.unpack_from("<I", segment.read_bytes(), start)
        field_offset += 8 + length
    flip_byte(segment, start + field_offset, mask)


def start_fails(data_dir: Path) -> JournalCorruptError:
    async def run() -> None:
        exchange = Exchange(data_dir, fsync=False)
        try:
            await exchange.start()
        finally:
            await exchange.stop(snapshot=False)

    with pytest.raises(JournalCorruptError) as caught:
        asyncio.run(run())
    return caught.value


@pytest.mark.timeout(60)
@pytest.mark.parametrize("field", RECORD_FIELDS.keys())
def test_a_journal_damaged_in_the_middle_refuses_to_start_naming_the_sequence(
    stopped: Session, tmp_path: Path, field: str
) -> None:
    data_dir = copy_of(stopped, tmp_path)
    corrupt_record(data_dir, DAMAGED_SEQUENCE, RECORD_FIELDS[field])
    size_before = only_segment(data_dir).stat().st_size

    error = start_fails(data_dir)
    assert error.sequence == DAMAGED_SEQUENCE
    assert f"sequence {DAMAGED_SEQUENCE}" in str(error)
    assert only_segment(data_dir).stat().st_size == size_before  # nothing was cut off


@pytest.mark.timeout(60)
def test_verify_names_the_first_damaged_sequence(
    stopped: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = copy_of(stopped, tmp_path)
    corrupt_record(data_dir, DAMAGED_SEQUENCE, RECORD_FIELDS["payload"])
    assert cli.main(["verify", "--data-dir", str(data_dir)]) == 1
    assert f"first bad sequence: {DAMAGED_SEQUENCE}" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_a_damaged_length_field_is_not_mistaken_for_a_torn_tail(
    stopped: Session, tmp_path: Path
) -> None:
    data_dir = copy_of(stopped, tmp_path)
    corrupt_record(data_dir, DAMAGED_SEQUENCE, 2, mask=0x08)  # length += 512 KiB, within limits
    size_before = only_segment(data_dir).stat().st_size
    assert size_before < (512 << 10), "the damaged length must run past the end of the file"

    error = start_fails(data_dir)
    assert error.sequence == DAMAGED_SEQUENCE
    assert only_segment(data_dir).stat().st_size == size_before
