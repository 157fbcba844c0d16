"""The scheduler: the one place that looks at the clock and turns time into commands.

The core reads no clock, so everything a timetable or a timer decides must arrive as a journaled
command. Every `interval_s` the scheduler compares each market with the clock and submits what is
due, through the sequencer like any other command (replay then gives the same state):

- an OCOP certificate that has expired and whose market is not yet halted for it:
  `ExpireCertificate` (until then the core already refuses new orders on it by the command's
  time stamp, `CERTIFICATE_EXPIRED`, so there is no window between expiry and halt);
- a circuit-breaker cool-off that is over: `AdvanceSession(auction)`, the reopening auction;
- a market with a timetable in another phase than the timetable gives for now: the next step
  towards it (`exchange.sessions.next_step`), one step per market per pass; the core publishes
  the settlement price itself when a market closes;
- a market without a timetable never closes, so its trading day is the Vietnam calendar day:
  once a day (and at start-up, for a day that ended while the exchange was down), if it holds
  a `day` order placed before today's midnight, `ExpireDayOrders` ending the day at that
  midnight. Orders placed since belong to today and stay. Not for a market whose sessions the
  operator has run by hand: its day ends at the operator's close.

`due_commands` and `overnight_day_orders` are pure (state and time in, commands out), so tests
drive them with any time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from datetime import date

from exchange import commands as c
from exchange.attributes import vietnam_date, vietnam_midnight_ns
from exchange.core import ExchangeCore, certificate_halt_reason
from exchange.events import CommandRejected
from exchange.sequencer import Exchange, ExchangeStopped, Overloaded
from exchange.sessions import Session, next_step, phase_at
from matching_engine import Side, TimeInForce

DEFAULT_INTERVAL_S = 1.0
MAX_CATCH_UP_PASSES = 8  # enough for closed -> pre_open -> auction -> continuous -> closing...


def due_commands(core: ExchangeCore, now_ns: int) -> list[c.Command]:
    """What the clock says must happen now, at most one command per market."""
    due: list[c.Command] = []
    for symbol in sorted(core.markets):
        market = core.markets[symbol]
        state = market.session
        if market.expiry_ns and now_ns >= market.expiry_ns:
            if core.halted.get(symbol) != certificate_halt_reason(market):
                due.append(c.ExpireCertificate(symbol))
            continue  # an expired market stays halted: nothing else is due for it
        if symbol in core.halted:
            # Its orders wait for the resume; the one thing the clock still does is close it.
            timetable = market.instrument.timetable
            closes = timetable is not None and phase_at(timetable, now_ns) is Session.CLOSED
            if closes and state.session is not Session.CLOSED:
                due.append(c.AdvanceSession(symbol, Session.CLOSED))
            continue
        if state.reopen_at_ns:
            if now_ns >= state.reopen_at_ns:
                due.append(c.AdvanceSession(symbol, Session.AUCTION))
            continue  # a cool-off runs its course before the timetable moves the market on
        timetable = market.instrument.timetable
        if timetable is None:
            continue
        step = next_step(state.session, phase_at(timetable, now_ns))
        if step is not None:
            due.append(c.AdvanceSession(symbol, step))
    return due


def overnight_day_orders(core: ExchangeCore, symbol: str, now_ns: int) -> c.ExpireDayOrders | None:
    """For a market without a timetable: end the day at today's Vietnam midnight if one of its
    open `day` orders was placed before it. None for a market with a timetable, or one whose
    sessions the operator runs by hand (its trading day opened when it left `closed`, and its
    close expires them, even past midnight), or when every open day order is today's."""
    market = core.markets[symbol]
    if market.instrument.timetable is not None or market.session.trading_day:
        return None
    midnight_ns = vietnam_midnight_ns(vietnam_date(now_ns))
    for side in (Side.BUY, Side.SELL):
        for order in market.book.resting_orders(side):
            if (
                order.time_in_force is TimeInForce.DAY
                and core.orders[order.order_id].created_time_ns < midnight_ns
            ):
                return c.ExpireDayOrders(symbol, ended_at_ns=midnight_ns)
    return None


class Scheduler:
    """Submits the due commands of an `Exchange` every `interval_s` seconds."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.exchange = exchange
        self.interval_s = interval_s
        self._clock = clock
        # The Vietnam day each market's overnight day orders were last looked for: once a day
        # (the look walks the market's open orders), and once at start-up.
        self._day_looked_at: dict[str, date] = {}

    async def run_once(self) -> int:
        """One pass; returns how many commands took effect."""
        now_ns = self._clock()
        core = self.exchange.core
        applied = 0
        for command in due_commands(core, now_ns):
            applied += await self._submit(command)
        today = vietnam_date(now_ns)
        # Not while a batch is on its way to the disk: stamped before midnight, its day orders
        # are yesterday's, and a look that missed them would leave them a whole day.
        if not self.exchange.all_applied:
            return applied
        for symbol in sorted(core.markets):
            if self._day_looked_at.get(symbol) == today:
                continue
            overnight = overnight_day_orders(core, symbol, now_ns)
            if overnight is not None:  # if the submit raises (busy), the next pass looks again
                applied += await self._submit(overnight)
            self._day_looked_at[symbol] = today
        return applied

    async def _submit(self, command: c.Command) -> int:
        """1 when `command` took effect, else 0."""
        result = await self.exchange.submit(command)
        return 0 if any(isinstance(e, CommandRejected) for e in result.events) else 1

    async def catch_up(self) -> None:
        """Pass after pass until nothing is due: a market listed (or left) in the wrong phase
        walks to the timetable's phase at once, every call ending in its auction."""
        for _ in range(MAX_CATCH_UP_PASSES):
            if await self.run_once() == 0:
                return

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except ExchangeStopped:
                return
            except Overloaded:
                pass  # the market is busy: what is due stays due until the next pass
            except Exception as error:  # a bug here must not stop the market
                print(f"hogx: scheduler pass failed: {error!r}", file=sys.stderr)
            await asyncio.sleep(self.interval_s)


__all__ = ["Scheduler", "due_commands", "overnight_day_orders"]
