"""The running core: durable commands per second, and journal replay records per second.

    python -m benchmarks.core [--commands 200000] [--tasks 1000] [--runs 3] [--json]

Durable throughput: a real `Exchange` (sequencer + risk + engine + journal with fsync, group
commit) on a fresh data directory, driven by `--tasks` concurrent asyncio tasks that each submit
their share of a seeded command stream one command at a time (no HTTP). The stream comes from
`benchmarks.workload` (limit, market, IOC, FOK, all-or-none and post-only orders on three
instruments, cancels and amends of live orders), generated once up front. Measured three ways
in each run, so the figures say where the time goes:

- `exchange`: the exchange as the server runs it, with the projections the server answers
  from (market data, audit trail, surveillance) fed before each answer;
- `core path`: what the figure of the running-core issue names, sequencer + risk + engine +
  journal: the same exchange without those projections;
- `sequencer floor`: sequencer + journal around a core that only takes the sequence number:
  the cost of the asyncio hand-offs, encoding, group commit and fsync on their own.

Replay: the journal the `exchange` run wrote is replayed from scratch the way start-up does it
(open and check the journal, read, decode, apply, projections); also for the core alone, the
way `hogx replay` does it (open and check, then read, decode and apply, streamed, no
projections), and split into its parts: `open_check`, `read_decode` and `apply`. Reading and
decoding are one part because replay streams them (`JournalReader.decoded_batches`: each
chunk's records checked on a read-ahead thread, then their payloads decoded straight from the
chunk). Every figure is the median of `--runs`.

Machine reference: the targets are for "this machine", and sessions do not always get the same
one (the same code has run 2.5 times slower on one day's machine than on the previous one's).
So the benchmark also times a fixed pure-Python loop before and after the runs: a figure of the
machine, not of hogx, to tell a slower machine from slower code when columns are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.workload import MarketWorkload
from clearing.implementation import CLEARING_IMPLEMENTATION
from exchange.collector import collecting_seldom, keep_for_good, paused
from exchange.commands import SCHEMA_VERSION, Command, command_of, decode_entry
from exchange.core import CORE_IMPLEMENTATION, ExchangeCore
from exchange.events import Event
from exchange.journal import CODEC_IMPLEMENTATION, DecodedBatch, Journal
from exchange.sequencer import CommandResult, Exchange
from exchange.snapshots import Recovered, journal_dir
from matching_engine.implementation import BOOK_IMPLEMENTATION

REFERENCE_ITERATIONS = 2_000_000


def machine_reference() -> float:
    """Millions of iterations per second of a fixed pure-Python loop (an add and a compare per
    iteration), the best of five: the least disturbed, as the machine can run it."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for value in range(REFERENCE_ITERATIONS):
            if value & 1:
                total += value
        best = min(best, time.perf_counter() - started)
    return REFERENCE_ITERATIONS / best / 1e6


def command_stream(count: int, seed: int) -> tuple[list[Command], list[Command]]:
    """(setup, stream): the stream is generated against a scratch core so that its cancels and
    amends name orders that were really open at that point.

    The scratch core runs on today's clock, as the exchange measured will: the OCOP
    instrument's certificate is dated from today, so on a clock near 1970 its listing would be
    refused and a quarter of the stream would become cheap rejections (unknown instrument)."""
    workload = MarketWorkload(seed)
    setup = workload.setup()
    scratch = ExchangeCore()
    start_ns = time.time_ns()
    sequence = 0
    for command in setup:
        sequence += 1
        scratch.apply(command, sequence, start_ns + sequence * 1_000)
    stream = []
    for _ in range(count):
        command = workload.next_command()
        sequence += 1
        workload.observe(scratch.apply(command, sequence, start_ns + sequence * 1_000))
        stream.append(command)
    return setup, stream


class CorePathExchange(Exchange):
    """The exchange without its projections: results go to the subscribers only. Only for
    measuring: its snapshots would lack the projections, so it never writes one."""

    def _publish(self, results: list[CommandResult]) -> None:
        for subscriber in self._subscribers:
            subscriber(results)


class SequenceOnlyCore(ExchangeCore):
    """A core that takes each command's sequence and time and does nothing else."""

    def apply(self, command: Command, sequence: int, time_ns: int) -> list[Event]:
        self.last_sequence, self.last_time_ns = sequence, time_ns
        return []


MODES = ("exchange", "core_path", "sequencer_floor")


async def durable_run(
    data_dir: Path, setup: list[Command], stream: list[Command], tasks: int, mode: str = "exchange"
) -> dict[str, float]:
    kind = Exchange if mode == "exchange" else CorePathExchange
    exchange = kind(data_dir, snapshot_every=10**12)
    await exchange.start()
    for command in setup:
        await exchange.submit(command)
    if mode == "sequencer_floor":
        floor = SequenceOnlyCore()
        floor.last_sequence = exchange.core.last_sequence
        floor.last_time_ns = exchange.core.last_time_ns
        exchange.core = floor
    # As the server does once start-up is done (api/app.py): what exists now (here also the
    # generated stream, which a server does not hold) is moved out of every collection.
    keep_for_good()
    batches = 0
    exchange.subscribe(lambda results: None)

    def count_batches(results: list[Any]) -> None:
        nonlocal batches
        batches += 1

    exchange.subscribe(count_batches)

    async def submitter(first: int) -> None:
        for index in range(first, len(stream), tasks):
            await exchange.submit(stream[index])

    with collecting_seldom():  # as the server after start-up
        started = time.perf_counter()
        await asyncio.gather(*(submitter(k) for k in range(tasks)))
        seconds = time.perf_counter() - started
        await exchange.stop(snapshot=False)
    gc.unfreeze()  # the next run freezes its own start-up
    return {
        "commands_per_second": len(stream) / seconds,
        "mean_batch": len(stream) / max(batches, 1),
    }


def replay_run(data_dir: Path) -> dict[str, float]:
    """Replay the whole journal as start-up does, and time its parts separately too."""
    with collecting_seldom():  # as `hogx serve` and `hogx replay` run
        return _timed_replay(data_dir)


def _timed_replay(data_dir: Path) -> dict[str, float]:
    started = time.perf_counter()
    with Journal.open(journal_dir(data_dir), fsync=False) as journal:
        opened = time.perf_counter()
        recovered = Recovered()
        applied = recovered.catch_up(journal.read(1))
        replayed = time.perf_counter()
        # The core alone, as `hogx replay` replays it.
        alone = Recovered(projections=False)
        alone.catch_up(journal.read(1))
        core = alone.core
        core_done = time.perf_counter()
        with paused():  # the parts, one after the other: read and decode fused, then apply
            parts_started = time.perf_counter()
            batches = list(journal.read(1).decoded_batches(decode_entry))
            read_decoded = time.perf_counter()
            fresh = ExchangeCore()
            for batch in batches:
                _apply_batch(fresh, batch)
            applied_done = time.perf_counter()
    assert core.digest() == fresh.digest() == recovered.core.digest()
    return {
        "records": applied,
        "replay_records_per_second": applied / (replayed - started),
        "core_only_records_per_second": applied / ((opened - started) + (core_done - replayed)),
        "open_check_records_per_second": applied / (opened - started),
        "read_decode_records_per_second": applied / (read_decoded - parts_started),
        "apply_records_per_second": applied / (applied_done - read_decoded),
    }


def _apply_batch(core: ExchangeCore, batch: DecodedBatch) -> None:
    """Apply a decoded batch to `core` as `Recovered(projections=False).catch_up` does."""
    apply = core.apply
    sequence = batch.first_sequence - 1
    for time_ns, entry in zip(batch.times, batch.entries, strict=True):
        sequence += 1
        command = entry.command if entry.version == SCHEMA_VERSION else command_of(entry)
        apply(command, sequence, time_ns)
    if batch.error is not None:
        raise batch.error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.core", description=__doc__)
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args(argv)
    say = (lambda *_: None) if args.json else print

    reference_before = machine_reference()
    setup, stream = command_stream(args.commands, args.seed)
    # The benchmark's own input stays out of the collector's way: a server does not hold it.
    gc.collect()
    gc.freeze()
    kinds: dict[str, int] = {}
    for command in stream:
        kinds[type(command).__name__] = kinds.get(type(command).__name__, 0) + 1
    say(f"stream: {len(stream):,} commands {kinds}, {args.tasks} concurrent submitters")
    runner = asyncio.run
    loop_name = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
            loop_name = "uvloop"
        except ImportError:
            pass

    durable: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    replays = []
    for run in range(args.runs):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix="hogx-bench-", dir=".") as directory:
                result = runner(durable_run(Path(directory), setup, stream, args.tasks, mode))
                durable[mode].append(result)
                say(
                    f"  run {run + 1}: {mode}: {result['commands_per_second']:,.0f} commands/s "
                    f"durable (mean batch {result['mean_batch']:,.0f} commands per fsync)"
                )
                if mode == "exchange":
                    replays.append(replay_run(Path(directory)))
                    say(
                        f"  run {run + 1}: replay "
                        f"{replays[-1]['replay_records_per_second']:,.0f} records/s, core alone "
                        f"{replays[-1]['core_only_records_per_second']:,.0f}"
                    )

    reference_after = machine_reference()

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    figures = {
        "commands": len(stream),
        "tasks": args.tasks,
        "event_loop": loop_name,
        "python": sys.version.split()[0],
        "book": BOOK_IMPLEMENTATION,
        "journal_codec": CODEC_IMPLEMENTATION,
        "clearing": CLEARING_IMPLEMENTATION,
        "trading_path": CORE_IMPLEMENTATION,
        "machine_reference_million_loops_per_second": [
            round(reference_before, 1),
            round(reference_after, 1),
        ],
        "commands_per_second": round(median(durable["exchange"], "commands_per_second")),
        "mean_batch": round(median(durable["exchange"], "mean_batch")),
        "core_path_commands_per_second": round(median(durable["core_path"], "commands_per_second")),
        "sequencer_floor_commands_per_second": round(
            median(durable["sequencer_floor"], "commands_per_second")
        ),
        "replay_records_per_second": round(median(replays, "replay_records_per_second")),
        "replay_core_only_records_per_second": round(
            median(replays, "core_only_records_per_second")
        ),
        "replay_parts_records_per_second": {
            part: round(median(replays, f"{part}_records_per_second"))
            for part in ("open_check", "read_decode", "apply")
        },
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"durable commands/s (median of {args.runs}), {loop_name}, Python "
            f"{figures['python']}, {BOOK_IMPLEMENTATION} book, {CODEC_IMPLEMENTATION} journal "
            f"codec, {CLEARING_IMPLEMENTATION} clearing, {CORE_IMPLEMENTATION} trading path:"
        )
        print(f"  exchange (with projections): {figures['commands_per_second']:,}")
        print(f"  core path (no projections):  {figures['core_path_commands_per_second']:,}")
        print(f"  sequencer floor (no-op core): {figures['sequencer_floor_commands_per_second']:,}")
        print(f"replay records/s (median of {args.runs}): {figures['replay_records_per_second']:,}")
        print(f"  core alone (no projections): {figures['replay_core_only_records_per_second']:,}")
        print(f"  parts: {figures['replay_parts_records_per_second']}")
        print(
            "machine reference (a fixed pure-Python loop, best of 5, before and after): "
            f"{reference_before:.1f} and {reference_after:.1f} million iterations/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
