"""IAM as the template grants it, checked against what the code does.

moto does not enforce IAM, so a policy that is too narrow would only fail on AWS. These tests
read the policies the local stack evaluated from the templates and (1) look for grants that
reach beyond this stack, (2) replay every DynamoDB call a consumer and the EventsFunction
make on moto against their policies' ``dynamodb:LeadingKeys`` conditions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from typing import Any

import pytest

from functions.events.handler import handler as events_handler
from infra.local.provision import ProvisionedStack, Provisioner, ResourceRecord
from shared.adapters import clients
from shared.client_models import JobCreate
from shared.jobs import Identity, JobService
from shared.models import HttpTarget
from tests.target_server import TargetServer
from tests.unit.conftest import ROOT, STACK, FakeLambdaContext, Stack, sqs_event
from tests.unit.stream_feed import StreamFeed
from tests.unit.test_state_machine_targets import executions  # noqa: F401 (the fixture)

PARAMETERS = {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "jobq"}
ALICE = Identity("alice")
ADMIN = Identity("root", is_admin=True)
POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::SQS::QueuePolicy")


# ---- reading the evaluated policies -------------------------------------------------------------


@pytest.fixture
def provisioned(stack: Stack) -> ProvisionedStack:
    # The same template into the same moto again (the provisioner reruns cleanly): its records
    # hold every resource's evaluated properties.
    return Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS)


def _statements_of(record: ResourceRecord) -> Iterator[dict[str, Any]]:
    props = record.properties
    if record.type == "AWS::Serverless::Function":
        documents = [p for p in props.get("Policies") or [] if isinstance(p, dict) and "Statement" in p]
    elif record.type == "AWS::IAM::Role":
        documents = [p["PolicyDocument"] for p in props.get("Policies") or []]
    else:
        documents = [props.get("PolicyDocument") or {}]
    for document in documents:
        yield from document.get("Statement") or []


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_resources(stack: ProvisionedStack) -> Iterator[tuple[str, dict[str, Any]]]:
    for run in stack.walk():
        for record in run.resources.values():
            if record.type in POLICY_TYPES or record.type == "AWS::Serverless::Function":
                for statement in _statements_of(record):
                    yield f"{run.name}/{record.logical_id}", statement


def test_no_grant_reaches_another_stacks_queues_or_tables(provisioned: ProvisionedStack) -> None:
    queue_arns = {r.attrs["Arn"] for s in provisioned.walk() for r in s.resources.values() if r.type == "AWS::SQS::Queue"}
    tables = tuple(r.attrs["Arn"] for r in provisioned.resources.values() if r.type == "AWS::DynamoDB::Table")  # the jobs and the realtime table
    wide = []
    for owner, statement in _policy_resources(provisioned):
        for resource in _as_list(statement.get("Resource", [])):
            prefix_wildcard = f":{STACK}-*" in resource or f":{STACK}*" in resource  # matches "jobq-staging-..." too
            other_queue = resource.startswith("arn:aws:sqs:") and resource not in queue_arns
            other_table = resource.startswith("arn:aws:dynamodb:") and not resource.startswith(tables)
            if prefix_wildcard or other_queue or other_table:
                wide.append((owner, resource))
    assert wide == []


def test_every_role_that_uses_a_queue_is_granted_exactly_that_queue(provisioned: ProvisionedStack) -> None:
    role_arn = {r.logical_id: r.attrs["Arn"] for r in provisioned.resources.values() if r.type == "AWS::IAM::Role"}
    for logical, nested in provisioned.nested.items():
        queue, dlq = nested.resources["Queue"].attrs["Arn"], nested.resources["DeadLetterQueue"].attrs["Arn"]
        grants: set[tuple[str, str, str]] = set()
        for record in nested.resources.values():
            if record.type == "AWS::SQS::QueuePolicy":
                for statement in record.properties["PolicyDocument"]["Statement"]:
                    grants |= {
                        (principal, action, resource)
                        for principal in _as_list(statement["Principal"]["AWS"])
                        for action in _as_list(statement["Action"])
                        for resource in _as_list(statement["Resource"])
                    }
        api, health = role_arn["ApiFunctionRole"], role_arn["HealthFunctionRole"]
        assert {(api, "sqs:SendMessage", queue), (api, "sqs:ReceiveMessage", dlq), (api, "sqs:DeleteMessage", dlq)} <= grants, logical
        assert {(role_arn["SchedulerRole"], "sqs:SendMessage", queue), (role_arn["SchedulerFunctionRole"], "sqs:SendMessage", queue)} <= grants
        assert {(health, "sqs:SendMessage", queue), (health, "sqs:SendMessage", dlq), (health, "sqs:GetQueueAttributes", dlq)} <= grants
        assert {resource for _, _, resource in grants} == {queue, dlq}
        assert not any(principal == role_arn["SchedulerRole"] and resource == dlq for principal, _, resource in grants)


@pytest.mark.parametrize("reader", ["EventsFunction", "RealtimeEventsFunction"])
def test_the_stream_readers_read_only_their_tables_stream(provisioned: ProvisionedStack, reader: str) -> None:
    function = provisioned.resources[reader].properties
    stream = provisioned.resources["JobsTable"].attrs["StreamArn"]

    # A DynamoDB event would make SAM attach AWSLambdaDynamoDBExecutionRole (every stream in the account).
    assert all(e.get("Type") != "DynamoDB" for e in (function.get("Events") or {}).values())
    assert not [p for p in function["Policies"] if isinstance(p, str)]  # no managed policy either
    reads = [s for s in _statements_of(provisioned.resources[reader]) if "dynamodb:GetRecords" in _as_list(s["Action"])]
    assert [s["Resource"] for s in reads] == [stream]
    mapping = provisioned.resources[f"{reader}JobChanges"].properties
    assert mapping["EventSourceArn"] == stream


# ---- replaying DynamoDB calls against LeadingKeys conditions -----------------------------------------


class DynamoCalls:
    """Every DynamoDB request made through the shared client: (action, partition keys)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def __enter__(self) -> DynamoCalls:
        clients.client("dynamodb").meta.events.register("provide-client-params.dynamodb", self._record)
        return self

    def __exit__(self, *exc: Any) -> None:
        clients.client("dynamodb").meta.events.unregister("provide-client-params.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if name == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}[kind]
                self.calls.append((action, [_pk(body)]))
        elif name == "BatchWriteItem":
            keys = [_pk(next(iter(r.values()))) for items in params["RequestItems"].values() for r in items]
            self.calls.append((name, keys))
        elif name in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
            self.calls.append((name, [_pk(params)]))
        elif name == "Query":
            self.calls.append((name, [_query_pk(params)]))
        else:
            self.calls.append((name, []))


def _pk(body: dict[str, Any]) -> str:
    return str((body.get("Key") or body.get("Item"))["pk"]["S"])


def _query_pk(params: dict[str, Any]) -> str:
    names = params.get("ExpressionAttributeNames") or {}
    for name, placeholder in re.findall(r"(#?\w+)\s*=\s*(:\w+)", params["KeyConditionExpression"]):
        if names.get(name, name) == "pk":
            return str(params["ExpressionAttributeValues"][placeholder]["S"])
    return "(an index)"


def _allowed(statements: list[dict[str, Any]], action: str, keys: list[str]) -> bool:
    for statement in statements:
        if statement.get("Effect") != "Allow" or not any(fnmatch.fnmatchcase(f"dynamodb:{action}", a) for a in _as_list(statement["Action"])):
            continue
        satisfied = True
        for operator, body in (statement.get("Condition") or {}).items():
            for key, values in body.items():
                values = _as_list(values)
                if key != "dynamodb:LeadingKeys":
                    satisfied = False
                elif operator == "ForAllValues:StringLike":
                    satisfied &= all(any(fnmatch.fnmatchcase(k, v) for v in values) for k in keys)
                elif operator == "ForAllValues:StringEquals":
                    satisfied &= all(k in values for k in keys)
                else:
                    satisfied = False
        if satisfied:
            return True
    return False


def _denied(calls: DynamoCalls, record: ResourceRecord) -> list[tuple[str, list[str]]]:
    statements = list(_statements_of(record))
    return [(action, keys) for action, keys in calls.calls if not _allowed(statements, action, keys)]


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def _deliver(stack: Stack, queue: str) -> None:
    from functions.consumer.handler import handler

    messages = stack.receive(queue)
    assert messages
    handler(sqs_event(stack, queue, messages), FakeLambdaContext())


def test_a_consumers_dynamodb_calls_stay_within_its_policy(stack: Stack, provisioned: ProvisionedStack, target: TargetServer) -> None:
    from shared.adapters import queues
    from shared.catalog import ProcessorCatalog

    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    jobs.targets.put_http("email-sending", "ok", HttpTarget(url=f"{target.url}/ok", timeout_seconds=1), ADMIN)
    jobs.targets.put_http("email-sending", "bad", HttpTarget(url=f"{target.url}/status/400", timeout_seconds=1), ADMIN)
    jobs.create(JobCreate(queue="email-sending", type="ok", data={"n": 1}), ALICE)
    jobs.create(JobCreate(queue="email-sending", type="bad", data={"n": 2}), ALICE)
    jobs.create(JobCreate(queue="video-processing", type="transcode-video", data={"videoUrl": "s3://v/a", "formats": ["480p", "720p"]}), ALICE)

    with DynamoCalls() as email:
        _deliver(stack, "email-sending")
    with DynamoCalls() as video:
        _deliver(stack, "video-processing")

    assert {a for a, _ in email.calls} >= {"GetItem", "UpdateItem"} and {a for a, _ in video.calls} >= {"PutItem", "UpdateItem"}
    assert _denied(email, provisioned.nested["EmailSendingQueue"].resources["ConsumerFunction"]) == []
    assert _denied(video, provisioned.nested["VideoProcessingQueue"].resources["ConsumerFunction"]) == []
    # and the condition does bite: another queue's settings are out of the email consumer's reach
    email_policy = list(_statements_of(provisioned.nested["EmailSendingQueue"].resources["ConsumerFunction"]))
    assert _allowed(email_policy, "GetItem", ["QUEUE#email-sending"])
    assert not _allowed(email_policy, "GetItem", ["QUEUE#video-processing"])
    assert not _allowed(email_policy, "PutItem", ["QUEUE#email-sending"])


def test_a_consumer_writes_its_own_queues_flow_control_counters_and_no_other_queues(
    stack: Stack, provisioned: ProvisionedStack, target: TargetServer
) -> None:
    from shared.adapters import policies, queues
    from shared.catalog import ProcessorCatalog
    from shared.flow_control import GroupPolicy, RateLimit

    queue = queues.directory().get("email-sending")
    policies.update_policy(
        queue, lambda p: p.model_copy(update={"rate_limit": RateLimit(max=100, duration=60_000), "groups": GroupPolicy(max_active=2)})
    )
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    jobs.targets.put_http("email-sending", "ok", HttpTarget(url=f"{target.url}/ok", timeout_seconds=1), ADMIN)
    jobs.create(JobCreate(queue="email-sending", type="ok", data={"n": 1}, options={"group": "acme"}), ALICE)

    with DynamoCalls() as email:
        _deliver(stack, "email-sending")

    counters = [keys for _, keys in email.calls if any(k.startswith("LIMIT#") for k in keys)]
    assert ["LIMIT#email-sending#Q"] in counters and any(k[0].startswith("LIMIT#email-sending#KEYS#") for k in counters)
    consumer = provisioned.nested["EmailSendingQueue"].resources["ConsumerFunction"]
    assert _denied(email, consumer) == []
    statements = list(_statements_of(consumer))
    assert _allowed(statements, "UpdateItem", ["LIMIT#email-sending#G#acme"])
    assert not _allowed(statements, "UpdateItem", ["LIMIT#video-processing#Q"])
    assert not _allowed(statements, "Query", ["LIMIT#email-sending#KEYS#0"])  # listing keys is the API's


def test_the_events_functions_writes_stay_within_its_policy(stack: Stack, provisioned: ProvisionedStack) -> None:
    from shared.adapters import queues
    from shared.catalog import ProcessorCatalog

    feed = StreamFeed(stack.table_name)
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    jobs.create(JobCreate(queue="video-processing", type="transcode-video", data={"videoUrl": "s3://v/a"}), ALICE)
    event = feed.next_event()
    assert event["Records"]

    with DynamoCalls() as calls:
        events_handler(event, FakeLambdaContext())

    assert calls.calls and _denied(calls, provisioned.resources["EventsFunction"]) == []



# ---- Lambda targets (issue 18): the consumers may invoke the listed functions and no other ----------------

FUNCTIONS = ["arn:aws:lambda:us-east-1:123456789012:function:thumbnailer", "arn:aws:lambda:us-east-1:123456789012:function:billing:live"]


def _invoke_grants(stack: ProvisionedStack) -> dict[str, list[Any]]:
    grants: dict[str, list[Any]] = {}
    for owner, statement in _policy_resources(stack):
        actions = _as_list(statement.get("Action", []))
        if any(fnmatch.fnmatchcase("lambda:InvokeFunction", a) for a in actions) and statement.get("Effect") == "Allow":
            # The scheduler's role invokes this stack's own SchedulerFunction: not a Lambda target.
            outside = [r for r in _as_list(statement["Resource"]) if f":function:{STACK}-" not in r]
            if outside:
                grants.setdefault(owner, []).extend(outside)
    return grants


def test_each_consumer_may_invoke_exactly_the_functions_listed_in_lambda_target_arns(stack: Stack) -> None:
    provisioned = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, "LambdaTargetArns": ",".join(FUNCTIONS)})

    grants = _invoke_grants(provisioned)

    consumers = {f"{run.name}/ConsumerFunction" for run in provisioned.walk() if "ConsumerFunction" in run.resources}
    assert consumers and set(grants) == consumers  # the consumers, and no other function
    assert all(sorted(resources) == sorted(FUNCTIONS) for resources in grants.values())
    env = provisioned.nested["EmailSendingQueue"].resources["ConsumerFunction"].properties["Environment"]["Variables"]
    assert env["JOBQ_LAMBDA_TARGET_ARNS"] == ",".join(FUNCTIONS)


def test_without_lambda_target_arns_no_function_may_invoke_any_function(provisioned: ProvisionedStack) -> None:
    assert _invoke_grants(provisioned) == {}


def test_the_publish_built_in_may_publish_to_exactly_the_topics_listed(stack: Stack) -> None:
    topics = ["arn:aws:sns:us-east-1:123456789012:orders", "arn:aws:sns:us-east-1:123456789012:alerts"]
    listed = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, "PublishTopicArns": ",".join(topics)})
    empty = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS)

    def publish_grants(provisioned: ProvisionedStack) -> dict[str, list[Any]]:
        return {
            owner: _as_list(s["Resource"])
            for owner, s in _policy_resources(provisioned)
            # The stack's own alarm topic is published to by CloudWatch: not the built-in's grant.
            if "sns:Publish" in _as_list(s.get("Action", [])) and not any(f":{STACK}-" in str(r) for r in _as_list(s["Resource"]))
        }

    assert publish_grants(listed) == {f"{STACK}/EmailProcessorPolicy": topics}
    assert publish_grants(empty) == {}


# ---- Step Functions targets (issue 18): start, stop and read executions of the listed machines only ----------

MACHINES = ["arn:aws:states:us-east-1:123456789012:stateMachine:fulfil", "arn:aws:states:us-east-1:123456789012:stateMachine:refund"]


def _states_grants(stack: ProvisionedStack) -> dict[str, set[tuple[str, str]]]:
    grants: dict[str, set[tuple[str, str]]] = {}
    for owner, statement in _policy_resources(stack):
        actions = [a for a in _as_list(statement.get("Action", [])) if str(a).startswith("states:")]
        if actions and statement.get("Effect") == "Allow":
            grants.setdefault(owner, set()).update((a, r) for a in actions for r in _as_list(statement["Resource"]))
    return grants


def test_state_machine_targets_grant_start_stop_and_describe_on_the_listed_machines_only(stack: Stack) -> None:
    listed = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, "StateMachineTargetArns": ",".join(MACHINES)})
    empty = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS)

    grants = _states_grants(listed)

    execution_arns = {m.replace(":stateMachine:", ":execution:") + ":*" for m in MACHINES}
    consumers = {f"{run.name}/ConsumerFunction" for run in listed.walk() if "ConsumerFunction" in run.resources}
    assert set(grants) == consumers | {f"{STACK}/ApiFunction", f"{STACK}/ExecutionEventsFunction"}
    assert all(grants[c] == {("states:StartExecution", m) for m in MACHINES} for c in consumers)
    assert grants[f"{STACK}/ApiFunction"] == {("states:StopExecution", e) for e in execution_arns}
    assert grants[f"{STACK}/ExecutionEventsFunction"] == {("states:DescribeExecution", e) for e in execution_arns}
    assert _states_grants(empty) == {}
    rule = listed.resources["ExecutionEventsFunction"].properties["Events"]["ExecutionEnded"]["Properties"]["Pattern"]
    assert rule["source"] == ["aws.states"] and rule["detail"]["stateMachineArn"] == MACHINES


def test_the_execution_handlers_dynamodb_calls_stay_within_its_policy(stack: Stack, provisioned: ProvisionedStack, executions: Any) -> None:  # noqa: F811 (the fixture)
    from functions.executions.handler import handler as executions_handler
    from shared.adapters import queues
    from shared.catalog import ProcessorCatalog
    from shared.models import StateMachineTarget
    from shared.settings import get_settings

    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), get_settings())
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:jobq-local-sfn-echo"
    jobs.targets.put("email-sending", "order", StateMachineTarget(state_machine_arn=arn), ADMIN)
    jobs.create(JobCreate(queue="email-sending", type="order", data={"n": 1}), ALICE)
    _deliver(stack, "email-sending")
    event = executions.next_event()

    with DynamoCalls() as calls:
        assert executions_handler(event, FakeLambdaContext())["outcome"] == "completed"

    assert {a for a, _ in calls.calls} >= {"GetItem", "UpdateItem"}
    assert _denied(calls, provisioned.resources["ExecutionEventsFunction"]) == []


def test_the_health_function_may_read_the_state_of_the_listed_functions_only(stack: Stack) -> None:
    listed = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, "LambdaTargetArns": ",".join(FUNCTIONS)})

    def reads(provisioned: ProvisionedStack) -> dict[str, list[Any]]:
        return {o: _as_list(s["Resource"]) for o, s in _policy_resources(provisioned) if "lambda:GetFunction" in _as_list(s.get("Action", []))}

    assert reads(listed) == {f"{STACK}/HealthFunction": FUNCTIONS}
    assert reads(Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS)) == {}


def test_the_events_functions_cost_writes_stay_within_its_policy(stack: Stack, provisioned: ProvisionedStack, target: TargetServer) -> None:
    from shared.adapters import queues
    from shared.catalog import ProcessorCatalog

    feed = StreamFeed(stack.table_name)
    jobs = JobService(stack.store, queues.directory(), ProcessorCatalog(stack.store, 0), stack.settings)
    jobs.targets.put_http("email-sending", "ok", HttpTarget(url=f"{target.url}/ok", timeout_seconds=1), ADMIN)
    jobs.create(JobCreate(queue="email-sending", type="ok", data={"n": 1}), ALICE)
    _deliver(stack, "email-sending")  # the attempt closes with its usage: a cost per type and per user
    event = feed.next_event()

    with DynamoCalls() as calls:
        events_handler(event, FakeLambdaContext())

    assert ("UpdateItem", ["USERCOST#email-sending"]) in calls.calls
    assert _denied(calls, provisioned.resources["EventsFunction"]) == []
