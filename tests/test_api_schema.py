"""The live server keeps the promises of its own OpenAPI document, whatever it is sent.

Schemathesis generates requests for every operation of the document (the documented examples,
boundary and negative values, then random ones) and sends them to a real `hogx serve`, each with
the key of a role the route is for. Every answer must have a documented status code, never a
5xx, and the documented shape; a request that breaks the schema must be refused with a 4xx.

The cases are generated from the document the server code builds (collection happens before
any server runs); the first test proves that it is the very document the live server serves.
A scripted session then checks the answers generated requests rarely reach: orders that trade,
fills, balances, books with levels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import Server, start_server
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import Settings, create_app

MAX_EXAMPLES = 40
SYMBOL = "HOG-G1-HCM"  # the symbol of the document's own examples, so they trade for real
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class Live:
    """A served exchange with the example instrument listed and a funded key for every role."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.keys: dict[str, str] = {"operator": server.operator_key}
        self.ids: dict[str, int] = {}
        with server.client(server.operator_key) as operator:
            for role in ("trader", "regulator", "monitor"):
                answer = operator.post("/v1/admin/participants", json={"name": role, "role": role})
                assert answer.status_code == 201, answer.text
                self.keys[role] = answer.json()["api_key"]
                self.ids[role] = answer.json()["participant_id"]
            listed = operator.post(
                "/v1/admin/instruments",
                json={
                    "symbol": SYMBOL,
                    "name": "Heo hơi loại 1 - TP.HCM",
                    "kind": "live_hog",
                    "lot_size": 1_000,
                    "tick_size": 100,
                    "reference_price": 60_000,
                    "maker_fee_bps": 2,
                    "taker_fee_bps": 5,
                },
            )
            assert listed.status_code == 201, listed.text
            for asset, amount in (("VND", 10**13), (SYMBOL, 10**6)):
                deposit = {"participant_id": self.ids["trader"], "asset": asset, "amount": amount}
                assert operator.post("/v1/admin/deposits", json=deposit).status_code == 201

    def key_for(self, path: str) -> str:
        """The role each family of routes is for (public routes ignore the key)."""
        if path.startswith("/v1/admin/"):
            return self.keys["operator"]
        if path.startswith("/v1/audit/"):
            return self.keys["regulator"]
        return self.keys["trader"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = start_server(Path(tmp_path_factory.mktemp("schema")) / "data")
    try:
        yield Live(server)
    finally:
        assert server.stop(), "the server did not stop cleanly"


def _document() -> dict[str, Any]:
    """The OpenAPI document the server code builds; no exchange is started for it."""
    document: dict[str, Any] = create_app(Settings(data_dir=Path("unused-data-dir"))).openapi()
    return document


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)


def test_every_reference_in_the_document_resolves() -> None:
    """A reference the document cannot resolve leaves a body undescribed (and untested)."""
    document = _document()

    def references(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    found = set(references(document))
    assert found, "the document refers to its components"
    for reference in found:
        assert reference.startswith("#/"), reference
        target: Any = document
        for part in reference.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"{reference} does not resolve"
            target = target[part]


def test_the_served_document_is_the_one_the_cases_are_generated_from(live: Live) -> None:
    with live.server.client() as public:
        served = public.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == _document()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_documented_schema(
    case: schemathesis.Case, live: Live
) -> None:
    case.call_and_validate(
        base_url=live.server.url,
        headers={"Authorization": f"Bearer {live.key_for(case.path)}"},
        checks=CHECKS,
    )


def _conforms(method: str, path: str, answer: httpx.Response) -> None:
    """The answer's status is documented for the operation and its body has that shape."""
    operation = schema[path][method]
    documented = operation.definition.raw["responses"]
    assert str(answer.status_code) in documented, (method, path, answer.status_code, answer.text)
    operation.validate_response(answer)


def test_the_answers_of_a_trading_session_match_the_document(live: Live) -> None:
    server = live.server
    with (
        server.client(live.keys["trader"]) as trader,
        server.client(live.keys["operator"]) as operator,
        server.client() as public,
    ):
        resting = trader.post(
            "/v1/orders",
            json={
                "symbol": SYMBOL,
                "side": "sell",
                "price": 60_500,
                "quantity": 3,
                "client_order_id": "schema-1",
            },
        )
        _conforms("POST", "/v1/orders", resting)
        order_id = resting.json()["order_id"]
        again = trader.post(
            "/v1/orders",
            json={
                "symbol": SYMBOL,
                "side": "sell",
                "price": 60_500,
                "quantity": 3,
                "client_order_id": "schema-1",
            },
        )
        assert again.status_code == 200
        _conforms("POST", "/v1/orders", again)
        # The same participant cannot trade with itself; a second trader takes the offer.
        other = operator.post("/v1/admin/participants", json={"name": "Buyer", "role": "trader"})
        _conforms("POST", "/v1/admin/participants", other)
        deposit = operator.post(
            "/v1/admin/deposits",
            json={
                "participant_id": other.json()["participant_id"],
                "asset": "VND",
                "amount": 10**12,
            },
        )
        _conforms("POST", "/v1/admin/deposits", deposit)
        with server.client(other.json()["api_key"]) as buyer:
            taker = buyer.post(
                "/v1/orders",
                json={"symbol": SYMBOL, "side": "buy", "type": "market", "quantity": 2},
            )
            _conforms("POST", "/v1/orders", taker)
            assert taker.json()["trades"], taker.text
            _conforms("GET", "/v1/fills", buyer.get("/v1/fills"))
        amended = trader.patch(f"/v1/orders/{order_id}", json={"quantity": 2})
        _conforms("PATCH", "/v1/orders/{order_id}", amended)
        _conforms("GET", "/v1/orders/{order_id}", trader.get(f"/v1/orders/{order_id}"))
        _conforms("GET", "/v1/orders", trader.get("/v1/orders", params={"status": "all"}))
        _conforms("GET", "/v1/fills", trader.get("/v1/fills"))
        _conforms("GET", "/v1/account", trader.get("/v1/account"))
        trader.post(
            "/v1/orders", json={"symbol": SYMBOL, "side": "buy", "price": 59_000, "quantity": 1}
        )
        _conforms("GET", "/v1/markets/{symbol}/book", public.get(f"/v1/markets/{SYMBOL}/book"))
        _conforms("GET", "/v1/markets/{symbol}/trades", public.get(f"/v1/markets/{SYMBOL}/trades"))
        _conforms("GET", "/v1/markets/{symbol}/ticker", public.get(f"/v1/markets/{SYMBOL}/ticker"))
        _conforms(
            "GET", "/v1/markets/{symbol}/candles", public.get(f"/v1/markets/{SYMBOL}/candles")
        )
        _conforms("GET", "/v1/instruments", public.get("/v1/instruments"))
        _conforms("GET", "/v1/instruments/{symbol}", public.get(f"/v1/instruments/{SYMBOL}"))
        halted = operator.post(f"/v1/admin/markets/{SYMBOL}/halt", json={"reason": "check"})
        _conforms("POST", "/v1/admin/markets/{symbol}/halt", halted)
        refused = trader.post(
            "/v1/orders", json={"symbol": SYMBOL, "side": "buy", "price": 59_000, "quantity": 1}
        )
        assert refused.status_code == 400
        _conforms("POST", "/v1/orders", refused)
        cancelled = trader.delete(f"/v1/orders/{order_id}")
        _conforms("DELETE", "/v1/orders/{order_id}", cancelled)
        _conforms("DELETE", "/v1/orders/{order_id}", trader.delete(f"/v1/orders/{order_id}"))
        resumed = operator.post(f"/v1/admin/markets/{SYMBOL}/resume")
        _conforms("POST", "/v1/admin/markets/{symbol}/resume", resumed)
        withdrawn = operator.post(
            "/v1/admin/withdrawals",
            json={"participant_id": live.ids["trader"], "asset": "VND", "amount": 1},
        )
        _conforms("POST", "/v1/admin/withdrawals", withdrawn)
        _conforms("GET", "/v1/admin/participants", operator.get("/v1/admin/participants"))
        _conforms("GET", "/healthz", public.get("/healthz"))
