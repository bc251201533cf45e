"""Failures leave the gateway as JSON with a fitting status, never as a traceback.

Everywhere but `/v1` the body is `{"error": {"code", "message"}}`; under `/v1` it is OpenAI's
`{"error": {"message", "type", "param", "code"}}`, so that OpenAI's clients read it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import ErrorKind, RouterError, bounded, cut, shown

log = logging.getLogger(__name__)

HTTP_STATUS = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSATISFIABLE: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.REFUSED_BY_MODEL: 400,
    ErrorKind.MODERATION: 403,
    ErrorKind.SPEND_LIMIT: 429,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.OUT_OF_CREDITS: 503,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.UPSTREAM_AUTH: 502,
    ErrorKind.MISCONFIGURED: 503,
    ErrorKind.DEADLINE: 504,
    ErrorKind.INTERNAL: 500,
}
# OpenAI's error types, for `/v1`.
OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# RFC 9110: a 401 names the scheme the caller should authenticate with; a refusal at capacity
# says when to retry.
# RFC 9110: a 401 names the scheme the caller should authenticate with.
HEADERS = {ErrorKind.UNAUTHENTICATED: {"WWW-Authenticate": "Bearer"}}


def error_body(request: Request, kind: ErrorKind, message: str) -> dict[str, object]:
    """The body of an error answer, in the shape the request's path calls for."""
    message = bounded(message)
    if request.url.path.startswith("/v1/"):
        error: dict[str, object] = {
            "message": message,
            "type": OPENAI_TYPE.get(HTTP_STATUS[kind], "api_error"),
            "param": None,
            "code": kind.value,
        }
    else:
        error = {"code": kind.value, "message": message}
    return {"error": error}


def error_response(
    request: Request, kind: ErrorKind, message: str, retry_after_s: float | None = None
) -> JSONResponse:
    headers = dict(HEADERS.get(kind, {}))
    if retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(retry_after_s))
    content = error_body(request, kind, message)
    return JSONResponse(status_code=HTTP_STATUS[kind], content=content, headers=headers)


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [cut(str(p)) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> str:
    if error["type"] == "json_invalid":
        return (
            f"the body is not valid JSON: {error['ctx']['error']} (at character {error['loc'][-1]})"
        )
    return f"{_location(tuple(error['loc']))}: {error['msg']}"


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


async def _invalid_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if request.method == "POST" and not _is_json(media_type):
        # FastAPI reads a body of another type as bytes, and then finds no object in them.
        given = shown(media_type) if media_type else "none"
        message = f"send the body as JSON, with Content-Type: application/json (got {given})"
        return error_response(request, ErrorKind.INVALID_REQUEST, message)
    problems = "; ".join(_problem(e) for e in exc.errors())
    return error_response(request, ErrorKind.INVALID_REQUEST, problems or "invalid request")


async def _router_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RouterError)
    return error_response(request, exc.kind, exc.message, exc.retry_after_s)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kinds = {404: ErrorKind.NOT_FOUND, 405: ErrorKind.INVALID_REQUEST}
    response = error_response(
        request, kinds.get(exc.status_code, ErrorKind.INVALID_REQUEST), str(exc.detail)
    )
    response.status_code = exc.status_code
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(request, ErrorKind.INTERNAL, "internal error in the router")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(RouterError, _router_failed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
