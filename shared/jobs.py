"""Job use cases the API calls: create (single, idempotent, deduplicated, bulk), read, list,
cancel, retry, logs, and registering HTTP targets.

Job ids are scoped by owner in the table (shared/adapters/job_repository.py): every read and write names
``(user_id, job_id)``, and a caller's requests name the caller's own namespace unless an
admin passes another owner. So no create path (jobId, Idempotency-Key, deduplication) can
find, return or collide with another user's job: there is nothing to check, the other
namespace is never consulted."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared import admission, flow_control, lifecycle
from shared.access import Action, Identity, QueueAccess, authorize, may_read_job
from shared.adapters import queues, scheduler
from shared.adapters.admission import DynamoAdmissionCounters
from shared.adapters.policies import get_policy
from shared.adapters.quotas import DynamoQuotaStore
from shared.adapters.scheduler import EventBridgeDelayedSchedules
from shared.adapters.sqs import SqsJobMessages
from shared.admission import AdmissionCounters
from shared.client_models import JobCreate
from shared.clock import Clock, iso, now_ms
from shared.errors import Conflict, Forbidden, Invalid, JobqError, NotFound, PayloadTooLarge, Unavailable
from shared.models import Job, JobRef, QueueInfo, StateMachineTarget, json_size
from shared.observability import emit, logger
from shared.ports import JobRepository, ProcessorCatalog, QueueDirectory
from shared.quotas import Quotas
from shared.settings import Settings
from shared.status import FINISHED, JobStatus
from shared.targets import TargetRegistry
from shared.transitions import Transitions

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
DEDUP_DEFAULT_TTL_SECONDS = 7 * 86400  # "until the job finishes", bounded
MAX_BULK_JOBS = 100
# Data and result in one answer (GET /jobs/{id}) together at most: Lambda answers up to 6 MB.
ANSWER_PAYLOAD_BYTES = 5_000_000
_ID_NAMESPACE = uuid.UUID("5f1d3c2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f")


@dataclass(frozen=True)
class BulkOutcome:
    index: int
    status: int
    job: Job | None = None
    error: JobqError | None = None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _dedup_digest(user_id: str, queue: str, key: str) -> str:
    """A deduplication key within its owner and queue (the marker's key; keepLastIfActive's exclusive slot)."""
    return _digest(f"{user_id}\n{queue}\n{key}")


class JobService:
    def __init__(
        self,
        store: JobRepository,
        directory: QueueDirectory,
        catalog: ProcessorCatalog,
        settings: Settings,
        *,
        transitions: Transitions | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self.store = store
        self.clock = clock  # the composition root's (the local stack's clock follows shared.clock.use)
        self.directory = directory
        self.catalog = catalog
        self.settings = settings
        self.admission: AdmissionCounters = DynamoAdmissionCounters(store.table_name)  # back-pressure (shared/admission.py)
        self.quotas = Quotas(
            DynamoQuotaStore(store.table_name),
            jobs_per_minute=settings.user_jobs_per_minute,
            max_unfinished_jobs=settings.user_max_unfinished_jobs,
            cache_seconds=settings.policy_cache_seconds,
            unfinished_retry_after=settings.backpressure_retry_after_seconds,
            block_size=settings.quota_block_size,
            clock=lambda: self.clock() / 1000,  # the service's clock (the local stack's skew included), in seconds
        )
        self.transitions = transitions or Transitions(store, SqsJobMessages(), EventBridgeDelayedSchedules(settings))
        self.tree_remover: Callable[[Job], int] | None = None  # set by the flow service: removing a parent removes its tree
        self.targets = TargetRegistry(store, directory, catalog, settings, clock=clock)  # a type's HTTP, Lambda or state machine target

    # ---- create -----------------------------------------------------------------------
    def _prepare(self, request: JobCreate, caller: Identity, job_id: str | None, now: int) -> tuple[QueueInfo, Job]:
        """Check a request against the queue and the limits, and build the job (not stored yet)."""
        queue = self.directory.get(request.queue) if request.queue else self.queue_for_type(request.type)
        authorize(caller, Action.CREATE, get_policy(queue).access, queue=queue.name)
        if not self.catalog.has(queue.name, request.type):
            valid = ", ".join(sorted(self.catalog.types(queue.name))) or "none registered"
            raise Invalid(f"no processor for type '{request.type}' on queue '{queue.name}'; valid types: {valid}")
        size = json_size(request.data)
        if size > self.settings.max_data_bytes:
            raise PayloadTooLarge(f"data is {size} bytes; the limit is {self.settings.max_data_bytes}")
        self.check_data(queue.name, request.type, request.data)
        options = request.options
        if options.webhook is not None:
            try:
                options.webhook.check_url(allow_loopback_http=self.settings.allow_loopback_http_targets)
            except ValueError as err:
                raise Invalid(f"options.webhook: {err}") from None
        delay = scheduler.resolve_delay(options, now, self.settings)  # delay or runAt; past 15 min: Scheduler
        policy = get_policy(queue)
        timeout = options.timeout if options.timeout is not None else policy.default_timeout
        try:
            flow_control.check_timeout(timeout, queue.consumer_timeout)
        except ValueError as err:
            raise Invalid(f"options.{err}") from None
        job = Job(
            job_id=job_id or options.job_id or str(uuid.uuid4()),
            queue=queue.name,
            type=request.type,
            user_id=caller.user_id,
            acting_client=caller.client_id,
            status=JobStatus.DELAYED if delay else JobStatus.WAITING,
            data=request.data,
            priority=options.priority,
            max_attempts=options.attempts or get_policy(queue).default_attempts,  # runtime policy, cached a few seconds
            backoff=options.backoff or get_policy(queue).default_backoff,
            delay=delay,
            run_at=iso(now + delay) if delay else None,
            webhook=options.webhook,
            timeout=timeout,
            group=flow_control.group_key_of(request.type, request.data, options.group, policy.groups),
            created_at=iso(now),
            updated_at=iso(now),
        )
        return queue, job

    def queue_for_type(self, job_type: str) -> QueueInfo:
        """The one queue with a processor for ``job_type`` (a body without ``queue``, seed 004)."""
        known = self.directory.all()
        found = self.catalog.queues_for(job_type, sorted(known))
        if len(found) != 1:
            where = f"several queues ({', '.join(found)})" if found else "no queue"
            raise Invalid(f"type '{job_type}' is handled by {where}: give queue")
        return known[found[0]]

    def check_data(self, queue: str, job_type: str, data: dict[str, Any]) -> None:
        """A 400 naming each missing or wrong field, when the type declares its data (a model or a JSON Schema)."""
        problems = self.catalog.check_data(queue, job_type, data)
        if problems:
            raise Invalid(f"data does not fit type '{job_type}': " + "; ".join(problems), details=problems)

    def create(
        self,
        request: JobCreate,
        caller: Identity,
        *,
        idempotency_key: str | None = None,
        service_job_id: str | None = None,
        rate_taken: bool = False,
    ) -> tuple[Job, bool]:
        """Store and enqueue a job in the caller's namespace. Returns ``(job, created)``.

        The same ``jobId`` (yours), the same ``Idempotency-Key`` with the same body, or a live
        deduplication key return the job that exists instead of a second one.
        ``service_job_id``: an id the service chose (schedule firings); such ids contain ``:``,
        which client ids cannot, so no client can create or block them.
        ``rate_taken``: the caller (a bulk request) already counted this job against the user's rate quota.
        """
        caller = self.acting(caller, request.on_behalf_of)
        now = self.clock()
        if request.queue is None:  # inferred first: the same job with or without its queue is one job (keys, fingerprints)
            request = request.model_copy(update={"queue": self.queue_for_type(request.type).name})
        job_id = service_job_id or request.options.job_id
        if idempotency_key is not None:
            found, job_id = self._idempotent(request, caller, idempotency_key, now)
            if found is not None:
                return found, False
        if request.options.deduplication is not None:
            if request.options.deduplication.mode in ("debounce", "keepLastIfActive"):
                self._prepare(request, caller, job_id, now)  # the checks a create passes, before its data may replace a job's
            found, job_id = self._deduplicated(request, caller, job_id, now)
            if found is not None:
                return found, False
        queue, job = self._prepare(request, caller, job_id, now)
        if request.options.deduplication is not None and request.options.deduplication.mode == "keepLastIfActive":
            # At most one active per key: the consumer's gate holds the key's one slot (shared/flow_control.py).
            job = job.model_copy(update={"exclusive_key": _dedup_digest(job.user_id, job.queue, request.options.deduplication.key)[:32]})
        place_taken = None
        if service_job_id is None and not rate_taken:
            # A replayed create (above) is free; a refused one stores nothing. A queue without limits of its
            # own: the user's unfinished place is taken in the same write as the rate (or from a block).
            place_taken = self.quotas.take_rate(job.user_id, with_place=not admission.limits_of(get_policy(queue)), at=now / 1000)
        job = self._admit(queue, job, force=service_job_id is not None, place_taken=place_taken)
        # The outbox (EnqueueFromStream): the EventsFunction sends the message from the stream's INSERT
        # record, in batches; the job item is the only write here. A schedule (> 15 min) stays the API's.
        from_stream = self.settings.enqueue_from_stream and not scheduler.needs_schedule(job.delay)
        if from_stream:
            job = job.model_copy(update={"outbox": True})
        try:
            self.store.create(job)
        except Conflict as clash:
            self._give_back(job)  # nothing stored: the place is not this job's
            existing = clash.details  # in the caller's own namespace: the key says so
            if not isinstance(existing, Job) or existing.user_id != caller.user_id:
                raise Conflict(f"jobId '{job.job_id}' is already in use") from clash
            return existing, False
        if from_stream:
            emit("JobsCreated", queue.name)
            logger.info("job created", extra={"job_id": job.job_id, "queue": queue.name, "type": job.type, "outbox": True})
            return job, True
        try:
            scheduler.enqueue(queue, job, settings=self.settings)  # SQS (delay up to 15 min) or a one-time schedule
        except Unavailable:
            # Not enqueued: take the job back so the client's retry starts clean; if even that fails,
            # the job exists and the health sweep enqueues it (an orphan): say it is stored.
            if self._take_back(job):
                raise
            return job, True
        emit("JobsCreated", queue.name)
        logger.info("job created", extra={"job_id": job.job_id, "queue": queue.name, "type": job.type})
        return job, True

    def _admit(self, queue: QueueInfo, job: Job, *, force: bool = False, place_taken: str | None = None) -> Job:
        """Take the job's places under its queue's limits (TooManyJobs past them); ``force``: a service job, counted, never refused.
        ``place_taken``: the counter of the user's unfinished place, taken with the rate (Quotas.take_rate)."""
        if place_taken:
            return job.model_copy(update={"held": [place_taken]})  # the queue has no limits (take_rate's caller checked)
        held = admission.admit(
            self.admission,
            queue.name,
            job.user_id,
            get_policy(queue),
            retry_after=self.settings.backpressure_retry_after_seconds,
            force=force,
            account_limit=self.quotas.of(job.user_id).max_unfinished_jobs,
        )
        return job.model_copy(update={"held": held}) if held else job

    def _give_back(self, job: Job) -> None:
        # A place from a block stays in it, unspent: its minute's slot gives it back (shared/quotas.py).
        held = [name for name in job.held or [] if name != admission.ACCOUNT_BLOCK_COUNTER]
        if held:
            self.admission.give_back(job.queue, job.user_id, held)

    def _take_back(self, job: Job) -> bool:
        """Delete a job that could not be enqueued; False if it stays (DynamoDB failed too)."""
        try:
            self.store.delete(job.user_id, job.job_id)
        except Unavailable:
            logger.error("job stored but neither enqueued nor taken back; the health sweep enqueues it", extra={"job_id": job.job_id})
            return False
        return True

    def _idempotent(self, request: JobCreate, caller: Identity, key: str, now: int) -> tuple[Job | None, str]:
        if not 1 <= len(key) <= 255:
            raise Invalid("Idempotency-Key must be 1 to 255 characters")
        fingerprint = _digest(request.model_dump_json(by_alias=True))
        # The job id follows from the key, so racing requests with one key create one job.
        job_id = request.options.job_id or str(uuid.uuid5(_ID_NAMESPACE, f"{caller.user_id}\n{key}"))
        marker = self.store.claim_marker(
            f"IDEMP#{_digest(caller.user_id + chr(10) + key)}",
            {"fingerprint": fingerprint, "jobId": job_id},
            expires_at=now // 1000 + IDEMPOTENCY_TTL_SECONDS,
            now_s=now // 1000,
        )
        if marker is None:
            return None, job_id
        if marker.get("fingerprint") != fingerprint:
            raise Conflict("this Idempotency-Key was used with a different request body; use a new key")
        existing = self.store.get(caller.user_id, marker["jobId"])
        return existing, marker["jobId"]

    def _deduplicated(self, request: JobCreate, caller: Identity, job_id: str | None, now: int) -> tuple[Job | None, str]:
        dedup = request.options.deduplication
        assert dedup is not None
        key = f"DEDUP#{_dedup_digest(caller.user_id, request.queue or '', dedup.key)}"
        new_id = job_id or str(uuid.uuid4())
        ttl = dedup.ttl_seconds or DEDUP_DEFAULT_TTL_SECONDS
        for _ in range(3):
            marker = self.store.claim_marker(key, {"jobId": new_id}, expires_at=now // 1000 + ttl, now_s=now // 1000)
            if marker is None:
                return None, new_id
            existing = self.store.get(caller.user_id, marker["jobId"])
            if existing is not None and dedup.mode in ("debounce", "keepLastIfActive"):
                if existing.status in (JobStatus.WAITING, JobStatus.DELAYED) and existing.type == request.type:
                    replaced = self._replace_pending(existing, request, now)
                    if replaced is not None:
                        return replaced, new_id
                    continue  # it started meanwhile: look again
                if dedup.mode == "keepLastIfActive" and existing.status not in FINISHED:
                    # Running: the newest job waits beside it, and the key names the newest from now on.
                    self.store.delete_marker(key)
                    continue
            alive = existing is not None and (dedup.ttl_seconds is not None or existing.status not in FINISHED)
            if alive:
                return existing, new_id
            self.store.delete_marker(key)  # its job finished (or never got stored): the key is free again
        return None, new_id

    def _replace_pending(self, job: Job, request: JobCreate, now: int) -> Job | None:
        """Debounce / keep-last: the pending job takes the request's data (debounce: and restarts its delay); None if it moved on."""
        assert request.options.deduplication is not None
        debounce = request.options.deduplication.mode == "debounce"
        delay = scheduler.resolve_delay(request.options, now, self.settings) if debounce else None
        try:
            return self.transitions.apply(lifecycle.replace_pending(job, data=request.data, now=now, delay_ms=delay), self.directory.get(job.queue))
        except Conflict:
            return None

    def create_bulk(self, items: list[dict[str, Any]], caller: Identity) -> list[BulkOutcome]:
        """Up to 100 jobs: each item succeeds or fails on its own; plain items are written and enqueued in batches."""
        if len(items) > MAX_BULK_JOBS:
            raise Invalid(f"at most {MAX_BULK_JOBS} jobs per bulk request; this one has {len(items)}")
        now = self.clock()
        # The whole request against the caller's rate quota in one write: all its items, or 429 and none.
        self.quotas.take_rate(caller.user_id, len(items))
        outcomes: dict[int, BulkOutcome] = {}
        batch: list[tuple[int, QueueInfo, Job]] = []
        for index, raw in enumerate(items):
            try:
                request = JobCreate.model_validate(raw)
                if request.on_behalf_of is not None and request.on_behalf_of != caller.user_id:
                    raise Invalid("bulk items name no onBehalfOf of their own: send the X-On-Behalf-Of header once")
                if request.options.job_id or request.options.deduplication or request.options.run_at or scheduler.needs_schedule(request.options.delay):
                    job, created = self.create(request, caller, rate_taken=True)  # needs its conditional write
                    outcomes[index] = BulkOutcome(index, 201 if created else 200, job)
                    continue
                queue, job = self._prepare(request, caller, None, now)
                batch.append((index, queue, self._admit(queue, job)))
            except ValidationError as err:
                outcomes[index] = BulkOutcome(index, 400, error=Invalid(_validation_message(err)))
            except JobqError as err:
                outcomes[index] = BulkOutcome(index, err.status_code, error=err)
        if batch:
            self._store_and_enqueue(batch, outcomes)
        return [outcomes[i] for i in range(len(items))]

    def _store_and_enqueue(self, batch: list[tuple[int, QueueInfo, Job]], outcomes: dict[int, BulkOutcome]) -> None:
        _, not_stored, why = self.store.create_many([job for _, _, job in batch])
        missing = {job.job_id for job in not_stored}
        for index, _, job in batch:
            if job.job_id in missing:
                self._give_back(job)
                error = why or Unavailable("not stored; retry this item")
                outcomes[index] = BulkOutcome(index, error.status_code, error=error)
        by_queue: dict[str, list[tuple[int, QueueInfo, Job]]] = {}
        for entry in (e for e in batch if e[2].job_id not in missing):
            by_queue.setdefault(entry[1].name, []).append(entry)
        for entries in by_queue.values():
            queue = entries[0][1]
            unsent = queues.send_jobs(
                queue, [(JobRef.of(job), -(-job.delay // 1000)) for _, _, job in entries], {JobRef.of(job): queues.Route.of(job) for _, _, job in entries}
            )
            for index, _, job in entries:
                if JobRef.of(job) in unsent and self._take_back(job):
                    outcomes[index] = BulkOutcome(index, 503, error=Unavailable(f"could not enqueue on {queue.name}; retry this item"))
                else:
                    outcomes[index] = BulkOutcome(index, 201, job)  # stored (and enqueued, or left to the health sweep)
            emit("JobsCreated", queue.name, len(entries) - len(unsent))

    # ---- read -----------------------------------------------------------------------------
    @staticmethod
    def acting(caller: Identity, on_behalf_of: str | None) -> Identity:
        """The identity a request acts as: a service client naming a user in the body acts for them."""
        if on_behalf_of is None or (caller.acting_for_user and on_behalf_of == caller.user_id):
            return caller
        if caller.acting_for_user:
            raise Invalid("onBehalfOf and X-On-Behalf-Of name different users")
        return caller.acting_for(on_behalf_of)

    @staticmethod
    def owner_for(caller: Identity, user_id: str | None) -> str | None:
        """Whose namespace a request addresses: the caller's, or ``user_id``'s for those who may
        read other users' jobs somewhere (admins, readers, members of a queue's read or operate
        groups); whether they may read this job is decided once its queue is known (``visible``).
        None: anyone else naming another owner, who is answered as for a job that does not exist."""
        if user_id is None or user_id == caller.user_id:
            return caller.user_id
        if caller.client_id is None and (caller.sees_everything or caller.groups):
            return user_id
        return None

    def visible(self, caller: Identity, job: Job) -> bool:
        """Whether ``caller`` may read ``job``: one's own always (a service client's: on its queues);
        another user's when the job's queue lets the caller read all its jobs."""
        return may_read_job(caller, job.user_id, self._access_of(job.queue))

    def _access_of(self, queue_name: str) -> QueueAccess | None:
        try:
            return get_policy(self.directory.get(queue_name)).access
        except NotFound:
            return None  # a queue removed from the stack: only admins and readers still see its jobs

    def get(self, job_id: str, caller: Identity, *, user_id: str | None = None, change: bool = False) -> Job:
        """The caller's job ``job_id`` (or ``user_id``'s, for those allowed). Nobody else's namespace is read.
        A job the caller may not read is not found; one it may read but not ``change`` is 403."""
        owner = self.owner_for(caller, user_id)
        job = self.store.get(owner, job_id) if owner is not None else None
        if job is None or not self.visible(caller, job):
            raise NotFound(f"job {job_id} not found")
        if change:
            own = job.user_id == caller.user_id
            authorize(caller, Action.CHANGE_OWN if own else Action.OPERATE, self._access_of(job.queue), queue=job.queue)
        return job

    def read(self, job_id: str, caller: Identity, *, user_id: str | None = None) -> Job:
        """The job as ``get`` finds it, its data (and result, while both fit one answer) read back from S3."""
        return self.store.with_payloads(self.get(job_id, caller, user_id=user_id), result_budget=ANSWER_PAYLOAD_BYTES)

    def result(self, job_id: str, caller: Identity, *, user_id: str | None = None) -> Any:
        """The job's result alone (None while it has none), wherever it is stored."""
        return self.store.with_payloads(self.get(job_id, caller, user_id=user_id), data=False).result

    def get_many(self, caller: Identity, refs: list[tuple[str, str | None]]) -> tuple[list[Job], list[str]]:
        """Bulk status: ``(job_id, owner or None)`` pairs read in one BatchGetItem; the visible jobs,
        and the ids of the rest (unknown and invisible alike, in request order)."""
        named = [(job_id, self.owner_for(caller, owner)) for job_id, owner in refs]
        wanted = list(dict.fromkeys(JobRef(owner, job_id) for job_id, owner in named if owner is not None))
        found = self.store.get_many(wanted)
        jobs = [found[ref] for ref in wanted if ref in found and self.visible(caller, found[ref])]
        shown = {JobRef.of(job) for job in jobs}
        missing = [job_id for job_id, owner in named if owner is None or JobRef(owner, job_id) not in shown]
        return jobs, list(dict.fromkeys(missing))

    def list_for_user(
        self, user_id: str, caller: Identity, *, limit: int, cursor: str | None, status: JobStatus | None, queue: str | None
    ) -> tuple[list[Job], str | None]:
        """A user's jobs, newest first. Users list their own; admins and readers anyone's; a queue's
        readers (and service clients allowed on it, for the user they act for) with ``queue``."""
        own = user_id == caller.user_id and caller.client_id is None
        if not own and not caller.sees_everything:
            if queue is None or not (caller.groups or (caller.client_id and user_id == caller.user_id)):
                raise Forbidden("you may list only your own jobs")
            action = Action.OWN if caller.client_id else Action.READ
            authorize(caller, action, self._access_of(self.directory.get(queue).name), queue=queue)
        return self.store.page_by_user(user_id, status, limit=limit, cursor=cursor, queue=queue)

    def list_for_queue(
        self, caller: Identity, *, queue: str, limit: int, cursor: str | None, status: JobStatus | None
    ) -> tuple[list[Job], str | None]:
        """A queue's jobs, newest first (admins, readers, the queue's read and operate groups)."""
        info = self.directory.get(queue)
        authorize(caller, Action.READ, get_policy(info).access, queue=info.name)
        name = info.name
        return self.store.page_by_queue(name, status, limit=limit, cursor=cursor)

    def logs(
        self, job_id: str, caller: Identity, *, limit: int, cursor: str | None, user_id: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        job = self.get(job_id, caller, user_id=user_id)
        return self.store.page_logs(job.user_id, job.job_id, limit=limit, cursor=cursor)

    # ---- change -----------------------------------------------------------------------------
    def cancel(self, job_id: str, caller: Identity, *, user_id: str | None = None) -> Job:
        """Waiting, delayed or stalled: cancelled now. Active: marked, and its worker ends it cancelled."""
        for _ in range(3):
            job = self.get(job_id, caller, user_id=user_id, change=True)
            queue = self.directory.get(job.queue)
            now = self.clock()
            try:
                if job.status in (JobStatus.WAITING, JobStatus.DELAYED, JobStatus.STALLED, JobStatus.WAITING_CHILDREN):
                    change = lifecycle.cancel(
                        job,
                        now=now,
                        policy=get_policy(queue),
                        reason="cancelled by request",
                        has_schedule=job.status is JobStatus.DELAYED and scheduler.needs_schedule(job.delay),
                    )
                    return self.transitions.apply(change, queue)
                if job.status is JobStatus.ACTIVE:
                    if job.cancel_requested:
                        return job
                    requested = self.transitions.apply(lifecycle.request_cancel(job, now=now), queue)
                    self._stop_execution(requested)
                    return requested
            except Conflict:
                continue  # it moved on while we looked: look again
            raise Conflict(f"job {job_id} is {job.status.value}; only waiting, delayed, active or stalled jobs can be cancelled")
        raise Conflict(f"job {job_id} kept changing; try again")

    def _stop_execution(self, job: Job) -> None:
        """A job waiting for a state machine's execution: stop it; its end event then ends the job cancelled.

        If the stop fails the cancel still holds: whenever the execution ends, the job ends cancelled."""
        if self.catalog.is_code_type(job.queue, job.type) or not job.lease_token:
            return
        target = self.store.get_target(job.queue, job.type)  # one GetItem, on the cancel of a running target job only
        if isinstance(target, StateMachineTarget):
            from shared.adapters import state_machines

            try:
                state_machines.stop(state_machines.execution_arn(target.state_machine_arn, job.lease_token), cause="job cancelled")
            except JobqError as err:
                logger.warning("could not stop a cancelled job's execution", extra={"job_id": job.job_id, "error": err.message})

    def retry(
        self,
        job_id: str,
        caller: Identity,
        *,
        user_id: str | None = None,
        why: str = "manual retry",
        priority: int | None = None,
        attempts: int | None = None,
    ) -> Job:
        """A failed or cancelled job goes back to waiting with a fresh set of attempts; its history stays.

        ``priority`` and ``attempts`` replace the job's own (seed 002 revives dead letters at low priority, once)."""
        job = self.get(job_id, caller, user_id=user_id, change=True)
        queue = self.directory.get(job.queue)
        try:
            change = lifecycle.requeue(job, now=self.clock(), why=why, priority=priority, max_attempts=attempts)
            return self.transitions.apply(change, queue, must_wake=True)
        except Unavailable as err:
            current = self.store.get(job.user_id, job.job_id)
            if current is not None and current.status is JobStatus.WAITING and current.version > job.version:
                raise Unavailable(f"job {job_id} is waiting but could not be enqueued yet; the health check will enqueue it") from err
            raise

    def remove(self, job_id: str, caller: Identity, *, user_id: str | None = None) -> Job:
        """Delete a job that is not running (``DELETE /jobs/{id}?action=remove``); the job as it was.

        Conditional on the job being as read, so a job that started meanwhile stays (409). A waiting
        job's message finds no job and is acknowledged; a delayed job's schedule is removed.
        """
        job = self.get(job_id, caller, user_id=user_id, change=True)
        if job.status in (JobStatus.ACTIVE, JobStatus.STALLED):
            raise Conflict(f"job {job_id} is {job.status.value}; cancel it first (DELETE /jobs/{job_id})")
        if self.tree_remover is not None:
            self.tree_remover(job)  # a flow's parent: its tree goes first (shared/flow_service.py)
        if not self.store.delete_unchanged(job):
            raise Conflict(f"job {job_id} changed while it was being removed; look again")
        remove_delayed_schedule(job, self.settings)
        logger.info("job removed", extra={"job_id": job.job_id, "queue": job.queue, "status": job.status.value})
        return job


def _validation_message(err: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5]]
    return "invalid job: " + "; ".join(parts)


def remove_delayed_schedule(job: Job, settings: Settings) -> None:
    """After a delayed job is deleted, its one-time schedule too (best effort: a firing for a job that
    no longer exists is acknowledged and does nothing)."""
    if job.status is not JobStatus.DELAYED or not scheduler.needs_schedule(job.delay):
        return
    try:
        scheduler.cancel_delayed(JobRef.of(job), settings=settings)
    except Unavailable:
        logger.warning("could not remove a removed job's schedule", extra={"job_id": job.job_id})


def require_admin(caller: Identity) -> None:
    """Stack-wide changes (schedules): admins only (shared/access.py)."""
    authorize(caller, Action.ADMINISTER)


__all__ = ["BulkOutcome", "Identity", "JobService", "require_admin"]
