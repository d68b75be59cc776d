"""Strict JSON: what jobq accepts in job data, options, results and progress.

Python's ``json`` (and so FastAPI) reads more than JSON: ``NaN``, ``Infinity`` and lone
UTF-16 surrogates (``"\\ud800"``) parse, but cannot be written back as UTF-8 JSON, so a
job holding one would break every page that lists it and every HTTP target it is sent
to. Numbers are bounded by what the consumers of a job can take without losing it:

* integers: within +-(2**53 - 1), the integers JavaScript (and most JSON parsers) read exactly;
* other numbers: finite, and either 0 or of a magnitude DynamoDB can store as a number
  (1e-130 <= |x| < 1e126; Python floats carry 17 significant digits, DynamoDB 38);
* nesting: at most ``MAX_DEPTH`` levels of objects and arrays.

``problem(value, where)`` names the first offending field (``data.items[3].price``), or None.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1
MAX_NUMBER = 1e126  # exclusive
MIN_NUMBER = 1e-130
MAX_DEPTH = 32


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone UTF-16 surrogate, which is not a character"
    return None


def _number_problem(value: int | float) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            return f"is an integer beyond +-{MAX_SAFE_INTEGER} (2^53 - 1), which JSON consumers cannot read exactly"
        return None
    if not math.isfinite(value):
        return "is NaN or Infinity, which JSON does not have"
    if value != 0 and not MIN_NUMBER <= abs(value) < MAX_NUMBER:
        return "is a number outside 1e-130 .. 1e126 in magnitude"
    return None


def problem(value: Any, where: str) -> str | None:
    """The first reason ``value`` is not strict JSON, prefixed by its path, or None."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            reason = _text_problem(item)
        elif isinstance(item, int | float):
            reason = _number_problem(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return f"{path or 'body'}: nests deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"{path or 'body'}: has a key that is not a string"
                    key_reason = _text_problem(key)
                    if key_reason:
                        return f"{path or 'body'}: a key {key_reason}"
                    stack.append((child, f"{path}.{key}" if path else key, depth + 1))
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
            continue
        elif item is None:
            reason = None
        elif isinstance(item, Constant):
            reason = f"is {item.name}, which JSON does not have"
        else:
            reason = f"is a {type(item).__name__}, not a JSON value"
        if reason:
            return f"{path or 'body'}: {reason}"
    return None


def check(value: Any, where: str) -> Any:
    """``value`` itself if it is strict JSON; ValueError naming the field otherwise."""
    reason = problem(value, where)
    if reason:
        raise ValueError(reason)
    return value


class Constant:
    """Where the text said ``NaN``, ``Infinity`` or ``-Infinity`` (``loads`` keeps the place, so
    ``problem`` can name the field)."""

    def __init__(self, name: str) -> None:
        self.name = name


def loads(raw: str | bytes) -> Any:
    """Parse JSON text; NaN/Infinity become ``Constant`` for ``problem`` to report by field.
    ``ValueError`` for text that is no JSON at all."""
    return json.loads(raw, parse_constant=Constant)


def dumps(value: Any) -> str:
    """Compact JSON that refuses non-finite numbers instead of writing ``NaN``."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "Constant", "check", "dumps", "loads", "problem"]
