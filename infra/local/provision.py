"""Create a template's resources in moto, in dependency order, and describe what runs locally.

Resource types the service reads or writes at run time are really created in moto
(DynamoDB tables, SQS queues, S3 buckets, SSM parameters), and so is monitoring (SNS
topic and subscription, CloudWatch alarms and dashboard: moto stores them, never
evaluates an alarm; creating them validates their properties against the API). Compute
and wiring are described rather than created, for the local stack to run in-process:

* ``AWS::Serverless::Function`` -> :class:`FunctionSpec` (handler, timeout, memory,
  environment with SAM ``Globals`` merged in);
* its ``SQS`` events, and ``AWS::Lambda::EventSourceMapping`` resources on a queue ->
  :class:`EventSourceMappingSpec` (whose ``Ref`` is a UUID as on AWS); such a resource on a
  DynamoDB stream becomes the function's ``DynamoDB`` event, for :mod:`infra.local.streams`;
* ``AWS::Serverless::HttpApi`` and ``HttpApi`` events -> :class:`HttpApiSpec` (JWT
  authorizers and routes, for the API Gateway emulation in :mod:`infra.local.auth`);
* ``AWS::Serverless::Application`` with a local ``Location`` -> a nested run of the same
  provisioner on that template (how each queue in ``infra/queue.yaml`` is created).

Everything else (log groups, IAM policies, layers ...) gets a plausible ``Ref`` and
``Arn`` so references to it evaluate, and nothing is created.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import string
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.cfn import (
    Evaluator,
    TemplateError,
    load_template,
    resolve_parameters,
    resource_dependencies,
    topological_order,
)

log = logging.getLogger("jobq.local.provision")

__all__ = [
    "EventSourceMappingSpec",
    "FunctionSpec",
    "HttpApiSpec",
    "HttpRouteSpec",
    "JwtAuthorizerSpec",
    "ProvisionedStack",
    "Provisioner",
    "ResourceRecord",
]


# ---- what a provisioned stack describes ------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    # Every evaluated event (SQS, HttpApi, Schedule, DynamoDB ...), for emulators of event sources.
    events: dict[str, dict[str, Any]]
    stack_name: str
    # EventInvokeConfig's OnFailure destination (an SQS queue ARN): where a failed async invoke goes.
    on_failure_destination: str | None = None


@dataclass(frozen=True)
class EventSourceMappingSpec:
    uuid: str
    logical_id: str  # the SAM-generated "<Function><Event>" ID
    function: FunctionSpec
    queue_arn: str
    batch_size: int
    maximum_batching_window_seconds: int
    maximum_concurrency: int | None
    report_batch_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class JwtAuthorizerSpec:
    name: str
    issuer: str
    audience: tuple[str, ...]
    identity_source: str


@dataclass(frozen=True)
class HttpRouteSpec:
    method: str  # upper case, or "ANY"
    path: str  # "/health", "/jobs/{id}", "/{proxy+}"
    authorizer: str | None  # None: the route is public (Auth: Authorizer: NONE)
    function: FunctionSpec


@dataclass
class HttpApiSpec:
    logical_id: str
    api_id: str
    authorizers: dict[str, JwtAuthorizerSpec]
    default_authorizer: str | None
    routes: list[HttpRouteSpec] = field(default_factory=list)


@dataclass
class ResourceRecord:
    logical_id: str
    type: str
    ref: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProvisionedStack:
    name: str
    template_path: Path
    region: str
    account_id: str
    parameters: dict[str, Any]
    resources: dict[str, ResourceRecord] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    functions: list[FunctionSpec] = field(default_factory=list)
    mappings: list[EventSourceMappingSpec] = field(default_factory=list)
    http_apis: dict[str, HttpApiSpec] = field(default_factory=dict)
    ssm_parameters: dict[str, str] = field(default_factory=dict)
    schedule_groups: list[str] = field(default_factory=list)
    nested: dict[str, ProvisionedStack] = field(default_factory=dict)

    def walk(self) -> Iterator[ProvisionedStack]:
        """This stack, then its nested stacks, depth first."""
        yield self
        for child in self.nested.values():
            yield from child.walk()

    def all_functions(self) -> list[FunctionSpec]:
        return [f for s in self.walk() for f in s.functions]

    def all_mappings(self) -> list[EventSourceMappingSpec]:
        return [m for s in self.walk() for m in s.mappings]

    def all_http_apis(self) -> list[HttpApiSpec]:
        return [a for s in self.walk() for a in s.http_apis.values()]

    def all_ssm_parameters(self) -> dict[str, str]:
        return {k: v for s in self.walk() for k, v in s.ssm_parameters.items()}

    def all_schedule_groups(self) -> list[str]:
        return [g for s in self.walk() for g in s.schedule_groups]

    def function(self, logical_id: str) -> FunctionSpec:
        for fn in self.functions:
            if fn.logical_id == logical_id:
                return fn
        raise KeyError(logical_id)


# ---- the provisioner ---------------------------------------------------------------------


class Provisioner:
    """Creates stacks in one moto endpoint (one account, one region).

    ``endpoint_url=None`` leaves the endpoint to boto3 (moto's in-process ``mock_aws``, or
    AWS_ENDPOINT_URL). The credentials are moto's dummies: this never provisions real AWS.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        region: str = "us-east-1",
        account_id: str | None = None,
        websocket_endpoint: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        # The ApiEndpoint of WebSocket APIs (infra/local/websocket.py serves them); None: AWS's form.
        self.websocket_endpoint = websocket_endpoint
        self._session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
        # One botocore data loader per process: a fresh one re-reads every service model (~25 ms a client).
        self._session._session.register_component("data_loader", _shared_loader())
        self._clients: dict[str, Any] = {}
        self.account_id = account_id or self.client("sts").get_caller_identity()["Account"]

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint_url, config=Config(retries={"max_attempts": 2})
            )
        return self._clients[service]

    def provision(
        self, template_path: str | Path, stack_name: str, parameters: Mapping[str, Any] | None = None
    ) -> ProvisionedStack:
        return _StackRun(self, Path(template_path), stack_name, dict(parameters or {})).run()


@functools.cache
def _shared_loader() -> Any:
    return botocore.loaders.create_loader()


class _StackRun:
    """One (possibly nested) stack: evaluates and creates its resources in dependency order."""

    def __init__(self, provisioner: Provisioner, path: Path, stack_name: str, parameters: dict[str, Any]) -> None:
        self.p = provisioner
        self.path = path.resolve()
        self.template = load_template(self.path)
        self.stack = ProvisionedStack(
            name=stack_name,
            template_path=self.path,
            region=provisioner.region,
            account_id=provisioner.account_id,
            parameters=resolve_parameters(self.template, parameters),
        )
        self.stack_id = (
            f"arn:aws:cloudformation:{provisioner.region}:{provisioner.account_id}:stack/{stack_name}/"
            f"{uuid.uuid5(uuid.NAMESPACE_URL, stack_name)}"
        )
        self.evaluator = Evaluator(
            parameters=self.stack.parameters,
            pseudo={
                "AWS::StackName": stack_name,
                "AWS::StackId": self.stack_id,
                "AWS::Region": provisioner.region,
                "AWS::AccountId": provisioner.account_id,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NotificationARNs": [],
            },
            conditions=self.template.get("Conditions"),
            mappings=self.template.get("Mappings"),
            resolve_ref=self._ref,
            resolve_getatt=self._getatt,
        )

    # -- references --

    def _ref(self, logical: str) -> Any:
        try:
            return self.stack.resources[logical].ref
        except KeyError:
            raise TemplateError(f"{self.path.name}: Ref to {logical}, which is not created (yet)") from None

    def _getatt(self, logical: str, attr: str) -> Any:
        record = self.stack.resources.get(logical)
        if record is None:
            raise TemplateError(f"{self.path.name}: GetAtt {logical}.{attr}: {logical} is not created (yet)")
        if attr not in record.attrs:
            raise TemplateError(f"{self.path.name}: GetAtt {logical}.{attr}: {record.type} has no such attribute locally")
        return record.attrs[attr]

    # -- driving --

    def run(self) -> ProvisionedStack:
        resources: dict[str, Any] = self.template["Resources"]
        for logical in topological_order(resource_dependencies(self.template)):
            resource = resources[logical] or {}
            condition = resource.get("Condition")
            if condition and not self.evaluator.condition(condition):
                log.debug("%s/%s skipped (condition %s is false)", self.stack.name, logical, condition)
                continue
            rtype = str(resource.get("Type"))
            handler = getattr(self, "_create_" + rtype.replace("::", "_"), None)
            if handler is None:
                self._virtual(logical, rtype, resource.get("Properties") or {})
            else:
                handler(logical, resource.get("Properties") or {})
        for name, output in (self.template.get("Outputs") or {}).items():
            if output.get("Condition") and not self.evaluator.condition(output["Condition"]):
                continue
            self.stack.outputs[name] = self.evaluator.evaluate(output["Value"])
        return self.stack

    def _record(self, logical: str, rtype: str, ref: Any, attrs: dict[str, Any] | None = None, props: Any = None) -> None:
        self.stack.resources[logical] = ResourceRecord(logical, rtype, ref, attrs or {}, props or {})
        log.debug("%s/%s (%s) -> %s", self.stack.name, logical, rtype, ref)

    def _physical_name(self, logical: str, max_len: int = 64, lower: bool = False) -> str:
        # CloudFormation appends a random suffix; locally the name is stable so reruns and
        # other processes (tests, the CLI) find the same resources.
        name = f"{self.stack.name}-{logical}"
        name = name.lower() if lower else name
        if len(name) > max_len:
            digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
            name = name[: max_len - 9] + "-" + digest
        return name

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.p.region if region else ''}:{self.p.account_id if account else ''}:{resource}"

    # -- resources that are really created --

    def _create_AWS_DynamoDB_Table(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        name = props.get("TableName") or self._physical_name(logical, 255)
        ddb = self.p.client("dynamodb")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput", "DeletionProtectionEnabled"):
            if key in props:
                kwargs[key] = props[key]
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        if "SSESpecification" in props:
            sse = props["SSESpecification"]
            kwargs["SSESpecification"] = {
                "Enabled": bool(sse.get("SSEEnabled")),
                **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse},
            }
        try:
            table = ddb.create_table(**kwargs)["TableDescription"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
            table = ddb.describe_table(TableName=name)["Table"]  # rerun against the same moto
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            # Recorded only: moto never expires items (DESIGN.md).
            try:
                ddb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
                )
            except ClientError as exc:  # already enabled on a rerun
                log.debug("TTL on %s: %s", name, exc)
        attrs = {"Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attrs["StreamArn"] = table["LatestStreamArn"]
        self._record(logical, "AWS::DynamoDB::Table", name, attrs, props)

    def _create_AWS_S3_Bucket(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        name = props.get("BucketName") or self._physical_name(logical, 63, lower=True)
        s3 = self.p.client("s3")
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.p.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.p.region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        rules = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        if rules:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"]} for r in rules]
                },
            )
        if props.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
        lifecycle = (props.get("LifecycleConfiguration") or {}).get("Rules")
        if lifecycle:
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle]})
        attrs = {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self.p.region}.amazonaws.com",
        }
        self._record(logical, "AWS::S3::Bucket", name, attrs, props)

    def _create_AWS_SQS_Queue(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        fifo = str(props.get("FifoQueue", "false")).lower() == "true"
        name = props.get("QueueName") or (self._physical_name(logical, 75) + (".fifo" if fifo else ""))
        attributes: dict[str, str] = {}
        for key, value in props.items():
            if key in ("QueueName", "Tags"):
                continue
            if key in ("RedrivePolicy", "RedriveAllowPolicy"):
                policy = dict(value) if isinstance(value, dict) else json.loads(value)
                if "maxReceiveCount" in policy:
                    policy["maxReceiveCount"] = int(policy["maxReceiveCount"])
                attributes[key] = json.dumps(policy)
            elif isinstance(value, bool):
                attributes[key] = "true" if value else "false"
            else:
                attributes[key] = str(value)
        sqs = self.p.client("sqs")
        try:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]  # rerun with changed attributes
            sqs.set_queue_attributes(QueueUrl=url, Attributes={k: v for k, v in attributes.items() if k != "FifoQueue"})
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._record(logical, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url}, props)

    def _create_AWS_SSM_Parameter(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        name = props.get("Name") or "/" + self._physical_name(logical, 1011)
        kwargs: dict[str, Any] = {
            "Name": name,
            "Value": str(props["Value"]),
            "Type": props.get("Type", "String"),
            "Overwrite": True,
        }
        if props.get("Description"):
            kwargs["Description"] = props["Description"]
        self.p.client("ssm").put_parameter(**kwargs)
        self.stack.ssm_parameters[name] = kwargs["Value"]
        self._record(logical, "AWS::SSM::Parameter", name, {"Type": kwargs["Type"], "Value": kwargs["Value"]}, props)

    def _create_AWS_SecretsManager_Secret(self, logical: str, raw: dict[str, Any]) -> None:
        """Created in moto; ``GenerateSecretString`` becomes a random alphanumeric string of its length."""
        props = self.evaluator.evaluate(raw)
        name = props.get("Name") or self._physical_name(logical, 512)
        manager = self.p.client("secretsmanager")
        try:
            arn = manager.describe_secret(SecretId=name)["ARN"]  # a rerun keeps the secret
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            value = props.get("SecretString")
            if value is None:
                length = int((props.get("GenerateSecretString") or {}).get("PasswordLength", 32))
                alphabet = string.ascii_letters + string.digits
                value = "".join(secrets.choice(alphabet) for _ in range(length))
            kwargs: dict[str, Any] = {"Name": name, "SecretString": str(value)}
            if props.get("Description"):
                kwargs["Description"] = props["Description"]
            arn = manager.create_secret(**kwargs)["ARN"]
        self._record(logical, "AWS::SecretsManager::Secret", arn, {"Id": arn}, {k: v for k, v in props.items() if k != "SecretString"})

    def _create_AWS_Scheduler_ScheduleGroup(self, logical: str, raw: dict[str, Any]) -> None:
        # Created in moto (its CreateSchedule needs the group); infra/local/eventbridge.py fires the schedules.
        props = self.evaluator.evaluate(raw)
        name = props.get("Name") or self._physical_name(logical, 64)
        scheduler = self.p.client("scheduler")
        try:
            arn = scheduler.get_schedule_group(Name=name)["Arn"]  # a rerun against the same moto keeps its schedules
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            arn = scheduler.create_schedule_group(Name=name)["ScheduleGroupArn"]
        self.stack.schedule_groups.append(name)
        self._record(logical, "AWS::Scheduler::ScheduleGroup", name, {"Arn": arn}, props)

    # -- monitoring: created in moto, which stores alarms and dashboards but never evaluates them --
    # Creating them checks every evaluated property against the CloudWatch / SNS API (botocore
    # validates the request), so a typo in an alarm fails the local stack, not a deploy. The
    # topic's KMS key stays virtual: nothing reads it locally, and moto's CreateKey costs 50 ms.

    def _create_AWS_SNS_Topic(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        name = props.get("TopicName") or self._physical_name(logical, 256)
        attributes = {k: str(props[k]) for k in ("DisplayName", "KmsMasterKeyId") if k in props}
        arn = self.p.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        self._record(logical, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name}, props)

    def _create_AWS_SNS_Subscription(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        out = self.p.client("sns").subscribe(
            TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"], ReturnSubscriptionArn=True
        )
        self._record(logical, "AWS::SNS::Subscription", out["SubscriptionArn"], {"Arn": out["SubscriptionArn"]}, props)

    def _create_AWS_CloudWatch_Alarm(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        props.setdefault("AlarmName", self._physical_name(logical, 255))
        kwargs = {k: v for k, v in props.items() if k != "Tags"}
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        kwargs["Threshold"] = float(kwargs["Threshold"]) if "Threshold" in kwargs else kwargs.get("Threshold")
        for query in kwargs.get("Metrics") or []:
            if "MetricStat" in query:
                query["MetricStat"]["Period"] = int(query["MetricStat"]["Period"])
        self.p.client("cloudwatch").put_metric_alarm(**{k: v for k, v in kwargs.items() if v is not None})
        name = kwargs["AlarmName"]
        self._record(logical, "AWS::CloudWatch::Alarm", name, {"Arn": self._arn("cloudwatch", f"alarm:{name}")}, props)

    def _create_AWS_CloudWatch_Dashboard(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        name = props.get("DashboardName") or self._physical_name(logical, 255)
        body = str(props["DashboardBody"])
        try:
            json.loads(body)
        except ValueError as exc:
            raise TemplateError(f"{logical}: DashboardBody is not JSON: {exc}") from None
        self.p.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=body)
        self._record(logical, "AWS::CloudWatch::Dashboard", name, {}, props)

    # -- resources that are described for the in-process emulation --

    def _create_AWS_Serverless_Function(self, logical: str, raw: dict[str, Any]) -> None:
        merged = _merge_globals(((self.template.get("Globals") or {}).get("Function")) or {}, raw)
        props = self.evaluator.evaluate(merged)
        name = props.get("FunctionName") or self._physical_name(logical, 64)
        arn = self._arn("lambda", f"function:{name}")
        variables = ((props.get("Environment") or {}).get("Variables")) or {}
        events: dict[str, dict[str, Any]] = props.get("Events") or {}
        fn = FunctionSpec(
            logical_id=logical,
            name=name,
            arn=arn,
            handler=str(props["Handler"]),
            timeout=int(props.get("Timeout", 3)),
            memory_size=int(props.get("MemorySize", 128)),
            environment={k: _env_string(v) for k, v in variables.items()},
            events=events,
            stack_name=self.stack.name,
            on_failure_destination=_on_failure_destination(props),
        )
        self.stack.functions.append(fn)
        self._record(logical, "AWS::Serverless::Function", name, {"Arn": arn}, props)
        self._record(
            f"{logical}Role", "AWS::IAM::Role", f"{name}-role", {"Arn": self._arn("iam", f"role/{name}-role", region=False)}
        )
        for event_name, event in events.items():
            self._function_event(fn, event_name, event)

    def _function_event(self, fn: FunctionSpec, event_name: str, event: dict[str, Any]) -> None:
        etype = event.get("Type")
        props = event.get("Properties") or {}
        generated = f"{fn.logical_id}{event_name}"
        if etype == "SQS":
            scaling = props.get("ScalingConfig") or {}
            if props.get("FilterCriteria"):
                log.warning("%s: FilterCriteria is not emulated locally; every message is delivered", generated)
            mapping = EventSourceMappingSpec(
                uuid=str(uuid.uuid4()),
                logical_id=generated,
                function=fn,
                queue_arn=str(props["Queue"]),
                batch_size=int(props.get("BatchSize", 10)),
                maximum_batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                maximum_concurrency=int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None,
                report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                enabled=str(props.get("Enabled", True)).lower() != "false",
            )
            self.stack.mappings.append(mapping)
            self._record(generated, "AWS::Lambda::EventSourceMapping", mapping.uuid, {"Id": mapping.uuid})
        elif etype == "HttpApi":
            api = self._http_api_for(props.get("ApiId"))
            auth = props.get("Auth") or {}
            authorizer = auth.get("Authorizer", api.default_authorizer)
            api.routes.append(
                HttpRouteSpec(
                    method=_route_method(props.get("Method", "ANY")),
                    path=str(props.get("Path", "/{proxy+}")) if props else "$default",
                    authorizer=None if authorizer in (None, "NONE") else str(authorizer),
                    function=fn,
                )
            )
        else:
            # Schedule, DynamoDB, EventBridgeRule ... are kept in FunctionSpec.events for
            # the emulators that will drive them.
            log.debug("%s: %s event kept for its emulator", generated, etype)

    def _create_AWS_Lambda_EventSourceMapping(self, logical: str, raw: dict[str, Any]) -> None:
        """An explicit mapping (infra/queue.yaml declares the consumer's this way): the same spec as an SQS event."""
        props = self.evaluator.evaluate(raw)
        function_name = str(props["FunctionName"])
        fn = next((f for f in self.stack.functions if function_name in (f.name, f.arn, f.logical_id)), None)
        if fn is None:
            raise TemplateError(f"{logical}: FunctionName {function_name!r} is not a function of this stack")
        source = str(props.get("EventSourceArn", ""))
        if source.startswith("arn:aws:dynamodb:") and "/stream/" in source:
            # A stream mapping (template.yaml declares the EventsFunction's this way): the same
            # event the function's DynamoDB event would be, for infra.local.streams to drive.
            copied = (
                "StartingPosition", "BatchSize", "MaximumBatchingWindowInSeconds", "BisectBatchOnFunctionError",
                "ParallelizationFactor", "MaximumRetryAttempts", "FilterCriteria", "DestinationConfig",
                "FunctionResponseTypes", "Enabled",
            )
            event = {"Stream": source, **{k: props[k] for k in copied if k in props}}
            fn.events[logical.removeprefix(fn.logical_id)] = {"Type": "DynamoDB", "Properties": event}
            mapping_id = str(uuid.uuid4())
            self._record(logical, "AWS::Lambda::EventSourceMapping", mapping_id, {"Id": mapping_id}, props)
            return
        if not source.startswith("arn:aws:sqs:"):
            log.warning("%s: only SQS and DynamoDB stream event source mappings are emulated; %s is not", logical, source)
            self._record(logical, "AWS::Lambda::EventSourceMapping", str(uuid.uuid4()))
            return
        copied = ("BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig", "Enabled", "FilterCriteria")
        event = {"Queue": props["EventSourceArn"], **{k: props[k] for k in copied if k in props}}
        self._function_event(fn, logical.removeprefix(fn.logical_id), {"Type": "SQS", "Properties": event})

    def _http_api_for(self, api_id: Any) -> HttpApiSpec:
        if api_id is None:
            # SAM's implicit API for HttpApi events without ApiId.
            implicit = self.stack.http_apis.setdefault(
                "ServerlessHttpApi", HttpApiSpec("ServerlessHttpApi", "serverless", {}, None)
            )
            return implicit
        for api in self.stack.http_apis.values():
            if api.api_id == api_id:
                return api
        raise TemplateError(f"HttpApi event refers to unknown API {api_id!r}")

    def _create_AWS_Serverless_HttpApi(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        api_id = hashlib.sha1(f"{self.stack.name}/{logical}".encode(), usedforsecurity=False).hexdigest()[:10]
        auth = props.get("Auth") or {}
        authorizers: dict[str, JwtAuthorizerSpec] = {}
        for name, spec in (auth.get("Authorizers") or {}).items():
            jwt_config = spec.get("JwtConfiguration")
            if not jwt_config:
                log.warning("%s: authorizer %s is not a JWT authorizer; not emulated", logical, name)
                continue
            audience = jwt_config.get("audience") or []
            authorizers[name] = JwtAuthorizerSpec(
                name=name,
                issuer=str(jwt_config["issuer"]),
                audience=tuple(audience if isinstance(audience, list) else [audience]),
                identity_source=str(spec.get("IdentitySource", "$request.header.Authorization")),
            )
        api = HttpApiSpec(logical, api_id, authorizers, auth.get("DefaultAuthorizer"))
        self.stack.http_apis[logical] = api
        self._record(
            logical,
            "AWS::Serverless::HttpApi",
            api_id,
            {"ApiEndpoint": f"https://{api_id}.execute-api.{self.p.region}.amazonaws.com"},
            props,
        )

    def _create_AWS_ApiGatewayV2_Api(self, logical: str, raw: dict[str, Any]) -> None:
        """Described only; a WebSocket API is served by infra/local/websocket.py at ``websocket_endpoint``."""
        props = self.evaluator.evaluate(raw)
        api_id = hashlib.sha1(f"{self.stack.name}/{logical}".encode(), usedforsecurity=False).hexdigest()[:10]
        websocket = props.get("ProtocolType") == "WEBSOCKET"
        endpoint = f"{'wss' if websocket else 'https'}://{api_id}.execute-api.{self.p.region}.amazonaws.com"
        if websocket and self.p.websocket_endpoint:
            endpoint = self.p.websocket_endpoint.rstrip("/")
        self._record(logical, "AWS::ApiGatewayV2::Api", api_id, {"ApiEndpoint": endpoint, "ApiId": api_id}, props)

    def _create_AWS_ApiGatewayV2_Stage(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        self._record(logical, "AWS::ApiGatewayV2::Stage", str(props.get("StageName", "$default")), {}, props)

    def _create_AWS_Serverless_Application(self, logical: str, raw: dict[str, Any]) -> None:
        props = self.evaluator.evaluate(raw)
        location = props.get("Location")
        if not isinstance(location, str):
            log.warning("%s: only local Location paths are provisioned; skipped", logical)
            self._virtual(logical, "AWS::Serverless::Application", {})
            return
        nested_path = (self.path.parent / location).resolve()
        parameters = {k: _env_string(v) for k, v in (props.get("Parameters") or {}).items()}
        nested_name = self._physical_name(logical, 128)
        nested = _StackRun(self.p, nested_path, nested_name, parameters).run()
        self.stack.nested[logical] = nested
        attrs = {f"Outputs.{k}": v for k, v in nested.outputs.items()}
        self._record(logical, "AWS::Serverless::Application", nested.name, attrs, props)

    # -- everything else --

    def _virtual(self, logical: str, rtype: str, raw: dict[str, Any]) -> None:
        try:
            props = self.evaluator.evaluate(raw)
        except TemplateError as exc:
            # Not needed locally; a reference it cannot resolve must not stop the stack.
            log.debug("%s (%s): properties not evaluated: %s", logical, rtype, exc)
            props = {}
        name_prop = {
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
            "AWS::IAM::Role": "RoleName",
            "AWS::Serverless::LayerVersion": "LayerName",
            "AWS::Lambda::LayerVersion": "LayerName",
        }.get(rtype, "Name")
        name = str(props.get(name_prop) or self._physical_name(logical))
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            ref = self._arn("lambda", f"layer:{name}:1")
            attrs = {"Arn": ref}
        elif rtype == "AWS::IAM::ManagedPolicy":
            ref = self._arn("iam", f"policy/{name}", region=False)
            attrs = {"PolicyArn": ref}
        elif rtype == "AWS::IAM::Role":
            ref = name
            attrs = {"Arn": self._arn("iam", f"role/{name}", region=False)}
        elif rtype == "AWS::Logs::LogGroup":
            ref = name
            attrs = {"Arn": self._arn("logs", f"log-group:{name}:*")}
        elif rtype == "AWS::KMS::Key":
            ref = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stack.name}/{logical}"))  # Ref is the key id
            attrs = {"Arn": self._arn("kms", f"key/{ref}"), "KeyId": ref}
        else:
            service = rtype.split("::")[1].lower() if rtype.count("::") >= 2 else "local"
            ref = name
            attrs = {"Arn": self._arn(service, name)}
        self._record(logical, rtype, ref, attrs, props)


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule (the properties the template uses) as S3's API spells it."""
    out: dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    unsupported = set(rule) - {"Id", "Status", "Prefix", "ExpirationInDays", "AbortIncompleteMultipartUpload"}
    if unsupported:
        raise TemplateError(f"lifecycle rule {rule.get('Id')}: {', '.join(sorted(unsupported))} not provisioned locally")
    return out


def _merge_globals(globals_function: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: maps merge recursively, the function's own scalars and lists win."""
    merged: dict[str, Any] = dict(globals_function)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(merged[key], value)
        else:
            merged[key] = value
    return merged


def _is_intrinsic(node: Mapping[str, Any]) -> bool:
    return (len(node) == 1 and next(iter(node)) in ("Ref", "Condition")) or any(k.startswith("Fn::") for k in node)


def _route_method(method: Any) -> str:
    upper = str(method).upper()
    return "ANY" if upper in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else upper


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        raise TemplateError(f"expected a scalar, got {value!r}")
    return str(value)


def _on_failure_destination(props: dict[str, Any]) -> str | None:
    destination = (((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure") or {})
    if destination.get("Type") == "SQS" and destination.get("Destination"):
        return str(destination["Destination"])
    return None
