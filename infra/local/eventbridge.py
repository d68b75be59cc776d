"""EventBridge, emulated: Scheduler schedules fire, rules run their functions, and the clock can move.

moto stores Scheduler schedules and EventBridge rules but never fires them (DESIGN.md), so
the local stack does, with the shapes AWS uses:

* :class:`SchedulerEmulator` polls the stack's schedule groups in moto (ListSchedules,
  GetSchedule) and fires each ENABLED schedule when it is due: ``at(...)`` once (then
  DELETE if its ``ActionAfterCompletion`` says so), ``rate(...)`` from its StartDate (or
  its creation), ``cron(...)`` in its ``ScheduleExpressionTimezone``, within StartDate and
  EndDate. A firing renders the target's ``Input`` with Scheduler's context attributes
  (``<aws.scheduler.scheduled-time>``, ``execution-id``, ``schedule-arn``,
  ``attempt-number``) and delivers it: an SQS target gets it as a message body; a Lambda
  target is invoked asynchronously with it as the event (retried twice on an error, as
  Lambda retries async invocations). After a jump of the clock only the latest missed
  firing is delivered. ``fire()`` delivers a schedule now, as if at a given scheduled time,
  any number of times (a redelivery has the same scheduled time and a new attempt number).
* :class:`RuleRunner` runs every function's ``Schedule`` event (an EventBridge rule) at
  its ``rate()``/``cron()``, or every ``interval`` seconds when the local stack is told to
  run rules faster (``--rule-interval``), with EventBridge's Scheduled Event. ``run_now()``
  invokes one at once. A rule whose last invocation still runs is not started again.
* :class:`LocalClock` moves the clock of everything jobq computes (passed to the composition roots) and
  of both emulators forward, so a job due in 20 minutes can be run in a test now; set back,
  the emulators count their periods from the time it shows again. SQS delays and moto
  keep real time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import boto3
from botocore.config import Config

from infra.local.meter import client_config
from infra.local.provision import FunctionSpec
from infra.local.runtime import Handler, LambdaContext

log = logging.getLogger("jobq.local.eventbridge")

__all__ = ["LocalClock", "RuleRunner", "SchedulerEmulator", "render_input", "scheduled_event", "use_clock_everywhere"]

Invoker = Callable[[str, dict[str, Any]], Any]  # (function ARN, event) -> result


# ---- the clock -----------------------------------------------------------------------------------
class LocalClock:
    """The local stack's clock: real time plus an offset that tests can move forward."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0
        self._installed = False

    def now_ms(self) -> int:
        return int((time.time() + self.offset_seconds) * 1000)

    def install(self) -> None:
        """Pass this clock to every composition root: the functions', the live events' and the API's."""
        use_clock_everywhere(self.now_ms)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            use_clock_everywhere(None)
            self._installed = False
        self.offset_seconds = 0.0

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset_seconds += seconds

    def set_offset(self, seconds: float) -> None:
        self.offset_seconds = float(seconds)


def use_clock_everywhere(clock: Callable[[], int] | None) -> None:
    """Every container's services built on ``clock`` (None: the wall clock again)."""
    import api.deps
    import functions.composition
    import functions.realtime.services

    for root in (functions.composition, functions.realtime.services, api.deps):
        root.use_clock(clock)


def _iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- EventBridge Scheduler ----------------------------------------------------------------------------
def render_input(text: str, *, scheduled_ms: int, schedule_arn: str, execution_id: str, attempt: int) -> str:
    """A target's Input with Scheduler's context attributes filled in."""
    for key, value in (
        ("<aws.scheduler.scheduled-time>", _iso_seconds(scheduled_ms)),
        ("<aws.scheduler.execution-id>", execution_id),
        ("<aws.scheduler.schedule-arn>", schedule_arn),
        ("<aws.scheduler.attempt-number>", str(attempt)),
    ):
        text = text.replace(key, value)
    return text


def _epoch_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float):
        return int(value * 1000)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class _Tracked:
    """What the emulator knows of one schedule between polls."""

    arn: str
    modified: Any
    detail: dict[str, Any]
    next_ms: int | None  # None: it will not fire again


class SchedulerEmulator:
    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        groups: list[str],
        invoke: Invoker,
        clock: Callable[[], int],
        tick_seconds: float = 0.5,
        on_failure: Callable[[str], str | None] | None = None,
        retry_delay_seconds: float = 1.0,
    ) -> None:
        self.groups = groups
        self.invoke = invoke
        # function ARN -> the SQS queue ARN of its on-failure destination (EventInvokeConfig), if any
        self.on_failure = on_failure or (lambda arn: None)
        self.retry_delay_seconds = retry_delay_seconds
        self.clock = clock
        self.tick_seconds = tick_seconds
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
        config = Config(retries={"max_attempts": 2}, **client_config("scheduler"))
        self._scheduler = session.client("scheduler", endpoint_url=endpoint_url, config=config)
        self._sqs = session.client("sqs", endpoint_url=endpoint_url, config=config)
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._last_now = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0

    # -- running --
    def start(self) -> SchedulerEmulator:
        self._thread = threading.Thread(target=self._loop, name="scheduler-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.run_due()
            except Exception as exc:  # keep firing whatever one poll hit
                log.warning("scheduler poll failed: %s", exc)

    def run_due(self) -> int:
        """Fire every schedule that is due now; returns how many fired."""
        fired = 0
        now = self.clock()
        with self._lock:
            if now < self._last_now - 1000:  # the clock was moved back: work the schedules out again from now
                self._tracked.clear()
            self._last_now = now
            seen: set[tuple[str, str]] = set()
            for group in self.groups:
                for summary in self._list(group):
                    key = (group, summary["Name"])
                    seen.add(key)
                    tracked = self._track(key, summary, now)
                    if tracked is None or tracked.next_ms is None or tracked.next_ms > now:
                        continue
                    if tracked.detail.get("State") != "ENABLED":
                        continue
                    due = self._latest_due(tracked, now)
                    self._deliver(tracked.detail, due, attempt=1)
                    fired += 1
                    tracked.next_ms = self._next_after(tracked.detail, due)
                    if tracked.next_ms is None and tracked.detail.get("ActionAfterCompletion") == "DELETE":
                        self._delete(group, summary["Name"])
                        seen.discard(key)
            for key in set(self._tracked) - seen:
                del self._tracked[key]
        return fired

    def fire(self, name: str, *, group: str | None = None, scheduled_ms: int | None = None, deliveries: int = 1) -> dict[str, Any]:
        """Deliver schedule ``name`` now, ``deliveries`` times, as if at ``scheduled_ms`` (default: now)."""
        group = group or self.groups[0]
        with self._lock:
            detail = self._scheduler.get_schedule(Name=name, GroupName=group)
            when = scheduled_ms if scheduled_ms is not None else self.clock()
            execution_id = str(uuid.uuid4())
            for attempt in range(1, deliveries + 1):
                self._deliver(detail, when, attempt=attempt, execution_id=execution_id)
            one_time = str(detail.get("ScheduleExpression", "")).startswith("at(")
            if one_time and detail.get("ActionAfterCompletion") == "DELETE":
                self._delete(group, name)
                self._tracked.pop((group, name), None)
        return {"name": name, "group": group, "scheduledTime": _iso_seconds(when), "deliveries": deliveries, "target": detail["Target"]["Arn"]}

    # -- schedules --
    def _list(self, group: str) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"GroupName": group, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            out = self._scheduler.list_schedules(**params)
            summaries.extend(out.get("Schedules", []))
            token = out.get("NextToken")
            if not token:
                return summaries

    def _track(self, key: tuple[str, str], summary: dict[str, Any], now: int) -> _Tracked | None:
        tracked = self._tracked.get(key)
        modified = summary.get("LastModificationDate")
        if tracked is not None and tracked.modified == modified:
            return tracked
        detail = self._scheduler.get_schedule(Name=key[1], GroupName=key[0])
        try:
            first = self._first(detail, now)
        except ValueError as exc:
            log.warning("schedule %s/%s: %s; it will not fire", key[0], key[1], exc)
            first = None
        tracked = _Tracked(arn=detail.get("Arn", ""), modified=modified, detail=detail, next_ms=first)
        self._tracked[key] = tracked
        return tracked

    def _first(self, detail: dict[str, Any], now: int) -> int | None:
        from shared import cron

        kind, body = cron.parse_expression(detail["ScheduleExpression"])
        tz = ZoneInfo(detail.get("ScheduleExpressionTimezone") or "UTC")
        if kind == "at":
            local = datetime.fromisoformat(body).replace(tzinfo=tz)
            return int(local.timestamp() * 1000)
        start = _epoch_ms(detail.get("StartDate"))
        if kind == "rate":
            if start is not None and start > now:
                return self._within_end(detail, start)
            # Every period from its start (or creation): the first such time after now.
            anchor = start if start is not None else (_epoch_ms(detail.get("CreationDate")) or now)
            period = cron.rate_ms(body)
            return self._within_end(detail, anchor + (max(0, now - anchor) // period + 1) * period)
        return self._next_cron(detail, max(now, start or now) - 1)

    def _next_cron(self, detail: dict[str, Any], after_ms: int) -> int | None:
        from shared import cron

        _, body = cron.parse_expression(detail["ScheduleExpression"])
        recurrence = cron.Recurrence(
            expression=detail["ScheduleExpression"],
            timezone=detail.get("ScheduleExpressionTimezone") or "UTC",
            unix_cron=cron.eventbridge_to_unix(body),
        )
        nxt = recurrence.next_after(datetime.fromtimestamp(after_ms / 1000, tz=UTC))
        return self._within_end(detail, int(nxt.timestamp() * 1000))

    def _within_end(self, detail: dict[str, Any], when: int) -> int | None:
        end = _epoch_ms(detail.get("EndDate"))
        return None if end is not None and when > end else when

    def _next_after(self, detail: dict[str, Any], fired_ms: int) -> int | None:
        from shared import cron

        kind, body = cron.parse_expression(detail["ScheduleExpression"])
        if kind == "at":
            return None
        if kind == "rate":
            return self._within_end(detail, fired_ms + cron.rate_ms(body))
        return self._next_cron(detail, fired_ms)

    def _latest_due(self, tracked: _Tracked, now: int) -> int:
        """After a jump of the clock, only the latest missed firing is delivered."""
        due = tracked.next_ms
        assert due is not None
        skipped = 0
        while True:
            nxt = self._next_after(tracked.detail, due)
            if nxt is None or nxt > now:
                break
            due, skipped = nxt, skipped + 1
        if skipped:
            log.info("schedule %s: %d missed firing(s) skipped after a clock jump", tracked.detail.get("Name"), skipped)
        return due

    def _delete(self, group: str, name: str) -> None:
        try:
            self._scheduler.delete_schedule(Name=name, GroupName=group)
        except Exception as exc:  # deleted meanwhile (a cancelled job)
            log.debug("delete of schedule %s/%s: %s", group, name, exc)

    # -- delivering --
    def _deliver(self, detail: dict[str, Any], scheduled_ms: int, *, attempt: int, execution_id: str | None = None) -> None:
        target = detail["Target"]
        body = render_input(
            target.get("Input") or "{}",
            scheduled_ms=scheduled_ms,
            schedule_arn=detail.get("Arn", ""),
            execution_id=execution_id or str(uuid.uuid4()),
            attempt=attempt,
        )
        arn = str(target["Arn"])
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        self.delivered += 1
        if service == "sqs":
            name = arn.rsplit(":", 1)[-1]
            url = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self._sqs.send_message(QueueUrl=url, MessageBody=body)
            log.info("schedule %s fired: message to %s", detail.get("Name"), name)
        elif service == "lambda":
            event = json.loads(body)
            threading.Thread(target=self._invoke_async, args=(arn, event, detail.get("Name")), daemon=True).start()
        else:
            log.warning("schedule %s: target %s is not emulated (only SQS and Lambda)", detail.get("Name"), arn)

    def _invoke_async(self, arn: str, event: dict[str, Any], name: Any) -> None:
        error: Exception | None = None
        for attempt in range(3):  # Lambda retries a failed asynchronous invocation twice
            try:
                self.invoke(arn, event)
                log.info("schedule %s fired: %s invoked", name, arn.rsplit(":", 1)[-1])
                return
            except Exception as exc:
                error = exc
                log.exception("schedule %s: invocation %d of %s failed", name, attempt + 1, arn)
                if attempt < 2 and self._stop.wait(self.retry_delay_seconds):
                    return
        destination = self.on_failure(arn)
        if destination and error is not None:
            self._send_failure_record(destination, arn, event, error)

    def _send_failure_record(self, destination: str, arn: str, event: dict[str, Any], error: Exception) -> None:
        """What Lambda sends an on-failure destination once an asynchronous invocation's retries are exhausted."""
        record = {
            "version": "1.0",
            "timestamp": _iso_seconds(self.clock()),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__},
        }
        url = self._sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
        self._sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        log.warning("schedule firing sent to %s after three failed invocations of %s", destination, arn)


# ---- EventBridge rules ------------------------------------------------------------------------------
def scheduled_event(*, rule_arn: str, account: str, region: str, now_ms: int) -> dict[str, Any]:
    """What EventBridge passes a rule's target on a schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _iso_seconds(now_ms),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass
class _Rule:
    function: FunctionSpec
    event_name: str
    expression: str
    input: str | None
    arn: str
    next_ms: int
    running: bool = False
    runs: int = 0


class RuleRunner:
    """Every ``Schedule`` event of the stack's functions, run on time (or every ``interval`` seconds)."""

    def __init__(
        self,
        functions: list[FunctionSpec],
        resolve: Callable[[FunctionSpec], Handler],
        *,
        region: str,
        account_id: str,
        clock: Callable[[], int],
        interval: float | None = None,
        tick_seconds: float = 0.2,
    ) -> None:
        self.resolve = resolve
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.interval = interval
        self.tick_seconds = tick_seconds
        self.rules: dict[str, _Rule] = {}
        now = clock()
        for fn in functions:
            for event_name, event in fn.events.items():
                if event.get("Type") not in ("Schedule", "ScheduleV2"):
                    continue
                props = event.get("Properties") or {}
                if str(props.get("Enabled", True)).lower() == "false" or str(props.get("State", "ENABLED")) == "DISABLED":
                    continue
                expression = str(props.get("Schedule") or props.get("ScheduleExpression"))
                rule = _Rule(
                    function=fn,
                    event_name=event_name,
                    expression=expression,
                    input=props.get("Input"),
                    arn=f"arn:aws:events:{region}:{account_id}:rule/{fn.stack_name}-{fn.logical_id}{event_name}",
                    next_ms=0,
                )
                rule.next_ms = self._next(rule, now)
                self.rules[fn.logical_id] = rule
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _next(self, rule: _Rule, after_ms: int) -> int:
        if self.interval is not None:
            return after_ms + int(self.interval * 1000)
        from shared import cron

        kind, body = cron.parse_expression(rule.expression)
        if kind == "rate":
            return after_ms + cron.rate_ms(body)
        recurrence = cron.Recurrence(expression=rule.expression, timezone="UTC", unix_cron=cron.eventbridge_to_unix(body))
        return int(recurrence.next_after(datetime.fromtimestamp(after_ms / 1000, tz=UTC)).timestamp() * 1000)

    def start(self) -> RuleRunner:
        if self.rules:
            self._thread = threading.Thread(target=self._loop, name="eventbridge-rules", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        last = self.clock()
        while not self._stop.wait(self.tick_seconds):
            now = self.clock()
            if now < last - 1000:  # the clock was moved back: count the periods from now
                for rule in self.rules.values():
                    rule.next_ms = self._next(rule, now)
            last = now
            for rule in list(self.rules.values()):
                with self._lock:
                    if rule.running or rule.next_ms > now:
                        continue
                    rule.running = True
                    rule.next_ms = self._next(rule, now)
                threading.Thread(target=self._run, args=(rule,), name=f"rule-{rule.function.logical_id}", daemon=True).start()

    def _run(self, rule: _Rule) -> Any:
        try:
            return self._invoke(rule)
        except Exception:
            log.exception("rule %s: %s raised", rule.arn, rule.function.logical_id)
            return None
        finally:
            with self._lock:
                rule.running = False

    def _invoke(self, rule: _Rule) -> Any:
        handler = self.resolve(rule.function)
        event = (
            json.loads(rule.input)
            if rule.input
            else scheduled_event(rule_arn=rule.arn, account=self.account_id, region=self.region, now_ms=self.clock())
        )
        result = handler(event, LambdaContext(rule.function))
        rule.runs += 1
        return result

    def run_now(self, logical_id: str) -> Any:
        """Invoke a rule's function at once (tests); raises what it raises."""
        rule = self.rules.get(logical_id)
        if rule is None:
            raise KeyError(f"no scheduled rule for {logical_id}; known: {', '.join(sorted(self.rules))}")
        return self._invoke(rule)
