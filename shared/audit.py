"""The audit trail: who did which administrative action, when, to what, under which request id.

Every change an operator makes through the API (pause, resume, clean, removal, redrive, purge,
policy change, target registration, schedule create / pause / resume / delete / trigger) is
recorded once it succeeded, by the route guard (api/access.py), so no route can forget it.
Entries live ``JOBQ_AUDIT_RETENTION_DAYS`` (the stack's ``AuditRetentionDays``) and then
DynamoDB's TTL deletes them for free. ``GET /audit`` lists them newest first (admins and the
read-only role).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from pydantic import Field

from shared.access import Action, Identity, authorize
from shared.camel import CamelView
from shared.clock import Clock, iso

MAX_BODY_CHARS = 4096  # what a request body may add to an entry: enough to say what changed, bounded


class AuditEntry(CamelView):
    at: str = Field(description="When the action succeeded (UTC).")
    action: str = Field(description="What: the route's operation, e.g. pause_queue, create_schedule.")
    route: str = Field(description="The route, e.g. `POST /queues/{name}/pause`.")
    actor: str = Field(description="Who: the token's sub.")
    groups: list[str] = Field(default_factory=list, description="The caller's groups (exact names).")
    client_id: str | None = Field(default=None, description="A service client's id, when one acted.")
    request_id: str | None = Field(default=None, description="API Gateway's requestContext.requestId.")
    queue: str | None = None
    target: dict[str, str] = Field(default_factory=dict, description="The path parameters: queue name, schedule name, job type.")
    query: str | None = None
    body: Any = Field(default=None, description="The request body (JSON; longer ones cut, with `truncated`).")
    truncated: bool = False


class AuditPage(CamelView):
    entries: list[AuditEntry]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for older entries; null on the last page.")


class AuditStore(Protocol):
    def put(self, entry: AuditEntry, *, expires_at: int) -> None: ...
    def page(self, *, limit: int, cursor: str | None) -> tuple[list[AuditEntry], str | None]: ...


def entry_for(
    caller: Identity,
    *,
    action: str,
    route: str,
    request_id: str | None,
    target: dict[str, str],
    query: str | None,
    body: bytes | None,
    at_ms: int,
) -> AuditEntry:
    text = body.decode("utf-8", "replace") if body else ""
    truncated = len(text) > MAX_BODY_CHARS
    parsed: Any = None
    if text and not truncated:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
    elif truncated:
        parsed = text[:MAX_BODY_CHARS]
    return AuditEntry(
        at=iso(at_ms),
        action=action,
        route=route,
        actor=caller.user_id if caller.client_id is None else caller.client_id,
        groups=sorted(caller.groups),
        client_id=caller.client_id,
        request_id=request_id,
        queue=target.get("name") if route.startswith(("POST /queues", "PATCH /queues", "PUT /queues", "DELETE /queues")) else None,
        target=target,
        query=query or None,
        body=parsed,
        truncated=truncated,
    )


class AuditLog:
    def __init__(self, store: AuditStore, *, retention_days: int, clock: Clock) -> None:
        self.store = store
        self.retention_days = retention_days
        self.clock = clock

    def record(self, entry: AuditEntry) -> None:
        self.store.put(entry, expires_at=self.clock() // 1000 + self.retention_days * 86400)

    def list(self, caller: Identity, *, limit: int, cursor: str | None) -> tuple[list[AuditEntry], str | None]:
        authorize(caller, Action.INSPECT)
        return self.store.page(limit=limit, cursor=cursor)


__all__ = ["AuditEntry", "AuditLog", "AuditPage", "AuditStore", "entry_for"]
