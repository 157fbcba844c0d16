"""Sharding through real processes: two engine shards behind a gateway (issue 10).

Shard `main` (index 0) holds the live-hog markets, shard `ocop` (index 1) the OCOP goods; the
gateway routes by symbol, by order id and by participant, and moves cash between the shards in
two phases. The rule that matters most: a participant trading on both shards can never spend
the same cash twice. The core's half of that rule is tested in test_shard_rules.py; here it is
raced through the whole system.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from conftest import REPO
from test_gateway import Process, spawn
from websockets.asyncio.client import connect

from benchmarks.cluster import delete_shard
from exchange import commands as c
from exchange.command_service import submit_to_shard
from exchange.core import SHARD_ID_SPAN

pytestmark = pytest.mark.timeout(180)

CASH = 1_000_000
PRICE = 10_000  # lot size 1: a buy of q lots reserves q * 10,000 VND (no fees)


def instrument(symbol: str, kind: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "symbol": symbol, "name": f"Goods {symbol}", "kind": kind, "price_unit": "kg",
        "lot_size": 1, "tick_size": 100, "reference_price": PRICE, "price_band_pct": 20,
    }  # fmt: skip
    if kind == "live_hog":
        fields["attributes"] = {"grade": "1", "delivery_hub": "Ho Chi Minh City"}
    else:
        fields["attributes"] = {
            "stars": 4, "product_group": "drinks", "producer": "HTX Chè Tân Cương",
            "producer_type": "cooperative", "province": "Thái Nguyên",
            "certificate_number": "OCOP-TN-2024-0117", "certification_date": "2026-01-15",
        }  # fmt: skip
    return fields


class ShardedCluster:
    def __init__(self, nats_url: str, directory: Path) -> None:
        self.nats_url = nats_url
        self.prefix = f"s{uuid.uuid4().hex[:8]}"
        self.shards = (f"{self.prefix}-main", f"{self.prefix}-ocop")
        self.operator_key = secrets.token_urlsafe(24)
        self.engines = {
            shard: self._engine(directory, shard, index) for index, shard in enumerate(self.shards)
        }
        self.gateway = spawn(
            [sys.executable, "-m", "exchange.cli", "gateway", "--nats-url", nats_url,
             "--shard", self.shards[0], "--shard", self.shards[1],
             "--assign", f"OCOP-*={self.shards[1]}", "--port", "{port}"],
            directory / "gateway.log",
        )  # fmt: skip

    def _engine(self, directory: Path, shard: str, index: int) -> Process:
        command = [sys.executable, "-m", "exchange.cli", "serve", "--port", "{port}",
                   "--data-dir", str(directory / shard), "--nats-url", self.nats_url,
                   "--shard", shard, "--shard-index", str(index)]  # fmt: skip
        return spawn(command, directory / f"{shard}.log", {"HOGX_OPERATOR_KEY": self.operator_key})

    def stop(self) -> None:
        for process in (self.gateway, *self.engines.values()):
            process.stop()

        for shard in self.shards:
            asyncio.run(delete_shard(self.nats_url, shard))


@pytest.fixture
def cluster(nats_url: str, tmp_path: Path) -> Iterator[ShardedCluster]:
    running = ShardedCluster(nats_url, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def eventually(check: Any, what: str, timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def set_up(cluster: ShardedCluster) -> tuple[httpx.Client, str, int]:
    """Both markets listed, a trader registered through the gateway, all its cash on main."""
    operator = cluster.gateway.client(cluster.operator_key)
    for symbol, kind in (("HOG-HCM", "live_hog"), ("OCOP-TEA", "ocop")):
        listed = operator.post("/v1/admin/instruments", json=instrument(symbol, kind))
        assert listed.status_code == 201, listed.text
    created = operator.post("/v1/admin/participants", json={"name": "HTX Củ Chi", "role": "trader"})
    assert created.status_code == 201, created.text
    key, participant_id = created.json()["api_key"], created.json()["participant_id"]
    deposit = operator.post(
        "/v1/admin/deposits",
        json={"participant_id": participant_id, "asset": "VND", "amount": CASH},
    )
    assert deposit.status_code in (200, 201), deposit.text  # fmt: skip
    return cluster.gateway.client(key), key, participant_id


def buy(symbol: str, quantity: int) -> dict[str, Any]:
    return {"symbol": symbol, "side": "buy", "type": "limit", "price": PRICE,
            "quantity": quantity, "time_in_force": "gtc"}  # fmt: skip


def account(trader: httpx.Client) -> dict[str, Any]:
    answer = trader.get("/v1/account")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def cash_of(balances: list[dict[str, Any]]) -> tuple[int, int]:
    for balance in balances:
        if balance["asset"] == "VND":
            return balance["available"], balance["reserved"]
    return 0, 0


def test_instruments_live_on_their_shard_and_ids_name_it(cluster: ShardedCluster) -> None:
    trader, key, participant_id = set_up(cluster)
    main, ocop = cluster.shards
    with cluster.engines[main].client() as direct_main, cluster.engines[ocop].client() as direct:
        assert direct_main.get("/v1/instruments/HOG-HCM").status_code == 200
        assert direct_main.get("/v1/instruments/OCOP-TEA").status_code == 404
        assert direct.get("/v1/instruments/OCOP-TEA").status_code == 200
        assert direct.get("/v1/instruments/HOG-HCM").status_code == 404
    # The participant exists on both shards, with the same id.
    for shard in cluster.shards:
        with cluster.engines[shard].client(key) as direct:
            assert direct.get("/v1/account").json()["participant_id"] == participant_id
    # The gateway lists both shards' instruments, page after page.
    symbols, cursor = [], None
    while True:
        page = trader.get("/v1/instruments", params={"limit": 1, **({"cursor": cursor} if cursor
                                                                     else {})}).json()  # fmt: skip
        symbols += [i["symbol"] for i in page["instruments"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(symbols) == ["HOG-HCM", "OCOP-TEA"]
    # An order on the ocop shard has an id of that shard, and the gateway finds it by id.
    assert trader.post("/v1/account/transfers", json={
        "amount": 200_000, "from_shard": main, "to_shard": ocop}).status_code == 201  # fmt: skip
    placed = trader.post("/v1/orders", json=buy("OCOP-TEA", 5))
    assert placed.status_code == 201, placed.text
    order_id = int(placed.json()["order_id"])
    assert order_id // SHARD_ID_SPAN == 1
    assert trader.get(f"/v1/orders/{order_id}").json()["sequence"] == placed.json()["sequence"]
    assert trader.delete(f"/v1/orders/{order_id}").status_code == 200
    assert trader.post("/v1/orders", json=buy("OCOP-TEA", 2)).status_code == 201  # stays open
    hog = trader.post("/v1/orders", json=buy("HOG-HCM", 1))
    assert int(hog.json()["order_id"]) // SHARD_ID_SPAN == 0
    listed: list[str] = []
    cursor = None
    while True:
        params = {"cursor": cursor} if cursor else {}
        page = trader.get("/v1/orders", params={"limit": 1, **params}).json()
        listed += [order["symbol"] for order in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(listed) == ["HOG-HCM", "OCOP-TEA"]


def test_cash_is_only_spendable_on_the_shard_that_holds_it(cluster: ShardedCluster) -> None:
    trader, _, _ = set_up(cluster)
    main, ocop = cluster.shards
    refused = trader.post("/v1/orders", json=buy("OCOP-TEA", 1))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    moved = trader.post(
        "/v1/account/transfers", json={"amount": 600_000, "from_shard": main, "to_shard": ocop}
    )
    assert moved.status_code == 201, moved.text
    assert moved.json()["status"] == "completed"
    merged = account(trader)
    assert cash_of(merged["balances"]) == (CASH, 0)
    by_shard = {entry["shard"]: cash_of(entry["balances"]) for entry in merged["shards"]}
    assert by_shard == {main: (400_000, 0), ocop: (600_000, 0)}
    assert merged["in_transit"] == 0
    assert trader.post("/v1/orders", json=buy("OCOP-TEA", 60)).status_code == 201
    # Now all of ocop's cash is reserved: it cannot also move back to main.
    back = trader.post(
        "/v1/account/transfers", json={"amount": 1, "from_shard": ocop, "to_shard": main}
    )
    assert back.status_code == 400
    assert back.json()["error"]["code"] == "INSUFFICIENT_FUNDS"
    again = trader.post("/v1/account/transfers", json={
        "amount": 400_000, "from_shard": main, "to_shard": ocop, "transfer_id": "t-1"})  # fmt: skip
    retried = trader.post("/v1/account/transfers", json={
        "amount": 400_000, "from_shard": main, "to_shard": ocop, "transfer_id": "t-1"})  # fmt: skip
    assert again.status_code == retried.status_code == 201
    assert cash_of(account(trader)["balances"]) == (400_000, 600_000)  # moved once, not twice


def test_each_shards_ledger_books_its_phase_of_a_transfer(
    cluster: ShardedCluster, tmp_path: Path
) -> None:
    """Each shard's statement shows its phase, referenced by the transfer id, and `hogx ledger
    check` finds every invariant on both shards (the in-transit accounts included)."""
    trader, _, _ = set_up(cluster)
    main, ocop = cluster.shards
    moved = trader.post("/v1/account/transfers", json={"amount": 250_000, "from_shard": main,
                        "to_shard": ocop, "transfer_id": "t-ledger"})  # fmt: skip
    assert moved.status_code == 201, moved.text

    def lines(shard: str) -> list[tuple[str, str, int, int]]:
        answer = trader.get("/v1/account/statement", params={"shard": shard})
        assert answer.status_code == 200, answer.text
        return [
            (line["code"], line["reference_id"], line["available_change"], line["available"])
            for line in answer.json()["lines"]
        ]

    assert lines(main) == [
        ("deposit", "0", CASH, CASH),
        ("transfer_out", "t-ledger", -250_000, CASH - 250_000),
    ]
    assert lines(ocop) == [("transfer_in", "t-ledger", 250_000, 250_000)]
    for shard in cluster.shards:
        checked = subprocess.run(
            [sys.executable, "-m", "exchange.cli", "ledger", "check", "--data-dir",
             str(tmp_path / shard)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "ok: true" in checked.stdout and "VND 0" in checked.stdout, checked.stdout


def test_racing_orders_and_transfers_never_spend_the_same_cash_twice(
    cluster: ShardedCluster,
) -> None:
    """Buys on both shards and transfers both ways, all at once, from many threads."""
    _, key, _ = set_up(cluster)
    main, ocop = cluster.shards

    def attempt(number: int) -> tuple[str, int, int]:
        with cluster.gateway.client(key) as http:
            kind = number % 4
            if kind == 0:
                answer = http.post("/v1/orders", json=buy("HOG-HCM", 20))
                return "buy", answer.status_code, 20 * PRICE
            if kind == 1:
                answer = http.post("/v1/orders", json=buy("OCOP-TEA", 20))
                return "buy", answer.status_code, 20 * PRICE
            source, destination = (main, ocop) if kind == 2 else (ocop, main)
            answer = http.post("/v1/account/transfers", json={
                "amount": 150_000, "from_shard": source, "to_shard": destination})  # fmt: skip
            return "transfer", answer.status_code, 150_000

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(attempt, range(64)))
    assert all(status in (200, 201, 202, 400) for _, status, _ in outcomes), outcomes
    accepted_buys = sum(amount for kind, status, amount in outcomes
                        if kind == "buy" and status == 201)  # fmt: skip
    assert 0 < accepted_buys <= CASH, "more was bought than the participant ever had"
    with cluster.gateway.client(key) as trader:
        eventually(lambda: account(trader)["in_transit"] == 0, "transfers to arrive")
        merged = account(trader)
    available, reserved = cash_of(merged["balances"])
    assert available + reserved == CASH  # nothing created, nothing lost, across both shards
    assert reserved == accepted_buys  # nothing traded: every accepted buy still holds its cash
    for entry in merged["shards"]:
        shard_available, shard_reserved = cash_of(entry["balances"])
        assert shard_available >= 0 and shard_reserved >= 0


def test_a_transfer_left_half_done_is_completed_by_the_gateway(cluster: ShardedCluster) -> None:
    trader, _, participant_id = set_up(cluster)
    main, ocop = cluster.shards

    async def only_phase_one() -> None:
        client = await nats.connect(cluster.nats_url)
        try:
            result = await submit_to_shard(
                client, main, c.TransferOut(participant_id, 250_000, "half-done", ocop)
            )
            assert type(result.events[0]).__name__ == "CashTransferredOut", result.events
        finally:
            await client.close()

    asyncio.run(only_phase_one())  # a coordinator that died after phase one

    def arrived() -> bool:
        shards = {e["shard"]: cash_of(e["balances"]) for e in account(trader)["shards"]}
        return shards[ocop] == (250_000, 0)

    eventually(arrived, "the sweeper to complete the transfer")
    merged = account(trader)
    assert cash_of(merged["balances"]) == (CASH, 0) and merged["in_transit"] == 0


def test_the_gateway_feed_serves_each_symbol_from_its_shard(cluster: ShardedCluster) -> None:
    trader, _, _ = set_up(cluster)
    main, ocop = cluster.shards
    assert trader.post("/v1/account/transfers", json={
        "amount": 300_000, "from_shard": main, "to_shard": ocop}).status_code == 201  # fmt: skip
    assert trader.post("/v1/orders", json=buy("OCOP-TEA", 7)).status_code == 201
    assert trader.post("/v1/orders", json=buy("HOG-HCM", 3)).status_code == 201

    async def books() -> dict[str, list[list[int]]]:
        url = cluster.gateway.url.replace("http://", "ws://") + "/v1/ws"
        seen: dict[str, list[list[int]]] = {}
        async with connect(url) as socket:
            for symbol in ("OCOP-TEA", "HOG-HCM"):
                await socket.send(json.dumps({"op": "subscribe", "channel": "book",
                                              "symbol": symbol}))  # fmt: skip
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                if frame.get("type") == "snapshot" and frame.get("bids"):
                    seen[frame["symbol"]] = frame["bids"]
        return seen

    def both() -> dict[str, list[list[int]]] | None:
        seen = asyncio.run(books())
        return seen if len(seen) == 2 else None

    seen = eventually(both, "both books on the gateway's feed")
    assert seen["OCOP-TEA"][0][:2] == [PRICE, 7]
    assert seen["HOG-HCM"][0][:2] == [PRICE, 3]
