"""botocore's errors become jobq's, by one table (httpx's ``map_exceptions``).

Every AWS call in jobq sits inside ``aws_errors(...)``; nothing outside this package
catches ``ClientError`` or ``BotoCoreError``. An adapter that gives one code its own
meaning (a conditional check that means "already exists") catches the domain error this
raises and looks at ``aws_code``.

    ConditionalCheckFailedException, TransactionCanceledException (a condition)  -> Conflict
    ResourceNotFoundException, QueueDoesNotExist, ParameterNotFound,
    AWS.SimpleQueueService.NonExistentQueue                                      -> NotFound
    ValidationException, InvalidParameterValue, ItemCollectionSizeLimitExceeded  -> Invalid
    Throttling*, ProvisionedThroughputExceeded, RequestLimitExceeded,
    TooManyRequestsException, RequestThrottled, SlowDown                         -> Throttled
    anything else a service answers (5xx, AccessDenied, ...)                     -> Unavailable
    BotoCoreError (connection refused, timeouts, a response that never came)     -> Unavailable
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import Conflict, Invalid, JobqError, NotFound, Throttled, Unavailable

_BY_CODE: dict[str, type[JobqError]] = {
    "ConditionalCheckFailedException": Conflict,
    "ResourceNotFoundException": NotFound,
    "QueueDoesNotExist": NotFound,
    "AWS.SimpleQueueService.NonExistentQueue": NotFound,
    "ParameterNotFound": NotFound,
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


def aws_code(err: BaseException) -> str:
    """The AWS error code behind a mapped error ('' for connection errors and timeouts)."""
    cause = err.__cause__ if isinstance(err, JobqError) else err
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def cancellation_reasons(err: BaseException) -> list[str]:
    cause = err.__cause__ if isinstance(err, JobqError) else err
    if isinstance(cause, ClientError):
        return [str(r.get("Code") or "None") for r in cause.response.get("CancellationReasons") or []]
    return []


def domain_error(err: ClientError | BotoCoreError, what: str) -> JobqError:
    if isinstance(err, BotoCoreError):
        return Unavailable(f"{what}: AWS did not answer ({type(err).__name__}); retry the request")
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    kind = _BY_CODE.get(code)
    if code == "TransactionCanceledException":
        reasons = cancellation_reasons(err)
        kinds = [_CANCELLATION[r] for r in reasons if r in _CANCELLATION]
        kind = Conflict if Conflict in kinds else Throttled if Throttled in kinds else Unavailable
    if kind is None:
        kind = Unavailable
    if kind is Invalid:
        return Invalid(f"{what}: {error.get('Message') or code}")
    if kind is Unavailable or kind is Throttled:
        return kind(f"{what}: AWS answered {code or 'an error'}; retry the request")
    return kind(f"{what}: {code}")


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Run AWS calls; their errors leave as jobq's (the botocore error is the ``__cause__``)."""
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        raise domain_error(err, what) from err
