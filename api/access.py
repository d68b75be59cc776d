"""Route guards: each router of operator routes has one dependency that authorizes the call
(shared.access.authorize, before the body is validated, so a caller without the right gets 403
whatever it sends) and, once a change succeeded, records it in the audit trail.

The action follows from the route: on a queue, GET of its jobs or dead letters is READ, other
GETs are VIEW, anything else is OPERATE; stack-wide routes (schedules, scheduler, detailed
health) are INSPECT to read and ADMINISTER to change. A new route on these routers is guarded
and audited without a line of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Depends, Request

from api.deps import CurrentUser, audit_log, job_service
from shared.access import Action, Identity, authorize
from shared.adapters import policies
from shared.audit import entry_for
from shared.errors import JobqError
from shared.observability import emit, logger

READS = ("GET", "HEAD", "OPTIONS")


async def request_body(request: Request) -> bytes:
    """The raw body, read once (Starlette keeps it for the route), for the audit entry."""
    return await request.body()


def request_id_of(request: Request) -> str | None:
    event = request.scope.get("aws.event") or {}
    return (event.get("requestContext") or {}).get("requestId")


def _record(request: Request, caller: Identity, body: bytes) -> None:
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    log = audit_log()
    entry = entry_for(
        caller,
        action=getattr(route, "name", None) or template,
        route=f"{request.method} {template}",
        request_id=request_id_of(request),
        target={k: str(v) for k, v in request.path_params.items()},
        query=request.url.query,
        body=body,
        at_ms=log.clock(),
    )
    try:
        log.record(entry)
    except JobqError:
        # The action is done and cannot be taken back; say loudly that its record is missing.
        logger.error("audit entry not written", extra={"audit": entry.model_dump(by_alias=True)})
        emit("AuditWriteFailed", entry.queue or "-")


def _queue_action(request: Request) -> Action:
    if request.method not in READS:
        return Action.OPERATE
    path = request.url.path.rstrip("/")
    return Action.READ if path.endswith(("/jobs", "/dead-letters")) else Action.VIEW


def queue_guard(request: Request, caller: CurrentUser, body: bytes = Depends(request_body)) -> Iterator[None]:
    """``/queues...``: the queue's policy decides (admins always; readers read; queue groups as listed)."""
    name = request.path_params.get("name")
    if name is None:
        # GET /queues: every queue for admins and readers, the ones their groups see for others.
        if not (caller.sees_everything or caller.groups):
            authorize(caller, Action.INSPECT)
    else:
        action = _queue_action(request)
        if not (caller.sees_everything or caller.groups):
            authorize(caller, action)  # nothing to look up: no queue's policy names this caller
        if not caller.is_admin:
            authorize(caller, action, policies.get_policy(job_service().directory.get(name)).access, queue=name)
    yield
    if request.method not in READS:
        _record(request, caller, body)


def stack_guard(request: Request, caller: CurrentUser, body: bytes = Depends(request_body)) -> Iterator[None]:
    """Stack-wide operator routes: readers and admins read, admins change."""
    write = request.method not in READS
    authorize(caller, Action.ADMINISTER if write else Action.INSPECT)
    yield
    if write:
        _record(request, caller, body)


QueueGuard: Any = Depends(queue_guard, scope="function")
StackGuard: Any = Depends(stack_guard, scope="function")

__all__ = ["QueueGuard", "StackGuard", "audit_log", "queue_guard", "request_id_of", "stack_guard"]
