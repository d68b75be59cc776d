"""Who is calling, from what API Gateway's JWT authorizer put in the request context.

The app never trusts a client-supplied user header: on Lambda, Mangum exposes the
event as ``scope["aws.event"]``; the local stack's authorizer emulation fills in the
same place after checking the token.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request

from shared.jobs import Identity
from shared.settings import Settings


def claims_of(scope: dict[str, Any]) -> dict[str, Any] | None:
    event = scope.get("aws.event") or {}
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims")
    return claims if isinstance(claims, dict) else None


def groups_of(value: Any) -> set[str]:
    """API Gateway passes an array claim as a string like ``[admin users]``; accept every form seen."""
    if isinstance(value, list):
        return {str(v) for v in value}
    if not isinstance(value, str) or not value.strip():
        return set()
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return {str(v) for v in parsed}
        except ValueError:
            text = text[1:-1]
    return {part for part in text.replace(",", " ").split() if part}


def identity_of(request: Request, settings: Settings) -> Identity:
    claims = claims_of(request.scope)
    subject = (claims or {}).get("sub")
    if not subject:
        raise HTTPException(status_code=401, detail="no authenticated user: send a bearer token")
    groups = groups_of(claims.get(settings.admin_groups_claim)) if claims else set()
    return Identity(user_id=str(subject), is_admin=settings.admin_group in groups)
