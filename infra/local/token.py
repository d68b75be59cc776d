"""Mint a token the local stack accepts.

    python -m infra.local.token --user alice          # a user
    python -m infra.local.token --user root --admin   # an admin ("cognito:groups": ["admin"])
    python -m infra.local.token --user rita --group readonly           # the read-only operator role
    python -m infra.local.token --client svc-billing                   # a service client (client credentials)

The issuer URL contains the API port; it is read from the state the running stack
wrote (``.jobq-local/stack.json``), else built from ``--port`` (default 8000).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.local.issuer import (
    AUDIENCE,
    DEFAULT_API_PORT,
    DEFAULT_TOKEN_SECONDS,
    LocalIssuer,
    issuer_url,
    read_stack_state,
)

__all__ = ["main", "mint_client_token", "mint_token"]

SERVICE_SCOPE = "jobq/on-behalf-of"  # the stack's ServiceClientScope default


def mint_token(
    user_id: str,
    admin: bool = False,
    *,
    groups: Iterable[str] = (),
    expires_in: int = DEFAULT_TOKEN_SECONDS,
    claims: Mapping[str, Any] | None = None,
    issuer: str | None = None,
    port: int | None = None,
    audience: str | None = None,
    state_dir: str | Path | None = None,
) -> str:
    """A signed JWT for ``user_id``. Issuer: ``issuer``, else ``port``, else the running stack's, else port 8000."""
    state = read_stack_state(state_dir) or {}
    if issuer is None:
        issuer = issuer_url(port) if port is not None else state.get("issuer") or issuer_url(DEFAULT_API_PORT)
    local = LocalIssuer.load(state_dir, issuer=issuer, audience=audience or state.get("audience") or AUDIENCE)
    return local.mint(user_id, admin=admin, groups=groups, expires_in=expires_in, claims=claims)


def mint_client_token(client_id: str, *, scope: str = SERVICE_SCOPE, **kwargs: Any) -> str:
    """A client-credentials access token as Cognito issues one: ``sub`` and ``client_id`` are the
    client's id, ``scope`` holds its scopes, no groups. (The local audience stays in ``aud`` so the
    emulated authorizer accepts it; on AWS list the app client id in JwtAudience.)"""
    claims = {"client_id": client_id, "scope": scope, "token_use": "access", "cognito:username": None, **(kwargs.pop("claims", None) or {})}
    return mint_token(client_id, claims=claims, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.token", description=__doc__.split("\n\n")[0])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the user id (the token's sub)")
    who.add_argument("--client", help="a service client's id: a client-credentials token with --scope")
    parser.add_argument("--scope", default=SERVICE_SCOPE, help=f"the client's scopes, space separated (default {SERVICE_SCOPE})")
    parser.add_argument("--admin", action="store_true", help='member of the "admin" group')
    parser.add_argument("--group", action="append", default=[], help="another group (repeatable)")
    parser.add_argument("--hours", type=float, default=DEFAULT_TOKEN_SECONDS / 3600, help="validity (default 12)")
    parser.add_argument("--claims", default=None, help="extra claims as a JSON object")
    parser.add_argument("--port", type=int, default=None, help="the stack's API port, when no stack state is found")
    parser.add_argument("--issuer", default=None, help="override the issuer URL")
    parser.add_argument("--state-dir", default=None, help="the stack's state directory (default .jobq-local)")
    args = parser.parse_args(argv)
    extra = json.loads(args.claims) if args.claims else None
    if extra is not None and not isinstance(extra, dict):
        parser.error("--claims must be a JSON object")
    if args.client:
        print(
            mint_client_token(
                args.client, scope=args.scope, expires_in=int(args.hours * 3600), claims=extra, issuer=args.issuer, port=args.port, state_dir=args.state_dir
            )
        )
        return 0
    print(
        mint_token(
            args.user,
            args.admin,
            groups=args.group,
            expires_in=int(args.hours * 3600),
            claims=extra,
            issuer=args.issuer,
            port=args.port,
            state_dir=args.state_dir,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
