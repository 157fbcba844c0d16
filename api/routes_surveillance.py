"""Surveillance alerts for regulators (role `regulator`, read-only): `GET /v1/audit/alerts`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from api.common import (
    caller,
    decode_cursor,
    error_responses,
    exchange_of,
    json_response,
    take_page,
)
from exchange.participants import Role
from exchange.surveillance import KINDS, Alert
from exchange.times import rfc3339

router = APIRouter(tags=["audit"])

AlertKind = Literal[
    "self_trade_attempt", "wash_trade", "spoofing", "marking_the_close", "unusual_price_move"
]
assert set(AlertKind.__args__) == set(KINDS)  # type: ignore[attr-defined]


class AlertOut(BaseModel):
    alert_id: str
    kind: AlertKind
    symbol: str
    sequence: int = Field(description="the command that raised it")
    time: str
    participant_ids: list[int]
    order_ids: list[str]
    trade_ids: list[str]
    message: str
    details: dict[str, Any] = Field(description="the numbers behind the alert, by kind")


class AlertsOut(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None


def _alert_view(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": str(alert.alert_id),
        "kind": alert.kind,
        "symbol": alert.symbol,
        "sequence": alert.sequence,
        "time": rfc3339(alert.time_ns),
        "participant_ids": alert.participant_ids,
        "order_ids": [str(order_id) for order_id in alert.order_ids],
        "trade_ids": [str(trade_id) for trade_id in alert.trade_ids],
        "message": alert.message,
        "details": alert.details,
    }


@router.get(
    "/v1/audit/alerts",
    summary="Surveillance alerts, newest first: self-trade attempts, wash trades, spoofing, "
    "marking the close, unusual price moves",
    description="Each alert names the participants, orders and trades behind it. Filters: "
    "kind, symbol, participant (any participant the alert names).",
    responses={200: {"model": AlertsOut}, **error_responses(401, 403, 422, 429)},
)
async def audit_alerts(
    request: Request,
    kind: AlertKind | None = Query(default=None),  # noqa: B008 (FastAPI marker)
    symbol: str | None = Query(default=None, max_length=32),
    participant_id: int | None = Query(default=None, ge=0, le=2**31),
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Response:
    caller(request, Role.REGULATOR)
    surveillance = exchange_of(request).surveillance
    alerts = surveillance.newest_first(decode_cursor(cursor), kind, symbol, participant_id)
    page, next_cursor = take_page(iter(alerts), limit, lambda alert: alert.alert_id)
    return json_response(
        {"alerts": [_alert_view(alert) for alert in page], "next_cursor": next_cursor}
    )
