"""``GET /audit``: the audit trail, newest first (admins and the read-only operator role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.access import StackGuard, audit_log
from api.deps import CurrentUser, Cursors
from api.envelope import Envelope, error_responses
from shared.audit import AuditLog, AuditPage

router = APIRouter(tags=["audit"], dependencies=[StackGuard])
LISTING = '["audit"]'


@router.get(
    "/audit",
    response_model=Envelope[AuditPage],
    summary="Administrative actions, newest first: who, when, what, request id (admins, read-only operators)",
    responses=error_responses(400, 401, 403, 503),
)
def list_audit(
    caller: CurrentUser,
    cursors: Cursors,
    audit: Annotated[AuditLog, Depends(audit_log)],
    limit: Annotated[int, Query(ge=1, le=100, description="Entries per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=2048, description="`nextCursor` of the previous page")] = None,
) -> Envelope[AuditPage]:
    entries, after = audit.list(caller, limit=limit, cursor=cursors.open(cursor, LISTING))
    return Envelope(data=AuditPage(entries=entries, next_cursor=cursors.seal(after, LISTING)))
