"""The regulator's CSV export of trades: memory stays flat however many rows it streams.

    python -m benchmarks.audit_export [--rows 100000 1000000] [--seed 7]

For each size, a fresh SQLite ledger gets that many seeded trades (inserted in bulk: this
measures the export, not settlement), then the export that `GET /v1/audit/trades?format=csv`
streams (`api.routes_audit._csv_pages`, keyset pages of 5,000 rows) is drained completely.
Prints rows/s, the bytes produced and the peak of Python memory allocated while streaming
(tracemalloc): the same for a hundred thousand rows as for millions, because only one page
is ever held.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from api.routes_audit import CSV_PAGE_ROWS, MAX_SEQUENCE, _csv_pages
from clearing.ledger import Ledger, default_database_url, trades_table

INSERT_CHUNK = 50_000


def fill(ledger: Ledger, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    ledger.ensure_ready()
    with ledger.engine.begin() as connection:
        for first in range(1, rows + 1, INSERT_CHUNK):
            chunk = []
            for trade_id in range(first, min(first + INSERT_CHUNK, rows + 1)):
                price = 60_000 + rng.randint(-50, 50) * 100
                quantity = rng.randint(1, 20)
                chunk.append(
                    {
                        "trade_id": trade_id,
                        "sequence": trade_id * 3,
                        "time_ns": 1_767_225_600_000_000_000 + trade_id * 1_000_000,
                        "symbol": "HOG-G1-HCM",
                        "price": price,
                        "quantity": quantity,
                        "notional_vnd": price * quantity * 1_000,
                        "aggressor_side": "buy" if trade_id % 2 else "sell",
                        "buyer_id": rng.randint(1, 500),
                        "seller_id": rng.randint(1, 500),
                        "buy_order_id": trade_id * 2,
                        "sell_order_id": trade_id * 2 + 1,
                        "buyer_fee_vnd": 0,
                        "seller_fee_vnd": 0,
                    }
                )
            connection.execute(trades_table.insert(), chunk)


async def drain(ledger: Ledger) -> tuple[int, int]:
    filters: dict[str, Any] = {
        "symbol": None,
        "participant_id": None,
        "start_ns": 0,
        "end_ns": MAX_SEQUENCE,
        "from_sequence": 0,
        "to_sequence": MAX_SEQUENCE,
    }
    first = ledger.audit_trades(**filters, after_trade_id=0, limit=CSV_PAGE_ROWS)
    size = lines = 0
    async for chunk in _csv_pages(ledger, filters, first):
        size += len(chunk)
        lines += chunk.count("\n")
    return size, lines - 1  # minus the header


def one_size(rows: int, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hogx-export-bench-") as directory:
        ledger = Ledger.open(default_database_url(Path(directory)))
        try:
            fill(ledger, rows, seed)
            tracemalloc.start()
            started = time.perf_counter()
            size, exported = asyncio.run(drain(ledger))
            seconds = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        finally:
            ledger.close()
    assert exported == rows, (exported, rows)
    return {"rows": rows, "seconds": seconds, "bytes": size, "peak_bytes": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audit_export")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for rows in args.rows:
        figures = one_size(rows, args.seed)
        print(
            f"{rows:>10,} rows  {figures['rows'] / figures['seconds']:>9,.0f} rows/s  "
            f"{figures['bytes'] / 1e6:>8,.1f} MB of CSV  "
            f"peak Python memory while streaming {figures['peak_bytes'] / 1e6:,.1f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
