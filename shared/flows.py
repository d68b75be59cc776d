"""Flows: jobs that start jobs, and parents that wait for their children (BullMQ's FlowProducer).

Three ways a job gets children or follow-ups:

- ``POST /flows``: a tree (a parent with children, any depth, across queues) created all or
  nothing; every parent is ``waiting-children``, the leaves run.
- ``job.add_children([...])`` in a processor: when its attempt ends, the job becomes a parent
  (``waiting-children``), and runs again once they finished (``job.children_values()``).
- ``job.add_job(...)`` in a processor (or ``{"jobq": {"addJobs": [...]}}`` in an HTTP target's
  answer): independent follow-up jobs.

Follow-ups and children a processor adds are written in the same TransactWriteItems as the
job's completion (shared/adapters/job_repository.py ``apply_together``), with ids derived from the job,
its attempt's version and their index: a redelivery or a crash can neither create them twice
(the ids exist, the completion did too) nor lose them (no completion without them). The
EventsFunction enqueues them from the stream (``outbox``): a consumer may send only to its
own queue.

How a parent learns that its children finished (``FlowEvents``, run by the EventsFunction on
every stream batch): a child's item changing to completed, failed or cancelled moves its edge
(``pk=<parent>, sk=CHILD#<child>``) from ``unprocessed`` and adds -1 to the parent's ``pending``
counter (``sk=FLOW``), in one transaction conditional on the edge: exactly once per child,
whatever redeliveries of the batch or retries of the child come later. Then the parent is
looked at (one counter read, one job read) and moved with the lifecycle's ``children_done``
or ``fail_for_child`` when it is due; that step is idempotent, so a crash between the two
is repaired by the batch's redelivery.

Failure policies (per child, ``onFailure``; failParentOnFailure is the default):

    failParentOnFailure        edge failed, counter failed +1; the parent fails (and up the tree)
    continueParentOnFailure    edge failed, pending -1; the parent starts at once
    ignoreDependencyOnFailure  edge ignored, pending -1; the parent goes on waiting for the others
    removeDependencyOnFailure  edge deleted, pending -1; likewise

A cancelled child counts as a failed one. Retrying (or redriving) a failed child moves its edge
back to ``unprocessed`` and takes its count back; a parent failed by that child waits again
(``resume_for_child``), and so on up the tree. Cancelling a waiting parent cancels its
unfinished children (each cancels its own); removing a parent removes its tree.

Where each part lives: this module builds the jobs a processor adds (``JobPlanner``, ``FollowUps``)
and reads a parent's children's results; shared/flow_models.py is the request of ``POST /flows``,
shared/flow_service.py the API's use case, shared/flow_events.py the EventsFunction's and the
HealthFunction's parts; the items are shared/adapters/flows.py's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from shared.adapters import queues
from shared.adapters.flows import MAX_TRANSACTION_ITEMS, PROCESSED, FlowStore
from shared.client_models import JobCreate
from shared.clock import iso
from shared.errors import Invalid, JobqError, PermanentJobError
from shared.models import FailurePolicy, Job, JobRef, ParentLink, QueueInfo, QueuePolicy
from shared.ports import JobRepository
from shared.status import JobStatus

S = JobStatus
MAX_FOLLOW_UP_ITEMS = MAX_TRANSACTION_ITEMS - 2  # the job's own update and its counter share the transaction
OUTBOX_MAX_DELAY_MS = 900_000  # follow-ups wait at most SQS's 15-minute message delay


def derived_id_base(user_id: str, job_id: str, limit: int) -> str:
    """The prefix of ids derived from a job's: the id itself, or a digest when it is long."""
    return job_id if len(job_id) <= limit else hashlib.sha256(f"{user_id}\n{job_id}".encode()).hexdigest()[:32]


# ---- a job as a processor or a flow asks for it -----------------------------------------------------
class JobPlanner:
    """Builds the jobs a flow or a processor asks for: checked against their queue, not stored yet."""

    def __init__(
        self,
        directory: queues.QueueDirectory,
        accepts: Callable[[str, str], bool] | None = None,
        defaults: Callable[[QueueInfo], QueuePolicy] = QueuePolicy.defaults_for,
    ) -> None:
        self.directory = directory
        self.accepts = accepts
        # A consumer reads only its own queue's settings: another queue's defaults are the template's.
        self.defaults = defaults

    def follow_up(self, request: JobCreate, owner: Job, job_id: str, *, parent: ParentLink | None, now: int) -> Job:
        """A job a processor added: the owner's user's, enqueued from the stream (``outbox``)."""
        if request.queue is None:  # the API infers a queue from the type; a consumer cannot see every queue's types
            raise Invalid(f"a job added by a processor names its queue (type '{request.type}')")
        queue = self.directory.get(request.queue)
        if self.accepts is not None and not self.accepts(queue.name, request.type):
            raise Invalid(f"no processor for type '{request.type}' on queue '{queue.name}'")
        options = request.options
        if options.run_at is not None or options.deduplication is not None or options.job_id is not None:
            raise Invalid("a job added by a processor takes no runAt, deduplication or jobId")
        if options.delay > OUTBOX_MAX_DELAY_MS:
            raise Invalid(f"a job added by a processor waits at most {OUTBOX_MAX_DELAY_MS} ms")
        policy = self.defaults(queue)
        return Job(
            job_id=job_id,
            queue=queue.name,
            type=request.type,
            user_id=owner.user_id,
            acting_client=owner.acting_client,
            status=S.DELAYED if options.delay else S.WAITING,
            data=request.data,
            priority=options.priority,
            max_attempts=options.attempts or policy.default_attempts,
            backoff=options.backoff or policy.default_backoff,
            delay=options.delay,
            run_at=iso(now + options.delay) if options.delay else None,
            webhook=options.webhook,
            created_at=iso(now),
            updated_at=iso(now),
            parent=parent,
            outbox=True,
        )


class FollowUps:
    """What a processor added during one attempt (``JobContext.add_job`` / ``add_children``)."""

    def __init__(self, planner: JobPlanner, owner: Job, now: Callable[[], int]) -> None:
        self.planner = planner
        self.owner = owner
        self.now = now
        self.jobs: list[Job] = []
        self.children: list[Job] = []
        self._base = derived_id_base(owner.user_id, owner.job_id, 90)

    def _items(self) -> int:
        return len(self.jobs) + 2 * len(self.children)

    def _request(self, spec: Mapping[str, Any]) -> tuple[JobCreate, FailurePolicy]:
        spec = dict(spec)
        on_failure = spec.pop("onFailure", FailurePolicy.FAIL_PARENT.value)
        try:
            return JobCreate.model_validate(spec), FailurePolicy(on_failure)
        except (ValidationError, ValueError) as err:
            raise PermanentJobError(f"the processor added an invalid job: {str(err)[:500]}") from None

    def add_job(self, spec: Mapping[str, Any]) -> str:
        request, _ = self._request(spec)
        if self._items() + 1 > MAX_FOLLOW_UP_ITEMS:
            raise PermanentJobError(f"a job adds at most {MAX_FOLLOW_UP_ITEMS} items (a job 1, a child 2)")
        job_id = f"{self._base}:n{self.owner.version}.{len(self.jobs)}"
        try:
            job = self.planner.follow_up(request, self.owner, job_id, parent=None, now=self.now())
        except JobqError as err:
            raise PermanentJobError(f"the processor added a job that cannot be created: {err.message}") from None
        self.jobs.append(job)
        return job_id

    def add_child(self, spec: Mapping[str, Any]) -> str:
        request, on_failure = self._request(spec)
        if self._items() + 2 > MAX_FOLLOW_UP_ITEMS:
            raise PermanentJobError(f"a job adds at most {MAX_FOLLOW_UP_ITEMS} items (a job 1, a child 2)")
        job_id = f"{self._base}:c{self.owner.version}.{len(self.children)}"
        link = ParentLink(job_id=self.owner.job_id, queue=self.owner.queue, on_failure=on_failure, root=self.owner.flow_id() or self.owner.job_id)
        try:
            job = self.planner.follow_up(request, self.owner, job_id, parent=link, now=self.now())
        except JobqError as err:
            raise PermanentJobError(f"the processor added a child that cannot be created: {err.message}") from None
        self.children.append(job)
        return job_id

    def as_body(self) -> list[dict[str, Any]]:
        return [job.model_dump(mode="json") for job in [*self.jobs, *self.children]]


def follow_up_actions(flows: FlowStore, owner: Job, jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """The writes that go with the owner's ending: each job, and for its children an edge and the counter."""
    jobs = list(jobs)
    actions = [flows.put_job(job) for job in jobs]
    children = [job for job in jobs if job.parent is not None]
    if children:
        ref = JobRef.of(owner)
        actions += [flows.put_edge(ref, child) for child in children]
        actions.append(flows.add_pending(ref, len(children)))
    return actions


def jobs_of_body(body: list[dict[str, Any]] | None) -> list[Job]:
    return [Job.model_validate(item) for item in body or []]


def children_values(flows: FlowStore, store: JobRepository, parent: JobRef) -> dict[str, Any]:
    """The results of a parent's processed children, by child job id."""
    edges = [e for e in flows.edges(parent) if e.state == PROCESSED]
    found = store.get_many(e.child for e in edges)
    # A large result is stored apart (S3): read it back, as the parent's processor expects it whole.
    return {e.child.job_id: store.with_payloads(found[e.child], data=False).result for e in edges if e.child in found}


__all__ = ["FollowUps", "JobPlanner", "children_values", "derived_id_base", "follow_up_actions", "jobs_of_body"]
