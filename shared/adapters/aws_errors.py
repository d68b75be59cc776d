"""botocore's errors become jobq's, by one table (httpx's ``map_exceptions``).

Every AWS call in jobq sits inside ``aws_errors(...)`` (or, where one code has a meaning of its
own, catches ``AWS_ERRORS`` and calls ``domain_error``); nothing else in jobq reads a botocore
error. An adapter that gives one code its own meaning (a conditional check that means "already
exists", a schedule that is already gone) catches the domain error this raises and asks
``aws_code`` (or ``old_item`` for the item a failed condition returned).

    ConditionalCheckFailedException, ConflictException,
    TransactionCanceledException (a condition failed)                            -> Conflict
    ResourceNotFoundException (a schedule, an event source mapping)              -> NotFound
    ValidationException, InvalidParameterValue, ItemCollectionSizeLimitExceeded,
    ParamValidationError (botocore refused the request before sending it)        -> Invalid
    Throttling*, ProvisionedThroughputExceeded, RequestLimitExceeded,
    TooManyRequestsException, RequestThrottled, SlowDown,
    TransactionCanceledException (capacity)                                      -> Throttled
    a missing table (ResourceNotFoundException on GetItem, Query, ...), queue
    (QueueDoesNotExist) or parameter (ParameterNotFound): jobq's own resources,
    so the stack is broken, not the request,
    anything else a service answers (5xx, AccessDenied, ...),
    BotoCoreError (connection refused, timeouts, a response that never came)     -> Unavailable
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from shared.errors import Conflict, Invalid, JobqError, NotFound, Throttled, Unavailable

# What any AWS call may raise: a service's error answer, or no answer at all (connection, timeout).
AWS_ERRORS = (ClientError, BotoCoreError)

_BY_CODE: dict[str, type[JobqError]] = {
    "ConditionalCheckFailedException": Conflict,
    "ConflictException": Conflict,
    "ResourceNotFoundException": NotFound,
    "ValidationException": Invalid,
    "InvalidParameterValue": Invalid,
    "ItemCollectionSizeLimitExceededException": Invalid,
    "ThrottlingException": Throttled,
    "Throttling": Throttled,
    "ProvisionedThroughputExceededException": Throttled,
    "RequestLimitExceeded": Throttled,
    "TooManyRequestsException": Throttled,
    "RequestThrottled": Throttled,
    "RequestThrottledException": Throttled,
    "SlowDown": Throttled,
    "KMSThrottlingException": Throttled,
}
# Why a transaction was cancelled, item by item: a condition is a conflict; capacity is throttling.
_CANCELLATION: dict[str, type[JobqError]] = {
    "ConditionalCheckFailed": Conflict,
    "ThrottlingError": Throttled,
    "ProvisionedThroughputExceeded": Throttled,
    "RequestLimitExceeded": Throttled,
    "TransactionConflict": Unavailable,
}
# The DynamoDB data-plane calls jobq makes name a table, not the item: "not found" there means the table is
# missing (a broken deployment), which no client can fix by changing its request.
_TABLE_OPERATIONS = frozenset(
    {
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem",
        "BatchWriteItem", "TransactWriteItems", "TransactGetItems", "DescribeTable",
    }
)  # fmt: skip


def _cause(err: BaseException) -> BaseException | None:
    return err.__cause__ if isinstance(err, JobqError) else err


def aws_code(err: BaseException) -> str:
    """The AWS error code behind a mapped error ('' for connection errors and timeouts)."""
    cause = _cause(err)
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def cancellation_reasons(err: BaseException) -> list[str]:
    """A cancelled transaction's reason per item, in the order of its items."""
    cause = _cause(err)
    if isinstance(cause, ClientError):
        return [str(r.get("Code") or "None") for r in cause.response.get("CancellationReasons") or []]
    return []


def old_item(err: BaseException) -> dict[str, Any] | None:
    """The item as it was, which a failed condition returns (``ReturnValuesOnConditionCheckFailure``)."""
    cause = _cause(err)
    item = cause.response.get("Item") if isinstance(cause, ClientError) else None
    return dict(item) if isinstance(item, dict) else None


def http_status(err: BaseException) -> int | None:
    cause = _cause(err)
    if isinstance(cause, ClientError):
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def domain_error(err: ClientError | BotoCoreError, what: str) -> JobqError:
    """jobq's error for ``err``; ``what`` says what was being done ("cannot read job x")."""
    if isinstance(err, ParamValidationError):
        return Invalid(f"{what}: the request is not valid ({str(err).splitlines()[-1][:300]})")
    if isinstance(err, BotoCoreError):
        return Unavailable(f"{what}: AWS did not answer ({type(err).__name__}); retry the request")
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    kind = _BY_CODE.get(code)
    if code == "TransactionCanceledException":
        kinds = [_CANCELLATION[r] for r in cancellation_reasons(err) if r in _CANCELLATION]
        kind = Conflict if Conflict in kinds else Throttled if Throttled in kinds else Unavailable
    elif kind is NotFound and code == "ResourceNotFoundException" and err.operation_name in _TABLE_OPERATIONS:
        kind = Unavailable
    if kind is None:
        kind = Unavailable
    if kind is Invalid:
        return Invalid(f"{what}: {str(error.get('Message') or code)[:500]}")
    if kind is Unavailable or kind is Throttled:
        return kind(f"{what}: AWS answered {code or 'an error'}; retry the request")
    return kind(f"{what}: {code}")


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Run AWS calls; their errors leave as jobq's (the botocore error is the ``__cause__``)."""
    try:
        yield
    except AWS_ERRORS as err:
        raise domain_error(err, what) from err
