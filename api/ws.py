"""`GET /v1/ws`: the websocket market-data feed (public, no key).

Client → server: `{"op": "subscribe" | "unsubscribe", "channel": "book" | "trades" | "ticker" |
"candles", "symbol": "HOG-G1-HCM", "depth"?: N, "interval"?: "1m"}`. A connection has one
book stream per symbol (subscribing again with another depth replaces it) and one candle stream
per symbol and interval; unsubscribing candles without an interval ends all of them.
Bad messages get `{"type": "error", "code", "message"}` and the connection stays open. Every
frame carries `channel`, `symbol` and `sequence` (API.md): control frames (`error`, `resync`,
`unsubscribed`, `heartbeat`) name the channel and symbol they are about, or null when they are
about none (a heartbeat, an error on a message that could not be read).

Each connection has a bounded queue filled by the feed hub without waiting and drained by its
own sender task, so one stalled client never delays the exchange or other clients. While a
client keeps up (nothing queued, its socket writable) a frame skips the queue: it is written
straight to the connection's transport, its websocket framing encoded once for all clients
(`DirectWriter`), so a frame costs one buffered write per client instead of a task switch and
several awaits. That is what lets one core feed a thousand monitors. A client
whose queue overflows gets `{"type": "resync"}` and fresh book snapshots; one that overflows
again and again is closed with 1013 (try again later). Idle connections get a heartbeat at
least every 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import msgspec
from fastapi import APIRouter
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.protocol import State

from api.errors import error_response
from exchange.feed import FeedHub

router = APIRouter()

MAX_QUEUE_FRAMES = 2_000
MAX_SUBSCRIPTIONS = 64  # e.g. 8 symbols x (book, trades, ticker and 4 candle intervals)
MAX_CLIENT_MESSAGE_BYTES = 4_096
# API.md promises a heartbeat at least every 5 s: waking at 5 s would send it just after.
HEARTBEAT_SECONDS = 4.0
RESYNC_LIMIT = 3  # resyncs within RESYNC_WINDOW_SECONDS before the connection is closed
RESYNC_WINDOW_SECONDS = 30.0
TRY_AGAIN_LATER = 1013

_encode = msgspec.json.Encoder().encode


class ClientMessage(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    op: str
    channel: str
    symbol: str
    depth: int | None = None
    interval: str | None = None  # candles; "1m" when subscribing without one


_decode = msgspec.json.Decoder(ClientMessage).decode


RAW_SEND_KEY = "hogx.raw_send"


class KeepRawWebSocketSend:
    """Outermost ASGI middleware: keeps the server's own `send` of a websocket in its scope,
    before any middleware wraps it, so the feed can find the connection's transport."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[RAW_SEND_KEY] = send
        await self.app(scope, receive, send)


_wire_text: str | None = None
_wire_bytes = b""


def _wire(frame: str) -> bytes:
    """`frame` as an unmasked, final websocket text frame (RFC 6455 section 5.2). The hub
    offers one frame object to all its subscribers in a row: encode it once for all of them."""
    global _wire_text, _wire_bytes
    if frame is not _wire_text:
        payload = frame.encode()
        size = len(payload)
        if size < 126:
            header = bytes((0x81, size))
        elif size < 65_536:
            header = bytes((0x81, 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x81, 127)) + size.to_bytes(8, "big")
        _wire_text, _wire_bytes = frame, header + payload
    return _wire_bytes


class DirectWriter:
    """Writes frames straight to a uvicorn (websockets sans-I/O) connection's transport.

    Only where that is exactly what the server would send: an open connection without
    extensions (permessage-deflate is off), whose transport is below its high-water mark
    (uvicorn's `writable` event). Anything else goes through the queue and the ASGI `send`.
    """

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    @classmethod
    def of(cls, scope: Scope) -> DirectWriter | None:
        protocol = getattr(scope.get(RAW_SEND_KEY), "__self__", None)
        conn = getattr(protocol, "conn", None)
        writable = getattr(protocol, "writable", None)
        if conn is None or not isinstance(writable, asyncio.Event):
            return None  # another server or websocket implementation: the queue does it all
        if getattr(conn, "extensions", None) or not hasattr(protocol, "close_sent"):
            return None
        return cls(protocol)

    def ready(self) -> bool:
        protocol = self._protocol
        return (
            protocol.writable.is_set()
            and not protocol.close_sent
            and protocol.conn.state is State.OPEN
            and not self._transport.is_closing()
        )

    def write(self, frame: str) -> None:
        self._transport.write(_wire(frame))


class Connection:
    """One websocket client: a bounded frame queue and the task that drains it."""

    def __init__(self, websocket: WebSocket, hub: FeedHub) -> None:
        self.websocket = websocket
        self.hub = hub
        self.direct = DirectWriter.of(websocket.scope)
        self.in_flight = False  # the sender has taken a frame off the queue and not sent it
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()
        self.subscriptions: set[tuple[str, str, str | None]] = set()
        self.resyncs: deque[float] = deque()
        self.closing = False

    # ------------------------------------------------------------------ Sink for the hub

    def offer(self, frame: str) -> bool:
        direct = self.direct
        keeping_up = not self.queue and not self.in_flight and not self.closing
        if direct is not None and keeping_up and direct.ready():  # no queue, no task switch
            direct.write(frame)
            return True
        if self.closing or len(self.queue) >= MAX_QUEUE_FRAMES:
            return False
        self.queue.append(frame)
        self.ready.set()
        return True

    def resync(self, channel: str, symbol: str) -> bool:
        if self.closing:
            return False
        now = time.monotonic()
        self.resyncs.append(now)
        while self.resyncs and now - self.resyncs[0] > RESYNC_WINDOW_SECONDS:
            self.resyncs.popleft()
        self.queue.clear()
        if len(self.resyncs) > RESYNC_LIMIT:
            self.closing = True  # the sender closes with 1013
        else:
            self.queue.append(self._frame("resync", channel=channel, symbol=symbol))
        self.ready.set()
        return not self.closing

    # ------------------------------------------------------------------ the two loops

    def _frame(self, kind: str, **fields: Any) -> str:
        """A control frame; like data frames it carries the current sequence."""
        return _encode({"type": kind, **fields, "sequence": self.hub.core.last_sequence}).decode()

    async def send_loop(self) -> None:
        websocket = self.websocket
        while True:
            if not self.queue and not self.closing:
                self.ready.clear()
                try:
                    await asyncio.wait_for(self.ready.wait(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    self.queue.append(self._frame("heartbeat", channel=None, symbol=None))
            if self.closing:
                await websocket.close(TRY_AGAIN_LATER, "too slow: resynced too often")
                return
            while self.queue:
                self.in_flight = True  # frames offered meanwhile must queue behind this one
                try:
                    await websocket.send_text(self.queue.popleft())
                finally:
                    self.in_flight = False

    async def receive_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:  # a binary frame: accept it if it is UTF-8 JSON like a text one
                try:
                    raw = (message.get("bytes") or b"").decode()
                except UnicodeDecodeError:
                    raw = "\x00"  # not JSON: handle() answers with an error
            self.handle(raw)

    def handle(self, text: str) -> None:
        """Do what a client message asks; a bad one is answered with an error frame."""
        if len(text) > MAX_CLIENT_MESSAGE_BYTES:
            message = f"messages are at most {MAX_CLIENT_MESSAGE_BYTES} bytes"
            self._refuse("INVALID_REQUEST", message, None)
            return
        try:
            request = _decode(text)
        except msgspec.DecodeError as error:
            self._refuse("INVALID_REQUEST", str(error), None)
            return
        refused = self._carry_out(request)
        if refused is not None:
            self._refuse(*refused, request)

    def _refuse(self, code: str, text: str, request: ClientMessage | None) -> None:
        channel, symbol = (None, None) if request is None else (request.channel, request.symbol)
        self.offer(self._frame("error", channel=channel, symbol=symbol, code=code, message=text))

    def _carry_out(self, message: ClientMessage) -> tuple[str, str] | None:
        """Subscribe or unsubscribe; the refusal's code and message, if refused."""
        # One stream per key: a book subscription with another depth replaces the old one,
        # while each candle interval is a stream of its own.
        interval = message.interval or "1m" if message.channel == "candles" else None
        key = (message.channel, message.symbol, interval)
        if message.op == "subscribe":
            if key not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
                return "TOO_MANY_SUBSCRIPTIONS", f"at most {MAX_SUBSCRIPTIONS} per connection"
            if key in self.subscriptions:  # e.g. a new depth replaces the old book stream
                self.hub.unsubscribe(self, message.channel, message.symbol, interval)
            refused = self.hub.subscribe(
                self, message.channel, message.symbol, message.depth, interval or "1m"
            )
            if refused is not None:
                return "INVALID_SUBSCRIPTION", refused
            self.subscriptions.add(key)
            return None
        if message.op == "unsubscribe":
            # Candles of one interval when one is named; else every stream of the channel and
            # symbol, as the hub ends them (and none of them counts towards the limit then).
            only = message.interval if message.channel == "candles" else None
            self.hub.unsubscribe(self, message.channel, message.symbol, only)
            if only is None:
                self.subscriptions = {k for k in self.subscriptions if k[:2] != key[:2]}
            else:
                self.subscriptions.discard(key)
            self.offer(self._frame("unsubscribed", channel=key[0], symbol=key[1]))
            return None
        return "INVALID_REQUEST", "op must be subscribe or unsubscribe"


@router.get("/v1/ws", include_in_schema=False)
async def feed_over_plain_http() -> Response:
    """A browser or curl asking for the feed without a websocket upgrade: say how to connect,
    rather than a bare 404 for a path that exists."""
    return error_response(
        426,
        "UPGRADE_REQUIRED",
        "GET /v1/ws is the websocket feed: connect with a websocket client (Upgrade: websocket)",
        {"Upgrade": "websocket", "Connection": "Upgrade"},
    )


@router.websocket("/v1/ws")
async def feed(websocket: WebSocket) -> None:
    hub: FeedHub = websocket.app.state.feed
    await websocket.accept()
    connection = Connection(websocket, hub)
    sender = asyncio.create_task(connection.send_loop())
    receiver = asyncio.create_task(connection.receive_loop())
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                task.result()
    finally:
        hub.drop(connection)
        for task in (sender, receiver):
            task.cancel()
        if websocket.application_state == WebSocketState.CONNECTED:
            # The client may be gone already (a closed browser tab): Starlette then raises
            # WebSocketDisconnect from close(); there is nobody left to tell.
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close()


async def flush_forever(hub: FeedHub, window_s: float) -> None:
    """Every window, turn what changed into frames (see `exchange.feed`)."""
    while True:
        await asyncio.sleep(window_s)
        try:
            hub.flush()
        except Exception as error:  # a feed bug must not stop the feed
            print(f"hogx: feed flush failed: {error!r}")


__all__: list[Any] = ["KeepRawWebSocketSend", "flush_forever", "router"]
