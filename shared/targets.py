"""Registering a job type's processor target on a queue: an HTTP URL, a Lambda function or a state machine.

The caller needs the queue's OPERATE right (its policy's access); what each kind must satisfy is
checked before the target is stored (shared/adapters/job_repository.py keeps it as the queue's
``TARGET#<type>`` item). The consumers read the targets through shared/catalog.py.
"""

from __future__ import annotations

from shared.access import Action, Identity, authorize
from shared.adapters.policies import get_policy
from shared.clock import Clock, iso, now_ms
from shared.errors import Conflict, Invalid
from shared.models import AnyTarget, HttpTarget, LambdaTarget, QueueInfo, StateMachineTarget
from shared.observability import logger
from shared.ports import JobRepository, ProcessorCatalog, QueueDirectory
from shared.settings import Settings


class TargetRegistry:
    """``PUT /queues/{name}/processors/{type}`` and a queue PATCH's processors: a type's target, checked, then stored."""

    def __init__(self, store: JobRepository, directory: QueueDirectory, catalog: ProcessorCatalog, settings: Settings, *, clock: Clock = now_ms) -> None:
        self.store = store
        self.directory = directory
        self.catalog = catalog
        self.settings = settings
        self.clock = clock

    def put(self, queue_name: str, job_type: str, target: AnyTarget, caller: Identity) -> AnyTarget:
        """Register a processor target for a type (admin): an HTTP URL or a Lambda function."""
        if isinstance(target, LambdaTarget):
            return self.put_lambda(queue_name, job_type, target, caller)
        if isinstance(target, StateMachineTarget):
            return self.put_state_machine(queue_name, job_type, target, caller)
        return self.put_http(queue_name, job_type, target, caller)

    def put_state_machine(self, queue_name: str, job_type: str, target: StateMachineTarget, caller: Identity) -> StateMachineTarget:
        queue = self._operated(queue_name, caller)
        _require_listed(target.state_machine_arn, self.settings.state_machine_target_arns, "stateMachineArn", "start", "StateMachineTargetArns")
        self._store(queue, job_type, target)
        logger.info("state machine target registered", extra={"queue": queue.name, "type": job_type, "state_machine": target.state_machine_arn})
        return target

    def put_lambda(self, queue_name: str, job_type: str, target: LambdaTarget, caller: Identity) -> LambdaTarget:
        queue = self._operated(queue_name, caller)
        _require_listed(target.function_arn, self.settings.lambda_target_arns, "functionArn", "invoke", "LambdaTargetArns")
        self._store(queue, job_type, target)
        logger.info("lambda target registered", extra={"queue": queue.name, "type": job_type, "function": target.function_arn})
        return target

    def _operated(self, queue_name: str, caller: Identity) -> QueueInfo:
        """The queue, if the caller may operate it (its policy's access)."""
        queue = self.directory.get(queue_name)
        authorize(caller, Action.OPERATE, get_policy(queue).access, queue=queue.name)
        return queue

    def _store(self, queue: QueueInfo, job_type: str, target: AnyTarget) -> None:
        """What every kind of target must satisfy before it is stored: it answers within the
        consumer's timeout, and it does not take over a type a code processor handles."""
        # A state machine's execution outlives the consumer (the job waits for its end event), so it is exempt.
        if not isinstance(target, StateMachineTarget) and target.timeout_seconds > queue.consumer_timeout:
            raise Invalid(
                f"timeoutSeconds must not be above the consumer's timeout on queue '{queue.name}' ({queue.consumer_timeout} s)"
            )
        if self.catalog.is_code_type(queue.name, job_type):
            raise Conflict(f"type '{job_type}' on queue '{queue.name}' is handled by a code processor")
        self.store.put_target(queue.name, job_type, target, now=iso(self.clock()))

    def put_http(self, queue_name: str, job_type: str, target: HttpTarget, caller: Identity) -> HttpTarget:
        queue = self._operated(queue_name, caller)
        try:
            target.check_url(allow_loopback_http=self.settings.allow_loopback_http_targets)
            target.check_data_schema()
        except ValueError as err:
            raise Invalid(str(err)) from err
        self._store(queue, job_type, target)
        logger.info("http target registered", extra={"queue": queue.name, "type": job_type, "url": target.url})
        return target


def _require_listed(arn: str, listed: str, field: str, verb: str, parameter: str) -> None:
    """The consumers' role may reach only the ARNs the stack lists (template.yaml ``parameter``): any other is a 400."""
    allowed = {a.strip() for a in listed.split(",") if a.strip()}
    if arn not in allowed:
        raise Invalid(
            f"{field} {arn} is not one the consumers may {verb}: add it to the stack's {parameter} parameter"
            + (f" (now {', '.join(sorted(allowed))})" if allowed else " (now empty)")
        )


__all__ = ["TargetRegistry"]
