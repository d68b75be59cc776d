"""The FastAPI app: routers, error mapping, OpenAPI. Built lazily, no AWS calls at import."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from api.envelope import with_error_envelope
from api.routes import audit, dashboard, flows, health, jobs, maintenance, queues, quotas, scheduler, schedules, webhooks
from api.strict_body import strict_json_body

DESCRIPTION = """\
jobq: a serverless job queue on AWS. Create jobs on a queue; a consumer runs each job's
processor with retries and backoff; failed jobs end in the queue's dead-letter queue.

Every route but `/health` needs `Authorization: Bearer <JWT>`. Responses are
`{"success": true, "data": ...}`; errors are `{"success": false, "error": {"code", "message"}}`.
"""


class StagePath:
    """Behind a named API Gateway stage (``/prod/jobs``) the app sees ``/jobs`` with ``root_path``
    ``/prod``, so routing works and /docs loads ``/prod/openapi.json``. ``$default`` has no prefix."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            stage = ((scope.get("aws.event") or {}).get("requestContext") or {}).get("stage")
            prefix = f"/{stage}" if stage and stage != "$default" else ""
            if prefix and (scope["path"] == prefix or scope["path"].startswith(prefix + "/")):
                scope = {**scope, "path": scope["path"][len(prefix) :] or "/", "root_path": prefix}
        await self.app(scope, receive, send)


class SeedPrefix:
    """Seeds 001, 002 and 004 call ``/api/jobs``, seed 000's frontend ``/api/v1/jobs``: the same routes.
    Added before StagePath, so it sees the path after the stage is taken off."""

    PREFIXES = ("/api/v1", "/api")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix in self.PREFIXES:
                if path.startswith(prefix + "/"):
                    scope = {**scope, "path": path[len(prefix) :]}
                    break
        await self.app(scope, receive, send)


def create_app() -> FastAPI:
    app = FastAPI(title="jobq", version="0.1.0", description=DESCRIPTION, dependencies=[Depends(strict_json_body)])
    app.add_middleware(SeedPrefix)
    app.add_middleware(StagePath)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(maintenance.router)
    app.include_router(flows.router)
    app.include_router(jobs.router)
    app.include_router(webhooks.router)
    app.include_router(queues.router)
    app.include_router(schedules.router)
    app.include_router(scheduler.router)
    app.include_router(quotas.router)
    app.include_router(audit.router)
    app.include_router(dashboard.router)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_error_envelope(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
    return app


app = create_app()
