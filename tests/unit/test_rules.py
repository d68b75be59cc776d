"""Pure rules: the state machine and the backoff."""

from __future__ import annotations

import random

import pytest

from shared.backoff import backoff_seconds
from shared.models import Backoff, BackoffType
from shared.status import CLAIMABLE, FINISHED, TRANSITIONS, JobStatus, can_transition, sources_of


def test_a_completed_job_can_never_change_again() -> None:
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()


def test_a_finished_job_can_only_go_back_to_waiting_by_a_manual_retry() -> None:
    for status in (JobStatus.FAILED, JobStatus.CANCELLED):
        assert TRANSITIONS[status] == {JobStatus.WAITING}


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
