"""The SQL clearing ledger: trades settled per second into SQLite and into PostgreSQL.

    python -m benchmarks.ledger [--commands 200000] [--batch 4096] [--runs 3] [--seed 7]
                                [--postgres-url URL] [--json]

A seeded command stream (`benchmarks.workload`: limit, market, IOC, FOK, all-or-none and
post-only orders on three instruments, cancels and amends) is run once through an
`ExchangeCore` up front; its results are what the sequencer would publish. Each run hands all
of them to a `LedgerFeed` on a fresh ledger (in sequencer-sized batches) and times it until
everything is committed, `--batch` commands per database transaction: events -> postings ->
rows -> one transaction. The clock covers every transfer of the stream (holds, releases and
deposits as well as the trades' own legs: about 8 per trade on this mix), so trades/s is what
the ledger sustains on real traffic, not on trades alone. `--path apply` calls `Ledger.apply`
directly instead. Median of `--runs`; every run ends with `Ledger.check` against the core.

SQLite: a WAL file in a temporary directory. PostgreSQL: a scratch database created and dropped
on the server of `--postgres-url` (default 127.0.0.1:5432, trust auth); skipped if unreachable.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.workload import MarketWorkload
from clearing.ledger import Ledger, default_database_url, normalize_database_url
from exchange.core import ExchangeCore
from exchange.events import Settlement
from exchange.ledger_feed import balances_of, entries_of
from exchange.ledger_process import ledger_feed_in_this_process
from exchange.sequencer import MAX_BATCH, CommandResult

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

Stream = list[CommandResult]


def event_stream(commands: int, seed: int) -> tuple[Stream, ExchangeCore]:
    """The results of the setup and `commands` workload commands, as the sequencer publishes
    them, and the core they leave behind."""
    workload = MarketWorkload(seed)
    core = ExchangeCore()
    stream: Stream = []
    setup = workload.setup()
    for sequence in range(1, len(setup) + commands + 1):
        command = setup[sequence - 1] if sequence <= len(setup) else workload.next_command()
        time_ns = 1_700_000_000_000_000_000 + sequence * 1_000
        events = core.apply(command, sequence, time_ns)
        workload.observe(events)
        stream.append(CommandResult(sequence, time_ns, command, events))
    return stream, core


def through_feed(ledger: Ledger, stream: Stream, batch: int) -> None:
    """The production path: a `LedgerFeed` set up as the ledger process sets it up (planner
    and writer threads, GIL switch interval, collector thresholds) given the results in
    sequencer-sized batches, until everything is committed."""
    with tempfile.TemporaryDirectory(prefix="hogx-ledger-bench-feed-") as data_dir:
        feed = ledger_feed_in_this_process(
            ledger, Path(data_dir), max_queue=len(stream) + 1, max_batch_commands=batch
        )
        for first in range(0, len(stream), MAX_BATCH):
            feed(stream[first : first + MAX_BATCH])
        feed.start(0)
        try:
            assert feed.flush(timeout=600), feed.status()
        finally:
            feed.stop()


def in_one_thread(ledger: Ledger, stream: Stream, batch: int) -> None:
    """`Ledger.apply` called directly, converting and writing in turn."""
    for first in range(0, len(stream), batch):
        ledger.apply(entries_of(stream[first : first + batch]))


def one_run(
    url: str, stream: Stream, batch: int, core: ExchangeCore, path: str
) -> dict[str, float]:
    ledger = Ledger.open(url)
    try:
        started = time.perf_counter()
        (through_feed if path == "feed" else in_one_thread)(ledger, stream, batch)
        seconds = time.perf_counter() - started
        report = ledger.check(balances_of(core.accounts), at_sequence=stream[-1].sequence)
        assert report.ok, report.text()
        trades = sum(1 for r in stream for e in r.events if type(e) is Settlement)
        return {
            "seconds": seconds,
            "trades": trades,
            "transfers": report.transfers,
            "commands": len(stream),
        }
    finally:
        ledger.close()


def sqlite_run(stream: Stream, batch: int, core: ExchangeCore, path: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hogx-ledger-bench-") as directory:
        return one_run(default_database_url(Path(directory)), stream, batch, core, path)


def postgres_run(
    server_url: str, stream: Stream, batch: int, core: ExchangeCore, path: str
) -> dict[str, float]:
    admin = create_engine(normalize_database_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"hogx_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(normalize_database_url(server_url)).set(database=name)
        return one_run(url.render_as_string(hide_password=False), stream, batch, core, path)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_reachable(server_url: str) -> str | None:
    """None when the server answers, else why not."""
    engine = create_engine(normalize_database_url(server_url))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as error:
        return str(error).splitlines()[0]
    finally:
        engine.dispose()


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    seconds = statistics.median(run["seconds"] for run in runs)
    first = runs[0]
    return {
        "trades_per_second": first["trades"] / seconds,
        "transfers_per_second": first["transfers"] / seconds,
        "commands_per_second": first["commands"] / seconds,
        "seconds_median": seconds,
        "seconds_runs": [run["seconds"] for run in runs],
        "trades": first["trades"],
        "transfers": first["transfers"],
        "commands": first["commands"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ledger",
        description="Trades settled per second into the SQL ledger (SQLite and PostgreSQL).",
    )
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=4_096, help="commands per transaction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--path",
        choices=("feed", "apply"),
        default="feed",
        help="feed: the LedgerFeed pipeline (default); apply: Ledger.apply in one thread",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    stream, core = event_stream(args.commands, args.seed)
    # The stream is generated up front and held whole, which the exchange never does (its
    # results pass through): keep those millions of objects out of every collection, as the
    # server's `gc.freeze()` does for what it builds at start-up.
    gc.collect()
    gc.freeze()
    results: dict[str, Any] = {}
    runs = range(args.runs)
    results["sqlite"] = summarize([sqlite_run(stream, args.batch, core, args.path) for _ in runs])
    problem = postgres_reachable(args.postgres_url)
    if problem is None:
        results["postgresql"] = summarize(
            [postgres_run(args.postgres_url, stream, args.batch, core, args.path) for _ in runs]
        )
    else:
        results["postgresql"] = {"skipped": problem}

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    first = results["sqlite"]
    print(
        f"stream: {first['commands']:,} commands (seed {args.seed}), {first['trades']:,} trades, "
        f"{first['transfers']:,} transfers; {args.batch} commands per transaction; "
        f"path: {args.path}; median of {args.runs}"
    )
    for name in ("sqlite", "postgresql"):
        figures = results[name]
        if "skipped" in figures:
            print(f"{name:<11} skipped: {figures['skipped']}")
            continue
        print(
            f"{name:<11} {figures['trades_per_second']:>10,.0f} trades/s  "
            f"{figures['transfers_per_second']:>10,.0f} transfers/s  "
            f"{figures['commands_per_second']:>10,.0f} commands/s  "
            f"({figures['seconds_median']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
