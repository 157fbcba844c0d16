"""The audit trail's order index: every event of every order, for regulators.

A projection of the journal like market data: fed with each command's events, rebuilt by replay
and saved in snapshots, so `GET /v1/audit/orders/{order_id}` can tell an order's whole life
(received, accepted, amended, each fill, cancelled or expired with the reason) with the
sequence, time and command behind each step. Orders refused before they got an id (funds,
rules) are not indexed here; their commands and rejections are in the journal itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import msgspec

from exchange.events import (
    Event,
    FundsHeld,
    FundsReleased,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRegistered,
    Trade,
)

AuditedEvent = (
    OrderRegistered
    | FundsHeld
    | OrderAccepted
    | OrderAmended
    | Trade
    | OrderCancelled
    | OrderExpired
    | FundsReleased
)


class AuditEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One step of one order's life. It keeps the event itself (immutable, shared with the
    rest of the exchange) and makes the regulator's view of it only when asked: the trail
    records every step of every order, and is read for a few."""

    sequence: int
    time_ns: int
    kind: str  # registered, accepted, funds_held, amended, fill, funds_released, cancelled...
    command: str  # the type of the command that caused it
    event: AuditedEvent
    liquidity: str | None = None  # fills: whether this order was the maker or the taker

    @property
    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = msgspec.to_builtins(msgspec.structs.asdict(self.event))
        if self.liquidity is not None:
            details["liquidity"] = self.liquidity
        return details


class AuditState(msgspec.Struct, frozen=True):
    orders: dict[int, list[AuditEntry]]


class AuditTrail:
    """Order id -> the steps of its life, in sequence order."""

    def __init__(self) -> None:
        self._orders: dict[int, list[AuditEntry]] = {}

    def observe(self, sequence: int, time_ns: int, command: Any, events: Iterable[Event]) -> None:
        command_type = command.__struct_config__.tag
        orders = self._orders
        for event in events:
            kind = type(event)
            if kind is Trade:
                assert isinstance(event, Trade)
                for order_id, role in (
                    (event.maker_order_id, "maker"),
                    (event.taker_order_id, "taker"),
                ):
                    self._add(order_id, sequence, time_ns, "fill", command_type, event, role)
                continue
            about = _order_of(event)
            if about is None:
                continue
            order_id = about
            if kind is OrderRegistered:
                orders[order_id] = []
            audited = cast(AuditedEvent, event)  # `_order_of` answers only for audited kinds
            self._add(order_id, sequence, time_ns, _KINDS[kind], command_type, audited)

    def _add(
        self,
        order_id: int,
        sequence: int,
        time_ns: int,
        kind: str,
        command: str,
        event: AuditedEvent,
        liquidity: str | None = None,
    ) -> None:
        history = self._orders.get(order_id)
        if history is not None:  # an order the exchange registered (refusals have no history)
            history.append(AuditEntry(sequence, time_ns, kind, command, event, liquidity))

    def history(self, order_id: int) -> list[AuditEntry] | None:
        return self._orders.get(order_id)

    def state(self) -> AuditState:
        return AuditState({order_id: list(h) for order_id, h in sorted(self._orders.items())})

    @classmethod
    def from_state(cls, state: AuditState) -> AuditTrail:
        trail = cls()
        trail._orders = {order_id: list(h) for order_id, h in state.orders.items()}
        return trail


_KINDS: dict[type, str] = {
    OrderRegistered: "registered",
    FundsHeld: "funds_held",
    OrderAccepted: "accepted",
    OrderAmended: "amended",
    OrderCancelled: "cancelled",
    OrderExpired: "expired",
    FundsReleased: "funds_released",
}


def _order_of(event: Event) -> int | None:
    """The order an event is about, for the kinds the trail keeps (settlements are the
    ledger's: the fills already carry their trade)."""
    if type(event) in _KINDS:
        order_id: int = event.order_id  # type: ignore[union-attr]
        return order_id
    return None
