"""Alarms and the dashboard, as the template defines them and the local stack creates them.

moto stores alarms and dashboards without evaluating them, so these tests check what an
operator relies on before a deploy: every queue has its full set of alarms on its own
resources, all notifying the stack's topic; a queue block added to template.yaml brings its
alarms and graphs with no other edit; every jobq metric they read is one the code emits.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from functions.consumer.handler import handler
from infra.local.cfn import TemplateError, load_template
from infra.local.provision import ProvisionedStack, Provisioner
from tests.unit.conftest import ROOT, STACK, FakeLambdaContext, Stack, sqs_event

PARAMETERS = {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "jobq"}
QUEUE_ALARMS = {
    "dlq-not-empty",
    "oldest-message-age",
    "failure-rate",
    "consumer-errors",
    "consumer-throttles",
    "consumer-duration",
    "consumer-stopped",
}
STACK_ALARMS = {"api-5xx-rate", "events-iterator-age", "events-discarded-batches", "scheduler-failures", "health-not-running"}


def _queue_blocks(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical: resource["Properties"]
        for logical, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Application" and resource["Properties"]["Location"] == "infra/queue.yaml"
    }


def _alarms() -> dict[str, dict[str, Any]]:
    pages = boto3.client("cloudwatch").get_paginator("describe_alarms").paginate()
    return {a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]}


def _dimensions(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    found = {(d["Name"], d["Value"]) for d in alarm.get("Dimensions", [])}
    for query in alarm.get("Metrics", []):
        found |= {(d["Name"], d["Value"]) for d in query.get("MetricStat", {}).get("Metric", {}).get("Dimensions", [])}
    return found


def _provision_copy(tmp_path: Path, edit: Any) -> ProvisionedStack:
    """template.yaml with ``edit`` applied to its YAML text, next to a copy of infra/queue.yaml."""
    (tmp_path / "infra").mkdir()
    shutil.copy(ROOT / "infra" / "queue.yaml", tmp_path / "infra" / "queue.yaml")
    (tmp_path / "template.yaml").write_text(edit((ROOT / "template.yaml").read_text()))
    return Provisioner(endpoint_url=None).provision(tmp_path / "template.yaml", STACK, PARAMETERS)


def test_every_queue_in_the_template_has_its_alarms_on_its_own_resources(stack: Stack) -> None:
    alarms = _alarms()
    topic = boto3.client("sns").list_topics()["Topics"][0]["TopicArn"]
    template = load_template(ROOT / "template.yaml")

    assert {p["Parameters"]["QueueName"] for p in _queue_blocks(template).values()} == set(stack.queues)
    for name, queue in stack.queues.items():
        mine = {suffix: alarms.get(f"{STACK}-{name}-{suffix}") for suffix in QUEUE_ALARMS}
        assert all(mine.values()), f"{name} lacks {[s for s, a in mine.items() if a is None]}"
        queue_name, dlq_name = queue.queue_url.rsplit("/", 1)[1], queue.dlq_url.rsplit("/", 1)[1]
        assert ("QueueName", dlq_name) in _dimensions(mine["dlq-not-empty"])
        assert ("QueueName", queue_name) in _dimensions(mine["oldest-message-age"])
        assert ("queue", name) in _dimensions(mine["failure-rate"])
        for suffix in ("consumer-errors", "consumer-throttles", "consumer-duration", "consumer-stopped"):
            assert ("FunctionName", queue.consumer_function) in _dimensions(mine[suffix])
        for alarm in mine.values():
            assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]


def test_the_stack_wide_alarms_notify_the_encrypted_topic(stack: Stack) -> None:
    alarms = _alarms()
    sns = boto3.client("sns")
    topic = sns.list_topics()["Topics"][0]["TopicArn"]

    for suffix in STACK_ALARMS:
        alarm = alarms[f"{STACK}-{suffix}"]
        assert alarm["AlarmActions"] == [topic]
    assert alarms[f"{STACK}-health-not-running"]["TreatMissingData"] == "breaching"  # never running is the point
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"].get("KmsMasterKeyId")
    assert sns.list_subscriptions()["Subscriptions"] == []  # AlarmEmail is optional and empty by default


def test_an_alarm_email_subscribes_to_the_topic(aws_env: None) -> None:
    Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, "AlarmEmail": "ops@example.com"})

    (subscription,) = boto3.client("sns").list_subscriptions()["Subscriptions"]
    assert subscription["Protocol"] == "email" and subscription["Endpoint"] == "ops@example.com"


def test_a_queue_block_added_to_the_template_brings_its_alarms_and_graphs(aws_env: None, tmp_path: Path) -> None:
    template = load_template(ROOT / "template.yaml")
    blocks = _queue_blocks(template)
    block = next(iter(blocks.values()))
    block["Parameters"]["QueueName"] = "scraping"
    for key in ("ProcessorPolicyArn", "EmailSender", "ReportsBucket"):
        block["Parameters"].pop(key, None)
    added = yaml.safe_dump({"ScrapingQueue": {"Type": "AWS::Serverless::Application", "Properties": block}})
    # safe_dump writes the long forms ({"Ref": ...}), which CloudFormation reads like the short tags.
    indented = "".join(f"  {line}\n" for line in added.splitlines())

    stack = _provision_copy(tmp_path, lambda text: text.replace("\nOutputs:\n", f"\n{indented}\nOutputs:\n"))

    assert {f"{STACK}-scraping-{suffix}" for suffix in QUEUE_ALARMS} <= set(_alarms())
    body = boto3.client("cloudwatch").get_dashboard(DashboardName=STACK)["DashboardBody"]
    assert all(name not in body for name in [*(p["Parameters"]["QueueName"] for p in blocks.values()), "scraping"])
    assert "ScrapingQueue" in stack.nested


def test_a_queue_block_that_forgets_an_alarm_setting_does_not_provision(aws_env: None, tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="OldestMessageAgeAlarmSeconds"):
        _provision_copy(tmp_path, lambda text: text.replace("        OldestMessageAgeAlarmSeconds: !Ref OldestMessageAgeAlarmSeconds\n", "", 1))


def test_every_queue_block_passes_the_stacks_alarm_settings() -> None:
    template = load_template(ROOT / "template.yaml")
    nested = load_template(ROOT / "infra" / "queue.yaml")
    alarm_settings = [name for name, spec in nested["Parameters"].items() if name.startswith(("Alarm", "OldestMessage", "FailureRate", "ConsumerErrors", "Duration"))]

    assert len(alarm_settings) == 6 and all("Default" not in nested["Parameters"][n] for n in alarm_settings)
    for logical, block in _queue_blocks(template).items():
        for name in alarm_settings:
            expected = {"Ref": "AlarmTopic"} if name == "AlarmTopicArn" else {"Ref": name}
            # A literal number is a deliberate per-queue override; anything else is a mistake.
            assert block["Parameters"].get(name) == expected or isinstance(block["Parameters"].get(name), int | float), (logical, name)


def test_the_dashboard_graphs_every_queue_from_the_stacks_own_metrics(stack: Stack) -> None:
    body = json.loads(boto3.client("cloudwatch").get_dashboard(DashboardName=STACK)["DashboardBody"])
    expressions = [
        query["expression"]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for row in widget["properties"]["metrics"]
        for query in row
        if isinstance(query, dict) and "expression" in query
    ]
    searches = [e for e in expressions if e.startswith("SEARCH(")]

    searched = {re.search(r'MetricName="(\w+)"', e).group(1) for e in searches}  # type: ignore[union-attr]
    assert searched == {"JobsCreated", "JobsCompleted", "JobsFailed", "ProcessingTime", "JobsWaiting", "DeadLetterDepth", "ConsumerBusyTime"}
    schema = '{"jobq/' + STACK + '",queue}'  # exact namespace: no other stack's queues
    assert all(e.startswith(f"SEARCH('{schema} ") for e in searches)
    assert any("'p95'" in e and "ProcessingTime" in e for e in searches)


def test_the_alarms_and_dashboard_read_only_metrics_the_code_emits(stack: Stack) -> None:
    source = "\n".join(p.read_text() for d in ("shared", "functions") for p in (ROOT / d).rglob("*.py"))
    emitted = set(re.findall(r'(?:emit|add_metric|Metric)\(\s*"(\w+)"', source))  # Metric: a lifecycle effect
    body = boto3.client("cloudwatch").get_dashboard(DashboardName=STACK)["DashboardBody"]
    read = set(re.findall(r'MetricName=\\?"(\w+)\\?"', body))
    for alarm in _alarms().values():
        for query in alarm.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace", "").startswith("jobq/"):
                read.add(metric["MetricName"])

    assert read and read <= emitted, read - emitted


def test_every_function_publishes_into_the_namespace_the_alarms_read(aws_env: None) -> None:
    provisioned = Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, PARAMETERS)

    namespaces = {fn.environment["POWERTOOLS_METRICS_NAMESPACE"] for fn in provisioned.all_functions()}
    assert namespaces == {f"jobq/{STACK}"}
    failure_rate = _alarms()[f"{STACK}-email-sending-failure-rate"]
    assert {q["MetricStat"]["Metric"]["Namespace"] for q in failure_rate["Metrics"] if "MetricStat" in q} == namespaces


def test_each_consumer_batch_reports_its_busy_time_for_the_concurrency_graph(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # Whatever the batch holds (here a message for no job, which is dropped), its time is counted.
    boto3.client("sqs").send_message(QueueUrl=stack.queues["email-sending"].queue_url, MessageBody='{"jobId": "no-such-job"}')
    messages = stack.receive("email-sending")

    handler(sqs_event(stack, "email-sending", messages), FakeLambdaContext())

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    busy = [m for m in lines if "ConsumerBusyTime" in m]
    assert len(busy) == 1 and busy[0]["queue"] == "email-sending" and busy[0]["ConsumerBusyTime"][0] >= 0
    (directive,) = busy[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Metrics"] == [{"Name": "ConsumerBusyTime", "Unit": "Milliseconds"}]
