"""What the Lambda runtime gives a handler, emulated in-process: the context and the import.

All functions run in the local stack's process. A function's handler is imported by
its template ``Handler`` string ("module.attr"), as the Lambda runtime does; the
context carries the function's name, ARN, memory and a deadline from its ``Timeout``.
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from infra.local.provision import FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]

__all__ = ["Handler", "LambdaContext", "import_handler"]


class LambdaContext:
    """The attributes and method of the Python runtime's context object.

    ``memory_limit_in_mb`` is a string, as in the real runtime (it copies
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE), so code that works here works there.
    """

    def __init__(self, function: FunctionSpec, *, request_id: str | None = None, started: float | None = None) -> None:
        self.function_name = function.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function.arn
        self.memory_limit_in_mb = str(function.memory_size)
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = (started if started is not None else time.monotonic()) + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


def import_handler(handler: str) -> Handler:
    """Resolve a template ``Handler`` ("package.module.function") to the callable."""
    module_name, _, attr = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler!r} is not 'module.function'")
    module = importlib.import_module(module_name)
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{module_name} has no attribute {attr!r} (template Handler {handler!r})") from None
    if not callable(fn):
        raise TypeError(f"{handler} is not callable")
    return fn
