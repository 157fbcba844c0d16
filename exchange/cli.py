"""The `hogx` command line: serve the exchange, replay and verify its journal."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from exchange.collector import collecting_seldom
from exchange.journal import Journal, JournalCorruptError, JournalLockedError, verify
from exchange.snapshots import Recovered, journal_dir
from matching_engine import BOOK_IMPLEMENTATION


def _progress_bar(total: int) -> Callable[[int], None]:
    started = time.perf_counter()

    def show(done: int) -> None:
        if not sys.stderr.isatty():
            return
        width = 40
        filled = width * done // max(total, 1)
        rate = done / max(time.perf_counter() - started, 1e-9)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} ({rate:,.0f}/s)"
        )
        sys.stderr.flush()

    return show


def replay_command(args: argparse.Namespace) -> int:
    """Rebuild the state from the journal and print what it holds and its digest."""
    directory = journal_dir(args.data_dir)
    if not directory.is_dir():
        print(f"hogx replay: no journal in {args.data_dir}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        journal = Journal.open(directory, fsync=False)
    except (JournalCorruptError, JournalLockedError) as error:
        print(f"hogx replay: {error}", file=sys.stderr)
        return 1
    with journal:
        # The core alone: what this prints is the core's (the projections would triple the time).
        recovered = Recovered(projections=False)
        if args.from_snapshot:
            recovered = Recovered.newest(
                args.data_dir,
                journal.last_sequence,
                lambda sequence: next(iter(journal.read(sequence, sequence))).hash,
                projections=False,
            )
            print(f"snapshot: sequence {recovered.snapshot_sequence:,}")
        core = recovered.core
        show = _progress_bar(journal.last_sequence - core.last_sequence)
        applied = recovered.catch_up(journal.read(max(core.last_sequence, 1)), progress=show)
        show(applied)
        head = recovered.journal_hash
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    seconds = time.perf_counter() - started
    print(
        f"records replayed: {applied:,} in {seconds:.2f} s ({applied / max(seconds, 1e-9):,.0f}/s)"
    )
    print(f"last sequence: {core.last_sequence:,}")
    print(f"journal head hash: {head.hex()}")
    print(f"state digest: {core.digest()}")
    print(f"order book: {BOOK_IMPLEMENTATION}")  # the digest is the same with either
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Check every record's CRC and the hash chain; name the first bad record."""
    anchor = None
    if args.anchor:
        sequence, _, hex_hash = args.anchor.partition(":")
        anchor = (int(sequence), bytes.fromhex(hex_hash))
    report = verify(journal_dir(args.data_dir), anchor=anchor)
    print(f"ok: {str(report.ok).lower()}")
    print(f"records: {report.records:,}")
    print(f"last sequence: {report.last_sequence:,}")
    print(f"head hash: {report.head_hash}")
    if not report.ok:
        print(f"first bad sequence: {report.first_bad_sequence}")
    print(report.message)
    return 0 if report.ok else 1


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo market through the real exchange and print its trades and books."""
    return asyncio.run(_demo(args.data_dir, args.orders, args.seed))


async def _demo(data_dir: Path, orders: int, seed: int) -> int:
    from exchange.demo import demo_participants, order_flow, setup_commands
    from exchange.events import Trade
    from exchange.scheduler import Scheduler
    from exchange.sequencer import Exchange

    exchange = Exchange(data_dir)
    report = await exchange.start()
    print(f"data dir {data_dir}: recovered {report.last_sequence:,} journaled commands")
    cast = demo_participants()
    if report.last_sequence == 0:
        for command in setup_commands(cast):
            await exchange.submit(command)
    await Scheduler(exchange).catch_up()  # the timetabled markets to today's phase
    trades = 0
    for command in order_flow(cast, seed, orders):
        result = await exchange.submit(command)
        for event in result.events:
            if isinstance(event, Trade):
                trades += 1
                print(
                    f"#{result.sequence:>6} trade {event.symbol:<15} {event.quantity:>3} lots "
                    f"@ {event.price:>9,} VND  ({event.aggressor_side} order "
                    f"{event.taker_order_id} took order {event.maker_order_id})"
                )
    print(f"{orders} orders, {trades} trades")
    for symbol in exchange.core.engine.symbols:
        book = exchange.core.engine.book(symbol)
        assert book is not None
        print(f"{symbol:<15} best bid {book.best_bid()}  best ask {book.best_ask()}")
    print(f"state digest: {exchange.core.digest()}")
    await exchange.stop()
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Run the exchange and its HTTP API in this process until SIGTERM or Ctrl-C."""
    import uvicorn

    from api.app import Settings, create_app
    from exchange.cluster import ClusterConfig
    from exchange.surveillance_config import load_config

    try:
        surveillance = load_config(args.surveillance_config)
        cluster = None
        if args.nats_url:
            cluster = ClusterConfig(
                args.nats_url, args.shard, args.stream_replicas, shard_index=args.shard_index
            )
    except ValueError as error:
        print(f"hogx serve: {error}", file=sys.stderr)
        return 2
    settings = Settings(
        surveillance=surveillance,
        data_dir=args.data_dir,
        database_url=args.database_url,
        demo=args.demo,
        operator_key=os.environ.get("HOGX_OPERATOR_KEY") or None,
        rate_per_second=args.rate_limit,
        rate_burst=2 * args.rate_limit,
        cluster=cluster,
    )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"hogx: serving on http://{args.host}:{args.port} (docs at /docs), "
        f"{BOOK_IMPLEMENTATION} order book",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=args.access_log,
        log_level="warning",
        timeout_graceful_shutdown=10,
        ws_per_message_deflate=False,  # it would compress every broadcast frame per client
    )
    return 0


def gateway_command(args: argparse.Namespace) -> int:
    """Run a stateless API gateway: HTTP to the engine over NATS, the feed from a replica."""
    import uvicorn

    from api.gateway import GatewaySettings, create_gateway
    from api.shard_router import ShardMap

    shards = tuple(args.shard or [os.environ.get("HOGX_SHARD") or "main"])
    try:
        assign = tuple(_assignment(rule) for rule in args.assign)
        settings = GatewaySettings(nats_url=args.nats_url, shards=shards, assign=assign)
        ShardMap(settings.shards, settings.assign)  # refuse a rule naming no shard, now
    except ValueError as error:
        print(f"hogx gateway: {error}", file=sys.stderr)
        return 2
    print(
        f"hogx gateway: shards {', '.join(shards)} via {args.nats_url}, "
        f"serving on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    uvicorn.run(
        create_gateway(settings),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=args.access_log,
        log_level="warning",
        timeout_graceful_shutdown=10,
        ws_per_message_deflate=False,  # as `serve`: frames are encoded once for all clients
    )
    return 0


def _assignment(rule: str) -> tuple[str, str]:
    """`OCOP-*=ocop`: instruments whose symbol matches the pattern live on that shard."""
    pattern, equals, shard = rule.partition("=")
    if not equals or not pattern or not shard:
        raise ValueError(f"--assign {rule!r}: write it as SYMBOL_PATTERN=SHARD")
    return pattern, shard


def ledger_check_command(args: argparse.Namespace) -> int:
    """Verify the SQL ledger against its invariants and against the journal's accounts."""
    from sqlalchemy.exc import SQLAlchemyError

    from clearing.ledger import Ledger, default_database_url
    from exchange.ledger_feed import check_ledger

    url = args.database_url or default_database_url(args.data_dir)
    try:
        ledger = Ledger.open(url)
        try:
            report = check_ledger(ledger, args.data_dir)
        finally:
            ledger.close()
    except SQLAlchemyError as error:
        print(f"hogx ledger check: the ledger database is unreachable: {error}", file=sys.stderr)
        return 2
    print(report.text())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hogx", description="hogx: an exchange for live hogs and OCOP goods."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the exchange and its HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", type=Path, default=Path("./var"))
    serve.add_argument(
        "--database-url",
        default=os.environ.get("HOGX_DATABASE_URL") or None,
        help="SQLAlchemy URL of the clearing ledger (default: SQLite inside --data-dir)",
    )
    serve.add_argument("--demo", action="store_true", help="list and fund the demo market")
    serve.add_argument(
        "--rate-limit", type=float, default=2_000.0, help="requests per second per API key"
    )
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument(
        "--surveillance-config",
        type=Path,
        default=os.environ.get("HOGX_SURVEILLANCE_CONFIG") or None,
        help="JSON file of surveillance thresholds and linked participants (default: the "
        "built-in thresholds, no links); journaled whenever it changes",
    )
    serve.add_argument(
        "--nats-url",
        default=os.environ.get("HOGX_NATS_URL") or None,
        help="run as an engine node of a cluster: the journal is the shard's JetStream stream "
        "on this NATS server (the data dir holds its mirror); the node leads the shard or "
        "stands by to take over (default: the embedded local journal)",
    )
    serve.add_argument(
        "--shard", default=os.environ.get("HOGX_SHARD") or "main", help="with --nats-url"
    )
    serve.add_argument(
        "--shard-index",
        type=int,
        default=int(os.environ.get("HOGX_SHARD_INDEX") or 0),
        help="with --nats-url: the shard's place in the cluster (0 = home); its order and trade "
        "ids start at index * 10**12, so an id names its shard",
    )
    serve.add_argument(
        "--stream-replicas",
        type=int,
        default=int(os.environ.get("HOGX_STREAM_REPLICAS") or 1),
        help="JetStream replicas of a new shard stream (3 on a 3-node NATS cluster)",
    )
    serve.set_defaults(run=serve_command)

    gateway = commands.add_parser(
        "gateway", help="run a stateless API gateway in front of a shard's engine (NATS)"
    )
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8080)
    gateway.add_argument(
        "--nats-url", default=os.environ.get("HOGX_NATS_URL") or "nats://127.0.0.1:4222"
    )
    gateway.add_argument(
        "--shard",
        action="append",
        help="a shard it fronts; repeat for several, in shard-index order (the first is home; "
        "default: main)",
    )
    gateway.add_argument(
        "--assign",
        action="append",
        default=[],
        metavar="PATTERN=SHARD",
        help="instruments whose symbol matches PATTERN (fnmatch, e.g. 'OCOP-*') live on SHARD; "
        "first match wins, others live on the home shard",
    )
    gateway.add_argument("--access-log", action="store_true")
    gateway.set_defaults(run=gateway_command)

    replay = commands.add_parser("replay", help="rebuild state from the journal, print digest")
    replay.add_argument("--data-dir", type=Path, default=Path("./var"))
    replay.add_argument(
        "--from-snapshot",
        action="store_true",
        help="start from the newest snapshot instead of from the first record",
    )
    replay.set_defaults(run=replay_command)

    check = commands.add_parser("verify", help="check the journal's CRCs and hash chain")
    check.add_argument("--data-dir", type=Path, default=Path("./var"))
    check.add_argument(
        "--anchor", help="SEQUENCE:HEXHASH of an earlier head kept outside the exchange"
    )
    check.set_defaults(run=verify_command)

    ledger = commands.add_parser("ledger", help="the SQL clearing ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    check_ledger = ledger_commands.add_parser(
        "check", help="sums to zero per asset, nothing negative, equal to the in-memory accounts"
    )
    check_ledger.add_argument("--data-dir", type=Path, default=Path("./var"))
    check_ledger.add_argument("--database-url", default=os.environ.get("HOGX_DATABASE_URL") or None)
    check_ledger.set_defaults(run=ledger_check_command)

    demo = commands.add_parser("demo", help="trade a seeded demo market and print the trades")
    demo.add_argument("--data-dir", type=Path, default=Path("./var"))
    demo.add_argument("--orders", type=int, default=200)
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(run=demo_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with collecting_seldom():  # every command here runs or replays an exchange, or its ledger
            result: int = args.run(args)
            sys.stdout.flush()  # here, so that a reader gone away is seen here
    except BrokenPipeError:
        # The reader of our output went away (`hogx replay | head -2`): stop quietly, as a Unix
        # tool does, and keep the interpreter's own flush at exit from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
