"""Websocket fan-out: N subscribers on one instrument's book while orders flow.

    python -m benchmarks.feed [--subscribers 100 1000] [--seconds 10] [--orders-per-second 320]

Starts `hogx serve`, lists an instrument, funds traders, connects N websocket subscribers to the
`book` channel (all in one separate process), and drives a seeded order flow over HTTP from a
third process at a steady rate. Both clients are lean on purpose (raw sockets, frames cut out
of the byte stream, raw keep-alive HTTP): on a 2-core machine they share the cores with the
server, and a client library costing a core would measure the client. Each subscriber counts
the book level updates it receives (every change inside every coalesced frame) and the delay
from the core's time for the last event in the frame (`time_ns`) to the frame's arrival.
Prints, per N: level-update deliveries per second over all subscribers, frames per second,
the updates per second one subscriber saw, p50/p99 delay, and resyncs (a subscriber that
fell behind; 0 means every subscriber got every update). Figures are medians over `--runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import itertools
import json
import multiprocessing
import random
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.api import ORDER_ID, Connection, free_port, prepare_market, start_server

SYMBOL = "HOG-G1-HCM"


UPGRADE = (
    "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
TIME_NS = re.compile(rb'"time_ns":(\d+)')
SEQUENCE = re.compile(rb'"sequence":(\d+)')


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.3); payloads here are short."""
    assert len(payload) < 126
    mask = secrets.token_bytes(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


class Subscriber(asyncio.Protocol):
    """One monitor, as lean as a client can be so that a thousand fit on one core: a raw
    websocket over a socket, frames cut out of the byte stream by their headers, and only two
    numbers read from each book update (its sequence and core time). The number of level
    changes in an update is the same for every subscriber: `Tally` parses each update once."""

    def __init__(self, port: int, tally: Tally, opened: asyncio.Future[None]) -> None:
        self.port, self.tally, self.opened = port, tally, opened
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        transport.write(UPGRADE.format(port=self.port, key=key).encode())

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            assert buffer.startswith(b"HTTP/1.1 101"), bytes(buffer[:80])
            del buffer[: end + 4]
            self.upgraded = True
            subscribe = {"op": "subscribe", "channel": "book", "symbol": SYMBOL}
            self.transport.write(client_frame(0x1, json.dumps(subscribe).encode()))
            self.opened.set_result(None)
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                length, start = int.from_bytes(buffer[start : start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(buffer[start : start + 8], "big"), start + 8
            if start + length > size:
                break
            if opcode == 0x1:
                self.tally.frame(bytes(buffer[start : start + length]))
            elif opcode == 0x9 and self.transport is not None:  # ping: answer, or be dropped
                self.transport.write(client_frame(0xA, bytes(buffer[start : start + length])))
            offset = start + length
        del buffer[:offset]


class Tally:
    """Counts for all subscribers of the process: updates, frames and delays."""

    def __init__(self, start_ns: int, stop_ns: int) -> None:
        self.start_ns, self.stop_ns = start_ns, stop_ns
        self.changes: dict[bytes, int] = {}  # update sequence -> its level changes
        self.updates = self.frames = self.resyncs = 0
        self.delays: list[int] = []

    def frame(self, payload: bytes) -> None:
        received_ns = time.time_ns()
        if b'"type":"resync"' in payload:
            self.resyncs += 1  # it fell behind: it did not get every update
        if not self.start_ns <= received_ns < self.stop_ns or b'"type":"update"' not in payload:
            return
        sequence = SEQUENCE.search(payload)
        core_time = TIME_NS.search(payload)
        assert sequence is not None and core_time is not None, payload[:200]
        changes = self.changes.get(sequence.group(1))
        if changes is None:
            changes = self.changes[sequence.group(1)] = len(json.loads(payload)["changes"])
        self.frames += 1
        self.updates += changes
        self.delays.append(received_ns - int(core_time.group(1)))


def subscribers_process(port: int, count: int, seconds: float, warmup: float, queue: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> tuple[int, int, list[int], int, int]:
        loop = asyncio.get_running_loop()
        tally = Tally(0, 0)
        connections = []
        for _ in range(count):
            opened: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                functools.partial(Subscriber, port, tally, opened), "127.0.0.1", port
            )
            await asyncio.wait_for(opened, 60)
            connections.append(transport)
        tally.start_ns = time.time_ns() + int(warmup * 1e9)
        tally.stop_ns = tally.start_ns + int(seconds * 1e9)
        await asyncio.sleep(warmup + seconds)
        for transport in connections:
            transport.abort()
        return tally.updates, tally.frames, tally.delays, len(connections), tally.resyncs

    queue.put(asyncio.run(main()))


FLOW_CONNECTIONS = 8


def order_flow_process(port: int, keys: list[str], rate: float, seconds: float) -> None:
    """Orders at a steady `rate` over a few raw keep-alive HTTP connections (the API
    benchmark's lean client: an HTTP library would take a core of its own at these rates),
    paced by the clock; each connection sends its share without waiting on the others."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def worker(index: int, started: float) -> None:
        rng = random.Random(7 + index)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connection = Connection(reader, writer)
        open_orders: list[tuple[str, str]] = []
        share = rate / FLOW_CONNECTIONS
        for n in itertools.count():
            due = started + (n + index / FLOW_CONNECTIONS) / share
            if due - started > seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if open_orders and rng.random() < 0.3:
                owner, order_id = open_orders.pop(rng.randrange(len(open_orders)))
                await connection.request("DELETE", f"/v1/orders/{order_id}", owner)
                continue
            key = keys[rng.randrange(len(keys))]
            side = "buy" if rng.random() < 0.5 else "sell"
            offset = rng.randint(-2, 20) * 100
            price = 60_000 - offset if side == "buy" else 60_000 + offset
            body = json.dumps(
                {"symbol": SYMBOL, "side": side, "price": price, "quantity": rng.randint(1, 10)}
            ).encode()
            status, answer = await connection.request("POST", "/v1/orders", key, body)
            if status == 201 and b'"status":"new"' in answer:
                found = ORDER_ID.search(answer)
                if found is not None:
                    open_orders.append((key, found.group(1).decode()))
        writer.close()

    async def main() -> None:
        started = time.monotonic()
        await asyncio.gather(*(worker(i, started) for i in range(FLOW_CONNECTIONS)))

    asyncio.run(main())


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
    updates, frames, delays, connected, resyncs = results
    delays.sort()

    def percentile_ms(q: float) -> float:
        return delays[min(len(delays) - 1, int(q * len(delays)))] / 1e6 if delays else float("nan")

    return {
        "subscribers": connected,
        "resyncs": resyncs,
        "update_deliveries_per_second": updates / seconds,
        "frames_per_second": frames / seconds,
        "updates_per_second_per_subscriber": updates / seconds / max(connected, 1),
        "p50_delay_ms": percentile_ms(0.5),
        "p99_delay_ms": percentile_ms(0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feed", description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--orders-per-second", type=float, default=320.0)
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
                f"{figures['p50_delay_ms']:.1f} ms, p99 {figures['p99_delay_ms']:.1f} ms, "
                f"resyncs {figures['resyncs']:.0f}"
            )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
