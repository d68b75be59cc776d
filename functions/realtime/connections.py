"""The WebSocket API's routes: $connect (verify the JWT), $disconnect, $default (subscribe ...).

API Gateway invokes this with the route's event (``requestContext.routeKey``,
``connectionId``; ``headers`` and ``queryStringParameters`` on $connect; ``body`` on
messages) and reads ``statusCode``: on $connect anything but 2xx refuses the connection.
Replies to messages go back through PostToConnection (shared/realtime.py).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.realtime.services import realtime_service, token_verifier
from shared.errors import JobqError
from shared.observability import logger, traced
from shared.realtime_auth import Unauthorized, token_of


def route(event: dict[str, Any]) -> dict[str, Any]:
    context = event.get("requestContext") or {}
    route_key = context.get("routeKey")
    connection_id = str(context.get("connectionId") or "")
    if not connection_id:
        return {"statusCode": 400, "body": "no connectionId"}
    if route_key == "$connect":
        try:
            caller = token_verifier().identity(token_of(event.get("headers"), event.get("queryStringParameters")))
        except Unauthorized as err:
            logger.info("connection refused", extra={"reason": str(err)})  # never the token itself
            return {"statusCode": 401, "body": "Unauthorized"}
        realtime_service().connect(connection_id, caller)
        logger.info("connected", extra={"connection_id": connection_id, "user_id": caller.user_id, "admin": caller.is_admin, "reader": caller.is_reader})
        return {"statusCode": 200}
    if route_key == "$disconnect":
        removed = realtime_service().disconnect(connection_id)
        logger.info("disconnected", extra={"connection_id": connection_id, "items_removed": removed})
        return {"statusCode": 200}
    try:
        replies = realtime_service().message(connection_id, event.get("body"))
    except JobqError as err:  # the store is down: API Gateway tells the client the message failed
        logger.warning("message not handled", extra={"connection_id": connection_id, "error": err.message})
        return {"statusCode": 500, "body": err.message}
    return {"statusCode": 200, "body": ",".join(r.get("type", "") for r in replies)}


@logger.inject_lambda_context
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return route(event)
