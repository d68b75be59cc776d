"""``AsyncClient``: the same operations as ``Client``, as coroutines, for asyncio code.

Each call runs the synchronous client in a worker thread (``asyncio.to_thread``), so the
retries, the Idempotency-Key and the typed results are exactly the sync client's; the event
loop is never blocked. ``iter_jobs``, ``iter_logs`` and ``follow`` are async iterators.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from jobq_client.client import Client, JobUpdate
from shared.client_models import JobPublic, LogLine

T = TypeVar("T")
_END = object()


class AsyncClient:
    def __init__(self, url: str, token: str | None = None, **kwargs: Any) -> None:
        self.sync = Client(url, token, **kwargs)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.sync.close)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        attr = getattr(self.sync, name)
        if name.startswith("_") or not callable(attr):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        call.__name__ = name
        call.__doc__ = attr.__doc__
        return call

    async def iter_jobs(self, **filters: Any) -> AsyncIterator[JobPublic]:
        async for job in _drain(self.sync.iter_jobs(**filters)):
            yield job

    async def follow(self, job_id: str, timeout: float = 60.0, **kwargs: Any) -> AsyncIterator[JobUpdate]:
        """``Client.follow``: the job's updates (pushed where the API has live events) until it ends."""
        async for update in _drain(self.sync.follow(job_id, timeout, **kwargs)):
            yield update

    async def iter_logs(self, job_id: str, **kwargs: Any) -> AsyncIterator[LogLine]:
        async for line in _drain(self.sync.iter_logs(job_id, **kwargs)):
            yield line


async def _drain(items: Iterator[T]) -> AsyncIterator[T]:
    """Each next() (a page read when one runs out) in a worker thread."""
    while True:
        item = await asyncio.to_thread(next, items, _END)
        if item is _END:
            return
        yield item  # type: ignore[misc]
