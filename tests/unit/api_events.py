"""API Gateway HTTP API (payload 2.0) events, as the JWT authorizer passes them to the ApiFunction."""

from __future__ import annotations

import json
from typing import Any


def http_event(method: str, path: str, *, body: Any = None, claims: dict[str, str] | None = None, headers: dict[str, str] | None = None, query: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "pytest"},
            "requestId": "req-1",
            "routeKey": "ANY /{proxy+}",
            "stage": "$default",
            "time": "24/Nov/2026:01:00:00 +0000",
            "timeEpoch": 1795482000000,
        },
        "isBase64Encoded": False,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def user(sub: str) -> dict[str, str]:
    return {"sub": sub, "iss": "https://issuer.example.com", "aud": "jobq", "token_use": "access"}


def admin(sub: str = "root") -> dict[str, str]:
    return {**user(sub), "cognito:groups": "[admin]"}


def in_group(sub: str, group: str) -> dict[str, str]:
    """A user in one group, as an HTTP API renders a one-item list claim."""
    return {**user(sub), "cognito:groups": f"[{group}]"}


def service_client(client_id: str, scope: str = "jobq/on-behalf-of") -> dict[str, str]:
    """A client-credentials access token (Cognito's shape: sub and client_id are the app client's id)."""
    return {"sub": client_id, "client_id": client_id, "iss": "https://issuer.example.com", "token_use": "access", "scope": scope}
