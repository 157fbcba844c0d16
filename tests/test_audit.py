"""The regulator's reads: trades with both sides, the journal itself, and proof it is unaltered."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server, start_server
from test_audit_history import three_day_journal
from test_journal import flip_byte, record_spans, splice_records

SYMBOL = "HOG-G1-HCM"
OTHER = "HOG-G2-HCM"


class Venue:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.operator = server.client(server.operator_key)
        for symbol, reference in ((SYMBOL, 60_000), (OTHER, 56_000)):
            self.operator.post(
                "/v1/admin/instruments",
                json={"symbol": symbol, "name": symbol, "kind": "live_hog", "lot_size": 1_000,
                      "tick_size": 100, "reference_price": reference},
            ).raise_for_status()  # fmt: skip
        self.regulator = self.client_of(self.register("regulator", "regulator"))

    def register(self, name: str, role: str) -> dict[str, Any]:
        answer = self.operator.post("/v1/admin/participants", json={"name": name, "role": role})
        answer.raise_for_status()
        registered: dict[str, Any] = answer.json()
        return registered

    def client_of(self, participant: dict[str, Any]) -> httpx.Client:
        return self.server.client(participant["api_key"])

    def trader(self, name: str) -> tuple[int, httpx.Client]:
        participant = self.register(name, "trader")
        for asset, amount in (("VND", 10**12), (SYMBOL, 1_000), (OTHER, 1_000)):
            self.operator.post(
                "/v1/admin/deposits",
                json={"participant_id": participant["participant_id"], "asset": asset,
                      "amount": amount},
            ).raise_for_status()  # fmt: skip
        return participant["participant_id"], self.client_of(participant)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Venue]:
    server = start_server(tmp_path / "data")
    try:
        yield Venue(server)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def trade(seller: httpx.Client, buyer: httpx.Client, symbol: str, price: int) -> dict[str, Any]:
    order = {"symbol": symbol, "price": price, "quantity": 2}
    sold = seller.post("/v1/orders", json={**order, "side": "sell"}).json()
    bought = buyer.post("/v1/orders", json={**order, "side": "buy"}).json()
    assert bought["status"] == "filled", bought
    return {"sell": sold["order_id"], "buy": bought["order_id"]}


def test_audit_trades_name_both_sides_and_filter_by_symbol_and_participant(venue: Venue) -> None:
    farm_id, farm = venue.trader("farm")
    buyer_id, buyer = venue.trader("buyer")
    other_id, other = venue.trader("other")
    first = trade(farm, buyer, SYMBOL, 60_000)
    trade(other, buyer, OTHER, 56_000)
    trades = venue.regulator.get("/v1/audit/trades").json()["trades"]
    assert len(trades) == 2
    assert trades[0] | {"trade_id": "", "sequence": 0, "time": ""} == {
        "trade_id": "", "sequence": 0, "time": "", "symbol": SYMBOL, "price": 60_000,
        "quantity": 2, "notional_vnd": 120_000_000, "aggressor_side": "buy",
        "buyer_participant_id": buyer_id, "buy_order_id": first["buy"],
        "seller_participant_id": farm_id, "sell_order_id": first["sell"],
        "buyer_fee_vnd": 0, "seller_fee_vnd": 0,
    }  # fmt: skip
    by_symbol = venue.regulator.get("/v1/audit/trades", params={"symbol": OTHER}).json()
    assert [t["symbol"] for t in by_symbol["trades"]] == [OTHER]
    by_participant = venue.regulator.get("/v1/audit/trades", params={"participant_id": other_id})
    assert [t["seller_participant_id"] for t in by_participant.json()["trades"]] == [other_id]
    sequence = trades[1]["sequence"]
    by_sequence = venue.regulator.get("/v1/audit/trades", params={"from_sequence": sequence})
    assert [t["trade_id"] for t in by_sequence.json()["trades"]] == [trades[1]["trade_id"]]


def test_audit_trades_page_and_export_the_same_rows_as_csv(venue: Venue) -> None:
    _, farm = venue.trader("farm")
    _, buyer = venue.trader("buyer")
    for n in range(7):
        trade(farm, buyer, SYMBOL, 60_000 + 100 * n)
    pages, params = [], {"limit": 3}
    while True:
        body = venue.regulator.get("/v1/audit/trades", params=params).json()
        pages.append(body["trades"])
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert [len(page) for page in pages] == [3, 3, 1]
    rows = [t for page in pages for t in page]
    answer = venue.regulator.get("/v1/audit/trades", headers={"Accept": "text/csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(answer.text)))
    assert exported == [{key: str(value) for key, value in row.items()} for row in rows]


def test_audit_events_are_the_journal_in_order_with_named_fields(venue: Venue) -> None:
    _, farm = venue.trader("farm")
    _, buyer = venue.trader("buyer")
    trade(farm, buyer, SYMBOL, 60_000)
    events, params = [], {"from_sequence": 1, "limit": 4}
    while True:
        body = venue.regulator.get("/v1/audit/events", params=params).json()
        events += body["events"]
        if body["next_from_sequence"] is None:
            break
        params["from_sequence"] = body["next_from_sequence"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    types = [e["command"]["type"] for e in events]
    assert types[:2] == ["register_participant", "list_instrument"]  # the operator came first
    assert events[0]["command"]["role"] == "operator"
    placed = [e["command"] for e in events if e["command"]["type"] == "place_order"]
    assert [(c["side"], c["price"], c["quantity"]) for c in placed] == [
        ("sell", 60_000, 2),
        ("buy", 60_000, 2),
    ]
    verified = venue.regulator.get("/v1/audit/verify").json()
    assert verified["head_hash"] == events[-1]["hash"]


def test_verify_proves_the_chain_and_checks_an_anchor_kept_outside(venue: Venue) -> None:
    _, farm = venue.trader("farm")
    _, buyer = venue.trader("buyer")
    trade(farm, buyer, SYMBOL, 60_000)
    report = venue.regulator.get("/v1/audit/verify").json()
    assert report["ok"] and report["first_bad_sequence"] is None
    assert report["records"] == report["last_sequence"] > 5
    anchor = {"anchor_sequence": report["last_sequence"], "anchor_hash": report["head_hash"]}
    trade(farm, buyer, SYMBOL, 60_100)  # the journal grows; the old head must still be in it
    assert venue.regulator.get("/v1/audit/verify", params=anchor).json()["ok"]
    forged = {**anchor, "anchor_hash": "0" * 64}
    rejected = venue.regulator.get("/v1/audit/verify", params=forged).json()
    assert not rejected["ok"] and rejected["first_bad_sequence"] == anchor["anchor_sequence"]


def tamper(segment: Path, how: str, index: int) -> None:
    """Alter the journal the four ways a forger (or a failing disk) could."""
    spans = record_spans(segment)
    order = list(range(len(spans)))
    if how == "flip a byte":
        offset, size = spans[index]
        flip_byte(segment, offset + size - 40)  # inside the payload
    elif how == "delete a record":
        splice_records(segment, order[:index] + order[index + 1 :])
    elif how == "swap two records":
        splice_records(segment, [*order[:index], index + 1, index, *order[index + 2 :]])
    else:  # truncate in the middle: everything from half-way through this record is gone
        offset, size = spans[index]
        with segment.open("r+b") as file:
            file.truncate(offset + size // 2)


@pytest.mark.parametrize(
    "how", ["flip a byte", "delete a record", "swap two records", "truncate in the middle"]
)
def test_tampering_is_detected_and_named_while_reads_go_on(venue: Venue, how: str) -> None:
    _, farm = venue.trader("farm")
    _, buyer = venue.trader("buyer")
    for price in (60_000, 60_100, 60_200):
        trade(farm, buyer, SYMBOL, price)
    events = venue.regulator.get("/v1/audit/events", params={"limit": 1000}).json()["events"]
    target = next(e for e in events if e["command"]["type"] == "place_order")
    segment = next((venue.server.data_dir / "journal").glob("journal-*.seg"))
    tamper(segment, how, index=target["sequence"] - 1)
    report = venue.regulator.get("/v1/audit/verify").json()
    assert not report["ok"], report
    assert report["first_bad_sequence"] == target["sequence"], report
    assert str(target["sequence"]) in report["message"]
    assert venue.regulator.get(f"/v1/markets/{SYMBOL}/book").status_code == 200
    assert venue.regulator.get("/v1/audit/trades").status_code == 200


def test_audit_routes_are_for_regulators_only(venue: Venue) -> None:
    _, farm = venue.trader("farm")
    for path in ("/v1/audit/trades", "/v1/audit/events", "/v1/audit/verify"):
        assert farm.get(path).status_code == 403
        assert venue.operator.get(path).status_code == 403
        assert httpx.get(venue.server.url + path).status_code == 401


def test_an_orders_life_is_told_event_by_event(venue: Venue) -> None:
    farm_id, farm = venue.trader("farm")
    _, buyer = venue.trader("buyer")
    rest = {"symbol": SYMBOL, "side": "sell", "price": 60_500, "quantity": 5}
    order = farm.post("/v1/orders", json={**rest, "client_order_id": "lot-7"}).json()
    farm.patch(f"/v1/orders/{order['order_id']}", json={"quantity": 4})
    take = {"symbol": SYMBOL, "side": "buy", "price": 60_500, "quantity": 3}
    taker = buyer.post("/v1/orders", json=take).json()
    farm.delete(f"/v1/orders/{order['order_id']}")
    life = venue.regulator.get(f"/v1/audit/orders/{order['order_id']}").json()
    assert (life["participant_id"], life["client_order_id"], life["status"]) == (
        farm_id,
        "lot-7",
        "cancelled",
    )
    kinds = [(e["kind"], e["command"]) for e in life["events"]]
    assert kinds == [
        ("registered", "place_order"),
        ("funds_held", "place_order"),
        ("accepted", "place_order"),
        ("funds_released", "amend_order"),  # 5 -> 4 lots: one lot back
        ("amended", "amend_order"),
        ("fill", "place_order"),  # the buyer's order took 3 lots
        ("cancelled", "cancel_order"),
        ("funds_released", "cancel_order"),
    ]
    fill = life["events"][5]["details"]
    assert (fill["price"], fill["quantity"], fill["liquidity"]) == (60_500, 3, "maker")
    assert fill["taker_order_id"] == int(taker["order_id"])
    assert life["events"][6]["details"]["reason"] == "REQUESTED"
    sequences = [e["sequence"] for e in life["events"]]
    assert sequences == sorted(sequences)


def test_an_unknown_order_has_no_audit_trail(venue: Venue) -> None:
    for raw in ("999999", "abc"):
        answer = venue.regulator.get(f"/v1/audit/orders/{raw}")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "ORDER_NOT_FOUND"
        # A regulator looks among every order, not "of this participant".
        assert "participant" not in answer.json()["error"]["message"], answer.text


def test_an_orders_life_survives_a_restart(venue: Venue) -> None:
    _, farm = venue.trader("farm")
    order = farm.post(
        "/v1/orders", json={"symbol": SYMBOL, "side": "sell", "price": 60_500, "quantity": 5}
    ).json()
    before = venue.regulator.get(f"/v1/audit/orders/{order['order_id']}").json()
    key = venue.regulator.headers["authorization"].split()[1]
    server = venue.server
    assert server.stop()
    again = start_server(server.data_dir, operator_key=server.operator_key)
    try:
        with again.client(key) as regulator:
            after = regulator.get(f"/v1/audit/orders/{order['order_id']}").json()
    finally:
        assert again.stop()
    assert after == before


def test_the_book_at_any_past_sequence_is_what_the_market_showed_then(venue: Venue) -> None:
    _, farm = venue.trader("farm")
    _, buyer = venue.trader("buyer")
    shown = []
    for i, (side, price) in enumerate(
        [("sell", 60_500), ("sell", 60_300), ("buy", 59_800), ("buy", 60_300), ("sell", 59_900)]
    ):
        who = farm if side == "sell" else buyer
        who.post("/v1/orders", json={"symbol": SYMBOL, "side": side, "price": price,
                                     "quantity": 2 + i}).raise_for_status()  # fmt: skip
        shown.append(farm.get(f"/v1/markets/{SYMBOL}/book").json())
    for book in shown:
        past = venue.regulator.get(
            "/v1/audit/book", params={"symbol": SYMBOL, "sequence": book["sequence"]}
        ).json()
        assert (past["sequence"], past["bids"], past["asks"]) == (
            book["sequence"],
            book["bids"],
            book["asks"],
        )
    with_orders = venue.regulator.get(
        "/v1/audit/book", params={"symbol": SYMBOL, "sequence": shown[0]["sequence"], "orders": 1}
    ).json()
    assert [(o["price"], o["remaining_quantity"]) for o in with_orders["ask_orders"]] == [
        (60_500, 2)
    ]
    assert with_orders["bid_orders"] == [] and not with_orders["halted"]


def _children_of(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_server_leaves_no_past_book_worker_behind(venue: Venue) -> None:
    venue.regulator.get("/v1/audit/book", params={"symbol": SYMBOL, "sequence": 3})
    workers = _children_of(venue.server.process.pid)
    assert workers, "the past book is answered by a worker process"
    venue.server.process.kill()
    venue.server.process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()]


def test_the_past_book_refuses_the_future_and_unlisted_symbols(venue: Venue) -> None:
    last = venue.regulator.get("/v1/audit/verify").json()["last_sequence"]
    future = venue.regulator.get("/v1/audit/book", params={"symbol": SYMBOL, "sequence": last + 5})
    assert future.status_code == 400
    assert future.json()["error"]["code"] == "SEQUENCE_NOT_REACHED"
    before_listing = venue.regulator.get("/v1/audit/book", params={"symbol": SYMBOL, "sequence": 1})
    assert before_listing.status_code == 404
    assert before_listing.json()["error"]["code"] == "UNKNOWN_INSTRUMENT"
    _, farm = venue.trader("farm")
    assert farm.get("/v1/audit/book", params={"symbol": SYMBOL, "sequence": 1}).status_code == 403


def test_the_heads_of_past_days_are_published_at_start_and_anchor_the_journal(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    three_day_journal(data_dir)  # records on 2, 3 and 5 March 2026: all long over
    server = start_server(data_dir)
    try:
        venue = Venue(server)
        deadline = time.monotonic() + 10  # published by a background task after start-up
        while not (heads := venue.regulator.get("/v1/audit/heads").json()["heads"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [(h["date"], h["first_sequence"], h["last_sequence"]) for h in heads] == [
            ("2026-03-02", 1, 5),
            ("2026-03-03", 6, 8),
            ("2026-03-05", 9, 12),
        ]
        march = venue.regulator.get("/v1/audit/heads", params={"from_date": "2026-03-03"}).json()
        assert [h["date"] for h in march["heads"]] == ["2026-03-03", "2026-03-05"]
        for head in heads:
            anchor = {"anchor_sequence": head["last_sequence"], "anchor_hash": head["head_hash"]}
            assert venue.regulator.get("/v1/audit/verify", params=anchor).json()["ok"]
        assert server.stop()
        port = server.url.rsplit(":", 1)[1]
        log = (data_dir.parent / f"server-{port}.log").read_text()
        assert "day 2026-03-05 closed at sequence 12" in log
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
