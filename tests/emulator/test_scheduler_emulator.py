"""The local stack's EventBridge emulation: Scheduler schedules fire with AWS's shapes, rules run, the clock moves.

The emulators are the code under test; the Lambda handlers behind them are small fakes.
moto runs in server mode on a free port on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from infra.local.eventbridge import LocalClock, RuleRunner, SchedulerEmulator, render_input
from infra.local.provision import FunctionSpec

REGION = "us-east-1"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:t-SchedulerFunction"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t")


@pytest.fixture
def world(endpoint: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    group = f"g{abs(hash(request.node.name)) % 10**8}"
    scheduler = client(endpoint, "scheduler")
    scheduler.create_schedule_group(Name=group)
    sqs = client(endpoint, "sqs")
    url = sqs.create_queue(QueueName=f"{group}-q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    invoked: list[dict[str, Any]] = []
    now = {"ms": int(time.time() * 1000)}
    emulator = SchedulerEmulator(
        endpoint_url=endpoint, region=REGION, groups=[group], invoke=lambda fn, event: invoked.append({"fn": fn, **event}), clock=lambda: now["ms"]
    )
    return {"group": group, "scheduler": scheduler, "sqs": sqs, "url": url, "arn": arn, "invoked": invoked, "now": now, "emulator": emulator}


def messages(world: dict[str, Any]) -> list[str]:
    out = world["sqs"].receive_message(QueueUrl=world["url"], MaxNumberOfMessages=10)
    return [m["Body"] for m in out.get("Messages", [])]


def wait_for(predicate: Any, timeout: float = 10.0) -> None:  # generous: the emulator threads share a loaded machine
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_one_time_schedule_sends_its_input_to_sqs_when_due_and_deletes_itself(world: dict[str, Any]) -> None:
    world["scheduler"].create_schedule(
        Name="delay-job-1", GroupName=world["group"], ScheduleExpression="at(2030-01-01T00:00:00)", ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE",
        Target={"Arn": world["arn"], "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": '{"jobId":"job-1","queue":"q"}'},
    )
    emulator: SchedulerEmulator = world["emulator"]

    world["now"]["ms"] = 1893455999000  # a second early
    assert emulator.run_due() == 0 and messages(world) == []
    world["now"]["ms"] = 1893456000000
    assert emulator.run_due() == 1

    assert messages(world) == ['{"jobId":"job-1","queue":"q"}']
    assert world["scheduler"].list_schedules(GroupName=world["group"])["Schedules"] == []


def test_a_rate_schedule_invokes_its_lambda_with_the_scheduled_time_each_period(world: dict[str, Any]) -> None:
    world["scheduler"].create_schedule(
        Name="repeat-tick", GroupName=world["group"], ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": "arn:aws:iam::123456789012:role/r",
                "Input": '{"schedule":"tick","scheduledTime":"<aws.scheduler.scheduled-time>","attempt":"<aws.scheduler.attempt-number>"}'},
    )
    emulator: SchedulerEmulator = world["emulator"]
    # The emulator counts periods from the schedule's creation: start the fake clock after it
    # (on a loaded machine the creation can be seconds after the fixture read the clock).
    world["now"]["ms"] = int(time.time() * 1000) + 1000
    emulator.run_due()  # first seen now: due a minute later
    start = world["now"]["ms"]
    world["now"]["ms"] = start + 61_000
    emulator.run_due()
    world["now"]["ms"] = start + 121_000
    emulator.run_due()

    wait_for(lambda: len(world["invoked"]) == 2)
    times = sorted(e["scheduledTime"] for e in world["invoked"])
    assert all(e["fn"] == FUNCTION_ARN and e["schedule"] == "tick" and e["attempt"] == "1" for e in world["invoked"])
    assert times[0] < times[1] and times[0].endswith("Z")


def test_fire_delivers_the_same_firing_as_often_as_asked(world: dict[str, Any]) -> None:
    world["scheduler"].create_schedule(
        Name="repeat-x", GroupName=world["group"], ScheduleExpression="cron(0 2 * * ? *)", ScheduleExpressionTimezone="America/New_York",
        FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": FUNCTION_ARN, "RoleArn": "r", "Input": '{"t":"<aws.scheduler.scheduled-time>","a":"<aws.scheduler.attempt-number>"}'},
    )

    world["emulator"].fire("repeat-x", scheduled_ms=1893463200000, deliveries=2)

    wait_for(lambda: len(world["invoked"]) == 2)
    assert sorted((e["t"], e["a"]) for e in world["invoked"]) == [("2030-01-01T02:00:00Z", "1"), ("2030-01-01T02:00:00Z", "2")]


def test_a_disabled_schedule_does_not_fire(world: dict[str, Any]) -> None:
    world["scheduler"].create_schedule(
        Name="off", GroupName=world["group"], ScheduleExpression="at(2000-01-01T00:00:00)", State="DISABLED",
        FlexibleTimeWindow={"Mode": "OFF"}, Target={"Arn": world["arn"], "RoleArn": "r", "Input": "{}"},
    )
    assert world["emulator"].run_due() == 0


def test_context_attributes_are_rendered() -> None:
    text = render_input(
        '{"a":"<aws.scheduler.scheduled-time>","b":"<aws.scheduler.execution-id>","c":"<aws.scheduler.schedule-arn>"}',
        scheduled_ms=0, schedule_arn="arn:s", execution_id="e", attempt=1,
    )
    assert json.loads(text) == {"a": "1970-01-01T00:00:00Z", "b": "e", "c": "arn:s"}


def spec(events: dict[str, Any]) -> FunctionSpec:
    return FunctionSpec(
        logical_id="HealthFunction", name="t-HealthFunction", arn="arn:aws:lambda:us-east-1:123456789012:function:t-HealthFunction",
        handler="x.handler", timeout=60, memory_size=256, environment={}, events=events, stack_name="t",
    )


def test_rules_run_their_function_with_eventbridges_scheduled_event() -> None:
    calls: list[dict[str, Any]] = []
    runner = RuleRunner(
        [spec({"Health": {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}}})],
        lambda fn: lambda event, context: calls.append(event) or {"ok": True},
        region=REGION, account_id="123456789012", clock=lambda: int(time.time() * 1000), interval=0.1,
    ).start()
    try:
        wait_for(lambda: len(calls) >= 2)
    finally:
        runner.stop()
    event = calls[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events" and event["detail"] == {}
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/t-HealthFunctionHealth"]
    assert runner.run_now("HealthFunction") == {"ok": True}


def test_a_rule_without_an_interval_waits_for_its_rate() -> None:
    runner = RuleRunner(
        [spec({"Health": {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}}}), spec({"Off": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)", "Enabled": False}}})],
        lambda fn: lambda event, context: None, region=REGION, account_id="1", clock=lambda: 0,
    )
    (rule,) = runner.rules.values()
    assert rule.next_ms == 300_000


def test_the_local_clock_moves_every_handlers_clock() -> None:
    import api.deps
    import functions.composition
    import functions.realtime.services

    def clocks() -> list[int]:
        return [functions.composition.clock()(), functions.realtime.services.clock()(), api.deps.clock()()]

    clock = LocalClock()
    clock.install()
    try:
        before = min(clocks())
        clock.advance(3600)
        assert min(clocks()) - before >= 3_600_000
    finally:
        clock.uninstall()
    assert all(abs(now - int(time.time() * 1000)) < 1000 for now in clocks())


def test_a_firing_whose_function_fails_three_times_lands_in_its_on_failure_destination(world: dict[str, Any]) -> None:
    dlq_url = world["sqs"].create_queue(QueueName=f"{world['group']}-firings-dlq")["QueueUrl"]
    dlq_arn = world["sqs"].get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attempts: list[dict[str, Any]] = []

    def failing(fn: str, event: dict[str, Any]) -> None:
        attempts.append(event)
        raise RuntimeError("DynamoDB is unavailable")

    emulator = SchedulerEmulator(
        endpoint_url=world["emulator"]._sqs.meta.endpoint_url, region=REGION, groups=[world["group"]], invoke=failing,
        clock=lambda: world["now"]["ms"], on_failure=lambda arn: dlq_arn if arn == FUNCTION_ARN else None, retry_delay_seconds=0.01,
    )
    world["scheduler"].create_schedule(
        Name="repeat-nightly", GroupName=world["group"], ScheduleExpression="cron(0 2 * * ? *)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": "r", "Input": '{"jobq":"schedule-firing","schedule":"nightly"}'},
    )

    emulator.fire("repeat-nightly", scheduled_ms=1893463200000)

    received: list[dict[str, Any]] = []
    wait_for(lambda: bool(received.extend(world["sqs"].receive_message(QueueUrl=dlq_url).get("Messages", [])) or received))
    record = json.loads(received[0]["Body"])
    assert len(attempts) == 3
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"jobq": "schedule-firing", "schedule": "nightly"}
    assert record["responsePayload"]["errorMessage"] == "DynamoDB is unavailable"
