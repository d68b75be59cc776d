"""Flows on the stream and in the health sweep: children counted against their parents, parents moved on,
the outbox sent (``FlowEvents``, the EventsFunction), and trees a crash left half-created finished or
removed (``FlowSweep``, the HealthFunction). How flows work is shared/flows.py's docstring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared import lifecycle
from shared.adapters import policies, queues
from shared.adapters.flows import FAILED, IGNORED, PROCESSED, UNPROCESSED, FlowStore
from shared.adapters.job_repository import JobStore
from shared.clock import iso, now_ms, parse_iso
from shared.errors import Conflict, Unavailable
from shared.models import FailurePolicy, Job, JobRef, ParentLink, QueueInfo
from shared.observability import logger
from shared.stats import attribute_number, attribute_text, is_job_record, job_changes
from shared.status import JobStatus
from shared.transitions import Transitions

S = JobStatus

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
        for event, old, new in job_changes(records):
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


__all__ = ["FlowEvents", "FlowOutcome", "FlowSweep", "FlowSweepOutcome"]
