"""Every error a client can see, mapped once to a status code and the error envelope."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import JobqError, TooManyJobs
from shared.observability import logger


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(status_code=status, content={"success": False, "error": body})


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(JobqError)
    async def jobq_error(_: Request, err: JobqError) -> JSONResponse:
        details = err.details if not hasattr(err.details, "model_dump") else None
        response = _error(err.status_code, err.code, err.message, details)
        if isinstance(err, TooManyJobs):
            response.headers["Retry-After"] = str(err.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = [{"field": _where(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in err.errors()]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return _error(400, "VALIDATION_ERROR", f"invalid request: {summary}", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED"}.get(err.status_code, "HTTP_ERROR")
        return _error(err.status_code, code, str(err.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        return _error(500, "INTERNAL_ERROR", "an internal error occurred; it has been logged")
