"""The websocket market-data feed (`GET /v1/ws`) keeps the contract of API.md (issue 6).

Everything runs against a real `hogx serve` child process, reached by real websocket clients (the
`websockets` library) and real HTTP. One server is shared by the module; each test lists its own
instruments, so tests cannot see each other's books, trades or feeds.

The standard instrument: lots of 100 kg, tick 100 VND, reference 60,000 VND/kg, 10 % band
(54,000..66,000).

The book checksum is recomputed here from the documented rule (exchange/feed.py, `book_checksum`):
CRC32 (unsigned) of `price:quantity` of the top 10 bids (best first) joined by commas, a `|`, then
the top 10 asks (best first) joined by commas; e.g. `60000:5,59900:12|60100:3`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, start_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.ws import MAX_SUBSCRIPTIONS

pytestmark = pytest.mark.timeout(90)

LOT_SIZE = 100
TICK = 100
REFERENCE = 60_000
BAND_LOW = 54_000
CHECKSUM_LEVELS = 10
VND = 10**13
LOTS = 10**6

_symbol_numbers = itertools.count(1)

Frame = dict[str, Any]


# ---------------------------------------------------------------------- the documented checksum


def documented_checksum(bids: dict[int, int], asks: dict[int, int]) -> int:
    """The client side of the checksum rule, written from its documentation."""
    best_bids = sorted(bids.items(), key=lambda level: -level[0])[:CHECKSUM_LEVELS]
    best_asks = sorted(asks.items())[:CHECKSUM_LEVELS]
    text = (
        ",".join(f"{price}:{quantity}" for price, quantity in best_bids)
        + "|"
        + ",".join(f"{price}:{quantity}" for price, quantity in best_asks)
    )
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


def test_documented_checksum_example() -> None:
    """The example of the documentation, and the CRC-32 (IEEE) check value of `123456789`."""
    assert documented_checksum({60_000: 5, 59_900: 12}, {60_100: 3}) == zlib.crc32(
        b"60000:5,59900:12|60100:3"
    )
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert documented_checksum({}, {}) == zlib.crc32(b"|")


class LocalBook:
    """A client's book, kept from a snapshot and updates; `apply` lists what went wrong."""

    def __init__(self, symbol: str, depth: int | None = None) -> None:
        self.symbol = symbol
        self.depth = depth
        self.bids: dict[int, tuple[int, int]] = {}  # price -> (quantity, orders)
        self.asks: dict[int, tuple[int, int]] = {}
        self.sequence: int | None = None  # None: waiting for a snapshot
        self.snapshots = 0
        self.updates = 0
        self.resyncs = 0

    def apply(self, frame: Frame) -> list[str]:
        if frame.get("type") == "resync":  # whatever its channel: a fresh snapshot must follow
            self.resyncs += 1
            self.sequence = None
            return []
        if frame.get("channel") != "book" or frame.get("symbol") != self.symbol:
            return []
        problems: list[str] = []
        kind = frame["type"]
        if kind == "snapshot":
            self.snapshots += 1
            self.bids = {price: (quantity, orders) for price, quantity, orders in frame["bids"]}
            self.asks = {price: (quantity, orders) for price, quantity, orders in frame["asks"]}
            if frame.get("depth") != self.depth:
                problems.append(f"snapshot depth {frame.get('depth')} != {self.depth}")
        elif kind == "update":
            self.updates += 1
            if self.sequence is None:
                return [f"update at {frame['sequence']} before any snapshot"]
            if frame["sequence"] <= self.sequence:
                problems.append(f"update at {frame['sequence']} after {self.sequence}")
            for side, price, quantity, orders in frame["changes"]:
                levels = self.bids if side == "buy" else self.asks
                if quantity == 0:
                    levels.pop(price, None)
                else:
                    levels[price] = (quantity, orders)
        else:
            return [f"unexpected book frame {frame}"]
        self.sequence = frame["sequence"]
        if self.depth is not None and max(len(self.bids), len(self.asks)) > self.depth:
            problems.append(f"more than {self.depth} levels at {frame['sequence']}")
        if self.checksum() != frame["checksum"]:
            problems.append(f"checksum mismatch at {frame['sequence']}: {self.levels()}")
        return problems

    def checksum(self) -> int:
        """The documented checksum of this local book (quantities only)."""
        return documented_checksum(
            {p: q for p, (q, _) in self.bids.items()}, {p: q for p, (q, _) in self.asks.items()}
        )

    def levels(self) -> tuple[list[list[int]], list[list[int]]]:
        bids = [[p, q, n] for p, (q, n) in sorted(self.bids.items(), key=lambda level: -level[0])]
        asks = [[p, q, n] for p, (q, n) in sorted(self.asks.items())]
        return bids, asks


def rest_levels(book: Frame) -> tuple[list[list[int]], list[list[int]]]:
    """A REST book's levels, `[price, quantity, orders]` best first: what updates rebuild."""
    return [list(level) for level in book["bids"]], [list(level) for level in book["asks"]]


# ---------------------------------------------------------------------- server and HTTP helpers


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("feed") / "data")
    try:
        yield server
    finally:
        assert server.stop(), "the server did not shut down cleanly"


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://", 1) + "/v1/ws"


@dataclass
class Trader:
    participant_id: int
    api_key: str


class Venue:
    """Fresh instruments and funded traders on the shared server (sync HTTP, for setup)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.operator = server.client(server.operator_key)
        self.public = server.client()

    def close(self) -> None:
        self.operator.close()
        self.public.close()

    def list_instrument(self) -> str:
        symbol = f"F{next(_symbol_numbers):03d}-HOG"
        answer = self.operator.post(
            "/v1/admin/instruments",
            json={
                "symbol": symbol,
                "name": f"Live hogs {symbol}",
                "kind": "live_hog",
                "price_unit": "kg",
                "lot_size": LOT_SIZE,
                "tick_size": TICK,
                "reference_price": REFERENCE,
                "price_band_pct": 10,
                "attributes": {"grade": "1", "delivery_hub": "Ho Chi Minh City"},
            },
        )
        assert answer.status_code == 201, answer.text
        return symbol

    def trader(self, name: str, symbols: list[str]) -> Trader:
        answer = self.operator.post("/v1/admin/participants", json={"name": name, "role": "trader"})
        assert answer.status_code == 201, answer.text
        trader = Trader(answer.json()["participant_id"], answer.json()["api_key"])
        for asset, amount in [("VND", VND), *((symbol, LOTS) for symbol in symbols)]:
            deposit = self.operator.post(
                "/v1/admin/deposits",
                json={"participant_id": trader.participant_id, "asset": asset, "amount": amount},
            )
            assert deposit.status_code == 201, deposit.text
        return trader

    def get(self, path: str, **params: Any) -> Frame:
        answer = self.public.get(path, params=params)
        assert answer.status_code == 200, answer.text
        body: Frame = answer.json()
        return body

    def book(self, symbol: str, depth: int = 1_000) -> Frame:
        return self.get(f"/v1/markets/{symbol}/book", depth=depth)


@pytest.fixture
def venue(exchange: Server) -> Iterator[Venue]:
    opened = Venue(exchange)
    try:
        yield opened
    finally:
        opened.close()


def http_for(server: Server, trader: Trader) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {trader.api_key}"}, timeout=10
    )


async def place(
    http: httpx.AsyncClient, symbol: str, side: str, price: int, quantity: int
) -> Frame:
    answer = await http.post(
        "/v1/orders",
        json={
            "symbol": symbol,
            "side": side,
            "type": "limit",
            "price": price,
            "quantity": quantity,
        },
    )
    assert answer.status_code == 201, answer.text
    body: Frame = answer.json()
    return body


# ---------------------------------------------------------------------- websocket helpers


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Frame:
    frame: Frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def recv_until(
    ws: ClientConnection, predicate: Callable[[Frame], bool], timeout: float = 5.0
) -> tuple[Frame, list[Frame]]:
    """The first frame matching `predicate`, and every frame before it."""
    deadline = time.monotonic() + timeout
    skipped: list[Frame] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {timeout} s; got {skipped[-5:]}")
        frame = await recv_json(ws, remaining)
        if predicate(frame):
            return frame, skipped
        skipped.append(frame)


async def send(ws: ClientConnection, **message: Any) -> None:
    await ws.send(json.dumps(message))


async def subscribe(ws: ClientConnection, channel: str, symbol: str, **more: Any) -> None:
    await send(ws, op="subscribe", channel=channel, symbol=symbol, **more)


def is_snapshot(symbol: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("type") == "snapshot" and f.get("symbol") == symbol


class Recorder:
    """Reads one connection in the background, keeping every frame with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[tuple[float, Frame]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append((time.monotonic(), json.loads(message)))
        except ConnectionClosed:
            pass

    @property
    def received(self) -> list[Frame]:
        return [frame for _, frame in self.frames]

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, frame in reversed(self.frames):
                if predicate(frame):
                    return frame
            if self.task.done():
                break
            await asyncio.sleep(0.01)
        raise AssertionError(f"no matching frame within {timeout} s; last {self.received[-3:]}")

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), 5)
        await asyncio.wait_for(self.task, 5)


def run(coroutine: Awaitable[Any], timeout: float = 60.0) -> Any:
    """Run a test's coroutine with an overall bound."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


# ---------------------------------------------------------------------- a seeded random flow


@dataclass
class FlowLog:
    trade_ids: list[str] = field(default_factory=list)  # from the order answers
    actions: int = 0


async def random_flow(
    server: Server, symbol: str, traders: list[Trader], seed: int, actions: int, log: FlowLog
) -> None:
    """Several traders place, cancel and amend limit orders at random; buys and sells overlap,
    so many orders cross. Each trader's choices come from its own seeded generator."""

    async def trade(trader: Trader, rng: random.Random) -> None:
        open_orders: list[str] = []
        async with http_for(server, trader) as http:
            for _ in range(actions):
                log.actions += 1
                roll = rng.random()
                if roll < 0.6 or not open_orders:
                    side = rng.choice(("buy", "sell"))
                    offset = rng.randint(-40, 6) if side == "buy" else rng.randint(-6, 40)
                    body = await place(
                        http, symbol, side, REFERENCE + offset * TICK, rng.randint(1, 9)
                    )
                    log.trade_ids += [t["trade_id"] for t in body.get("trades") or []]
                    if body["status"] in ("new", "partially_filled"):
                        open_orders.append(body["order_id"])
                    continue
                order_id = rng.choice(open_orders)
                if roll < 0.8:
                    answer = await http.delete(f"/v1/orders/{order_id}")
                    assert answer.status_code in (200, 409), answer.text
                    open_orders.remove(order_id)
                    continue
                if rng.random() < 0.5:
                    change = {"quantity": rng.randint(1, 12)}
                else:
                    change = {"price": REFERENCE + rng.randint(-30, 30) * TICK}
                answer = await http.patch(f"/v1/orders/{order_id}", json=change)
                assert answer.status_code in (200, 400, 409), answer.text
                if answer.status_code == 200:
                    body = answer.json()
                    if body["status"] not in ("new", "partially_filled"):
                        open_orders.remove(order_id)
                elif answer.status_code == 409:
                    open_orders.remove(order_id)

    master = random.Random(seed)
    await asyncio.gather(
        *(trade(trader, random.Random(master.getrandbits(64))) for trader in traders)
    )


async def place_marker(server: Server, venue: Venue, symbol: str, trader: Trader) -> int:
    """A last order that surely changes the top of the book without trading; its sequence."""
    book = venue.book(symbol, 5)
    price = book["bids"][0][0] if book["bids"] else BAND_LOW
    async with http_for(server, trader) as http:
        body = await place(http, symbol, "buy", price, 1)
    assert body["status"] == "new", body
    sequence: int = body["sequence"]
    return sequence


@dataclass
class ObservedFlow:
    symbol: str
    flow: FlowLog
    marker_sequence: int
    full: list[Frame]
    top5: list[Frame]
    market: list[Frame]  # trades and ticker
    rest_book: Frame
    rest_top5: Frame
    rest_ticker: Frame
    rest_trades: list[Frame]


@pytest.fixture(scope="module")
def observed_flow(exchange: Server) -> ObservedFlow:
    """One seeded random flow watched by three clients: the whole book, the top 5 levels, and
    trades with the ticker; then, once idle, the REST view of the same market."""
    venue = Venue(exchange)
    symbol = venue.list_instrument()
    traders = [venue.trader(f"flow-{i}", [symbol]) for i in range(4)]
    log = FlowLog()

    async def scenario() -> ObservedFlow:
        url = ws_url(exchange)
        async with (
            connect(url) as full_ws,
            connect(url) as top5_ws,
            connect(url) as market_ws,
        ):
            await subscribe(full_ws, "book", symbol)
            await subscribe(top5_ws, "book", symbol, depth=5)
            await subscribe(market_ws, "trades", symbol)
            await subscribe(market_ws, "ticker", symbol)
            recorders = [Recorder(ws) for ws in (full_ws, top5_ws, market_ws)]
            await recorders[0].wait_for(is_snapshot(symbol))
            await recorders[1].wait_for(is_snapshot(symbol))
            await recorders[2].wait_for(lambda f: f.get("type") == "ticker")
            await random_flow(exchange, symbol, traders, seed=20_261_122, actions=80, log=log)
            marker = await place_marker(exchange, venue, symbol, traders[0])
            for recorder, kind in zip(recorders, ("update", "update", "ticker"), strict=True):
                await recorder.wait_for(
                    lambda f, kind=kind: f.get("type") == kind and f["sequence"] >= marker
                )
            await asyncio.sleep(0.2)  # anything late would show up now
            observed = ObservedFlow(
                symbol=symbol,
                flow=log,
                marker_sequence=marker,
                full=[],
                top5=[],
                market=[],
                rest_book=venue.book(symbol),
                rest_top5=venue.book(symbol, 5),
                rest_ticker=venue.get(f"/v1/markets/{symbol}/ticker"),
                rest_trades=venue.get(f"/v1/markets/{symbol}/trades", limit=1_000)["trades"],
            )
            for recorder in recorders:
                await recorder.close()
            observed.full, observed.top5, observed.market = (r.received for r in recorders)
            return observed

    try:
        result: ObservedFlow = run(scenario())
    finally:
        venue.close()
    assert result.rest_book["sequence"] == result.marker_sequence, "the server was not idle"
    return result


# ---------------------------------------------------------------------- 1. book consistency


def check_book_stream(frames: list[Frame], book: LocalBook) -> list[str]:
    problems: list[str] = []
    for frame in frames:
        if frame.get("type") == "heartbeat":
            continue
        problems += book.apply(frame)
    return problems


def test_book_updates_match_checksum_and_end_equal_to_rest(observed_flow: ObservedFlow) -> None:
    flow = observed_flow
    book = LocalBook(flow.symbol)
    assert check_book_stream(flow.full, book) == []
    assert book.snapshots == 1 and book.resyncs == 0
    # Updates are coalesced per 25 ms window, so how many depends on the machine's pace; ten
    # still exercise the checksum and the end state meaningfully.
    assert book.updates >= 10, f"only {book.updates} updates for {flow.flow.actions} actions"
    assert flow.flow.trade_ids, "the flow made no trade"
    assert len(flow.rest_book["bids"]) > CHECKSUM_LEVELS, "the flow left a shallow book"
    # Idle: the local book is the REST book, at the same sequence.
    assert book.levels() == rest_levels(flow.rest_book)
    assert book.sequence == flow.rest_book["sequence"] == flow.marker_sequence
    updates = [f for f in flow.full if f["type"] == "update"]
    assert updates[-1]["checksum"] == book.checksum()
    assert all(f["channel"] == "book" and f["symbol"] == flow.symbol for f in updates)


def test_depth_limited_book_keeps_the_top_levels(observed_flow: ObservedFlow) -> None:
    flow = observed_flow
    book = LocalBook(flow.symbol, depth=5)
    assert check_book_stream(flow.top5, book) == []
    assert book.snapshots == 1 and book.resyncs == 0 and book.updates >= 10
    assert book.levels() == rest_levels(flow.rest_top5)
    assert book.sequence == flow.rest_top5["sequence"] == flow.marker_sequence
    assert len(book.bids) == 5 and len(book.asks) == 5


# ---------------------------------------------------------------------- 6. trades and ticker


def test_trades_channel_delivers_every_trade_once_in_order(observed_flow: ObservedFlow) -> None:
    flow = observed_flow
    trades = [f for f in flow.market if f["type"] == "trade"]
    assert all(f["channel"] == "trades" and f["symbol"] == flow.symbol for f in trades)
    ids = [f["trade_id"] for f in trades]
    assert len(ids) == len(set(ids)), "a trade arrived twice"
    assert set(flow.flow.trade_ids) <= set(ids)
    sequences = [f["sequence"] for f in trades]
    assert sequences == sorted(sequences)
    # Same trades, same order, same fields as REST (newest first there).
    oldest_first = list(reversed(flow.rest_trades))
    assert len(trades) == len(oldest_first) < 1_000
    for frame, rest in zip(trades, oldest_first, strict=True):
        assert {key: frame.get(key) for key in rest} == rest


def test_ticker_agrees_with_rest_when_idle(observed_flow: ObservedFlow) -> None:
    flow = observed_flow
    tickers = [f for f in flow.market if f["type"] == "ticker"]
    assert all(f["channel"] == "ticker" and f["symbol"] == flow.symbol for f in tickers)
    last = tickers[-1]
    assert {key: last.get(key) for key in flow.rest_ticker} == flow.rest_ticker
    assert last["sequence"] == flow.marker_sequence
    book = flow.rest_book
    assert last["best_bid"] == book["bids"][0][0] and last["best_ask"] == book["asks"][0][0]
    trades = list(reversed(flow.rest_trades))
    days = {vietnam_day_start(parse_time(t["time"])) for t in trades}
    if len(days) == 1:  # the flow did not straddle midnight in Vietnam
        prices = [t["price"] for t in trades]
        assert (last["open"], last["high"], last["low"], last["last_price"]) == (
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
        )
        assert last["volume"] == sum(t["quantity"] for t in trades)


# ---------------------------------------------------------------------- 3. reconnect, unsubscribe


def test_reconnect_and_resubscribe_gives_a_consistent_snapshot(
    exchange: Server, venue: Venue
) -> None:
    symbol = venue.list_instrument()
    traders = [venue.trader(f"reconnect-{i}", [symbol]) for i in range(3)]
    log = FlowLog()

    async def scenario() -> None:
        url = ws_url(exchange)
        # A first client watches part of the flow, then goes away in the middle of it.
        first = Recorder(await connect(url))
        await subscribe(first.ws, "book", symbol)
        await first.wait_for(is_snapshot(symbol))
        flow = asyncio.create_task(random_flow(exchange, symbol, traders, 7, 60, log))
        await first.wait_for(lambda f: f.get("type") == "update")
        await first.close()
        book = LocalBook(symbol)
        assert check_book_stream(first.received, book) == []
        # It comes back while orders still flow: a fresh snapshot, then consistent updates.
        second = Recorder(await connect(url))
        await subscribe(second.ws, "book", symbol)
        await second.wait_for(is_snapshot(symbol))
        await flow
        marker = await place_marker(exchange, venue, symbol, traders[0])
        await second.wait_for(lambda f: f.get("type") == "update" and f["sequence"] >= marker)
        rest = venue.book(symbol)
        assert rest["sequence"] == marker
        book = LocalBook(symbol)
        assert check_book_stream(second.received, book) == []
        assert book.snapshots == 1 and book.updates >= 1
        assert book.levels() == rest_levels(rest) and book.sequence == marker
        await second.close()
        # Once idle, a snapshot is the REST book itself: same levels, order counts, sequence.
        async with connect(url) as third:
            await subscribe(third, "book", symbol)
            snapshot, _ = await recv_until(third, is_snapshot(symbol))
        assert snapshot["bids"] == rest["bids"] and snapshot["asks"] == rest["asks"]
        assert snapshot["sequence"] == rest["sequence"]
        assert snapshot["checksum"] == documented_checksum(
            {p: q for p, q, _ in rest["bids"]}, {p: q for p, q, _ in rest["asks"]}
        )

    run(scenario())


def test_unsubscribe_stops_that_channel(exchange: Server, venue: Venue) -> None:
    symbol = venue.list_instrument()
    traders = [venue.trader(f"unsubscribe-{i}", [symbol]) for i in range(2)]

    async def scenario() -> None:
        async with connect(ws_url(exchange)) as ws:
            await subscribe(ws, "book", symbol)
            await subscribe(ws, "trades", symbol)
            await recv_until(ws, is_snapshot(symbol))
            stop = asyncio.Event()

            async def keep_trading() -> None:
                async with (
                    http_for(exchange, traders[0]) as seller,
                    http_for(exchange, traders[1]) as buyer,
                ):
                    for i in itertools.count():
                        if stop.is_set():
                            return
                        price = REFERENCE + (i % 5) * TICK
                        await place(seller, symbol, "sell", price, 2)
                        await place(buyer, symbol, "buy", price, 1)

            flow = asyncio.create_task(keep_trading())
            try:
                await recv_until(ws, lambda f: f.get("type") == "update")
                await send(ws, op="unsubscribe", channel="book", symbol=symbol)
                ack, _ = await recv_until(ws, lambda f: f.get("type") == "unsubscribed")
                assert ack["channel"] == "book" and ack["symbol"] == symbol
                after: list[Frame] = []
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    after.append(await recv_json(ws, 2))
            finally:
                stop.set()
                await flow
            assert [f for f in after if f.get("channel") == "book"] == []
            assert len([f for f in after if f.get("type") == "trade"]) >= 5, after[-3:]

    run(scenario())


# ---------------------------------------------------------------------- 2. a stalled client

STALL_SYMBOLS = 8  # x (book, trades, ticker and 4 candle intervals) <= MAX_SUBSCRIPTIONS
CANDLE_INTERVALS = ("1m", "5m", "1h", "1d")
QUEUE_FRAMES = 2_000  # MAX_QUEUE_FRAMES of api/ws.py


def stalled_socket(server: Server) -> socket.socket:
    """A TCP connection that holds little: a small receive buffer, and small segments so that
    the server sizes its send buffer small too (on loopback it would take megabytes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4_096)
    if hasattr(socket, "TCP_MAXSEG"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    return sock


async def subscribe_everything(ws: ClientConnection, symbols: list[str]) -> None:
    for symbol in symbols:
        for channel in ("book", "trades", "ticker"):
            await subscribe(ws, channel, symbol)
        for interval in CANDLE_INTERVALS:
            await subscribe(ws, "candles", symbol, interval=interval)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass
class StalledRun:
    symbols: list[str]  # the last one trades once, while the client is stalled, then rests
    latencies: dict[str, list[float]]  # order round trips: "baseline" and "stalled"
    healthy: list[tuple[float, Frame]]  # arrival time, frame
    stall_mark: int  # index of the healthy client's first frame after the stall began
    flow_stopped: float  # when the orders stopped (time.monotonic)
    stalled: list[Frame]  # what the stalled client read once it read again
    close_code: int | None
    rest_books: dict[str, Frame]  # at the end, after a last marker order on symbols[-2]
    books_at_stop: dict[str, Frame]  # when the flow stopped, before the marker
    rest_tickers: dict[str, Frame]
    rest_candles: dict[str, Frame]  # the last 1m candle

    def diagnostics(self) -> dict[str, Any]:
        return {
            "p99_ms": {k: round(p99(v) * 1e3, 1) for k, v in self.latencies.items()},
            "samples": {k: len(v) for k, v in self.latencies.items()},
            "healthy_frames_while_stalled": len(self.healthy) - self.stall_mark,
            "stalled_frames_read": len(self.stalled),
            "resyncs_seen": sum(f.get("type") == "resync" for f in self.stalled),
            "close_code": self.close_code,
        }


@pytest.fixture(scope="module")
def stalled_run(exchange: Server) -> StalledRun:
    """One client subscribes to everything on 8 symbols and stops reading while takers trade on 7
    of them, one lot per order against deep resting liquidity (about 1,500 frames/s per client);
    another client reads normally and a prober times its orders, before and during the stall.
    The quiet 8th symbol trades once after the stalled client's kernel buffers are full, so its
    ticker and candle frames sit in the server's queue when that queue overflows."""
    venue = Venue(exchange)
    symbols = [venue.list_instrument() for _ in range(STALL_SYMBOLS)]
    busy, quiet = symbols[:-1], symbols[-1]
    maker = venue.trader("stall-maker", symbols)
    takers = [venue.trader(f"stall-taker-{i}", symbols) for i in range(3)]
    prober = venue.trader("stall-prober", symbols)
    url = ws_url(exchange)

    async def scenario() -> StalledRun:
        async with http_for(exchange, maker) as http:
            for symbol in symbols:  # every taker order trades one lot
                await place(http, symbol, "buy", REFERENCE - TICK, 100_000)
                await place(http, symbol, "sell", REFERENCE + TICK, 100_000)
        healthy = Recorder(await connect(url))
        await subscribe_everything(healthy.ws, symbols)
        for symbol in symbols:
            await healthy.wait_for(is_snapshot(symbol))
        stop = asyncio.Event()
        phase = "baseline"
        latencies: dict[str, list[float]] = {"baseline": [], "stalled": []}

        async def take(trader: Trader, start: int) -> None:
            async with http_for(exchange, trader) as http:
                for i in itertools.count(start):
                    if stop.is_set():
                        return
                    symbol = busy[i % len(busy)]
                    if i // len(busy) % 2:
                        await place(http, symbol, "buy", REFERENCE + TICK, 1)
                    else:
                        await place(http, symbol, "sell", REFERENCE - TICK, 1)

        async def probe() -> None:
            async with http_for(exchange, prober) as http:
                while not stop.is_set():
                    started = time.perf_counter()
                    await place(http, busy[0], "buy", BAND_LOW, 1)
                    latencies[phase].append(time.perf_counter() - started)
                    await asyncio.sleep(0.005)

        async def healthy_frames_since(mark: int, count: int) -> None:
            deadline = time.monotonic() + 15
            while len(healthy.frames) - mark < count:
                assert time.monotonic() < deadline, "the flow is too slow"
                await asyncio.sleep(0.02)

        workers = [asyncio.create_task(take(t, 5 * i)) for i, t in enumerate(takers)]
        workers.append(asyncio.create_task(probe()))
        stalled = None
        try:
            await asyncio.sleep(2.0)
            baseline_until = time.monotonic() + 8
            while len(latencies["baseline"]) < 100 and time.monotonic() < baseline_until:
                await asyncio.sleep(0.05)
            stalled = await connect(
                url, sock=stalled_socket(exchange), max_queue=1, ping_interval=None
            )
            await subscribe_everything(stalled, symbols)
            phase = "stalled"
            mark = len(healthy.frames)
            # Its kernel buffers take about 1,300 frames (here; 2,500 allowed), then the server's
            # queue fills: the quiet symbol's frames are in that queue when it overflows.
            await healthy_frames_since(mark, 2_500)
            async with http_for(exchange, takers[0]) as http:
                await place(http, quiet, "buy", REFERENCE + TICK, 3)
            await healthy_frames_since(mark, 2_500 + int(1.75 * QUEUE_FRAMES))
        finally:
            stop.set()
            flow_stopped = time.monotonic()
            await asyncio.gather(*workers)
        books_at_stop = {s: venue.book(s) for s in symbols}
        # The stalled client reads again.
        seen: list[Frame] = []
        close_code = None
        try:
            resync_at = None
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                frame = await recv_json(stalled, deadline - time.monotonic())
                seen.append(frame)
                if frame.get("type") == "resync" and resync_at is None:
                    resync_at = len(seen)
                if resync_at is not None:
                    fresh = {f["symbol"] for f in seen[resync_at:] if f.get("type") == "snapshot"}
                    if fresh == set(symbols):
                        break
            with contextlib.suppress(TimeoutError):  # and whatever else is on its way
                while True:
                    seen.append(await recv_json(stalled, 0.3))
        except ConnectionClosed as closed:
            close_code = closed.rcvd.code if closed.rcvd is not None else None
        finally:
            stalled.transport.abort()
        marker = await place_marker(exchange, venue, busy[-1], prober)
        await healthy.wait_for(lambda f: f.get("type") == "update" and f["sequence"] >= marker)
        await healthy.close()
        return StalledRun(
            symbols=symbols,
            latencies=latencies,
            healthy=healthy.frames,
            stall_mark=mark,
            flow_stopped=flow_stopped,
            stalled=seen,
            close_code=close_code,
            rest_books={s: venue.book(s) for s in symbols},
            books_at_stop=books_at_stop,
            rest_tickers={s: venue.get(f"/v1/markets/{s}/ticker") for s in symbols},
            rest_candles={
                s: venue.get(f"/v1/markets/{s}/candles", interval="1m")["candles"][-1]
                for s in symbols
            },
        )

    try:
        result: StalledRun = run(scenario(), timeout=75)
    finally:
        venue.close()
    print(result.diagnostics())
    return result


def test_a_stalled_client_does_not_slow_order_acknowledgements(stalled_run: StalledRun) -> None:
    latencies, diagnostics = stalled_run.latencies, stalled_run.diagnostics()
    assert len(latencies["baseline"]) >= 50 and len(latencies["stalled"]) >= 50, diagnostics
    base, slowed = p99(latencies["baseline"]), p99(latencies["stalled"])
    # The stalled client's queue costs the server some CPU, which a slow day of this 2-core
    # machine turns into up to ~100 ms at p99 (the code of 2026-12-05 too, measured alike);
    # a stall that blocked acknowledgements would cost seconds.
    assert slowed <= max(3 * base, base + 0.1), diagnostics
    assert slowed < 0.25, diagnostics


def test_a_stalled_client_does_not_delay_other_clients(stalled_run: StalledRun) -> None:
    run_ = stalled_run
    arrivals = [at for at, _ in run_.healthy[run_.stall_mark :] if at <= run_.flow_stopped]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # A feed held up by the stalled client would stop for the whole stall; pauses of a few
    # hundred ms (a GC pass, the ledger catching up, a busy CI core) are not that.
    assert max(gaps) < 2.0, f"the healthy feed stopped for {max(gaps):.2f} s"
    assert run_.flow_stopped - arrivals[0] > 3 * max(gaps), "the stall was too short to tell"
    frames = [frame for _, frame in run_.healthy]
    assert [f for f in frames if f.get("type") == "resync"] == []
    for symbol in run_.symbols[:-1]:
        sequences = [
            f["sequence"]
            for f in frames[run_.stall_mark :]
            if f.get("type") == "update" and f["symbol"] == symbol
        ]
        assert len(sequences) >= 10 and sequences == sorted(set(sequences)), symbol
    for symbol in run_.symbols:
        book = LocalBook(symbol)
        assert check_book_stream(frames, book) == [], symbol
        assert book.snapshots == 1
        assert book.levels() == rest_levels(run_.rest_books[symbol]), symbol


def test_a_stalled_client_is_resynced_or_closed_with_1013(stalled_run: StalledRun) -> None:
    run_, diagnostics = stalled_run, stalled_run.diagnostics()
    types = [f.get("type") for f in run_.stalled]
    assert "resync" in types or run_.close_code == 1013, diagnostics
    if run_.close_code is None:  # resynced and still open: fresh snapshots follow the resync
        after = run_.stalled[types.index("resync") :]
        assert {f["symbol"] for f in after if f.get("type") == "snapshot"} == set(run_.symbols)
        for symbol in run_.symbols:
            book = LocalBook(symbol)
            assert check_book_stream(after, book) == [], symbol
            assert book.levels() == rest_levels(run_.books_at_stop[symbol]), symbol


def test_a_resynced_client_gets_fresh_tickers_and_candles(stalled_run: StalledRun) -> None:
    run_ = stalled_run
    if run_.close_code is not None or "resync" not in [f.get("type") for f in run_.stalled]:
        pytest.skip(f"the stalled client was not resynced: {run_.diagnostics()}")
    quiet = run_.symbols[-1]
    tickers = [f for f in run_.stalled if f.get("type") == "ticker" and f["symbol"] == quiet]
    candles = [
        f
        for f in run_.stalled
        if f.get("type") == "candle" and f["symbol"] == quiet and f["interval"] == "1m"
    ]
    rest_ticker = run_.rest_tickers[quiet]
    assert tickers and candles
    assert {k: tickers[-1].get(k) for k in rest_ticker if k != "sequence"} == {
        k: v for k, v in rest_ticker.items() if k != "sequence"
    }
    assert candles[-1]["candle"] is not None
    assert {k: candles[-1]["candle"].get(k) for k in run_.rest_candles[quiet]} == (
        run_.rest_candles[quiet]
    )


# ---------------------------------------------------------------------- 4. bad client messages

INVALID_REQUEST, INVALID_SUBSCRIPTION = "INVALID_REQUEST", "INVALID_SUBSCRIPTION"


def book_subscription(**fields: Any) -> dict[str, Any]:
    """A subscribe message (the test adds the symbol) with some fields changed."""
    return {"op": "subscribe", "channel": "book", **fields}


BAD_MESSAGES: dict[str, tuple[str | dict[str, Any], str]] = {
    "not JSON": ("hello, feed", INVALID_REQUEST),
    "not an object": ("[1, 2, 3]", INVALID_REQUEST),
    "unknown op": (book_subscription(op="subscribe_all"), INVALID_REQUEST),
    "missing symbol": (book_subscription(), INVALID_REQUEST),
    "unknown field": (book_subscription(colour="red"), INVALID_REQUEST),
    "unknown channel": (book_subscription(channel="orders"), INVALID_SUBSCRIPTION),
    "unknown symbol": (book_subscription(symbol="NOPE-HOG"), INVALID_SUBSCRIPTION),
    "depth 0": (book_subscription(depth=0), INVALID_SUBSCRIPTION),
    "depth 1001": (book_subscription(depth=1001), INVALID_SUBSCRIPTION),
    "negative depth": (book_subscription(depth=-3), INVALID_SUBSCRIPTION),
    "depth not a number": (book_subscription(depth="ten"), INVALID_REQUEST),
    "bad interval": (book_subscription(channel="candles", interval="2m"), INVALID_SUBSCRIPTION),
    "oversized": (book_subscription(pad="x" * 65_536), INVALID_REQUEST),
}


@pytest.fixture(scope="module")
def quiet_symbol(exchange: Server) -> str:
    """An instrument nobody trades."""
    venue = Venue(exchange)
    try:
        return venue.list_instrument()
    finally:
        venue.close()


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_bad_message_gets_an_error_and_the_connection_stays_open(
    exchange: Server, quiet_symbol: str, case: str
) -> None:
    message, code = BAD_MESSAGES[case]
    if isinstance(message, dict):
        message = json.dumps(
            message if case == "missing symbol" else {"symbol": quiet_symbol, **message}
        )

    async def scenario() -> None:
        async with connect(ws_url(exchange)) as ws:
            await ws.send(message)
            error = await recv_json(ws)
            assert error["type"] == "error", error
            assert error["code"] == code, error
            assert isinstance(error["message"], str) and error["message"], error
            # Like every frame, it says what it is about: the channel and symbol of a request
            # that could be read (null for one that could not), and the sequence.
            assert isinstance(error["sequence"], int), error
            if code == INVALID_SUBSCRIPTION:
                sent = json.loads(message)
                assert (error["channel"], error["symbol"]) == (sent["channel"], sent["symbol"])
            else:
                assert {"channel", "symbol"} <= set(error), error
            assert len(json.dumps(error)) < 2_000, "the error echoes the whole message"
            await subscribe(ws, "book", quiet_symbol)
            snapshot = await recv_json(ws)
            assert is_snapshot(quiet_symbol)(snapshot), snapshot

    run(scenario(), timeout=20)


def test_too_many_subscriptions(exchange: Server, venue: Venue) -> None:
    symbols = [venue.list_instrument() for _ in range(MAX_SUBSCRIPTIONS // 4 + 1)]
    channels = ("book", "trades", "ticker", "candles")

    async def scenario() -> None:
        async with connect(ws_url(exchange)) as ws:
            for symbol in symbols[:-1]:
                for channel in channels:
                    await subscribe(ws, channel, symbol)
            extra = symbols[-1]
            await subscribe(ws, "book", extra)
            error, before = await recv_until(ws, lambda f: f.get("type") == "error")
            assert error["code"] == "TOO_MANY_SUBSCRIPTIONS", error
            # Subscribing again to what is already subscribed is not a new subscription.
            await subscribe(ws, "ticker", symbols[0])
            await recv_until(ws, lambda f: f.get("type") == "ticker" and f["symbol"] == symbols[0])
            # Freeing one makes room, on the same connection.
            await send(ws, op="unsubscribe", channel="trades", symbol=symbols[0])
            done, _ = await recv_until(ws, lambda f: f.get("type") == "unsubscribed")
            assert (done["channel"], done["symbol"]) == ("trades", symbols[0]), done
            assert isinstance(done["sequence"], int), done
            await subscribe(ws, "book", extra)
            _, skipped = await recv_until(ws, is_snapshot(extra))
            assert [f for f in before + skipped if f.get("type") == "error"] == []

    run(scenario(), timeout=30)


def test_unsubscribing_candles_without_an_interval_frees_every_interval(
    exchange: Server, venue: Venue
) -> None:
    symbols = [venue.list_instrument() for _ in range(MAX_SUBSCRIPTIONS // 4 + 1)]
    intervals = ("1m", "5m", "1h", "1d")

    async def scenario() -> None:
        async with connect(ws_url(exchange)) as ws:
            for symbol in symbols[:-1]:  # every subscription a connection may hold
                for interval in intervals:
                    await subscribe(ws, "candles", symbol, interval=interval)
            await send(ws, op="unsubscribe", channel="candles", symbol=symbols[0])
            done, before = await recv_until(ws, lambda f: f.get("type") == "unsubscribed")
            assert (done["channel"], done["symbol"]) == ("candles", symbols[0]), done
            for interval in intervals:  # all four were freed, not only "1m"
                await subscribe(ws, "candles", symbols[-1], interval=interval)
            await send(ws, op="unsubscribe", channel="candles", symbol=symbols[-1])
            _, after = await recv_until(ws, lambda f: f.get("type") == "unsubscribed")
            assert [f for f in before + after if f.get("type") == "error"] == []

    run(scenario(), timeout=30)


def test_unsubscribing_one_candle_interval_leaves_the_others_streaming(
    exchange: Server, venue: Venue
) -> None:
    symbol = venue.list_instrument()
    seller = venue.trader("interval-seller", [symbol])
    buyer = venue.trader("interval-buyer", [symbol])

    async def scenario() -> list[Frame]:
        async with connect(ws_url(exchange)) as ws:
            await subscribe(ws, "candles", symbol, interval="1m")
            await subscribe(ws, "candles", symbol, interval="1d")
            await send(ws, op="unsubscribe", channel="candles", symbol=symbol, interval="1m")
            await recv_until(ws, lambda f: f.get("type") == "unsubscribed")
            async with http_for(exchange, seller) as sell, http_for(exchange, buyer) as buy:
                await place(sell, symbol, "sell", REFERENCE, 1)
                assert (await place(buy, symbol, "buy", REFERENCE, 1))["status"] == "filled"
            traded, before = await recv_until(
                ws, lambda f: f.get("type") == "candle" and (f["candle"] or {}).get("volume")
            )
            return [*before, traded]

    frames = [f for f in run(scenario(), timeout=20) if f.get("type") == "candle"]
    assert frames[-1]["interval"] == "1d"  # still streaming
    assert not [f for f in frames if f["interval"] == "1m" and f["candle"]]


def test_subscribing_again_with_another_depth_replaces_the_book_stream(
    exchange: Server, quiet_symbol: str
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(ws_url(exchange)) as ws:
            for depth in range(1, MAX_SUBSCRIPTIONS + 9):
                await subscribe(ws, "book", quiet_symbol, depth=depth)
            frames: list[dict[str, Any]] = []
            with pytest.raises(TimeoutError):
                while True:
                    frames.append(await recv_json(ws, 1.0))
            return frames

    frames = run(scenario())
    assert [f for f in frames if f.get("type") == "error"] == []  # never over the limit
    snapshots = [f for f in frames if f.get("type") == "snapshot"]
    assert snapshots and snapshots[-1]["depth"] == MAX_SUBSCRIPTIONS + 8


def test_the_feed_asked_for_over_plain_http_says_to_upgrade(exchange: Server) -> None:
    answer = httpx.get(f"{exchange.url}/v1/ws")
    assert answer.status_code == 426, answer.text
    assert answer.json()["error"]["code"] == "UPGRADE_REQUIRED"
    assert answer.headers["upgrade"] == "websocket"


def test_binary_message_gets_an_error_and_the_connection_stays_open(
    exchange: Server, quiet_symbol: str
) -> None:
    async def scenario() -> None:
        async with connect(ws_url(exchange)) as ws:
            await ws.send(b"\x00\xffnot text")
            error = await recv_json(ws)
            assert error["type"] == "error" and error["code"] == "INVALID_REQUEST", error
            await subscribe(ws, "book", quiet_symbol)
            assert is_snapshot(quiet_symbol)(await recv_json(ws))

    run(scenario(), timeout=20)


# ---------------------------------------------------------------------- 5. heartbeat


def test_idle_connections_get_a_heartbeat(exchange: Server, quiet_symbol: str) -> None:
    async def idle(subscribed: bool) -> float:
        async with connect(ws_url(exchange)) as ws:
            if subscribed:
                await subscribe(ws, "book", quiet_symbol)
                await recv_until(ws, is_snapshot(quiet_symbol))
            started = time.monotonic()
            frame = await recv_json(ws, 7.0)
            waited = time.monotonic() - started
            assert frame["type"] == "heartbeat", frame
            return waited

    async def scenario() -> list[float]:
        return list(await asyncio.gather(idle(False), idle(True)))

    for waited in run(scenario(), timeout=15):
        assert waited < 5.0, f"heartbeat after {waited:.3f} s of silence"  # "at least every 5 s"


# ---------------------------------------------------------------------- 7. candles


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def vietnam_day_start(moment: datetime) -> datetime:
    """Midnight in Vietnam (UTC+7) starting the day of `moment`, in UTC."""
    local = moment + timedelta(hours=7)
    return local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=7)


KNOWN_TRADES = [(60_000, 2), (61_500, 1), (58_800, 3), (60_300, 4)]
KNOWN_CANDLE = {"open": 60_000, "high": 61_500, "low": 58_800, "close": 60_300, "volume": 10}


def test_candles_from_known_trades_equal_hand_computed_ohlcv(
    exchange: Server, venue: Venue
) -> None:
    async def attempt() -> bool:
        symbol = venue.list_instrument()
        seller = venue.trader("candle-seller", [symbol])
        buyer = venue.trader("candle-buyer", [symbol])
        async with (
            connect(ws_url(exchange)) as ws,
            http_for(exchange, seller) as sell,
            http_for(exchange, buyer) as buy,
        ):
            for interval in ("1m", "1d"):
                await subscribe(ws, "candles", symbol, interval=interval)
            recorder = Recorder(ws)
            for interval in ("1m", "1d"):
                first = await recorder.wait_for(
                    lambda f, i=interval: f.get("type") == "candle" and f["interval"] == i
                )
                assert first["candle"] is None and first["symbol"] == symbol
            for price, quantity in KNOWN_TRADES:
                await place(sell, symbol, "sell", price, quantity)
                taken = await place(buy, symbol, "buy", price, quantity)
                assert taken["status"] == "filled", taken
                assert [(t["price"], t["quantity"]) for t in taken["trades"]] == [(price, quantity)]
            frames = {}
            for interval in ("1m", "1d"):
                frames[interval] = await recorder.wait_for(
                    lambda f, i=interval: (
                        f.get("type") == "candle"
                        and f["interval"] == i
                        and (f["candle"] or {}).get("volume") == KNOWN_CANDLE["volume"]
                    )
                )
            await recorder.close()
        times = [parse_time(t["time"]) for t in venue.get(f"/v1/markets/{symbol}/trades")["trades"]]
        assert len(times) == len(KNOWN_TRADES)
        minute = min(times).replace(second=0, microsecond=0)
        if max(times) >= minute + timedelta(minutes=1):
            return False  # the trades straddled a minute: try again on a fresh symbol
        starts = {
            "1m": minute,
            "5m": minute.replace(minute=minute.minute - minute.minute % 5),
            "1h": minute.replace(minute=0),
            "1d": vietnam_day_start(minute),
        }
        for interval, start in starts.items():
            candles = venue.get(f"/v1/markets/{symbol}/candles", interval=interval)["candles"]
            assert len(candles) == 1, (interval, candles)
            assert parse_time(candles[0].pop("time")) == start, interval
            assert candles[0] == KNOWN_CANDLE, interval
        for interval, frame in frames.items():
            candle = dict(frame["candle"])
            assert parse_time(candle.pop("time")) == starts[interval]
            assert candle.pop("closed") is False
            assert candle == KNOWN_CANDLE, interval
            assert frame["channel"] == "candles" and frame["symbol"] == symbol
        return True

    for _ in range(2):
        if run(attempt(), timeout=30):
            return
    pytest.fail("the known trades straddled a minute twice")


def test_candles_ticker_and_trades_survive_a_restart(tmp_path: Path) -> None:
    """The market-data projections are rebuilt on start-up: the same candles, ticker and recent
    trades over REST, and the same candle on the channel."""
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    try:
        venue = Venue(server)
        symbol = venue.list_instrument()
        seller, buyer = venue.trader("seller", [symbol]), venue.trader("buyer", [symbol])

        async def trade() -> None:
            async with http_for(server, seller) as sell, http_for(server, buyer) as buy:
                for price, quantity in KNOWN_TRADES:
                    await place(sell, symbol, "sell", price, quantity)
                    await place(buy, symbol, "buy", price, quantity)

        run(trade(), timeout=20)
        queries: list[tuple[str, dict[str, Any]]] = [
            *((f"/v1/markets/{symbol}/candles", {"interval": i}) for i in ("1m", "5m", "1h", "1d")),
            (f"/v1/markets/{symbol}/ticker", {}),
            (f"/v1/markets/{symbol}/trades", {}),
        ]
        before = [venue.get(path, **params) for path, params in queries]
        venue.close()
        assert server.stop(), "the server did not shut down cleanly"
        server = start_server(data_dir, operator_key=server.operator_key)
        venue = Venue(server)
        assert [venue.get(path, **params) for path, params in queries] == before
        venue.close()

        async def candle() -> Frame:
            async with connect(ws_url(server)) as ws:
                await subscribe(ws, "candles", symbol, interval="1d")
                frame, _ = await recv_until(ws, lambda f: f.get("type") == "candle")
                return frame

        frame = run(candle(), timeout=10)
        assert len(before[3]["candles"]) == 1 and before[4]["volume"] == KNOWN_CANDLE["volume"]
        day_candle = {k: v for k, v in frame["candle"].items() if k != "closed"}
        assert day_candle == before[3]["candles"][-1]
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
