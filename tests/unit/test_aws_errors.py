"""One table maps AWS's errors to jobq's: what a client sees when AWS fails, whichever adapter called it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ParamValidationError

from shared.adapters.aws_errors import aws_errors, cancellation_reasons, domain_error, old_item
from shared.errors import Conflict, Invalid, JobqError, NotFound, Throttled, Unavailable

ROOT = Path(__file__).resolve().parents[2]


def _client_error(code: str, operation: str = "PutItem", **extra: object) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}, **extra}, operation)  # type: ignore[arg-type]  # botocore's TypedDict wants every key


@pytest.mark.parametrize(
    ("code", "operation", "kind", "status"),
    [
        ("ProvisionedThroughputExceededException", "UpdateItem", Throttled, 503),
        ("ThrottlingException", "SendMessage", Throttled, 503),
        ("RequestLimitExceeded", "Query", Throttled, 503),
        ("InternalServerError", "GetItem", Unavailable, 503),
        ("AccessDeniedException", "SendMessage", Unavailable, 503),
        ("ConditionalCheckFailedException", "PutItem", Conflict, 409),
        ("ConflictException", "CreateSchedule", Conflict, 409),
        ("ResourceNotFoundException", "DeleteSchedule", NotFound, 404),
        ("ValidationException", "Query", Invalid, 400),
        # jobq's own table, queue or parameter missing: the deployment is broken, not the request
        ("ResourceNotFoundException", "GetItem", Unavailable, 503),
        ("AWS.SimpleQueueService.NonExistentQueue", "SendMessage", Unavailable, 503),
        ("ParameterNotFound", "GetParametersByPath", Unavailable, 503),
    ],
)
def test_an_aws_error_reaches_the_client_as_one_meaning_whatever_the_adapter(
    code: str, operation: str, kind: type[JobqError], status: int
) -> None:
    err = domain_error(_client_error(code, operation), "doing it")

    assert type(err) is kind and err.status_code == status
    assert err.message.startswith("doing it")


def test_no_answer_from_aws_is_a_503_the_client_may_retry() -> None:
    for cause in (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), ConnectTimeoutError(endpoint_url="http://127.0.0.1:1")):
        with pytest.raises(Unavailable) as caught, aws_errors("cannot enqueue on email-sending"):
            raise cause
        assert caught.value.status_code == 503 and caught.value.__cause__ is cause
        assert "retry" in caught.value.message


def test_a_request_botocore_refuses_to_send_is_a_400() -> None:
    err = domain_error(ParamValidationError(report="Invalid type for parameter ExclusiveStartKey"), "cannot list jobs")

    assert isinstance(err, Invalid) and err.status_code == 400


def test_a_cancelled_transaction_is_a_conflict_when_a_condition_failed_and_throttling_when_capacity_ran_out() -> None:
    condition = _client_error(
        "TransactionCanceledException", "TransactWriteItems", CancellationReasons=[{"Code": "None"}, {"Code": "ConditionalCheckFailed"}]
    )
    capacity = _client_error("TransactionCanceledException", "TransactWriteItems", CancellationReasons=[{"Code": "ThrottlingError"}])

    conflict = domain_error(condition, "reserving")
    assert isinstance(conflict, Conflict)
    conflict.__cause__ = condition
    assert cancellation_reasons(conflict) == ["None", "ConditionalCheckFailed"]
    assert isinstance(domain_error(capacity, "reserving"), Throttled)


def test_a_failed_condition_hands_back_the_item_as_it_was() -> None:
    with pytest.raises(Conflict) as caught, aws_errors("creating job a"):
        raise _client_error("ConditionalCheckFailedException", Item={"pk": {"S": "JOB#alice#a"}})

    assert old_item(caught.value) == {"pk": {"S": "JOB#alice#a"}}


def test_only_the_adapters_package_imports_boto3_or_botocore_and_only_the_table_reads_botocore_errors() -> None:
    importers: set[str] = set()
    error_readers: set[str] = set()
    for folder in ("api", "functions", "shared", "processors"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                module = node.module if isinstance(node, ast.ImportFrom) and node.module else ""
                rel = str(path.relative_to(ROOT))
                if module.startswith(("boto3", "botocore")) or any(n.startswith(("boto3", "botocore")) for n in names):
                    importers.add(rel)
                if module == "botocore.exceptions" or "botocore.exceptions" in names:
                    error_readers.add(rel)

    assert {p for p in importers if not p.startswith("shared/adapters/")} == set()
    assert error_readers == {"shared/adapters/aws_errors.py"}
