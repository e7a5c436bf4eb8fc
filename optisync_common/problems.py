"""RFC 9457 problem details: every error leaves as `application/problem+json` with a stable
`code`, never as a stack trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from optisync_common.logging import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://optisync.dev/problems/"

log = get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


# A data store that does not answer (down, restarting, loading, unreachable, timing out): the
# request may well succeed in a moment, so it is 503 with Retry-After, not a 500 that reads as
# our bug. ConnectionFailure covers ServerSelectionTimeoutError, NetworkTimeout, AutoReconnect
# and WaitQueueTimeoutError; the async clients (redis.asyncio, PyMongo's async API) raise these.
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionFailure,
)
STORE_RETRY_AFTER_S = 2


class ProblemError(Exception):
    """Raise from handlers for a domain error with a machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        title: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.headers = dict(headers or {})  # e.g. Retry-After on a 503
        self.extra = extra

    def response(self) -> JSONResponse:
        return problem_response(
            self.status, self.code, self.detail, title=self.title, headers=self.headers,
            **self.extra,
        )  # fmt: skip


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + code,
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        errors.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "type": err.get("type"),
                "msg": err.get("msg"),
            }
        )
    return errors


def _body_not_json(exc: RequestValidationError) -> bool:
    """FastAPI validates a body it did not parse as JSON (another or no Content-Type) as
    its raw bytes: the schema error it gets is about the media type, not the fields."""
    return any(
        tuple(err.get("loc", ())) == ("body",) and isinstance(err.get("input"), bytes)
        for err in exc.errors()
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_not_json(exc):
            return problem_response(
                415, "unsupported_media_type",
                "request bodies are JSON: send them with Content-Type: application/json",
            )  # fmt: skip
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(
                400, "malformed_json", "the request body is not valid JSON", errors=errors
            )
        return problem_response(
            422, "invalid_request", "the request does not match the schema", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return problem_response(exc.status_code, code, str(exc.detail))

    for kind in STORE_UNAVAILABLE:
        app.add_exception_handler(kind, _store_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, STORE_UNAVAILABLE):  # raised in a middleware, outside the router
            return await _store_unavailable(request, exc)
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(500, "internal_error", "an unexpected error occurred")


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store_unavailable", path=request.url.path, error=repr(exc))
    return problem_response(
        503, "unavailable", "a data store does not answer now; try again shortly",
        headers={"retry-after": str(STORE_RETRY_AFTER_S)},
    )  # fmt: skip
