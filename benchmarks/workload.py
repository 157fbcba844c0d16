"""A seeded, realistic command mix for the whole exchange (not just one book).

Used by the core benchmark, the determinism and crash tests: traders on three instruments
placing limit, market, IOC, FOK, all-or-none and post-only orders near the mid, cancelling
and amending their own open orders. `observe()` lets the workload learn which of its orders
are open, so cancels and amends mostly hit live orders, as real traffic does.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from datetime import date, timedelta

from exchange import commands as c
from exchange.events import Event, OrderCancelled, OrderExpired, OrderRegistered, Trade
from exchange.instruments import Instrument, InstrumentKind
from exchange.participants import Role
from matching_engine import OrderType, Side, TimeInForce

INSTRUMENTS = (
    Instrument(
        "HOG-G1-HCM",
        "Heo hơi loại 1 - TP.HCM",
        InstrumentKind.LIVE_HOG,
        1_000,
        100,
        60_000,
        maker_fee_bps=2,
        taker_fee_bps=5,
    ),
    Instrument(
        "HOG-G2-HCM",
        "Heo hơi loại 2 - TP.HCM",
        InstrumentKind.LIVE_HOG,
        1_000,
        100,
        56_000,
        maker_fee_bps=2,
        taker_fee_bps=5,
    ),
    Instrument(
        "OCOP-TEA-TN",
        "Trà xanh Thái Nguyên 4 sao",
        InstrumentKind.OCOP,
        100,
        1_000,
        400_000,
        attributes={
            "stars": 4,
            "product_group": "drinks",
            "producer_type": "cooperative",
            "province": "Thái Nguyên",
            "certificate_number": "OCOP-TN-0042",
            # Certificates last 36 months: one issued a month ago is valid whenever this runs.
            "certification_date": (date.today() - timedelta(days=30)).isoformat(),
        },
    ),
)
CASH_PER_TRADER = 10**15
LOTS_PER_TRADER = 10**9


def key_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class MarketWorkload:
    """Commands for `traders` participants (ids 1..traders once `setup()` has run)."""

    def __init__(self, seed: int, traders: int = 20) -> None:
        self.rng = random.Random(seed)
        self.traders = traders
        self.open_orders: dict[int, tuple[int, Instrument]] = {}  # order id -> owner, instrument
        self._open_ids: list[int] = []

    def setup(self) -> list[c.Command]:
        """Register and fund the traders and list the instruments."""
        commands: list[c.Command] = [
            c.RegisterParticipant(f"trader-{i}", Role.TRADER, key_hash(f"trader-{i}"))
            for i in range(1, self.traders + 1)
        ]
        commands += [c.ListInstrument(instrument) for instrument in INSTRUMENTS]
        for trader in range(1, self.traders + 1):
            commands.append(c.Deposit(trader, "VND", CASH_PER_TRADER))
            commands += [c.Deposit(trader, i.symbol, LOTS_PER_TRADER) for i in INSTRUMENTS]
        return commands

    def next_command(self) -> c.Command:
        roll = self.rng.random()
        if roll < 0.18 and self._open_ids:
            return self._cancel()
        if roll < 0.23 and self._open_ids:
            return self._amend()
        return self._place()

    def observe(self, events: Iterable[Event]) -> None:
        """Learn from a command's events which orders opened and which closed."""
        for event in events:
            if isinstance(event, OrderRegistered):
                instrument = next(i for i in INSTRUMENTS if i.symbol == event.symbol)
                self.open_orders[event.order_id] = (event.participant_id, instrument)
                self._open_ids.append(event.order_id)
            elif isinstance(event, OrderCancelled | OrderExpired):
                self.open_orders.pop(event.order_id, None)
            elif isinstance(event, Trade):
                if event.maker_remaining == 0:
                    self.open_orders.pop(event.maker_order_id, None)
                if event.taker_remaining == 0:
                    self.open_orders.pop(event.taker_order_id, None)
        if len(self._open_ids) > 4 * len(self.open_orders) + 64:
            self._open_ids = [i for i in self._open_ids if i in self.open_orders]

    # ------------------------------------------------------------------ the mix

    def _place(self) -> c.PlaceOrder:
        rng = self.rng
        instrument = INSTRUMENTS[rng.randrange(len(INSTRUMENTS))]
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        tick, mid = instrument.tick_size, instrument.reference_price
        roll = rng.random()
        order_type, price = OrderType.LIMIT, 0
        tif, post_only, aon = TimeInForce.GTC, False, False
        if roll < 0.75:  # passive, 1-20 ticks behind the mid
            offset = rng.randint(1, 20) * tick
            price = mid - offset if side is Side.BUY else mid + offset
            post_only = rng.random() < 0.05
            aon = rng.random() < 0.03
            tif = TimeInForce.DAY if rng.random() < 0.1 else TimeInForce.GTC
        elif roll < 0.90:  # aggressive, crossing up to 5 ticks
            offset = rng.randint(0, 5) * tick
            price = mid + offset if side is Side.BUY else mid - offset
            tif = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)[rng.randrange(3)]
        else:
            order_type = OrderType.MARKET
        return c.PlaceOrder(
            participant_id=rng.randint(1, self.traders),
            symbol=instrument.symbol,
            side=side,
            order_type=order_type,
            price=price if order_type is OrderType.LIMIT else None,
            quantity=rng.randint(1, 20),
            time_in_force=tif,
            post_only=post_only,
            all_or_none=aon,
            client_order_id=f"w{rng.getrandbits(48):x}" if rng.random() < 0.5 else None,
        )

    def _pick_open(self) -> tuple[int, int, Instrument]:
        while True:
            order_id = self._open_ids[self.rng.randrange(len(self._open_ids))]
            known = self.open_orders.get(order_id)
            # With every order it knows of closed, any id will do (the exchange refuses it):
            # waiting for an open one would never end.
            if known is not None or len(self._open_ids) < 8 or not self.open_orders:
                owner, instrument = known if known is not None else (1, INSTRUMENTS[0])
                return order_id, owner, instrument

    def _cancel(self) -> c.CancelOrder:
        order_id, owner, _ = self._pick_open()
        return c.CancelOrder(owner, order_id)

    def _amend(self) -> c.AmendOrder:
        order_id, owner, instrument = self._pick_open()
        if self.rng.random() < 0.5:
            return c.AmendOrder(owner, order_id, quantity=self.rng.randint(1, 20))
        offset = self.rng.randint(-10, 10) * instrument.tick_size
        return c.AmendOrder(owner, order_id, price=instrument.reference_price + offset)
