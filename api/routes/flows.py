"""Flow routes (shared/flow_service.py; how flows work: shared/flows.py): create a tree of jobs, read it, page a parent's children."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from api.deps import CurrentUser, Cursors, Flows
from api.envelope import Envelope, error_responses
from api.models import DependencyPage, FlowCreated
from api.routes.jobs import Cursor, JobId, Owner
from shared.client_models import JobPublic
from shared.flow_models import MAX_FLOW_DEPTH, MAX_FLOW_NODES, FlowNode

router = APIRouter(tags=["flows"])


@router.post(
    "/flows",
    status_code=201,
    response_model=Envelope[FlowCreated],
    summary="Create a flow: a parent job with children, any depth, across queues, all or nothing",
    description=f"Each node is a `POST /jobs` body with `children` and `onFailure` (what its failure does to its parent: "
    f"failParentOnFailure, the default; continueParentOnFailure; ignoreDependencyOnFailure; removeDependencyOnFailure). "
    f"Parents wait in `waiting-children` until their children finished; leaves run at once. At most {MAX_FLOW_NODES} jobs, "
    f"{MAX_FLOW_DEPTH} levels. The flow's id is the root's job id (`options.jobId`, or one made for it); children's ids "
    "follow from it (`<root>:0`, `<root>:0.1`, ...). The same root jobId again: the flow that exists (200).",
    responses=error_responses(400, 401, 403, 409, 413, 503) | {200: {"model": Envelope[FlowCreated], "description": "The flow exists"}},
)
def create_flow(body: FlowNode, caller: CurrentUser, flows: Flows, response: Response) -> Envelope[FlowCreated]:
    root, created, count = flows.create(body, caller)
    if not created:
        response.status_code = 200
    return Envelope(data=FlowCreated(flow_id=root.job_id, jobs=count, root=JobPublic.of(root)))


@router.get(
    "/flows/{job_id}",
    response_model=Envelope[dict[str, Any]],
    summary="A flow's tree, each node with its status (and, below the root, its dependency state)",
    responses=error_responses(401, 404),
)
def get_flow(job_id: JobId, caller: CurrentUser, flows: Flows, user_id: Owner = None) -> Envelope[dict[str, Any]]:
    return Envelope(data=flows.tree(job_id, caller, user_id=user_id))


@router.get(
    "/jobs/{job_id}/dependencies",
    response_model=Envelope[DependencyPage],
    summary="A parent's children, paged, by dependency state",
    description="`processed`: finished (with `result`); `unprocessed`: not finished; `failed`: failed under "
    "failParentOnFailure or continueParentOnFailure; `ignored`: failed under ignoreDependencyOnFailure. "
    "`counts`: the parent's `pending` and `failed` children and its `total`.",
    responses=error_responses(400, 401, 404),
)
def job_dependencies(
    job_id: JobId,
    caller: CurrentUser,
    flows: Flows,
    cursors: Cursors,
    status: Annotated[Literal["processed", "unprocessed", "failed", "ignored"] | None, Query(description="Only children in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Cursor = None,
    user_id: Owner = None,
) -> Envelope[DependencyPage]:
    listing = json.dumps(["dependencies", user_id or caller.user_id, job_id, status])
    rows, counts, after = flows.dependencies(job_id, caller, state=status, limit=limit, cursor=cursors.open(cursor, listing), user_id=user_id)
    return Envelope(
        data=DependencyPage(
            dependencies=rows,
            counts={"pending": counts.pending, "failed": counts.failed, "total": counts.total} if counts else None,
            next_cursor=cursors.seal(after, listing),
        )
    )
