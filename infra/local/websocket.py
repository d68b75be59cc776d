"""API Gateway's WebSocket API, emulated on 127.0.0.1: the routes and the @connections API.

On AWS a WebSocket API (template.yaml's ``AWS::ApiGatewayV2::Api`` with ``ProtocolType:
WEBSOCKET``) invokes a Lambda per route: ``$connect`` when a client opens
``wss://<api>/<stage>`` (a non-2xx ``statusCode`` refuses it), then one route per message
(chosen by ``RouteSelectionExpression``, e.g. ``$request.body.action``; ``$default`` when no
route matches), and ``$disconnect`` when it closes. Functions answer through the management
API: ``POST https://<api>/<stage>/@connections/<id>`` (PostToConnection; 410 GoneException
for a connection that is not there), ``GET`` (GetConnection), ``DELETE`` (close it).

This ASGI app does the same on one port, served by uvicorn: WebSocket connections at
``ws://127.0.0.1:<port>/<stage>`` and the management API over HTTP at
``http://127.0.0.1:<port>/<stage>/@connections/<id>``. The provisioner gives the API this
``ApiEndpoint``, so ``JOBQ_WEBSOCKET_ENDPOINT`` (``${WebSocketApi.ApiEndpoint}/${WebSocketStage}``)
points the handlers' boto3 ``apigatewaymanagementapi`` client here. Routes, integrations and
stages come from the template's resources; the events have the fields Lambda gets from API
Gateway (``requestContext`` with routeKey, eventType, connectionId, stage, apiId, ...).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from infra.local.provision import FunctionSpec, ProvisionedStack
from infra.local.runtime import Handler, LambdaContext

log = logging.getLogger("jobq.local.websocket")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

__all__ = ["TokenRedaction", "WebSocketApiEmulator", "WebSocketApiSpec", "WebSocketRoute", "websocket_apis"]


class TokenRedaction(logging.Filter):
    """uvicorn logs a WebSocket's path with its query: never the ``token`` a browser passes there.

    It also reports a refused $connect (a denial response) as "returned without completing
    handshake": that one is how API Gateway refuses, not an error, so it is dropped.
    """

    _TOKEN = re.compile(r"([?&]token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if "without completing handshake" in str(record.msg):
            return False
        if record.args:
            record.args = tuple(self._TOKEN.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args)
        record.msg = self._TOKEN.sub(r"\1<redacted>", str(record.msg))
        return True

_INTEGRATION_FUNCTION = re.compile(r"/functions/(arn:[^/]+)/invocations")
_MAX_FRAME_BYTES = 32 * 1024  # API Gateway's WebSocket frame limit (a message is up to 128 KiB)
_MAX_POST_BYTES = 128 * 1024


@dataclass(frozen=True)
class WebSocketRoute:
    route_key: str
    function: FunctionSpec


@dataclass
class WebSocketApiSpec:
    logical_id: str
    api_id: str
    selection_expression: str
    stage: str
    routes: dict[str, WebSocketRoute] = field(default_factory=dict)


def websocket_apis(stack: ProvisionedStack) -> list[WebSocketApiSpec]:
    """The stack's WebSocket APIs with their routes, from the provisioned resources."""
    functions = {fn.arn: fn for fn in stack.all_functions()}
    records = [r for s in stack.walk() for r in s.resources.values()]
    by_ref = {(r.type, str(r.ref)): r for r in records}
    apis = []
    for api in records:
        if api.type != "AWS::ApiGatewayV2::Api" or api.properties.get("ProtocolType") != "WEBSOCKET":
            continue
        stages = [r for r in records if r.type == "AWS::ApiGatewayV2::Stage" and r.properties.get("ApiId") == api.ref]
        spec = WebSocketApiSpec(
            logical_id=api.logical_id,
            api_id=str(api.ref),
            selection_expression=str(api.properties.get("RouteSelectionExpression", "$request.body.action")),
            stage=str(stages[0].ref) if stages else "$default",
        )
        for route in records:
            if route.type != "AWS::ApiGatewayV2::Route" or route.properties.get("ApiId") != api.ref:
                continue
            target = str(route.properties.get("Target", ""))
            integration = by_ref.get(("AWS::ApiGatewayV2::Integration", target.removeprefix("integrations/")))
            match = _INTEGRATION_FUNCTION.search(str((integration.properties if integration else {}).get("IntegrationUri", "")))
            function = functions.get(match.group(1)) if match else None
            if function is None:
                log.warning("%s: route %s has no Lambda integration here; not emulated", api.logical_id, route.properties.get("RouteKey"))
                continue
            key = str(route.properties["RouteKey"])
            spec.routes[key] = WebSocketRoute(key, function)
        apis.append(spec)
    return apis


def _connection_id() -> str:
    # API Gateway's ids look like "L0SM9cOFvHcCIhw=": 10 random bytes, base64 (URL-safe here: never a "/").
    return base64.urlsafe_b64encode(secrets.token_bytes(10)).decode()


@dataclass
class _Connection:
    connection_id: str
    outbox: asyncio.Queue[str | None]
    connected_at: int
    source_ip: str
    user_agent: str
    last_active_at: int


class WebSocketApiEmulator:
    """One WebSocket API: an ASGI app for uvicorn (``websocket`` and ``http`` scopes)."""

    def __init__(self, api: WebSocketApiSpec, resolve: Callable[[FunctionSpec], Handler], *, account_id: str = "123456789012") -> None:
        self.api = api
        self.resolve = resolve
        self.account_id = account_id
        self.connections: dict[str, _Connection] = {}
        self.stats = {"connects": 0, "refused": 0, "messages": 0, "posts": 0, "gone": 0}
        self._selection_key = self.api.selection_expression.removeprefix("$request.body.")
        self._stage_path = "" if api.stage == "$default" else f"/{api.stage}"

    # -- ASGI --

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._management(scope, receive, send)

    # -- the client side: $connect, messages, $disconnect --

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if scope.get("path", "/").rstrip("/") not in (self._stage_path, ""):
            await self._refuse(send, 403, {"message": "Forbidden"})
            return
        connection_id = _connection_id()
        headers = _headers(scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        client = scope.get("client") or ("127.0.0.1", 0)
        now = int(time.time() * 1000)
        connection = _Connection(connection_id, asyncio.Queue(), now, client[0], headers.get("user-agent", ""), now)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "requestContext": self._context("$connect", "CONNECT", connection),
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        status = await self._invoke("$connect", event)
        if status is not None and not 200 <= status < 300:
            self.stats["refused"] += 1
            await self._refuse(send, status, {"message": "Unauthorized" if status == 401 else "Forbidden"})
            return
        self.connections[connection_id] = connection
        self.stats["connects"] += 1
        await send({"type": "websocket.accept"})
        writer = asyncio.create_task(self._write(connection, send))
        close_code = 1000
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    close_code = int(message.get("code") or 1005)
                    break
                if message["type"] != "websocket.receive":
                    continue
                body = message.get("text")
                if body is None and message.get("bytes") is not None:
                    body = message["bytes"].decode("utf-8", "replace")
                if len(body or "") > _MAX_FRAME_BYTES:
                    close_code = 1009  # API Gateway closes a connection that sends a frame over 32 KiB
                    await send({"type": "websocket.close", "code": close_code})
                    break
                connection.last_active_at = int(time.time() * 1000)
                self.stats["messages"] += 1
                await self._message(connection, body or "")
        finally:
            self.connections.pop(connection_id, None)
            await connection.outbox.put(None)
            writer.cancel()
            disconnect = {
                "headers": headers,
                "requestContext": {
                    **self._context("$disconnect", "DISCONNECT", connection),
                    "disconnectStatusCode": close_code,
                    "disconnectReason": "",
                },
                "isBase64Encoded": False,
            }
            await self._invoke("$disconnect", disconnect)

    async def _message(self, connection: _Connection, body: str) -> None:
        route_key = "$default"
        try:
            selected = json.loads(body).get(self._selection_key)
            if isinstance(selected, str) and selected in self.api.routes:
                route_key = selected
        except (ValueError, AttributeError):
            pass
        if route_key not in self.api.routes:
            await connection.outbox.put(json.dumps({"message": "Forbidden", "connectionId": connection.connection_id}))
            return
        context = self._context(route_key, "MESSAGE", connection)
        context["messageId"] = base64.b64encode(secrets.token_bytes(9)).decode()
        event = {"requestContext": context, "body": body, "isBase64Encoded": False}
        status = await self._invoke(route_key, event)
        if status is None or status >= 500:
            # API Gateway's answer when the integration fails.
            await connection.outbox.put(
                json.dumps({"message": "Internal server error", "connectionId": connection.connection_id, "requestId": context["requestId"]})
            )

    async def _write(self, connection: _Connection, send: Send) -> None:
        while True:
            data = await connection.outbox.get()
            if data is None:
                return
            try:
                await send({"type": "websocket.send", "text": data})
            except Exception:  # the client went away mid-send; the reader sees the disconnect
                return

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> int | None:
        route = self.api.routes.get(route_key)
        if route is None:
            return 200 if route_key in ("$connect", "$disconnect") else None  # API Gateway: no route, no integration
        handler = self.resolve(route.function)
        context = LambdaContext(route.function, request_id=event["requestContext"]["requestId"])
        try:
            result = await asyncio.to_thread(handler, event, context)
        except Exception:
            log.exception("%s %s raised", route.function.logical_id, route_key)
            return 500
        status = result.get("statusCode", 200) if isinstance(result, dict) else 200
        return int(status)

    async def _refuse(self, send: Send, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        try:
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
                }
            )
            await send({"type": "websocket.http.response.body", "body": payload})
        except Exception:  # a server without the denial-response extension
            await send({"type": "websocket.close", "code": 1008})

    def _context(self, route_key: str, event_type: str, connection: _Connection) -> dict[str, Any]:
        now = datetime.now(tz=UTC)
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": uuid.uuid4().hex[:16],
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "connectedAt": connection.connected_at,
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "requestId": str(uuid.uuid4()),
            "domainName": "127.0.0.1",
            "connectionId": connection.connection_id,
            "apiId": self.api.api_id,
        }

    # -- the @connections management API --

    async def _management(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "/")
        prefix = f"{self._stage_path}/@connections/"
        if not path.startswith(prefix):
            await _respond(send, 404, {"message": "Not Found"})
            return
        connection_id = unquote(path[len(prefix) :])  # boto3 quotes the id's '='
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        connection = self.connections.get(connection_id)
        if connection is None:
            self.stats["gone"] += 1
            await _respond(send, 410, {"message": None}, error_type="GoneException")
            return
        method = scope["method"].upper()
        if method == "POST":
            if len(body) > _MAX_POST_BYTES:
                await _respond(send, 413, {"message": "Message too long"}, error_type="PayloadTooLargeException")
                return
            self.stats["posts"] += 1
            await connection.outbox.put(body.decode("utf-8", "replace"))
            await _respond(send, 200, None)
        elif method == "GET":
            await _respond(
                send,
                200,
                {
                    "connectedAt": _iso(connection.connected_at),
                    "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                    "lastActiveAt": _iso(connection.last_active_at),
                },
            )
        elif method == "DELETE":
            self.connections.pop(connection_id, None)
            await connection.outbox.put(None)
            await _respond(send, 204, None)
        else:
            await _respond(send, 403, {"message": "Forbidden"})


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key, text = name.decode("latin-1"), value.decode("latin-1")
        # API Gateway passes WebSocket $connect headers with their case as sent; clients send lower case here.
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


async def _respond(send: Send, status: int, body: Any, *, error_type: str | None = None) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if error_type:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
