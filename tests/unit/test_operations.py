"""What keeps the stack operable: nothing deletes the jobs, retention agrees across services,
the maintenance functions cannot be starved, a failed schedule firing is kept."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local.provision import ProvisionedStack, Provisioner
from shared.models import QueuePolicy
from tests.unit.conftest import ROOT, STACK, Stack

PARAMETERS = {"JwtIssuer": "https://issuer.example.com", "JwtAudience": "jobq"}
MAINTENANCE = {"HealthFunction": "HealthReservedConcurrency", "CleanupFunction": "CleanupReservedConcurrency", "SchedulerFunction": "SchedulerReservedConcurrency"}


def _provision(**parameters: str) -> ProvisionedStack:
    return Provisioner(endpoint_url=None).provision(ROOT / "template.yaml", STACK, {**PARAMETERS, **parameters})


def test_the_jobs_table_refuses_to_be_deleted(stack: Stack) -> None:
    ddb = boto3.client("dynamodb")

    assert ddb.describe_table(TableName=stack.table_name)["Table"]["DeletionProtectionEnabled"] is True
    with pytest.raises(ClientError):
        ddb.delete_table(TableName=stack.table_name)


def test_a_failed_jobs_dead_letter_lives_as_long_as_the_failed_job(stack: Stack) -> None:
    sqs = boto3.client("sqs")
    for queue in stack.queues.values():
        retention = sqs.get_queue_attributes(QueueUrl=queue.dlq_url, AttributeNames=["MessageRetentionPeriod"])["Attributes"]
        # so POST /queues/{name}/dead-letters/redrive {} finds every failed job still kept
        assert int(retention["MessageRetentionPeriod"]) == QueuePolicy().remove_on_fail.max_age_seconds == 14 * 86400


def test_reports_expire_with_the_completed_jobs_that_point_at_them(stack: Stack) -> None:
    bucket = stack.settings.reports_bucket
    rules = boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]

    (reports,) = [r for r in rules if r.get("Filter", {}).get("Prefix") == "reports/"]
    assert reports["Status"] == "Enabled"
    assert reports["Expiration"]["Days"] * 86400 == QueuePolicy().remove_on_complete.max_age_seconds
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules)


def test_the_maintenance_functions_keep_their_own_concurrency(aws_env: None) -> None:
    reserved = _provision()
    unreserved = _provision(**dict.fromkeys(MAINTENANCE.values(), "-1"))

    for function, parameter in MAINTENANCE.items():
        default = reserved.resources[function].properties["ReservedConcurrentExecutions"]
        assert int(default) >= 1, (function, parameter)
        assert "ReservedConcurrentExecutions" not in unreserved.resources[function].properties  # -1: no reservation
    assert int(reserved.resources["HealthFunction"].properties["ReservedConcurrentExecutions"]) == 1  # health runs never overlap


def test_a_schedule_firing_that_keeps_failing_is_kept_in_the_failed_firings_queue(aws_env: None) -> None:
    stack = _provision()
    config = stack.resources["SchedulerFunction"].properties["EventInvokeConfig"]

    assert config["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": stack.resources["SchedulerFailedFirings"].attrs["Arn"]}
    assert int(config["MaximumRetryAttempts"]) == 2
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=stack.resources["SchedulerFailedFirings"].ref, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "1209600" and attributes["SqsManagedSseEnabled"] == "true"
