"""Pure rules: the state machine, the lifecycle's operations and the backoff."""

from __future__ import annotations

import random

import pytest

from shared import lifecycle
from shared.backoff import backoff_seconds
from shared.errors import Conflict
from shared.lifecycle import Guard
from shared.models import Backoff, BackoffType, Job, QueuePolicy, Retention
from shared.status import CLAIMABLE, FINISHED, TRANSITIONS, JobStatus, can_transition, sources_of


def test_a_completed_job_can_never_change_again() -> None:
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()


def test_a_finished_job_can_only_go_back_to_waiting_by_a_manual_retry() -> None:
    assert TRANSITIONS[JobStatus.CANCELLED] == {JobStatus.WAITING}
    # a flow's parent failed by its child waits for its children again when that child is retried
    assert TRANSITIONS[JobStatus.FAILED] == {JobStatus.WAITING, JobStatus.WAITING_CHILDREN}


def test_a_cancelled_job_is_never_claimed() -> None:
    assert not can_transition(JobStatus.CANCELLED, JobStatus.ACTIVE)
    assert JobStatus.CANCELLED not in CLAIMABLE


def test_waiting_delayed_and_stalled_jobs_are_claimable() -> None:
    assert {JobStatus.WAITING, JobStatus.DELAYED, JobStatus.STALLED} == CLAIMABLE
    assert JobStatus.ACTIVE in sources_of(JobStatus.ACTIVE)  # an expired lease is reclaimed


def test_every_status_has_its_row_and_finished_is_what_the_seed_says() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} == FINISHED


def test_fixed_backoff_waits_the_same_every_time() -> None:
    fixed = Backoff(type=BackoffType.FIXED, delay=2500)
    assert [backoff_seconds(fixed, n, cap_seconds=3600) for n in (1, 2, 5)] == [3, 3, 3]


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5])
def test_exponential_backoff_doubles_with_jitter_in_the_upper_half(attempts: int) -> None:
    exponential = Backoff(type=BackoffType.EXPONENTIAL, delay=1000)
    base = 2 ** (attempts - 1)
    rng = random.Random(attempts)
    waits = [backoff_seconds(exponential, attempts, cap_seconds=3600, rand=rng) for _ in range(200)]
    assert min(waits) >= base // 2 and max(waits) <= base
    if base >= 4:
        assert len(set(waits)) > 1  # jittered, not lockstep


def test_backoff_is_capped() -> None:
    exponential = Backoff(type=BackoffType.EXPONENTIAL, delay=60_000)
    assert backoff_seconds(exponential, 30, cap_seconds=600) <= 600
    assert backoff_seconds(Backoff(type=BackoffType.FIXED, delay=12 * 3600 * 1000), 1, cap_seconds=10**9) == 12 * 3600


def test_zero_delay_retries_at_once() -> None:
    assert backoff_seconds(Backoff(type=BackoffType.FIXED, delay=0), 1, cap_seconds=60) == 0


# ---- the lifecycle's operations (shared/lifecycle.py) ---------------------------------------------
def _job(status: JobStatus, **fields: object) -> Job:
    return Job.model_validate(
        {"job_id": "j", "queue": "q", "type": "t", "user_id": "u", "status": status, "created_at": "2030-01-01T00:00:00.000Z",
         "updated_at": "2030-01-01T00:00:00.000Z", **fields}
    )


POLICY = QueuePolicy(default_attempts=3, default_backoff=Backoff(), remove_on_complete=Retention(), remove_on_fail=Retention())
NOW = 1_893_456_000_000


@pytest.mark.parametrize("status", list(JobStatus))
def test_a_claim_takes_exactly_the_claimable_statuses_and_expired_leases(status: JobStatus) -> None:
    job = _job(status, lease_until=NOW - 1, lease_token="dead")
    if status in CLAIMABLE or status is JobStatus.ACTIVE:
        change = lifecycle.claim(job, now=NOW, lease_ms=1000, token="t")
        assert change.target is JobStatus.ACTIVE and change.sets["attempts"] == 1
    else:
        with pytest.raises(Conflict):
            lifecycle.claim(job, now=NOW, lease_ms=1000, token="t")


def test_a_running_job_whose_lease_holds_is_not_claimed_again() -> None:
    with pytest.raises(Conflict):
        lifecycle.claim(_job(JobStatus.ACTIVE, lease_until=NOW + 60_000, lease_token="alive"), now=NOW, lease_ms=1000, token="t")


def test_no_write_of_a_worker_carries_the_cancel_flag_or_the_version_it_read() -> None:
    running = _job(JobStatus.ACTIVE, attempts=1, lease_until=NOW + 1000, lease_token="t", history=[{"attempt": 1, "startedAt": "x"}])
    changes = [
        lifecycle.progress(running, token="t", value=50, message=None, now=NOW),
        lifecycle.complete(running, token="t", result={}, processing_ms=1, now=NOW, policy=POLICY),
        lifecycle.retry_later(running, token="t", error="e", wait_seconds=1, processing_ms=1, now=NOW),
        lifecycle.fail(running, token="t", error="e", now=NOW, policy=POLICY),
    ]
    for change in changes:
        assert "cancel_requested" not in change.sets and "version" not in change.sets
        assert change.guard is Guard.LEASE and change.unless_cancel_requested  # a requested cancel wins


def test_a_cancel_request_writes_the_flag_and_nothing_a_worker_writes() -> None:
    change = lifecycle.request_cancel(_job(JobStatus.ACTIVE, lease_token="t"), now=NOW)
    assert set(change.sets) == {"cancel_requested", "updated_at"} and change.guard is Guard.STATUS


def test_each_ending_closes_the_open_attempt_with_its_outcome() -> None:
    running = _job(JobStatus.ACTIVE, attempts=1, lease_until=NOW + 1000, lease_token="t", history=[{"attempt": 1, "startedAt": "x"}])
    expired = running.model_copy(update={"lease_until": NOW - 1})
    outcomes = {
        "completed": lifecycle.complete(running, token="t", result=1, processing_ms=1, now=NOW, policy=POLICY),
        "retrying": lifecycle.retry_later(running, token="t", error="e", wait_seconds=1, processing_ms=None, now=NOW),
        "failed": lifecycle.fail(running, token=None, error="e", now=NOW, policy=POLICY),
        "cancelled": lifecycle.cancel(running, now=NOW, policy=POLICY, reason="asked"),
        "stalled": lifecycle.stall(expired, now=NOW),
    }
    for outcome, change in outcomes.items():
        assert change.sets["history"][-1].outcome == outcome and change.sets["history"][-1].ended_at


def test_a_failed_job_goes_to_the_dead_letters_and_a_finished_one_is_stamped_for_retention() -> None:
    policy = POLICY.model_copy(update={"remove_on_fail": Retention(max_age_seconds=60)})
    change = lifecycle.fail(_job(JobStatus.STALLED), token=None, error="e", now=NOW, policy=policy)
    assert change.effects_of(lifecycle.DeadLetterCopy) == [lifecycle.DeadLetterCopy("e")]
    assert change.expires_at == NOW // 1000 + 60
    assert lifecycle.requeue(_job(JobStatus.FAILED), now=NOW, why="manual retry").clear_expiry
