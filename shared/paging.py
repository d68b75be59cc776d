"""Numbered pages (seed 000's ``?page=2&limit=20``) over cursor-paged Queries.

DynamoDB has no offset: page N is read by following the cursor through the N-1 pages before
it, so its cost grows with N. Pages are therefore bounded (``MAX_PAGED_ITEMS`` jobs deep);
past that the client follows ``nextCursor``, whose cost is one page whatever the depth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from shared.errors import Invalid

T = TypeVar("T")
MAX_PAGED_ITEMS = 1000
QUERY_LIMIT = 100  # items per Query while skipping

Fetch = Callable[[int, str | None], tuple[list[T], str | None]]


def numbered_page(fetch: Fetch[T], *, page: int, limit: int) -> tuple[list[T], str | None]:
    """Items ``(page-1)*limit`` to ``page*limit`` (newest first as ``fetch`` gives them), and the cursor after them.

    ``fetch(limit, cursor)`` is one Query: at most ``limit`` items and the cursor of the rest.
    """
    if page < 1:
        raise Invalid("page starts at 1")
    skip = (page - 1) * limit
    if skip + limit > MAX_PAGED_ITEMS:
        raise Invalid(f"page x limit reaches past {MAX_PAGED_ITEMS} jobs; follow nextCursor to read further")
    wanted = skip + limit
    items: list[T] = []
    cursor: str | None = None
    while len(items) < wanted:
        got, cursor = fetch(min(QUERY_LIMIT, wanted - len(items)), cursor)
        items.extend(got)
        if cursor is None:
            break
    return items[skip:wanted], cursor


__all__ = ["MAX_PAGED_ITEMS", "numbered_page"]
