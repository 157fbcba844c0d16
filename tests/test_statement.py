"""Statements and fills come from the clearing ledger, and `hogx ledger check` agrees with the
journal: through a real server, on the embedded SQLite ledger."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, Server, start_server

SYMBOL = "HOG-G1-HCM"


@pytest.fixture
def traded(tmp_path: Path) -> Iterator[tuple[Server, httpx.Client, httpx.Client]]:
    server = start_server(tmp_path / "data")
    operator = server.client(server.operator_key)
    operator.post(
        "/v1/admin/instruments",
        json={"symbol": SYMBOL, "name": "Heo hơi loại 1", "kind": "live_hog", "lot_size": 1_000,
              "tick_size": 100, "reference_price": 60_000, "taker_fee_bps": 5, "maker_fee_bps": 2},
    ).raise_for_status()  # fmt: skip
    keys = []
    for name, asset, amount in (("farm", SYMBOL, 10), ("buyer", "VND", 1_000_000_000)):
        created = operator.post("/v1/admin/participants", json={"name": name, "role": "trader"})
        participant = created.json()
        operator.post(
            "/v1/admin/deposits",
            json={"participant_id": participant["participant_id"], "asset": asset,
                  "amount": amount},
        ).raise_for_status()  # fmt: skip
        keys.append(participant["api_key"])
    farm, buyer = server.client(keys[0]), server.client(keys[1])
    sell = {"symbol": SYMBOL, "side": "sell", "price": 60_000, "quantity": 4}
    assert farm.post("/v1/orders", json=sell).status_code == 201
    buy = {"symbol": SYMBOL, "side": "buy", "price": 60_100, "quantity": 6}
    assert buyer.post("/v1/orders", json=buy).status_code == 201
    try:
        yield server, farm, buyer
    finally:
        for client in (operator, farm, buyer):
            client.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def balances(client: httpx.Client) -> dict[str, tuple[int, int]]:
    account = client.get("/v1/account").json()
    return {b["asset"]: (b["available"], b["reserved"]) for b in account["balances"]}


def test_a_statement_runs_from_its_opening_to_its_closing_balances(
    traded: tuple[Server, httpx.Client, httpx.Client],
) -> None:
    _, _, buyer = traded
    statement = buyer.get("/v1/account/statement").json()
    running = {b["asset"]: [b["available"], b["reserved"]] for b in statement["opening"]}
    for line in statement["lines"]:
        balance = running.setdefault(line["asset"], [0, 0])
        balance[0] += line["available_change"]
        balance[1] += line["reserved_change"]
        assert balance == [line["available"], line["reserved"]], line
    closing = {b["asset"]: [b["available"], b["reserved"]] for b in statement["closing"]}
    assert running == closing
    assert {asset: tuple(b) for asset, b in closing.items()} == balances(buyer)
    codes = [line["code"] for line in statement["lines"]]
    # The deposit, the buy's hold, the payment and fee out of it, the unused hold released,
    # and the 4 lots delivered.
    assert codes[0] == "deposit" and "hold" in codes and "payment" in codes
    assert "buyer_fee" in codes and "delivery" in codes


def test_a_statement_in_csv_has_the_same_lines(
    traded: tuple[Server, httpx.Client, httpx.Client],
) -> None:
    _, farm, _ = traded
    as_json = farm.get("/v1/account/statement").json()["lines"]
    answer = farm.get("/v1/account/statement", headers={"Accept": "text/csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == len(as_json) > 0
    for row, line in zip(rows, as_json, strict=True):
        assert {key: str(value) for key, value in line.items()} == row
    assert farm.get("/v1/account/statement", params={"format": "csv"}).text == answer.text


def test_a_statement_covers_only_its_period(
    traded: tuple[Server, httpx.Client, httpx.Client],
) -> None:
    _, _, buyer = traded
    lines = buyer.get("/v1/account/statement").json()["lines"]
    trade_line = next(line for line in lines if line["code"] == "payment")
    first_trade_time = trade_line["time"]
    before: dict[str, Any] = buyer.get(
        "/v1/account/statement", params={"end": first_trade_time}
    ).json()
    assert "payment" not in [line["code"] for line in before["lines"]]
    after = buyer.get("/v1/account/statement", params={"start": first_trade_time}).json()
    # The period starts with the buy itself: its hold, then its payment, at the same time.
    assert {line["sequence"] for line in after["lines"]} == {trade_line["sequence"]}
    assert "payment" in [line["code"] for line in after["lines"]]
    assert after["opening"] == before["closing"]


def test_fills_come_from_the_ledger_and_survive_a_restart(
    traded: tuple[Server, httpx.Client, httpx.Client], tmp_path: Path
) -> None:
    server, _, buyer = traded
    fills = buyer.get("/v1/fills").json()["fills"]
    assert [(f["price"], f["quantity"], f["liquidity"]) for f in fills] == [(60_000, 4, "taker")]
    key = buyer.headers["authorization"].split()[1]
    assert server.stop()
    again = start_server(server.data_dir, operator_key=server.operator_key)
    try:
        with again.client(key) as client:
            assert client.get("/v1/fills").json()["fills"] == fills
    finally:
        assert again.stop()


def test_ledger_check_agrees_with_the_journal(
    traded: tuple[Server, httpx.Client, httpx.Client],
) -> None:
    server, _, _ = traded
    assert server.stop()
    checked = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "ledger", "check", "--data-dir",
         str(server.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok: true" in checked.stdout
    assert "VND 0" in checked.stdout


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(child) for child in text]
    return children


def test_trading_goes_on_when_the_ledger_process_dies_and_the_ledger_catches_up(
    traded: tuple[Server, httpx.Client, httpx.Client],
) -> None:
    server, farm, buyer = traded
    ledger_writers = [
        pid
        for pid in child_pids(server.process.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(ledger_writers) == 1, ledger_writers
    os.kill(ledger_writers[0], signal.SIGKILL)
    for _ in range(3):  # acknowledged while no ledger process runs
        sell = {"symbol": SYMBOL, "side": "sell", "price": 60_000, "quantity": 1}
        assert farm.post("/v1/orders", json=sell).status_code == 201
        buy = {"symbol": SYMBOL, "side": "buy", "price": 60_000, "quantity": 1}
        assert buyer.post("/v1/orders", json=buy).status_code == 201
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the writer is started again and replays the journal
        statement = buyer.get("/v1/account/statement").json()
        closing = {b["asset"]: (b["available"], b["reserved"]) for b in statement["closing"]}
        if closing == balances(buyer):
            break
        sell = {"symbol": SYMBOL, "side": "sell", "price": 64_000, "quantity": 1}
        farm.post("/v1/orders", json=sell)  # a new batch is what restarts the writer
        time.sleep(1)
    assert closing == balances(buyer)
    fills = buyer.get("/v1/fills").json()["fills"]
    assert len(fills) == 4


def test_the_ledger_process_ends_when_the_server_is_killed(
    traded: tuple[Server, httpx.Client, httpx.Client],
) -> None:
    server, _, _ = traded
    writers = [
        pid
        for pid in child_pids(server.process.pid)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(writers) == 1
    server.process.kill()  # no shutdown at all: the writer must notice by itself
    server.process.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{writers[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = Path(f"/proc/{writers[0]}").exists()
    status = Path(f"/proc/{writers[0]}/status").read_text() if alive else ""
    assert not alive or "zombie" in status, "an orphaned ledger process outlived its server"
