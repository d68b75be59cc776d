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
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, field_validator

from shared import admission, lifecycle
from shared.access import Identity
from shared.adapters import policies, queues, scheduler
from shared.adapters.flows import (
    FAILED,
    IGNORED,
    MAX_TRANSACTION_ITEMS,
    PROCESSED,
    UNPROCESSED,
    Edge,
    FlowCounts,
    FlowStore,
)
from shared.adapters.job_repository import JobStore
from shared.client_models import JobCreate, JobPublic
from shared.clock import iso, now_ms, parse_iso
from shared.errors import Conflict, Invalid, JobqError, PermanentJobError, Unavailable
from shared.models import FailurePolicy, Job, JobRef, ParentLink, QueueInfo, QueuePolicy
from shared.observability import logger
from shared.ports import JobRepository
from shared.stats import attribute_number, attribute_text, is_job_record
from shared.status import JobStatus
from shared.transitions import Transitions

S = JobStatus
MAX_FLOW_NODES = 1000
MAX_FLOW_DEPTH = 10
MAX_FOLLOW_UP_ITEMS = MAX_TRANSACTION_ITEMS - 2  # the job's own update and its counter share the transaction
OUTBOX_MAX_DELAY_MS = 900_000  # follow-ups wait at most SQS's 15-minute message delay


# ---- the request of POST /flows ---------------------------------------------------------------------
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


@dataclass
class PlannedNode:
    job: Job
    children: list[PlannedNode]
    depth: int


def _id_base(user_id: str, job_id: str, limit: int) -> str:
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
        self._base = _id_base(owner.user_id, owner.job_id, 90)

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


# ---- POST /flows, GET /flows/{id}, GET /jobs/{id}/dependencies ------------------------------------------
class FlowService:
    def __init__(self, jobs: Any, flows: FlowStore, transitions: Transitions) -> None:
        self.jobs = jobs  # shared.jobs.JobService: its checks of a request, reads and access rules
        self.store: JobStore = jobs.store
        self.flows = flows
        self.transitions = transitions

    def _plan(self, node: FlowNode, caller: Identity, job_id: str, base: str, path: str, depth: int, now: int, parent: Job | None) -> PlannedNode:
        if depth > MAX_FLOW_DEPTH:
            raise Invalid(f"a flow is at most {MAX_FLOW_DEPTH} levels deep")
        _, job = self.jobs._prepare(node, caller, job_id, now)  # the queue's access, the type, the data's size
        link = ParentLink(job_id=parent.job_id, queue=parent.queue, on_failure=node.on_failure, root=parent.flow_id() or parent.job_id) if parent else None
        updates: dict[str, Any] = {"parent": link}
        if node.children:
            if job.delay:
                raise Invalid("a parent starts when its children finished: it takes no delay or runAt")
            updates["status"] = S.WAITING_CHILDREN
            updates["has_children"] = True
        job = job.model_copy(update=updates)
        planned = PlannedNode(job, [], depth)
        for i, child in enumerate(node.children):
            child_path = f"{path}.{i}" if path else str(i)
            planned.children.append(self._plan(child, caller, f"{base}:{child_path}", base, child_path, depth + 1, now, job))
        return planned

    def create(self, tree: FlowNode, caller: Identity) -> tuple[Job, bool, int]:
        """Store a tree and enqueue its leaves. Returns ``(root, created, nodes)``.

        Up to 100 items (a job, an edge per child, a counter per parent): one transaction. A larger
        tree is written in transactions of 100 with every job ``waiting-children`` and the root in
        the last one, so until it is written the flow does not exist and nothing in it runs; then
        the leaves are moved to ``waiting`` (each one write, which enqueues it). A retried request
        with the root's ``options.jobId`` finishes a creation that stopped half-way.
        """
        caller = self.jobs.acting(caller, tree.on_behalf_of)
        now = self.jobs.clock()
        root_id = tree.options.job_id or str(uuid.uuid4())
        base = _id_base(caller.user_id, root_id, 64)
        root = self._plan(tree, caller, root_id, base, "", 1, now, None)
        nodes = list(_walk(root))
        if len(nodes) > MAX_FLOW_NODES:
            raise Invalid(f"a flow holds at most {MAX_FLOW_NODES} jobs; this one has {len(nodes)}")
        existing = self.store.get(caller.user_id, root_id)
        if existing is not None:
            if existing.parent is not None or self.flows.counts(JobRef.of(existing)) is None:
                raise Conflict(f"jobId '{root_id}' is already in use")
            if self._staged(nodes):
                self._release([n.job for n in nodes if not n.children])
            return existing, False, len(nodes)  # a replayed create is free, as POST /jobs
        places = self._admit(nodes)  # the user's rate and unfinished-job quotas and each queue's limits: all, or 429 and none
        leaves = [n.job for n in nodes if not n.children]
        actions = self._actions(nodes)
        staged = len(actions) > MAX_TRANSACTION_ITEMS
        if staged:
            held = {job.job_id for job in leaves}
            nodes_held = [PlannedNode(n.job.model_copy(update={"status": S.WAITING_CHILDREN}) if n.job.job_id in held else n.job, n.children, n.depth)
                          for n in nodes]  # fmt: skip
            actions = self._actions(nodes_held)
        if staged:
            # children before parents, the root last: a crash leaves no root, so no flow to see or run
            # (the HealthFunction removes such a tree: FlowSweep)
            for start in range(0, len(actions), MAX_TRANSACTION_ITEMS):
                self._write_tolerating_existing(actions[start : start + MAX_TRANSACTION_ITEMS], caller.user_id)
            self._release([n.job for n in nodes_held if n.job.job_id in held], fresh=True)
        else:
            try:
                self.flows.write(actions)
            except Conflict as clash:
                self.jobs.admission.give_back_many(caller.user_id, places)  # nothing stored
                raise Conflict(f"jobId '{root_id}' is already in use") from clash
            except Unavailable:
                self.jobs.admission.give_back_many(caller.user_id, places)
                raise
            self._enqueue(leaves)
        logger.info("flow created", extra={"job_id": root_id, "jobs": len(nodes), "transactions": -(-len(actions) // MAX_TRANSACTION_ITEMS)})
        return root.job, True, len(nodes)

    def _staged(self, nodes: list[PlannedNode]) -> bool:
        return sum(1 + (1 + len(n.children) if n.children else 0) for n in nodes) > MAX_TRANSACTION_ITEMS

    def _admit(self, nodes: list[PlannedNode]) -> dict[tuple[str, str], int]:
        """Count the flow against its user: the rate quota (one write for every job) and the places of
        every job (one transaction); on refusal nothing is counted nor stored. Each job's ``held``
        says what it took, so the stream gives it back when that job finishes."""
        user_id = nodes[0].job.user_id
        per_queue: dict[str, int] = {}
        for n in nodes:
            per_queue[n.job.queue] = per_queue.get(n.job.queue, 0) + 1
        self.jobs.quotas.take_rate(user_id, len(nodes))
        held, places = admission.admit_many(
            self.jobs.admission,
            user_id,
            per_queue,
            {name: policies.get_policy(self.jobs.directory.get(name)) for name in per_queue},
            retry_after=self.jobs.settings.backpressure_retry_after_seconds,
            account_limit=self.jobs.quotas.of(user_id).max_unfinished_jobs,
        )
        for n in nodes:
            if held.get(n.job.queue):
                n.job = n.job.model_copy(update={"held": held[n.job.queue]})
        return places

    def _actions(self, nodes: list[PlannedNode]) -> list[dict[str, Any]]:
        """Every item of the tree, deepest first (the root's job item is the very last)."""
        actions: list[dict[str, Any]] = []
        for node in sorted(nodes, key=lambda n: -n.depth):
            job = node.job
            if node.children:
                actions.append(self.flows.add_pending(JobRef.of(job), len(node.children)))
                actions += [self.flows.put_edge(JobRef.of(job), child.job) for child in node.children]
            actions.append(self.flows.put_job(job))
        # the root's counter and edges, then its job: move its job item to the end
        root = actions.pop(next(i for i in range(len(actions) - 1, -1, -1) if "Put" in actions[i] and actions[i]["Put"]["Item"]["sk"]["S"] == "JOB"))
        return [*actions, root]

    def _write_tolerating_existing(self, actions: list[dict[str, Any]], user_id: str) -> None:
        """A chunk of a large tree. A transaction is all or nothing and the chunks are the same on a
        retried request, so a chunk that finds its items there was written whole before: skipped,
        and the places this request took for its jobs given back (the first request's jobs hold theirs)."""
        try:
            self.flows.write(actions)
        except Conflict:
            logger.info("a chunk of a flow was written before; going on", extra={"items": len(actions)})
            again: dict[tuple[str, str], int] = {}
            for action in actions:
                item = action.get("Put", {}).get("Item", {})
                if item.get("sk", {}).get("S") == "JOB" and "held" in item:
                    for name in (v["S"] for v in item["held"].get("L", [])):
                        key = (item["queue"]["S"], name) if name != admission.ACCOUNT_COUNTER else ("", name)
                        again[key] = again.get(key, 0) + 1
            if again:
                self.jobs.admission.give_back_many(user_id, again)

    def _release(self, leaves: list[Job], *, fresh: bool = False) -> None:
        """The leaves of a large tree, held ``waiting-children``, become ``waiting`` (the Wake enqueues
        them), eight at a time. ``fresh``: just written as planned, so not read again first."""

        def release(leaf: Job) -> None:
            current = leaf if fresh else self.store.get(leaf.user_id, leaf.job_id)
            if current is None or current.status is not S.WAITING_CHILDREN:
                return
            with contextlib.suppress(Conflict):  # released meanwhile (a retried request)
                self.transitions.apply(lifecycle.children_done(current, now=self.jobs.clock()), self.jobs.directory.get(current.queue))

        with ThreadPoolExecutor(max_workers=min(8, max(1, len(leaves)))) as pool:
            list(pool.map(release, leaves))

    def _enqueue(self, leaves: list[Job]) -> None:
        by_queue: dict[str, list[Job]] = {}
        for job in leaves:
            by_queue.setdefault(job.queue, []).append(job)
        for name, jobs in by_queue.items():
            queue = self.jobs.directory.get(name)
            unsent = queues.send_jobs(
                queue, [(JobRef.of(job), -(-job.delay // 1000)) for job in jobs if not _scheduled(job)], {JobRef.of(job): queues.Route.of(job) for job in jobs}
            )
            for job in jobs:
                if _scheduled(job):
                    scheduler.enqueue(queue, job, settings=self.jobs.settings)
            if unsent:
                logger.warning("flow leaves stored but not enqueued; the health sweep enqueues them", extra={"queue": name, "jobs": len(unsent)})

    # ---- reading -----------------------------------------------------------------------------------
    def tree(self, job_id: str, caller: Identity, *, user_id: str | None = None) -> dict[str, Any]:
        """The flow under ``job_id``: each node's job with its ``children``, breadth first, at most 1,000 jobs
        (a job without children is a flow of one)."""
        root = self.jobs.get(job_id, caller, user_id=user_id)
        out = _node_view(root)
        level = [(root, out)]
        seen = 1
        while level and seen < MAX_FLOW_NODES:
            following: list[tuple[Job, dict[str, Any]]] = []
            for job, view in level:
                edges = self.flows.edges(JobRef.of(job))
                found = self.store.get_many(e.child for e in edges)
                for edge in edges:
                    child = found.get(edge.child)
                    if child is None:
                        view["children"].append({"jobId": edge.child.job_id, "queue": edge.queue, "dependency": edge.state, "status": None})
                        continue
                    child_view = _node_view(child, edge)
                    view["children"].append(child_view)
                    following.append((child, child_view))
                    seen += 1
            level = following
        return out

    def dependencies(
        self, job_id: str, caller: Identity, *, state: str | None, limit: int, cursor: str | None, user_id: str | None = None
    ) -> tuple[list[dict[str, Any]], FlowCounts | None, str | None]:
        """A page of a parent's children, of one dependency state (processed, unprocessed, failed, ignored)."""
        parent = self.jobs.get(job_id, caller, user_id=user_id)
        ref = JobRef.of(parent)
        edges, next_cursor = self.flows.page_edges(ref, state=state, limit=limit, cursor=cursor)
        found = self.store.get_many(e.child for e in edges)
        rows = []
        for edge in edges:
            child = found.get(edge.child)
            rows.append(
                {
                    "jobId": edge.child.job_id,
                    "queue": edge.queue,
                    "dependency": edge.state,
                    "onFailure": edge.on_failure.value,
                    "status": child.status.value if child else None,
                    "result": child.result if child and edge.state == PROCESSED else None,
                    "error": child.error if child and edge.state in (FAILED, IGNORED) else None,
                    "endedAt": edge.ended_at,
                }
            )
        return rows, self.flows.counts(ref), next_cursor

    def remove_tree(self, job: Job) -> int:
        """Delete the descendants of a parent being removed (none may be running); their number."""
        descendants: list[Job] = []
        level = [job]
        while level:
            following: list[Job] = []
            for parent in level:
                edges = self.flows.edges(JobRef.of(parent))
                found = self.store.get_many(e.child for e in edges)
                following.extend(found.values())
            descendants.extend(following)
            level = following
        running = [d for d in descendants if d.status in (S.ACTIVE, S.STALLED)]
        if running:
            raise Conflict(f"job {running[0].job_id} of this flow is {running[0].status.value}; cancel the flow first")
        # The counters and edges go first: the stream then finds no parent to count a removed child against.
        for parent in [job, *descendants]:
            self.flows.delete_parent_items(JobRef.of(parent))
        for child in reversed(descendants):
            self.flows.delete_job(JobRef.of(child))
        return len(descendants)


def children_values(flows: FlowStore, store: JobRepository, parent: JobRef) -> dict[str, Any]:
    """The results of a parent's processed children, by child job id."""
    edges = [e for e in flows.edges(parent) if e.state == PROCESSED]
    found = store.get_many(e.child for e in edges)
    # A large result is stored apart (S3): read it back, as the parent's processor expects it whole.
    return {e.child.job_id: store.with_payloads(found[e.child], data=False).result for e in edges if e.child in found}


def _walk(node: PlannedNode) -> Iterable[PlannedNode]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _scheduled(job: Job) -> bool:
    return scheduler.needs_schedule(job.delay)


def _node_view(job: Job, edge: Edge | None = None) -> dict[str, Any]:
    view = JobPublic.of(job).model_dump(by_alias=True, mode="json", include={"job_id", "queue", "type", "status", "progress", "result", "error",
                                                                            "attempts", "created_at", "completed_at", "failed_at"})  # fmt: skip
    if edge is not None:
        view["dependency"] = edge.state
        view["onFailure"] = edge.on_failure.value
    view["children"] = []
    return view


# ---- the EventsFunction's part: counting children, moving parents, the outbox -------------------------------
_ENDED = {S.COMPLETED.value, S.FAILED.value, S.CANCELLED.value}
_BACK = {S.WAITING.value, S.WAITING_CHILDREN.value, S.DELAYED.value}


@dataclass
class FlowOutcome:
    enqueued: int = 0
    counted: int = 0
    recounted: int = 0  # ends already counted (a redelivered batch, a child ending again)
    parents_moved: int = 0
    cancelled: int = 0


class FlowEvents:
    """What a stream batch means for flows; every step is idempotent, so the batch may come again."""

    def __init__(self, store: JobStore, flows: FlowStore, transitions: Transitions, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.flows = flows
        self.transitions = transitions
        self.clock = clock

    def apply(self, records: list[Mapping[str, Any]]) -> FlowOutcome:
        outcome = FlowOutcome()
        # The outbox first: a new job's start waits on nothing else this batch does (a flow step
        # that fails makes Lambda retry the batch, and the retry sends these again: the claim runs
        # a job once whatever its messages).
        outcome.enqueued = self._send_outbox(records)
        for record in records:
            if not is_job_record(record):
                continue
            change = record.get("dynamodb") or {}
            new: Mapping[str, Any] = change.get("NewImage") or {}
            old: Mapping[str, Any] = change.get("OldImage") or {}
            event = record.get("eventName")
            before, after = attribute_text(old, "status"), attribute_text(new, "status")
            image = new or old
            if "parent" in image:
                try:
                    ParentLink.model_validate(_plain_map(image["parent"]))
                except (ValueError, TypeError, AttributeError):
                    # never block the stream's shard on one item: it counts toward no parent
                    logger.error("a job's parent link is unreadable; skipped", extra={"job_id": _ref(image).job_id})
                    continue
            if "parent" not in image:
                if event == "MODIFY" and before == S.WAITING_CHILDREN.value and after == S.CANCELLED.value:
                    outcome.cancelled += self._cancel_children(_ref(new))
                continue
            link = ParentLink.model_validate(_plain_map(image["parent"]))
            child = _ref(image)
            parent = JobRef(child.user_id, link.job_id)
            if event == "MODIFY" and before == S.WAITING_CHILDREN.value and after == S.CANCELLED.value:
                outcome.cancelled += self._cancel_children(child)
            if event == "MODIFY" and after in _ENDED and before != after:
                counted = self._child_ended(parent, child, link, after, attribute_text(new, "error"))
                outcome.counted += int(counted)
                outcome.recounted += int(not counted)
                outcome.parents_moved += int(self._settle(parent, child, link))
            elif event == "MODIFY" and before in (S.FAILED.value, S.CANCELLED.value) and after in _BACK:
                self._child_back(parent, child, link)
                outcome.parents_moved += int(self._resume(parent, link))
            elif event == "REMOVE" and before not in _ENDED:
                # a child removed before it ended: its parent no longer waits for it
                if self.flows.count_child(parent, child.job_id, state=IGNORED, pending=-1, failed=0, now=iso(self.clock()), remove=True):
                    outcome.counted += 1
                outcome.parents_moved += int(self._settle(parent, child, link))
        return outcome

    def _send_outbox(self, records: list[Mapping[str, Any]]) -> int:
        """Send the messages of the jobs inserted with ``outbox`` (SendMessageBatch); how many were sent."""
        outbox: dict[str, list[tuple[JobRef, int]]] = {}
        routes: dict[JobRef, queues.Route] = {}
        for record in records:
            new: Mapping[str, Any] = (record.get("dynamodb") or {}).get("NewImage") or {}
            if not is_job_record(record) or record.get("eventName") != "INSERT" or not _flag(new, "outbox"):
                continue
            if attribute_text(new, "status") in (S.WAITING.value, S.DELAYED.value):
                delay = int((new.get("delay") or {}).get("N") or 0)
                outbox.setdefault(attribute_text(new, "queue") or "", []).append((_ref(new), -(-delay // 1000)))
                routes[_ref(new)] = queues.Route(attribute_number(new, "priority") or 0, attribute_text(new, "group"), attribute_text(new, "exclusiveKey"))
        sent = 0
        for name, jobs in outbox.items():
            queue = queues.directory().get(name)
            unsent = queues.send_jobs(queue, jobs, routes)
            if unsent:
                raise Unavailable(f"{len(unsent)} new jobs could not be enqueued on {name}; the batch is retried")
            sent += len(jobs)
        return sent

    def _child_ended(self, parent: JobRef, child: JobRef, link: ParentLink, status: str, error: str | None) -> bool:
        now = iso(self.clock())
        if status == S.COMPLETED.value:
            return self.flows.count_child(parent, child.job_id, state=PROCESSED, pending=-1, failed=0, now=now)
        policy = link.on_failure
        if policy is FailurePolicy.FAIL_PARENT:
            return self.flows.count_child(parent, child.job_id, state=FAILED, pending=0, failed=1, now=now)
        if policy is FailurePolicy.CONTINUE_PARENT:
            return self.flows.count_child(parent, child.job_id, state=FAILED, pending=-1, failed=0, now=now)
        if policy is FailurePolicy.IGNORE_DEPENDENCY:
            return self.flows.count_child(parent, child.job_id, state=IGNORED, pending=-1, failed=0, now=now)
        return self.flows.count_child(parent, child.job_id, state=IGNORED, pending=-1, failed=0, now=now, remove=True)

    def _child_back(self, parent: JobRef, child: JobRef, link: ParentLink) -> None:
        """A failed (or cancelled) child was retried: the parent waits for it again."""
        edge = self.flows.edge(parent, child.job_id)
        if edge is None or edge.state == UNPROCESSED:
            return  # removed by removeDependencyOnFailure, or taken back already
        if edge.state == FAILED and link.on_failure is FailurePolicy.FAIL_PARENT:
            self.flows.uncount_child(parent, child.job_id, was=FAILED, pending=0, failed=-1)
        elif edge.state in (FAILED, IGNORED):
            self.flows.uncount_child(parent, child.job_id, was=edge.state, pending=1, failed=0)

    def _settle(self, parent_ref: JobRef, child: JobRef, link: ParentLink) -> bool:
        """Move the parent on if its children say so (idempotent: it must still be waiting)."""
        counts = self.flows.counts(parent_ref)
        parent = self.store.get(parent_ref.user_id, parent_ref.job_id)
        if counts is None or parent is None or parent.status is not S.WAITING_CHILDREN:
            return False
        now = self.clock()
        queue = queues.directory().get(parent.queue)
        if counts.failed > 0:
            failed_child = self.store.get(child.user_id, child.job_id)
            change = lifecycle.fail_for_child(
                parent, child_id=child.job_id, child_error=failed_child.error if failed_child else None, now=now, policy=policies.get_policy(queue)
            )
        elif counts.pending <= 0 or (link.on_failure is FailurePolicy.CONTINUE_PARENT and self._edge_state(parent_ref, child) == FAILED):
            change = lifecycle.children_done(parent, now=now)
        else:
            return False
        try:
            self.transitions.apply(change, queue)
        except Conflict:
            return False
        return True

    def _resume(self, parent_ref: JobRef, link: ParentLink) -> bool:
        if link.on_failure is not FailurePolicy.FAIL_PARENT:
            return False
        counts = self.flows.counts(parent_ref)
        parent = self.store.get(parent_ref.user_id, parent_ref.job_id)
        if counts is None or parent is None or parent.status is not S.FAILED or counts.failed > 0:
            return False
        try:
            self.transitions.apply(lifecycle.resume_for_child(parent, now=self.clock()), queues.directory().get(parent.queue))
        except Conflict:
            return False
        return True

    def _edge_state(self, parent: JobRef, child: JobRef) -> str | None:
        edge = self.flows.edge(parent, child.job_id)
        return edge.state if edge else None

    def _cancel_children(self, parent: JobRef) -> int:
        """A waiting parent was cancelled: its unfinished children are cancelled (theirs follow from their own records)."""
        cancelled = 0
        edges = [e for e in self.flows.edges(parent) if e.state == UNPROCESSED]
        for child in self.store.get_many(e.child for e in edges).values():
            queue = queues.directory().get(child.queue)
            now = self.clock()
            try:
                if child.status in (S.WAITING, S.DELAYED, S.STALLED, S.WAITING_CHILDREN):
                    self.transitions.apply(lifecycle.cancel(child, now=now, policy=policies.get_policy(queue), reason="its parent was cancelled"), queue)
                elif child.status is S.ACTIVE and not child.cancel_requested:
                    self.transitions.apply(lifecycle.request_cancel(child, now=now), queue)
                else:
                    continue
            except Conflict:
                continue  # it moved on meanwhile; a redelivered batch looks again
            cancelled += 1
        return cancelled


# ---- the HealthFunction's part: trees a crash left half-created -------------------------------------------
@dataclass
class FlowSweepOutcome:
    removed: int = 0  # jobs of a tree whose root was never written
    released: int = 0  # leaves of a written tree still held back


class FlowSweep:
    """Finishes or removes what a crash in the middle of a staged ``POST /flows`` left.

    A large tree is written children first and its root last, every job ``waiting-children``, then
    its leaves are released. So a ``waiting-children`` job older than the grace is one of:
    a job of a tree whose root does not exist (the request died before its last chunk: nothing
    of it is visible or ran; its items are removed, the stream gives back its places), or a leaf
    (no children, no counter) of a tree whose root exists (the request died before releasing it:
    it is released, as the request would have). Anything else waits for its children as it should.
    """

    def __init__(self, store: JobStore, flows: FlowStore, transitions: Transitions) -> None:
        self.store = store
        self.flows = flows
        self.transitions = transitions

    def sweep(self, queue: QueueInfo, jobs: Iterable[Job], *, older_than: int, now: int) -> FlowSweepOutcome:
        outcome = FlowSweepOutcome()
        roots: dict[JobRef, bool] = {}
        for job in jobs:
            if job.status is not S.WAITING_CHILDREN or _created_ms(job) >= older_than:
                continue
            root_id = job.flow_id()
            if root_id is None:
                continue
            root = JobRef(job.user_id, root_id)
            if root not in roots:
                roots[root] = root == JobRef.of(job) or self.store.get(root.user_id, root.job_id) is not None
            if not roots[root]:
                # Its parent's edge first: the stream then counts its removal toward no parent (which must not start).
                if job.parent is not None:
                    self.flows.delete_edge(JobRef(job.user_id, job.parent.job_id), job.job_id)
                self.flows.delete_parent_items(JobRef.of(job))
                if self.store.delete_unchanged(job):
                    outcome.removed += 1
                    logger.warning("job of a half-created flow removed", extra={"job_id": job.job_id, "flow": root_id})
            elif not job.has_children and self.flows.counts(JobRef.of(job)) is None:
                with contextlib.suppress(Conflict):
                    self.transitions.apply(lifecycle.children_done(job, now=now), queue)
                    outcome.released += 1
                    logger.warning("leaf of a flow released", extra={"job_id": job.job_id, "flow": root_id})
        return outcome


def _created_ms(job: Job) -> int:
    try:
        return parse_iso(job.created_at)
    except (TypeError, ValueError):
        return 0


def _flag(image: Mapping[str, Any], name: str) -> bool:
    return bool((image.get(name) or {}).get("BOOL"))


def _ref(image: Mapping[str, Any]) -> JobRef:
    return JobRef(attribute_text(image, "userId") or "", attribute_text(image, "jobId") or "")


def _plain_map(value: Mapping[str, Any]) -> dict[str, Any]:
    """A stream image's map attribute (``{"M": {...: {"S": ...}}}``) as plain values (strings only here)."""
    return {k: next(iter(v.values())) for k, v in (value.get("M") or {}).items()}


__all__ = ["FlowEvents", "FlowNode", "FlowService", "FlowSweep", "FollowUps", "JobPlanner", "QueueInfo", "children_values", "follow_up_actions"]

