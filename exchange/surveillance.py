"""Surveillance: alerts for regulators, computed from the event stream.

A projection of the journal like market data and the audit trail: fed with each command's
events in sequence order, saved in snapshots and rebuilt by replay. The thresholds come from the
journal too (`configure_surveillance`), so a replay raises exactly the alerts the live run did.

The alerts, each naming the orders, trades and participants behind it:

- `self_trade_attempt`: an order stopped by self-trade prevention (cancelled `SELF_TRADE`). The
  trade never happened, but the attempt is reported.
- `wash_trade`: a trade between two participants the operator declared linked (one beneficial
  owner, or acting together): no change of ownership, only the appearance of activity.
- `spoofing`: a large order cancelled unfilled by its owner within seconds, while the owner
  traded on the other side of the same market: the order was there to move others, not to trade.
- `marking_the_close`: a trade in the last minutes before the close moving the price beyond a
  threshold from the last price before those minutes (the close price sets valuations). The
  close is the market's timetable's (its closing call included) or else the configured time.
- `unusual_price_move`: a trade more than a threshold away from the lowest or highest price of a
  recent window.

Every step is O(1) amortised per event: open orders are kept by id, recent fills and recent
prices in short time-bounded lists; nothing scans all orders. One report scans some: a
self-trade attempt names the owner's own resting orders it would have hit, found among that
owner's open orders on the other side of that market (`_first_crossing`), so it costs as many
steps as the owner has orders resting there (222 at the median in `benchmarks.core`'s stream,
where it is 7% of a replay with the projections).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from exchange.commands import CancelOrder, ConfigureSurveillance
from exchange.events import (
    Event,
    InstrumentListed,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    ReferencePriceChanged,
    Trade,
)
from exchange.sessions import VIETNAM_UTC_OFFSET_NS, minutes
from exchange.surveillance_config import SurveillanceConfig
from matching_engine import Side
from matching_engine.enums import CancelReason

SELF_TRADE_ATTEMPT = "self_trade_attempt"
WASH_TRADE = "wash_trade"
SPOOFING = "spoofing"
MARKING_THE_CLOSE = "marking_the_close"
UNUSUAL_PRICE_MOVE = "unusual_price_move"
KINDS = (SELF_TRADE_ATTEMPT, WASH_TRADE, SPOOFING, MARKING_THE_CLOSE, UNUSUAL_PRICE_MOVE)

MAX_LINKED = 100  # orders, or trades, one alert names
MAX_RECENT_FILLS = 256  # per participant, market and side, within the spoofing window
MAX_PRICE_POINTS = 1_024  # per market and direction, within the price-move window
SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
DAY_NS = 86_400 * SECOND_NS
BPS = 10_000


class Alert(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One alert; ids are 1, 2, 3... in the order they were raised."""

    alert_id: int
    kind: str
    symbol: str
    sequence: int
    time_ns: int
    participant_ids: list[int]
    order_ids: list[int]
    trade_ids: list[int]
    message: str
    details: dict[str, Any]


class OpenOrder(msgspec.Struct, array_like=True, gc=False):
    participant_id: int
    symbol: str
    side: Side
    price: int | None
    quantity: int  # the largest it has been (amends may lower it)
    time_ns: int  # when it was accepted
    traded: bool = False


class RecentFill(msgspec.Struct, frozen=True, array_like=True, gc=False):
    time_ns: int
    trade_id: int
    order_id: int
    quantity: int


class RecentFills(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One participant's fills on one side of one market, within the spoofing window."""

    participant_id: int
    symbol: str
    side: Side
    fills: list[RecentFill]


class PricePoint(msgspec.Struct, frozen=True, array_like=True, gc=False):
    time_ns: int
    price: int
    trade_id: int


class MarketWatch(msgspec.Struct, array_like=True, gc=False):
    """What the price alerts remember about one market."""

    reference_price: int
    last_price: int | None = None
    close_day: int = -1  # the local day whose close window is being watched
    close_reference: int = 0  # the last price before that window
    close_alerted: bool = False
    close_trades: list[Trade] = []
    lows: list[PricePoint] = []  # rising prices: the window's low first
    highs: list[PricePoint] = []  # falling prices: the window's high first
    # A market with a timetable: when its continuous trading ends (minute of the Vietnam
    # day) and its close (HH:MM); -1 and "" for a market trading at any hour.
    closing_minute: int = -1
    close_time: str = ""


class SurveillanceState(msgspec.Struct, frozen=True):
    config: SurveillanceConfig
    alerts: list[Alert]
    open_orders: dict[int, OpenOrder]
    recent_fills: list[RecentFills]
    markets: dict[str, MarketWatch]


# The other side, looked up (on every trade): reading an enum member off its class, as in
# `Side.BUY`, costs several dict lookups.
_OTHER: dict[Side, Side] = {Side.BUY: Side.SELL, Side.SELL: Side.BUY}


def _beyond(price: int, reference: int, bps: int) -> bool:
    """`price` is more than `bps` basis points away from `reference` (integers only)."""
    return abs(price - reference) * BPS > bps * reference


def _move_bps(price: int, reference: int) -> int:
    return (price - reference) * BPS // reference


def _unique(values: Iterable[int]) -> list[int]:
    return sorted(set(values))[:MAX_LINKED]


class Surveillance:
    """Alerts, kept in the order raised, and what raising them needs to remember."""

    def __init__(self, config: SurveillanceConfig | None = None) -> None:
        self.alerts: list[Alert] = []
        self._configure(config or SurveillanceConfig())
        self._open: dict[int, OpenOrder] = {}
        # (participant, symbol, side) -> their open orders there by id, for self-trade reports
        # (the very objects in `_open`, so that they show amended prices)
        self._owned: dict[tuple[int, str, Side], dict[int, OpenOrder]] = {}
        self._fills: dict[tuple[int, str, Side], deque[RecentFill]] = {}
        self._markets: dict[str, MarketWatch] = {}
        self._sequence = 0
        self._time_ns = 0
        self._command: Any = None
        self._command_trades: list[Trade] = []
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            InstrumentListed: self._on_listed,
            OrderAccepted: self._on_accepted,
            OrderAmended: self._on_amended,
            Trade: self._on_trade,
            OrderCancelled: self._on_cancelled,
            OrderExpired: self._on_expired,
            ReferencePriceChanged: self._on_reference_price,
        }

    # ------------------------------------------------------------------ the one entry point

    def observe(self, sequence: int, time_ns: int, command: Any, events: list[Event]) -> None:
        if type(command) is ConfigureSurveillance:
            if not events:  # the core refuses an unusable config with a rejection
                self._configure(command.config)
            return
        self._sequence, self._time_ns, self._command = sequence, time_ns, command
        self._command_trades.clear()
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)

    def _configure(self, config: SurveillanceConfig) -> None:
        """Take `config`, with its windows in nanoseconds once (they are read on every trade)."""
        self.config = config
        self._group_of = config.group_of()
        self._spoofing_window_ns = config.spoofing_window_s * SECOND_NS
        self._move_window_ns = config.price_move_window_s * SECOND_NS
        self._utc_offset_ns = config.utc_offset_minutes * MINUTE_NS
        self._close_ns = config.close_minute_of_day * MINUTE_NS  # into the local day
        self._close_window_ns = config.close_window_minutes * MINUTE_NS
        self._close_window_start_ns = self._close_ns - self._close_window_ns

    # ------------------------------------------------------------------ orders

    def _on_listed(self, event: InstrumentListed) -> None:
        instrument = event.instrument
        watch = MarketWatch(instrument.reference_price)
        timetable = instrument.timetable
        if timetable is not None:
            watch.closing_minute = minutes(timetable.closing)
            watch.close_time = timetable.close
        self._markets[instrument.symbol] = watch

    def _on_reference_price(self, event: ReferencePriceChanged) -> None:
        market = self._markets.get(event.symbol)
        if market is not None:
            market.reference_price = event.reference_price

    def _on_accepted(self, event: OrderAccepted) -> None:
        order = self._open[event.order_id] = OpenOrder(
            event.participant_id,
            event.symbol,
            event.side,
            event.price,
            event.quantity,
            self._time_ns,
        )
        key = (event.participant_id, event.symbol, event.side)
        owned = self._owned.get(key)
        if owned is None:  # not setdefault: it would build an empty dict for every order
            owned = self._owned[key] = {}
        owned[event.order_id] = order

    def _on_amended(self, event: OrderAmended) -> None:
        order = self._open.get(event.order_id)
        if order is not None:
            # Keep the largest size it showed: shrinking a bait before cancelling it still
            # showed the market the large order.
            order.price, order.quantity = event.price, max(order.quantity, event.quantity)

    def _close(self, order_id: int) -> OpenOrder | None:
        order = self._open.pop(order_id, None)
        if order is not None:
            owned = self._owned.get((order.participant_id, order.symbol, order.side))
            if owned is not None:
                owned.pop(order_id, None)
        return order

    def _on_expired(self, event: OrderExpired) -> None:
        self._close(event.order_id)

    def _on_cancelled(self, event: OrderCancelled) -> None:
        order = self._close(event.order_id)
        if order is None:
            return
        if event.reason is CancelReason.SELF_TRADE:
            self._self_trade_attempt(event, order)
        elif event.reason is CancelReason.REQUESTED and not order.traded:
            command = self._command
            if type(command) is CancelOrder and command.actor_id == 0:  # the owner's own cancel
                self._maybe_spoofing(event, order)

    def _self_trade_attempt(self, event: OrderCancelled, order: OpenOrder) -> None:
        owner = event.participant_id
        resting = self._owned.get((owner, event.symbol, _OTHER[event.side]), {})
        crossing = self._first_crossing(order, resting)
        trades = [t for t in self._command_trades if t.taker_order_id == event.order_id]
        self._raise(
            SELF_TRADE_ATTEMPT,
            event.symbol,
            [owner],
            [event.order_id, *crossing],
            [t.trade_id for t in trades],
            f"participant {owner}'s {event.side.value} order {event.order_id} would have "
            f"traded with its own resting orders: {event.cancelled_quantity} lots cancelled",
            {
                "side": event.side.value,
                "price": order.price,
                "cancelled_quantity": event.cancelled_quantity,
            },
        )

    def _first_crossing(self, incoming: OpenOrder, resting: dict[int, OpenOrder]) -> list[int]:
        """The ids of the first MAX_LINKED - 1 `resting` orders (the other side of the market)
        that `incoming` could have traded with: those priced at or better than its limit, and
        any without a price; all of them if `incoming` has none.

        `resting` holds ids in ascending order (orders enter it when accepted, ids only grow,
        and from_state refills it sorted), so these are the lowest ids. An owner may rest many
        orders, so the loop is plain: one comparison per order, no call.
        """
        limit = incoming.price
        if limit is None:
            return list(itertools.islice(resting, MAX_LINKED - 1))
        buying = incoming.side is Side.BUY
        crossing: list[int] = []
        for order_id, order in resting.items():
            price = order.price
            if price is None or (price <= limit if buying else price >= limit):
                crossing.append(order_id)
                if len(crossing) == MAX_LINKED - 1:
                    break
        return crossing

    def _maybe_spoofing(self, event: OrderCancelled, order: OpenOrder) -> None:
        config = self.config
        lifetime_ns = self._time_ns - order.time_ns
        quantity = max(event.cancelled_quantity, order.quantity)  # unfilled: its largest size
        if quantity < config.spoofing_min_lots or lifetime_ns > self._spoofing_window_ns:
            return
        key = (event.participant_id, event.symbol, _OTHER[event.side])
        meanwhile: list[RecentFill] = []  # from the newest back to the order's placing
        traded = 0
        for fill in reversed(self._fills.get(key, ())):
            if fill.time_ns < order.time_ns:
                break
            traded += fill.quantity
            if quantity < config.spoofing_size_ratio * traded:
                return  # it traded too much on the other side for this order to be a bluff
            meanwhile.append(fill)
        if not meanwhile:
            return
        meanwhile.reverse()
        other = _OTHER[event.side].value
        self._raise(
            SPOOFING,
            event.symbol,
            [event.participant_id],
            _unique([event.order_id, *(f.order_id for f in meanwhile)]),
            [f.trade_id for f in meanwhile][:MAX_LINKED],
            f"participant {event.participant_id} cancelled a {event.side.value} order of up to "
            f"{quantity} lots {lifetime_ns // 1_000_000} ms after placing it, unfilled, while "
            f"trading "
            f"{traded} lots on the {other} side",
            {
                "side": event.side.value,
                "price": order.price,
                "quantity": quantity,
                "lifetime_ms": lifetime_ns // 1_000_000,
                "traded_other_side_quantity": traded,
            },
        )

    # ------------------------------------------------------------------ trades

    def _on_trade(self, trade: Trade) -> None:
        self._command_trades.append(trade)
        self._fill(trade.taker_order_id, trade.taker_remaining, trade, trade.aggressor_side)
        self._fill(trade.maker_order_id, trade.maker_remaining, trade, _OTHER[trade.aggressor_side])
        group = self._group_of.get(trade.maker_participant_id)
        if group is not None and group == self._group_of.get(trade.taker_participant_id):
            self._wash_trade(trade, group)
        market = self._markets.get(trade.symbol)
        if market is not None:
            self._watch_close(trade, market)
            self._watch_move(trade, market)
            market.last_price = trade.price

    def _fill(self, order_id: int, remaining: int, trade: Trade, side: Side) -> None:
        order = self._open.get(order_id)
        if order is None:
            return
        if remaining == 0:
            self._close(order_id)
        else:
            order.traded = True
        key = (order.participant_id, trade.symbol, side)
        fills = self._fills.get(key)
        if fills is None:
            fills = self._fills[key] = deque(maxlen=MAX_RECENT_FILLS)  # drops the oldest
        horizon_ns = self._time_ns - self._spoofing_window_ns
        while fills and fills[0].time_ns < horizon_ns:
            fills.popleft()
        fills.append(RecentFill(self._time_ns, trade.trade_id, order_id, trade.quantity))

    def _wash_trade(self, trade: Trade, group: int) -> None:
        maker, taker = trade.maker_participant_id, trade.taker_participant_id
        self._raise(
            WASH_TRADE,
            trade.symbol,
            _unique((maker, taker)),
            _unique((trade.maker_order_id, trade.taker_order_id)),
            [trade.trade_id],
            f"participants {maker} and {taker}, linked (group {group + 1}), traded "
            f"{trade.quantity} lots at {trade.price} with each other",
            {"link_group": group + 1, "price": trade.price, "quantity": trade.quantity},
        )

    def _close_day(self, market: MarketWatch) -> int | None:
        """The local day whose close window holds now, or None outside every close window.

        A market with a timetable: from `close_window_minutes` before its continuous trading
        ends until it closes, so the closing call's uncross (at or after the close) is in;
        the market is closed after it. Any other market: the minutes before `close_time`.
        """
        if market.closing_minute < 0:
            local_ns = self._time_ns + self._utc_offset_ns
            if not self._close_window_start_ns <= local_ns % DAY_NS < self._close_ns:
                return None
            return local_ns // DAY_NS
        local_ns = self._time_ns + VIETNAM_UTC_OFFSET_NS
        start_ns = market.closing_minute * MINUTE_NS - self._close_window_ns
        return local_ns // DAY_NS if local_ns % DAY_NS >= start_ns else None

    def _watch_close(self, trade: Trade, market: MarketWatch) -> None:
        config = self.config
        day = self._close_day(market)
        if day is None:
            return
        if market.close_day != day:  # the first trade of this close window
            market.close_day = day
            market.close_reference = market.last_price or market.reference_price
            market.close_alerted = False
            market.close_trades = []
        if market.close_alerted:
            return
        if len(market.close_trades) < MAX_LINKED:
            market.close_trades.append(trade)
        reference = market.close_reference
        if not _beyond(trade.price, reference, config.close_move_bps):
            return
        market.close_alerted = True
        trades = market.close_trades
        close_time = market.close_time or config.close_time
        self._raise(
            MARKING_THE_CLOSE,
            trade.symbol,
            _unique(p for t in trades for p in (t.maker_participant_id, t.taker_participant_id)),
            _unique(o for t in trades for o in (t.maker_order_id, t.taker_order_id)),
            [t.trade_id for t in trades],
            f"{trade.symbol} traded at {trade.price} in the last {config.close_window_minutes} "
            f"minutes before the {close_time} close, {_move_bps(trade.price, reference)} "
            f"bp from {reference} before them",
            {
                "reference_price": reference,
                "price": trade.price,
                "move_bps": _move_bps(trade.price, reference),
                "close_time": close_time,
                "aggressor_participant_ids": _unique(t.taker_participant_id for t in trades),
            },
        )

    def _watch_move(self, trade: Trade, market: MarketWatch) -> None:
        config = self.config
        horizon_ns = self._time_ns - self._move_window_ns
        lows, highs = market.lows, market.highs
        for points in (lows, highs):
            while points and (points[0].time_ns < horizon_ns or len(points) >= MAX_PRICE_POINTS):
                del points[0]
        price = trade.price
        if lows and price > lows[0].price and _beyond(price, lows[0].price, config.price_move_bps):
            self._unusual_move(trade, lows[0], market)
        elif (
            highs
            and price < highs[0].price
            and _beyond(price, highs[0].price, config.price_move_bps)
        ):
            self._unusual_move(trade, highs[0], market)
        point = PricePoint(self._time_ns, price, trade.trade_id)
        lows, highs = market.lows, market.highs
        while lows and lows[-1].price >= price:
            lows.pop()
        lows.append(point)
        while highs and highs[-1].price <= price:
            highs.pop()
        highs.append(point)

    def _unusual_move(self, trade: Trade, reference: PricePoint, market: MarketWatch) -> None:
        """Raise the alert and start the window afresh: one move, one alert."""
        market.lows, market.highs = [], []
        config = self.config
        move = _move_bps(trade.price, reference.price)
        self._raise(
            UNUSUAL_PRICE_MOVE,
            trade.symbol,
            _unique((trade.maker_participant_id, trade.taker_participant_id)),
            _unique((trade.maker_order_id, trade.taker_order_id)),
            [reference.trade_id, trade.trade_id],
            f"{trade.symbol} traded at {trade.price}, {move} bp from {reference.price} within "
            f"{config.price_move_window_s} s",
            {
                "reference_price": reference.price,
                "reference_trade_id": reference.trade_id,
                "price": trade.price,
                "move_bps": move,
                "window_s": config.price_move_window_s,
                "aggressor_participant_id": trade.taker_participant_id,
            },
        )

    # ------------------------------------------------------------------ alerts

    def _raise(
        self,
        kind: str,
        symbol: str,
        participant_ids: list[int],
        order_ids: list[int],
        trade_ids: list[int],
        message: str,
        details: dict[str, Any],
    ) -> None:
        self.alerts.append(
            Alert(
                len(self.alerts) + 1,
                kind,
                symbol,
                self._sequence,
                self._time_ns,
                participant_ids,
                order_ids,
                trade_ids,
                message,
                details,
            )
        )

    def newest_first(
        self,
        before_id: int | None = None,
        kind: str | None = None,
        symbol: str | None = None,
        participant_id: int | None = None,
    ) -> Iterable[Alert]:
        """Alerts newest first, strictly before `before_id`, matching every filter given."""
        alerts = self.alerts
        start = len(alerts) if before_id is None else min(before_id - 1, len(alerts))
        for index in range(start - 1, -1, -1):
            alert = alerts[index]
            if kind is not None and alert.kind != kind:
                continue
            if symbol is not None and alert.symbol != symbol:
                continue
            if participant_id is not None and participant_id not in alert.participant_ids:
                continue
            yield alert

    # ------------------------------------------------------------------ state

    def state(self) -> SurveillanceState:
        """A copy in canonical order: a live run and a replay of it encode alike."""
        return SurveillanceState(
            self.config,
            list(self.alerts),
            {order_id: msgspec.structs.replace(o) for order_id, o in sorted(self._open.items())},
            [
                RecentFills(participant_id, symbol, side, list(fills))
                for (participant_id, symbol, side), fills in sorted(self._fills.items())
                if fills
            ],
            {
                symbol: msgspec.structs.replace(
                    m, close_trades=list(m.close_trades), lows=list(m.lows), highs=list(m.highs)
                )
                for symbol, m in sorted(self._markets.items())
            },
        )

    @classmethod
    def from_state(cls, state: SurveillanceState) -> Surveillance:
        surveillance = cls(state.config)
        surveillance.alerts = list(state.alerts)
        for order_id, order in state.open_orders.items():
            order = msgspec.structs.replace(order)
            surveillance._open[order_id] = order
            key = (order.participant_id, order.symbol, order.side)
            surveillance._owned.setdefault(key, {})[order_id] = order
        for recent in state.recent_fills:
            key = (recent.participant_id, recent.symbol, recent.side)
            surveillance._fills[key] = deque(recent.fills, maxlen=MAX_RECENT_FILLS)
        surveillance._markets = {
            symbol: msgspec.structs.replace(
                m, close_trades=list(m.close_trades), lows=list(m.lows), highs=list(m.highs)
            )
            for symbol, m in state.markets.items()
        }
        return surveillance


def empty_state() -> SurveillanceState:
    """What a snapshot written before surveillance existed stands for."""
    return Surveillance().state()
