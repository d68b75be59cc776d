"""Delay from a job's write to its event at a WebSocket subscriber, and what one event costs.

    .venv/bin/python -m bench.event_latency                 # 20 jobs, 5 progress steps each
    .venv/bin/python -m bench.event_latency --jobs 50 --steps 10

Runs the local stack in this process (moto, the consumers, the DynamoDB stream emulation, the
WebSocket API emulation served by uvicorn) and a WebSocket client of the `websockets` package:

1. one connection subscribes to every job of the run (its own namespace, before the jobs
   exist), a second one (an admin) to the whole queue;
2. the jobs are created on video-processing, whose processor reports progress after each
   step; every event carries ``at`` (when its change was written, the writer's clock, which
   is this machine's), and the client notes when it arrived: the delay is the difference;
3. the RealtimeEventsFunction's handler is wrapped to add up, per stream record, the
   subscriber Queries it made, the PostToConnection calls, and what coalescing held back;
4. a burst: one job reporting progress as fast as moto takes the writes, to show how many
   of its progress events reach a subscriber (one per JOBQ_REALTIME_PROGRESS_INTERVAL_MS).

The stream poller reads each shard every 0.25 s, as Lambda polls a DynamoDB stream four
times a second, which bounds the local delay from below; moto's latency adds to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import threading
import time
import uuid
from typing import Any

import httpx

from infra.local.runtime import Handler, import_handler
from infra.local.stack import LocalStack

STREAM_HANDLER = "functions.realtime.stream.handler"


class Meter:
    """Wraps the RealtimeEventsFunction's handler and adds up what each batch did."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: dict[str, int] = {}
        self.invocations = 0

    def resolve(self, handler: str) -> Handler:
        real = import_handler(handler)
        if handler != STREAM_HANDLER:
            return real
        from functions.realtime.stream import process

        def metered(event: dict[str, Any], context: Any) -> dict[str, Any]:
            outcome = process(event, context)
            with self.lock:
                self.invocations += 1
                for key, value in outcome.__dict__.items():
                    if isinstance(value, int):
                        self.totals[key] = self.totals.get(key, 0) + value
            return outcome.as_log()

        return metered


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def watch(url: str, token: str, subscriptions: list[dict[str, Any]], sink: list[tuple[float, dict[str, Any]]], ready: asyncio.Event, done: asyncio.Event) -> None:
    import websockets

    async with websockets.connect(f"{url}?token={token}", max_size=256 * 1024) as connection:
        for request in subscriptions:
            await connection.send(json.dumps({"action": "subscribe", **request}))
        acknowledged = 0
        while acknowledged < len(subscriptions):
            message = json.loads(await connection.recv())
            if message.get("type") == "subscribed":
                acknowledged += 1
        ready.set()
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(connection.recv(), 0.2)
            except TimeoutError:
                continue
            sink.append((time.time(), json.loads(raw)))


def delays(events: list[tuple[float, dict[str, Any]]]) -> dict[str, list[float]]:
    from shared.clock import parse_iso

    out: dict[str, list[float]] = {}
    for received, event in events:
        if "at" in event and str(event.get("type", "")).startswith("job:"):
            out.setdefault(event["type"], []).append(received * 1000 - parse_iso(event["at"]))
    return out


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<16} none"
    return (
        f"  {label:<16} n={len(values):<5} median {statistics.median(values):6.0f} ms   p95 {percentile(values, 0.95):6.0f} ms"
        f"   max {max(values):6.0f} ms"
    )


async def run(stack: LocalStack, meter: Meter, jobs: int, steps: int, burst: int) -> None:
    assert stack.api_url and stack.websocket_url
    alice, admin = stack.mint_token("bench-alice"), stack.mint_token("bench-root", admin=True)
    run_id = uuid.uuid4().hex[:6]
    job_ids = [f"bench-{run_id}-{i}" for i in range(jobs)]
    own: list[tuple[float, dict[str, Any]]] = []
    queue: list[tuple[float, dict[str, Any]]] = []
    ready_own, ready_queue, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    watchers = [
        asyncio.create_task(watch(stack.websocket_url, alice, [{"jobId": j} for j in job_ids], own, ready_own, done)),
        asyncio.create_task(watch(stack.websocket_url, admin, [{"queue": "video-processing"}], queue, ready_queue, done)),
    ]
    await asyncio.wait_for(asyncio.gather(ready_own.wait(), ready_queue.wait()), 30)

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.api_url, headers={"Authorization": f"Bearer {alice}"}, timeout=30) as api:
        for job_id in job_ids:
            body = {
                "queue": "video-processing",
                "type": "transcode-video",
                "data": {"videoUrl": f"s3://bench/{job_id}", "formats": [f"f{n}" for n in range(steps)]},
                "options": {"jobId": job_id, "attempts": 1},
            }
            response = await api.post("/jobs", json=body)
            response.raise_for_status()
        deadline = time.monotonic() + 60 + jobs * steps * 0.5
        while time.monotonic() < deadline:
            finished = {e["jobId"] for _, e in own if e.get("type") in ("job:completed", "job:failed")}
            if len(finished) >= jobs:
                break
            await asyncio.sleep(0.1)
    elapsed = time.monotonic() - began
    await asyncio.sleep(0.5)
    with meter.lock:
        totals = dict(meter.totals)

    print(f"\n{jobs} jobs x {steps} progress steps on video-processing in {elapsed:.1f} s "
          f"(JOBQ_VIDEO_STEP_SECONDS={os.environ.get('JOBQ_VIDEO_STEP_SECONDS')}, "
          f"progress interval {os.environ.get('JOBQ_REALTIME_PROGRESS_INTERVAL_MS', '1000')} ms)")
    print("delay from the write to the event at the job's subscriber:")
    by_type = delays(own)
    every = [v for values in by_type.values() for v in values]
    print(summary("all events", every))
    for kind in ("job:waiting", "job:active", "job:progress", "job:completed"):
        print(summary(kind, by_type.get(kind, [])))
    queue_delays = [v for values in delays(queue).values() for v in values]
    print("the admin's queue subscription:")
    print(summary("all events", queue_delays))
    records = totals.get("records", 0)
    events = totals.get("events", 0)
    print("what the RealtimeEventsFunction did (per stream record of a job):")
    print(f"  invocations {meter.invocations}, records {records}, events {events}")
    if records:
        lookups = totals.get("lookups", 0)
        print(f"  subscriber Queries {lookups} ({lookups / records:.2f} a record; {totals.get('cached_lookups', 0)} answered from the 1 s cache)")
        print(f"  PostToConnection {totals.get('sent', 0)} ({totals.get('sent', 0) / max(1, events):.2f} an event, 2 subscribers)")
        print(f"  progress held back by coalescing {totals.get('held', 0)}; gone connections {totals.get('gone', 0)}")
        print(f"  over the queue subscription's budget (dropped) {totals.get('capped', 0)}; "
              f"queue:dropped notices at the admin {sum(1 for _, e in queue if e.get('type') == 'queue:dropped')}")

    if burst:
        burst_id = f"bench-{run_id}-burst"
        burst_events: list[tuple[float, dict[str, Any]]] = []
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(watch(stack.websocket_url, alice, [{"jobId": burst_id}], burst_events, ready, stop))
        await asyncio.wait_for(ready.wait(), 30)
        os.environ["JOBQ_VIDEO_STEP_SECONDS"] = "0"
        from shared.settings import get_settings

        get_settings.cache_clear()
        async with httpx.AsyncClient(base_url=stack.api_url, headers={"Authorization": f"Bearer {alice}"}, timeout=30) as api:
            body = {
                "queue": "video-processing",
                "type": "transcode-video",
                "data": {"videoUrl": "s3://bench/burst", "formats": [f"f{n}" for n in range(burst)]},
                "options": {"jobId": burst_id, "attempts": 1},
            }
            (await api.post("/jobs", json=body)).raise_for_status()
            started = time.monotonic()
            while time.monotonic() - started < 120 and not any(e.get("type") == "job:completed" for _, e in burst_events):
                await asyncio.sleep(0.1)
        stop.set()
        await task
        progress = [e for _, e in burst_events if e.get("type") == "job:progress"]
        completed = [e for _, e in burst_events if e.get("type") == "job:completed"]
        active = [e for _, e in burst_events if e.get("type") == "job:active"]
        span = (completed[0]["processingTime"] / 1000) if completed else float("nan")
        print(f"burst: one job, {burst} progress reports in {span:.2f} s ({burst / span:.0f}/s as fast as moto writes)")
        print(f"  progress events at the subscriber: {len(progress)}; then completed: {bool(completed)}; active: {len(active)}")

    done.set()
    await asyncio.gather(*watchers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="progress reports per job")
    # Just over the coalescing interval (1 s), so the delays measured are the pipeline's, not the hold.
    parser.add_argument("--step-seconds", type=float, default=1.05, help="time between a job's progress reports")
    parser.add_argument("--burst", type=int, default=200, help="progress reports of the burst job (0: no burst)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ["JOBQ_VIDEO_STEP_SECONDS"] = str(args.step_seconds)
    meter = Meter()
    with tempfile.TemporaryDirectory() as state, LocalStack(
        api_port=0,
        aws_port=0,
        websocket_port=0,
        state_dir=state,
        stack_name="jobq-bench-events",
        handler_resolver=meter.resolve,
        parameters={"LogLevel": "WARNING"},
    ) as stack:
        print(f"local stack up in {stack.timings['total']:.1f} s; WebSocket {stack.websocket_url}")
        asyncio.run(run(stack, meter, args.jobs, args.steps, args.burst))


if __name__ == "__main__":
    main()
