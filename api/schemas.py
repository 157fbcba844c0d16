"""The HTTP boundary's shapes: what requests may contain and what responses look like.

Requests on the hot path (placing, amending orders) are decoded with msgspec structs (strict
types, unknown fields refused, bounds checked) for speed; the other requests use pydantic
models in strict mode. Responses are documented with pydantic models (the OpenAPI schema) and
encoded directly with msgspec. Every bound here is a limit on untrusted input.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from api.schemas_rules import CircuitBreakerIn, SessionName, TimetableIn

MAX_PRICE_VND = 10**12
MAX_QUANTITY = 10**9
MAX_AMOUNT = 10**15
MAX_CLIENT_ORDER_ID = 64
MAX_BODY_BYTES = 64 * 1024

SideName = Literal["buy", "sell"]
OrderTypeName = Literal["limit", "market"]
TimeInForceName = Literal["gtc", "day", "ioc", "fok"]
RoleName = Literal["trader", "monitor", "regulator", "operator"]
KindName = Literal["live_hog", "ocop"]

Price = Annotated[int, msgspec.Meta(gt=0, le=MAX_PRICE_VND)]
Quantity = Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
ClientOrderId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_CLIENT_ORDER_ID, pattern=r"^[\x21-\x7e]+$")
]


# ---------------------------------------------------------------------- hot-path requests


class PlaceOrderBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    symbol: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    side: SideName
    quantity: Quantity
    type: OrderTypeName = "limit"
    price: Price | None = None
    time_in_force: TimeInForceName = "gtc"
    post_only: bool = False
    all_or_none: bool = False
    client_order_id: ClientOrderId | None = None

    def __post_init__(self) -> None:
        # The body's own shape (API.md: "market: no price"), so a 422 like any missing field,
        # refused before it reaches the core; msgspec reports it as a ValidationError.
        if self.type == "limit" and self.price is None:
            raise ValueError("a limit order needs a `price`")
        if self.type == "market" and self.price is not None:
            raise ValueError("a market order has no `price`")


class AmendOrderBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    price: Price | None = None
    quantity: Quantity | None = None


# ---------------------------------------------------------------------- other requests


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NewParticipant(_Strict):
    name: str = Field(min_length=1, max_length=200, examples=["HTX Chăn nuôi Củ Chi"])
    role: RoleName = Field(examples=["trader"])


class NewInstrument(_Strict):
    symbol: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,31}$", examples=["HOG-G1-HCM"])
    name: str = Field(min_length=1, max_length=200, examples=["Heo hơi loại 1 - TP.HCM"])
    kind: KindName
    price_unit: str = Field(default="kg", min_length=1, max_length=16)
    lot_size: int = Field(gt=0, le=1_000_000, examples=[1_000])
    tick_size: int = Field(gt=0, le=MAX_PRICE_VND, examples=[100])
    reference_price: int = Field(gt=0, le=MAX_PRICE_VND, examples=[60_000])
    price_band_pct: int = Field(default=7, gt=0, le=100)
    maker_fee_bps: int = Field(default=0, ge=0, le=1_000)
    taker_fee_bps: int = Field(default=0, ge=0, le=1_000)
    max_order_quantity: int = Field(default=100_000, gt=0, le=MAX_QUANTITY)
    attributes: dict[str, str | int | bool] = Field(
        default_factory=dict,
        max_length=32,
        examples=[{"grade": "1", "delivery_hub": "Ho Chi Minh City"}],
    )
    timetable: TimetableIn | None = Field(
        default=None, description="none: continuous trading at any hour"
    )
    circuit_breaker: CircuitBreakerIn | None = None
    settlement_window_s: int = Field(default=300, ge=1, le=3600)


class Transfer(_Strict):
    participant_id: int = Field(gt=0, le=2**31, examples=[1])
    asset: str = Field(min_length=1, max_length=32, examples=["VND"])
    amount: int = Field(gt=0, le=MAX_AMOUNT, examples=[1_000_000_000])


class HaltRequest(_Strict):
    reason: str = Field(default="", max_length=200)


# ---------------------------------------------------------------------- responses (documented)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class OrderTradeOut(BaseModel):
    trade_id: str
    price: int
    quantity: int
    liquidity: Literal["maker", "taker"]
    fee_vnd: int
    time: str


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str | None
    symbol: str
    side: SideName
    type: OrderTypeName
    price: int | None
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    status: Literal["new", "partially_filled", "filled", "cancelled", "expired"]
    cancel_reason: str | None
    time_in_force: TimeInForceName
    post_only: bool
    all_or_none: bool
    created_at: str
    sequence: int
    trades: list[OrderTradeOut]


class OrdersPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None


class FillOut(BaseModel):
    trade_id: str
    order_id: str
    symbol: str
    side: SideName
    price: int
    quantity: int
    liquidity: Literal["maker", "taker"]
    fee_vnd: int
    time: str
    sequence: int


class FillsPage(BaseModel):
    fills: list[FillOut]
    next_cursor: str | None


class StatementLineOut(BaseModel):
    transfer_id: str
    sequence: int
    time: str
    code: str = Field(
        description="deposit, withdrawal, hold, release, payment, buyer_fee, "
        "seller_fee, excess_hold, delivery, delivery_in, delivery_out, transfer_out (cash "
        "sent to another shard: in transit until it arrives) or transfer_in (cash arrived "
        "from another shard)"
    )
    asset: str
    reference_id: str = Field(
        description="the order or trade the transfer belongs to, the receipt (delivery_in) or "
        "release (delivery_out), or the transfer_id of a transfer between shards; 0 for none"
    )
    available_change: int
    reserved_change: int
    available: int
    reserved: int


class StatementBalanceOut(BaseModel):
    asset: str
    available: int
    reserved: int


class StatementOut(BaseModel):
    participant_id: int
    start: str | None
    end: str | None
    as_of_sequence: int
    opening: list[StatementBalanceOut]
    closing: list[StatementBalanceOut]
    lines: list[StatementLineOut]
    truncated: bool


class BalanceOut(BaseModel):
    asset: str
    available: int
    reserved: int


class AccountOut(BaseModel):
    participant_id: int
    balances: list[BalanceOut]


class InstrumentOut(BaseModel):
    symbol: str
    name: str
    kind: KindName
    price_unit: str
    lot_size: int
    tick_size: int
    reference_price: int
    price_band_pct: int
    band_low: int
    band_high: int
    maker_fee_bps: int
    taker_fee_bps: int
    max_order_quantity: int
    attributes: dict[str, Any]
    status: Literal["open", "halted"]
    session: SessionName
    reopen_at: str | None
    timetable: dict[str, Any] | None
    circuit_breaker: dict[str, Any] | None
    settlement_window_s: int


class InstrumentsOut(BaseModel):
    instruments: list[InstrumentOut]
    next_cursor: str | None


class BookOut(BaseModel):
    symbol: str
    sequence: int
    bids: list[list[int]] = Field(description="[price, total quantity, order count], best first")
    asks: list[list[int]] = Field(description="[price, total quantity, order count], best first")


class PublicTradeOut(BaseModel):
    trade_id: str
    price: int
    quantity: int
    aggressor_side: SideName
    time: str
    sequence: int


class TradesOut(BaseModel):
    trades: list[PublicTradeOut]


class TickerOut(BaseModel):
    symbol: str
    best_bid: int | None
    best_ask: int | None
    last_price: int | None
    open: int | None
    high: int | None
    low: int | None
    volume: int
    sequence: int


class CandleOut(BaseModel):
    time: str
    open: int
    high: int
    low: int
    close: int
    volume: int


class CandlesOut(BaseModel):
    candles: list[CandleOut]


class ParticipantOut(BaseModel):
    participant_id: int
    name: str
    role: RoleName


class ParticipantCreated(ParticipantOut):
    api_key: str = Field(description="shown once; only its hash is kept")


class ParticipantsOut(BaseModel):
    participants: list[ParticipantOut]
    next_cursor: str | None


class TransferOut(BaseModel):
    participant_id: int
    asset: str
    amount: int
    available: int
    sequence: int


class MarketStatusOut(BaseModel):
    symbol: str
    status: Literal["open", "halted"]
    reason: str | None
    sequence: int


class HealthOut(BaseModel):
    status: Literal["ok"]


class AuditTradeOut(BaseModel):
    trade_id: str
    sequence: int
    time: str
    symbol: str
    price: int
    quantity: int
    notional_vnd: int
    aggressor_side: SideName
    buyer_participant_id: int
    buy_order_id: str
    seller_participant_id: int
    sell_order_id: str
    buyer_fee_vnd: int
    seller_fee_vnd: int


class AuditTradesOut(BaseModel):
    trades: list[AuditTradeOut]
    next_cursor: str | None


class AuditEventOut(BaseModel):
    sequence: int
    time: str
    time_ns: int
    hash: str = Field(description="the record's SHA-256 chain hash, hex")
    command: dict[str, Any] = Field(description="the journaled command, tagged by `type`")


class AuditEventsOut(BaseModel):
    events: list[AuditEventOut]
    next_from_sequence: int | None


class VerifyOut(BaseModel):
    ok: bool
    records: int
    last_sequence: int
    head_hash: str
    first_bad_sequence: int | None
    message: str


class RestingOrderOut(BaseModel):
    order_id: str
    participant_id: int
    price: int
    remaining_quantity: int


class PastBookOut(BaseModel):
    symbol: str
    sequence: int
    time: str = Field(description="time stamp of the record at `sequence`")
    halted: bool
    bids: list[list[int]] = Field(description="[price, total quantity, order count], best first")
    asks: list[list[int]] = Field(description="[price, total quantity, order count], best first")
    bid_orders: list[RestingOrderOut] = Field(
        description="with `orders=true`: the resting orders behind the levels, in priority order"
    )
    ask_orders: list[RestingOrderOut]


class DayHeadOut(BaseModel):
    date: str = Field(description="the trading day, Vietnam time (UTC+7)")
    first_sequence: int
    last_sequence: int
    records: int
    head_hash: str = Field(description="chain hash of record `last_sequence`, hex")
    time: str


class DayHeadsOut(BaseModel):
    heads: list[DayHeadOut]


class AuditOrderEventOut(BaseModel):
    sequence: int
    time: str
    time_ns: int
    kind: Literal[
        "registered",
        "funds_held",
        "accepted",
        "amended",
        "fill",
        "funds_released",
        "cancelled",
        "expired",
    ]
    command: str = Field(description="the type of the journaled command that caused it")
    details: dict[str, Any] = Field(description="the event's own fields")


class AuditOrderOut(BaseModel):
    order_id: str
    participant_id: int
    symbol: str
    client_order_id: str | None
    status: Literal["new", "partially_filled", "filled", "cancelled", "expired"]
    events: list[AuditOrderEventOut]
