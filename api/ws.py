"""`GET /v1/ws`: the websocket market-data feed (public, no key).

Client → server: `{"op": "subscribe" | "unsubscribe", "channel": "book" | "trades" | "ticker" |
"candles", "symbol": "HOG-G1-HCM", "depth"?: N, "interval"?: "1m"}`. A connection has one
book stream per symbol (subscribing again with another depth replaces it) and one candle stream
per symbol and interval; unsubscribing candles without an interval ends all of them.
Bad messages get `{"type": "error", "code", "message", "sequence"}` and the connection stays
open. Control frames (`error`, `resync`, `unsubscribed`, `heartbeat`) carry the sequence too.

Each connection has a bounded queue filled by the feed hub without waiting and drained by its
own sender task, so one stalled client never delays the exchange or other clients. A client
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
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from exchange.feed import FeedHub

router = APIRouter()

MAX_QUEUE_FRAMES = 2_000
MAX_SUBSCRIPTIONS = 64  # e.g. 8 symbols x (book, trades, ticker and 4 candle intervals)
MAX_CLIENT_MESSAGE_BYTES = 4_096
HEARTBEAT_SECONDS = 5.0
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


class Connection:
    """One websocket client: a bounded frame queue and the task that drains it."""

    def __init__(self, websocket: WebSocket, hub: FeedHub) -> None:
        self.websocket = websocket
        self.hub = hub
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()
        self.subscriptions: set[tuple[str, str, str | None]] = set()
        self.resyncs: deque[float] = deque()
        self.closing = False

    # ------------------------------------------------------------------ Sink for the hub

    def offer(self, frame: str) -> bool:
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
                await websocket.send_text(self.queue.popleft())

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
            error = self.handle(raw)
            if error is not None:
                code, text = error
                self.offer(self._frame("error", code=code, message=text))

    def handle(self, text: str) -> tuple[str, str] | None:
        if len(text) > MAX_CLIENT_MESSAGE_BYTES:
            return "INVALID_REQUEST", f"messages are at most {MAX_CLIENT_MESSAGE_BYTES} bytes"
        try:
            message = _decode(text)
        except msgspec.DecodeError as error:
            return "INVALID_REQUEST", str(error)
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
            self.hub.unsubscribe(self, message.channel, message.symbol)
            self.subscriptions.discard(key)
            self.offer(
                _encode({"type": "unsubscribed", "channel": key[0], "symbol": key[1]}).decode()
            )
            return None
        return "INVALID_REQUEST", "op must be subscribe or unsubscribe"


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


__all__: list[Any] = ["flush_forever", "router"]
