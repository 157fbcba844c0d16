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
- The websocket feed (`/v1/ws`, api/ws.py as it is) is served here, from a replica per shard:
  the gateway follows each shard's journal stream and applies every record to a core and
  market data of its own, as recovery does, then hands the results to its own `FeedHub`. A
  replica starts from the newest snapshot of the shard's object store that verifies against
  the stream (`exchange.snapshot_store`), else from the stream's first record. It
  flushes the hub where the stream says (`Hogx-Flush`: the leader closes a 25 ms window on a
  batch's message, or with an empty tick when trading goes quiet), not on a timer of its own,
  so every gateway turns the same records into the same frames: clients on any gateway see the
  identical sequence of book updates, and the feed scales with the number of gateways. Between
  two flush points a quiet hub is still flushed every window, which only sends newcomers their
  snapshots.
- With several shards (`--shard` repeated, `--assign`), requests are routed by
  `api.shard_router` and cash moves between shards through `api.transfers`.
- `/healthz` answers 200 while the gateway is connected to NATS and its replica has caught up
  with the stream and keeps following it; 503 otherwise, so a load balancer skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode

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
from api.auth import hash_key
from api.errors import error_response
from api.nats_bridge import AnswerLost, HttpRequest, ask_engine
from api.shard_router import FanOutList, Forward, MergeAccount, RegisterEverywhere, ShardMap
from api.shard_router import decode_cursor as decode_shard_cursor
from api.shard_router import encode_cursor as encode_shard_cursor
from api.transfers import TransferCoordinator
from exchange import commands as c
from exchange.cancellation import cancel_and_wait
from exchange.cluster import DEFAULT_SHARD, servers
from exchange.command_service import ShardUnavailable, submit_to_shard
from exchange.commands import Command, decode_command
from exchange.core import ExchangeCore
from exchange.feed import FeedHub, Sink
from exchange.jetstream import (
    StreamCorruptError,
    StreamMismatchError,
    api_subject,
    follow,
    stream_end,
)
from exchange.journal import GENESIS_HASH, JournalRecord
from exchange.marketdata import MarketData
from exchange.participants import Participant, Role
from exchange.sequencer import CommandResult
from exchange.snapshot_store import newest_verified
from exchange.snapshots import CoreAndMarketData, decode_snapshot

REQUEST_TIMEOUT_S = 5.0  # an order waits for one journal batch; far longer means trouble
RECONNECT_WAIT_S = 0.5  # between attempts to reach NATS, at start and after losing it
FOLLOW_RETRY_S = 0.5  # between attempts to follow the stream (missing yet, NATS away)
FEED_WINDOW_S = 0.025  # how soon a new subscriber gets its snapshot when nothing trades
# Hop-by-hop headers describe the client's connection to this gateway, not the request.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}
)


class GatewaySettings(msgspec.Struct, frozen=True):
    nats_url: str  # one URL, or several separated by commas
    shards: tuple[str, ...] = (DEFAULT_SHARD,)  # in shard-index order; the first is home
    assign: tuple[tuple[str, str], ...] = ()  # (symbol pattern, shard): where instruments live
    request_timeout_s: float = REQUEST_TIMEOUT_S
    feed_window_s: float = FEED_WINDOW_S
    quiet: bool = False


class Replica:
    """The shard's core and market data, rebuilt from its journal: all the feed reads.

    Records are applied exactly as recovery applies them (`Recovered.catch_up`), without the
    audit trail and surveillance, which the feed does not read. It starts empty, or from a
    snapshot of the shard's object store (`from_snapshot`)."""

    def __init__(self) -> None:
        self.core = ExchangeCore()
        self.market_data = MarketData()
        self.journal_hash = GENESIS_HASH
        self.snapshot_sequence = 0  # where it started
        self.applied = 0  # records applied since

    @classmethod
    def from_snapshot(cls, body: CoreAndMarketData, journal_hash: bytes) -> Replica:
        replica = cls()
        replica.core = ExchangeCore.from_state(body.core)
        replica.market_data = MarketData.from_state(body.market_data)
        replica.journal_hash = journal_hash
        replica.snapshot_sequence = replica.core.last_sequence
        return replica

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
            self.applied += 1
        return results


class ShardFeed:
    """One shard as a gateway sees it: its replica, its feed hub, and whether it follows."""

    def __init__(self, shard: str, say: Callable[[str], None] | None = None) -> None:
        self.shard = shard
        self._say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.replica = Replica()
        self.hub = FeedHub(lambda: self.replica.core, lambda: self.replica.market_data)
        self.caught_up = False  # the replica reached the stream's end and follows it
        self.broken: str | None = None  # why the replica can no longer follow (a new history)

    @property
    def unhealthy(self) -> str | None:
        if self.broken is not None:
            return f"the replica of shard {self.shard} stopped: {self.broken}"
        if not self.caught_up:
            return f"the replica of shard {self.shard} is catching up with its journal"
        return None

    async def follow(self, nc: NATS) -> None:
        js = nc.jetstream()
        end = (await stream_end(js, self.shard)).last_sequence
        if self.replica.last_sequence == 0 < end:
            await self._start_from_snapshot(nc)
        replica, hub = self.replica, self.hub
        self.caught_up = replica.last_sequence >= end
        async for batch in follow(js, self.shard, replica.last_sequence, replica.journal_hash):
            hub.on_results(replica.apply(batch.records))
            if batch.flush:  # where the leader closed a window: the same frames everywhere
                self.flush()
            if replica.last_sequence >= end:
                self.caught_up = True

    async def _start_from_snapshot(self, nc: NATS) -> None:
        """Take the newest snapshot of the object store that verifies against the stream (the
        stream is then followed from its sequence, chain checked); else replay from the start."""
        say = self._say
        fetched = await newest_verified(
            nc.jetstream(), self.shard, after=0, say=lambda text: say(f"hogx gateway: {text}")
        )
        if fetched is None:
            say(f"hogx gateway: no usable snapshot of shard {self.shard}: replaying its stream")
            return
        try:
            _, _, body = await asyncio.to_thread(
                decode_snapshot, fetched.data, fetched.name, CoreAndMarketData
            )
        except (ValueError, msgspec.DecodeError) as error:
            say(f"hogx gateway: snapshot {fetched.name} unreadable ({error}): replaying")
            return
        self.replica = Replica.from_snapshot(body, fetched.journal_hash)
        say(f"hogx gateway: shard {self.shard} starts from snapshot {fetched.name}")

    def flush(self) -> None:
        try:
            self.hub.flush()
        except Exception as error:  # a feed bug must not stop the replica
            print(f"hogx gateway: feed flush failed: {error!r}", file=sys.stderr)

    async def greet_newcomers_forever(self, window_s: float) -> None:
        """New subscribers get their snapshots within a window even when the market is quiet;
        a hub with changes waits for the stream's next flush point instead."""
        while True:
            await asyncio.sleep(window_s)
            if self.hub.quiet:
                self.flush()


class ShardedHub:
    """The feeds of several shards behind one `/v1/ws`: a symbol's frames come from the hub of
    the shard that lists it. Control frames (heartbeats, errors) carry the home shard's
    sequence; every data frame carries the sequence of its own shard."""

    def __init__(self, feeds: list[ShardFeed]) -> None:
        self._feeds = feeds

    @property
    def core(self) -> ExchangeCore:
        return self._feeds[0].replica.core

    def subscribe(
        self, sink: Sink, channel: str, symbol: str, depth: int | None = None, interval: str = "1m"
    ) -> str | None:
        for feed in self._feeds:
            if feed.replica.core.engine.book(symbol) is not None:
                return feed.hub.subscribe(sink, channel, symbol, depth, interval)
        return self._feeds[0].hub.subscribe(sink, channel, symbol, depth, interval)  # refused

    def unsubscribe(
        self, sink: Sink, channel: str, symbol: str, interval: str | None = None
    ) -> None:
        for feed in self._feeds:
            feed.hub.unsubscribe(sink, channel, symbol, interval)

    def drop(self, sink: Sink) -> None:
        for feed in self._feeds:
            feed.hub.drop(sink)

    def flush(self) -> None:
        for feed in self._feeds:
            feed.hub.flush()

    def subscriber_count(self) -> int:
        """Connections per shard, added up (one on two shards' symbols counts twice)."""
        return sum(feed.hub.subscriber_count() for feed in self._feeds)


class Gateway:
    """The gateway's one connection to NATS, its shards, and the forwarding of requests."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.shard_map = ShardMap(settings.shards, settings.assign)
        self.nc: NATS | None = None
        self.feeds = {shard: ShardFeed(shard, self._say) for shard in settings.shards}
        home = self.feeds[self.shard_map.home]
        self.hub: FeedHub | ShardedHub = (
            ShardedHub(list(self.feeds.values())) if self.shard_map.sharded else home.hub
        )
        self.transfers = TransferCoordinator(self)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def healthy(self) -> str | None:
        """None when healthy, else why not."""
        if not self.connected:
            return "the gateway is not connected to NATS"
        for feed in self.feeds.values():
            if feed.unhealthy is not None:
                return feed.unhealthy
        return None

    def replica(self, shard: str) -> Replica:
        return self.feeds[shard].replica

    async def run(self) -> None:
        """Connect, then keep every shard's replica following its stream until cancelled."""
        nc = await self.connect()
        tasks = [asyncio.create_task(self._keep_following(nc, f)) for f in self.feeds.values()]
        if self.shard_map.sharded:
            tasks.append(asyncio.create_task(self.transfers.sweep_forever()))
        try:
            await asyncio.gather(*tasks)
        finally:
            # Ended, not only told to end: `close` shuts NATS next, and a follower still
            # running would fail on the closed connection (and say so) or die unfinished.
            for task in tasks:
                await cancel_and_wait(task)

    async def _keep_following(self, nc: NATS, feed: ShardFeed) -> None:
        last_error = ""
        while feed.broken is None:
            try:
                await feed.follow(nc)
            except (StreamCorruptError, StreamMismatchError) as error:
                # Not this gateway's to repair: restarted, it rebuilds from the stream.
                feed.broken = str(error)
                self._say(f"hogx gateway: the replica of {feed.shard} stopped following: {error}")
            except Exception as error:  # the stream is missing yet, NATS is away: try again
                feed.caught_up = False
                if repr(error) != last_error:  # say it once, not twice a second
                    self._say(f"hogx gateway: following shard {feed.shard}: {error!r}")
                last_error = repr(error)
                await asyncio.sleep(FOLLOW_RETRY_S)

    async def connect(self) -> NATS:
        """Connect to NATS, trying again until it answers (a gateway may start before it)."""
        while True:
            try:
                nc = await nats.connect(
                    servers(self.settings.nats_url),
                    name="hogx-gateway",
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
        """ASGI app: the request, read whole (`BodyLimit` did), to its shard(s) and back."""
        message = await receive()
        request = HttpRequest(
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            [(k, v) for k, v in scope.get("headers") or [] if k.lower() not in HOP_BY_HOP],
            bytes(message.get("body", b"")),
            (scope.get("client") or (None,))[0],
        )
        route = self.shard_map.route(request.method, request.path, request.query_string,
                                     request.body)  # fmt: skip
        if isinstance(route, Forward):
            await self._ensure_participant(route.shard, request)
            status, headers, body = await self.ask(route.shard, request)
        elif isinstance(route, FanOutList):
            status, headers, body = await self._fan_out_list(request)
        elif isinstance(route, MergeAccount):
            status, headers, body = await self._merged_account(request)
        elif isinstance(route, RegisterEverywhere):
            status, headers, body = await self._register_everywhere(request)
        else:
            status, headers, body = await self.transfers.handle(request)
        if not any(name.lower() == b"content-length" for name, _ in headers):
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def ask(self, shard: str, request: HttpRequest) -> Answer:
        """The answer of `shard`'s leader to `request`, or 503 when none answers."""
        nc = self.nc
        timeout_s = self.settings.request_timeout_s
        try:
            if nc is None or not nc.is_connected:
                raise _Unavailable("the gateway is not connected to NATS")
            answer = await ask_engine(nc, api_subject(shard), request, timeout_s)
            return answer.status, answer.headers, answer.body
        except NoRespondersError:
            why = f"no engine is serving shard {shard!r} right now"
        except TimeoutError:  # nats.errors.TimeoutError is one
            why = f"the engine did not answer within {timeout_s:g} s"
        except (_Unavailable, NatsError, msgspec.DecodeError, AnswerLost) as error:
            why = str(error) or type(error).__name__
        message = (
            f"{why}; retry shortly (an order retried with the same client_order_id is "
            "never placed twice)"
        )
        return _error(503, "ENGINE_UNAVAILABLE", message, {"Retry-After": "1"})

    async def submit(self, shard: str, command: Command) -> CommandResult:
        """A typed command to `shard`'s leader (raises `ShardUnavailable` when none answers)."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise ShardUnavailable("the gateway is not connected to NATS")
        return await submit_to_shard(nc, shard, command, self.settings.request_timeout_s)

    # ------------------------------------------------------------------ more than one shard

    def caller(self, request: HttpRequest) -> Participant | None:
        """The participant whose key the request carries, as the home shard knows them."""
        key = bearer_key(request.headers)
        if key is None:
            return None
        core = self.replica(self.shard_map.home).core
        participant_id = core.participant_by_key_hash.get(hash_key(key))
        return None if participant_id is None else core.participants[participant_id]

    async def _ensure_participant(self, shard: str, request: HttpRequest) -> None:
        """A participant of the home shard exists on `shard` too, with the same id and key
        (registration copies them to every shard; this catches up one that was missed)."""
        if shard == self.shard_map.home:
            return
        participant = self.caller(request)
        if (
            participant is None
            or participant.participant_id in self.replica(shard).core.participants
        ):
            return
        await self._copy_participant(shard, participant)

    async def _copy_participant(self, shard: str, participant: Participant) -> None:
        command = c.RegisterParticipant(
            participant.name,
            participant.role,
            participant.api_key_hash,
            participant_id=participant.participant_id,
        )
        with contextlib.suppress(ShardUnavailable):  # the request itself will say so
            await self.submit(shard, command)  # PARTICIPANT_ID_TAKEN: someone else copied it

    async def _register_everywhere(self, request: HttpRequest) -> Answer:
        status, headers, body = await self.ask(self.shard_map.home, request)
        if status != 201:
            return status, headers, body
        created = msgspec.json.decode(body)
        participant = Participant(
            created["participant_id"],
            created["name"],
            Role(created["role"]),
            hash_key(created["api_key"]),
        )
        for shard in self.shard_map.shards[1:]:
            await self._copy_participant(shard, participant)
        return status, headers, body

    async def _fan_out_list(self, request: HttpRequest) -> Answer:
        """Each shard's list in turn: the gateway's cursor says which shard, and where in it."""
        query = parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)
        try:
            position, shard_cursor = decode_shard_cursor(_first(query, "cursor")) or (0, None)
        except ValueError as error:
            return _error(422, "INVALID_REQUEST", str(error))
        shards = self.shard_map.shards
        if position >= len(shards):
            return _error(422, "INVALID_REQUEST", "cursor is not one this gateway gave out")
        query.pop("cursor", None)
        if shard_cursor is not None:
            query["cursor"] = [shard_cursor]
        asked = msgspec.structs.replace(request, query_string=urlencode(query, doseq=True).encode())
        await self._ensure_participant(shards[position], request)
        status, headers, body = await self.ask(shards[position], asked)
        if status != 200:
            return status, headers, body
        page = msgspec.json.decode(body)
        if shard_cursor_next := page.get("next_cursor"):
            page["next_cursor"] = encode_shard_cursor(position, shard_cursor_next)
        elif position + 1 < len(shards):
            page["next_cursor"] = encode_shard_cursor(position + 1, None)
        return _json(200, page)

    async def _merged_account(self, request: HttpRequest) -> Answer:
        """Balances on every shard added up, each shard's shown, and cash in transit."""
        totals: dict[str, list[int]] = {}
        per_shard = []
        participant_id = None
        for shard in self.shard_map.shards:
            await self._ensure_participant(shard, request)
            status, headers, body = await self.ask(shard, request)
            if status != 200:
                return status, headers, body
            account = msgspec.json.decode(body)
            participant_id = account["participant_id"]
            per_shard.append({"shard": shard, "balances": account["balances"]})
            for balance in account["balances"]:
                total = totals.setdefault(balance["asset"], [0, 0])
                total[0] += balance["available"]
                total[1] += balance["reserved"]
        assert participant_id is not None
        merged = {
            "participant_id": participant_id,
            "balances": [
                {"asset": asset, "available": available, "reserved": reserved}
                for asset, (available, reserved) in sorted(totals.items())
            ],
            "shards": per_shard,
            "in_transit": self.transfers.in_transit(participant_id),
        }
        return _json(200, merged)

    async def _on_error(self, error: Exception) -> None:
        self._say(f"hogx gateway: NATS: {error!r}")

    def _say(self, text: str) -> None:
        if not self.settings.quiet:
            print(text, file=sys.stderr, flush=True)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    response = error_response(status, code, message, headers)
    return status, list(response.raw_headers), bytes(response.body)


def _json(status: int, content: Any) -> Answer:
    body = msgspec.json.encode(content)
    return status, [(b"content-type", b"application/json")], body


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def bearer_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" and key.strip() else None
    return None


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
        flushers = [
            asyncio.create_task(feed.greet_newcomers_forever(settings.feed_window_s))
            for feed in gateway.feeds.values()
        ]
        try:
            yield
        finally:
            for task in (running, *flushers):
                await cancel_and_wait(task)
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
