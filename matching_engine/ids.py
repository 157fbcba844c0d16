"""Counters for the identifiers the exchange hands out; part of the engine's state."""

from __future__ import annotations


class IdCounters:
    """The newest order id accepted and trade id issued, shared by every book of one engine.

    Order ids come from the exchange and must strictly increase; trade ids are issued here.
    """

    __slots__ = ("last_order_id", "last_trade_id")

    def __init__(self, last_order_id: int = 0, last_trade_id: int = 0) -> None:
        self.last_order_id = last_order_id
        self.last_trade_id = last_trade_id
