"""A stateless API gateway: `hogx gateway --nats-url URL --shard NAME`.

Run as many as the load asks for, behind any load balancer. A gateway holds no state of the
exchange that is not rebuilt from NATS, so any of them can be added, killed or restarted:

- Every HTTP request but the feed and `/healthz` is forwarded over NATS request/reply to the
  engine leading the shard (`api.nats_bridge`), and its answer (status, headers, body) is
  passed back unchanged: through a gateway, the API is exactly the engine's (API.md).
- When no engine answers (none leads the shard, a failover is under way, NATS is down) or it
  answers too late, the client gets 503 `ENGINE_UNAVAILABLE`. Clients retry; retrying an
  order with the same `client_order_id` is safe, because the engine answers a repeated id with
  the original order instead of placing a second one (an order that timed out here may well
  have been placed).
- The websocket feed (`/v1/ws`, api/ws.py as it is) is served here, from a replica: the gateway
  follows the shard's journal stream and applies every record to a core and market data of its
  own, as recovery does, then hands the results to its own `FeedHub`. It flushes the hub after
  each stream message (one journal batch) rather than on a timer, so every gateway turns the
  same batches of the deterministic core into the same frames: clients on any gateway see the
  identical sequence of book updates, and the feed scales with the number of gateways. (A
  timer flush still runs, but between messages nothing has changed: it only sends newcomers
  their snapshots.)
- `/healthz` answers 200 while the gateway is connected to NATS and its replica has caught up
  with the stream and keeps following it; 503 otherwise, so a load balancer skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import nats
from fastapi import FastAPI
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api import ws
from api.app import BodyLimit
from api.errors import error_response
from api.nats_bridge import HttpRequest, decode_response, encode
from exchange.commands import decode_command
from exchange.core import ExchangeCore
from exchange.feed import FeedHub
from exchange.jetstream import (
    StreamCorruptError,
    StreamMismatchError,
    api_subject,
    follow,
    stream_end,
)
from exchange.journal import GENESIS_HASH, JournalRecord
from exchange.marketdata import MarketData
from exchange.sequencer import CommandResult

REQUEST_TIMEOUT_S = 5.0  # an order waits for one journal batch; far longer means trouble
RECONNECT_WAIT_S = 0.5  # between attempts to reach NATS, at start and after losing it
FOLLOW_RETRY_S = 0.5  # between attempts to follow the stream (missing yet, NATS away)
FEED_WINDOW_S = 0.025  # how soon a new subscriber gets its snapshot when nothing trades
# Hop-by-hop headers describe the client's connection to this gateway, not the request.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}
)


class GatewaySettings(msgspec.Struct, frozen=True):
    nats_url: str
    shard: str
    request_timeout_s: float = REQUEST_TIMEOUT_S
    feed_window_s: float = FEED_WINDOW_S
    quiet: bool = False


class Replica:
    """The shard's core and market data, rebuilt from its journal: all the feed reads.

    Records are applied exactly as recovery applies them (`Recovered.catch_up`), without the
    audit trail and surveillance, which the feed does not read."""

    def __init__(self) -> None:
        self.core = ExchangeCore()
        self.market_data = MarketData()
        self.journal_hash = GENESIS_HASH

    @property
    def last_sequence(self) -> int:
        return self.core.last_sequence

    def apply(self, records: list[JournalRecord]) -> list[CommandResult]:
        core, market_data = self.core, self.market_data
        results = []
        for record in records:
            if record.sequence != core.last_sequence + 1:  # `follow` verified the chain; pair it
                raise StreamCorruptError(
                    f"record {record.sequence} after {core.last_sequence}: the replica has a gap"
                )
            command = decode_command(record.payload)
            events = core.apply(command, record.sequence, record.time_ns)
            market_data.observe(record.sequence, record.time_ns, events)
            results.append(CommandResult(record.sequence, record.time_ns, command, events))
            self.journal_hash = record.hash
        return results


class Gateway:
    """The gateway's one connection to NATS, and the forwarding of requests over it."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.subject = api_subject(settings.shard)
        self.nc: NATS | None = None
        self.replica = Replica()
        self.hub = FeedHub(lambda: self.replica.core, lambda: self.replica.market_data)
        self.caught_up = False  # the replica reached the stream's end and follows it
        self.broken: str | None = None  # why the replica can no longer follow (a new history)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def healthy(self) -> str | None:
        """None when healthy, else why not."""
        if not self.connected:
            return "the gateway is not connected to NATS"
        if self.broken is not None:
            return f"the feed's replica stopped: {self.broken}"
        if not self.caught_up:
            return "the feed's replica is catching up with the journal"
        return None

    async def run(self) -> None:
        """Connect, then keep the replica following the stream until cancelled."""
        nc = await self.connect()
        last_error = ""
        while self.broken is None:
            try:
                await self._follow(nc)
            except (StreamCorruptError, StreamMismatchError) as error:
                # Not this gateway's to repair: restarted, it rebuilds from the stream.
                self.broken = str(error)
                self._say(f"hogx gateway: the replica stopped following: {error}")
            except Exception as error:  # the stream is missing yet, NATS is away: try again
                self.caught_up = False
                if repr(error) != last_error:  # say it once, not twice a second
                    self._say(f"hogx gateway: following shard {self.settings.shard}: {error!r}")
                last_error = repr(error)
                await asyncio.sleep(FOLLOW_RETRY_S)

    async def _follow(self, nc: NATS) -> None:
        js = nc.jetstream()
        replica, hub, shard = self.replica, self.hub, self.settings.shard
        end = (await stream_end(js, shard)).last_sequence
        self.caught_up = replica.last_sequence >= end
        async for records in follow(js, shard, replica.last_sequence, replica.journal_hash):
            hub.on_results(replica.apply(records))
            try:  # one stream message, one flush: the same frames on every gateway
                hub.flush()
            except Exception as error:  # a feed bug must not stop the replica
                self._say(f"hogx gateway: feed flush failed: {error!r}")
            if replica.last_sequence >= end:
                self.caught_up = True

    async def connect(self) -> NATS:
        """Connect to NATS, trying again until it answers (a gateway may start before it)."""
        while True:
            try:
                nc = await nats.connect(
                    self.settings.nats_url,
                    name=f"hogx-gateway-{self.settings.shard}",
                    connect_timeout=2,
                    reconnect_time_wait=RECONNECT_WAIT_S,
                    max_reconnect_attempts=-1,  # once connected, never give up on NATS
                    error_cb=self._on_error,
                )
            except (NatsError, OSError) as error:
                self._say(f"hogx gateway: NATS at {self.settings.nats_url} not reachable: {error}")
                await asyncio.sleep(RECONNECT_WAIT_S)
                continue
            self.nc = nc
            return nc

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI app: the request, read whole (`BodyLimit` did), to the engine and back."""
        message = await receive()
        request = HttpRequest(
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            [(k, v) for k, v in scope.get("headers") or [] if k.lower() not in HOP_BY_HOP],
            bytes(message.get("body", b"")),
            (scope.get("client") or (None,))[0],
        )
        status, headers, body = await self._ask(request)
        if not any(name.lower() == b"content-length" for name, _ in headers):
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _ask(self, request: HttpRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        nc = self.nc
        timeout_s = self.settings.request_timeout_s
        try:
            if nc is None or not nc.is_connected:
                raise _Unavailable("the gateway is not connected to NATS")
            reply = await nc.request(self.subject, encode(request), timeout=timeout_s)
            answer = decode_response(reply.data)
            return answer.status, answer.headers, answer.body
        except NoRespondersError:
            why = f"no engine is serving shard {self.settings.shard!r} right now"
        except TimeoutError:  # nats.errors.TimeoutError is one
            why = f"the engine did not answer within {timeout_s:g} s"
        except (_Unavailable, NatsError, msgspec.DecodeError) as error:
            why = str(error) or type(error).__name__
        message = (
            f"{why}; retry shortly (an order retried with the same client_order_id is "
            "never placed twice)"
        )
        response = error_response(503, "ENGINE_UNAVAILABLE", message, {"Retry-After": "1"})
        return 503, list(response.raw_headers), bytes(response.body)

    async def _on_error(self, error: Exception) -> None:
        self._say(f"hogx gateway: NATS: {error!r}")

    def _say(self, text: str) -> None:
        if not self.settings.quiet:
            print(text, file=sys.stderr, flush=True)


class _Unavailable(Exception):
    pass


class ForwardToEngine:
    """ASGI middleware: HTTP requests go to the engine; `/healthz` and websockets stay here."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.forward = BodyLimit(gateway.forward)  # the engine's own limit, applied before NATS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            await self.forward(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_gateway(settings: GatewaySettings) -> FastAPI:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = asyncio.create_task(gateway.run())
        flusher = asyncio.create_task(ws.flush_forever(gateway.hub, settings.feed_window_s))
        try:
            yield
        finally:
            running.cancel()
            flusher.cancel()
            await gateway.close()

    # The engine serves the API's documents (/docs, /openapi.json): this app has none of its own.
    app = FastAPI(
        title="hogx gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.gateway = gateway
    app.state.feed = gateway.hub  # where api/ws.py finds its hub
    app.add_middleware(ForwardToEngine, gateway=gateway)
    app.add_middleware(ws.KeepRawWebSocketSend)  # outermost: sees the server's own `send`
    app.include_router(ws.router)

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        why = gateway.healthy
        if why is not None:
            return error_response(503, "UNAVAILABLE", why)
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app
