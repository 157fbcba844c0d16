"""The audit trail's order index: every event of every order, for regulators.

A projection of the journal like market data: fed with each command's events, rebuilt by replay
and saved in snapshots, so `GET /v1/audit/orders/{order_id}` can tell an order's whole life
(received, accepted, amended, each fill, cancelled or expired with the reason) with the
sequence, time and command behind each step. Orders refused before they got an id (funds,
rules) are not indexed here; their commands and rejections are in the journal itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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
OrderEvent = (  # the audited events about one order (a trade is about two)
    OrderRegistered
    | FundsHeld
    | OrderAccepted
    | OrderAmended
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
                self._add_fill(event, sequence, time_ns, command_type)
                continue
            step = _KINDS.get(kind)
            if step is None:  # not a step of an order's life (settlements are the ledger's:
                continue  # the fills already carry their trade)
            order_event: OrderEvent = event  # type: ignore[assignment]  # the kinds of _KINDS
            if kind is OrderRegistered:
                orders[order_event.order_id] = []
            history = orders.get(order_event.order_id)
            if history is not None:  # an order the exchange registered (refusals have no history)
                history.append(AuditEntry(sequence, time_ns, step, command_type, order_event))

    def _add_fill(self, trade: Trade, sequence: int, time_ns: int, command: str) -> None:
        """The trade is a step of both orders' lives: the maker's first, then the taker's."""
        maker = self._orders.get(trade.maker_order_id)
        if maker is not None:
            maker.append(AuditEntry(sequence, time_ns, "fill", command, trade, "maker"))
        taker = self._orders.get(trade.taker_order_id)
        if taker is not None:
            taker.append(AuditEntry(sequence, time_ns, "fill", command, trade, "taker"))

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
