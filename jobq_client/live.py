"""One job's live events over the stack's WebSocket API (README: Live events), for ``Client.follow``.

The socket is opened with the client's token in the ``Authorization`` header (never in the URL,
which access logs keep), subscribes to the job and hands over its events as they come:
``{"type": "job:progress", "jobId", "progress", "message", "status", ...}`` and so on. Anything that
keeps the push from working (no WebSocket URL, refused, closed, an error answer) is
``LiveUnavailable``: the caller polls instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

ANSWERS = frozenset({"subscribed", "error"})


class LiveUnavailable(Exception):
    """The push cannot be used (say why); follow the job by polling."""


class JobEvents:
    """A WebSocket subscribed to one job (or, ``flow``, to every job of the flow under it): ``next()`` is its
    next event (a flow's: its jobs' ``job:*`` and its ``flow:completed``), or None when none came in time."""

    def __init__(
        self, websocket_url: str, token: str | None, job_id: str, user_id: str | None, *, open_timeout: float = 5.0, flow: bool = False
    ) -> None:
        self.websocket_url = websocket_url
        self.token = token
        self.job_id = job_id
        self.user_id = user_id
        self.open_timeout = open_timeout
        self.flow = flow
        self._socket: ClientConnection | None = None

    def __enter__(self) -> JobEvents:
        if not self.websocket_url.startswith(("ws://", "wss://")):
            raise LiveUnavailable("the API names no WebSocket for live events")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            # Entered as its context manager (what websockets asks for); closed by close().
            self._socket = connect(self.websocket_url, additional_headers=headers, open_timeout=self.open_timeout, close_timeout=1).__enter__()
        except (OSError, TimeoutError, WebSocketException) as err:
            raise LiveUnavailable(f"cannot open {self.websocket_url}: {err or type(err).__name__}") from None
        request: dict[str, Any] = {"action": "subscribe", "flowId" if self.flow else "jobId": self.job_id}
        if self.user_id:
            request["userId"] = self.user_id
        try:
            self._socket.send(json.dumps(request))
            deadline = time.monotonic() + self.open_timeout
            while True:
                answer = self._receive(max(0.01, deadline - time.monotonic()))
                if answer is None:
                    raise LiveUnavailable("no answer to the subscription")
                if answer.get("type") in ANSWERS:
                    break
        except LiveUnavailable:
            self.close()
            raise
        if answer["type"] == "error":
            self.close()
            raise LiveUnavailable(f"subscription refused: {answer.get('message', answer.get('code'))}")
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The job's next event; None when nothing came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                return None
            kind = str(message.get("type", ""))
            if self.flow and kind.startswith(("job:", "flow:")):
                return message
            if kind.startswith("job:") and message.get("jobId") == self.job_id:
                return message

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        if self._socket is None:
            raise LiveUnavailable("the WebSocket is closed")
        try:
            raw = self._socket.recv(timeout=timeout)
        except TimeoutError:
            return None
        except (OSError, WebSocketException) as err:
            raise LiveUnavailable(f"the WebSocket closed: {err or type(err).__name__}") from None
        try:
            message = json.loads(raw)
        except ValueError:
            return {}
        return message if isinstance(message, dict) else {}
