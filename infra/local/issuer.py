"""The local token issuer: an RSA key pair kept in the state directory, a JWKS, and minting.

On AWS the JWT authorizer trusts an OIDC issuer (Cognito or another provider). Locally
the stack is its own issuer: ``http://127.0.0.1:<port>/local-issuer``, audience
``jobq-local``; the template's ``JwtIssuer`` / ``JwtAudience`` parameters are set to
these, so the authorizer configuration still comes from template.yaml.

The key is generated on first use and kept (``.jobq-local/issuer-key.pem``, mode 0600,
gitignored), so tokens survive restarts of the stack. This module imports no AWS or web
libraries: ``python -m infra.local.token`` stays fast.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".jobq-local"
DEFAULT_API_PORT = 8000
AUDIENCE = "jobq-local"
ADMIN_GROUP = "admin"
GROUPS_CLAIM = "cognito:groups"
DEFAULT_TOKEN_SECONDS = 12 * 3600
KEY_FILE = "issuer-key.pem"
STATE_FILE = "stack.json"

__all__ = [
    "ADMIN_GROUP",
    "AUDIENCE",
    "DEFAULT_API_PORT",
    "DEFAULT_STATE_DIR",
    "LocalIssuer",
    "issuer_url",
    "read_stack_state",
]


def issuer_url(api_port: int, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{api_port}/local-issuer"


def read_stack_state(state_dir: str | Path | None = None) -> dict[str, Any] | None:
    """What a running (or the last) local stack wrote: issuer, audience, URLs."""
    path = Path(state_dir or DEFAULT_STATE_DIR) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Write-then-rename, so two processes starting at once never read half a key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    if path.exists():  # another process won the race: use its key
        tmp.unlink()
        return _load_or_create_key(path)
    os.replace(tmp, path)
    return key


class LocalIssuer:
    """Signs tokens (RS256) and publishes the matching JWKS."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, issuer: str, audience: str = AUDIENCE) -> None:
        self.private_key = private_key
        self.issuer = issuer
        self.audience = audience
        numbers = private_key.public_key().public_numbers()
        self._public_jwk = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
        # RFC 7638 thumbprint: a stable key ID derived from the key itself.
        canonical = json.dumps(self._public_jwk, separators=(",", ":"), sort_keys=True).encode()
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()

    @classmethod
    def load(cls, state_dir: str | Path | None = None, *, issuer: str | None = None, audience: str = AUDIENCE) -> LocalIssuer:
        key = _load_or_create_key(Path(state_dir or DEFAULT_STATE_DIR) / KEY_FILE)
        return cls(key, issuer=issuer or issuer_url(DEFAULT_API_PORT), audience=audience)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/.well-known/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
        }

    def mint(
        self,
        user_id: str,
        *,
        admin: bool = False,
        groups: Iterable[str] = (),
        expires_in: int = DEFAULT_TOKEN_SECONDS,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A Cognito-like ID token for ``user_id`` (``sub``); admins are in the "admin" group."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": self.audience,
            "iat": now,
            "auth_time": now,
            "exp": now + int(expires_in),
            "jti": str(uuid.uuid4()),
            "token_use": "id",
            "cognito:username": user_id,
        }
        all_groups = list(dict.fromkeys([*groups, *([ADMIN_GROUP] if admin else [])]))
        if all_groups:
            body[GROUPS_CLAIM] = all_groups
        body.update(claims or {})
        return jwt.encode(body, self.private_key, algorithm="RS256", headers={"kid": self.kid})
