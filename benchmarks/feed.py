"""Websocket fan-out: N subscribers on one instrument's book while orders flow.

    python -m benchmarks.feed [--subscribers 100 1000] [--seconds 10] [--orders-per-second 150]

Starts `hogx serve`, lists an instrument, funds traders, connects N websocket subscribers to the
`book` channel (from a separate process), and drives a seeded order flow over HTTP from a
third process at a steady rate. Each subscriber counts the book level updates it receives
(every change inside every coalesced frame) and the delay from the core's time for the last
event in the frame (`time_ns`) to the frame's arrival. Prints, per N: level-update deliveries
per second over all subscribers, frames per second, the updates per second one subscriber saw,
and p50/p99 delay. Figures are medians over `--runs` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api import free_port, prepare_market, start_server

SYMBOL = "HOG-G1-HCM"


def subscribers_process(port: int, count: int, seconds: float, warmup: float, queue: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import websockets

    async def one(results: list[Any], start_at: float, stop_at: float) -> None:
        updates = frames = 0
        delays: list[int] = []
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/v1/ws", compression=None, max_queue=None, open_timeout=60
        ) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": "book", "symbol": SYMBOL}))
            while True:
                remaining = stop_at - time.time()
                if remaining <= 0:
                    break
                try:
                    raw = await asyncio.wait_for(ws.recv(), remaining)
                except TimeoutError:
                    break
                received_ns = time.time_ns()
                message = json.loads(raw)
                if message.get("type") != "update" or received_ns < start_at * 1e9:
                    continue
                frames += 1
                updates += len(message["changes"])
                delays.append(received_ns - message["time_ns"])
        results.append((updates, frames, delays))

    async def main() -> list[Any]:
        results: list[Any] = []
        connected = time.time()
        start_at = connected + warmup
        tasks = [one(results, start_at, start_at + seconds) for _ in range(count)]
        await asyncio.gather(*tasks)
        return results

    queue.put(asyncio.run(main()))


def order_flow_process(port: int, keys: list[str], rate: float, seconds: float) -> None:
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    interval = 1.0 / rate
    next_at = time.monotonic()
    open_orders: list[tuple[str, str]] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        while time.monotonic() < deadline:
            key = keys[rng.randrange(len(keys))]
            headers = {"Authorization": f"Bearer {key}"}
            if open_orders and rng.random() < 0.3:
                owner, order_id = open_orders.pop(rng.randrange(len(open_orders)))
                http.delete(f"/v1/orders/{order_id}", headers={"Authorization": f"Bearer {owner}"})
            else:
                side = "buy" if rng.random() < 0.5 else "sell"
                offset = rng.randint(-2, 20) * 100
                price = 60_000 - offset if side == "buy" else 60_000 + offset
                answer = http.post(
                    "/v1/orders",
                    headers=headers,
                    json={"symbol": SYMBOL, "side": side, "price": price,
                          "quantity": rng.randint(1, 10)},
                )  # fmt: skip
                if answer.status_code == 201 and answer.json()["status"] == "new":
                    open_orders.append((key, answer.json()["order_id"]))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


def one_run(subscribers: int, seconds: float, rate: float, warmup: float) -> dict[str, Any]:
    port, operator_key = free_port(), secrets.token_urlsafe(32)
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hogx-feed-bench-", dir=".") as directory:
        server = start_server(Path(directory), port, operator_key)
        try:
            keys = prepare_market(f"http://127.0.0.1:{port}", operator_key, traders=8)
            queue: Any = context.Queue()
            clients = context.Process(
                target=subscribers_process, args=(port, subscribers, seconds, warmup, queue)
            )
            clients.start()
            flow = context.Process(
                target=order_flow_process, args=(port, keys, rate, warmup + seconds + 1)
            )
            flow.start()
            results = queue.get(timeout=warmup + seconds + 300)
            clients.join(timeout=30)
            flow.join(timeout=60)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    updates = sum(r[0] for r in results)
    frames = sum(r[1] for r in results)
    delays = sorted(d for r in results for d in r[2])

    def percentile_ms(q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))] / 1e6 if delays else float("nan")

    return {
        "subscribers": len(results),
        "update_deliveries_per_second": updates / seconds,
        "frames_per_second": frames / seconds,
        "updates_per_second_per_subscriber": updates / seconds / max(len(results), 1),
        "p50_delay_ms": percentile_ms(0.5),
        "p99_delay_ms": percentile_ms(0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feed", description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--orders-per-second", type=float, default=150.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = []
    for count in args.subscribers:
        runs = [
            one_run(count, args.seconds, args.orders_per_second, args.warmup)
            for _ in range(args.runs)
        ]
        figures = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        report.append(figures)
        if not args.json:
            print(
                f"{count:>5} subscribers: {figures['update_deliveries_per_second']:,.0f} level "
                f"updates delivered/s ({figures['updates_per_second_per_subscriber']:,.0f} per "
                f"subscriber), {figures['frames_per_second']:,.0f} frames/s, delay p50 "
                f"{figures['p50_delay_ms']:.1f} ms, p99 {figures['p99_delay_ms']:.1f} ms"
            )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
