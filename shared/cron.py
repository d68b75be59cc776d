"""Schedule expressions: what a client writes, what EventBridge Scheduler takes, and when it fires next.

Clients write the seed's 5-field Unix cron (``0 2 * * *``: minute hour day-of-month month
day-of-week, Sunday = 0 or 7) or EventBridge's own 6-field dialect (``0 2 * * ? *``: the
same plus a year, Sunday = 1, and exactly one of day-of-month / day-of-week set to ``?``).
Both become ``cron(<6 fields>)`` for Scheduler; an interval in milliseconds becomes
``rate(<n> minutes|hours|days)`` (Scheduler counts in whole minutes).

Everything is checked here, before AWS sees it, so a client gets a 400 that says what is
wrong instead of a ValidationException from Scheduler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import Invalid

_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_UNIX_FIELD = re.compile(r"^[0-9A-Za-z*,/-]+$")
_EB_FIELD = re.compile(r"^[0-9A-Za-z*,/?#-]+$")
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Recurrence:
    """A checked recurrence: the Scheduler expression, and the 5-field form for computing fire times."""

    expression: str  # cron(...) or rate(...), as Scheduler takes it
    timezone: str
    unix_cron: str | None = None  # None for rate()
    every_ms: int | None = None

    def next_after(self, after: datetime, *, anchor: datetime | None = None) -> datetime:
        """The first fire time strictly after ``after`` (aware). ``rate()`` counts from ``anchor``."""
        if self.every_ms is not None:
            start = anchor or after
            if start > after:
                return start
            periods = int((after - start) / timedelta(milliseconds=self.every_ms)) + 1
            return start + timedelta(milliseconds=self.every_ms * periods)
        from croniter import croniter  # only where fire times are computed

        assert self.unix_cron is not None
        local = after.astimezone(ZoneInfo(self.timezone))
        nxt = croniter(self.unix_cron, local).get_next(datetime)
        return nxt.astimezone(UTC)


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise Invalid(f"unknown time zone '{name}': use an IANA name such as America/New_York or UTC") from err
    return name


def recurrence(*, cron: str | None, every_ms: int | None, timezone: str | None) -> Recurrence:
    """Check a client's cron expression or interval (exactly one) and build the Scheduler expression."""
    if (cron is None) == (every_ms is None):
        raise Invalid("give either cron (with an optional timezone) or every (milliseconds), not both")
    tz = check_timezone(timezone or "UTC")
    if every_ms is not None:
        return Recurrence(expression=rate_expression(every_ms), timezone=tz, every_ms=every_ms)
    assert cron is not None
    eventbridge, unix = convert_cron(cron)
    return Recurrence(expression=f"cron({eventbridge})", timezone=tz, unix_cron=unix)


def rate_expression(every_ms: int) -> str:
    if every_ms < MINUTE_MS or every_ms % MINUTE_MS:
        raise Invalid(
            f"every is {every_ms} ms; EventBridge Scheduler repeats in whole minutes: use a multiple of 60000, at least 60000"
        )
    minutes = every_ms // MINUTE_MS
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            count = minutes // size
            return f"rate({count} {unit}{'' if count == 1 else 's'})"
    raise AssertionError("unreachable")  # pragma: no cover


def convert_cron(text: str) -> tuple[str, str]:
    """``(eventbridge 6 fields, unix 5 fields)`` for a 5-field Unix or 6-field EventBridge cron."""
    fields = text.split()
    if len(fields) == 5:
        unix = " ".join(fields)
        _check_with_croniter(unix, text)
        return _from_unix(fields), unix
    if len(fields) == 6:
        unix = _from_eventbridge(fields)
        _check_with_croniter(unix, text)
        return " ".join(fields), unix
    raise Invalid(
        f"cron '{text}' has {len(fields)} fields; write 5 (minute hour day-of-month month day-of-week, e.g. '0 2 * * *') "
        "or EventBridge's 6 (the same plus year, e.g. '0 2 * * ? *')"
    )


def _from_unix(fields: list[str]) -> str:
    minute, hour, dom, month, dow = fields
    for name, value in zip(("minute", "hour", "day-of-month", "month", "day-of-week"), fields, strict=True):
        if not _UNIX_FIELD.match(value):
            raise Invalid(f"cron field {name} '{value}' has characters a 5-field cron does not allow (use digits, names, * , - /)")
    if dom != "*" and dow != "*":
        raise Invalid(
            "EventBridge cannot combine a day-of-month and a day-of-week in one schedule: set one of them to *"
        )
    if dow == "*":
        return f"{minute} {hour} {dom} {month} ? *"
    return f"{minute} {hour} ? {month} {_unix_days_to_names(dow)} *"


def _from_eventbridge(fields: list[str]) -> str:
    minute, hour, dom, month, dow, year = fields
    for name, value in zip(("minute", "hour", "day-of-month", "month", "day-of-week", "year"), fields, strict=True):
        if not _EB_FIELD.match(value):
            raise Invalid(f"cron field {name} '{value}' has characters EventBridge does not allow")
    if (dom == "?") == (dow == "?"):
        raise Invalid("in a 6-field EventBridge cron exactly one of day-of-month and day-of-week must be ?")
    if year != "*":
        raise Invalid("the year field must be * (jobq schedules do not end by year; use endDate)")
    if "?" in (minute, hour, month):
        raise Invalid("? is only allowed in day-of-month or day-of-week")
    unix_dow = "*" if dow == "?" else _eventbridge_days_to_unix(dow)
    return f"{minute} {hour} {'*' if dom == '?' else dom} {month} {unix_dow}"


def _day_number(token: str, *, sunday: int) -> int:
    """A day-of-week token as 0..6 (Sunday 0); ``sunday`` is the dialect's number for Sunday (0 Unix, 1 EventBridge)."""
    upper = token.upper()
    if upper in _DAY_NAMES:
        return _DAY_NAMES.index(upper)
    if not upper.isdigit():
        raise Invalid(f"day-of-week '{token}' is not a day (0-7 or SUN-SAT)" if sunday == 0 else f"day-of-week '{token}' is not a day (1-7 or SUN-SAT)")
    number = int(upper)
    if sunday == 0:
        if not 0 <= number <= 7:
            raise Invalid(f"day-of-week {number} is out of range 0-7")
        return number % 7
    if not 1 <= number <= 7:
        raise Invalid(f"day-of-week {number} is out of range 1-7 (EventBridge counts Sunday as 1)")
    return number - 1


def _expand_days(field: str, *, sunday: int) -> list[int]:
    """A day-of-week field (lists, ranges, steps) as the sorted set of days 0..6."""
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise Invalid(f"day-of-week step '{step_text}' must be a positive number")
            step = int(step_text)
        if base == "*":
            days.update(range(0, 7, step))
            continue
        start_text, dash, end_text = base.partition("-")
        start = _day_number(start_text, sunday=sunday)
        if not dash:
            if step_text:
                days.update(range(start, 7, step))
            else:
                days.add(start)
            continue
        end = 7 if (sunday == 0 and end_text == "7") else _day_number(end_text, sunday=sunday)
        if end < start:
            raise Invalid(f"day-of-week range '{base}' runs backwards")
        days.update(d % 7 for d in range(start, end + 1, step))
    return sorted(days)


def _unix_days_to_names(field: str) -> str:
    if any(ch in field for ch in "#L?"):
        raise Invalid(f"day-of-week '{field}' uses syntax a 5-field cron does not have; write EventBridge's 6 fields for L or #")
    return ",".join(_DAY_NAMES[d] for d in _expand_days(field, sunday=0))


def _eventbridge_days_to_unix(field: str) -> str:
    upper = field.upper()
    if "#" in upper:  # nth weekday of the month: "MON#1" / "2#1"
        day, _, nth = upper.partition("#")
        return f"{_day_number(day, sunday=1)}#{nth}"
    if upper.endswith("L") and upper != "L":  # last given weekday of the month: "6L" / "FRIL"
        return f"L{_day_number(upper[:-1], sunday=1)}"
    if upper == "L":  # EventBridge: the last day of the week, Saturday
        return "6"
    return ",".join(str(d) for d in _expand_days(field, sunday=1))


def _check_with_croniter(unix: str, original: str) -> None:
    from croniter import croniter
    from croniter.croniter import CroniterError

    try:
        croniter(unix, datetime(2024, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterError, ValueError, KeyError) as err:
        raise Invalid(f"cron '{original}' is not valid: {err}") from err


def parse_expression(expression: str) -> tuple[str, str]:
    """``("at"|"rate"|"cron", body)`` of a Scheduler expression (the local emulator reads them)."""
    for kind, pattern in (("at", _AT), ("rate", _RATE), ("cron", _CRON)):
        match = pattern.match(expression.strip())
        if match:
            return kind, match.group(0)[len(kind) + 1 : -1]
    raise ValueError(f"not a Scheduler expression: {expression!r}")


def rate_ms(body: str) -> int:
    match = _RATE.match(f"rate({body})")
    if not match:
        raise ValueError(f"not a rate: {body!r}")
    size = {"minute": 1, "hour": 60, "day": 1440}[match.group(2).rstrip("s")]
    return int(match.group(1)) * size * MINUTE_MS


def eventbridge_to_unix(body: str) -> str:
    """The 5-field form of a 6-field EventBridge cron body (for computing fire times)."""
    return _from_eventbridge(body.split())
