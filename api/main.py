"""The ApiFunction's Lambda entry: the FastAPI app behind Mangum."""

from __future__ import annotations

from typing import Any

from shared.lambda_init import collector_paused

with collector_paused():
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mangum import Mangum

    from api.app import app
    from shared.observability import logger, traced

# lifespan="off": Mangum would run ASGI start-up on every cold start; start-up work is lazy instead.
_asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _asgi(event, context)  # type: ignore[arg-type]  # Mangum's LambdaContext Protocol and Powertools' class describe one runtime object
