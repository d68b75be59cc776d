"""API Gateway (HTTP API) in front of the ASGI app: routes, the JWT authorizer, the event.

On AWS, API Gateway matches the request to a route of the template's HttpApi, runs the
route's JWT authorizer, and hands the Lambda (Mangum) an event whose
``requestContext.authorizer.jwt.claims`` holds the token's claims. Mangum exposes that
event as ``scope["aws.event"]``, and the app reads identity only from there. This ASGI
middleware does the same in front of the app served by uvicorn:

* routes and their authorizers come from the template (``HttpApiSpec``): ``GET /health``
  etc. are public (``Auth: Authorizer: NONE``), ``ANY /{proxy+}`` needs the JWT;
* no route: 404 ``{"message":"Not Found"}``; missing or invalid token: 401
  ``{"message":"Unauthorized"}``, as API Gateway answers;
* validation as API Gateway's: a ``kid`` from the issuer's JWKS, an RSA signature,
  ``iss`` equal to the configured issuer, ``aud`` (or ``client_id``) among the configured
  audiences, ``exp`` / ``nbf`` / ``iat``;
* claims are passed as HTTP APIs pass them: every value a string; arrays as
  ``"[a b]"`` (so ``"cognito:groups": ["admin"]`` arrives as ``"[admin]"``); ``scopes``
  null for routes without authorization scopes.

The issuer's JWKS and discovery document are served under ``/local-issuer/``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import jwt

from infra.local.issuer import LocalIssuer
from infra.local.provision import FunctionSpec, HttpApiSpec, HttpRouteSpec, JwtAuthorizerSpec
from infra.local.runtime import LambdaContext

log = logging.getLogger("jobq.local.auth")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ApiGatewayEmulator", "api_for_function", "render_claims"]

_RSA_ALGORITHMS = ["RS256", "RS384", "RS512"]


def _render_claim(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        # HTTP API's rendering of array claims: "[admin editor]" (bracketed, space separated).
        return "[" + " ".join(_render_claim(v) for v in value) + "]"
    if isinstance(value, dict):
        # Not documented for HTTP APIs; JSON text is the least surprising stand-in.
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render_claims(claims: dict[str, Any]) -> dict[str, str]:
    """Claims as an HTTP API JWT authorizer passes them to the integration: all strings."""
    return {k: _render_claim(v) for k, v in claims.items() if v is not None}


@dataclass(frozen=True)
class _CompiledRoute:
    route: HttpRouteSpec
    pattern: re.Pattern[str]
    greedy: bool
    literal_segments: int
    param_names: tuple[str, ...]


def _compile(route: HttpRouteSpec) -> _CompiledRoute:
    parts: list[str] = []
    names: list[str] = []
    literals = 0
    greedy = False
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        match = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
        if match:
            names.append(match.group(1))
            greedy = greedy or bool(match.group(2))
            parts.append(f"(?P<p{len(names) - 1}>.+)" if match.group(2) else f"(?P<p{len(names) - 1}>[^/]+)")
        else:
            literals += 1
            parts.append(re.escape(segment))
    return _CompiledRoute(route, re.compile("/" + "/".join(parts)), greedy, literals, tuple(names))


class ApiGatewayEmulator:
    """ASGI middleware: route matching, JWT authorization and ``scope["aws.event"]``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api: HttpApiSpec,
        issuer: LocalIssuer,
        account_id: str = "123456789012",
        stage: str = "$default",
    ) -> None:
        self.app = app
        self.api = api
        self.issuer = issuer
        self.account_id = account_id
        self.stage = stage
        self._routes = [_compile(r) for r in api.routes]
        self._keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(issuer.jwks()).keys}
        for authorizer in api.authorizers.values():
            if authorizer.issuer != issuer.issuer:
                log.warning(
                    "authorizer %s trusts %s, not the local issuer %s: locally minted tokens will be rejected",
                    authorizer.name,
                    authorizer.issuer,
                    issuer.issuer,
                )

    # -- ASGI --

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        path: str = scope.get("path", "/")
        if path.startswith("/local-issuer/"):
            await self._issuer_endpoint(path, send, request_id)
            return
        method: str = scope["method"].upper()
        matched = self._match(method, path)
        if matched is None:
            await _json_response(send, 404, {"message": "Not Found"}, request_id)
            return
        compiled, path_params = matched
        route = compiled.route
        authorizer_context: dict[str, Any] | None = None
        if route.authorizer is not None:
            authorizer = self.api.authorizers.get(route.authorizer)
            claims = self._authorize(authorizer, scope) if authorizer else None
            if claims is None:
                await _json_response(send, 401, {"message": "Unauthorized"}, request_id)
                return
            authorizer_context = {"jwt": {"claims": render_claims(claims), "scopes": None}}
        scope = dict(scope)
        scope["aws.event"] = self._event(scope, route, path_params, authorizer_context, request_id)
        scope["aws.context"] = LambdaContext(route.function, request_id=request_id)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"apigw-requestid", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_request_id)

    # -- routing --

    def _match(self, method: str, path: str) -> tuple[_CompiledRoute, dict[str, str]] | None:
        """API Gateway's choice: full matches before greedy ones, literal segments before
        path variables, an exact method before ANY."""
        best: tuple[tuple[int, int, int, int], _CompiledRoute, dict[str, str]] | None = None
        for compiled in self._routes:
            if compiled.route.method not in ("ANY", method):
                continue
            match = compiled.pattern.fullmatch(path)
            if match is None:
                continue
            rank = (
                0 if compiled.greedy else 1,
                compiled.literal_segments,
                1 if compiled.route.method == method else 0,
                len(compiled.route.path),
            )
            if best is None or rank > best[0]:
                params = {name: match.group(f"p{i}") for i, name in enumerate(compiled.param_names)}
                best = (rank, compiled, params)
        return (best[1], best[2]) if best else None

    # -- the JWT authorizer --

    def _authorize(self, authorizer: JwtAuthorizerSpec, scope: Scope) -> dict[str, Any] | None:
        token = self._identity(authorizer, scope)
        if not token:
            return None
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid"))
            if key is None or header.get("alg") not in _RSA_ALGORITHMS:
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=_RSA_ALGORITHMS,
                issuer=authorizer.issuer,
                options={"verify_aud": False, "require": ["exp", "iss"]},
            )
        except jwt.PyJWTError as exc:
            log.debug("token rejected: %s", exc)
            return None
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if not set(audiences) & set(authorizer.audience) and claims.get("client_id") not in authorizer.audience:
            log.debug("token rejected: audience %s not in %s", audiences, authorizer.audience)
            return None
        return claims

    @staticmethod
    def _identity(authorizer: JwtAuthorizerSpec, scope: Scope) -> str | None:
        source = authorizer.identity_source.split(",")[0].strip()
        if not source.lower().startswith("$request.header."):
            log.warning("identity source %s is not emulated", source)
            return None
        wanted = source[len("$request.header.") :].lower().encode()
        for name, value in scope.get("headers", []):
            if name.lower() == wanted:
                token = value.decode("latin-1").strip()
                # API Gateway accepts the token with or without the "Bearer " prefix.
                if token[:7].lower() == "bearer ":
                    token = token[7:].strip()
                return token or None
        return None

    # -- the Lambda event (payload format 2.0) --

    def _event(
        self,
        scope: Scope,
        route: HttpRouteSpec,
        path_params: dict[str, str],
        authorizer: dict[str, Any] | None,
        request_id: str,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        host = headers.get("host", "127.0.0.1")
        now = time.time()
        route_key = f"{route.method} {route.path}"
        client = scope.get("client") or ("127.0.0.1", 0)
        request_context: dict[str, Any] = {
            "accountId": self.account_id,
            "apiId": self.api.api_id,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": scope["method"].upper(),
                "path": scope.get("path", "/"),
                "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
                "sourceIp": client[0],
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": self.stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        }
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": scope.get("path", "/"),
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": request_context,
            "isBase64Encoded": False,
            # The body is not copied here: the app reads it from the ASGI stream.
        }
        if query:
            event["queryStringParameters"] = query
        if path_params:
            event["pathParameters"] = path_params
        return event

    # -- the issuer's endpoints --

    async def _issuer_endpoint(self, path: str, send: Send, request_id: str) -> None:
        if path == "/local-issuer/.well-known/jwks.json":
            await _json_response(send, 200, self.issuer.jwks(), request_id)
        elif path == "/local-issuer/.well-known/openid-configuration":
            await _json_response(send, 200, self.issuer.openid_configuration(), request_id)
        else:
            await _json_response(send, 404, {"message": "Not Found"}, request_id)


async def _json_response(send: Send, status: int, body: Any, request_id: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"apigw-requestid", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def api_for_function(apis: list[HttpApiSpec], function: FunctionSpec | None = None) -> HttpApiSpec:
    """The HttpApi whose routes reach ``function`` (or the only one)."""
    candidates = [a for a in apis if function is None or any(r.function == function for r in a.routes)]
    if len(candidates) != 1:
        raise ValueError(f"expected one HttpApi in front of the app, found {len(candidates)}")
    return candidates[0]
