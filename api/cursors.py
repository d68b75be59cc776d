"""Listing cursors are signed: only a cursor this stack issued, for the same listing, is accepted.

A cursor is the store's opaque page key plus an HMAC-SHA256 tag over the listing it
belongs to (route and filters) and that key. Anything else (tampered, forged, another
listing's, another stack's) is a 400 before DynamoDB sees it, so no client-made key can
reach a Query.

The key is per stack and never in code or logs: on AWS the stack creates a Secrets
Manager secret (``CursorSigningSecret``) and the ApiFunction reads it once per container
(``JOBQ_CURSOR_SECRET_ARN``); the local stack generates one per run (``JOBQ_CURSOR_KEY``).
Without either (unit tests), a random key per process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from shared.adapters import clients
from shared.errors import Invalid, Unavailable
from shared.observability import logger
from shared.settings import Settings

_TAG_BYTES = 16
_INVALID = "cursor is not valid: pass back the nextCursor of the previous page of the same listing"


class CursorSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, listing: str, inner: str) -> str:
        mac = hmac.new(self._key, f"{listing}\n{inner}".encode(), hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def seal(self, inner: str | None, listing: str) -> str | None:
        """The cursor a client gets for the store's ``inner`` page key of ``listing``."""
        return None if inner is None else f"{inner}.{self._tag(listing, inner)}"

    def open(self, cursor: str | None, listing: str) -> str | None:
        """The store's page key inside a cursor this stack issued for ``listing``; Invalid otherwise."""
        if cursor is None:
            return None
        inner, dot, tag = cursor.rpartition(".")
        if not dot or not inner or not hmac.compare_digest(tag, self._tag(listing, inner)):
            raise Invalid(_INVALID)
        return inner


def signer_for(settings: Settings) -> CursorSigner:
    """The stack's signer: its key from the settings, else its secret, else one for this process (api/deps.py builds it once)."""
    if settings.cursor_key.get_secret_value():
        return CursorSigner(hashlib.sha256(settings.cursor_key.get_secret_value().encode()).digest())
    if settings.cursor_secret_arn:
        try:
            value = clients.client("secretsmanager").get_secret_value(SecretId=settings.cursor_secret_arn)["SecretString"]
        except Exception as err:
            raise Unavailable("the cursor signing key cannot be read; retry the request") from err
        return CursorSigner(hashlib.sha256(str(value).encode()).digest())
    logger.warning("no cursor signing key configured: using one for this process only")
    return CursorSigner(secrets.token_bytes(32))


__all__ = ["CursorSigner", "signer_for"]
