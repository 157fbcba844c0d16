"""The hogx HTTP application: the exchange runs inside it, one process, one event loop.

`create_app(settings)` wires the routes to an `Exchange` that starts with the app (recovering
from the data directory) and stops with it (finishing the batch in flight, writing a snapshot).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI
from nats.aio.subscription import Subscription
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_admin, routes_audit, routes_market, routes_trading, routes_web, ws
from api.auth import RateLimiter, hash_key
from api.errors import error_response, install_error_handlers
from api.fastpath import OrderEntryFastPath
from api.nats_bridge import ServedApi, serve_api
from api.routes_rules import router as rules_router
from api.routes_surveillance import router as surveillance_router
from api.schemas import MAX_BODY_BYTES, HealthOut
from api.ws import flush_forever
from clearing.ledger import Ledger, default_database_url
from exchange import commands as c
from exchange.cancellation import cancel_and_wait
from exchange.cluster import ClusterConfig
from exchange.collector import collecting_seldom, keep_for_good, paused
from exchange.command_service import serve_commands, stop_serving
from exchange.demo import demo_participants, order_flow, setup_commands
from exchange.events import CommandRejected
from exchange.feed import FeedHub
from exchange.heads import DailyHeads, publish_forever
from exchange.jetstream import api_subject
from exchange.ledger_process import LedgerProcess
from exchange.participants import Role
from exchange.scheduler import Scheduler
from exchange.sequencer import Exchange
from exchange.snapshots import journal_dir
from exchange.surveillance_config import SurveillanceConfig
from exchange.timetravel import BookHistory

DEMO_KEYS_FILE = "demo-keys.json"
DEMO_ORDERS = 120


class Settings(msgspec.Struct, frozen=True):
    data_dir: Path = Path("./var")
    demo: bool = False
    operator_key: str | None = None
    rate_per_second: float = 2_000.0
    rate_burst: float = 4_000.0
    database_url: str | None = None  # the clearing ledger; SQLite in data_dir when None
    fsync: bool = True
    quiet: bool = False
    feed_window_s: float = 0.025
    surveillance: SurveillanceConfig = msgspec.field(default_factory=SurveillanceConfig)
    cluster: ClusterConfig | None = None  # the journal on JetStream; local files when None


class BodyLimit:
    """Refuses request bodies over `MAX_BODY_BYTES` with 413, whether announced or streamed.

    The body is read (up to the limit) before the app sees the request, so every route gets
    the same answer however it parses its body. Bodies are small: buffering costs nothing.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = error_response(413, "PAYLOAD_TOO_LARGE", f"the body is over {self.limit} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A `receive` that hands out `messages` first, then defers to `then` (disconnects)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


def create_app(settings: Settings) -> FastAPI:
    exchange = Exchange(settings.data_dir, fsync=settings.fsync, cluster=settings.cluster)
    hub = FeedHub(lambda: exchange.core, lambda: exchange.market_data)
    exchange.subscribe(hub.on_results)
    # The ledger is written by a process of its own (`exchange.ledger_process`); this one only
    # reads it (statements, fills). It connects lazily: trading goes on while it is down.
    database_url = settings.database_url or default_database_url(settings.data_dir)
    ledger = Ledger(database_url)
    ledger_process = LedgerProcess(settings.data_dir, database_url)
    book_history = BookHistory(settings.data_dir)  # past books for regulators, by replay
    daily_heads = DailyHeads(settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The collector stays paused from the replay to keep_for_good, which collects once and
        # freezes. A replay leaves all it built in the young generation: the first automatic
        # collection after it would walk all of that once more before keep_for_good does
        # (0.16 s after replaying the 200,103 records of benchmarks.core, on 2026-12-07).
        # Embedded only: a cluster node's start waits on NATS, retried for as long as it is
        # down, and what is thrown away meanwhile must not pile up uncollected.
        with paused() if settings.cluster is None else nullcontext():
            report = await exchange.start()
            try:  # migrate here, once, before the writer process starts (if the database is up)
                await asyncio.to_thread(ledger.ensure_ready)
            except SQLAlchemyError as error:
                _stderr(f"hogx: the ledger database is not reachable yet ({error}); trading on")
            exchange.subscribe(ledger_process)
            # it catches up from the journal first
            ledger_process.start(exchange.core.last_sequence)
            say = (lambda *_: None) if settings.quiet else _stderr
            say(
                f"hogx: recovered {report.last_sequence:,} commands from {settings.data_dir} "
                f"(snapshot at {report.snapshot_sequence:,}, replayed {report.replayed:,} "
                f"in {report.seconds:.2f} s)"
            )
            if settings.cluster is not None and not exchange.leading.is_set():
                say(f"hogx: standing by for shard {settings.cluster.shard} (following its stream)")
            leader_tasks: list[asyncio.Task[None]] = []
            subscriptions: list[Subscription] = []
            bridges: list[ServedApi] = []

            async def on_leading() -> None:
                """What only the writer does: commands of its own, and the timetable's."""
                if settings.cluster is not None:
                    await _ensure_shard(exchange, settings.cluster, say)
                if settings.operator_key:
                    await _ensure_operator(exchange, settings.operator_key)
                await _ensure_surveillance(exchange, settings.surveillance)
                if settings.demo:
                    await _ensure_demo(exchange, settings.data_dir, say)
                # Timetables, cool-offs and certificate expiry become journaled commands here.
                leader_tasks.append(asyncio.create_task(Scheduler(exchange).run_forever()))
                link = exchange.cluster_link
                if link is not None:  # gateways reach the leader, and only the leader, over NATS
                    bridges.append(await serve_api(link.nc, api_subject(link.shard), app))
                    subscriptions.append(await serve_commands(link.nc, link.shard, exchange))

            await exchange.on_leading(on_leading)  # at once when embedded; on takeover otherwise
            keep_for_good()  # what start-up built lives for good: out of every collection
        flusher = asyncio.create_task(flush_forever(hub, settings.feed_window_s))
        heads_publisher = asyncio.create_task(
            publish_forever(
                daily_heads, journal_dir(settings.data_dir), lambda: exchange.core.last_sequence
            )
        )
        with collecting_seldom():  # seldom collections while serving (exchange/collector.py)
            try:
                yield
            finally:
                for bridge in bridges:
                    await bridge.stop()  # before the exchange stops: requests in flight get answers
                for subscription in subscriptions:
                    await stop_serving(subscription)
                for task in (*leader_tasks, flusher, heads_publisher):
                    # Ended before the exchange stops. A day's head being published on its
                    # thread finishes on its own: it reads the journal's files by itself.
                    await cancel_and_wait(task)
                book_history.close()
                await exchange.stop()
                await ledger_process.stop()  # what it could not write, it catches up next time
                ledger.close()
                say("hogx: stopped; state snapshotted")

    app = FastAPI(
        title="hogx",
        version="1.0.0",
        summary="Exchange for live hogs (heo hơi) and OCOP goods",
        description="Public contract: see API.md. Prices are whole VND per price unit, "
        "quantities whole lots, times RFC 3339 UTC. Errors are "
        '`{"error": {"code", "message"}}`.',
        lifespan=lifespan,
    )
    limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
    app.state.exchange = exchange
    app.state.rate_limiter = limiter
    app.state.feed = hub
    app.state.ledger = ledger
    app.state.book_history = book_history
    app.state.daily_heads = daily_heads
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(OrderEntryFastPath, exchange=exchange, limiter=limiter)
    app.add_middleware(ws.KeepRawWebSocketSend)  # outermost: sees the server's own `send`
    app.include_router(routes_trading.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_market.router)
    app.include_router(routes_audit.router)
    app.include_router(rules_router)
    app.include_router(surveillance_router)
    app.include_router(ws.router)
    routes_web.install(app)  # the web pages: /, /web/...

    @app.get("/healthz", tags=["health"], response_model=HealthOut, responses={503: {}})
    async def healthz(request: Request) -> Response:
        if not exchange.accepting:
            return error_response(503, "UNAVAILABLE", "the exchange is not accepting orders")
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


async def _ensure_operator(exchange: Exchange, api_key: str) -> None:
    """HOGX_OPERATOR_KEY: an operator with this key exists from start-up."""
    if hash_key(api_key) in exchange.core.participant_by_key_hash:
        return
    await exchange.submit(c.RegisterParticipant("operator", Role.OPERATOR, hash_key(api_key)))


async def _ensure_shard(exchange: Exchange, cluster: ClusterConfig, say: Any) -> None:
    """A cluster's shard names itself in its journal before its first order, so its order and
    trade ids carry its index (gateways route by them)."""
    shard = exchange.core.shard
    if shard is not None:
        if (shard.index, shard.name) != (cluster.shard_index, cluster.shard):
            say(
                f"hogx: this journal is shard {shard.name!r} (index {shard.index}); started "
                f"as {cluster.shard!r} (index {cluster.shard_index}): the journal's holds"
            )
        return
    result = await exchange.submit(c.ConfigureShard(cluster.shard_index, cluster.shard))
    rejected = [e for e in result.events if isinstance(e, CommandRejected)]
    if rejected and cluster.shard_index != 0:  # index 0 ids need no configuration
        say(f"hogx: shard {cluster.shard} could not take index {cluster.shard_index}: "
            f"{rejected[0].message}")  # fmt: skip


async def _ensure_surveillance(exchange: Exchange, config: SurveillanceConfig) -> None:
    """The thresholds in force are the ones the server started with: journaled when they change,
    so a replay applies them from the same sequence."""
    if exchange.surveillance.config != config:
        await exchange.submit(c.ConfigureSurveillance(config))


async def _ensure_demo(exchange: Exchange, data_dir: Path, say: Any) -> None:
    """List and fund the demo market once; print its keys every start (kept in the data dir)."""
    keys_file = data_dir / DEMO_KEYS_FILE
    if keys_file.exists():
        keys = json.loads(keys_file.read_text())
    elif any(p.name == demo_participants()[0].name for p in exchange.core.participants.values()):
        # A cluster node taking over: the first leader set the market up and holds the keys.
        say("hogx demo market: set up by another node of the shard; its keys are in that "
            f"node's {DEMO_KEYS_FILE}")  # fmt: skip
        return
    else:
        cast = demo_participants()
        first_id = exchange.core.next_participant_id
        for command in setup_commands(cast, first_id):
            await exchange.submit(command)
        await Scheduler(exchange).catch_up()  # timetabled markets open before the order flow
        for order in order_flow(cast, seed=7, count=DEMO_ORDERS, first_id=first_id):
            await exchange.submit(order)
        keys = {p.name: [p.role.value, p.api_key] for p in cast}
        keys_file.write_text(json.dumps(keys, ensure_ascii=False, indent=2))
        os.chmod(keys_file, 0o600)
    say("hogx demo market: API keys (Authorization: Bearer <key>)")
    for name, (role, key) in keys.items():
        say(f"  {role:<9} {key}  {name}")


def _stderr(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)
