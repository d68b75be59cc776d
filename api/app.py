"""The FastAPI app: routers, error mapping, OpenAPI. Built lazily, no AWS calls at import."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.routes import health, jobs, queues

DESCRIPTION = """\
jobq: a serverless job queue on AWS. Create jobs on a queue; a consumer runs each job's
processor with retries and backoff; failed jobs end in the queue's dead-letter queue.

Every route but `/health` needs `Authorization: Bearer <JWT>`. Responses are
`{"success": true, "data": ...}`; errors are `{"success": false, "error": {"code", "message"}}`.
"""


def create_app() -> FastAPI:
    app = FastAPI(title="jobq", version="0.1.0", description=DESCRIPTION)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(queues.router)
    return app


app = create_app()
