"""Who may call what: the whole role x route matrix, against a real server over HTTP.

Every route (method and path) is called by every kind of caller: no key, an unknown key, and a
key of each role. A protected route answers 401 without a valid key and 403 to a role it is not
for; a role it is for gets its answer (these requests are well formed, so: 2xx). Public market
data and /healthz answer anyone. The route list is checked against the server's own OpenAPI
document, so a new route cannot be served without a line in this matrix.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, start_server

PUBLIC = frozenset({"anyone"})
TRADER = frozenset({"trader"})
OPERATOR = frozenset({"operator"})
REGULATOR = frozenset({"regulator"})
ROLES = ("trader", "monitor", "regulator", "operator")
CALLERS = ("no key", "unknown key", *ROLES)

# (method, path as in the OpenAPI document) -> the roles allowed (PUBLIC: no key needed).
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    # market data
    ("GET", "/v1/instruments"): PUBLIC,
    ("GET", "/v1/instruments/{symbol}"): PUBLIC,
    ("GET", "/v1/markets/{symbol}/book"): PUBLIC,
    ("GET", "/v1/markets/{symbol}/trades"): PUBLIC,
    ("GET", "/v1/markets/{symbol}/ticker"): PUBLIC,
    ("GET", "/v1/markets/{symbol}/candles"): PUBLIC,
    # trading
    ("POST", "/v1/orders"): TRADER,
    ("GET", "/v1/orders"): TRADER,
    ("GET", "/v1/orders/{order_id}"): TRADER,
    ("PATCH", "/v1/orders/{order_id}"): TRADER,
    ("DELETE", "/v1/orders/{order_id}"): TRADER,
    ("GET", "/v1/fills"): TRADER,
    ("GET", "/v1/account"): TRADER,
    ("GET", "/v1/account/statement"): TRADER,
    # operator (regulators read everything, the participant list included)
    ("GET", "/v1/admin/participants"): frozenset({"operator", "regulator"}),
    ("POST", "/v1/admin/participants"): OPERATOR,
    ("POST", "/v1/admin/instruments"): OPERATOR,
    ("POST", "/v1/admin/deposits"): OPERATOR,
    ("POST", "/v1/admin/withdrawals"): OPERATOR,
    ("POST", "/v1/admin/markets/{symbol}/halt"): OPERATOR,
    ("POST", "/v1/admin/markets/{symbol}/resume"): OPERATOR,
    # the market's rules: sessions, settlement prices, delivery, traceability
    ("GET", "/v1/markets/{symbol}/session"): PUBLIC,
    ("GET", "/v1/markets/{symbol}/settlements"): PUBLIC,
    ("POST", "/v1/admin/markets/{symbol}/session"): OPERATOR,
    ("POST", "/v1/admin/markets/{symbol}/settlement"): OPERATOR,
    ("POST", "/v1/admin/deliveries/in"): OPERATOR,
    ("POST", "/v1/admin/deliveries/out"): OPERATOR,
    ("GET", "/v1/account/traceability"): TRADER,
    ("GET", "/v1/audit/trades/{trade_id}/trace"): REGULATOR,
    # audit (API.md)
    ("GET", "/v1/audit/trades"): REGULATOR,
    ("GET", "/v1/audit/orders/{order_id}"): REGULATOR,
    ("GET", "/v1/audit/events"): REGULATOR,
    ("GET", "/v1/audit/verify"): REGULATOR,
    ("GET", "/v1/audit/alerts"): REGULATOR,
    ("GET", "/v1/audit/book"): REGULATOR,
    ("GET", "/v1/audit/heads"): REGULATOR,
}
PLANNED: set[tuple[str, str]] = set()  # routes of API.md not served yet

_symbols = itertools.count(1)


@dataclass
class Request:
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    """A served exchange with a listed, traded market and one participant of each role."""

    server: Server
    keys: dict[str, str]
    participant_ids: dict[str, int]
    symbol: str
    halt_symbol: str
    served: set[tuple[str, str]]
    _http: dict[str, httpx.Client] = field(default_factory=dict)

    def http(self, caller: str) -> httpx.Client:
        if caller not in self._http:
            key = {"no key": None, "unknown key": "k" * 43}.get(caller, self.keys.get(caller))
            self._http[caller] = self.server.client(key)
        return self._http[caller]

    def fresh_order(self) -> str:
        """A new open order of the trader, so each call finds one to amend, cancel or audit."""
        answer = self.http("trader").post(
            "/v1/orders",
            json={"symbol": self.symbol, "side": "buy", "price": 59_000, "quantity": 1},
        )
        assert answer.status_code == 201, answer.text
        order_id: str = answer.json()["order_id"]
        return order_id

    def last_sequence(self) -> int:
        """The newest sequence, read from the public book."""
        sequence: int = (
            self.http("no key").get(f"/v1/markets/{self.symbol}/book").json()["sequence"]
        )
        return sequence

    def close(self) -> None:
        for client in self._http.values():
            client.close()


def _instrument(symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "name": f"Hogs {symbol}",
        "kind": "live_hog",
        "lot_size": 100,
        "tick_size": 100,
        "reference_price": 60_000,
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_server(Path(tmp_path_factory.mktemp("authz")) / "data")
    keys = {"operator": server.operator_key}
    ids: dict[str, int] = {}
    with server.client(server.operator_key) as operator:
        for role in ("trader", "monitor", "regulator"):
            answer = operator.post("/v1/admin/participants", json={"name": role, "role": role})
            assert answer.status_code == 201, answer.text
            keys[role] = answer.json()["api_key"]
            ids[role] = answer.json()["participant_id"]
        for symbol in ("AUTHZ-HOG", "AUTHZ-HALT"):
            assert (
                operator.post("/v1/admin/instruments", json=_instrument(symbol)).status_code == 201
            )
        for asset, amount in (("VND", 10**12), ("AUTHZ-HOG", 1_000)):
            deposit = {"participant_id": ids["trader"], "asset": asset, "amount": amount}
            assert operator.post("/v1/admin/deposits", json=deposit).status_code == 201
        document = operator.get("/openapi.json").json()
    served = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    world = World(server, keys, ids, "AUTHZ-HOG", "AUTHZ-HALT", served)
    # One trade, so that market data and fills have something in them.
    trader = world.http("trader")
    for side in ("sell", "buy"):
        order = {"symbol": world.symbol, "side": side, "price": 60_000, "quantity": 1}
        assert trader.post("/v1/orders", json=order).status_code == 201
    try:
        yield world
    finally:
        world.close()
        assert server.stop()


def _fresh_symbol(world: World) -> str:
    """A newly listed market, so each session change or settlement has one to act on."""
    symbol = f"AUTHZ-NEW{next(_symbols)}"
    listed = world.http("operator").post("/v1/admin/instruments", json=_instrument(symbol))
    assert listed.status_code == 201, listed.text
    return symbol


def _trade_id(world: World) -> str:
    """A new trade: the trader sells one lot to a newly funded buyer."""
    operator = world.http("operator")
    buyer = operator.post("/v1/admin/participants", json={"name": "Buyer", "role": "trader"})
    assert buyer.status_code == 201, buyer.text
    deposit = {"participant_id": buyer.json()["participant_id"], "asset": "VND", "amount": 10**12}
    assert operator.post("/v1/admin/deposits", json=deposit).status_code == 201
    order = {"symbol": world.symbol, "side": "sell", "price": 60_100, "quantity": 1}
    assert world.http("trader").post("/v1/orders", json=order).status_code == 201
    with world.server.client(buyer.json()["api_key"]) as client:
        bought = client.post("/v1/orders", json=order | {"side": "buy"})
    assert bought.status_code == 201, bought.text
    trade_id: str = bought.json()["trades"][0]["trade_id"]
    return trade_id


def _delivery(world: World) -> dict[str, Any]:
    return {
        "participant_id": world.participant_ids["trader"],
        "symbol": world.symbol,
        "lots": 1,
        "head_count": 1,
        "average_weight_kg": 110,
        "farm_code": "DN-TB-0137",
        "certificate": "VietGAP-CN-1182",
        "inspected_at": "2026-01-01T00:00:00Z",
    }


def _request_for(world: World, method: str, path: str) -> Request:
    """A well-formed request for the route, so that an allowed caller succeeds."""
    symbol = world.symbol
    builders: dict[tuple[str, str], Callable[[], Request]] = {
        ("GET", "/healthz"): lambda: Request("/healthz"),
        ("GET", "/v1/instruments"): lambda: Request("/v1/instruments"),
        ("GET", "/v1/instruments/{symbol}"): lambda: Request(f"/v1/instruments/{symbol}"),
        ("GET", "/v1/markets/{symbol}/book"): lambda: Request(f"/v1/markets/{symbol}/book"),
        ("GET", "/v1/markets/{symbol}/trades"): lambda: Request(f"/v1/markets/{symbol}/trades"),
        ("GET", "/v1/markets/{symbol}/ticker"): lambda: Request(f"/v1/markets/{symbol}/ticker"),
        ("GET", "/v1/markets/{symbol}/candles"): lambda: Request(
            f"/v1/markets/{symbol}/candles", params={"interval": "1m"}
        ),
        ("POST", "/v1/orders"): lambda: Request(
            "/v1/orders", {"symbol": symbol, "side": "buy", "price": 58_000, "quantity": 1}
        ),
        ("GET", "/v1/orders"): lambda: Request("/v1/orders", params={"status": "all"}),
        ("GET", "/v1/orders/{order_id}"): lambda: Request(f"/v1/orders/{world.fresh_order()}"),
        ("PATCH", "/v1/orders/{order_id}"): lambda: Request(
            f"/v1/orders/{world.fresh_order()}", {"price": 58_900}
        ),
        ("DELETE", "/v1/orders/{order_id}"): lambda: Request(f"/v1/orders/{world.fresh_order()}"),
        ("GET", "/v1/fills"): lambda: Request("/v1/fills"),
        ("GET", "/v1/account"): lambda: Request("/v1/account"),
        ("GET", "/v1/account/statement"): lambda: Request("/v1/account/statement"),
        ("GET", "/v1/admin/participants"): lambda: Request("/v1/admin/participants"),
        ("POST", "/v1/admin/participants"): lambda: Request(
            "/v1/admin/participants", {"name": "New trader", "role": "trader"}
        ),
        ("POST", "/v1/admin/instruments"): lambda: Request(
            "/v1/admin/instruments", _instrument(f"AUTHZ-NEW{next(_symbols)}")
        ),
        ("POST", "/v1/admin/deposits"): lambda: Request(
            "/v1/admin/deposits",
            {"participant_id": world.participant_ids["trader"], "asset": "VND", "amount": 1},
        ),
        ("POST", "/v1/admin/withdrawals"): lambda: Request(
            "/v1/admin/withdrawals",
            {"participant_id": world.participant_ids["trader"], "asset": "VND", "amount": 1},
        ),
        ("POST", "/v1/admin/markets/{symbol}/halt"): lambda: Request(
            f"/v1/admin/markets/{world.halt_symbol}/halt", {"reason": "authorization matrix"}
        ),
        ("POST", "/v1/admin/markets/{symbol}/resume"): lambda: Request(
            f"/v1/admin/markets/{world.halt_symbol}/resume"
        ),
        ("GET", "/v1/audit/trades"): lambda: Request("/v1/audit/trades", params={"symbol": symbol}),
        ("GET", "/v1/audit/orders/{order_id}"): lambda: Request(
            f"/v1/audit/orders/{world.fresh_order()}"
        ),
        ("GET", "/v1/audit/events"): lambda: Request("/v1/audit/events", params={"limit": 10}),
        ("GET", "/v1/audit/verify"): lambda: Request("/v1/audit/verify"),
        ("GET", "/v1/audit/alerts"): lambda: Request(
            "/v1/audit/alerts", params={"kind": "self_trade_attempt", "limit": 10}
        ),
        ("GET", "/v1/audit/book"): lambda: Request(
            "/v1/audit/book", params={"symbol": symbol, "sequence": world.last_sequence()}
        ),
        ("GET", "/v1/audit/heads"): lambda: Request("/v1/audit/heads"),
        ("GET", "/v1/markets/{symbol}/session"): lambda: Request(f"/v1/markets/{symbol}/session"),
        ("GET", "/v1/markets/{symbol}/settlements"): lambda: Request(
            f"/v1/markets/{symbol}/settlements"
        ),
        ("POST", "/v1/admin/markets/{symbol}/session"): lambda: Request(
            f"/v1/admin/markets/{_fresh_symbol(world)}/session", {"session": "closed"}
        ),
        ("POST", "/v1/admin/markets/{symbol}/settlement"): lambda: Request(
            f"/v1/admin/markets/{_fresh_symbol(world)}/settlement"
        ),
        ("POST", "/v1/admin/deliveries/in"): lambda: Request(
            "/v1/admin/deliveries/in", _delivery(world)
        ),
        ("POST", "/v1/admin/deliveries/out"): lambda: Request(
            "/v1/admin/deliveries/out",
            {"participant_id": world.participant_ids["trader"], "symbol": symbol, "lots": 1},
        ),
        ("GET", "/v1/account/traceability"): lambda: Request("/v1/account/traceability"),
        ("GET", "/v1/audit/trades/{trade_id}/trace"): lambda: Request(
            f"/v1/audit/trades/{_trade_id(world)}/trace"
        ),
    }
    return builders[(method, path)]()


def _assert_error_body(answer: httpx.Response) -> None:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


def _expected(roles: frozenset[str], caller: str) -> str:
    if roles is PUBLIC or caller in roles:
        return "allowed"
    if caller in ("no key", "unknown key"):
        return "401"
    return "403"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "path"), sorted(MATRIX), ids=[f"{m} {p}" for m, p in sorted(MATRIX)]
)
def test_each_caller_gets_what_its_role_allows_on_each_route(
    world: World, method: str, path: str, caller: str
) -> None:
    if (method, path) not in world.served:
        assert (method, path) in PLANNED, f"{method} {path} is no longer served"
        pytest.skip(f"{method} {path} is in API.md but not served yet")
    request = _request_for(world, method, path)
    answer = world.http(caller).request(
        method, request.path, json=request.json, params=request.params
    )
    expected = _expected(MATRIX[(method, path)], caller)
    if expected == "allowed":
        assert answer.status_code not in (401, 403), answer.text
        assert answer.status_code < 500, answer.text
        if (method, path) not in PLANNED:
            assert 200 <= answer.status_code < 300, answer.text
    else:
        assert answer.status_code == int(expected), answer.text
        _assert_error_body(answer)


def test_every_route_the_server_documents_is_in_the_matrix(world: World) -> None:
    unguarded = world.served - MATRIX.keys()
    assert not unguarded, f"routes without an authorization rule: {sorted(unguarded)}"


def test_every_route_of_the_matrix_is_served_except_the_planned_ones(world: World) -> None:
    assert MATRIX.keys() - PLANNED <= world.served


# ---------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Basic dHJhZGVyOnNlY3JldA==",
        "Token {trader}",
        "{trader}",
        "Bearer {trader}x",
        "Bearer " + "k" * 300,
    ],
    ids=[
        "empty",
        "scheme only",
        "basic",
        "other scheme",
        "key only",
        "key with an extra character",
        "very long key",
    ],
)
def test_a_missing_malformed_or_unknown_key_is_401(world: World, authorization: str) -> None:
    header = authorization.replace("{trader}", world.keys["trader"])
    with world.server.client() as anonymous:
        answer = anonymous.get("/v1/account", headers={"Authorization": header})
    assert answer.status_code == 401, answer.text
    _assert_error_body(answer)


def test_the_bearer_scheme_is_case_insensitive(world: World) -> None:
    with world.server.client() as anonymous:
        answer = anonymous.get(
            "/v1/account", headers={"Authorization": f"bearer {world.keys['trader']}"}
        )
    assert answer.status_code == 200, answer.text


BODY_ROUTES = sorted(
    (method, path) for method, path in MATRIX if method in ("POST", "PATCH") and path != "/healthz"
)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@pytest.mark.parametrize("caller", ["no key", "unknown key"])
def test_a_caller_without_a_valid_key_gets_401_whatever_the_body(
    world: World, method: str, path: str, caller: str
) -> None:
    # Authentication comes first: an anonymous caller learns nothing about the body's schema.
    concrete = path.replace("{symbol}", world.symbol).replace("{order_id}", "1")
    answer = world.http(caller).request(
        method, concrete, content=b'{"not": "valid"}', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 401, answer.text
    _assert_error_body(answer)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
def test_a_role_not_allowed_gets_403_whatever_the_body(
    world: World, method: str, path: str
) -> None:
    caller = "monitor"
    assert caller not in MATRIX[(method, path)]
    concrete = path.replace("{symbol}", world.symbol).replace("{order_id}", "1")
    answer = world.http(caller).request(
        method, concrete, content=b'{"not": "valid"}', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 403, answer.text
    _assert_error_body(answer)


def test_a_regulator_changes_nothing(world: World) -> None:
    changes = [
        (method, _request_for(world, method, path))
        for method, path in sorted(MATRIX)
        if method != "GET" and (method, path) in world.served
    ]
    operator, public = world.http("operator"), world.http("no key")
    before = (
        public.get(f"/v1/markets/{world.symbol}/book").json()["bids"],
        public.get("/v1/instruments").json(),
        operator.get("/v1/admin/participants").json(),
        world.http("trader").get("/v1/account").json(),
        world.http("trader").get("/v1/orders", params={"status": "all"}).json(),
    )
    for method, request in changes:
        answer = world.http("regulator").request(
            method, request.path, json=request.json, params=request.params
        )
        assert answer.status_code == 403, (method, request.path, answer.text)
    after = (
        public.get(f"/v1/markets/{world.symbol}/book").json()["bids"],
        public.get("/v1/instruments").json(),
        operator.get("/v1/admin/participants").json(),
        world.http("trader").get("/v1/account").json(),
        world.http("trader").get("/v1/orders", params={"status": "all"}).json(),
    )
    assert after == before
