"""Shapes of the market-rules routes: sessions, auctions, settlement prices, physical delivery
and traceability (see `api.routes_rules`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from exchange.core import MAX_AMOUNT

KindName = Literal["live_hog", "ocop"]
SessionName = Literal["pre_open", "auction", "continuous", "closing", "closed"]
ClockTime = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["08:45"])


# ---------------------------------------------------------------------- requests


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TimetableIn(_Strict):
    """Vietnam time (UTC+7), HH:MM: pre_open <= open < closing <= close."""

    pre_open: str = ClockTime
    open: str = ClockTime
    closing: str = ClockTime
    close: str = ClockTime
    weekdays: list[int] = Field(
        default=[0, 1, 2, 3, 4, 5, 6], min_length=1, max_length=7, description="0 = Monday"
    )


class CircuitBreakerIn(_Strict):
    move_pct: int = Field(default=3, ge=1, le=100)
    window_s: int = Field(default=60, ge=1, le=3600)
    cool_off_s: int = Field(default=120, ge=1, le=3600)


class SessionRequest(_Strict):
    session: SessionName = Field(examples=["pre_open"])


class DeliveryIn(_Strict):
    participant_id: int = Field(gt=0, le=2**31, examples=[1])
    symbol: str = Field(min_length=1, max_length=32, examples=["HOG-G1-HCM"])
    lots: int = Field(gt=0, le=MAX_AMOUNT, examples=[2])
    head_count: int = Field(default=0, ge=0, le=1_000_000, examples=[18])
    average_weight_kg: int = Field(default=0, ge=0, le=1_000, examples=[112])
    farm_code: str = Field(default="", max_length=64, examples=["DN-TB-0137"])
    certificate: str = Field(default="", max_length=64, examples=["VietGAP-CN-2025-1182"])
    inspected_at: str = Field(
        min_length=1, max_length=40, description="RFC 3339 or epoch ns; not in the future"
    )


class DeliveryOut(_Strict):
    participant_id: int = Field(gt=0, le=2**31, examples=[1])
    symbol: str = Field(min_length=1, max_length=32, examples=["HOG-G1-HCM"])
    lots: int = Field(gt=0, le=MAX_AMOUNT, examples=[2])
    destination: str = Field(default="", max_length=64, examples=["Lò mổ Vissan, TP.HCM"])


# ---------------------------------------------------------------------- responses


class AuctionOut(BaseModel):
    price: int
    volume: int
    imbalance: int = Field(description="buy volume minus sell volume at the price")


class MarketSessionOut(BaseModel):
    symbol: str
    session: SessionName
    status: Literal["open", "halted"]
    halt_reason: str | None
    reopen_at: str | None = Field(description="end of a circuit-breaker cool-off")
    reference_price: int
    band_low: int
    band_high: int
    indicative: AuctionOut | None = Field(
        description="in a call phase: what the auction would do now"
    )
    sequence: int


class SettlementOut(BaseModel):
    symbol: str
    trading_day: str
    price: int
    method: Literal["vwap", "last_trade", "reference"]
    volume: int
    window_start: str
    cut_off: str
    previous_reference_price: int
    sequence: int


class SettlementsOut(BaseModel):
    symbol: str
    settlements: list[SettlementOut]


class ReceiptOut(BaseModel):
    receipt_id: int
    participant_id: int
    symbol: str
    lots: int
    head_count: int
    average_weight_kg: int
    farm_code: str
    certificate: str
    inspected_at: str
    time: str
    sequence: int


class SourceOut(BaseModel):
    receipt_id: int | None = Field(description="null: lots deposited without a receipt")
    lots: int
    receipt: ReceiptOut | None


class DeliveryReceiptOut(ReceiptOut):
    available: int = Field(description="the owner's available lots after the delivery")


class ReleaseOut(BaseModel):
    release_id: int
    participant_id: int
    symbol: str
    lots: int
    destination: str
    sources: list[SourceOut]
    available: int
    time: str
    sequence: int


class TracedLotsOut(BaseModel):
    trade_id: str
    symbol: str
    price: int
    quantity: int
    time: str
    sources: list[SourceOut]


class TraceabilityOut(BaseModel):
    participant_id: int
    received: list[TracedLotsOut]
    next_cursor: str | None


class TradeTraceOut(BaseModel):
    trade_id: str
    symbol: str
    kind: KindName
    price: int
    quantity: int
    time: str
    sequence: int
    buyer_participant_id: int
    seller_participant_id: int
    sources: list[SourceOut]
    farm_codes: list[str]
