"""``POST /flows``, ``GET /flows/{id}``, ``GET /jobs/{id}/dependencies`` and removing a tree: the API's flow use case.

How flows work (the tree, the edges and counters, failure policies) is shared/flows.py's docstring.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared import admission, lifecycle
from shared.access import Identity
from shared.adapters import policies, queues, scheduler
from shared.adapters.flows import FAILED, IGNORED, MAX_TRANSACTION_ITEMS, PROCESSED, Edge, FlowCounts, FlowStore
from shared.adapters.job_repository import JobStore
from shared.client_models import JobPublic
from shared.errors import Conflict, Invalid, Unavailable
from shared.flow_models import MAX_FLOW_DEPTH, MAX_FLOW_NODES, FlowNode
from shared.flows import derived_id_base
from shared.models import Job, JobRef, ParentLink
from shared.observability import logger
from shared.status import JobStatus
from shared.transitions import Transitions

S = JobStatus


@dataclass
class PlannedNode:
    """A job of a requested tree, checked and given its id, not stored yet."""

    job: Job
    children: list[PlannedNode]
    depth: int


class FlowService:
    """Flows through the API: create a tree all or nothing, read it, page a parent's children, remove a tree."""

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
        base = derived_id_base(caller.user_id, root_id, 64)
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


__all__ = ["FlowService", "PlannedNode"]
