"""Who is calling, from what API Gateway's JWT authorizer put in the request context.

The app never trusts a client-supplied user header: on Lambda, Mangum exposes the
event as ``scope["aws.event"]``; the local stack's authorizer emulation fills in the
same place after checking the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request

from shared.access import Identity, groups_of
from shared.errors import Forbidden, Invalid
from shared.settings import Settings


def claims_of(scope: Mapping[str, Any]) -> dict[str, Any] | None:
    event = scope.get("aws.event") or {}
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims")
    return claims if isinstance(claims, dict) else None


def scopes_of(claims: dict[str, Any]) -> set[str]:
    """OAuth scopes: the ``scope`` claim is space separated (RFC 6749); some issuers send ``scp`` as a list."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
            found.update(inner.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


ON_BEHALF_OF_HEADER = "x-on-behalf-of"


def identity_of(request: Request, settings: Settings) -> Identity:
    claims = claims_of(request.scope)
    subject = (claims or {}).get("sub")
    if not subject or not claims:
        raise HTTPException(status_code=401, detail="no authenticated user: send a bearer token")
    on_behalf_of = request.headers.get(ON_BEHALF_OF_HEADER)
    if settings.service_client_scope and settings.service_client_scope in scopes_of(claims):
        # A machine client (client-credentials token): it has no groups; it acts for the user it names.
        client = Identity(user_id=str(subject), client_id=str(claims.get("client_id") or subject))
        if on_behalf_of:
            if not 1 <= len(on_behalf_of) <= 256:
                raise Invalid("X-On-Behalf-Of must be 1 to 256 characters")
            return client.acting_for(on_behalf_of)
        return client
    if on_behalf_of:
        raise Forbidden("only service clients may act on behalf of a user (X-On-Behalf-Of)")
    groups = frozenset(groups_of(claims.get(settings.admin_groups_claim)))
    return Identity(
        user_id=str(subject),
        is_admin=settings.admin_group in groups,
        groups=groups,
        is_reader=bool(settings.reader_group) and settings.reader_group in groups,
    )
