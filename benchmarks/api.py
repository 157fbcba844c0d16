"""Order entry over HTTP: sustained orders per second and latency through a real server.

    python -m benchmarks.api [--connections 64] [--seconds 10] [--runs 3] [--json]

Starts `hogx serve` (durable journal with fsync, the embedded default) on a fresh data
directory, registers and funds traders over HTTP, then drives it from a separate load-generator
process: raw asyncio sockets (uvloop), HTTP/1.1 keep-alive, one request in flight per
connection, a seeded mix of 70% place (passive and crossing limit orders), 20% cancel and 10%
amend of the connection's own open orders. Prints requests per second sustained over the
measured window, p50/p99/p99.9 latency, and errors (transport failures and 5xx; business
answers such as 409 for an order that filled meanwhile are counted apart). Medians of `--runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ("HOG-G1-HCM", "HOG-G2-HCM")
REFERENCE = {"HOG-G1-HCM": 60_000, "HOG-G2-HCM": 56_000}
ORDER_ID = re.compile(rb'"order_id":"(\d+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(data_dir: Path, port: int, operator_key: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "serve", "--port", str(port),
         "--data-dir", str(data_dir), "--rate-limit", "0"],
        cwd=REPO,
        env={**os.environ, "HOGX_OPERATOR_KEY": operator_key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the server did not start")


def prepare_market(url: str, operator_key: str, traders: int) -> list[str]:
    """List two hog instruments, register and fund `traders` traders; returns their keys."""
    keys = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {operator_key}"}) as http:
        for symbol in SYMBOLS:
            http.post(
                "/v1/admin/instruments",
                json={"symbol": symbol, "name": symbol, "kind": "live_hog", "lot_size": 1_000,
                      "tick_size": 100, "reference_price": REFERENCE[symbol],
                      "maker_fee_bps": 2, "taker_fee_bps": 5},
            ).raise_for_status()  # fmt: skip
        for n in range(traders):
            answer = http.post("/v1/admin/participants", json={"name": f"t{n}", "role": "trader"})
            answer.raise_for_status()
            participant = answer.json()
            for asset, amount in [("VND", 10**14), *((s, 10**7) for s in SYMBOLS)]:
                http.post(
                    "/v1/admin/deposits",
                    json={"participant_id": participant["participant_id"], "asset": asset,
                          "amount": amount},
                ).raise_for_status()  # fmt: skip
            keys.append(participant["api_key"])
    return keys


# ---------------------------------------------------------------------- the load generator


class Connection:
    """One keep-alive HTTP/1.1 connection with one request in flight."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(
        self, method: str, path: str, key: str, body: bytes = b""
    ) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


async def drive(
    port: int, key: str, seed: int, stop_at: float, measure_from: float, out: list[Any]
) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = Connection(reader, writer)
    open_orders: list[str] = []
    latencies: list[int] = []
    ok = business = errors = 0
    while time.monotonic() < stop_at:
        roll = rng.random()
        symbol = SYMBOLS[rng.randrange(2)]
        if roll < 0.2 and open_orders:
            order_id = open_orders.pop(rng.randrange(len(open_orders)))
            method, path, body = "DELETE", f"/v1/orders/{order_id}", b""
        elif roll < 0.3 and open_orders:
            order_id = open_orders[rng.randrange(len(open_orders))]
            method, path = "PATCH", f"/v1/orders/{order_id}"
            body = json.dumps({"quantity": rng.randint(1, 20)}).encode()
        else:
            side = "buy" if rng.random() < 0.5 else "sell"
            ticks = rng.randint(-2, 15)  # mostly passive, sometimes crossing
            offset = ticks * 100
            price = REFERENCE[symbol] - offset if side == "buy" else REFERENCE[symbol] + offset
            method, path = "POST", "/v1/orders"
            body = json.dumps(
                {"symbol": symbol, "side": side, "type": "limit", "price": price,
                 "quantity": rng.randint(1, 10)}
            ).encode()  # fmt: skip
        started = time.perf_counter_ns()
        try:
            status, answer = await connection.request(method, path, key, body)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            connection = Connection(reader, writer)
            continue
        elapsed = time.perf_counter_ns() - started
        if method == "POST" and status == 201:
            match = ORDER_ID.search(answer)
            still_open = b'"status":"new"' in answer or b'"status":"partially_filled"' in answer
            if match and still_open:
                open_orders.append(match.group(1).decode())
        if time.monotonic() < measure_from:
            continue
        latencies.append(elapsed)
        if status >= 500:
            errors += 1
        elif status >= 400:
            business += 1
        else:
            ok += 1
    writer.close()
    out.append((latencies, ok, business, errors))


def load_process(
    port: int, keys: list[str], connections: int, warmup: float, seconds: float, queue: Any
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> list[Any]:
        now = time.monotonic()
        out: list[Any] = []
        await asyncio.gather(
            *(
                drive(port, keys[i % len(keys)], i, now + warmup + seconds, now + warmup, out)
                for i in range(connections)
            )
        )
        return out

    queue.put(asyncio.run(main()))


def one_run(connections: int, seconds: float, warmup: float, traders: int) -> dict[str, Any]:
    port, operator_key = free_port(), secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="hogx-api-bench-", dir=".") as directory:
        server = start_server(Path(directory), port, operator_key)
        try:
            keys = prepare_market(f"http://127.0.0.1:{port}", operator_key, traders)
            queue: Any = multiprocessing.get_context("spawn").Queue()
            generator = multiprocessing.get_context("spawn").Process(
                target=load_process, args=(port, keys, connections, warmup, seconds, queue)
            )
            generator.start()
            results = queue.get(timeout=warmup + seconds + 120)
            generator.join(timeout=30)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    latencies = sorted(ns for part in results for ns in part[0])
    ok = sum(part[1] for part in results)
    business = sum(part[2] for part in results)
    errors = sum(part[3] for part in results)

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6 if latencies else 0

    return {
        "requests_per_second": len(latencies) / seconds,
        "ok": ok,
        "business_rejections": business,
        "errors": errors,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "p999_ms": percentile(0.999),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api", description=__doc__)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--traders", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs = []
    for run in range(args.runs):
        result = one_run(args.connections, args.seconds, args.warmup, args.traders)
        runs.append(result)
        if not args.json:
            print(
                f"  run {run + 1}: {result['requests_per_second']:,.0f} orders/s, "
                f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                f"errors {result['errors']}, business rejections {result['business_rejections']}"
            )
    figures = {
        key: statistics.median(r[key] for r in runs)
        for key in ("requests_per_second", "p50_ms", "p99_ms", "p999_ms")
    }
    figures["errors"] = sum(r["errors"] for r in runs)
    figures["connections"] = args.connections
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"order entry (median of {args.runs}): {figures['requests_per_second']:,.0f} "
            f"orders/s sustained, p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"p99.9 {figures['p999_ms']:.1f} ms, errors {figures['errors']} "
            f"({args.connections} keep-alive connections)"
        )
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
