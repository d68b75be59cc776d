"""The request of ``POST /flows``: a tree of jobs, each a ``JobCreate`` with its children (shared/flows.py says how flows work)."""

from __future__ import annotations

from pydantic import Field, field_validator

from shared.client_models import JobCreate
from shared.models import FailurePolicy

MAX_FLOW_NODES = 1000
MAX_FLOW_DEPTH = 10


class FlowNode(JobCreate):
    """A job of a flow: a ``JobCreate`` with its children and what its failure does to its parent."""

    children: list[FlowNode] = Field(default_factory=list, max_length=MAX_FLOW_NODES)
    on_failure: FailurePolicy = Field(
        default=FailurePolicy.FAIL_PARENT,
        description="What this job's failure does to its parent: failParentOnFailure (default), continueParentOnFailure, "
        "ignoreDependencyOnFailure or removeDependencyOnFailure.",
    )

    @field_validator("children")
    @classmethod
    def _no_own_ids(cls, children: list[FlowNode]) -> list[FlowNode]:
        for child in children:
            if child.options.job_id is not None:
                raise ValueError("children take no options.jobId: their ids follow from the root's (root:0, root:0.1, ...)")
            if child.options.deduplication is not None:
                raise ValueError("children take no options.deduplication")
        return children


__all__ = ["MAX_FLOW_DEPTH", "MAX_FLOW_NODES", "FlowNode"]
