"""The local stack: moto + the template's resources + the consumers + the API, in one process.

    with LocalStack(api_port=0) as stack:
        token = stack.mint_token("alice")
        httpx.get(f"{stack.api_url}/jobs", headers={"Authorization": f"Bearer {token}"})

Start order, and why:

1. bind the API socket first, so the port (and with it the issuer URL) is known even
   for ``api_port=0``;
2. start moto in server mode on 127.0.0.1 and point this process at it
   (AWS_ENDPOINT_URL, dummy credentials, region), before any handler or the app is
   imported, since they create clients at import or first use;
3. provision template.yaml (and each queue's infra/queue.yaml) into moto, passing the
   local issuer as ``JwtIssuer`` / ``JwtAudience``;
4. apply the functions' environment (Globals + their own) to the process;
5. import each consumer by its Handler string and start one emulated event source
   mapping per queue, and one DynamoDB stream poller per ``DynamoDB`` event (the
   EventsFunction); serve the Lambda API calls that switch a mapping on and off
   (``AWS_ENDPOINT_URL_LAMBDA``, so pausing a queue is the same call as on AWS);
6. serve ``api.app.create_app()`` behind the API Gateway emulation with uvicorn.

``stop()`` undoes it in reverse and restores the environment variables it changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from infra.local.auth import ApiGatewayEmulator, api_for_function
from infra.local.control import LocalControl
from infra.local.esm import EventSourceMapping, MappingRegistry
from infra.local.eventbridge import LocalClock, RuleRunner, SchedulerEmulator
from infra.local.issuer import AUDIENCE, DEFAULT_STATE_DIR, REPO_ROOT, STATE_FILE, LocalIssuer, issuer_url
from infra.local.lambda_api import LambdaApi
from infra.local.meter import Meter
from infra.local.provision import FunctionSpec, ProvisionedStack, Provisioner
from infra.local.runtime import Handler, LambdaContext, import_handler
from infra.local.streams import StreamEventSourceMapping, stream_mappings

log = logging.getLogger("jobq.local")

DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_STACK_NAME = "jobq-local"
DEFAULT_REGION = "us-east-1"

__all__ = ["DEFAULT_STACK_NAME", "DEFAULT_TEMPLATE", "LocalStack", "QueueInfo", "merge_function_environments"]


@dataclass(frozen=True)
class QueueInfo:
    """One queue as the stack publishes it (its SSM parameter)."""

    name: str
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str
    parameter_name: str
    config: dict[str, Any]  # the whole parameter JSON (batchSize, maxConcurrency, defaults ...)


def merge_function_environments(functions: list[FunctionSpec]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """One process environment for every function, and the variables functions disagree on.

    A non-empty value wins over an empty one (only the report consumer has
    JOBQ_REPORTS_BUCKET, only the email consumer JOBQ_EMAIL_SENDER); what still differs
    (POWERTOOLS_SERVICE_NAME) is returned per function.
    """
    merged: dict[str, str] = {}
    conflicts: dict[str, dict[str, str]] = {}
    for fn in functions:
        for key, value in fn.environment.items():
            if key not in merged or (merged[key] == "" and value != ""):
                merged[key] = value
            elif value not in ("", merged[key]):
                conflicts.setdefault(key, {})[fn.name] = value
    return merged, conflicts


class _Environment:
    """os.environ changes that can be undone (in-process tests must not leak them)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}
        self.applied: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        if key not in self._saved:
            self._saved[key] = os.environ.get(key)
        os.environ[key] = value
        self.applied[key] = value

    @contextlib.contextmanager
    def temporarily(self, values: Mapping[str, str]) -> Iterator[None]:
        before = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()
        self.applied.clear()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def _port_is_free(port: int) -> bool:
    try:
        _bind(port).close()
    except OSError:
        return False
    return True


def _forget_cached_clients() -> None:
    # In-process runs (tests): boto3 clients and settings cached by an earlier test would
    # keep pointing elsewhere. Only modules already imported are touched.
    for name in ("shared.adapters.clients", "shared.adapters.queues"):
        module = sys.modules.get(name)
        if module is not None and callable(getattr(module, "reset", None)):
            module.reset()
    settings = sys.modules.get("shared.settings")
    if settings is not None and hasattr(getattr(settings, "get_settings", None), "cache_clear"):
        settings.get_settings.cache_clear()


class LocalStack:
    """Everything jobq runs on AWS, on 127.0.0.1. A context manager; ``start()`` / ``stop()``.

    ``api_port`` / ``aws_port``: 0 picks a free port; ``api_port=None`` serves no API.
    ``app_factory``: the ASGI app to serve (default ``api.app.create_app``).
    ``handler_resolver``: turns a template Handler string into the callable (default: import it).
    """

    def __init__(
        self,
        *,
        api_port: int | None = 0,
        aws_port: int = 0,
        stack_name: str = DEFAULT_STACK_NAME,
        state_dir: str | Path | None = None,
        template: str | Path = DEFAULT_TEMPLATE,
        parameters: Mapping[str, str] | None = None,
        region: str = DEFAULT_REGION,
        consumers: bool = True,
        app_factory: Callable[[], Any] | None = None,
        handler_resolver: Callable[[str], Handler] | None = None,
        receive_wait_seconds: int = 1,
        access_log: bool = False,
        rule_interval: float | None = None,
        meter: str | Path | None = None,
        websocket_port: int | None = 0,
    ) -> None:
        self.api_port = api_port
        # The WebSocket API (infra/local/websocket.py): 0 picks a free port, None serves none.
        self.websocket_port = websocket_port
        self.aws_port = aws_port
        self.stack_name = stack_name
        self.state_dir = Path(state_dir) if state_dir else DEFAULT_STATE_DIR
        self.template = Path(template)
        self.parameters = dict(parameters or {})
        self.region = region
        self.consumers = consumers
        self.app_factory = app_factory
        self.handler_resolver = handler_resolver or import_handler
        self.receive_wait_seconds = receive_wait_seconds
        self.access_log = access_log
        # EventBridge: rules run every ``rule_interval`` seconds instead of their rate (tests).
        self.rule_interval = rule_interval
        self.clock = LocalClock()
        # Metering (infra/local/meter.py): off unless asked for; its totals go to this file at stop().
        meter = meter or os.environ.get("JOBQ_LOCAL_METER") or None
        self.meter: Meter | None = Meter(path=Path(meter)) if meter else None
        if self.meter is not None:
            self.handler_resolver = self._metered_resolver(self.handler_resolver)
        self.scheduler: SchedulerEmulator | None = None
        self.rules: RuleRunner | None = None

        self.api_url: str | None = None
        self.websocket_url: str | None = None  # ws://127.0.0.1:<port>/<stage>
        self.websocket: Any = None  # the WebSocketApiEmulator
        self._ws_socket: socket.socket | None = None
        self._ws_server: Any = None
        self._ws_thread: threading.Thread | None = None
        self.aws_endpoint: str = ""
        self.issuer: LocalIssuer | None = None
        self.provisioned: ProvisionedStack | None = None
        self.queues: dict[str, QueueInfo] = {}
        self.mappings = MappingRegistry()
        self.streams: list[StreamEventSourceMapping] = []
        self.lambda_api: LambdaApi | None = None
        self.timings: dict[str, float] = {}
        self._env = _Environment()
        self._moto: Any = None
        self._api_socket: socket.socket | None = None
        self._uvicorn: Any = None
        self._uvicorn_thread: threading.Thread | None = None
        self._started = False

    # -- public API --

    @property
    def env(self) -> dict[str, str]:
        """The environment variables the stack set in this process (for --print-env)."""
        return dict(self._env.applied)

    def mint_token(self, user_id: str, admin: bool = False, **kwargs: Any) -> str:
        if self.issuer is None:
            raise RuntimeError("start the stack first")
        return self.issuer.mint(user_id, admin=admin, **kwargs)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _metered_resolver(self, resolve: Callable[[str], Handler]) -> Callable[[str], Handler]:
        meter = self.meter
        assert meter is not None
        return lambda handler: meter.wrap_handler(handler, resolve(handler))

    def start(self) -> LocalStack:
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        began = time.monotonic()
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))  # handlers and the app import from the repo root
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop pollers, the API and moto; restore the environment. Safe to call twice."""
        for emulator in (self.rules, self.scheduler):
            if emulator is not None:
                emulator.stop()
        self.rules = self.scheduler = None
        self.clock.uninstall()
        self.mappings.stop(timeout=3.0)
        for stream in self.streams:
            stream.request_stop()
        for stream in self.streams:
            stream.join(2.0)
        self.streams = []
        if self.lambda_api is not None:
            self.lambda_api.stop()
            self.lambda_api = None
        if self._ws_server is not None:
            self._ws_server.should_exit = True
        if self._ws_thread is not None:
            self._ws_thread.join(5.0)
            self._ws_thread = None
        self._ws_server = self.websocket = None
        if self._ws_socket is not None:
            self._ws_socket.close()
            self._ws_socket = None
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._uvicorn_thread is not None:
            self._uvicorn_thread.join(5.0)
            self._uvicorn_thread = None
        self._uvicorn = None
        if self._api_socket is not None:
            self._api_socket.close()
            self._api_socket = None
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
                server = getattr(self._moto, "_server", None)
                if server is not None:
                    server.server_close()  # ThreadedMotoServer.stop() leaves the socket open
            self._moto = None
        if self.meter is not None:
            from infra.local import meter

            meter.uninstall(self.meter)
            with contextlib.suppress(OSError):
                self.meter.dump()
        self._env.restore()
        _forget_cached_clients()
        self._remove_state()
        self._started = False

    # -- start-up steps --

    def _step(self, name: str, began: float) -> None:
        self.timings[name] = time.monotonic() - began

    def _start(self) -> None:
        t = time.monotonic()
        if self.api_port is not None:
            self._api_socket = _bind(self.api_port)
            port = self._api_socket.getsockname()[1]
            self.api_url = f"http://127.0.0.1:{port}"
            self.issuer = LocalIssuer.load(self.state_dir, issuer=issuer_url(port), audience=AUDIENCE)
        else:
            self.issuer = LocalIssuer.load(self.state_dir, audience=AUDIENCE)
        websocket_base = None
        if self.websocket_port is not None:
            self._ws_socket = _bind(self.websocket_port)
            websocket_base = f"ws://127.0.0.1:{self._ws_socket.getsockname()[1]}"
        self._step("issuer", t)

        t = time.monotonic()
        self._start_moto()
        lambda_api = self.lambda_api = LambdaApi(self.mappings).start()
        self._env.set("AWS_ENDPOINT_URL_LAMBDA", lambda_api.url)
        self._step("moto", t)

        t = time.monotonic()
        provisioner = Provisioner(endpoint_url=self.aws_endpoint, region=self.region, websocket_endpoint=websocket_base)
        parameters = {
            "JwtIssuer": self.issuer.issuer,
            "JwtAudience": self.issuer.audience,
            # The stand-in functions the local Lambda API serves are the ones a Lambda target may name.
            "LambdaTargetArns": ",".join(lambda_api.functions.arns(self.region)),
            **self.parameters,
        }
        self.provisioned = provisioner.provision(self.template, self.stack_name, parameters)
        self._step("provision", t)
        if self.meter is not None:
            self._register_tables(self.provisioned)

        merged, conflicts = merge_function_environments(self.provisioned.all_functions())
        for key, values in conflicts.items():
            if key != "POWERTOOLS_SERVICE_NAME":
                log.warning("functions disagree on %s (%s); the process uses %r", key, values, merged[key])
        for key, value in merged.items():
            self._env.set(key, value)
        _forget_cached_clients()
        self._verify_email_senders(provisioner)
        self.queues = self._read_queues()

        t = time.monotonic()
        if self.consumers:
            self._start_mappings()
            self._start_eventbridge()
        self._step("consumers", t)

        t = time.monotonic()
        if self._api_socket is not None:
            self._start_api()
        if self._ws_socket is not None:
            self._start_websocket()
        self._step("api", t)
        self._write_state()

    def _start_moto(self) -> None:
        # Quiet werkzeug's per-request log lines before the server starts.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        from moto.server import ThreadedMotoServer

        from infra.local import moto_fixes

        moto_fixes.apply()  # isolated, cheap TransactWriteItems; stream numbers without races
        if self.meter is not None:
            from infra.local import meter

            meter.install(self.meter)
        port = self.aws_port
        if port and not _port_is_free(port):
            # ThreadedMotoServer.start() would wait forever for a server that failed to bind.
            raise OSError(f"port {port} on 127.0.0.1 is in use (moto)")
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        host, bound = self._moto.get_host_and_port()
        self.aws_endpoint = f"http://{host}:{bound}"
        for key, value in {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "jobq",
            "JOBQ_ALLOW_LOOPBACK_HTTP_TARGETS": "true",
            # Listing cursors are signed; on AWS with the stack's secret, here with a key of this run only.
            "JOBQ_CURSOR_KEY": secrets.token_hex(32),
        }.items():
            self._env.set(key, value)

    def _register_tables(self, stack: ProvisionedStack) -> None:
        """Key schemas and projections for the meter, as the template defines them (nested stacks too)."""
        assert self.meter is not None
        for record in stack.resources.values():
            if record.type == "AWS::DynamoDB::Table" and record.properties.get("KeySchema"):
                self.meter.register_table(str(record.ref), record.logical_id, record.properties)
        for nested in stack.nested.values():
            self._register_tables(nested)

    def _verify_email_senders(self, provisioner: Provisioner) -> None:
        # The email example processor sends through SES; moto refuses unverified senders.
        senders = {fn.environment.get("JOBQ_EMAIL_SENDER", "") for fn in self.provisioned_functions()}
        for sender in sorted(s for s in senders if s):
            provisioner.client("ses").verify_email_identity(EmailAddress=sender)

    def provisioned_functions(self) -> list[FunctionSpec]:
        return self.provisioned.all_functions() if self.provisioned else []

    def _read_queues(self) -> dict[str, QueueInfo]:
        """The queues as the API finds them: the JSON parameters under JOBQ_QUEUES_PARAMETER_PATH."""
        assert self.provisioned is not None
        prefix = os.environ.get("JOBQ_QUEUES_PARAMETER_PATH", "")
        queues: dict[str, QueueInfo] = {}
        for name, value in self.provisioned.all_ssm_parameters().items():
            if not name.startswith(prefix):
                continue
            try:
                config = json.loads(value)
            except ValueError:
                continue
            if not isinstance(config, dict) or "queueUrl" not in config:
                continue
            queues[config["name"]] = QueueInfo(
                name=config["name"],
                url=config["queueUrl"],
                arn=config["queueArn"],
                dlq_url=config.get("dlqUrl", ""),
                dlq_arn=config.get("dlqArn", ""),
                parameter_name=name,
                config=config,
            )
        return queues

    def _start_mappings(self) -> None:
        assert self.provisioned is not None
        by_arn = {q.arn: q for q in self.queues.values()}
        handlers: dict[str, Handler] = {}
        for spec in self.provisioned.all_mappings():
            fn = spec.function
            if fn.handler not in handlers:
                # Loggers read POWERTOOLS_SERVICE_NAME when the module creates them.
                with self._env.temporarily({"POWERTOOLS_SERVICE_NAME": fn.environment.get("POWERTOOLS_SERVICE_NAME", "")}):
                    handlers[fn.handler] = self.handler_resolver(fn.handler)
            queue = by_arn.get(spec.queue_arn)
            queue_name = spec.queue_arn.rsplit(":", 1)[-1]
            queue_url = queue.url if queue else f"{self.aws_endpoint}/{spec.queue_arn.split(':')[4]}/{queue_name}"
            self.mappings.add(
                EventSourceMapping(
                    spec,
                    handlers[fn.handler],
                    queue_url=queue_url,
                    endpoint_url=self.aws_endpoint,
                    region=self.region,
                    name=queue.name if queue else queue_name,
                    wait_seconds=self.receive_wait_seconds,
                )
            )
        self.mappings.start()
        for stream_spec in stream_mappings(self.provisioned.all_functions()):
            fn = stream_spec.function
            if fn.handler not in handlers:
                with self._env.temporarily({"POWERTOOLS_SERVICE_NAME": fn.environment.get("POWERTOOLS_SERVICE_NAME", "")}):
                    handlers[fn.handler] = self.handler_resolver(fn.handler)
            stream = StreamEventSourceMapping(stream_spec, handlers[fn.handler], endpoint_url=self.aws_endpoint, region=self.region)
            self.streams.append(stream)
            stream.start()

    def _start_eventbridge(self) -> None:
        """EventBridge Scheduler firing the stack's schedule groups, and the functions' Schedule rules."""
        assert self.provisioned is not None
        self.clock.install()
        functions = {fn.arn: fn for fn in self.provisioned.all_functions()}
        handlers: dict[str, Handler] = {}
        for fn in functions.values():  # imported here, in the main thread, as _start_mappings does
            scheduled = any(e.get("Type") in ("Schedule", "ScheduleV2") for e in fn.events.values())
            if (scheduled or fn.arn in os.environ.values()) and fn.handler not in handlers:
                with self._env.temporarily({"POWERTOOLS_SERVICE_NAME": fn.environment.get("POWERTOOLS_SERVICE_NAME", "")}):
                    handlers[fn.handler] = self.handler_resolver(fn.handler)

        def resolve(fn: FunctionSpec) -> Handler:
            if fn.handler not in handlers:
                handlers[fn.handler] = self.handler_resolver(fn.handler)
            return handlers[fn.handler]

        def invoke(arn: str, event: dict[str, Any]) -> Any:
            fn = functions.get(arn.split(":$")[0])
            if fn is None:
                raise LookupError(f"no function {arn} in the stack")
            return resolve(fn)(event, LambdaContext(fn))

        self.rules = RuleRunner(
            list(functions.values()),
            resolve,
            region=self.region,
            account_id=self.provisioned.account_id,
            clock=self.clock.now_ms,
            interval=self.rule_interval,
        ).start()
        groups = self.provisioned.all_schedule_groups()
        if groups:
            def on_failure(arn: str) -> str | None:
                fn = functions.get(arn.split(":$")[0])
                return fn.on_failure_destination if fn else None

            self.scheduler = SchedulerEmulator(
                endpoint_url=self.aws_endpoint,
                region=self.region,
                groups=groups,
                invoke=invoke,
                clock=self.clock.now_ms,
                on_failure=on_failure,
            ).start()

    def _start_api(self) -> None:
        assert self.provisioned is not None and self.issuer is not None and self._api_socket is not None
        import uvicorn

        api = api_for_function(self.provisioned.all_http_apis())
        service = api.routes[0].function.environment.get("POWERTOOLS_SERVICE_NAME", "") if api.routes else ""
        with self._env.temporarily({"POWERTOOLS_SERVICE_NAME": service}):
            factory = self.app_factory or _default_app_factory
            app = factory()
        if self.meter is not None:
            app = _MeteredApi(app, self.meter)
        if service:
            self._env.set("POWERTOOLS_SERVICE_NAME", service)
        wrapped = LocalControl(ApiGatewayEmulator(app, api=api, issuer=self.issuer, account_id=self.provisioned.account_id), self)
        config = uvicorn.Config(
            wrapped,
            log_config=None,  # keep the process's logging setup
            access_log=self.access_log,
            lifespan="off",  # as behind Mangum (lifespan="off"): start-up work is lazy
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        self._uvicorn = server
        self._uvicorn_thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._api_socket]}, name="uvicorn", daemon=True
        )
        self._uvicorn_thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._uvicorn_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def _start_websocket(self) -> None:
        """The template's WebSocket API on its own port: routes to handlers, and @connections."""
        assert self.provisioned is not None and self._ws_socket is not None
        import uvicorn

        from infra.local.websocket import TokenRedaction, WebSocketApiEmulator, websocket_apis

        apis = websocket_apis(self.provisioned)
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, TokenRedaction) for f in uvicorn_log.filters):
            uvicorn_log.addFilter(TokenRedaction())
        if not apis:
            return
        if len(apis) > 1:
            log.warning("%d WebSocket APIs in the template; serving %s only", len(apis), apis[0].logical_id)
        api = apis[0]
        handlers: dict[str, Handler] = {}
        for route in api.routes.values():  # imported here, in the main thread, as the other functions are
            fn = route.function
            if fn.handler not in handlers:
                with self._env.temporarily({"POWERTOOLS_SERVICE_NAME": fn.environment.get("POWERTOOLS_SERVICE_NAME", "")}):
                    handlers[fn.handler] = self.handler_resolver(fn.handler)
        self.websocket = WebSocketApiEmulator(api, lambda fn: handlers[fn.handler], account_id=self.provisioned.account_id)
        port = self._ws_socket.getsockname()[1]
        self.websocket_url = f"ws://127.0.0.1:{port}" + ("" if api.stage == "$default" else f"/{api.stage}")
        config = uvicorn.Config(
            self.websocket,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="auto",  # the websockets package (requirements-dev.txt)
            ws_max_size=128 * 1024,
            ws_ping_interval=None,  # API Gateway does not ping; clients keep the connection alive
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._ws_server = server
        self._ws_thread = threading.Thread(target=server.run, kwargs={"sockets": [self._ws_socket]}, name="websocket-api", daemon=True)
        self._ws_thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._ws_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the WebSocket API did not start")
            time.sleep(0.01)

    def _write_state(self) -> None:
        assert self.issuer is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "stackName": self.stack_name,
            "apiUrl": self.api_url,
            "websocketUrl": self.websocket_url,
            "awsEndpoint": self.aws_endpoint,
            "issuer": self.issuer.issuer,
            "audience": self.issuer.audience,
            "pid": os.getpid(),
            "queues": {name: q.url for name, q in self.queues.items()},
        }
        tmp = self.state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_dir / STATE_FILE)

    def _remove_state(self) -> None:
        # A stopped stack's issuer must not be picked up by `python -m infra.local.token`.
        path = self.state_dir / STATE_FILE
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()


class _MeteredApi:
    """Counts what reaches the ApiFunction: one HTTP API request and one Lambda invocation each."""

    def __init__(self, app: Any, meter: Meter) -> None:
        self.app = app
        self.meter = meter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            self.meter.count_api_request()
            self.meter.count_invocation("ApiFunction")
        await self.app(scope, receive, send)


def _default_app_factory() -> Any:
    from api.app import create_app  # the engineer's FastAPI app (api/app.py)

    return create_app()
