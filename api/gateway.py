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

from api.app import BodyLimit
from api.errors import error_response
from api.nats_bridge import HttpRequest, api_subject, decode_response, encode

REQUEST_TIMEOUT_S = 5.0  # an order waits for one journal batch; far longer means trouble
RECONNECT_WAIT_S = 0.5  # between attempts to reach NATS, at start and after losing it
# Hop-by-hop headers describe the client's connection to this gateway, not the request.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer"}
)


class GatewaySettings(msgspec.Struct, frozen=True):
    nats_url: str
    shard: str
    request_timeout_s: float = REQUEST_TIMEOUT_S
    quiet: bool = False


class Gateway:
    """The gateway's one connection to NATS, and the forwarding of requests over it."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.subject = api_subject(settings.shard)
        self.nc: NATS | None = None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

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
        connecting = asyncio.create_task(gateway.connect())
        try:
            yield
        finally:
            connecting.cancel()
            await gateway.close()

    # The engine serves the API's documents (/docs, /openapi.json): this app has none of its own.
    app = FastAPI(
        title="hogx gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.gateway = gateway
    app.add_middleware(ForwardToEngine, gateway=gateway)

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        if not gateway.connected:
            return error_response(503, "UNAVAILABLE", "the gateway is not connected to NATS")
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app
