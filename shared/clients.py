"""Moved to shared/adapters/clients.py (kept until every caller imports it from there)."""

from shared.adapters.clients import AWS_ERRORS, client, reset

__all__ = ["AWS_ERRORS", "client", "reset"]
