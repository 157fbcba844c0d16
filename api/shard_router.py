"""Which shard a request belongs to: the gateway's routing rules, in one place.

Instruments are assigned to shards by the operator's rules (`--assign 'OCOP-*=ocop'`, first
match wins, else the home shard: the first `--shard`), so every gateway routes a symbol the same
way without asking anyone, even for an instrument listed a moment ago. Order and trade ids name
their shard (`exchange.core.shard_of`). Participants live on every shard with the same id; what
is theirs alone (account, statement) is on the home shard unless `?shard=` says otherwise.

    ?shard=NAME                                  that shard, for any request
    /v1/orders/{id}, /v1/audit/orders/{id}       the shard that handed out the order id
    /v1/audit/trades/{id}/trace                  the shard that handed out the trade id
    /v1/markets/{symbol}/..., /v1/instruments/{symbol}, /v1/admin/markets/{symbol}/...
    ?symbol=, or a body's "symbol" (or goods "asset")   the symbol's shard
    GET /v1/instruments, /v1/orders, /v1/fills, /v1/audit/alerts (no symbol)
                                                 every shard, one after the other (cursor)
    GET /v1/account                              every shard, balances added up
    POST /v1/admin/participants                  the home shard, then every other shard
    POST /v1/account/transfers                   the gateway itself: cash between shards
    anything else                                the home shard
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import msgspec

from clearing.accounts import CASH
from exchange.core import shard_of

FANNED_OUT_LISTS = frozenset({"/v1/instruments", "/v1/orders", "/v1/fills", "/v1/audit/alerts"})
_ID_PATHS = (
    re.compile(r"^/v1/orders/(\d{1,20})$"),
    re.compile(r"^/v1/audit/orders/(\d{1,20})$"),
    re.compile(r"^/v1/audit/trades/(\d{1,20})/trace$"),
)
_SYMBOL_PATHS = (
    re.compile(r"^/v1/markets/([^/]+)(?:/|$)"),
    re.compile(r"^/v1/instruments/([^/]+)$"),
    re.compile(r"^/v1/admin/markets/([^/]+)/"),
)


class Forward(msgspec.Struct, frozen=True):
    """Send the request as it is to one shard."""

    shard: str


class FanOutList(msgspec.Struct, frozen=True):
    """A list endpoint: each shard in turn, its pages one after the other."""


class MergeAccount(msgspec.Struct, frozen=True):
    """The participant's balances on every shard, added up (and shown per shard)."""


class RegisterEverywhere(msgspec.Struct, frozen=True):
    """A new participant: on the home shard, then with the same id on every other one."""


class CashTransfer(msgspec.Struct, frozen=True):
    """Cash from one shard to another: the gateway coordinates the two phases."""


Route = Forward | FanOutList | MergeAccount | RegisterEverywhere | CashTransfer


class ShardMap:
    """The cluster's shards, in index order, and the rules that place instruments on them."""

    def __init__(self, shards: tuple[str, ...], assign: tuple[tuple[str, str], ...] = ()) -> None:
        if not shards:
            raise ValueError("a gateway fronts at least one shard")
        if len(set(shards)) != len(shards):
            raise ValueError(f"shards must be distinct, got {shards}")
        for pattern, shard in assign:
            if shard not in shards:
                raise ValueError(f"--assign {pattern}={shard}: {shard!r} is not a --shard")
        self.shards = shards
        self.assign = assign

    @property
    def home(self) -> str:
        return self.shards[0]

    @property
    def sharded(self) -> bool:
        return len(self.shards) > 1

    def of_symbol(self, symbol: str) -> str:
        for pattern, shard in self.assign:
            if fnmatch.fnmatchcase(symbol, pattern):
                return shard
        return self.home

    def of_id(self, order_or_trade_id: int) -> str:
        index = shard_of(order_or_trade_id)
        return self.shards[index] if index < len(self.shards) else self.home

    def route(self, method: str, path: str, query_string: bytes, body: bytes) -> Route:
        query = parse_qs(query_string.decode("latin-1"))
        named = _first(query, "shard")
        if named is not None and named in self.shards:
            return Forward(named)
        if not self.sharded:
            return Forward(self.home)
        if path == "/v1/account/transfers" and method == "POST":
            return CashTransfer()
        if path == "/v1/admin/participants" and method == "POST":
            return RegisterEverywhere()
        for pattern in _ID_PATHS:
            match = pattern.match(path)
            if match:
                return Forward(self.of_id(int(match.group(1))))
        for pattern in _SYMBOL_PATHS:
            match = pattern.match(path)
            if match:
                return Forward(self.of_symbol(match.group(1)))
        symbol = _first(query, "symbol") or _body_symbol(body)
        if symbol is not None:
            return Forward(self.of_symbol(symbol))
        if method == "GET" and path in FANNED_OUT_LISTS:
            return FanOutList()
        if method == "GET" and path == "/v1/account":
            return MergeAccount()
        return Forward(self.home)


def _first(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _body_symbol(body: bytes) -> str | None:
    """The instrument a JSON body is about: its `symbol`, or a goods `asset`."""
    if not body:
        return None
    try:
        fields = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None  # the shard answers with its own validation error
    if not isinstance(fields, dict):
        return None
    for key in ("symbol", "asset"):
        value = fields.get(key)
        if isinstance(value, str) and value != CASH:
            return value
    return None


# ---------------------------------------------------------------------------- cursors


def encode_cursor(shard_position: int, shard_cursor: str | None) -> str:
    """A gateway cursor: which shard the listing is at, and that shard's own cursor."""
    raw = msgspec.json.encode([shard_position, shard_cursor])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str | None] | None:
    """None for no cursor; raises ValueError for one no gateway gave out."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position, shard_cursor = msgspec.json.decode(raw, type=tuple[int, str | None])
    except (binascii.Error, msgspec.DecodeError, ValueError) as error:
        raise ValueError("cursor is not one this gateway gave out") from error
    if position < 0:
        raise ValueError("cursor is not one this gateway gave out")
    return position, shard_cursor


def list_key(page: Mapping[str, Any]) -> str | None:
    """The field of a list page that holds its items (e.g. `orders`)."""
    keys = [key for key, value in page.items() if isinstance(value, list)]
    return keys[0] if len(keys) == 1 else None
