"""The local stack's own control surface, under ``/_local/`` on the API's port (never deployed).

What AWS has no API for, and tests need: moving time, firing a schedule now, running a rule now.

    GET  /_local/clock                         {"offsetSeconds", "now"}
    POST /_local/clock {"advanceSeconds": n}   move the clock forward (handlers and emulators)
    POST /_local/clock {"offsetSeconds": n}    set the offset (0: real time again)
    POST /_local/scheduler/fire {"name", "group"?, "scheduledTime"?, "deliveries"?}
                                               deliver a schedule now as if at scheduledTime
    POST /_local/rules/{logicalId}/run         invoke a rule's function now; its result
    GET  /_local/meter                         the meter's counters since start or reset (--meter)
    POST /_local/meter/reset                   start counting again from zero

Requests are served by whichever thread; blocking work runs in a worker thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from infra.local.stack import LocalStack

log = logging.getLogger("jobq.local.control")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
PREFIX = "/_local/"


class LocalControl:
    def __init__(self, app: ASGIApp, stack: LocalStack) -> None:
        self.app = app
        self.stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(body) if body else {}
            status, answer = await anyio.to_thread.run_sync(self._handle, scope["method"], scope["path"][len(PREFIX) :], payload)
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = 400, {"error": str(exc)}
        except Exception as exc:
            log.exception("control request %s failed", scope["path"])
            status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
        data = json.dumps(answer, default=str).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    def _handle(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        stack = self.stack
        if path == "clock" and method == "GET":
            return 200, {"offsetSeconds": stack.clock.offset_seconds, "now": stack.clock.now_ms()}
        if path == "clock" and method == "POST":
            if stack.scheduler is not None:
                stack.scheduler.run_due()  # schedules created just now are tracked from the time before the move
            if "advanceSeconds" in payload:
                stack.clock.advance(float(payload["advanceSeconds"]))
            elif "offsetSeconds" in payload:
                stack.clock.set_offset(float(payload["offsetSeconds"]))
            else:
                raise ValueError("send advanceSeconds or offsetSeconds")
            return 200, {"offsetSeconds": stack.clock.offset_seconds, "now": stack.clock.now_ms()}
        if path == "scheduler/fire" and method == "POST":
            if stack.scheduler is None:
                return 409, {"error": "the scheduler emulator is not running (--no-consumers)"}
            when = payload.get("scheduledTime")
            scheduled_ms = int(datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp() * 1000) if when else None
            return 200, stack.scheduler.fire(
                str(payload["name"]), group=payload.get("group"), scheduled_ms=scheduled_ms, deliveries=int(payload.get("deliveries", 1))
            )
        if path.startswith("rules/") and path.endswith("/run") and method == "POST":
            if stack.rules is None:
                return 409, {"error": "the rule runner is not running (--no-consumers)"}
            logical_id = path[len("rules/") : -len("/run")]
            try:
                return 200, stack.rules.run_now(logical_id)
            except KeyError as exc:
                return 404, {"error": str(exc)}
        if path in ("meter", "meter/reset"):
            if stack.meter is None:
                return 409, {"error": "the stack is not metering: start it with --meter FILE"}
            if path == "meter/reset" and method == "POST":
                stack.meter.reset()
                return 200, stack.meter.snapshot()
            if path == "meter" and method == "GET":
                return 200, stack.meter.snapshot()
        return 404, {"error": f"no local control at {method} {PREFIX}{path}"}
