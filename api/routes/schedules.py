"""Recurring schedules (admin): ``/schedules``. HTTP in, a call of shared.schedules, the envelope out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.access import StackGuard
from api.deps import CurrentUser, Cursors, Schedules
from api.envelope import Envelope, error_responses
from shared.client_models import JobPublic
from shared.schedules import (
    SCHEDULE_NAME_PATTERN,
    Schedule,
    ScheduleCreate,
    SchedulePage,
    SchedulePatch,
)

ScheduleName = Annotated[str, Path(pattern=SCHEDULE_NAME_PATTERN, description="The schedule's name")]
ERRORS = (401, 403, 404, 503)

router = APIRouter(prefix="/schedules", tags=["schedules"], dependencies=[StackGuard])


@router.post(
    "",
    status_code=201,
    response_model=Envelope[Schedule],
    summary="Create a recurring schedule: cron with a time zone, or an interval (admin)",
    description=(
        "`cron` takes the seed's 5 fields (`0 2 * * *`: minute hour day-of-month month day-of-week, Sunday 0) and is "
        "converted to EventBridge's 6-field dialect (`0 2 * * ? *`), which is accepted as is too. `every` is in "
        "milliseconds, a whole number of minutes. Each firing creates exactly one job, `repeat:<name>:<scheduled time>`, owned by the schedule's creator."
    ),
    responses=error_responses(400, 401, 403, 409, 413, 503),
)
def create_schedule(body: ScheduleCreate, caller: CurrentUser, schedules: Schedules) -> Envelope[Schedule]:
    return Envelope(data=schedules.create(body, caller))


@router.get("", response_model=Envelope[SchedulePage], summary="List the schedules (admin)", responses=error_responses(400, 401, 403, 503))
def list_schedules(
    caller: CurrentUser,
    schedules: Schedules,
    cursors: Cursors,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> Envelope[SchedulePage]:
    found, after = schedules.list(caller, limit=limit, cursor=cursors.open(cursor, "schedules"))
    return Envelope(data=SchedulePage(schedules=found, next_cursor=cursors.seal(after, "schedules")))


@router.get("/{name}", response_model=Envelope[Schedule], summary="One schedule, with its next run (admin)", responses=error_responses(*ERRORS))
def get_schedule(name: ScheduleName, caller: CurrentUser, schedules: Schedules) -> Envelope[Schedule]:
    return Envelope(data=schedules.get(name, caller))


@router.patch(
    "/{name}",
    response_model=Envelope[Schedule],
    summary="Change a schedule's cron, interval, time zone, limit or description (admin)",
    description="Its runs, state and job template stay; the EventBridge schedule is updated in place.",
    responses=error_responses(400, *ERRORS, 409),
)
def update_schedule(name: ScheduleName, body: SchedulePatch, caller: CurrentUser, schedules: Schedules) -> Envelope[Schedule]:
    return Envelope(data=schedules.update(name, body, caller))


@router.post("/{name}/pause", response_model=Envelope[Schedule], summary="Pause a schedule (admin)", responses=error_responses(*ERRORS, 409))
def pause_schedule(name: ScheduleName, caller: CurrentUser, schedules: Schedules) -> Envelope[Schedule]:
    return Envelope(data=schedules.pause(name, caller))


@router.post("/{name}/resume", response_model=Envelope[Schedule], summary="Resume a paused schedule (admin)", responses=error_responses(*ERRORS, 409))
def resume_schedule(name: ScheduleName, caller: CurrentUser, schedules: Schedules) -> Envelope[Schedule]:
    return Envelope(data=schedules.resume(name, caller))


@router.post(
    "/{name}/trigger",
    status_code=201,
    response_model=Envelope[JobPublic],
    summary="Run a schedule once now; does not count toward its limit (admin)",
    responses=error_responses(400, *ERRORS),
)
def trigger_schedule(name: ScheduleName, caller: CurrentUser, schedules: Schedules) -> Envelope[JobPublic]:
    return Envelope(data=JobPublic.of(schedules.trigger(name, caller)))


@router.delete("/{name}", status_code=204, summary="Delete a schedule (admin)", responses=error_responses(*ERRORS))
def delete_schedule(name: ScheduleName, caller: CurrentUser, schedules: Schedules) -> Response:
    schedules.delete(name, caller)
    return Response(status_code=204)
