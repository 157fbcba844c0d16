"""The regulator's view of history: every order's life told completely, the book as it stood
after any sequence, and the daily head hashes that anchor the journal outside the exchange."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from benchmarks.workload import INSTRUMENTS, MarketWorkload
from exchange.audit import AuditEntry
from exchange.events import Trade
from exchange.heads import HEADS_FILE, DailyHeads, vietnam_date
from exchange.journal import read_committed, verify
from exchange.orders import OrderRecord, OrderStatus
from exchange.sequencer import Exchange
from exchange.snapshots import journal_dir, snapshots_newest_first
from exchange.timetravel import NotListedThen, book_at
from matching_engine import Side

NEVER = 10**12
HOUR_NS = 3600 * 10**9
# 2026-03-02 00:00 in Vietnam (UTC+7) is 2026-03-01 17:00 UTC.
MARCH_2_VN_MIDNIGHT_NS = 1_772_384_400 * 10**9


class SeenBook(NamedTuple):
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    bid_orders: list[tuple[int, int, int, int]]
    ask_orders: list[tuple[int, int, int, int]]


class Session(NamedTuple):
    data_dir: Path
    seen: dict[tuple[str, int], SeenBook]  # (symbol, sequence) -> the book live at that moment
    listed_at: dict[str, int]
    exchange_orders: dict[int, OrderRecord]
    histories: dict[int, list[AuditEntry]]
    trades: list[Trade]


def counting_clock(start_ns: int, step_ns: int) -> Callable[[], int]:
    return itertools.count(start_ns, step_ns).__next__


def live_book(exchange: Exchange, symbol: str) -> SeenBook:
    book = exchange.core.engine.book(symbol)
    assert book is not None

    def orders(side: Side) -> list[tuple[int, int, int, int]]:
        return [
            (o.order_id, o.participant_id, o.price, o.remaining) for o in book.resting_orders(side)
        ]

    return SeenBook(
        book.depth(Side.BUY, 1_000),
        book.depth(Side.SELL, 1_000),
        orders(Side.BUY),
        orders(Side.SELL),
    )


def run_session(data_dir: Path, seed: int, orders: int) -> Session:
    """A seeded session in two runs of the exchange (so a snapshot sits in the middle), noting
    the books as they stood after every batch."""
    seen: dict[tuple[str, int], SeenBook] = {}
    listed_at: dict[str, int] = {}
    trades: list[Trade] = []
    workload = MarketWorkload(seed, traders=8)

    async def run(commands: int, first: bool) -> tuple[dict[int, OrderRecord], Any]:
        exchange = Exchange(
            data_dir, fsync=False, snapshot_every=NEVER, clock=counting_clock(10**18, 1_000)
        )
        await exchange.start()

        def note(results: list[Any]) -> None:
            sequence = results[-1].sequence
            for instrument in INSTRUMENTS:
                if exchange.core.engine.book(instrument.symbol) is not None:
                    listed_at.setdefault(instrument.symbol, sequence)
                    seen[(instrument.symbol, sequence)] = live_book(exchange, instrument.symbol)
            for result in results:
                trades.extend(e for e in result.events if isinstance(e, Trade))

        exchange.subscribe(note)
        if first:
            for command in workload.setup():
                workload.observe((await exchange.submit(command)).events)
        for _ in range(commands // 16):  # concurrent submissions, so real batches form
            batch = [workload.next_command() for _ in range(16)]
            for result in await asyncio.gather(*(exchange.submit(c) for c in batch)):
                workload.observe(result.events)
        orders_now, audit = dict(exchange.core.orders), exchange.audit
        await exchange.stop(snapshot=True)
        return orders_now, audit

    asyncio.run(run(orders // 2, True))
    final_orders, audit = asyncio.run(run(orders // 2, False))
    histories = {order_id: audit.history(order_id) for order_id in final_orders}
    return Session(data_dir, seen, listed_at, final_orders, histories, trades)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return run_session(tmp_path_factory.mktemp("history"), seed=7, orders=3_000)


# ------------------------------------------------------------------------------------------------
# Lifecycle completeness


def final_state_from_history(history: list[AuditEntry]) -> dict[str, Any]:
    """Fold an order's audit events, and nothing else, into the state the exchange reports."""
    state: dict[str, Any] = {"filled": 0, "status": None, "reason": None, "trades": []}
    for entry in history:
        details = entry.details
        if entry.kind in ("accepted", "amended"):
            state["quantity"], state["price"] = details["quantity"], details["price"]
        elif entry.kind == "fill":
            state["filled"] += details["quantity"]
            state["trades"].append(details["trade_id"])
        elif entry.kind == "cancelled":
            state["status"], state["reason"] = OrderStatus.CANCELLED, details["reason"]
        elif entry.kind == "expired":
            state["status"] = OrderStatus.EXPIRED
    if state["status"] is None:
        if state["filled"] == state["quantity"]:
            state["status"] = OrderStatus.FILLED
        else:
            state["status"] = OrderStatus.PARTIALLY_FILLED if state["filled"] else OrderStatus.NEW
    return state


def test_every_orders_audit_events_reproduce_its_final_state(session: Session) -> None:
    assert len(session.exchange_orders) > 1_000
    for order_id, record in session.exchange_orders.items():
        history = session.histories[order_id]
        assert history, order_id
        assert history[0].kind == "registered"
        assert [entry.sequence for entry in history] == sorted(e.sequence for e in history)
        folded = final_state_from_history(history)
        assert folded["status"] is record.status, (order_id, history)
        assert folded["filled"] == record.filled_quantity
        assert folded["quantity"] == record.quantity
        assert folded["price"] == record.price
        assert folded["reason"] == record.cancel_reason
        assert folded["trades"] == [fill.trade_id for fill in record.fills or ()]


def test_every_trade_appears_once_on_each_side(session: Session) -> None:
    assert len(session.trades) > 200
    sides: Counter[tuple[int, str]] = Counter()
    for history in session.histories.values():
        for entry in history:
            if entry.kind == "fill":
                sides[(entry.details["trade_id"], entry.details["liquidity"])] += 1
    expected = Counter(
        key
        for trade in session.trades
        for key in ((trade.trade_id, "maker"), (trade.trade_id, "taker"))
    )
    assert sides == expected


def test_every_step_names_the_command_that_caused_it(session: Session) -> None:
    commands = {entry.command for history in session.histories.values() for entry in history}
    assert {"place_order", "cancel_order", "amend_order"} <= commands
    for history in session.histories.values():
        assert history[0].command == "place_order"


# ------------------------------------------------------------------------------------------------
# Time travel


def test_the_book_after_any_sequence_is_the_book_the_market_held_then(session: Session) -> None:
    snapshot_sequences = [
        int(p.stem.split("-")[1]) for p in snapshots_newest_first(session.data_dir)
    ]
    assert len(snapshot_sequences) == 2  # one between the two runs, one at the end
    keys = sorted(session.seen)
    middle = min(snapshot_sequences)
    chosen = keys[:: max(1, len(keys) // 12)] + [k for k in keys if k[1] in (middle, middle + 1)]
    for symbol, sequence in chosen:
        past = book_at(session.data_dir, symbol, sequence, depth=1_000, with_orders=True)
        seen = session.seen[(symbol, sequence)]
        assert past.sequence == sequence
        assert (past.bids, past.asks) == (seen.bids, seen.asks), (symbol, sequence)
        assert (past.bid_orders, past.ask_orders) == (seen.bid_orders, seen.ask_orders)


def test_the_past_book_is_limited_to_the_asked_depth(session: Session) -> None:
    (symbol, sequence) = max(session.seen)
    past = book_at(session.data_dir, symbol, sequence, depth=2, with_orders=False)
    assert past.bids == session.seen[(symbol, sequence)].bids[:2]
    assert past.bid_orders == [] and past.ask_orders == []


def test_an_instrument_has_no_book_before_it_was_listed(session: Session) -> None:
    symbol = INSTRUMENTS[0].symbol
    with pytest.raises(NotListedThen):
        book_at(session.data_dir, symbol, session.listed_at[symbol] - 1, 10, False)


# ------------------------------------------------------------------------------------------------
# Daily head hashes


def three_day_journal(data_dir: Path) -> None:
    """Records on 2 and 3 March (Vietnam time), none on 4 March, more on 5 March."""
    times = iter(
        [MARCH_2_VN_MIDNIGHT_NS + 9 * HOUR_NS + i for i in range(5)]
        + [MARCH_2_VN_MIDNIGHT_NS + 24 * HOUR_NS + 10 * HOUR_NS + i for i in range(3)]
        + [MARCH_2_VN_MIDNIGHT_NS + 72 * HOUR_NS + 8 * HOUR_NS + i for i in range(4)]
    )

    async def run() -> None:
        exchange = Exchange(data_dir, fsync=False, snapshot_every=NEVER, clock=times.__next__)
        await exchange.start()
        for command in MarketWorkload(1, traders=12).setup()[:12]:
            await exchange.submit(command)
        await exchange.stop(snapshot=False)

    asyncio.run(run())


def test_a_days_head_is_published_once_the_day_is_over(tmp_path: Path) -> None:
    three_day_journal(tmp_path)
    heads = DailyHeads(tmp_path)
    on_march_4 = MARCH_2_VN_MIDNIGHT_NS + 50 * HOUR_NS
    published = heads.publish_closed_days(journal_dir(tmp_path), 12, on_march_4)
    assert [(h.date, h.first_sequence, h.last_sequence, h.records) for h in published] == [
        ("2026-03-02", 1, 5, 5),
        ("2026-03-03", 6, 8, 3),
    ]
    records = {r.sequence: r for r in read_committed(journal_dir(tmp_path), 1, 12)}
    for head in published:
        assert head.head_hash == records[head.last_sequence].hash.hex()
        assert vietnam_date(head.time_ns).isoformat() == head.date
    # Nothing twice; the open day waits until it is over.
    assert heads.publish_closed_days(journal_dir(tmp_path), 12, on_march_4) == []
    on_march_6 = MARCH_2_VN_MIDNIGHT_NS + 4 * 24 * HOUR_NS
    later = heads.publish_closed_days(journal_dir(tmp_path), 12, on_march_6)
    assert [(h.date, h.first_sequence, h.last_sequence) for h in later] == [("2026-03-05", 9, 12)]
    # Kept on disk: a restarted exchange knows what it published.
    assert [h.date for h in DailyHeads(tmp_path).heads] == [
        "2026-03-02",
        "2026-03-03",
        "2026-03-05",
    ]


def test_a_head_published_earlier_anchors_the_journal(tmp_path: Path) -> None:
    three_day_journal(tmp_path)
    heads = DailyHeads(tmp_path)
    first = heads.publish_closed_days(
        journal_dir(tmp_path), 12, MARCH_2_VN_MIDNIGHT_NS + 99 * HOUR_NS
    )[0]
    anchor = (first.last_sequence, bytes.fromhex(first.head_hash))
    assert verify(journal_dir(tmp_path), anchor=anchor).ok
    forged = (first.last_sequence, bytes(32))
    report = verify(journal_dir(tmp_path), anchor=forged)
    assert not report.ok and report.first_bad_sequence == first.last_sequence


def test_a_head_line_torn_by_a_crash_is_published_again(tmp_path: Path) -> None:
    three_day_journal(tmp_path)
    after_all = MARCH_2_VN_MIDNIGHT_NS + 99 * HOUR_NS
    DailyHeads(tmp_path).publish_closed_days(journal_dir(tmp_path), 12, after_all)
    path = tmp_path / HEADS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 20])  # tear the last line
    heads = DailyHeads(tmp_path)
    assert [h.date for h in heads.heads] == ["2026-03-02", "2026-03-03"]
    again = heads.publish_closed_days(journal_dir(tmp_path), 12, after_all)
    assert [h.date for h in again] == ["2026-03-05"]
    assert path.read_bytes() == whole
