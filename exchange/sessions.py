"""Trading sessions: the phases a market goes through, its timetable, its circuit breaker.

Phases of one instrument (`Session`):

    closed ──► pre_open ──► auction ──► continuous ──► closing ──► auction ──► closed
                 (call)    (uncross)                    (call)    (uncross)

- `pre_open`, `closing`: call phases. Orders are accepted, amended and cancelled but nothing
  trades; the indicative auction price and volume are published on the feed (`auction`
  channel). `ioc` / `fok` orders are refused (`NOT_ALLOWED_IN_CALL`).
- `auction`: the uncross (see `matching_engine.auction`), inside one command; the market then
  moves on at once: to `continuous` after the opening call, to `closed` after the closing call.
- `continuous`: price-time matching.
- `closed`: new orders and amends get `MARKET_CLOSED`, cancels are accepted; `day` orders expired
  when the market closed, and a close from `continuous` or `closing` published the day's
  settlement price (`exchange.settlement`).

A halt (`halted`, by the operator or an expired certificate) lies over any phase: cancels only.

An instrument without a timetable is `continuous` from its listing, at any hour (API.md); its
trading day is the Vietnam calendar day, and the scheduler expires its `day` orders at midnight,
unless the operator runs its sessions by hand (its close ends the day then). One with a
timetable follows it: `exchange.scheduler` compares the phase the timetable gives for the
clock's time with the market's phase and submits `AdvanceSession` commands, one step at a time.

Circuit breaker (CME-style velocity logic, opt-in per instrument): when the trades of the last
`window_s` seconds span more than `move_pct` percent (high - low > move_pct% of low), the market
leaves continuous trading for a reopening call (`pre_open`) of `cool_off_s` seconds: orders may
be entered and cancelled, nothing trades. When the cool-off is over the scheduler reopens the
market through the call auction (`AdvanceSession` to `auction`).
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
VIETNAM_UTC_OFFSET_NS = 7 * 3600 * NS_PER_SECOND
MINUTES_PER_DAY = 24 * 60
NS_PER_DAY = MINUTES_PER_DAY * NS_PER_MINUTE
MAX_COOL_OFF_S = 3600
MAX_WINDOW_S = 3600
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class Session(StrEnum):
    PRE_OPEN = "pre_open"
    AUCTION = "auction"
    CONTINUOUS = "continuous"
    CLOSING = "closing"
    CLOSED = "closed"

    @property
    def is_call(self) -> bool:
        return self is Session.PRE_OPEN or self is Session.CLOSING


# Where an operator (or the scheduler) may move a market from each phase. Moving to `auction`
# uncrosses the call and goes on to `continuous` (from pre_open) or `closed` (from closing);
# asking for `continuous` from pre_open or `closed` from closing goes through the auction too.
TRANSITIONS: dict[Session, frozenset[Session]] = {
    Session.CLOSED: frozenset({Session.PRE_OPEN, Session.CONTINUOUS}),
    Session.PRE_OPEN: frozenset({Session.AUCTION, Session.CONTINUOUS, Session.CLOSED}),
    Session.CONTINUOUS: frozenset({Session.CLOSING, Session.CLOSED}),
    Session.CLOSING: frozenset({Session.AUCTION, Session.CLOSED}),
    Session.AUCTION: frozenset(),  # never at rest: the auction happens inside one command
}


class Timetable(msgspec.Struct, frozen=True):
    """One trading day in Vietnam time (UTC+7), `HH:MM` each, in this order:
    pre_open <= open <= closing <= close. `closing == close` means no closing call;
    `weekdays` are the trading days, 0 = Monday ... 6 = Sunday."""

    pre_open: str
    open: str
    closing: str
    close: str
    weekdays: list[int] = msgspec.field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])


class CircuitBreaker(msgspec.Struct, frozen=True):
    """Velocity logic: trades spanning more than `move_pct`% within `window_s` seconds halt
    continuous trading for a `cool_off_s` seconds reopening call."""

    move_pct: int = 3
    window_s: int = 60
    cool_off_s: int = 120


class MarketSession(msgspec.Struct, array_like=True, gc=False):
    """One market's phase; `reopen_at_ns` is the end of a circuit-breaker cool-off (0: none);
    trades before `breaker_since_ns` (the last reopening) do not count towards a new trip."""

    session: Session = Session.CONTINUOUS
    reopen_at_ns: int = 0
    breaker_since_ns: int = 0
    trading_day: str = ""  # YYYY-MM-DD (Vietnam) the current trading day opened; "" if never


def minutes(clock: str) -> int:
    match = _CLOCK.fullmatch(clock)
    if match is None:
        raise ValueError(f"{clock!r} is not a time of day HH:MM")
    return int(match.group(1)) * 60 + int(match.group(2))


def timetable_problem(timetable: Timetable) -> str | None:
    try:
        times = [minutes(t) for t in (timetable.pre_open, timetable.open)]
        times += [minutes(t) for t in (timetable.closing, timetable.close)]
    except ValueError as error:
        return f"timetable: {error}"
    pre_open, open_, closing, close = times
    if not pre_open <= open_ < closing <= close:
        return "timetable: times must run pre_open <= open < closing <= close within one day"
    weekdays = timetable.weekdays
    if not weekdays or len(set(weekdays)) != len(weekdays) or not set(weekdays) <= set(range(7)):
        return "timetable: weekdays must be distinct days 0 (Monday) .. 6 (Sunday), at least one"
    return None


def circuit_breaker_problem(breaker: CircuitBreaker) -> str | None:
    if not 1 <= breaker.move_pct <= 100:
        return "circuit_breaker.move_pct must be 1..100"
    if not 1 <= breaker.window_s <= MAX_WINDOW_S:
        return f"circuit_breaker.window_s must be 1..{MAX_WINDOW_S}"
    if not 1 <= breaker.cool_off_s <= MAX_COOL_OFF_S:
        return f"circuit_breaker.cool_off_s must be 1..{MAX_COOL_OFF_S}"
    return None


def vietnam_day_start_ns(time_ns: int) -> int:
    """UTC nanoseconds of the Vietnam midnight that starts the day holding `time_ns`."""
    local = time_ns + VIETNAM_UTC_OFFSET_NS
    return local // NS_PER_DAY * NS_PER_DAY - VIETNAM_UTC_OFFSET_NS


def phase_at(timetable: Timetable, time_ns: int) -> Session:
    """The phase the timetable gives at `time_ns` (never `auction`: that is a step)."""
    local = time_ns + VIETNAM_UTC_OFFSET_NS
    weekday = (local // NS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday (3)
    if weekday not in timetable.weekdays:
        return Session.CLOSED
    minute = local % NS_PER_DAY // NS_PER_MINUTE
    if minute < minutes(timetable.pre_open):
        return Session.CLOSED
    if minute < minutes(timetable.open):
        return Session.PRE_OPEN
    if minute < minutes(timetable.closing):
        return Session.CONTINUOUS
    if minute < minutes(timetable.close):
        return Session.CLOSING
    return Session.CLOSED


def next_step(current: Session, target: Session) -> Session | None:
    """The one transition that brings a market in `current` nearer to `target` along the
    daily cycle (None: it is there). A market that missed a phase (the exchange was down)
    catches up step by step: every call still ends in its auction."""
    if current is target:
        return None
    if current is Session.CLOSED:
        return Session.PRE_OPEN
    if current is Session.PRE_OPEN:
        return Session.CLOSED if target is Session.CLOSED else Session.AUCTION
    if current is Session.CONTINUOUS:
        return Session.CLOSING if target is Session.CLOSING else Session.CLOSED
    if current is Session.CLOSING:
        return Session.AUCTION
    return None


__all__ = [
    "TRANSITIONS",
    "CircuitBreaker",
    "MarketSession",
    "Session",
    "Timetable",
    "circuit_breaker_problem",
    "next_step",
    "phase_at",
    "timetable_problem",
    "vietnam_day_start_ns",
]
