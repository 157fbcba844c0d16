"""The cluster: order entry and the feed through stateless gateways, and failover.

    python -m benchmarks.cluster [--nats-url URL] [--seconds 8] [--runs 3] [--json]

Needs a NATS server with JetStream (`--nats-url`, default nats://127.0.0.1:4222). Every run
starts its own processes on a shard of its own and deletes the shard's stream (and snapshot
bucket) afterwards.

- Order entry: one engine node (`hogx serve --nats-url`, rate limit off) and one, then two,
  `hogx gateway` processes. The API benchmark's load generator (`benchmarks.api`: raw
  keep-alive HTTP/1.1, one request in flight per connection, a seeded 70/20/10 mix of place,
  cancel and amend) spreads its connections evenly over the gateways, so every order goes
  gateway -> NATS -> engine -> NATS -> gateway. Orders/s sustained and p50/p99 latency.
- Feed capacity: N subscribers to one book (the feed benchmark's lean clients, one process per
  gateway) split evenly over one, then two gateways, while orders arrive at the engine at a
  steady rate (directly, so the gateways spend their time on the feed). Level updates delivered
  per second over all subscribers, p50/p99 delay from the core's time, resyncs (0: everyone got
  everything). With more gateways each serves fewer subscribers from its own replica.
- Failover: a leader and a standby engine node of one shard, one gateway, and clients placing
  orders through it without pause (an order unanswered for 0.5 s is sent again with its
  client_order_id, as a careful client does: what the dead leader held is never answered);
  the leader is killed (SIGKILL: no lease given back, the standby waits for it to expire).
  Figure: from the kill to the first order acknowledged that was sent after it, i.e.
  answered by the new leader.

Figures are medians over `--runs`. On a small machine all processes share its cores, the load
generators included: compare the one- and two-gateway figures of one run of this command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.api import Connection, drive, free_port, prepare_market
from benchmarks.feed import SYMBOL, order_flow_process, subscribers_process

REPO = Path(__file__).resolve().parent.parent
STARTUP_S = 60.0
FAILOVER_CLIENTS = 4  # orders in flight at once
CLIENT_TIMEOUT_S = 0.5  # a failover client's patience before it sends an order again
FAILOVER_LIMIT_S = 30.0


# ---------------------------------------------------------------------- processes


def spawn(
    arguments: list[str], port: int, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", *arguments, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_until(port: int, healthy: bool, process: subprocess.Popen[bytes]) -> None:
    """Until /healthz answers 200 (`healthy`), or answers at all (a standby answers 503)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a process of the cluster exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
            if status == 200 or not healthy:
                return
        time.sleep(0.05)
    raise SystemExit(f"the process on port {port} did not start within {STARTUP_S:g} s")


@dataclass
class Cluster:
    """The processes of one run: engine nodes and gateways of one shard."""

    nats_url: str
    shard: str
    directory: Path
    operator_key: str
    engines: list[tuple[int, subprocess.Popen[bytes]]]
    gateways: list[tuple[int, subprocess.Popen[bytes]]]

    def start_engine(self, healthy: bool = True) -> int:
        port, number = free_port(), len(self.engines) + 1
        data_dir = str(self.directory / f"engine-{number}")
        arguments = ["serve", "--data-dir", data_dir, "--rate-limit", "0",
                     "--nats-url", self.nats_url, "--shard", self.shard]  # fmt: skip
        process = spawn(
            arguments,
            port,
            self.directory / f"engine-{number}.log",
            {"HOGX_OPERATOR_KEY": self.operator_key},
        )
        self.engines.append((port, process))
        wait_until(port, healthy, process)
        return port

    def start_gateway(self) -> int:
        port, number = free_port(), len(self.gateways) + 1
        arguments = ["gateway", "--nats-url", self.nats_url, "--shard", self.shard]
        process = spawn(arguments, port, self.directory / f"gateway-{number}.log", {})
        self.gateways.append((port, process))
        wait_until(port, True, process)
        return port

    def stop(self) -> None:
        for _, process in (*self.gateways, *self.engines):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in (*self.gateways, *self.engines):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def cluster(nats_url: str) -> Iterator[Cluster]:
    shard = f"bench-{os.getpid()}-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="hogx-cluster-bench-", dir=".") as directory:
        running = Cluster(nats_url, shard, Path(directory), secrets.token_urlsafe(32), [], [])
        try:
            yield running
        finally:
            running.stop()
            asyncio.run(delete_shard(nats_url, shard))


async def delete_shard(nats_url: str, shard: str) -> None:
    """Delete what a shard leaves in NATS: its stream and its snapshot bucket."""
    import nats
    from nats.js.errors import NotFoundError

    from exchange.jetstream import stream_name
    from exchange.snapshot_store import bucket_name

    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(stream_name(shard))
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_object_store(bucket_name(shard))
    finally:
        await nc.close()


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1e6


# ---------------------------------------------------------------------- order entry


def order_load_process(
    ports: list[int], keys: list[str], connections: int, warmup: float, seconds: float, queue: Any
) -> None:
    """`benchmarks.api`'s load generator, its connections dealt round-robin over `ports`."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> list[Any]:
        now = time.monotonic()
        out: list[Any] = []
        stop_at, measure_from = now + warmup + seconds, now + warmup
        await asyncio.gather(
            *(
                drive(ports[i % len(ports)], keys[i % len(keys)], i, stop_at, measure_from, out)
                for i in range(connections)
            )
        )
        return out

    queue.put(asyncio.run(main()))


def order_entry_run(nats_url: str, gateways: int, args: argparse.Namespace) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with cluster(nats_url) as running:
        running.start_engine()
        ports = [running.start_gateway() for _ in range(gateways)]
        keys = prepare_market(f"http://127.0.0.1:{ports[0]}", running.operator_key, args.traders)
        queue: Any = context.Queue()
        load = context.Process(
            target=order_load_process,
            args=(ports, keys, args.connections, args.warmup, args.seconds, queue),
        )
        load.start()
        results = queue.get(timeout=args.warmup + args.seconds + 120)
        load.join(timeout=30)
    latencies = sorted(ns for part in results for ns in part[0])
    return {
        "orders_per_second": len(latencies) / args.seconds,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "errors": sum(part[3] for part in results),
    }


# ---------------------------------------------------------------------- feed capacity


def feed_run(nats_url: str, gateways: int, args: argparse.Namespace) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    seconds, warmup = args.seconds, args.warmup
    with cluster(nats_url) as running:
        engine = running.start_engine()
        ports = [running.start_gateway() for _ in range(gateways)]
        keys = prepare_market(f"http://127.0.0.1:{engine}", running.operator_key, traders=8)
        queue: Any = context.Queue()
        share, extra = divmod(args.subscribers, gateways)
        shares = [share + (i < extra) for i in range(gateways)]
        clients = [
            context.Process(target=subscribers_process, args=(port, share, seconds, warmup, queue))
            for port, share in zip(ports, shares, strict=True)
        ]
        for process in clients:
            process.start()
        flow = context.Process(
            target=order_flow_process,
            args=(engine, keys, args.orders_per_second, warmup + seconds + 1),
        )
        flow.start()
        results = [queue.get(timeout=warmup + seconds + 300) for _ in clients]
        for process in clients:
            process.join(timeout=30)
        flow.join(timeout=60)
    delays = sorted(delay for part in results for delay in part[2])
    connected = sum(part[3] for part in results)
    updates = sum(part[0] for part in results)
    return {
        "subscribers": connected,
        "update_deliveries_per_second": updates / seconds,
        "updates_per_second_per_subscriber": updates / seconds / max(connected, 1),
        "p50_delay_ms": percentile(delays, 0.5),
        "p99_delay_ms": percentile(delays, 0.99),
        "resyncs": sum(part[4] for part in results),
    }


# ---------------------------------------------------------------------- failover


async def place_until_stopped(
    port: int, key: str, number: int, killed: list[float], acks: list[float], stop: asyncio.Event
) -> None:
    """Place small resting orders back to back, as a careful client does: an order without an
    answer in `CLIENT_TIMEOUT_S` is sent again with the same client_order_id (so it is never
    placed twice). Notes when an order sent after the kill is acknowledged."""
    ids = itertools.count()
    connection: Connection | None = None
    body = b""
    while not stop.is_set():
        if not body:
            body = json.dumps(
                {"symbol": SYMBOL, "side": "buy", "type": "limit", "price": 59_000,
                 "quantity": 1, "client_order_id": f"f{number}-{next(ids)}"}
            ).encode()  # fmt: skip
        if connection is None:
            connection = Connection(*await asyncio.open_connection("127.0.0.1", port))
        sent = time.monotonic()
        try:
            request = connection.request("POST", "/v1/orders", key, body)
            status, _ = await asyncio.wait_for(request, CLIENT_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            connection.writer.close()
            connection = None
            continue
        if status in (200, 201):  # 200: the original answer to a retried client_order_id
            body = b""
            if killed and sent > killed[0]:
                acks.append(time.monotonic())
                stop.set()
        elif status == 503:
            await asyncio.sleep(0.005)  # no leader yet: ask again soon, without spinning


async def measure_failover(gateway: int, key: str, leader: subprocess.Popen[bytes]) -> float:
    killed: list[float] = []
    acks: list[float] = []
    stop = asyncio.Event()
    clients = [
        asyncio.create_task(place_until_stopped(gateway, key, n, killed, acks, stop))
        for n in range(FAILOVER_CLIENTS)
    ]
    await asyncio.sleep(1.0)  # orders flowing through the leader
    killed.append(time.monotonic())
    leader.send_signal(signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), FAILOVER_LIMIT_S)
    stop.set()
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return acks[0] - killed[0] if acks else float("inf")


def failover_run(nats_url: str) -> dict[str, Any]:
    with cluster(nats_url) as running:
        running.start_engine()  # the first node takes the lease
        running.start_engine(healthy=False)  # the standby follows the stream
        gateway = running.start_gateway()
        (key,) = prepare_market(f"http://127.0.0.1:{gateway}", running.operator_key, traders=1)
        _, leader = running.engines[0]
        seconds = asyncio.run(measure_failover(gateway, key, leader))
    return {"failover_s": seconds}


# ---------------------------------------------------------------------- report


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument(
        "--nats-url", default=os.environ.get("HOGX_NATS_URL") or "nats://127.0.0.1:4222"
    )
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--traders", type=int, default=16)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--orders-per-second", type=float, default=320.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["orders", "feed", "failover"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda *_: None) if args.json else print
    report: dict[str, Any] = {"orders": {}, "feed": {}}
    for gateways in args.gateways:
        if "orders" not in args.skip:
            runs = [order_entry_run(args.nats_url, gateways, args) for _ in range(args.runs)]
            figures = report["orders"][gateways] = medians(runs)
            say(
                f"order entry, {gateways} gateway(s): {figures['orders_per_second']:,.0f} "
                f"orders/s, p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                f"errors {figures['errors']:.0f} ({args.connections} connections)"
            )
        if "feed" not in args.skip:
            runs = [feed_run(args.nats_url, gateways, args) for _ in range(args.runs)]
            figures = report["feed"][gateways] = medians(runs)
            say(
                f"feed, {gateways} gateway(s), {figures['subscribers']:.0f} subscribers: "
                f"{figures['update_deliveries_per_second']:,.0f} level updates delivered/s "
                f"({figures['updates_per_second_per_subscriber']:,.1f} per subscriber), delay "
                f"p50 {figures['p50_delay_ms']:.1f} ms, p99 {figures['p99_delay_ms']:.1f} ms, "
                f"resyncs {figures['resyncs']:.0f}"
            )
    if "failover" not in args.skip:
        runs = [failover_run(args.nats_url) for _ in range(args.runs)]
        report["failover"] = medians(runs) | {"runs_s": [run["failover_s"] for run in runs]}
        say(
            f"failover (leader killed -> first order acknowledged by the standby): "
            f"{report['failover']['failover_s']:.2f} s (runs: "
            f"{', '.join(f'{s:.2f}' for s in report['failover']['runs_s'])})"
        )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
