"""Errors of `jiyi serve`: one JSON shape, {"error": {"code": str, "message": str}}, and never a
traceback. `ApiError` is raised by the routes; `install_handlers` turns it, invalid requests
(the message names the field and the flag behind a limit), unknown paths, a full queue and a
server shutting down into that shape; `ERRORS` documents them in /openapi.json.

>>> validation_message([{"loc": ("body", "texts", 3), "type": "string_too_long", ...}], ...)
'texts[3]: String should have at most 300 characters (--max-chars 300).'
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jiyi.errors import JiyiError
from jiyi.serve.batcher import BatcherClosed, QueueFull
from jiyi.serve.schemas import ErrorResponse
from jiyi.serve.settings import Settings

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    422: "invalid_request",
    429: "queue_full",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error response: status, a short code and a message for the client."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, message: str, *, code: str | None = None, headers: dict | None = None
) -> JSONResponse:
    """The one error shape: {"error": {"code", "message"}}."""
    body = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def is_json(content_type: str) -> bool:
    """application/json or application/*+json, whatever the parameters (charset=...)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def field_path(loc: tuple) -> str:
    """("body", "texts", 3) -> "texts[3]"."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the body"


def validation_message(errors: list[dict], request: Request, settings: Settings) -> str:
    """One line for a 422: up to five fields, each with what is wrong and the flag of a limit."""
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        what = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return f"the body must be JSON sent with Content-Type: application/json (got {what})."
    hints = {
        ("texts", "too_long"): f" (--max-texts {settings.max_texts})",
        ("questions", "too_long"): f" (--max-texts {settings.max_texts})",
        ("contexts", "too_long"): f" (--max-texts {settings.max_texts})",
        ("string_too_long",): f" (--max-chars {settings.max_chars})",
    }
    parts = []
    for e in errors[:5]:
        loc = tuple(e.get("loc", ()))
        where = field_path(loc)
        msg = str(e.get("msg", "invalid value"))
        if e.get("type") == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif e.get("type") == "string_pattern_mismatch":
            msg = "the text is empty or only whitespace"
        elif e.get("type") == "missing" and where == "the body":
            msg = "a JSON object is required"
        hint = hints.get((where, e.get("type")), "") or hints.get((e.get("type"),), "")
        parts.append(f"{where}: {msg}{hint}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more + "."


def install_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            detail = (bad_json.get("ctx") or {}).get("error", "malformed")
            loc = bad_json.get("loc", ())
            at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            message = f"the body is not valid JSON ({detail}{at})."
            return error_response(400, message, code="invalid_json")
        return error_response(422, validation_message(errors, request, settings))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == 404:
            message = f"no such endpoint: {request.method} {request.url.path[:200]}"
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.url.path[:200]}"
        elif status == 400:
            message = "the body could not be parsed as JSON."
        else:
            message = str(exc.detail)
        headers = dict(exc.headers or {})
        return error_response(status, message, headers=headers)

    @app.exception_handler(QueueFull)
    async def _full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(429, str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(BatcherClosed)
    async def _closed(request: Request, exc: BatcherClosed) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(JiyiError)
    async def _user_error(request: Request, exc: JiyiError) -> JSONResponse:
        return error_response(422, str(exc))


# What the API endpoints may answer besides 200, for /openapi.json.
ERRORS = {
    400: {"model": ErrorResponse, "description": "malformed JSON or invalid UTF-8"},
    401: {"model": ErrorResponse, "description": "missing or wrong token"},
    413: {"model": ErrorResponse, "description": "body over --max-body-bytes"},
    422: {"model": ErrorResponse, "description": "invalid input; the message names the field"},
    429: {"model": ErrorResponse, "description": "queue full; see Retry-After"},
    503: {"model": ErrorResponse, "description": "shutting down"},
    504: {"model": ErrorResponse, "description": "over --timeout-s"},
}
NOT_FOUND = {404: {"model": ErrorResponse, "description": "no memory loaded"}}
NOT_IMPLEMENTED = {501: {"model": ErrorResponse, "description": "not available for this model"}}


__all__ = [
    "ERRORS",
    "ERROR_CODES",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "ApiError",
    "error_response",
    "field_path",
    "install_handlers",
    "is_json",
    "validation_message",
]
