"""Job priorities as the seeds write them: a number (higher is more important, negative allowed)
or a name. The names map onto seed 001's numbers (``JOB_PRIORITY.CRITICAL`` 10 ... ``LOW`` -5);
``bulk`` (seeds 002 and 004) sits one step below ``low``.

A job stores the number; ``priorityName`` is shown beside it when the number is a named level.
Seed 002 numbers its enum the other way round (``CRITICAL = 1`` ... ``BULK = 5``, BullMQ's
"lower runs first"): seed 000's "higher = more important" wins, so use the names with it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

PRIORITIES: dict[str, int] = {"critical": 10, "high": 5, "normal": 0, "low": -5, "bulk": -10}
MIN_PRIORITY = -1000
MAX_PRIORITY = 1000
_NAMES = {number: name for name, number in PRIORITIES.items()}


def valid_names() -> str:
    return ", ".join(f"{name} ({number})" for name, number in PRIORITIES.items())


def parse_priority(value: Any) -> int:
    """A number or a name -> the stored number. ValueError (the message lists the valid names) otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"priority must be a number (higher is more important) or one of {valid_names()}")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        number = int(value)
        if not MIN_PRIORITY <= number <= MAX_PRIORITY:
            raise ValueError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}; higher is more important")
        return number
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PRIORITIES:
            return PRIORITIES[name]
        if re.fullmatch(r"[+-]?\d+", name):
            return parse_priority(int(name))
        raise ValueError(f"priority '{value}' is not valid: use a number (higher is more important) or one of {valid_names()}")
    raise ValueError(f"priority must be a number (higher is more important) or one of {valid_names()}")


Priority = Annotated[
    int,
    BeforeValidator(lambda value: parse_priority(value)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
                {"type": "string", "enum": list(PRIORITIES)},
            ],
            "description": "Higher is more important; names: " + ", ".join(f"{n} = {v}" for n, v in PRIORITIES.items()),
        }
    ),
]


def priority_name(number: int) -> str | None:
    return _NAMES.get(number)


def priority_band(number: int) -> str:
    """The named level a number counts under in a queue's stats: the highest one at or below it
    (3 is ``normal``, -1 is ``low``, -50 is ``bulk``)."""
    for name, floor in sorted(PRIORITIES.items(), key=lambda item: -item[1]):
        if number >= floor:
            return name
    return "bulk"


__all__ = ["MAX_PRIORITY", "MIN_PRIORITY", "PRIORITIES", "Priority", "parse_priority", "priority_band", "priority_name", "valid_names"]
