"""What every route module shares: the exchange handle, JSON responses, submitting commands,
turning rejections into API errors, parsing ids, times and cursors."""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import RateLimiter, require
from api.errors import ApiError
from exchange.commands import Command
from exchange.events import (
    AmendRejected,
    CancelRejected,
    CommandRejected,
    OrderRejected,
)
from exchange.participants import Participant, Role
from exchange.sequencer import CommandResult, Exchange, ExchangeStopped, Overloaded

_json = msgspec.json.Encoder()
# ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
_DECIMAL = re.compile(r"[0-9]{1,18}")
_EPOCH_NS = re.compile(r"-?[0-9]{1,20}")
_FRACTION = re.compile(r"[.,]([0-9]+)")  # of a second, in an RFC 3339 (or ISO 8601) time
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
T = TypeVar("T")
MAX_PAGE = 1_000
# The times a record can carry: signed 64-bit epoch nanoseconds from 1970 on (to 2262-04-11).
FIRST_TIME_NS = 0
LAST_TIME_NS = 2**63 - 1


def exchange_of(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


def caller(request: Request, *roles: Role) -> Participant:
    """Authenticate, authorise and rate-limit the caller of a protected route."""
    limiter: RateLimiter = request.app.state.rate_limiter
    return authorize(exchange_of(request), limiter, request.headers.get("authorization"), *roles)


def authorize(
    exchange: Exchange, limiter: RateLimiter, authorization: str | None, *roles: Role
) -> Participant:
    participant = require(exchange.core, authorization, *roles)
    limiter.check(participant.participant_id)
    return participant


def json_response(content: Any, status: int = 200) -> Response:
    return Response(_json.encode(content), status_code=status, media_type="application/json")


async def submit(exchange: Exchange, command: Command) -> CommandResult:
    """Sequence a command; a refused command becomes the API error its code calls for."""
    try:
        result = await exchange.submit(command)
    except Overloaded as error:
        raise ApiError("UNAVAILABLE", str(error), headers={"Retry-After": "1"}) from error
    except ExchangeStopped as error:
        raise ApiError("UNAVAILABLE", str(error)) from error
    except ValueError as error:  # refused before it was queued: the journal could not hold it
        message = f"the request cannot be journaled: {error}"
        raise ApiError("INVALID_REQUEST", message[:300]) from error
    # A refused command yields exactly one event: its rejection.
    first = result.events[0] if result.events else None
    if isinstance(first, CommandRejected | OrderRejected | AmendRejected | CancelRejected):
        code = str(first.code)
        if code == "UNKNOWN_ORDER":  # never reveal whether some order exists
            code = "ORDER_NOT_FOUND"
        raise ApiError(code, first.message)
    return result


def parse_order_id(raw: str, whose: str = " of this participant") -> int:
    """Order ids are decimal strings; anything else is simply not found (`whose` says where
    it was looked for: a trader's own orders by default, every order for a regulator)."""
    if not _DECIMAL.fullmatch(raw):
        raise ApiError("ORDER_NOT_FOUND", f"no order {raw[:40]!r}{whose}")
    return int(raw)


def parse_time_ns(raw: str | None, name: str) -> int | None:
    """RFC 3339 (to the nanosecond) or integer epoch nanoseconds; None when absent."""
    if raw is None or raw == "":
        return None
    if _EPOCH_NS.fullmatch(raw):
        return int(raw)
    text = raw.replace("t", "T").replace("z", "Z")  # RFC 3339 allows both in lower case
    # datetime keeps microseconds: the fraction's digits beyond them are added back here, so
    # a bound between two records' nanoseconds falls between them.
    nanoseconds = 0
    fraction = _FRACTION.search(text)
    if fraction is not None and len(fraction.group(1)) > 6:
        digits = fraction.group(1)
        if len(digits) > 9:
            raise ApiError("INVALID_REQUEST", f"{name}: times are kept to the nanosecond")
        nanoseconds = int(digits[6:].ljust(3, "0"))
        text = text[: fraction.start(1) + 6] + text[fraction.end(1) :]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise ApiError(
            "INVALID_REQUEST", f"{name} must be RFC 3339 or epoch nanoseconds"
        ) from error
    if moment.tzinfo is None:
        raise ApiError("INVALID_REQUEST", f"{name} must carry a time zone (e.g. Z)")
    # Exact integers: a float timestamp would round a time before 1970 towards it.
    return (moment - _EPOCH) // _MICROSECOND * 1_000 + nanoseconds


def time_range(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """A query's `start` and `end` bounds (`parse_time_bound`); 422 when start is after end."""
    start_ns, end_ns = parse_time_bound(start, "start"), parse_time_bound(end, "end")
    if start_ns is not None and end_ns is not None and start_ns > end_ns:
        raise ApiError("INVALID_REQUEST", "start must not be after end")
    return start_ns, end_ns


def parse_time_bound(raw: str | None, name: str) -> int | None:
    """A bound of a time range (`parse_time_ns`), brought within the times a record can carry.

    No record lies outside them, so a bound beyond either end selects what that end does; and
    the ledger's queries and the RFC 3339 formatter never see a number they cannot hold."""
    moment = parse_time_ns(raw, name)
    return None if moment is None else min(max(moment, FIRST_TIME_NS), LAST_TIME_NS)


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ApiError("INVALID_REQUEST", "cursor is not one this server gave out") from error
    if not _DECIMAL.fullmatch(raw):
        raise ApiError("INVALID_REQUEST", "cursor is not one this server gave out")
    return int(raw)


def take_page(
    items: Iterator[T], limit: int, position: Callable[[T], int]
) -> tuple[list[T], str | None]:
    """The first `limit` items, and a cursor to the rest when there is a rest.

    Items come in page order (newest first); the cursor holds the position of the last item
    returned, and the next page starts strictly after it.
    """
    page = list(itertools.islice(items, limit + 1))
    if len(page) <= limit:
        return page, None
    del page[limit:]
    return page, encode_cursor(position(page[-1]))


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], *, optional: bool = False) -> M | None:
    """Parse the JSON body into `model` — after the caller was authorised, never before."""
    body = await request.body()
    if optional and not body.strip():
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}"
            for item in error.errors()[:5]
        ]
        raise ApiError("INVALID_REQUEST", "; ".join(problems)) from error


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """OpenAPI `requestBody` for a route that parses its body itself with `read_model`.

    Nested models are written out in place: pydantic refers to them as `#/$defs/Name`, which in
    the OpenAPI document would point at the document's root, where there are no `$defs`."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    content = {"application/json": {"schema": _inlined(schema, definitions)}}
    return {"requestBody": {"required": required, "content": content}}


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    """`node` with every `#/$defs/...` reference replaced by its definition (none recurse)."""
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        beside = {key: value for key, value in node.items() if key != "$ref"}
        definition = definitions[reference.removeprefix("#/$defs/")]
        return _inlined({**definition, **beside}, definitions)
    return {key: _inlined(value, definitions) for key, value in node.items()}


# Error responses every route may give, documented so the OpenAPI schema tells the truth.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    from api.schemas import ErrorOut

    descriptions = {
        400: "rejected by a market rule (its own code)",
        401: "missing or unknown API key",
        403: "the caller's role may not use this route",
        404: "not found",
        409: "the order is no longer open, or the request conflicts with the market's state",
        413: "the body is too large",
        422: "the request does not match the schema (INVALID_REQUEST)",
        429: "rate limited (see Retry-After)",
        503: "the exchange is not accepting commands",
    }
    return {s: {"model": ErrorOut, "description": descriptions[s]} for s in statuses}
