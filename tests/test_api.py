"""The REST API keeps the contract of API.md: every endpoint, every answer, every error code.

All tests talk HTTP to a real `hogx serve` child process. Most share one server for the module
and each lists its own instrument and registers its own traders, so they cannot see each other;
the tests of the rate limit and of a restart start servers of their own.

The standard instrument: lots of 100 kg, tick 100 VND, reference 60,000 VND/kg with a 10 % band
(54,000..66,000), fees maker 2 bps / taker 5 bps. So one lot at 60,000 is 6,000,000 VND of
notional, a taker pays 3,000 VND on it and a maker 1,200 VND, and a buy holds its notional
plus 5 bps (the larger of the two rates) until it fills or ends.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, ocop_attributes, start_server

from exchange.attributes import add_months

LOT_SIZE = 100
TICK = 100
REFERENCE = 60_000
BAND_LOW, BAND_HIGH = 54_000, 66_000
MAKER_BPS, TAKER_BPS = 2, 5
MAX_BODY_BYTES = 64 * 1024

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
ORDER_FIELDS = {
    "order_id",
    "client_order_id",
    "symbol",
    "side",
    "type",
    "price",
    "quantity",
    "filled_quantity",
    "remaining_quantity",
    "status",
    "time_in_force",
    "created_at",
    "sequence",
    "trades",
    "cancel_reason",
}
ORDER_STATUSES = {"new", "partially_filled", "filled", "cancelled", "expired"}

_symbol_numbers = itertools.count(1)


# ---------------------------------------------------------------------- arithmetic


def notional(price: int, quantity: int) -> int:
    return price * quantity * LOT_SIZE


def fee(price: int, quantity: int, bps: int) -> int:
    return notional(price, quantity) * bps // 10_000


def buy_hold(price: int, quantity: int) -> int:
    """What an open buy reserves: notional plus the larger fee rate (taker, 5 bps)."""
    return notional(price, quantity) + fee(price, quantity, TAKER_BPS)


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("api") / "data")
    try:
        yield server
    finally:
        assert server.stop(), "the server did not shut down cleanly"


@dataclass
class Trader:
    participant_id: int
    api_key: str
    http: httpx.Client


class Market:
    """One freshly listed instrument on the shared server, and traders funded to trade it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.symbol = f"T{next(_symbol_numbers):03d}-HOG"
        self.operator = server.client(server.operator_key)
        self.public = server.client()
        self._clients = [self.operator, self.public]
        listed = self.list_instrument(self.symbol)
        assert listed.status_code == 201, listed.text

    def list_instrument(self, symbol: str, **overrides: Any) -> httpx.Response:
        fields: dict[str, Any] = {
            "symbol": symbol,
            "name": f"Live hogs {symbol}",
            "kind": "live_hog",
            "price_unit": "kg",
            "lot_size": LOT_SIZE,
            "tick_size": TICK,
            "reference_price": REFERENCE,
            "price_band_pct": 10,
            "maker_fee_bps": MAKER_BPS,
            "taker_fee_bps": TAKER_BPS,
            "attributes": {"grade": "1", "delivery_hub": "Ho Chi Minh City"},
        }
        return self.operator.post("/v1/admin/instruments", json={**fields, **overrides})

    def another_symbol(self) -> str:
        symbol = f"T{next(_symbol_numbers):03d}-HOG"
        assert self.list_instrument(symbol).status_code == 201
        return symbol

    def trader(self, name: str, vnd: int = 0, lots: int = 0) -> Trader:
        answer = self.operator.post("/v1/admin/participants", json={"name": name, "role": "trader"})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        http = self.server.client(body["api_key"])
        self._clients.append(http)
        trader = Trader(body["participant_id"], body["api_key"], http)
        if vnd:
            self.deposit(trader, "VND", vnd)
        if lots:
            self.deposit(trader, self.symbol, lots)
        return trader

    def deposit(self, trader: Trader, asset: str, amount: int) -> None:
        answer = self.operator.post(
            "/v1/admin/deposits",
            json={"participant_id": trader.participant_id, "asset": asset, "amount": amount},
        )
        assert answer.status_code == 201, answer.text

    def place(self, trader: Trader, **fields: Any) -> httpx.Response:
        return trader.http.post("/v1/orders", json={"symbol": self.symbol, **fields})

    def rest(self, trader: Trader, side: str, price: int, quantity: int, **more: Any) -> str:
        """Place a limit order that must be accepted; its order id."""
        answer = self.place(trader, side=side, price=price, quantity=quantity, **more)
        assert answer.status_code == 201, answer.text
        order_id: str = answer.json()["order_id"]
        return order_id

    def book(self, symbol: str | None = None) -> dict[str, Any]:
        answer = self.public.get(f"/v1/markets/{symbol or self.symbol}/book")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def levels(self) -> tuple[list[list[int]], list[list[int]]]:
        book = self.book()
        return book["bids"], book["asks"]

    def state(self, *traders: Trader) -> Any:
        """What must not change when a request is refused: book, balances and orders."""
        return (
            self.levels(),
            [balances(t) for t in traders],
            [t.http.get("/v1/orders", params={"status": "all"}).json() for t in traders],
        )

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def market(exchange: Server) -> Iterator[Market]:
    listed = Market(exchange)
    try:
        yield listed
    finally:
        listed.close()


def balances(trader: Trader) -> dict[str, tuple[int, int]]:
    """asset -> (available, reserved), leaving out empty balances."""
    answer = trader.http.get("/v1/account")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["participant_id"] == trader.participant_id
    return {
        b["asset"]: (b["available"], b["reserved"])
        for b in body["balances"]
        if b["available"] or b["reserved"]
    }


def assert_error(answer: httpx.Response, status: int, code: str | None = None) -> None:
    """The status, and the standard error body `{"error": {"code", "message"}}`."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


def get_order(trader: Trader, order_id: str) -> dict[str, Any]:
    answer = trader.http.get(f"/v1/orders/{order_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def parse_time(text: str) -> datetime:
    assert RFC3339_UTC.fullmatch(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------- health


def test_healthz_answers_200_ok_without_a_key(exchange: Server) -> None:
    with exchange.client() as public:
        answer = public.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_an_unknown_path_is_404_with_the_standard_error_body(exchange: Server) -> None:
    with exchange.client() as public:
        assert_error(public.get("/v1/no-such-thing"), 404)


def test_an_unsupported_method_is_405_with_the_standard_error_body(exchange: Server) -> None:
    with exchange.client(exchange.operator_key) as operator:
        assert_error(operator.put("/v1/orders", json={}), 405)


# ---------------------------------------------------------------------- participants


def test_registering_a_participant_returns_201_with_its_id_name_role_and_key(
    market: Market,
) -> None:
    answer = market.operator.post(
        "/v1/admin/participants", json={"name": "HTX Chăn nuôi Củ Chi", "role": "trader"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"participant_id", "name", "role", "api_key"}
    assert isinstance(body["participant_id"], int) and body["participant_id"] > 0
    assert body["name"] == "HTX Chăn nuôi Củ Chi"
    assert body["role"] == "trader"
    assert isinstance(body["api_key"], str) and len(body["api_key"]) >= 32


def test_a_participants_key_is_shown_once_and_never_listed_again(market: Market) -> None:
    created = market.operator.post(
        "/v1/admin/participants", json={"name": "Once", "role": "monitor"}
    ).json()
    listed = market.operator.get("/v1/admin/participants")
    assert listed.status_code == 200
    mine = [
        p for p in listed.json()["participants"] if p["participant_id"] == created["participant_id"]
    ]
    assert mine == [
        {"participant_id": created["participant_id"], "name": "Once", "role": "monitor"}
    ]
    assert created["api_key"] not in listed.text


def test_a_new_participants_key_works_as_a_bearer_token(market: Market) -> None:
    trader = market.trader("Bearer")
    answer = trader.http.get("/v1/account")
    assert answer.status_code == 200
    assert answer.json() == {"participant_id": trader.participant_id, "balances": []}


def test_every_participant_gets_a_different_key(market: Market) -> None:
    keys = {market.trader(f"Trader {n}").api_key for n in range(3)}
    assert len(keys) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"name": "X", "role": "farmer"},
        {"name": "", "role": "trader"},
        {"name": "   ", "role": "trader"},
        {"role": "trader"},
        {"name": "X"},
        {"name": 5, "role": "trader"},
        {"name": "X", "role": "trader", "api_key": "chosen-by-me"},
    ],
    ids=[
        "unknown role",
        "empty name",
        "blank name",
        "no name",
        "no role",
        "name not text",
        "unknown field",
    ],
)
def test_registering_a_participant_with_bad_fields_is_422(
    market: Market, body: dict[str, Any]
) -> None:
    before = market.operator.get("/v1/admin/participants").json()
    assert_error(market.operator.post("/v1/admin/participants", json=body), 422, "INVALID_REQUEST")
    assert market.operator.get("/v1/admin/participants").json() == before


# ---------------------------------------------------------------------- instruments


def test_listing_an_instrument_returns_201_with_the_instrument(market: Market) -> None:
    symbol = f"T{next(_symbol_numbers):03d}-OCOP"
    answer = market.list_instrument(
        symbol,
        name="Mật ong rừng U Minh",
        kind="ocop",
        price_unit="kg",
        lot_size=10,
        tick_size=500,
        reference_price=250_000,
        price_band_pct=7,
        attributes=ocop_attributes(),
    )
    assert answer.status_code == 201, answer.text
    certified = date.fromisoformat(ocop_attributes()["certification_date"])
    expires = add_months(certified, 36)
    assert answer.json() == {
        "symbol": symbol,
        "name": "Mật ong rừng U Minh",
        "kind": "ocop",
        "price_unit": "kg",
        "lot_size": 10,
        "tick_size": 500,
        "reference_price": 250_000,
        "price_band_pct": 7,
        # 250,000 x 93 % = 232,500 and x 107 % = 267,500, both whole ticks of 500.
        "band_low": 232_500,
        "band_high": 267_500,
        "maker_fee_bps": MAKER_BPS,
        "taker_fee_bps": TAKER_BPS,
        "max_order_quantity": 100_000,
        "attributes": {**ocop_attributes(), "certificate_expires_on": expires.isoformat()},
        "status": "open",
        "session": "continuous",
        "reopen_at": None,
        "timetable": None,
        "circuit_breaker": None,
        "settlement_window_s": 300,
    }


def test_a_new_instrument_is_open_for_continuous_trading_at_once(market: Market) -> None:
    seller = market.trader("Seller", lots=1)
    buyer = market.trader("Buyer", vnd=buy_hold(REFERENCE, 1))
    market.rest(seller, "sell", REFERENCE, 1)
    answer = market.place(buyer, side="buy", price=REFERENCE, quantity=1)
    assert answer.status_code == 201
    assert answer.json()["status"] == "filled"


def test_listing_a_symbol_already_listed_is_400_duplicate_symbol(market: Market) -> None:
    before = market.public.get(f"/v1/instruments/{market.symbol}").json()
    answer = market.list_instrument(market.symbol, name="Another name", reference_price=70_000)
    assert_error(answer, 400, "DUPLICATE_SYMBOL")
    assert market.public.get(f"/v1/instruments/{market.symbol}").json() == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"symbol": "hog-lower"},
        {"symbol": "HOG BAD"},
        {"kind": "cattle"},
        {"lot_size": 0},
        {"tick_size": -100},
        {"reference_price": "60000"},
        {"price_band_pct": 101},
        {"lot_size": 10.5},
        {"maker_fee_bps": True},
        {"reference_price": 10**30},
        # Beyond 64 bits where the schema sets no bound: the journal could not record them.
        {"attributes": {"grade": 2**64}},
        {"attributes": {"grade": -(2**63) - 1}},
        {
            "timetable": {
                "pre_open": "08:00",
                "open": "08:30",
                "closing": "11:00",
                "close": "11:30",
                "weekdays": [10**30],
            }
        },
        {"colour": "pink"},
        {"name": ""},
    ],
    ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_listing_an_instrument_with_bad_fields_is_422(
    market: Market, overrides: dict[str, Any]
) -> None:
    symbol = overrides.get("symbol", f"T{next(_symbol_numbers):03d}-BAD")
    answer = market.list_instrument(symbol, **{k: v for k, v in overrides.items() if k != "symbol"})
    assert_error(answer, 422, "INVALID_REQUEST")
    listed = market.public.get("/v1/instruments", params={"limit": 1000}).json()["instruments"]
    assert symbol not in {i["symbol"] for i in listed}


def test_listing_an_instrument_without_a_required_field_is_422(market: Market) -> None:
    answer = market.operator.post(
        "/v1/admin/instruments",
        json={"symbol": "T999-MISSING", "name": "No tick", "kind": "live_hog", "lot_size": 100},
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert_error(market.public.get("/v1/instruments/T999-MISSING"), 404)


def test_listing_an_instrument_whose_reference_price_is_off_the_tick_is_refused(
    market: Market,
) -> None:
    # A cross-field rule: API.md does not say whether it is a 400 or a 422; either, clearly.
    symbol = f"T{next(_symbol_numbers):03d}-OFF"
    answer = market.list_instrument(symbol, tick_size=300, reference_price=60_100)
    assert (answer.status_code, answer.json()["error"]["code"]) in {
        (400, "INVALID_INSTRUMENT"),
        (422, "INVALID_REQUEST"),
    }
    assert_error(answer, answer.status_code)
    assert_error(market.public.get(f"/v1/instruments/{symbol}"), 404)


# ---------------------------------------------------------------------- deposits, withdrawals


def test_depositing_vnd_credits_the_available_balance(market: Market) -> None:
    trader = market.trader("Depositor")
    answer = market.operator.post(
        "/v1/admin/deposits",
        json={"participant_id": trader.participant_id, "asset": "VND", "amount": 5_000_000},
    )
    assert answer.status_code == 201
    body = answer.json()
    assert {k: body[k] for k in ("participant_id", "asset", "amount", "available")} == {
        "participant_id": trader.participant_id,
        "asset": "VND",
        "amount": 5_000_000,
        "available": 5_000_000,
    }
    assert isinstance(body["sequence"], int)
    market.deposit(trader, "VND", 1_000)
    assert balances(trader) == {"VND": (5_001_000, 0)}


def test_depositing_lots_of_a_symbol_puts_goods_into_custody(market: Market) -> None:
    farmer = market.trader("Farmer")
    answer = market.operator.post(
        "/v1/admin/deposits",
        json={"participant_id": farmer.participant_id, "asset": market.symbol, "amount": 12},
    )
    assert answer.status_code == 201
    assert answer.json()["available"] == 12
    assert balances(farmer) == {market.symbol: (12, 0)}


@pytest.mark.parametrize("route", ["deposits", "withdrawals"])
def test_a_transfer_for_an_unknown_participant_is_400_unknown_participant(
    market: Market, route: str
) -> None:
    answer = market.operator.post(
        f"/v1/admin/{route}", json={"participant_id": 999_999, "asset": "VND", "amount": 1}
    )
    assert_error(answer, 400, "UNKNOWN_PARTICIPANT")


@pytest.mark.parametrize("route", ["deposits", "withdrawals"])
def test_a_transfer_of_an_unknown_asset_is_400_unknown_asset(market: Market, route: str) -> None:
    trader = market.trader("Unknown asset", vnd=1_000)
    answer = market.operator.post(
        f"/v1/admin/{route}",
        json={"participant_id": trader.participant_id, "asset": "NO-SUCH-HOG", "amount": 1},
    )
    assert_error(answer, 400, "UNKNOWN_ASSET")
    assert balances(trader) == {"VND": (1_000, 0)}


@pytest.mark.parametrize("route", ["deposits", "withdrawals"])
@pytest.mark.parametrize("amount", [0, -5, 1.5, "5", True, 10**30])
def test_a_transfer_amount_must_be_a_positive_whole_number(
    market: Market, route: str, amount: Any
) -> None:
    trader = market.trader("Amounts", vnd=1_000)
    answer = market.operator.post(
        f"/v1/admin/{route}",
        json={"participant_id": trader.participant_id, "asset": "VND", "amount": amount},
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert balances(trader) == {"VND": (1_000, 0)}


@pytest.mark.parametrize("asset", ["VND", "lots"])
def test_a_withdrawal_takes_from_the_available_balance(market: Market, asset: str) -> None:
    trader = market.trader("Withdrawer", vnd=1_000_000, lots=10)
    name = "VND" if asset == "VND" else market.symbol
    answer = market.operator.post(
        "/v1/admin/withdrawals",
        json={"participant_id": trader.participant_id, "asset": name, "amount": 4},
    )
    assert answer.status_code == 201, answer.text
    expected = {"VND": (1_000_000, 0), market.symbol: (10, 0)}
    expected[name] = (expected[name][0] - 4, 0)
    assert answer.json()["available"] == expected[name][0]
    assert balances(trader) == expected


def test_a_withdrawal_beyond_what_is_available_is_400_insufficient_funds(market: Market) -> None:
    trader = market.trader("Reserved", vnd=20_000_000)
    market.rest(trader, "buy", 60_000, 2)
    # The buy holds 2 x 60,000 x 100 = 12,000,000 + 5 bps 6,000 = 12,006,000 of the 20,000,000.
    assert balances(trader) == {"VND": (7_994_000, 12_006_000)}
    for amount in (20_000_000, 7_994_001):
        answer = market.operator.post(
            "/v1/admin/withdrawals",
            json={"participant_id": trader.participant_id, "asset": "VND", "amount": amount},
        )
        assert_error(answer, 400, "INSUFFICIENT_FUNDS")
    assert balances(trader) == {"VND": (7_994_000, 12_006_000)}
    everything_available = market.operator.post(
        "/v1/admin/withdrawals",
        json={"participant_id": trader.participant_id, "asset": "VND", "amount": 7_994_000},
    )
    assert everything_available.status_code == 201
    assert balances(trader) == {"VND": (0, 12_006_000)}


def test_lots_reserved_by_a_sell_cannot_be_withdrawn(market: Market) -> None:
    farmer = market.trader("Farmer", lots=10)
    market.rest(farmer, "sell", 61_000, 7)
    answer = market.operator.post(
        "/v1/admin/withdrawals",
        json={"participant_id": farmer.participant_id, "asset": market.symbol, "amount": 4},
    )
    assert_error(answer, 400, "INSUFFICIENT_FUNDS")
    assert balances(farmer) == {market.symbol: (3, 7)}


# ---------------------------------------------------------------------- halt and resume


def test_halting_a_market_answers_200_with_its_status(market: Market) -> None:
    answer = market.operator.post(
        f"/v1/admin/markets/{market.symbol}/halt", json={"reason": "disease outbreak check"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["symbol"] == market.symbol
    assert body["status"] == "halted"
    assert body["reason"] == "disease outbreak check"
    assert isinstance(body["sequence"], int)
    assert market.public.get(f"/v1/instruments/{market.symbol}").json()["status"] == "halted"


def test_a_halted_market_refuses_new_orders_with_400_market_halted(market: Market) -> None:
    trader = market.trader("Halted", vnd=100_000_000)
    market.operator.post(f"/v1/admin/markets/{market.symbol}/halt")
    before = market.state(trader)
    answer = market.place(trader, side="buy", price=60_000, quantity=1)
    assert_error(answer, 400, "MARKET_HALTED")
    assert market.state(trader) == before


def test_a_halted_market_still_accepts_cancels(market: Market) -> None:
    trader = market.trader("Cancels", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 1)
    market.operator.post(f"/v1/admin/markets/{market.symbol}/halt")
    answer = trader.http.delete(f"/v1/orders/{order_id}")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert market.levels() == ([], [])
    assert balances(trader) == {"VND": (100_000_000, 0)}


def test_a_halted_market_refuses_amends_with_400_market_halted(market: Market) -> None:
    trader = market.trader("Amends", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 1)
    market.operator.post(f"/v1/admin/markets/{market.symbol}/halt")
    answer = trader.http.patch(f"/v1/orders/{order_id}", json={"price": 60_100})
    assert_error(answer, 400, "MARKET_HALTED")
    assert get_order(trader, order_id)["price"] == 60_000


def test_a_resumed_market_accepts_orders_again(market: Market) -> None:
    trader = market.trader("Resumed", vnd=100_000_000)
    market.operator.post(f"/v1/admin/markets/{market.symbol}/halt")
    answer = market.operator.post(f"/v1/admin/markets/{market.symbol}/resume")
    assert answer.status_code == 200
    assert answer.json()["status"] == "open"
    assert answer.json()["symbol"] == market.symbol
    assert market.public.get(f"/v1/instruments/{market.symbol}").json()["status"] == "open"
    assert market.place(trader, side="buy", price=60_000, quantity=1).status_code == 201


@pytest.mark.parametrize("action", ["halt", "resume"])
def test_halting_or_resuming_an_unknown_symbol_is_404(market: Market, action: str) -> None:
    assert_error(market.operator.post(f"/v1/admin/markets/NO-SUCH-HOG/{action}"), 404)


# ---------------------------------------------------------------------- placing orders


def test_a_resting_limit_order_returns_201_with_every_field_of_the_contract(
    market: Market,
) -> None:
    trader = market.trader("Fields", vnd=100_000_000)
    answer = market.place(
        trader,
        side="buy",
        type="limit",
        price=60_000,
        quantity=5,
        time_in_force="gtc",
        post_only=False,
        all_or_none=False,
        client_order_id="abc-1",
    )
    assert answer.status_code == 201
    order = answer.json()
    assert set(order) >= ORDER_FIELDS
    assert isinstance(order["order_id"], str) and order["order_id"]
    assert isinstance(order["sequence"], int) and order["sequence"] > 0
    parse_time(order["created_at"])
    assert {k: order[k] for k in ORDER_FIELDS - {"order_id", "sequence", "created_at"}} == {
        "client_order_id": "abc-1",
        "symbol": market.symbol,
        "side": "buy",
        "type": "limit",
        "price": 60_000,
        "quantity": 5,
        "filled_quantity": 0,
        "remaining_quantity": 5,
        "status": "new",
        "time_in_force": "gtc",
        "cancel_reason": None,
        "trades": [],
    }


def test_an_order_id_is_unique_and_newer_orders_get_larger_ids(market: Market) -> None:
    trader = market.trader("Ids", vnd=100_000_000)
    ids = [market.rest(trader, "buy", 60_000, 1) for _ in range(3)]
    assert len(set(ids)) == 3
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)


def test_a_crossing_limit_order_trades_at_the_resting_price(market: Market) -> None:
    seller = market.trader("Maker", lots=5)
    buyer = market.trader("Taker", vnd=100_000_000)
    sell_id = market.rest(seller, "sell", 61_000, 5)
    answer = market.place(buyer, side="buy", price=62_000, quantity=5)
    assert answer.status_code == 201
    order = answer.json()
    assert order["status"] == "filled"
    assert (order["filled_quantity"], order["remaining_quantity"]) == (5, 0)
    assert [(t["price"], t["quantity"], t["liquidity"]) for t in order["trades"]] == [
        (61_000, 5, "taker")
    ]
    trade = order["trades"][0]
    assert isinstance(trade["trade_id"], str)
    maker = get_order(seller, sell_id)
    assert maker["status"] == "filled"
    assert [(t["trade_id"], t["liquidity"]) for t in maker["trades"]] == [
        (trade["trade_id"], "maker")
    ]


def test_a_partly_filled_limit_order_rests_as_partially_filled(market: Market) -> None:
    seller = market.trader("Seller", lots=2)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 2)
    answer = market.place(buyer, side="buy", price=60_000, quantity=5)
    order = answer.json()
    assert order["status"] == "partially_filled"
    assert (order["filled_quantity"], order["remaining_quantity"]) == (2, 3)
    assert order["cancel_reason"] is None
    assert market.levels() == ([[60_000, 3, 1]], [])


def test_a_market_order_fills_what_it_can_and_cancels_the_rest(market: Market) -> None:
    seller = market.trader("Seller", lots=3)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 61_000, 3)
    answer = market.place(buyer, side="buy", type="market", quantity=10)
    assert answer.status_code == 201
    order = answer.json()
    assert order["type"] == "market" and order["price"] is None
    assert order["status"] == "cancelled"
    assert order["cancel_reason"] == "IMMEDIATE_OR_CANCEL"
    assert order["filled_quantity"] == 3
    assert [(t["price"], t["quantity"]) for t in order["trades"]] == [(61_000, 3)]
    # The market buy held 10 lots at the band top; what it did not spend came back:
    # 100,000,000 - 3 x 61,000 x 100 (18,300,000) - taker fee 9,150 = 81,690,850.
    assert balances(buyer) == {"VND": (81_690_850, 0), market.symbol: (3, 0)}


def test_a_market_order_facing_an_empty_book_ends_cancelled_with_no_liquidity(
    market: Market,
) -> None:
    farmer = market.trader("Farmer", lots=3)
    answer = market.place(farmer, side="sell", type="market", quantity=3)
    assert answer.status_code == 201
    order = answer.json()
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "NO_LIQUIDITY")
    assert (order["filled_quantity"], order["trades"]) == (0, [])
    assert balances(farmer) == {market.symbol: (3, 0)}


def test_an_ioc_order_cancels_its_remainder_with_immediate_or_cancel(market: Market) -> None:
    seller = market.trader("Seller", lots=4)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 4)
    order = market.place(buyer, side="buy", price=60_000, quantity=6, time_in_force="ioc").json()
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "IMMEDIATE_OR_CANCEL")
    assert order["filled_quantity"] == 4
    assert market.levels() == ([], [])


def test_a_fok_order_that_cannot_fill_whole_is_killed_and_trades_nothing(market: Market) -> None:
    seller = market.trader("Seller", lots=4)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 4)
    order = market.place(buyer, side="buy", price=60_000, quantity=5, time_in_force="fok").json()
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "FILL_OR_KILL")
    assert (order["filled_quantity"], order["trades"]) == (0, [])
    assert market.levels() == ([], [[60_000, 4, 1]])
    assert balances(buyer) == {"VND": (100_000_000, 0)}


def test_a_fok_order_that_can_fill_whole_fills(market: Market) -> None:
    seller = market.trader("Seller", lots=4)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 2)
    market.rest(seller, "sell", 60_100, 2)
    order = market.place(buyer, side="buy", price=60_100, quantity=4, time_in_force="fok").json()
    assert order["status"] == "filled"
    assert [(t["price"], t["quantity"]) for t in order["trades"]] == [(60_000, 2), (60_100, 2)]


def test_a_post_only_order_that_would_take_is_400_post_only_would_take(market: Market) -> None:
    seller = market.trader("Seller", lots=4)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 4)
    before = market.state(seller, buyer)
    answer = market.place(buyer, side="buy", price=60_000, quantity=1, post_only=True)
    assert_error(answer, 400, "POST_ONLY_WOULD_TAKE")
    assert market.state(seller, buyer) == before


def test_a_post_only_order_that_does_not_cross_rests(market: Market) -> None:
    seller = market.trader("Seller", lots=4)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 4)
    answer = market.place(buyer, side="buy", price=59_900, quantity=1, post_only=True)
    assert answer.status_code == 201
    assert answer.json()["status"] == "new"
    assert market.levels() == ([[59_900, 1, 1]], [[60_000, 4, 1]])


def test_an_all_or_none_order_never_fills_in_part(market: Market) -> None:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 3)
    answer = market.place(buyer, side="buy", price=60_000, quantity=5, all_or_none=True)
    assert answer.status_code == 201
    order = answer.json()
    assert (order["status"], order["filled_quantity"], order["trades"]) == ("new", 0, [])
    assert order["all_or_none"] is True
    assert market.levels() == ([[60_000, 5, 1]], [[60_000, 3, 1]])
    # A sell of 2 would fill it only in part: it passes the all-or-none buy by and rests.
    market.rest(seller, "sell", 60_000, 2)
    assert get_order(buyer, order["order_id"])["filled_quantity"] == 0
    assert market.levels() == ([[60_000, 5, 1]], [[60_000, 5, 2]])
    # A sell of 5 fills it whole, in one trade.
    other = market.trader("Other seller", lots=5)
    market.place(other, side="sell", price=60_000, quantity=5)
    filled = get_order(buyer, order["order_id"])
    assert filled["status"] == "filled"
    assert [(t["quantity"], t["liquidity"]) for t in filled["trades"]] == [(5, "maker")]
    assert market.levels() == ([], [[60_000, 5, 2]])


def test_an_order_meeting_its_own_resting_order_is_cancelled_with_self_trade(
    market: Market,
) -> None:
    trader = market.trader("Both sides", vnd=100_000_000, lots=5)
    market.rest(trader, "sell", 60_000, 5)
    order = market.place(trader, side="buy", price=60_000, quantity=2).json()
    assert (order["status"], order["cancel_reason"]) == ("cancelled", "SELF_TRADE")
    assert order["trades"] == []
    assert market.levels() == ([], [[60_000, 5, 1]])
    assert balances(trader) == {"VND": (100_000_000, 0), market.symbol: (0, 5)}


def test_a_day_order_rests_like_a_gtc_order(market: Market) -> None:
    trader = market.trader("Day", vnd=100_000_000)
    order = market.place(trader, side="buy", price=60_000, quantity=1, time_in_force="day").json()
    assert (order["status"], order["time_in_force"]) == ("new", "day")
    assert market.levels() == ([[60_000, 1, 1]], [])


# ---------------------------------------------------------------------- idempotency


def test_placing_an_order_with_a_used_client_order_id_returns_the_original_with_200(
    market: Market,
) -> None:
    trader = market.trader("Idempotent", vnd=100_000_000)
    first = market.place(trader, side="buy", price=60_000, quantity=2, client_order_id="k-1")
    assert first.status_code == 201
    again = market.place(trader, side="buy", price=60_000, quantity=2, client_order_id="k-1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert market.levels() == ([[60_000, 2, 1]], [])
    assert balances(trader) == {"VND": (100_000_000 - buy_hold(60_000, 2), buy_hold(60_000, 2))}


def test_a_reused_client_order_id_never_makes_a_second_order_even_with_other_fields(
    market: Market,
) -> None:
    trader = market.trader("Idempotent", vnd=100_000_000)
    first = market.place(trader, side="buy", price=60_000, quantity=2, client_order_id="k-2")
    different = market.place(trader, side="buy", price=59_000, quantity=7, client_order_id="k-2")
    assert different.status_code == 200
    assert different.json()["order_id"] == first.json()["order_id"]
    assert different.json()["price"] == 60_000
    orders = trader.http.get("/v1/orders", params={"status": "all"}).json()["orders"]
    assert [o["order_id"] for o in orders] == [first.json()["order_id"]]


def test_a_reused_client_order_id_returns_the_original_as_it_stands_now(market: Market) -> None:
    trader = market.trader("Idempotent", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 2, client_order_id="k-3")
    trader.http.delete(f"/v1/orders/{order_id}")
    again = market.place(trader, side="buy", price=60_000, quantity=2, client_order_id="k-3")
    assert again.status_code == 200
    assert (again.json()["order_id"], again.json()["status"]) == (order_id, "cancelled")


def test_client_order_ids_belong_to_each_participant(market: Market) -> None:
    one = market.trader("One", vnd=100_000_000)
    two = market.trader("Two", vnd=100_000_000)
    first = market.place(one, side="buy", price=60_000, quantity=1, client_order_id="same")
    second = market.place(two, side="buy", price=60_000, quantity=1, client_order_id="same")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["order_id"] != second.json()["order_id"]


# ---------------------------------------------------------------------- business rejections


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"side": "buy", "price": 60_050, "quantity": 1}, "TICK_SIZE"),
        ({"side": "sell", "price": 60_001, "quantity": 1}, "TICK_SIZE"),
        ({"side": "buy", "price": 60_000, "quantity": 100_001}, "LOT_SIZE"),
        ({"side": "buy", "price": BAND_HIGH + TICK, "quantity": 1}, "PRICE_OUT_OF_BAND"),
        ({"side": "sell", "price": BAND_LOW - TICK, "quantity": 1}, "PRICE_OUT_OF_BAND"),
        ({"side": "buy", "price": 60_000, "quantity": 20}, "INSUFFICIENT_FUNDS"),
        ({"side": "sell", "price": 60_000, "quantity": 6}, "INSUFFICIENT_FUNDS"),
        ({"side": "buy", "type": "market", "quantity": 16}, "INSUFFICIENT_FUNDS"),
        (
            {"symbol": "NO-SUCH-HOG", "side": "buy", "price": 60_000, "quantity": 1},
            "UNKNOWN_INSTRUMENT",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_order_breaking_a_market_rule_is_400_with_its_code_and_changes_nothing(
    market: Market, fields: dict[str, Any], code: str
) -> None:
    # 100,000,000 VND holds 16 lots at 60,000 (16 x 6,003,000 = 96,048,000) but not 20,
    # and a market buy of 16 is held at the band top: 16 x 66,000 x 100 + 5 bps > 100,000,000.
    trader = market.trader("Rules", vnd=100_000_000, lots=5)
    before = market.state(trader)
    assert_error(market.place(trader, **fields), 400, code)
    assert market.state(trader) == before


def test_the_band_edges_themselves_are_allowed(market: Market) -> None:
    trader = market.trader("Edges", vnd=100_000_000, lots=5)
    assert market.place(trader, side="buy", price=BAND_LOW, quantity=1).status_code == 201
    assert market.place(trader, side="sell", price=BAND_HIGH, quantity=1).status_code == 201


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"side": "buy", "type": "market", "price": 60_000, "quantity": 1}, 422, "INVALID_REQUEST"),
        ({"side": "buy", "type": "limit", "quantity": 1}, 422, "INVALID_REQUEST"),
        (
            {
                "side": "buy",
                "price": 60_000,
                "quantity": 1,
                "post_only": True,
                "time_in_force": "ioc",
            },
            400,
            "INVALID_ORDER",
        ),
        ({"side": "buy", "type": "market", "quantity": 1, "post_only": True}, 400, "INVALID_ORDER"),
    ],
    ids=["market with a price", "limit without a price", "post-only ioc", "post-only market"],
)
def test_an_order_with_contradictory_fields_is_refused_and_changes_nothing(
    market: Market, fields: dict[str, Any], status: int, code: str
) -> None:
    # API.md: "market: no price" is the body's own shape, like a missing field: 422, refused
    # before the core. Post-only against ioc or a market order is a rule of the book, one of
    # the business rejections: 400.
    trader = market.trader("Contradictions", vnd=100_000_000)
    before = market.state(trader)
    sequence = market.public.get(f"/v1/markets/{market.symbol}/book").json()["sequence"]
    assert_error(market.place(trader, **fields), status, code)
    assert market.state(trader) == before
    if status == 422:  # nothing was journaled for it
        assert market.public.get(f"/v1/markets/{market.symbol}/book").json()["sequence"] == sequence


# ---------------------------------------------------------------------- cancelling


def test_cancelling_an_open_order_returns_it_cancelled_and_releases_its_hold(
    market: Market,
) -> None:
    trader = market.trader("Canceller", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 3)
    answer = trader.http.delete(f"/v1/orders/{order_id}")
    assert answer.status_code == 200
    order = answer.json()
    assert (order["order_id"], order["status"]) == (order_id, "cancelled")
    assert order["remaining_quantity"] == 0
    assert market.levels() == ([], [])
    assert balances(trader) == {"VND": (100_000_000, 0)}


def test_cancelling_a_partly_filled_order_keeps_what_filled(market: Market) -> None:
    seller = market.trader("Seller", lots=2)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 2)
    order_id = market.rest(buyer, "buy", 60_000, 5)
    order = buyer.http.delete(f"/v1/orders/{order_id}").json()
    assert (order["status"], order["filled_quantity"]) == ("cancelled", 2)
    # Paid 2 x 6,000,000 = 12,000,000 + taker fee 6,000; the rest of the hold came back.
    assert balances(buyer) == {"VND": (87_994_000, 0), market.symbol: (2, 0)}


def test_cancelling_an_order_again_is_409_order_not_open(market: Market) -> None:
    trader = market.trader("Twice", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 1)
    assert trader.http.delete(f"/v1/orders/{order_id}").status_code == 200
    assert_error(trader.http.delete(f"/v1/orders/{order_id}"), 409, "ORDER_NOT_OPEN")


def test_cancelling_a_filled_order_is_409_order_not_open(market: Market) -> None:
    seller = market.trader("Seller", lots=1)
    buyer = market.trader("Buyer", vnd=100_000_000)
    sell_id = market.rest(seller, "sell", 60_000, 1)
    market.rest(buyer, "buy", 60_000, 1)
    assert_error(seller.http.delete(f"/v1/orders/{sell_id}"), 409, "ORDER_NOT_OPEN")


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
def test_another_participants_order_is_404_order_not_found_like_a_missing_one(
    market: Market, method: str
) -> None:
    owner = market.trader("Owner", vnd=100_000_000)
    snoop = market.trader("Snoop")
    order_id = market.rest(owner, "buy", 60_000, 1)
    body = {"price": 60_100} if method == "PATCH" else None
    theirs = snoop.http.request(method, f"/v1/orders/{order_id}", json=body)
    missing_id = "987654321"
    missing = snoop.http.request(method, f"/v1/orders/{missing_id}", json=body)
    assert_error(theirs, 404, "ORDER_NOT_FOUND")
    assert_error(missing, 404, "ORDER_NOT_FOUND")
    # Nothing in the answer tells the two apart.
    theirs_message = theirs.json()["error"]["message"].replace(order_id, "<id>")
    assert theirs_message == missing.json()["error"]["message"].replace(missing_id, "<id>")
    order = get_order(owner, order_id)
    assert (order["status"], order["price"]) == ("new", 60_000)


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "order_id",
    ["987654321", "0", "-1", "abc", "1.0", "9" * 30, "²", "١٢"],
    ids=[
        "unknown",
        "zero",
        "negative",
        "letters",
        "decimal",
        "huge",
        "superscript two",
        "arabic-indic digits",
    ],
)
def test_an_unknown_or_malformed_order_id_is_404_order_not_found(
    market: Market, method: str, order_id: str
) -> None:
    trader = market.trader("Lookups")
    body = {"quantity": 1} if method == "PATCH" else None
    assert_error(
        trader.http.request(method, f"/v1/orders/{order_id}", json=body), 404, "ORDER_NOT_FOUND"
    )


# ---------------------------------------------------------------------- amending


def _queue_of_two(market: Market) -> tuple[Trader, Trader, str, str, Trader]:
    """Two sellers at 60,000 in time order (first, second), and a funded buyer."""
    first = market.trader("First", lots=10)
    second = market.trader("Second", lots=10)
    first_id = market.rest(first, "sell", 60_000, 3)
    second_id = market.rest(second, "sell", 60_000, 3)
    buyer = market.trader("Buyer", vnd=100_000_000)
    return first, second, first_id, second_id, buyer


def _who_fills_first(market: Market, buyer: Trader) -> list[str]:
    order = market.place(buyer, side="buy", price=60_000, quantity=1).json()
    return [t["trade_id"] for t in order["trades"]]


def test_lowering_the_quantity_keeps_time_priority(market: Market) -> None:
    first, second, first_id, second_id, buyer = _queue_of_two(market)
    answer = first.http.patch(f"/v1/orders/{first_id}", json={"quantity": 2})
    assert answer.status_code == 200
    assert (answer.json()["quantity"], answer.json()["remaining_quantity"]) == (2, 2)
    assert market.levels() == ([], [[60_000, 5, 2]])
    trade_ids = _who_fills_first(market, buyer)
    assert [t["trade_id"] for t in get_order(first, first_id)["trades"]] == trade_ids
    assert get_order(second, second_id)["trades"] == []


def test_raising_the_quantity_loses_time_priority(market: Market) -> None:
    first, second, first_id, second_id, buyer = _queue_of_two(market)
    answer = first.http.patch(f"/v1/orders/{first_id}", json={"quantity": 4})
    assert answer.status_code == 200
    assert answer.json()["quantity"] == 4
    assert market.levels() == ([], [[60_000, 7, 2]])
    trade_ids = _who_fills_first(market, buyer)
    assert [t["trade_id"] for t in get_order(second, second_id)["trades"]] == trade_ids
    assert get_order(first, first_id)["trades"] == []


def test_changing_the_price_loses_time_priority(market: Market) -> None:
    first, second, first_id, second_id, buyer = _queue_of_two(market)
    assert first.http.patch(f"/v1/orders/{first_id}", json={"price": 60_100}).status_code == 200
    assert market.levels() == ([], [[60_000, 3, 1], [60_100, 3, 1]])
    assert first.http.patch(f"/v1/orders/{first_id}", json={"price": 60_000}).status_code == 200
    assert market.levels() == ([], [[60_000, 6, 2]])
    trade_ids = _who_fills_first(market, buyer)
    assert [t["trade_id"] for t in get_order(second, second_id)["trades"]] == trade_ids


def test_amending_a_price_across_the_spread_trades_at_once(market: Market) -> None:
    seller = market.trader("Seller", lots=5)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_500, 2)
    order_id = market.rest(buyer, "buy", 60_000, 2)
    answer = buyer.http.patch(f"/v1/orders/{order_id}", json={"price": 60_500})
    assert answer.status_code == 200
    order = answer.json()
    assert (order["status"], order["price"]) == ("filled", 60_500)
    assert [(t["price"], t["quantity"], t["liquidity"]) for t in order["trades"]] == [
        (60_500, 2, "taker")
    ]
    assert market.levels() == ([], [])


def test_amending_a_buy_re_bases_its_hold_on_the_new_price_and_quantity(market: Market) -> None:
    buyer = market.trader("Buyer", vnd=100_000_000)
    order_id = market.rest(buyer, "buy", 60_000, 2)
    # 2 x 60,000 x 100 = 12,000,000 + 5 bps 6,000.
    assert balances(buyer) == {"VND": (87_994_000, 12_006_000)}
    buyer.http.patch(f"/v1/orders/{order_id}", json={"price": 59_000, "quantity": 3})
    # 3 x 59,000 x 100 = 17,700,000 + 5 bps 8,850.
    assert balances(buyer) == {"VND": (82_291_150, 17_708_850)}


def test_amending_with_neither_price_nor_quantity_is_422(market: Market) -> None:
    trader = market.trader("Nothing", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 1)
    for body in ({}, {"price": None, "quantity": None}):
        assert_error(trader.http.patch(f"/v1/orders/{order_id}", json=body), 422, "INVALID_REQUEST")
    assert get_order(trader, order_id)["price"] == 60_000


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"price": 60_050}, "TICK_SIZE"),
        ({"price": BAND_HIGH + TICK}, "PRICE_OUT_OF_BAND"),
        ({"quantity": 100_001}, "LOT_SIZE"),
        ({"quantity": 20}, "INSUFFICIENT_FUNDS"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_amend_breaking_a_market_rule_is_400_and_changes_nothing(
    market: Market, body: dict[str, int], code: str
) -> None:
    trader = market.trader("Amend rules", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 2)
    before = market.state(trader)
    assert_error(trader.http.patch(f"/v1/orders/{order_id}", json=body), 400, code)
    assert market.state(trader) == before


def test_amending_a_post_only_order_across_the_spread_is_400_post_only_would_take(
    market: Market,
) -> None:
    seller = market.trader("Seller", lots=5)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_500, 2)
    order_id = market.rest(buyer, "buy", 60_000, 2, post_only=True)
    before = market.state(seller, buyer)
    answer = buyer.http.patch(f"/v1/orders/{order_id}", json={"price": 60_500})
    assert_error(answer, 400, "POST_ONLY_WOULD_TAKE")
    assert market.state(seller, buyer) == before


def test_amending_the_quantity_down_to_what_has_filled_ends_the_order(market: Market) -> None:
    seller = market.trader("Seller", lots=2)
    buyer = market.trader("Buyer", vnd=100_000_000)
    order_id = market.rest(buyer, "buy", 60_000, 5)
    market.place(seller, side="sell", price=60_000, quantity=2)
    answer = buyer.http.patch(f"/v1/orders/{order_id}", json={"quantity": 2})
    assert answer.status_code == 200
    order = answer.json()
    assert (order["status"], order["filled_quantity"]) == ("cancelled", 2)
    assert order["cancel_reason"] == "AMENDED_BELOW_FILLED"
    assert market.levels() == ([], [])
    # Paid 2 x 6,000,000 as maker (fee 2 bps: 2,400); nothing stays reserved.
    assert balances(buyer) == {"VND": (87_997_600, 0), market.symbol: (2, 0)}


def test_amending_a_closed_order_is_409_order_not_open(market: Market) -> None:
    trader = market.trader("Closed", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 1)
    trader.http.delete(f"/v1/orders/{order_id}")
    assert_error(
        trader.http.patch(f"/v1/orders/{order_id}", json={"quantity": 1}), 409, "ORDER_NOT_OPEN"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"{bad json",
        b"[]",
        b'{"price": "60100"}',
        b'{"price": 60100.0}',
        b'{"quantity": true}',
        b'{"quantity": 0}',
        b'{"quantity": -1}',
        b'{"price": 1000000000000000000000000000000}',
        b'{"price": 60100, "side": "sell"}',
        b'{"price": 60100, "note": "\xff"}',
    ],
    ids=[
        "malformed",
        "array",
        "string price",
        "float price",
        "bool quantity",
        "zero quantity",
        "negative quantity",
        "huge price",
        "unknown field",
        "invalid utf-8",
    ],
)
def test_a_malformed_amend_is_422_and_changes_nothing(market: Market, body: bytes) -> None:
    trader = market.trader("Bad amends", vnd=100_000_000)
    order_id = market.rest(trader, "buy", 60_000, 1)
    before = market.state(trader)
    answer = trader.http.patch(
        f"/v1/orders/{order_id}", content=body, headers={"content-type": "application/json"}
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert market.state(trader) == before


# ---------------------------------------------------------------------- listing own orders


def test_listing_orders_shows_open_orders_newest_first_by_default(market: Market) -> None:
    trader = market.trader("Lister", vnd=100_000_000)
    ids = [market.rest(trader, "buy", 59_000 + 100 * n, 1) for n in range(3)]
    trader.http.delete(f"/v1/orders/{ids[1]}")
    answer = trader.http.get("/v1/orders")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"orders", "next_cursor"}
    assert [o["order_id"] for o in body["orders"]] == [ids[2], ids[0]]
    assert body["next_cursor"] is None
    assert all(set(o) >= ORDER_FIELDS for o in body["orders"])


def test_listing_orders_with_status_all_includes_closed_ones(market: Market) -> None:
    trader = market.trader("Lister", vnd=100_000_000)
    ids = [market.rest(trader, "buy", 59_000 + 100 * n, 1) for n in range(3)]
    trader.http.delete(f"/v1/orders/{ids[1]}")
    orders = trader.http.get("/v1/orders", params={"status": "all"}).json()["orders"]
    assert [(o["order_id"], o["status"]) for o in orders] == [
        (ids[2], "new"),
        (ids[1], "cancelled"),
        (ids[0], "new"),
    ]
    open_orders = trader.http.get("/v1/orders", params={"status": "open"}).json()["orders"]
    assert [o["order_id"] for o in open_orders] == [ids[2], ids[0]]


def test_listing_orders_shows_partly_filled_orders_as_open(market: Market) -> None:
    seller = market.trader("Seller", lots=1)
    buyer = market.trader("Buyer", vnd=100_000_000)
    order_id = market.rest(buyer, "buy", 60_000, 3)
    market.place(seller, side="sell", price=60_000, quantity=1)
    orders = buyer.http.get("/v1/orders").json()["orders"]
    assert [(o["order_id"], o["status"]) for o in orders] == [(order_id, "partially_filled")]


def test_listing_orders_filters_by_symbol(market: Market) -> None:
    trader = market.trader("Two markets", vnd=100_000_000)
    other = market.another_symbol()
    here = market.rest(trader, "buy", 60_000, 1)
    there = trader.http.post(
        "/v1/orders", json={"symbol": other, "side": "buy", "price": 60_000, "quantity": 1}
    ).json()["order_id"]
    for symbol, expected in ((market.symbol, [here]), (other, [there])):
        orders = trader.http.get("/v1/orders", params={"symbol": symbol}).json()["orders"]
        assert [o["order_id"] for o in orders] == expected
        assert {o["symbol"] for o in orders} == {symbol}
    assert trader.http.get("/v1/orders", params={"symbol": "NO-SUCH"}).json()["orders"] == []


def test_listing_shows_only_the_callers_own_orders(market: Market) -> None:
    one = market.trader("One", vnd=100_000_000)
    two = market.trader("Two", vnd=100_000_000)
    market.rest(one, "buy", 60_000, 1)
    assert two.http.get("/v1/orders", params={"status": "all"}).json()["orders"] == []


def test_paging_through_orders_with_the_cursor_visits_each_order_once(market: Market) -> None:
    trader = market.trader("Pager", vnd=200_000_000)
    ids = [market.rest(trader, "buy", 58_000 + 100 * n, 1) for n in range(8)]
    trader.http.delete(f"/v1/orders/{ids[4]}")
    pages: list[list[str]] = []
    params: dict[str, Any] = {"status": "all", "limit": 3}
    while True:
        body = trader.http.get("/v1/orders", params=params).json()
        pages.append([o["order_id"] for o in body["orders"]])
        if body["next_cursor"] is None:
            break
        assert isinstance(body["next_cursor"], str)
        params["cursor"] = body["next_cursor"]
    assert [len(page) for page in pages] == [3, 3, 2]
    assert [order_id for page in pages for order_id in page] == list(reversed(ids))


def test_paging_through_open_orders_skips_closed_ones_without_gaps(market: Market) -> None:
    trader = market.trader("Pager", vnd=200_000_000)
    ids = [market.rest(trader, "buy", 58_000 + 100 * n, 1) for n in range(7)]
    for cancelled in (ids[1], ids[3], ids[5]):
        trader.http.delete(f"/v1/orders/{cancelled}")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = trader.http.get("/v1/orders", params=params).json()
        seen += [o["order_id"] for o in body["orders"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[6], ids[4], ids[2], ids[0]]


@pytest.mark.parametrize(
    "params",
    [{"status": "closed"}, {"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"limit": 10**30}],
    ids=["status closed", "limit 0", "limit 1001", "limit text", "limit huge"],
)
def test_listing_orders_with_an_invalid_filter_is_422(
    market: Market, params: dict[str, Any]
) -> None:
    trader = market.trader("Filters")
    assert_error(trader.http.get("/v1/orders", params=params), 422, "INVALID_REQUEST")


@pytest.mark.parametrize("route", ["/v1/orders", "/v1/fills"])
@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "not a cursor",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"-5").decode(),
        base64.urlsafe_b64encode("²".encode()).decode(),
    ],
    ids=["punctuation", "words", "not utf-8", "negative", "superscript two"],
)
def test_a_cursor_the_server_never_gave_out_is_422(market: Market, route: str, cursor: str) -> None:
    trader = market.trader("Cursors")
    assert_error(trader.http.get(route, params={"cursor": cursor}), 422, "INVALID_REQUEST")


# ---------------------------------------------------------------------- fills


def test_fills_list_own_fills_newest_first_with_liquidity_and_fee(market: Market) -> None:
    seller = market.trader("Seller", lots=5)
    buyer = market.trader("Buyer", vnd=100_000_000)
    sell_id = market.rest(seller, "sell", 60_000, 2)
    market.rest(seller, "sell", 60_100, 3)
    buy = market.place(buyer, side="buy", price=60_100, quantity=5).json()
    first, second = buy["trades"]
    answer = buyer.http.get("/v1/fills")
    assert answer.status_code == 200
    body = answer.json()
    assert body["next_cursor"] is None
    fills = body["fills"]
    assert [f["trade_id"] for f in fills] == [second["trade_id"], first["trade_id"]]
    newest = fills[0]
    parse_time(newest.pop("time"))
    assert isinstance(newest.pop("sequence"), int)
    assert newest == {
        "trade_id": second["trade_id"],
        "order_id": buy["order_id"],
        "symbol": market.symbol,
        "side": "buy",
        "price": 60_100,
        "quantity": 3,
        "liquidity": "taker",
        "fee_vnd": 9_015,  # 3 x 60,100 x 100 = 18,030,000 x 5 bps
    }
    seller_fills = seller.http.get("/v1/fills").json()["fills"]
    oldest = seller_fills[-1]
    assert (oldest["order_id"], oldest["side"], oldest["liquidity"]) == (sell_id, "sell", "maker")
    assert oldest["fee_vnd"] == 2_400  # 2 x 60,000 x 100 = 12,000,000 x 2 bps


def test_fills_filter_by_symbol(market: Market) -> None:
    seller = market.trader("Seller", lots=5)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 1)
    market.place(buyer, side="buy", price=60_000, quantity=1)
    assert len(buyer.http.get("/v1/fills", params={"symbol": market.symbol}).json()["fills"]) == 1
    assert buyer.http.get("/v1/fills", params={"symbol": "NO-SUCH"}).json()["fills"] == []


def test_paging_through_fills_with_the_cursor_visits_each_fill_once(market: Market) -> None:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000)
    for n in range(5):
        market.rest(seller, "sell", 60_000 + 100 * n, 1)
    buy = market.place(buyer, side="buy", price=60_400, quantity=5).json()
    trade_ids = [t["trade_id"] for t in buy["trades"]]
    assert len(trade_ids) == 5
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = buyer.http.get("/v1/fills", params=params).json()
        pages.append([f["trade_id"] for f in body["fills"]])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [t for page in pages for t in page] == list(reversed(trade_ids))


def _walk_pages(http: httpx.Client, path: str, key: str, limit: int) -> list[list[Any]]:
    pages: list[list[Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        body = http.get(path, params=params).json()
        pages.append(body[key])
        if body["next_cursor"] is None:
            return pages
        params["cursor"] = body["next_cursor"]


def test_paging_through_participants_visits_each_once_in_id_order(market: Market) -> None:
    for n in range(4):
        market.trader(f"Paged {n}")
    everyone = market.operator.get("/v1/admin/participants", params={"limit": 1000}).json()
    pages = _walk_pages(market.operator, "/v1/admin/participants", "participants", 2)
    assert all(len(page) <= 2 for page in pages)
    assert [p for page in pages for p in page] == everyone["participants"]
    ids = [p["participant_id"] for p in everyone["participants"]]
    assert ids == sorted(ids) and len(ids) >= 5


def test_paging_through_instruments_visits_each_once_in_listing_order(market: Market) -> None:
    for n in range(3):
        assert market.list_instrument(f"PAGE-{n}").status_code == 201
    everyone = market.public.get("/v1/instruments", params={"limit": 1000}).json()
    pages = _walk_pages(market.public, "/v1/instruments", "instruments", 2)
    assert [i["symbol"] for page in pages for i in page] == [
        i["symbol"] for i in everyone["instruments"]
    ]
    assert len(everyone["instruments"]) >= 4


# ---------------------------------------------------------------------- account


def test_account_balances_match_the_hand_computed_available_and_reserved(market: Market) -> None:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 61_000, 4)
    assert balances(seller) == {market.symbol: (6, 4)}
    market.place(buyer, side="buy", price=61_000, quantity=6)
    # The buy holds 6 x 61,000 x 100 = 36,600,000 + 18,300 (5 bps) = 36,618,300, takes 4 lots:
    #   pays 4 x 61,000 x 100 = 24,400,000 + taker fee 12,200,
    #   keeps 2 x 61,000 x 100 = 12,200,000 + 6,100 reserved for the 2 lots still resting.
    # available: 100,000,000 - 24,400,000 - 12,200 - 12,206,100 = 63,381,700.
    assert balances(buyer) == {"VND": (63_381_700, 12_206_100), market.symbol: (4, 0)}
    # The seller delivered 4 lots and got 24,400,000 less the maker fee 4,880 (2 bps).
    assert balances(seller) == {market.symbol: (6, 0), "VND": (24_395_120, 0)}
    market.rest(buyer, "buy", 60_000, 1)
    # One more lot at 60,000: 6,000,000 + 3,000 reserved.
    assert balances(buyer) == {"VND": (57_378_700, 18_209_100), market.symbol: (4, 0)}


def test_an_account_lists_each_asset_with_available_and_reserved(market: Market) -> None:
    trader = market.trader("Shape", vnd=1_000, lots=2)
    body = trader.http.get("/v1/account").json()
    assert set(body) == {"participant_id", "balances"}
    assert sorted(body["balances"], key=lambda b: b["asset"]) == sorted(
        [
            {"asset": "VND", "available": 1_000, "reserved": 0},
            {"asset": market.symbol, "available": 2, "reserved": 0},
        ],
        key=lambda b: b["asset"],
    )


# ---------------------------------------------------------------------- market data


def test_instruments_lists_every_listed_instrument(market: Market) -> None:
    other = market.another_symbol()
    answer = market.public.get("/v1/instruments", params={"limit": 1000})
    assert answer.status_code == 200
    symbols = [i["symbol"] for i in answer.json()["instruments"]]
    assert {market.symbol, other} <= set(symbols)
    assert len(symbols) == len(set(symbols))


def test_instruments_filter_by_kind(market: Market) -> None:
    ocop = f"T{next(_symbol_numbers):03d}-OCOP"
    assert (
        market.list_instrument(ocop, kind="ocop", attributes=ocop_attributes()).status_code == 201
    )
    kinds = {}
    for kind in ("live_hog", "ocop"):
        listed = market.public.get("/v1/instruments", params={"kind": kind, "limit": 1000}).json()[
            "instruments"
        ]
        assert {i["kind"] for i in listed} == {kind}
        kinds[kind] = {i["symbol"] for i in listed}
    assert market.symbol in kinds["live_hog"] and ocop in kinds["ocop"]


def test_an_unknown_kind_filter_is_422(market: Market) -> None:
    assert_error(
        market.public.get("/v1/instruments", params={"kind": "cattle"}), 422, "INVALID_REQUEST"
    )


def test_one_instrument_is_served_by_its_symbol(market: Market) -> None:
    answer = market.public.get(f"/v1/instruments/{market.symbol}")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["symbol"], body["kind"], body["lot_size"], body["tick_size"]) == (
        market.symbol,
        "live_hog",
        LOT_SIZE,
        TICK,
    )
    assert (body["band_low"], body["band_high"]) == (BAND_LOW, BAND_HIGH)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/instruments/{}",
        "/v1/markets/{}/book",
        "/v1/markets/{}/trades",
        "/v1/markets/{}/ticker",
        "/v1/markets/{}/candles",
    ],
)
def test_market_data_of_an_unknown_symbol_is_404(exchange: Server, path: str) -> None:
    with exchange.client() as public:
        assert_error(public.get(path.format("NO-SUCH-HOG")), 404)


def test_the_book_aggregates_price_levels_best_first(market: Market) -> None:
    buyer = market.trader("Buyer", vnd=100_000_000)
    seller = market.trader("Seller", lots=20)
    market.rest(buyer, "buy", 59_800, 1)
    market.rest(buyer, "buy", 59_900, 2)
    market.rest(buyer, "buy", 59_900, 3)
    market.rest(seller, "sell", 60_200, 4)
    market.rest(seller, "sell", 60_100, 5)
    book = market.book()
    assert set(book) == {"symbol", "sequence", "bids", "asks"}
    assert book["symbol"] == market.symbol
    assert book["bids"] == [[59_900, 5, 2], [59_800, 1, 1]]
    assert book["asks"] == [[60_100, 5, 1], [60_200, 4, 1]]


def test_the_book_shows_only_the_requested_depth(market: Market) -> None:
    buyer = market.trader("Buyer", vnd=100_000_000)
    for n in range(4):
        market.rest(buyer, "buy", 59_000 + 100 * n, 1)
    shallow = market.public.get(f"/v1/markets/{market.symbol}/book", params={"depth": 2}).json()
    assert shallow["bids"] == [[59_300, 1, 1], [59_200, 1, 1]]


@pytest.mark.parametrize("depth", [0, -1, 1_001, "deep"])
def test_a_book_depth_out_of_range_is_422(market: Market, depth: Any) -> None:
    answer = market.public.get(f"/v1/markets/{market.symbol}/book", params={"depth": depth})
    assert_error(answer, 422, "INVALID_REQUEST")


def test_the_book_sequence_grows_with_every_change(market: Market) -> None:
    buyer = market.trader("Buyer", vnd=100_000_000)
    before = market.book()["sequence"]
    order_id = market.rest(buyer, "buy", 59_000, 1)
    placed = market.book()["sequence"]
    buyer.http.delete(f"/v1/orders/{order_id}")
    cancelled = market.book()["sequence"]
    assert before < placed < cancelled


def test_trades_are_listed_newest_first_with_the_aggressor_side(market: Market) -> None:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000, lots=0)
    market.rest(seller, "sell", 60_000, 1)
    first = market.place(buyer, side="buy", price=60_000, quantity=1).json()["trades"][0]
    market.rest(buyer, "buy", 59_900, 2)
    second = market.place(seller, side="sell", price=59_900, quantity=2).json()["trades"][0]
    answer = market.public.get(f"/v1/markets/{market.symbol}/trades")
    assert answer.status_code == 200
    trades = answer.json()["trades"]
    for trade in trades:
        parse_time(trade.pop("time"))
        assert isinstance(trade.pop("sequence", 0), int)
    assert trades == [
        {"trade_id": second["trade_id"], "price": 59_900, "quantity": 2, "aggressor_side": "sell"},
        {"trade_id": first["trade_id"], "price": 60_000, "quantity": 1, "aggressor_side": "buy"},
    ]
    limited = market.public.get(f"/v1/markets/{market.symbol}/trades", params={"limit": 1})
    assert [t["trade_id"] for t in limited.json()["trades"]] == [second["trade_id"]]


def _vietnam_day(moment: datetime) -> Any:
    return (moment + timedelta(hours=7)).date()


def test_the_ticker_shows_best_prices_last_price_and_the_days_statistics(market: Market) -> None:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000)
    empty = market.public.get(f"/v1/markets/{market.symbol}/ticker").json()
    assert {k: empty[k] for k in ("best_bid", "best_ask", "last_price", "volume")} == {
        "best_bid": None,
        "best_ask": None,
        "last_price": None,
        "volume": 0,
    }
    market.rest(seller, "sell", 60_500, 2)
    market.place(buyer, side="buy", price=60_500, quantity=1)  # trades 1 @ 60,500
    market.rest(seller, "sell", 60_000, 3)
    market.place(buyer, side="buy", price=60_000, quantity=3)  # trades 3 @ 60,000
    market.rest(buyer, "buy", 59_500, 1)
    trades = market.public.get(f"/v1/markets/{market.symbol}/trades").json()["trades"]
    first_trade = parse_time(trades[-1]["time"])
    answer = market.public.get(f"/v1/markets/{market.symbol}/ticker")
    if _vietnam_day(first_trade) != _vietnam_day(datetime.now(UTC)):
        pytest.skip("the Vietnam trading day turned over during the test")
    assert answer.status_code == 200
    ticker = answer.json()
    assert isinstance(ticker.pop("sequence"), int)
    assert ticker == {
        "symbol": market.symbol,
        "best_bid": 59_500,
        "best_ask": 60_500,
        "last_price": 60_000,
        "open": 60_500,
        "high": 60_500,
        "low": 60_000,
        "volume": 4,
    }


def _bucket(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def _trade_some(market: Market) -> list[dict[str, Any]]:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000)
    for price, quantity in ((60_200, 1), (60_400, 2), (59_800, 3), (60_000, 1)):
        market.rest(seller, "sell", price, quantity)
        market.place(buyer, side="buy", price=price, quantity=quantity)
    trades: list[dict[str, Any]] = market.public.get(f"/v1/markets/{market.symbol}/trades").json()[
        "trades"
    ][::-1]
    assert [(t["price"], t["quantity"]) for t in trades] == [
        (60_200, 1),
        (60_400, 2),
        (59_800, 3),
        (60_000, 1),
    ]
    return trades


def _expected_candles(trades: list[dict[str, Any]], seconds: int) -> list[dict[str, Any]]:
    """OHLCV per bucket, computed from the trades' own times (oldest first)."""
    candles: dict[datetime, dict[str, Any]] = {}
    for trade in trades:
        start = _bucket(parse_time(trade["time"]), seconds)
        price, quantity = trade["price"], trade["quantity"]
        candle = candles.get(start)
        if candle is None:
            candles[start] = {
                "time": start,
                "open": price,
                "high": price,
                "low": price,
                "close": price,
                "volume": quantity,
            }
        else:
            candle["high"] = max(candle["high"], price)
            candle["low"] = min(candle["low"], price)
            candle["close"] = price
            candle["volume"] += quantity
    return list(candles.values())


def _served_candles(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    candles: list[dict[str, Any]] = answer.json()["candles"]
    return [{**c, "time": parse_time(c["time"])} for c in candles]


@pytest.mark.parametrize(("interval", "seconds"), [("1m", 60), ("5m", 300), ("1h", 3600)])
def test_candles_aggregate_the_trades_of_each_interval(
    market: Market, interval: str, seconds: int
) -> None:
    trades = _trade_some(market)
    answer = market.public.get(
        f"/v1/markets/{market.symbol}/candles", params={"interval": interval}
    )
    assert _served_candles(answer) == _expected_candles(trades, seconds)


def test_daily_candles_follow_the_vietnam_calendar_day(market: Market) -> None:
    trades = _trade_some(market)
    served = _served_candles(
        market.public.get(f"/v1/markets/{market.symbol}/candles", params={"interval": "1d"})
    )
    days = {_vietnam_day(parse_time(t["time"])) for t in trades}
    assert len(served) == len(days)
    start = served[0]["time"]
    assert (start.hour, start.minute) == (17, 0)  # 00:00 in Vietnam (UTC+7)
    assert sum(c["volume"] for c in served) == 7


def test_candles_accept_start_and_end_as_rfc3339_or_epoch_nanoseconds(market: Market) -> None:
    trades = _trade_some(market)
    first = _bucket(parse_time(trades[0]["time"]), 60)
    end = first + timedelta(hours=1)
    as_text = {
        "start": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    as_ns = {"start": str(int(first.timestamp()) * 10**9), "end": str(int(end.timestamp()) * 10**9)}
    path = f"/v1/markets/{market.symbol}/candles"
    as_lower_case = {name: text.lower() for name, text in as_text.items()}  # RFC 3339 allows it
    by_text = _served_candles(market.public.get(path, params={"interval": "1m", **as_text}))
    by_ns = _served_candles(market.public.get(path, params={"interval": "1m", **as_ns}))
    by_lower = _served_candles(market.public.get(path, params={"interval": "1m", **as_lower_case}))
    assert by_text == by_ns == by_lower == _expected_candles(trades, 60)
    # To the nanosecond: an end one nanosecond after the first candle's start takes it in.
    for mark in (".", ","):  # ISO 8601's decimal comma too, to the same nanosecond
        just_after = f"{first:%Y-%m-%dT%H:%M:%S}{mark}000000001Z"
        answer = market.public.get(
            path, params={"interval": "1m", "start": as_text["start"], "end": just_after}
        )
        assert _served_candles(answer) == _expected_candles(trades, 60)[:1]
    later = {"start": as_text["end"], "end": (end + timedelta(hours=1)).isoformat()}
    assert _served_candles(market.public.get(path, params={"interval": "1m", **later})) == []


@pytest.mark.parametrize(
    "params",
    [
        {"interval": "2m"},
        {"interval": "1w"},
        {"interval": ""},
        {"start": "yesterday"},
        {"start": "2026-01-01T00:00:00"},
        {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"start": "--5"},
        {"end": "--5"},
        {"start": "²"},
        {"start": "x" * 41},
    ],
    ids=[
        "2m",
        "1w",
        "empty interval",
        "words",
        "no time zone",
        "start after end",
        "double minus start",
        "double minus end",
        "superscript digit",
        "too long",
    ],
)
def test_candles_with_an_invalid_interval_or_time_are_422(
    market: Market, params: dict[str, str]
) -> None:
    answer = market.public.get(f"/v1/markets/{market.symbol}/candles", params=params)
    assert_error(answer, 422, "INVALID_REQUEST")


# Bounds beyond any time a record can carry (before 1970; after 2262-04-11, the last 64-bit
# epoch nanosecond; beyond 64 bits; RFC 3339 times a zone offset pushes past year 1 or 9999).
FAR_BOUNDS = [
    ("1969-12-31T23:59:59Z", "2262-04-11T23:47:17Z"),
    ("-99999999999999999999", "99999999999999999999"),
    (str(-(2**63) - 1), str(2**63)),
    ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"),
]


@pytest.mark.parametrize(
    ("start", "end"), FAR_BOUNDS, ids=["just beyond", "20 digits", "64 bits", "zones"]
)
def test_time_bounds_beyond_any_record_select_what_the_edges_select(
    market: Market, start: str, end: str
) -> None:
    seller = market.trader("Seller", lots=10)
    buyer = market.trader("Buyer", vnd=100_000_000)
    market.rest(seller, "sell", 60_000, 2)
    assert market.place(buyer, side="buy", price=60_000, quantity=2).json()["status"] == "filled"
    created = market.operator.post(
        "/v1/admin/participants", json={"name": "Inspector", "role": "regulator"}
    )
    far = {"start": start, "end": end}
    with market.server.client(created.json()["api_key"]) as regulator:
        for client, path, params in (
            (market.public, f"/v1/markets/{market.symbol}/candles", {"interval": "1d"}),
            (buyer.http, "/v1/account/statement", {}),
            (regulator, "/v1/audit/trades", {"symbol": market.symbol}),
        ):
            everything = client.get(path, params=params)
            bounded = client.get(path, params={**params, **far})
            assert everything.status_code == bounded.status_code == 200, bounded.text
            for field in ("candles", "lines", "opening", "closing", "trades"):
                assert bounded.json().get(field) == everything.json().get(field), path


@pytest.mark.parametrize(
    "backwards",
    [
        {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"from_sequence": "5", "to_sequence": "4"},
    ],
    ids=["start after end", "from after to"],
)
def test_an_audit_range_that_ends_before_it_starts_is_422_as_elsewhere(
    market: Market, backwards: dict[str, str]
) -> None:
    created = market.operator.post(
        "/v1/admin/participants", json={"name": "Inspector", "role": "regulator"}
    )
    with market.server.client(created.json()["api_key"]) as regulator:
        assert_error(regulator.get("/v1/audit/trades", params=backwards), 422, "INVALID_REQUEST")


# ---------------------------------------------------------------------- bad input


HUGE = 10**30
BUY_ONE: dict[str, Any] = {"side": "buy", "price": 60_000, "quantity": 1}

# Bodies of POST /v1/orders that are not orders; "@S" stands for the market's symbol.
ORDER_BODIES_422: dict[str, dict[str, Any] | bytes] = {
    "malformed json": b'{"symbol": "@S", "side": "buy",',
    "not json at all": b"buy 5 hogs please",
    "empty body": b"",
    "array": b"[]",
    "null": b"null",
    "string quantity": {**BUY_ONE, "quantity": "5"},
    "float price": {**BUY_ONE, "price": 60_000.0},
    "float quantity": {**BUY_ONE, "quantity": 1.5},
    "bool quantity": {**BUY_ONE, "quantity": True},
    "bool price": {**BUY_ONE, "price": True},
    "huge quantity": {**BUY_ONE, "quantity": HUGE},
    "huge price": {**BUY_ONE, "price": HUGE},
    "4000-digit quantity": b'{"symbol": "@S", "side": "buy", "quantity": 1' + b"0" * 4000 + b"}",
    "negative quantity": {**BUY_ONE, "quantity": -1},
    "zero quantity": {**BUY_ONE, "quantity": 0},
    "zero price": {**BUY_ONE, "price": 0},
    "negative price": {**BUY_ONE, "price": -60_000},
    "null quantity": {**BUY_ONE, "quantity": None},
    "unknown field": {**BUY_ONE, "leverage": 10},
    "no side": {"price": 60_000, "quantity": 1},
    "no quantity": {"side": "buy", "price": 60_000},
    "unknown side": {**BUY_ONE, "side": "borrow"},
    "unknown type": {**BUY_ONE, "type": "stop"},
    "unknown time in force": {**BUY_ONE, "time_in_force": "gtd"},
    "string post_only": {**BUY_ONE, "post_only": "yes"},
    "client order id too long": {**BUY_ONE, "client_order_id": "k" * 65},
    "client order id with spaces": {**BUY_ONE, "client_order_id": "a b"},
    "invalid utf-8": b'{"symbol": "@S", "side": "buy", "quantity": 1, "client_order_id": "\xff"}',
}


def _order_body(template: dict[str, Any] | bytes, symbol: str) -> bytes:
    if isinstance(template, bytes):
        return template.replace(b"@S", symbol.encode())
    return json.dumps({"symbol": symbol, **template}).encode()


@pytest.mark.parametrize("name", list(ORDER_BODIES_422))
def test_a_malformed_order_is_422_invalid_request_and_changes_nothing(
    market: Market, name: str
) -> None:
    trader = market.trader("Malformed", vnd=100_000_000, lots=5)
    before = market.state(trader)
    answer = trader.http.post(
        "/v1/orders",
        content=_order_body(ORDER_BODIES_422[name], market.symbol),
        headers={"content-type": "application/json"},
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert market.state(trader) == before


# Bodies of POST /v1/admin/deposits and /withdrawals that are not transfers ("@P": participant).
TRANSFER_BODIES_422: dict[str, dict[str, Any] | bytes] = {
    "malformed json": b'{"participant_id": @P, "asset": "VND",',
    "not json at all": b"give them money",
    "array": b"[]",
    "string amount": {"asset": "VND", "amount": "5"},
    "float amount": {"asset": "VND", "amount": 5.0},
    "bool amount": {"asset": "VND", "amount": True},
    "huge amount": {"asset": "VND", "amount": HUGE},
    "5000-digit amount": b'{"participant_id": @P, "asset": "VND", "amount": 1' + b"0" * 5000 + b"}",
    "unknown field": {"asset": "VND", "amount": 5, "note": "gift"},
    "no asset": {"amount": 5},
    "invalid utf-8": b'{"participant_id": @P, "asset": "VND\xff", "amount": 5}',
}


def _transfer_body(template: dict[str, Any] | bytes, participant_id: int) -> bytes:
    if isinstance(template, bytes):
        return template.replace(b"@P", str(participant_id).encode())
    return json.dumps({"participant_id": participant_id, **template}).encode()


@pytest.mark.parametrize("route", ["deposits", "withdrawals"])
@pytest.mark.parametrize("name", list(TRANSFER_BODIES_422))
def test_a_malformed_transfer_is_422_invalid_request_and_changes_nothing(
    market: Market, route: str, name: str
) -> None:
    trader = market.trader("Malformed transfer", vnd=1_000)
    answer = market.operator.post(
        f"/v1/admin/{route}",
        content=_transfer_body(TRANSFER_BODIES_422[name], trader.participant_id),
        headers={"content-type": "application/json"},
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert balances(trader) == {"VND": (1_000, 0)}


def test_a_participant_id_given_as_text_is_422(market: Market) -> None:
    trader = market.trader("Text id", vnd=1_000)
    answer = market.operator.post(
        "/v1/admin/deposits",
        json={"participant_id": str(trader.participant_id), "asset": "VND", "amount": 5},
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert balances(trader) == {"VND": (1_000, 0)}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"reason": 5}', b'{"reason": "x", "until": "never"}', b"\xff"],
    ids=["malformed", "reason not text", "unknown field", "invalid utf-8"],
)
def test_a_malformed_halt_request_is_422_and_changes_nothing(market: Market, body: bytes) -> None:
    answer = market.operator.post(
        f"/v1/admin/markets/{market.symbol}/halt",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert_error(answer, 422, "INVALID_REQUEST")
    assert market.public.get(f"/v1/instruments/{market.symbol}").json()["status"] == "open"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/orders", {**BUY_ONE, "symbol": "X", "client_order_id": "x" * 70_000}),
        ("/v1/admin/participants", {"name": "x" * 70_000, "role": "trader"}),
        ("/v1/admin/instruments", {"symbol": "BIG", "name": "x" * 70_000}),
        ("/v1/admin/deposits", {"participant_id": 1, "asset": "x" * 70_000, "amount": 1}),
    ],
    ids=["orders", "participants", "instruments", "deposits"],
)
def test_a_body_over_64_kib_is_413(market: Market, route: str, body: dict[str, Any]) -> None:
    trader = market.trader("Big", vnd=100_000_000)
    key = trader.api_key if route == "/v1/orders" else market.server.operator_key
    encoded = json.dumps(body).encode()
    assert len(encoded) > MAX_BODY_BYTES
    before = market.state(trader)
    with market.server.client(key) as client:
        answer = client.post(route, content=encoded, headers={"content-type": "application/json"})
    assert_error(answer, 413)
    assert market.state(trader) == before


@pytest.mark.parametrize("route", ["/v1/orders", "/v1/admin/participants"])
def test_a_streamed_body_over_64_kib_without_a_length_is_413(market: Market, route: str) -> None:
    trader = market.trader("Streamed", vnd=100_000_000)
    key = trader.api_key if route == "/v1/orders" else market.server.operator_key

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'", "role": "trader"}'

    before = market.operator.get("/v1/admin/participants").json()
    with market.server.client(key) as client:
        answer = client.post(route, content=chunks(), headers={"content-type": "application/json"})
    assert_error(answer, 413)
    assert market.operator.get("/v1/admin/participants").json() == before


# ---------------------------------------------------------------------- times


def test_every_time_in_a_response_is_rfc3339_utc_with_a_z(market: Market) -> None:
    seller = market.trader("Seller", lots=1)
    buyer = market.trader("Buyer", vnd=100_000_000)
    started = datetime.now(UTC) - timedelta(seconds=5)
    market.rest(seller, "sell", 60_000, 1)
    order = market.place(buyer, side="buy", price=60_000, quantity=1).json()
    fill = buyer.http.get("/v1/fills").json()["fills"][0]
    trade = market.public.get(f"/v1/markets/{market.symbol}/trades").json()["trades"][0]
    candle = market.public.get(f"/v1/markets/{market.symbol}/candles").json()["candles"][0]
    times = [order["created_at"], order["trades"][0]["time"], fill["time"], trade["time"]]
    finished = datetime.now(UTC) + timedelta(seconds=5)
    for text in times:
        assert started <= parse_time(text) <= finished, text
    assert parse_time(candle["time"]) <= parse_time(trade["time"])
    assert order["trades"][0]["time"] == fill["time"] == trade["time"]


# ---------------------------------------------------------------------- rate limit


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path / "data", "--rate-limit", "5")
    try:
        yield server
    finally:
        assert server.stop()


def _register(server: Server, name: str) -> str:
    with server.client(server.operator_key) as operator:
        answer = operator.post("/v1/admin/participants", json={"name": name, "role": "trader"})
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["api_key"]
    return key


def test_a_caller_over_the_rate_limit_gets_429_with_retry_after(limited_server: Server) -> None:
    key = _register(limited_server, "Eager")
    with limited_server.client(key) as trader:
        answers = [trader.get("/v1/account") for _ in range(30)]
    statuses = [a.status_code for a in answers]
    # --rate-limit 5: at least five requests a second are served, then the burst runs out
    # (30 requests on a local connection take far less than the seconds they would need).
    assert statuses[:5] == [200] * 5, statuses
    assert 429 in statuses, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert_error(answer, 429)
            assert int(answer.headers["Retry-After"]) >= 1


def test_the_rate_limit_is_per_participant_and_refills(limited_server: Server) -> None:
    eager = _register(limited_server, "Eager")
    patient = _register(limited_server, "Patient")
    with limited_server.client(eager) as first, limited_server.client(patient) as second:
        refused = None
        for _ in range(40):
            answer = first.get("/v1/account")
            if answer.status_code == 429:
                refused = answer
                break
        assert refused is not None
        assert second.get("/v1/account").status_code == 200
        time.sleep(int(refused.headers["Retry-After"]))
        assert first.get("/v1/account").status_code == 200


# ---------------------------------------------------------------------- restart


@dataclass
class Restart:
    before: dict[str, Any]
    after: dict[str, Any]
    server: Server
    symbol: str
    keys: dict[str, str]


def _capture(server: Server, symbol: str, keys: dict[str, str]) -> dict[str, Any]:
    with server.client() as public:
        book = public.get(f"/v1/markets/{symbol}/book").json()
        captured: dict[str, Any] = {
            "book": (book["bids"], book["asks"]),
            "trades": public.get(f"/v1/markets/{symbol}/trades").json(),
            "instrument": public.get(f"/v1/instruments/{symbol}").json(),
        }
    for name, key in keys.items():
        with server.client(key) as trader:
            captured[name] = {
                "orders": trader.get("/v1/orders", params={"status": "all"}).json(),
                "account": trader.get("/v1/account").json(),
                "fills": trader.get("/v1/fills").json(),
            }
    return captured


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restart]:
    data_dir = tmp_path_factory.mktemp("restart") / "data"
    first = start_server(data_dir)
    market = Market(first)
    try:
        farmer = market.trader("Farmer", lots=20)
        buyer = market.trader("Buyer", vnd=500_000_000)
        market.rest(farmer, "sell", 60_500, 5, client_order_id="farm-1")
        market.rest(farmer, "sell", 61_000, 5, client_order_id="farm-2")
        market.place(buyer, side="buy", price=60_500, quantity=3, client_order_id="buy-1")
        resting = market.rest(buyer, "buy", 59_000, 4, client_order_id="buy-2")
        cancelled = market.rest(buyer, "buy", 58_000, 1, client_order_id="buy-3")
        buyer.http.delete(f"/v1/orders/{cancelled}")
        buyer.http.patch(f"/v1/orders/{resting}", json={"quantity": 2})
        keys = {"farmer": farmer.api_key, "buyer": buyer.api_key}
        symbol = market.symbol
    finally:
        market.close()
    before = _capture(first, symbol, keys)
    assert first.stop(), "the first server did not stop cleanly"
    second = start_server(data_dir, operator_key=first.operator_key)
    try:
        yield Restart(before, _capture(second, symbol, keys), second, symbol, keys)
    finally:
        assert second.stop()


def test_a_restart_keeps_every_order(restarted: Restart) -> None:
    for name in restarted.keys:
        assert restarted.after[name]["orders"] == restarted.before[name]["orders"]
    assert len(restarted.after["buyer"]["orders"]["orders"]) == 3


def test_a_restart_keeps_every_balance(restarted: Restart) -> None:
    for name in restarted.keys:
        assert restarted.after[name]["account"] == restarted.before[name]["account"]


def test_a_restart_keeps_the_book(restarted: Restart) -> None:
    assert restarted.after["book"] == restarted.before["book"]
    assert restarted.after["book"] == ([[59_000, 2, 1]], [[60_500, 2, 1], [61_000, 5, 1]])


def test_a_restart_keeps_the_instrument_and_its_trades(restarted: Restart) -> None:
    assert restarted.after["instrument"] == restarted.before["instrument"]
    assert restarted.after["trades"] == restarted.before["trades"]


def test_a_restart_keeps_every_fill(restarted: Restart) -> None:
    for name in restarted.keys:
        assert restarted.before[name]["fills"]["fills"], name
        assert restarted.after[name]["fills"] == restarted.before[name]["fills"]


def test_a_restart_keeps_client_order_id_idempotency(restarted: Restart) -> None:
    originals = {o["client_order_id"]: o for o in restarted.before["buyer"]["orders"]["orders"]}
    with restarted.server.client(restarted.keys["buyer"]) as buyer:
        for client_order_id in ("buy-1", "buy-2", "buy-3"):
            again = buyer.post(
                "/v1/orders",
                json={
                    "symbol": restarted.symbol,
                    "side": "buy",
                    "price": 59_000,
                    "quantity": 1,
                    "client_order_id": client_order_id,
                },
            )
            assert again.status_code == 200, again.text
            assert again.json()["order_id"] == originals[client_order_id]["order_id"]
            assert again.json()["status"] == originals[client_order_id]["status"]
        assert (
            buyer.get("/v1/orders", params={"status": "all"}).json()
            == (restarted.before["buyer"]["orders"])
        )


def test_a_restart_keeps_api_keys_and_hands_out_new_ids_after_the_old_ones(
    restarted: Restart,
) -> None:
    old_ids = [
        int(o["order_id"])
        for name in restarted.keys
        for o in restarted.before[name]["orders"]["orders"]
    ]
    with restarted.server.client(restarted.keys["farmer"]) as farmer:
        answer = farmer.post(
            "/v1/orders",
            json={"symbol": restarted.symbol, "side": "sell", "price": 62_000, "quantity": 1},
        )
    assert answer.status_code == 201, answer.text
    assert int(answer.json()["order_id"]) > max(old_ids)
