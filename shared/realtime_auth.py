"""The WebSocket API's $connect check: the HTTP API's JWT authorizer rules, in the handler.

API Gateway's WebSocket APIs have no JWT authorizer (only Lambda authorizers and IAM), so the
$connect handler verifies the token itself, against the same issuer and audiences the HTTP
API's authorizer is configured with (template parameters JwtIssuer / JwtAudience):

* the signing key is the issuer's, found by ``kid`` in its JWKS (``jwks_uri`` of
  ``<issuer>/.well-known/openid-configuration``), fetched once per container and again only
  for a ``kid`` it does not know (key rotation);
* RS256/384/512 only; ``iss`` equals the issuer; ``aud`` (or Cognito's ``client_id``) among
  the audiences; ``exp`` / ``nbf`` / ``iat`` checked;
* the user is ``sub``; its groups are the groups claim read as the HTTP API reads it
  (``shared.access.groups_of``: exact names); an admin is in the admin group, a read-only
  operator in the reader group. The caller is the same ``Identity`` the HTTP API builds.

The token comes in the ``Authorization`` header (``Bearer <jwt>``) or, since browsers cannot set
headers on a WebSocket, the ``token`` query parameter.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.request import urlopen

import jwt

from shared.access import Identity, groups_of

_ALGORITHMS = ["RS256", "RS384", "RS512"]
_REFRESH_SECONDS = 60.0


class Unauthorized(Exception):
    """The token is missing or not valid: $connect answers 401 and API Gateway refuses the upgrade."""


def token_of(headers: Mapping[str, str] | None, query: Mapping[str, str] | None) -> str | None:
    for name, value in (headers or {}).items():
        if name.lower() == "authorization" and value:
            value = value.strip()
            return (value[7:].strip() if value[:7].lower() == "bearer " else value) or None
    token = (query or {}).get("token")
    return token.strip() if token and token.strip() else None


class TokenVerifier:
    def __init__(
        self,
        issuer: str,
        audiences: list[str],
        *,
        groups_claim: str = "cognito:groups",
        admin_group: str = "admin",
        reader_group: str = "",
        timeout: float = 3.0,
    ) -> None:
        if not issuer:
            raise ValueError("no JWT issuer configured (JOBQ_JWT_ISSUER)")
        self.issuer = issuer.rstrip("/")
        self.audiences = [a for a in audiences if a]
        self.groups_claim = groups_claim
        self.admin_group = admin_group
        self.reader_group = reader_group
        self.timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def identity(self, token: str | None) -> Identity:
        if not token:
            raise Unauthorized("no token: send Authorization: Bearer <jwt> or ?token=<jwt>")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise Unauthorized(f"not a JWT: {err}") from None
        if header.get("alg") not in _ALGORITHMS:
            raise Unauthorized("the token is not signed with RS256/384/512")
        key = self._key(str(header.get("kid") or ""))
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=_ALGORITHMS, issuer=self.issuer, options={"verify_aud": False, "require": ["exp", "iss", "sub"]}
            )
        except jwt.PyJWTError as err:
            raise Unauthorized(f"token rejected: {err}") from None
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if not set(audiences) & set(self.audiences) and claims.get("client_id") not in self.audiences:
            raise Unauthorized("token rejected: audience not accepted")
        groups = frozenset(groups_of(claims.get(self.groups_claim)))
        return Identity(
            user_id=str(claims["sub"]),
            is_admin=self.admin_group in groups,
            groups=groups,
            is_reader=bool(self.reader_group) and self.reader_group in groups,
        )

    def _key(self, kid: str) -> Any:
        with self._lock:
            # An unknown kid: the issuer may have rotated its keys; re-read them at most once a minute,
            # so made-up kids cannot turn connects into requests to the issuer.
            if kid not in self._keys and time.monotonic() - self._fetched_at > _REFRESH_SECONDS:
                self._keys = self._fetch_keys()
                self._fetched_at = time.monotonic()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("the token's key is not the issuer's")
        return key

    def _fetch_keys(self) -> dict[str, Any]:
        try:
            discovery = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            jwks = self._get_json(str(discovery["jwks_uri"]))
            return {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id}
        except (OSError, ValueError, KeyError, jwt.PyJWTError) as err:
            raise Unauthorized(f"the issuer's keys could not be read: {err}") from None

    def _get_json(self, url: str) -> dict[str, Any]:
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError(f"refusing to fetch keys from {url}: https only")
        with urlopen(url, timeout=self.timeout) as response:  # nosec B310: the scheme is checked above (https, or loopback http)
            return json.loads(response.read(1024 * 1024))
