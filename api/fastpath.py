"""Order entry without the framework: POST /v1/orders, PATCH and DELETE /v1/orders/{id}.

Why: FastAPI's per-request work (routing, dependency resolution, request objects, generic
encoding) costs several times what placing an order costs the exchange. This ASGI layer sits in
front of the FastAPI app and answers those three routes itself by calling the very same
operations the FastAPI routes call (`api.routes_trading.place/amend/cancel`); the FastAPI routes
stay, so the OpenAPI document describes exactly what is served. Everything else passes through.
"""

from __future__ import annotations

import traceback
from typing import Any

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from api import routes_trading
from api.auth import RateLimiter
from api.errors import ApiError
from api.schemas import MAX_BODY_BYTES
from exchange.sequencer import Exchange

ORDERS = "/v1/orders"
ORDER_PREFIX = "/v1/orders/"
_JSON_HEADERS = [(b"content-type", b"application/json")]
_encode = msgspec.json.Encoder().encode


class OrderEntryFastPath:
    def __init__(self, app: ASGIApp, exchange: Exchange, limiter: RateLimiter) -> None:
        self.app = app
        self.exchange = exchange
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        order_id = path[len(ORDER_PREFIX) :] if path.startswith(ORDER_PREFIX) else None
        is_place = method == "POST" and path == ORDERS
        is_change = method in ("PATCH", "DELETE") and order_id is not None and order_id != ""
        is_change = is_change and "/" not in (order_id or "/")
        if not (is_place or is_change):
            await self.app(scope, receive, send)
            return
        status, (body, headers) = await self._answer(scope, receive, method, order_id)
        length = (b"content-length", str(len(body)).encode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, length, *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self, scope: Scope, receive: Receive, method: str, order_id: str | None
    ) -> tuple[int, tuple[bytes, list[tuple[bytes, bytes]]]]:
        authorization = _header(scope, b"authorization")
        try:
            if method == "DELETE":
                assert order_id is not None
                status, answer = await routes_trading.cancel(
                    self.exchange, self.limiter, authorization, order_id
                )
            else:
                body = await _read_body(receive)
                if method == "POST":
                    status, answer = await routes_trading.place(
                        self.exchange, self.limiter, authorization, body
                    )
                else:
                    assert order_id is not None
                    status, answer = await routes_trading.amend(
                        self.exchange, self.limiter, authorization, order_id, body
                    )
        except ApiError as error:
            headers = [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
            payload = {"error": {"code": error.code, "message": error.message}}
            return error.status, (_encode(payload), headers)
        except Exception:  # a bug: answer like the app's own handler, keep serving
            traceback.print_exc()
            payload = {"error": {"code": "INTERNAL_ERROR", "message": "internal error"}}
            return 500, (_encode(payload), [])
        return status, (_encode(answer), [])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def _read_body(receive: Receive) -> bytes:
    """The whole body, or an error as soon as it grows past the limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError("INVALID_REQUEST", "the client went away before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError("PAYLOAD_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
