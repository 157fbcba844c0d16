"""Surveillance, one rule per test: each pattern raises exactly its alert; honest trading none.

Market used throughout: HOG-G1, lot 1,000 kg, tick 100 VND, reference 60,000 VND/kg, band 7 %.
Traders A, B and C (participant ids 1, 2, 3). Times are local Vietnam time (UTC+7) on one
trading day. Default thresholds unless a test says otherwise: spoofing 10 lots and 4 x what the
owner traded on the other side, within 10 s; marking the close 3 % in the 10 minutes before
15:00; unusual price move 5 % within 30 minutes.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from conftest import Server, start_server

from exchange import commands as c
from exchange.audit import AuditState
from exchange.core import CoreState, ExchangeCore
from exchange.events import CommandRejected, Event, OrderCancelled, OrderRegistered, Trade
from exchange.instruments import Instrument, InstrumentKind
from exchange.marketdata import MarketDataState
from exchange.participants import Role
from exchange.sessions import Session, Timetable
from exchange.snapshots import Recovered, SnapshotBody
from exchange.surveillance import (
    MARKING_THE_CLOSE,
    SELF_TRADE_ATTEMPT,
    SPOOFING,
    UNUSUAL_PRICE_MOVE,
    WASH_TRADE,
    Surveillance,
    SurveillanceState,
    empty_state,
)
from exchange.surveillance_config import SurveillanceConfig, load_config
from matching_engine import OrderType, Side, TimeInForce

A, B, C = 1, 2, 3
SYMBOL = "HOG-G1"
HOG = Instrument(SYMBOL, "Heo hơi loại 1", InstrumentKind.LIVE_HOG, 1_000, 100, 60_000)
VIETNAM = timezone(timedelta(hours=7))
TRADING_DAY = datetime(2026, 11, 20, tzinfo=VIETNAM)
LINKED_A_B = SurveillanceConfig(linked_participants=((A, B),))


def local(clock: str, day: int = 0) -> int:
    """UTC nanoseconds of `clock` ("HH:MM" or "HH:MM:SS", Vietnam time) on the trading day."""
    parts = [int(part) for part in clock.split(":")] + [0]
    moment = TRADING_DAY + timedelta(days=day, hours=parts[0], minutes=parts[1], seconds=parts[2])
    return int(moment.timestamp()) * 1_000_000_000


class Placed(msgspec.Struct):
    order_id: int
    trade_ids: list[int]
    events: list[Event]


class Market:
    """An exchange core with surveillance watching it, driven one command at a time."""

    def __init__(
        self,
        config: SurveillanceConfig | None = None,
        traders: int = 3,
        instrument: Instrument = HOG,
    ) -> None:
        self.core = ExchangeCore()
        self.surveillance = Surveillance()
        self.sequence = 0
        self.time_ns = local("08:00")
        self.log: list[tuple[int, int, c.Command, list[Event]]] = []  # what surveillance saw
        if config is not None:
            self.do(c.ConfigureSurveillance(config))
        for trader in range(1, traders + 1):
            name = f"trader-{trader}"
            key = hashlib.sha256(name.encode()).hexdigest()
            self.do(c.RegisterParticipant(name, Role.TRADER, key))
        self.do(c.ListInstrument(instrument))
        for trader in range(1, traders + 1):
            self.do(c.Deposit(trader, "VND", 10**13))
            self.do(c.Deposit(trader, SYMBOL, 10**6))

    def at(self, clock: str, day: int = 0) -> None:
        time_ns = local(clock, day)
        assert time_ns >= self.time_ns, "time never goes backwards"
        self.time_ns = time_ns

    def do(self, command: c.Command) -> list[Event]:
        self.sequence += 1
        events = self.core.apply(command, self.sequence, self.time_ns)
        self.surveillance.observe(self.sequence, self.time_ns, command, events)
        self.log.append((self.sequence, self.time_ns, command, events))
        return events

    def place(self, who: int, side: Side, price: int | None, quantity: int) -> Placed:
        order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
        tif = TimeInForce.GTC if price is not None else TimeInForce.IOC
        events = self.do(c.PlaceOrder(who, SYMBOL, side, order_type, price, quantity, tif))
        registered = [e for e in events if isinstance(e, OrderRegistered)]
        assert registered, events
        trades = [e.trade_id for e in events if isinstance(e, Trade)]
        return Placed(registered[0].order_id, trades, events)

    def buy(self, who: int, price: int | None, quantity: int) -> Placed:
        return self.place(who, Side.BUY, price, quantity)

    def sell(self, who: int, price: int | None, quantity: int) -> Placed:
        return self.place(who, Side.SELL, price, quantity)

    def cancel(self, who: int, order_id: int) -> None:
        events = self.do(c.CancelOrder(who, order_id))
        assert any(isinstance(e, OrderCancelled) for e in events), events

    def trade(self, seller: int, buyer: int, price: int, quantity: int = 1) -> Placed:
        """`seller` rests an offer, `buyer` takes it: one trade at `price`."""
        self.sell(seller, price, quantity)
        taken = self.buy(buyer, price, quantity)
        assert len(taken.trade_ids) == 1, taken.events
        return taken

    def alerts(self) -> list[tuple[str, list[int], list[int], list[int]]]:
        return [
            (a.kind, a.participant_ids, a.order_ids, a.trade_ids) for a in self.surveillance.alerts
        ]


# ---------------------------------------------------------------------- self-trade attempts


def test_an_order_stopped_by_self_trade_prevention_is_reported() -> None:
    market = Market()
    market.at("10:00")
    resting = market.sell(A, 60_000, 5)
    stopped = market.buy(A, 60_000, 5)
    assert market.alerts() == [
        (SELF_TRADE_ATTEMPT, [A], [stopped.order_id, resting.order_id], []),
    ]
    alert = market.surveillance.alerts[0]
    assert alert.symbol == SYMBOL and alert.time_ns == local("10:00")
    assert alert.details["cancelled_quantity"] == 5


def test_a_self_trade_report_names_what_traded_before_the_stop() -> None:
    market = Market()
    market.at("10:00")
    market.sell(B, 59_900, 2)
    own = market.sell(A, 60_000, 5)
    stopped = market.buy(A, 60_000, 5)
    assert len(stopped.trade_ids) == 1
    assert market.alerts() == [
        (SELF_TRADE_ATTEMPT, [A], [stopped.order_id, own.order_id], stopped.trade_ids),
    ]


# ---------------------------------------------------------------------- wash trades


def test_a_trade_between_linked_participants_is_a_wash_trade() -> None:
    market = Market(LINKED_A_B)
    market.at("10:00")
    offer = market.sell(A, 60_000, 3)
    bid = market.buy(B, 60_000, 3)
    assert market.alerts() == [
        (WASH_TRADE, [A, B], [offer.order_id, bid.order_id], bid.trade_ids),
    ]


def test_a_trade_with_an_unlinked_participant_is_not_a_wash_trade() -> None:
    market = Market(LINKED_A_B)
    market.at("10:00")
    market.trade(A, C, 60_000)
    market.trade(C, B, 60_000)
    assert market.alerts() == []


def test_links_apply_from_the_sequence_that_declared_them() -> None:
    market = Market()
    market.at("10:00")
    market.trade(A, B, 60_000)
    market.do(c.ConfigureSurveillance(LINKED_A_B))
    linked = market.trade(A, B, 60_000)
    assert [(kind, trades) for kind, _, _, trades in market.alerts()] == [
        (WASH_TRADE, linked.trade_ids)
    ]


def test_an_unusable_config_is_refused_and_changes_nothing() -> None:
    market = Market(LINKED_A_B)
    events = market.do(c.ConfigureSurveillance(SurveillanceConfig(spoofing_window_s=0)))
    assert [type(e) for e in events] == [CommandRejected]
    assert market.surveillance.config == LINKED_A_B


# ---------------------------------------------------------------------- spoofing


def spoofing_scenario(
    market: Market, *, size: int = 40, cancel_after: str = "10:00:03", trade: bool = True
) -> tuple[Placed, Placed | None]:
    """A bids `size` lots far below the market, sells 5 lots to B meanwhile, then cancels."""
    market.at("10:00")
    bait = market.buy(A, 59_000, size)
    real = None
    if trade:
        market.at("10:00:01")
        real = market.sell(A, 60_000, 5)
        market.buy(B, 60_000, 5)
    market.at(cancel_after)
    market.cancel(A, bait.order_id)
    return bait, real


def test_a_large_order_cancelled_within_seconds_while_trading_the_other_side_is_spoofing() -> None:
    market = Market()
    bait, real = spoofing_scenario(market)
    assert real is not None
    trade_ids = [a.trade_ids for a in market.surveillance.alerts]
    assert market.alerts() == [
        (SPOOFING, [A], sorted([bait.order_id, real.order_id]), trade_ids[0]),
    ]
    assert len(trade_ids[0]) == 1
    details = market.surveillance.alerts[0].details
    assert details["quantity"] == 40 and details["traded_other_side_quantity"] == 5
    assert details["lifetime_ms"] == 3_000


@pytest.mark.parametrize(
    ("why", "scenario"),
    [
        ("cancelled after the window", {"cancel_after": "10:00:11"}),
        ("not large", {"size": 9}),
        ("not large next to what was traded", {"size": 19}),
        ("no trade on the other side", {"trade": False}),
    ],
)
def test_a_cancel_is_not_spoofing_when(why: str, scenario: dict[str, Any]) -> None:
    market = Market()
    spoofing_scenario(market, **scenario)
    assert market.alerts() == [], why


def test_shrinking_the_bait_before_cancelling_it_is_still_spoofing() -> None:
    market = Market()
    market.at("10:00")
    bait = market.buy(A, 59_000, 40)
    market.at("10:00:01")
    market.trade(A, B, 60_000, 5)
    market.at("10:00:02")
    market.do(c.AmendOrder(A, bait.order_id, quantity=2))  # under the size threshold
    market.at("10:00:03")
    market.cancel(A, bait.order_id)
    assert [alert[0] for alert in market.alerts()] == [SPOOFING]
    assert market.surveillance.alerts[0].details["quantity"] == 40


def test_a_partly_filled_order_cancelled_is_not_spoofing() -> None:
    market = Market()
    market.at("10:00")
    bait = market.buy(A, 59_000, 40)
    market.sell(C, 59_000, 1)
    market.at("10:00:01")
    market.trade(A, B, 60_000, 5)
    market.at("10:00:03")
    market.cancel(A, bait.order_id)
    assert market.alerts() == []


# ---------------------------------------------------------------------- marking the close


def test_a_trade_moving_the_price_in_the_last_minutes_before_the_close_marks_it() -> None:
    market = Market()
    market.at("10:00")
    market.trade(C, B, 60_000)
    market.at("14:55")
    offer = market.sell(A, 61_900, 1)  # +3.17 % over the last price before the window
    lift = market.buy(B, 61_900, 1)
    assert market.alerts() == [
        (MARKING_THE_CLOSE, [A, B], [offer.order_id, lift.order_id], lift.trade_ids),
    ]
    details = market.surveillance.alerts[0].details
    assert details["reference_price"] == 60_000 and details["move_bps"] == 316
    assert details["aggressor_participant_ids"] == [B]


def price_move(
    then: str, price: int, config: SurveillanceConfig | None = None
) -> list[tuple[str, list[int], list[int], list[int]]]:
    """The alerts after a trade at 60,000 at 10:00, then one at `price` at `then`."""
    market = Market(config)
    market.at("10:00")
    market.trade(C, B, 60_000)
    market.at(then)
    market.trade(A, B, price)
    return market.alerts()


def test_the_same_move_earlier_in_the_day_does_not_mark_the_close() -> None:
    assert price_move("14:45", 61_900) == []


def test_a_small_move_before_the_close_does_not_mark_it() -> None:
    assert price_move("14:55", 61_700) == []  # +2.8 %


def test_the_close_is_marked_once_a_day() -> None:
    market = Market()
    market.at("14:51")
    market.trade(C, B, 60_000)
    market.at("14:55")
    market.trade(A, B, 61_900)
    market.at("14:58")
    market.trade(A, B, 62_000)
    assert [kind for kind, *_ in market.alerts()] == [MARKING_THE_CLOSE]
    assert market.surveillance.alerts[0].trade_ids == [1, 2]  # the window's trades so far


def test_the_close_time_is_configurable() -> None:
    config = SurveillanceConfig(close_time="11:30", close_window_minutes=5)
    assert [kind for kind, *_ in price_move("11:27", 61_900, config)] == [MARKING_THE_CLOSE]
    assert price_move("14:55", 61_900, config) == []


def test_with_a_timetable_the_closing_auction_is_in_the_close_window() -> None:
    timetable = Timetable(pre_open="08:45", open="09:00", closing="14:45", close="15:00")
    market = Market(instrument=msgspec.structs.replace(HOG, timetable=timetable))
    market.at("09:00")
    market.do(c.AdvanceSession(SYMBOL, Session.CONTINUOUS))
    market.at("10:00")
    market.trade(C, B, 60_000)
    market.at("14:45")
    market.do(c.AdvanceSession(SYMBOL, Session.CLOSING))
    market.at("14:50")
    offer = market.sell(A, 61_900, 1)  # the closing call: orders wait for the uncross
    bid = market.buy(B, 61_900, 1)
    market.at("15:00:01")
    uncross = market.do(c.AdvanceSession(SYMBOL, Session.AUCTION))
    trade_ids = [e.trade_id for e in uncross if isinstance(e, Trade)]
    assert len(trade_ids) == 1
    assert market.alerts() == [
        (MARKING_THE_CLOSE, [A, B], [offer.order_id, bid.order_id], trade_ids),
    ]
    assert market.surveillance.alerts[0].details["close_time"] == "15:00"


# ---------------------------------------------------------------------- unusual price moves


def test_a_price_move_beyond_the_threshold_within_the_window_is_unusual() -> None:
    market = Market()
    market.at("10:00")
    first = market.trade(C, B, 60_000)
    market.at("10:20")
    offer = market.sell(A, 63_100, 1)  # +5.17 % in 20 minutes
    lift = market.buy(B, 63_100, 1)
    assert market.alerts() == [
        (
            UNUSUAL_PRICE_MOVE,
            [A, B],
            [offer.order_id, lift.order_id],
            [*first.trade_ids, *lift.trade_ids],
        ),
    ]
    assert market.surveillance.alerts[0].details["move_bps"] == 516


def test_a_fall_is_as_unusual_as_a_rise() -> None:
    assert [kind for kind, *_ in price_move("10:05", 56_900)] == [UNUSUAL_PRICE_MOVE]  # -5.17 %


def test_the_same_move_over_more_than_the_window_is_not_unusual() -> None:
    assert price_move("10:31", 63_100) == []


def test_one_move_raises_one_alert() -> None:
    market = Market()
    market.at("10:00")
    market.trade(C, B, 60_000)
    market.at("10:10")
    market.trade(A, B, 63_100)
    market.at("10:11")
    market.trade(A, B, 63_200)
    market.trade(A, B, 63_000)
    assert [kind for kind, *_ in market.alerts()] == [UNUSUAL_PRICE_MOVE]


# ---------------------------------------------------------------------- replay and honesty


def every_pattern(market: Market) -> None:
    spoofing_scenario(market)
    market.at("10:10")
    resting = market.sell(A, 60_500, 1)
    market.buy(A, 60_500, 1)
    market.cancel(A, resting.order_id)
    market.at("10:20")
    market.trade(A, B, 63_500)
    market.at("14:55")
    market.trade(C, B, 60_000)


def test_alerts_survive_a_snapshot_and_replay_alike() -> None:
    live = Market(LINKED_A_B)
    every_pattern(live)
    kinds = {kind for kind, *_ in live.alerts()}
    assert kinds == {
        SPOOFING,
        WASH_TRADE,
        SELF_TRADE_ATTEMPT,
        UNUSUAL_PRICE_MOVE,
        MARKING_THE_CLOSE,
    }
    expected = msgspec.msgpack.encode(live.surveillance.state())
    for cut in range(0, len(live.log) + 1, 3):  # a snapshot after every third command
        before = Surveillance()
        for observed in live.log[:cut]:
            before.observe(*observed)
        snapshot = msgspec.msgpack.encode(before.state())
        after = Surveillance.from_state(msgspec.msgpack.decode(snapshot, type=SurveillanceState))
        for observed in live.log[cut:]:
            after.observe(*observed)
        assert msgspec.msgpack.encode(after.state()) == expected, f"snapshot after {cut}"


def test_a_snapshot_written_before_surveillance_existed_still_loads() -> None:
    class OldBody(msgspec.Struct):
        core: CoreState
        market_data: MarketDataState
        audit: AuditState

    current = Recovered().snapshot()
    old = msgspec.msgpack.encode(OldBody(current.core, current.market_data, current.audit))
    body = msgspec.msgpack.decode(old, type=SnapshotBody)
    assert body.surveillance == empty_state()


def test_the_config_file_names_only_what_differs_from_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "surveillance.json"
    path.write_text('{"linked_participants": [[4, 7]], "close_move_bps": 200}')
    config = load_config(path)
    assert config == SurveillanceConfig(linked_participants=((4, 7),), close_move_bps=200)
    path.write_text('{"close_time": "25:00"}')
    with pytest.raises(ValueError, match="close_time"):
        load_config(path)
    path.write_text('{"spoofing_lots": 3}')
    with pytest.raises(ValueError, match="spoofing_lots"):
        load_config(path)


def honest_session(seed: int, days: int = 2) -> Market:
    """Farms sell, traders buy, each its own account: orders near the reference price every
    20-90 s from 09:00 to 15:30, some cancelled minutes later."""
    rng = random.Random(seed)
    sellers, buyers = [1, 2, 3], [4, 5, 6]
    market = Market(traders=6)
    for day in range(days):
        clock = local("09:00", day)
        open_orders: list[tuple[int, int, int]] = []  # (order id, owner, placed at)
        while clock < local("15:30", day):
            clock += rng.randint(20, 90) * 1_000_000_000
            market.time_ns = clock
            if open_orders and rng.random() < 0.15:
                order_id, owner, placed_ns = open_orders.pop(rng.randrange(len(open_orders)))
                still_open = market.core.orders[order_id].status.is_open
                if still_open and clock - placed_ns > 120 * 1_000_000_000:
                    market.do(c.CancelOrder(owner, order_id))
                continue
            side = Side.SELL if rng.random() < 0.5 else Side.BUY
            ticks = rng.randint(-3, 8) * 100
            price = 60_000 + ticks if side is Side.SELL else 60_000 - ticks
            owner = rng.choice(sellers if side is Side.SELL else buyers)
            placed = market.place(owner, side, price, rng.randint(1, 8))
            open_orders.append((placed.order_id, owner, clock))
    return market


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_honest_session_raises_no_alert(seed: int) -> None:
    market = honest_session(seed)
    fills = sum(len(record.fills or ()) for record in market.core.orders.values())
    assert fills // 2 > 100, "the session trades"
    assert market.alerts() == []


# ---------------------------------------------------------------------- over HTTP


class Venue:
    """A served exchange with A, B (linked) and C trading HOG-G1-HCM, and a regulator."""

    SYMBOL = "HOG-G1-HCM"

    def __init__(self, server: Server) -> None:
        self.server = server
        self.operator = server.client(server.operator_key)
        self.operator.post(
            "/v1/admin/instruments",
            json={"symbol": self.SYMBOL, "name": "Heo hơi loại 1", "kind": "live_hog",
                  "lot_size": 1_000, "tick_size": 100, "reference_price": 60_000},
        ).raise_for_status()  # fmt: skip
        self.ids: dict[str, int] = {}
        self.keys: dict[str, str] = {}
        for name, role in (("A", "trader"), ("B", "trader"), ("C", "trader"), ("R", "regulator")):
            answer = self.operator.post("/v1/admin/participants", json={"name": name, "role": role})
            answer.raise_for_status()
            self.ids[name] = answer.json()["participant_id"]
            self.keys[name] = answer.json()["api_key"]
        for name in ("A", "B", "C"):
            for asset, amount in (("VND", 10**12), (self.SYMBOL, 1_000)):
                self.operator.post(
                    "/v1/admin/deposits",
                    json={"participant_id": self.ids[name], "asset": asset, "amount": amount},
                ).raise_for_status()

    def order(self, who: str, side: str, price: int, quantity: int) -> dict[str, Any]:
        with self.server.client(self.keys[who]) as client:
            answer = client.post(
                "/v1/orders",
                json={"symbol": self.SYMBOL, "side": side, "price": price, "quantity": quantity},
            )
        assert answer.status_code == 201, answer.text
        placed: dict[str, Any] = answer.json()
        return placed

    def alerts(self, who: str = "R", **params: Any) -> httpx.Response:
        with self.server.client(self.keys[who]) as client:
            return client.get("/v1/audit/alerts", params=params)


# Participant ids on a fresh server: the operator of HOGX_OPERATOR_KEY is 1, then A, B, C, R.
HTTP_LINKS = {"linked_participants": [[2, 3]]}


def serve(data_dir: Path, operator_key: str | None = None) -> Server:
    config = data_dir.parent / "surveillance.json"
    config.write_text(json.dumps(HTTP_LINKS))
    return start_server(data_dir, "--surveillance-config", str(config), operator_key=operator_key)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    server = serve(tmp_path / "data")
    venue = Venue(server)
    try:
        yield venue
    finally:
        for running in (server, venue.server):  # a test may have restarted it
            if running.process.poll() is None:
                running.process.kill()
                running.process.wait()


def test_regulators_list_alerts_that_survive_restarts(venue: Venue) -> None:
    assert venue.ids == {"A": 2, "B": 3, "C": 4, "R": 5}, "the ids HTTP_LINKS links"
    offer = venue.order("A", "sell", 60_000, 2)
    bid = venue.order("B", "buy", 60_000, 2)
    resting = venue.order("A", "sell", 60_100, 1)
    stopped = venue.order("A", "buy", 60_100, 1)
    assert stopped["status"] == "cancelled" and stopped["cancel_reason"] == "SELF_TRADE"

    answer = venue.alerts()
    assert answer.status_code == 200, answer.text
    alerts = answer.json()["alerts"]
    assert [(a["alert_id"], a["kind"], a["participant_ids"], a["order_ids"]) for a in alerts] == [
        ("2", "self_trade_attempt", [2], [stopped["order_id"], resting["order_id"]]),
        ("1", "wash_trade", [2, 3], [offer["order_id"], bid["order_id"]]),
    ]
    assert alerts[1]["trade_ids"] == [bid["trades"][0]["trade_id"]]
    assert alerts[1]["symbol"] == Venue.SYMBOL and alerts[1]["time"].endswith("Z")
    assert answer.json()["next_cursor"] is None

    first = venue.alerts(limit=1).json()
    rest = venue.alerts(limit=1, cursor=first["next_cursor"]).json()
    assert [a["alert_id"] for a in first["alerts"] + rest["alerts"]] == ["2", "1"]
    assert rest["next_cursor"] is None
    assert [a["alert_id"] for a in venue.alerts(kind="wash_trade").json()["alerts"]] == ["1"]
    assert venue.alerts(participant_id=4).json()["alerts"] == []
    assert venue.alerts(symbol="OTHER").json()["alerts"] == []
    assert venue.alerts(kind="nonsense").status_code == 422
    assert venue.alerts(cursor="???").status_code == 422

    assert venue.alerts("A").status_code == 403
    with venue.server.client(venue.server.operator_key) as operator:
        assert operator.get("/v1/audit/alerts").status_code == 403
    with venue.server.client() as anonymous:
        assert anonymous.get("/v1/audit/alerts").status_code == 401

    listed = venue.alerts().json()
    data_dir, key = venue.server.data_dir, venue.server.operator_key
    assert venue.server.stop()
    restarted = serve(data_dir, key)  # from the snapshot written at shutdown
    venue.server = restarted
    assert venue.alerts().json() == listed
    assert restarted.stop()
    shutil.rmtree(data_dir / "snapshots")
    replayed = serve(data_dir, key)  # from the journal alone
    venue.server = replayed
    assert venue.alerts().json() == listed
