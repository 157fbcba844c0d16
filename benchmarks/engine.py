"""Matching engine throughput and latency on a seeded single-instrument order stream.

    python -m benchmarks.engine [--messages 1000000] [--seed 1] [--runs 5] [--peers] [--json]
    python -m benchmarks.engine --stream FILE.npy      # replay an external stream instead

The stream format is documented in `benchmarks/streams.py`. Every message goes through the same
`OrderBook.place` / `OrderBook.cancel` the exchange uses, producing every event it produces.
Throughput is the median of `--runs` replays (no per-message timer in those runs); latency
percentiles come from one further replay that times each message with `perf_counter_ns`.
The book measured is the one the exchange runs: the compiled twin of `book.py` when it is built,
else `book.py` (`HOGX_PURE_PYTHON_BOOK=1` forces it); the output names which.
With `--peers`, the same stream is replayed through the PyPI engines `liquibook` and
`limit-order-book` in the same run, and all final books are checked to be equal.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import peers, streams
from matching_engine import BOOK_IMPLEMENTATION, BookRules, OrderBook, OrderRequest, Side

SYMBOL = "HOG-G1"
Rows = list[tuple[int, int, int, int, int]]


def engine_rows(stream: streams.Stream) -> Rows:
    """The stream as Python tuples, with order ids renumbered to increase (the engine's rule).

    Done before timing: the exchange hands the engine increasing ids, whatever a stream uses.
    """
    ids: dict[int, int] = {}
    rows: Rows = []
    for kind, order_id, side, price, quantity in stream.tolist():
        if kind == streams.KIND_NEW:
            internal = ids[order_id] = len(ids) + 1
        else:
            internal = ids.get(order_id, 0)
        rows.append((kind, internal, side, price, quantity))
    return rows


def rules_for(stream: streams.Stream) -> BookRules:
    """The hog book's rules (tick 100, reference 60,000, band 7%), widened to fit the stream.

    An external stream may use other prices: its tick is the gcd of its prices and the band is
    widened (up to 100%) until every price in it is allowed.
    """
    prices = stream[stream[:, 0] == streams.KIND_NEW, 3]
    if len(prices) == 0:
        return BookRules(SYMBOL, streams.TICK, streams.MID_PRICE)
    tick = int(np.gcd.reduce(prices))
    low, high = int(prices.min()), int(prices.max())
    if tick == streams.TICK and low >= streams.BAND_LOW and high <= streams.BAND_HIGH:
        return BookRules(SYMBOL, streams.TICK, streams.MID_PRICE)
    reference = (low + high) // 2 // tick * tick or tick
    for band_pct in range(1, 101):
        rules = BookRules(SYMBOL, tick, reference, price_band_pct=band_pct)
        if rules.band_low <= low and high <= rules.band_high:
            return rules
    raise SystemExit(f"prices {low}..{high} do not fit any band around {reference}")


def replay(rows: Rows, rules: BookRules) -> tuple[float, OrderBook, int]:
    """Replay the stream once; returns (seconds, final book, number of events produced)."""
    book = OrderBook(rules)
    place, cancel = book.place, book.cancel
    sides = (Side.BUY, Side.SELL)
    event_count = 0
    gc.collect()
    gc.freeze()  # as the exchange does after start-up: long-lived objects leave the young GC
    start = time.perf_counter()
    for kind, order_id, side, price, quantity in rows:
        if kind == 0:
            # Each order is its own participant, so self-trade prevention never applies.
            events = place(OrderRequest(order_id, order_id, sides[side], price, quantity))
        else:
            events = cancel(order_id)
        event_count += len(events)
    seconds = time.perf_counter() - start
    gc.unfreeze()
    return seconds, book, event_count


def replay_timed(rows: Rows, rules: BookRules) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Replay once more, timing every message; returns per-message latencies in nanoseconds."""
    book = OrderBook(rules)
    place, cancel = book.place, book.cancel
    sides = (Side.BUY, Side.SELL)
    clock = time.perf_counter_ns
    latencies = [0] * len(rows)
    gc.collect()
    gc.freeze()
    for i, (kind, order_id, side, price, quantity) in enumerate(rows):
        start = clock()
        if kind == 0:
            place(OrderRequest(order_id, order_id, sides[side], price, quantity))
        else:
            cancel(order_id)
        latencies[i] = clock() - start
    gc.unfreeze()
    return np.array(latencies, dtype=np.int64)


def aggregated(book: OrderBook) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    bids = [(price, quantity) for price, quantity, _ in book.depth(Side.BUY)]
    asks = [(price, quantity) for price, quantity, _ in book.depth(Side.SELL)]
    return bids, asks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="replays for the median (>= 1)")
    parser.add_argument("--stream", type=Path, help="replay this .npy stream instead")
    parser.add_argument("--save-stream", type=Path, help="write the generated stream here")
    parser.add_argument("--peers", action="store_true", help="also replay through peer engines")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.messages < 1:
        parser.error("--runs and --messages must be at least 1")

    stream = (
        streams.load(args.stream) if args.stream else streams.generate(args.messages, args.seed)
    )
    if args.save_stream:
        np.save(args.save_stream, stream)
    rows = engine_rows(stream)
    rules = rules_for(stream)
    say = (lambda *_: None) if args.json else print
    say(f"stream: {len(rows):,} messages ({_mix(stream)})")
    say(f"hogx order book: {BOOK_IMPLEMENTATION} ({OrderBook.__module__}.OrderBook)")

    rates = []
    for run in range(args.runs):
        seconds, book, event_count = replay(rows, rules)
        rates.append(len(rows) / seconds)
        say(f"  hogx run {run + 1}: {rates[-1]:,.0f} msg/s ({event_count:,} events)")
    latencies = replay_timed(rows, rules)
    p50, p99, p999 = (int(np.percentile(latencies, q)) for q in (50, 99, 99.9))
    ours = statistics.median(rates)
    bids, asks = aggregated(book)
    result: dict[str, Any] = {
        "engine": "hogx",
        "book_implementation": BOOK_IMPLEMENTATION,
        "messages": len(rows),
        "runs": args.runs,
        "messages_per_second": round(ours),
        "p50_ns": p50,
        "p99_ns": p99,
        "p999_ns": p999,
        "events": event_count,
        "resting_orders": book.open_order_count(),
        "python": sys.version.split()[0],
        "peers": {},
    }
    say(f"hogx ({BOOK_IMPLEMENTATION} book): {ours:,.0f} msg/s (median of {args.runs})")
    say(f"latency per message: p50 {p50:,} ns, p99 {p99:,} ns, p99.9 {p999:,} ns")
    say(
        f"final book: {book.open_order_count():,} resting orders, {len(bids)} bid / "
        f"{len(asks)} ask levels"
    )

    if args.peers:
        for name in ("liquibook", "limit-order-book"):
            if name not in peers.available_peers():
                say(f"{name}: not installed (pip install -e '.[bench]')")
                result["peers"][name] = None
                continue
            runs = [peers.replay(name, stream) for _ in range(args.runs)]
            rate = statistics.median(r.messages_per_second for r in runs)
            same = all((r.bids, r.asks) == (bids, asks) for r in runs)
            result["peers"][name] = {
                "messages_per_second": round(rate),
                "ratio_hogx_to_peer": round(ours / rate, 3),
                "same_final_book": same,
            }
            say(
                f"{name}: {rate:,.0f} msg/s (median of {args.runs}); hogx is "
                f"{ours / rate:.2f}x; same final book: {'yes' if same else 'NO'}"
            )
    if args.json:
        print(json.dumps(result))
    books_agree = all(p is None or p["same_final_book"] for p in result["peers"].values())
    return 0 if books_agree else 1


def _mix(stream: streams.Stream) -> str:
    kinds = np.bincount(stream[:, 0], minlength=2)
    total = max(len(stream), 1)
    return f"{kinds[0] / total:.0%} new orders, {kinds[1] / total:.0%} cancels"


if __name__ == "__main__":
    sys.exit(main())
