"""HTTP over NATS request/reply: how stateless gateways reach the engine of a shard.

A gateway (`api.gateway`) turns each HTTP request into an `HttpRequest` and sends it as a NATS
request to `hogx.<shard>.api` (`exchange.jetstream.api_subject`). The engine that leads the
shard answers it with `serve_api`, which runs the request through its own ASGI app in-process,
exactly as if it had come in over its HTTP port, and replies with the `HttpResponse`: the
gateway passes status, headers and body through unchanged, so a client sees the same API
(API.md) whichever way it came in.

The engine subscribes in the queue group "engine", so should two processes ever subscribe
(a standby promoting itself before the old leader is gone), each request still gets exactly
one answer. Each request is handled on a task of its own, at most `MAX_IN_FLIGHT` at a time,
so a slow request (an audit export) never holds up the subscription; over the limit, and when
anything inside fails, the engine still replies, with the project's error body.

An answer larger than one NATS message (an audit export of a long day) travels in parts: the
reply carries the first part and, in its headers, how many parts there are and where to ask for
the rest (`ask_engine` does that). The engine keeps the remaining parts for `PARTS_TTL_S`,
on a subject of its own process, so a part is always fetched from the engine that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from starlette.types import ASGIApp, Message

QUEUE_GROUP = "engine"
MAX_IN_FLIGHT = 4_096  # requests being answered at once; the sequencer batches what they submit
HANDLER_TIMEOUT_S = 30.0  # no request holds a slot for longer (an audit export is the slowest)
STOP_TIMEOUT_S = 10.0  # at stop, how long requests in flight get to finish
HEADERS_LIMIT = 128  # headers per message; more is not a request a client of API.md sends
PARTS_TTL_S = 60.0  # how long the engine keeps the parts of a large answer for the gateway
PART_HEADROOM = 4_096  # bytes of a NATS message left for its headers and protocol
# Headers of a reply in parts: how many parts, which answer, and where to ask for the others.
PARTS_HEADER = "Hogx-Parts"
ANSWER_HEADER = "Hogx-Answer"
PARTS_SUBJECT_HEADER = "Hogx-Parts-Subject"

Headers = list[tuple[bytes, bytes]]


class HttpRequest(msgspec.Struct, frozen=True, array_like=True):
    """One HTTP request as the gateway received it (the body is read to its end first)."""

    method: str
    path: str
    query_string: bytes
    headers: Headers
    body: bytes
    client: str | None = None  # the caller's address, as the gateway saw it


class HttpResponse(msgspec.Struct, frozen=True, array_like=True):
    status: int
    headers: Headers
    body: bytes


encode = msgspec.msgpack.Encoder().encode
decode_request = msgspec.msgpack.Decoder(HttpRequest).decode
decode_response = msgspec.msgpack.Decoder(HttpResponse).decode


def error_answer(
    status: int, code: str, message: str, headers: Headers | None = None
) -> HttpResponse:
    """The project's error shape (api/errors.py) as an `HttpResponse`."""
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    content = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return HttpResponse(status, [*content, *(headers or [])], body)


async def run_asgi(app: ASGIApp, request: HttpRequest) -> HttpResponse:
    """Run `request` through `app` in this process and collect the complete response."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": request.query_string,
        "root_path": "",
        "headers": request.headers,
        "client": (request.client, 0) if request.client else None,
        "server": None,
        "state": {},
    }
    body_sent = False
    finished = asyncio.Event()
    status: int | None = None
    headers: Headers = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        # The client stays connected until the whole answer is out: a streaming response
        # (a CSV export) listens for a disconnect and would stop early on one.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers") or [])
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette answers an unexpected error with a 500 and then re-raises it for the
        # server to log: the answer it sent is the one to give.
        if status is None or not finished.is_set():
            raise
    if status is None or not finished.is_set():
        raise RuntimeError(f"{request.method} {request.path}: the app sent no complete response")
    return HttpResponse(status, headers, b"".join(chunks))


class ServedApi:
    """The engine's side of the bridge: answers requests until `stop()`."""

    def __init__(self, nc: NATS, app: ASGIApp) -> None:
        self._nc = nc
        self._app = app
        self._subscription: Subscription | None = None
        self._parts_subscription: Subscription | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        # Answer id -> (when to forget it, its parts); part 0 went out with the reply.
        self._parked: dict[str, tuple[float, list[bytes]]] = {}
        self._parts_subject = ""

    async def start(self, subject: str) -> None:
        # This process's own subject (no queue group): parts come from the engine holding them.
        self._parts_subject = f"{subject}.parts.{secrets.token_hex(8)}"
        self._parts_subscription = await self._nc.subscribe(self._parts_subject, cb=self._on_part)
        self._subscription = await self._nc.subscribe(subject, queue=QUEUE_GROUP, cb=self._on)

    async def stop(self) -> None:
        """No new requests; those in flight get `STOP_TIMEOUT_S` to be answered."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # a closed connection has no interest left
                await subscription.unsubscribe()
        parts, self._parts_subscription = self._parts_subscription, None
        if parts is not None:
            with contextlib.suppress(Exception):
                await parts.unsubscribe()
        self._parked.clear()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=STOP_TIMEOUT_S)
        for task in self._in_flight:
            task.cancel()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def _on(self, msg: Msg) -> None:
        """Runs on the subscription's own task: hand the request on, never wait for it."""
        if not msg.reply:
            return  # a publish, not a request: nobody to answer
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            busy = f"{MAX_IN_FLIGHT} requests are already being answered; retry shortly"
            await self._reply(msg, error_answer(503, "UNAVAILABLE", busy, [(b"retry-after", b"1")]))
            return
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            request = decode_request(msg.data)
            if len(request.headers) > HEADERS_LIMIT:
                answer = error_answer(431, "INVALID_REQUEST", f"at most {HEADERS_LIMIT} headers")
            else:
                async with asyncio.timeout(HANDLER_TIMEOUT_S):
                    answer = await run_asgi(self._app, request)
        except msgspec.DecodeError as error:
            answer = error_answer(400, "INVALID_REQUEST", f"not an encoded HTTP request: {error}")
        except Exception as error:  # whatever failed, the gateway gets an answer, not a timeout
            print(f"hogx: bridge request failed: {error!r}", file=sys.stderr)
            answer = error_answer(500, "INTERNAL_ERROR", "internal error")
        await self._reply(msg, answer)

    async def _reply(self, msg: Msg, answer: HttpResponse) -> None:
        payload = encode(answer)
        part_size = max(self._nc.max_payload - PART_HEADROOM, 1)
        headers = None
        if len(payload) > part_size:
            parts = [payload[i : i + part_size] for i in range(0, len(payload), part_size)]
            answer_id = secrets.token_hex(12)
            self._forget_expired()
            self._parked[answer_id] = (time.monotonic() + PARTS_TTL_S, parts)
            payload = parts[0]
            headers = {
                PARTS_HEADER: str(len(parts)),
                ANSWER_HEADER: answer_id,
                PARTS_SUBJECT_HEADER: self._parts_subject,
            }
        with contextlib.suppress(Exception):  # the connection is gone: the gateway times out
            await self._nc.publish(msg.reply, payload, headers=headers)

    async def _on_part(self, msg: Msg) -> None:
        """A gateway asks for part `index` of a parked answer: `b"<answer id> <index>"`."""
        if not msg.reply:
            return
        try:
            answer_id, index_text = msg.data.decode("ascii").split(" ")
            expires, parts = self._parked[answer_id]
            index = int(index_text)
            part = parts[index] if 0 < index < len(parts) else None
        except (UnicodeDecodeError, ValueError, KeyError):
            part = None
        if part is None or time.monotonic() > expires:
            # An empty reply: the gateway reports the answer as lost and the client retries.
            part = b""
        elif index == len(parts) - 1:
            del self._parked[answer_id]  # the last part: the gateway has it all now
        with contextlib.suppress(Exception):
            await msg.respond(part)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for answer_id in [k for k, (expires, _) in self._parked.items() if expires < now]:
            del self._parked[answer_id]


class AnswerLost(Exception):
    """Part of an answer in parts could not be fetched (its engine stopped, or it expired)."""


async def ask_engine(
    nc: NATS, subject: str, request: HttpRequest, timeout_s: float
) -> HttpResponse:
    """Send `request` to the engine serving `subject`; the whole answer, fetched in parts if
    it was too large for one message. Raises what `nc.request` raises, and `AnswerLost`."""
    reply = await nc.request(subject, encode(request), timeout=timeout_s)
    headers = reply.headers or {}
    if PARTS_HEADER not in headers:
        return decode_response(reply.data)
    try:
        count = int(headers[PARTS_HEADER])
        answer_id, parts_subject = headers[ANSWER_HEADER], headers[PARTS_SUBJECT_HEADER]
    except (KeyError, ValueError) as error:
        raise AnswerLost(f"an answer in parts came with unreadable headers: {error!r}") from error
    parts = [reply.data]
    for index in range(1, count):
        part = await nc.request(parts_subject, f"{answer_id} {index}".encode(), timeout=timeout_s)
        if not part.data:
            raise AnswerLost(f"part {index + 1} of {count} of the answer is no longer available")
        parts.append(part.data)
    return decode_response(b"".join(parts))


async def serve_api(nc: NATS, subject: str, app: ASGIApp) -> ServedApi:
    """Answer HTTP requests arriving on `subject` with `app`; `await served.stop()` to end."""
    served = ServedApi(nc, app)
    await served.start(subject)
    return served
