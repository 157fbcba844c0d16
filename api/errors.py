"""Every error the API answers with: `{"error": {"code": "STABLE_CODE", "message": "..."}}`.

Status codes follow ../shared/API.md: 401 missing or unknown key, 403 role not allowed, 422
schema/validation errors (`INVALID_REQUEST`), 400 business rejections with their own code,
404 unknown order (`ORDER_NOT_FOUND`, also for another participant's order), 409 an order no
longer open, 413 oversized body, 429 rate limited (with Retry-After), 503 not accepting.
"""

from __future__ import annotations

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

# Rejection codes that are not "400 Bad Request".
STATUS_OF_CODE = {
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "ORDER_NOT_FOUND": 404,
    "UNKNOWN_ORDER": 404,
    "NOT_FOUND": 404,
    "UNKNOWN_INSTRUMENT_PATH": 404,
    "UNKNOWN_PARTICIPANT_PATH": 404,
    "ORDER_NOT_OPEN": 409,
    "INVALID_SESSION_TRANSITION": 409,
    "SETTLEMENT_ALREADY_PUBLISHED": 409,
    "SETTLEMENT_DURING_CALL": 409,
    "ALREADY_HALTED": 409,
    "TRADE_NOT_FOUND": 404,
    "PAYLOAD_TOO_LARGE": 413,
    "INVALID_REQUEST": 422,
    "RATE_LIMITED": 429,
    "UNAVAILABLE": 503,
}


class ApiError(Exception):
    """Raise anywhere in a route: becomes the standard error body with the right status."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS_OF_CODE.get(code, 400)
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        return error_response(error.status, error.code, error.message, error.headers)

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return error_response(422, "INVALID_REQUEST", _describe(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 400:  # the framework could not even parse the body
            return error_response(
                422, "INVALID_REQUEST", f"the body is not valid JSON: {error.detail}"
            )
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        return error_response(error.status_code, code, str(error.detail))

    async def unexpected(request: Request, error: Exception) -> Response:
        return error_response(500, "INTERNAL_ERROR", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def _describe(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(problems) or "the request is not valid"
