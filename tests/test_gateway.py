"""Stateless gateways (issue 10): the engine's API over NATS, the feed from a replica.

Real processes throughout: one engine, `hogx gateway` processes in front of it, a NATS server
with JetStream (the `nats_url` fixture), real HTTP and websocket clients. Each test uses a shard
of its own, so streams and subjects never collide, and deletes its stream and bucket afterwards.

The standard instrument: lots of 100 kg, tick 100 VND, reference 60,000 VND/kg, 10 % band.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.nats_bridge import HttpRequest, HttpResponse, run_asgi, serve_api
from benchmarks.cluster import delete_shard

pytestmark = pytest.mark.timeout(120)

LOT_SIZE = 100
TICK = 100
REFERENCE = 60_000
VND = 10**13
LOTS = 10**6
MAX_BODY_BYTES = 64 * 1024

_shard_numbers = itertools.count(1)


# ---------------------------------------------------------------------- processes


@dataclass
class Process:
    """A child process serving HTTP (an engine or a gateway) and how to reach it."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    """Start `command` on a free port (put for "{port}") and wait until /healthz answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [str(port) if part == "{port}" else part for part in command],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[2:4]} exited with {process.returncode}: see {log}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Process(url, process, log)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{command[2:4]} did not become healthy within 30 s: see {log}")


@dataclass
class Cluster:
    """One engine of a shard, gateways in front of it, and the operator's key."""

    nats_url: str
    shard: str
    directory: Path
    operator_key: str
    engine: Process | None = None
    gateways: tuple[Process, ...] = ()

    def start_engine(self) -> Process:
        command = [sys.executable, "-m", "exchange.cli", "serve", "--port", "{port}",
                   "--data-dir", str(self.directory / "engine"), "--nats-url", self.nats_url,
                   "--shard", self.shard]  # fmt: skip
        self.engine = spawn(
            command, self.directory / "engine.log", {"HOGX_OPERATOR_KEY": self.operator_key}
        )
        return self.engine

    def start_gateway(self) -> Process:
        number = len(self.gateways) + 1
        command = [sys.executable, "-m", "exchange.cli", "gateway", "--nats-url", self.nats_url,
                   "--shard", self.shard, "--port", "{port}"]  # fmt: skip
        gateway = spawn(command, self.directory / f"gateway-{number}.log")
        self.gateways = (*self.gateways, gateway)
        return gateway

    def open_market(self, symbol: str, *traders: str) -> list[str]:
        """List `symbol` through the first gateway and fund the named traders; their keys."""
        with self.gateways[0].client(self.operator_key) as operator:
            market = Market(operator)
            market.list_instrument(symbol)
            return [market.trader(name, symbol) for name in traders]

    def stop(self) -> None:
        for process in (*self.gateways, self.engine):
            if process is not None:
                process.stop()


@pytest.fixture
def cluster(nats_url: str, tmp_path: Path) -> Iterator[Cluster]:
    shard = f"t{os.getpid()}-{next(_shard_numbers)}-{secrets.token_hex(3)}"
    running = Cluster(nats_url, shard, tmp_path, secrets.token_urlsafe(32))
    try:
        yield running
    finally:
        running.stop()
        asyncio.run(delete_shard(nats_url, shard))


# ---------------------------------------------------------------------- the market


class Market:
    """Setup over HTTP through any process of the cluster: an instrument and funded traders."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def list_instrument(self, symbol: str) -> None:
        answer = self.http.post(
            "/v1/admin/instruments",
            json={"symbol": symbol, "name": f"Live hogs {symbol}", "kind": "live_hog",
                  "price_unit": "kg", "lot_size": LOT_SIZE, "tick_size": TICK,
                  "reference_price": REFERENCE, "price_band_pct": 10,
                  "attributes": {"grade": "1", "delivery_hub": "Ho Chi Minh City"}},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text

    def trader(self, name: str, symbol: str) -> str:
        answer = self.http.post("/v1/admin/participants", json={"name": name, "role": "trader"})
        assert answer.status_code == 201, answer.text
        participant_id, api_key = answer.json()["participant_id"], answer.json()["api_key"]
        for asset, amount in (("VND", VND), (symbol, LOTS)):
            deposit = self.http.post(
                "/v1/admin/deposits",
                json={"participant_id": participant_id, "asset": asset, "amount": amount},
            )
            assert deposit.status_code == 201, deposit.text
        return str(api_key)


def order(symbol: str, side: str, price: int, quantity: int, **more: Any) -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "type": "limit", "price": price,
            "quantity": quantity, **more}  # fmt: skip


def error_code(answer: httpx.Response) -> str:
    code: str = answer.json()["error"]["code"]
    return code


# Answers differ between two identical requests only where they must: ids, times, sequences.
VOLATILE = {"order_id", "created_at", "sequence", "client_order_id", "trade_id", "time"}


def shape(answer: httpx.Response) -> tuple[int, Any]:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return answer.status_code, strip(answer.json())


# ---------------------------------------------------------------------- forwarding


def test_a_gateway_answers_orders_exactly_as_the_engine_does(cluster: Cluster) -> None:
    engine = cluster.start_engine()
    gateway = cluster.start_gateway()
    symbol = "GW-HOG-1"
    seller, buyer = cluster.open_market(symbol, "seller", "buyer")
    with (
        gateway.client(seller) as via_gateway,
        engine.client(seller) as direct,
        gateway.client(buyer) as buyer_via_gateway,
    ):
        for http in (via_gateway, direct):
            resting = http.post("/v1/orders", json=order(symbol, "sell", 61_000, 2))
            assert resting.status_code == 201, resting.text
        placed = [
            buyer_via_gateway.post("/v1/orders", json=order(symbol, "buy", 61_000, 1)),
            buyer_via_gateway.post("/v1/orders", json=order(symbol, "buy", 61_000, 1)),
        ]
        assert shape(placed[0]) == shape(placed[1])
        assert placed[0].json()["status"] == "filled"
        assert placed[0].headers["content-type"] == "application/json"

        answers = {}
        for name, http in (("gateway", via_gateway), ("engine", direct)):
            mine = http.post("/v1/orders", json=order(symbol, "sell", 62_000, 3))
            cancelled = http.delete(f"/v1/orders/{mine.json()['order_id']}")
            again = http.delete(f"/v1/orders/{mine.json()['order_id']}")
            answers[name] = [
                shape(mine),
                shape(cancelled),
                (again.status_code, error_code(again)),
                shape(http.get("/v1/orders/999999999")),
                shape(http.post("/v1/orders", json={"symbol": symbol, "side": "sideways"})),
                shape(http.post("/v1/orders", content=b"{not json")),
                shape(http.get("/v1/orders", headers={"Authorization": "Bearer nobody"})),
                shape(http.post("/v1/admin/participants", json={"name": "x", "role": "trader"})),
            ]
        assert answers["gateway"] == answers["engine"]
        assert [a[0] for a in answers["gateway"]] == [201, 200, 409, 404, 422, 422, 401, 403]
        book = via_gateway.get(f"/v1/markets/{symbol}/book", params={"depth": 5})
        assert book.json() == direct.get(f"/v1/markets/{symbol}/book", params={"depth": 5}).json()


def test_a_retried_client_order_id_through_a_gateway_returns_the_original(
    cluster: Cluster,
) -> None:
    cluster.start_engine()
    gateway = cluster.start_gateway()
    symbol = "GW-HOG-2"
    (trader,) = cluster.open_market(symbol, "retrier")
    with gateway.client(trader) as http:
        first = http.post("/v1/orders", json=order(symbol, "buy", 59_000, 2, client_order_id="a1"))
        again = http.post("/v1/orders", json=order(symbol, "buy", 59_000, 2, client_order_id="a1"))
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["order_id"] == first.json()["order_id"]


def test_a_body_over_the_limit_is_refused_by_the_gateway_like_the_engine(
    cluster: Cluster,
) -> None:
    engine = cluster.start_engine()
    gateway = cluster.start_gateway()
    huge = b"{" + b" " * MAX_BODY_BYTES + b"}"
    for process in (gateway, engine):
        with process.client("anyone") as http:
            answer = http.post("/v1/orders", content=huge)
            assert (answer.status_code, error_code(answer)) == (413, "PAYLOAD_TOO_LARGE")


def test_with_no_engine_a_gateway_answers_503_engine_unavailable_and_stays_up(
    cluster: Cluster,
) -> None:
    engine = cluster.start_engine()
    gateway = cluster.start_gateway()
    with gateway.client(cluster.operator_key) as http:
        assert http.get("/v1/instruments").status_code == 200
        engine.stop()
        for _ in range(3):
            answer = http.post("/v1/orders", json=order("GW-ANY", "buy", 60_000, 1))
            assert (answer.status_code, error_code(answer)) == (503, "ENGINE_UNAVAILABLE")
            assert "client_order_id" in answer.json()["error"]["message"]
            assert answer.headers["retry-after"] == "1"
        assert gateway.process.poll() is None
        cluster.start_engine()  # a new engine of the shard: the same gateway reaches it
        assert answered_within(http, "/v1/instruments", seconds=5).status_code == 200


def answered_within(http: httpx.Client, path: str, seconds: float) -> httpx.Response:
    """GET `path` until it is not 503 (an engine is answering again), or the time is up."""
    deadline = time.monotonic() + seconds
    while True:
        answer = http.get(path)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


# ---------------------------------------------------------------------- the feed


def ws_url(process: Process) -> str:
    return process.url.replace("http://", "ws://", 1) + "/v1/ws"


class BookFrames:
    """One websocket client's book frames for a symbol, read in the background."""

    def __init__(self, ws: ClientConnection, symbol: str) -> None:
        self.ws = ws
        self.symbol = symbol
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def subscribe(cls, process: Process, symbol: str) -> BookFrames:
        ws = await connect(ws_url(process))
        await ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": symbol}))
        return cls(ws, symbol)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                frame = json.loads(message)
                if frame.get("channel") == "book" or frame.get("type") in ("resync", "error"):
                    self.frames.append(frame)

    async def until(self, sequence: int, timeout: float = 10.0) -> None:
        """Wait until a book frame at or after `sequence` arrived."""
        deadline = time.monotonic() + timeout
        while not any(frame.get("sequence", 0) >= sequence for frame in self.frames):
            assert time.monotonic() < deadline, f"no frame at {sequence}: {self.frames[-3:]}"
            await asyncio.sleep(0.01)

    def book(self) -> tuple[list[list[int]], list[list[int]]]:
        """The snapshot with every update applied, best first: what GET /book says."""
        snapshot, *updates = self.frames
        assert snapshot["type"] == "snapshot", snapshot
        levels = {("buy", p): [p, q, n] for p, q, n in snapshot["bids"]}
        levels |= {("sell", p): [p, q, n] for p, q, n in snapshot["asks"]}
        for update in updates:
            assert update["type"] == "update", update
            for side, price, quantity, orders in update["changes"]:
                if quantity == 0:
                    levels.pop((side, price), None)
                else:
                    levels[(side, price)] = [price, quantity, orders]
        bids = sorted((v for (side, _), v in levels.items() if side == "buy"), reverse=True)
        asks = sorted(v for (side, _), v in levels.items() if side == "sell")
        return bids, asks

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.task, 5)


async def order_flow(
    gateways: tuple[Process, ...], keys: list[str], symbol: str, count: int, seed: int
) -> int:
    """A seeded flow of resting, crossing and cancelled orders, sent concurrently through all
    the gateways (so journal batches hold several commands); returns the last sequence."""
    rng = random.Random(seed)
    clients = [
        httpx.AsyncClient(base_url=g.url, headers={"Authorization": f"Bearer {k}"}, timeout=15)
        for g in gateways
        for k in keys
    ]
    last = 0

    async def one(http: httpx.AsyncClient, side: str, price: int, quantity: int) -> None:
        nonlocal last
        answer = await http.post("/v1/orders", json=order(symbol, side, price, quantity))
        assert answer.status_code == 201, answer.text
        last = max(last, answer.json()["sequence"])
        if answer.json()["status"] == "new" and rng.random() < 0.3:
            cancelled = await http.delete(f"/v1/orders/{answer.json()['order_id']}")
            assert cancelled.status_code in (200, 409), cancelled.text
            last = max(last, cancelled.json().get("sequence", 0))

    try:
        for _ in range(count // 8):
            await asyncio.gather(
                *(
                    one(
                        rng.choice(clients),
                        side := rng.choice(("buy", "sell")),
                        REFERENCE + (-1 if side == "buy" else 1) * TICK * rng.randint(-2, 8),
                        rng.randint(1, 5),
                    )
                    for _ in range(8)
                )
            )
    finally:
        for http in clients:
            await http.aclose()
    return last


def test_websocket_clients_on_two_gateways_see_the_identical_book_updates(
    cluster: Cluster,
) -> None:
    cluster.start_engine()
    first = cluster.start_gateway()
    symbol = "GW-FEED-1"
    keys = cluster.open_market(symbol, "trader-1", "trader-2", "trader-3")
    asyncio.run(order_flow((first,), keys, symbol, count=24, seed=1))
    second = cluster.start_gateway()  # rebuilds its replica from the stream's history

    async def scenario() -> tuple[BookFrames, BookFrames, Any]:
        clients = (
            await BookFrames.subscribe(first, symbol),
            await BookFrames.subscribe(second, symbol),
        )
        for client in clients:
            await client.until(0)  # its snapshot
        last = await order_flow((first, second), keys, symbol, count=96, seed=2)
        for client in clients:
            await client.until(last)
        async with httpx.AsyncClient(base_url=second.url) as http:
            book = (await http.get(f"/v1/markets/{symbol}/book", params={"depth": 1000})).json()
        await asyncio.sleep(0.2)  # anything after `last` would show here: there is nothing
        for client in clients:
            await client.close()
        return clients[0], clients[1], book

    on_first, on_second, book = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert on_first.frames[0]["sequence"] == on_second.frames[0]["sequence"]
    assert len(on_first.frames) > 3  # a snapshot, then updates coalesced per feed window
    assert on_first.frames == on_second.frames
    assert on_first.book() == (book["bids"], book["asks"])
    assert on_first.frames[-1]["sequence"] == book["sequence"]


def test_a_gateway_is_healthy_only_once_its_replica_follows_the_stream(
    cluster: Cluster,
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "gateway", "--nats-url", cluster.nats_url,
         "--shard", cluster.shard, "--port", str(port)],
        cwd=REPO,
        stdout=(cluster.directory / "early-gateway.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    early = Process(f"http://127.0.0.1:{port}", process, cluster.directory / "early-gateway.log")
    cluster.gateways = (early,)
    deadline = time.monotonic() + 20
    while True:  # up, but no stream to follow: no engine ever led this shard
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"{early.url}/healthz")
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (answer.status_code, error_code(answer)) == (503, "UNAVAILABLE")
    cluster.start_engine()
    with early.client() as http:
        assert answered_within(http, "/healthz", seconds=10).status_code == 200


# ---------------------------------------------------------------------- the bridge itself


async def _failing_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("a bug in a route")


def test_a_failure_inside_the_engine_still_gets_an_answer_in_the_error_shape(
    nats_url: str,
) -> None:
    import nats

    from api.nats_bridge import decode_response, encode

    async def scenario() -> HttpResponse:
        nc = await nats.connect(nats_url)
        subject = f"hogx.bridge-{secrets.token_hex(4)}.api"
        served = await serve_api(nc, subject, _failing_app)
        try:
            request = HttpRequest("GET", "/v1/instruments", b"", [], b"")
            reply = await nc.request(subject, encode(request), timeout=5)
            return decode_response(reply.data)
        finally:
            await served.stop()
            await nc.close()

    answer = asyncio.run(scenario())
    assert answer.status == 500
    assert answer.body == b'{"error":{"code":"INTERNAL_ERROR","message":"internal error"}}'


def test_run_asgi_hands_the_app_the_request_and_collects_a_streamed_answer() -> None:
    seen: dict[str, Any] = {}

    async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["body"] = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/csv")]})  # fmt: skip
        for part in (b"a,b\n", b"1,2\n"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    request = HttpRequest(
        "POST", "/v1/x", b"q=1", [(b"authorization", b"Bearer k")], b"{}", "10.0.0.7"
    )
    answer = asyncio.run(run_asgi(streaming_app, request))
    assert answer == HttpResponse(200, [(b"content-type", b"text/csv")], b"a,b\n1,2\n")
    scope = seen["scope"]
    assert (scope["method"], scope["path"], scope["query_string"]) == ("POST", "/v1/x", b"q=1")
    assert scope["headers"] == [(b"authorization", b"Bearer k")]
    assert scope["client"] == ("10.0.0.7", 0)
    assert seen["body"] == b"{}"


def test_an_answer_larger_than_a_nats_message_reaches_the_gateway_whole_in_parts(
    nats_url: str,
) -> None:
    """An audit export of a long day is larger than one NATS message: it travels in parts."""
    import nats

    from api.nats_bridge import PARTS_HEADER, ask_engine, encode

    body = random.Random(7).randbytes(3 * 1024 * 1024 + 17)

    async def large_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/csv")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def scenario() -> tuple[HttpResponse, int, bytes]:
        nc = await nats.connect(nats_url)
        subject = f"hogx.bridge-{secrets.token_hex(4)}.api"
        served = await serve_api(nc, subject, large_app)
        try:
            request = HttpRequest("GET", "/v1/audit/export", b"", [], b"")
            answer = await ask_engine(nc, subject, request, 10)
            first = await nc.request(subject, encode(request), timeout=10)
            parts = int((first.headers or {})[PARTS_HEADER])
            # Asking for a part nobody parked gets an empty answer, never someone else's data.
            parts_subject = (first.headers or {})["Hogx-Parts-Subject"]
            unknown = await nc.request(parts_subject, b"no-such-answer 1", timeout=5)
            return answer, parts, unknown.data
        finally:
            await served.stop()
            await nc.close()

    answer, parts, unknown = asyncio.run(scenario())
    assert answer.status == 200
    assert answer.body == body
    assert parts >= 4  # NATS carries at most 1 MiB per message by default
    assert unknown == b""


def test_a_stopped_gateway_ends_its_followers_before_it_closes_nats(cluster: Cluster) -> None:
    cluster.start_engine()
    gateway = cluster.start_gateway()
    cluster.open_market("HEO-STOP", "farmer")
    said_before_stop = len(gateway.log.read_bytes())
    gateway.stop()
    said_at_stop = gateway.log.read_bytes()[said_before_stop:].decode(errors="replace")
    assert gateway.process.returncode in (0, -signal.SIGTERM), said_at_stop  # uvicorn re-raises
    # A follower still running when NATS closes fails on the closed connection and says so, or
    # is destroyed unfinished at exit. A clean stop says nothing of the kind.
    for complaint in ("following shard", "Task was destroyed", "Traceback"):
        assert complaint not in said_at_stop, said_at_stop
