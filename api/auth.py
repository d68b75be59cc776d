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
    """The group names a verified token's groups claim holds, never split inside a name.

    * a JSON list (``["admin", "Domain admin"]``): its items, exactly;
    * a string holding a JSON list (``'["admin"]'``): the same;
    * API Gateway's rendering of a list claim, ``[a b c]``: it joins the names with spaces,
      so ``[Domain admin]`` may be one group or two. We do not guess: the whole text
      between the brackets is one name. ``[admin]`` is the group ``admin``; ``[not admin]``
      is the group ``not admin``; ``[sales,admin]`` is the group ``sales,admin``. A user
      in several groups is therefore admin behind API Gateway only through a claim that
      arrives as a JSON list or holds just the admin group (README: "Who is admin");
    * any other string: one name.
    """
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    if not isinstance(value, str) or not value:
        return set()
    if value.startswith("[") and value.endswith("]"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {value[1:-1]}
        return {v for v in parsed if isinstance(v, str)} if isinstance(parsed, list) else set()
    return {value}


def identity_of(request: Request, settings: Settings) -> Identity:
    claims = claims_of(request.scope)
    subject = (claims or {}).get("sub")
    if not subject:
        raise HTTPException(status_code=401, detail="no authenticated user: send a bearer token")
    groups = groups_of(claims.get(settings.admin_groups_claim)) if claims else set()
    return Identity(user_id=str(subject), is_admin=settings.admin_group in groups)
