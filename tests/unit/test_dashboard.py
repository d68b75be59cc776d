"""The dashboard's files through the API's Lambda entry, and the routes that expose them without a token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.main import handler
from infra.local.cfn import load_template
from shared.settings import get_settings
from tests.unit.api_events import http_event
from tests.unit.conftest import FakeLambdaContext

ROOT = Path(__file__).resolve().parents[2]


def get(path: str) -> dict:
    return handler(http_event("GET", path), FakeLambdaContext())


def test_the_dashboard_page_and_its_assets_are_served_without_a_token(aws_env: None) -> None:
    page = get("/dashboard")
    script = get("/dashboard/app.js")
    style = get("/dashboard/app.css")

    assert page["statusCode"] == 200 and page["headers"]["content-type"].startswith("text/html")
    assert 'src="dashboard/app.js"' in page["body"]  # relative: works under a named stage too
    assert script["statusCode"] == 200 and script["headers"]["content-type"].startswith("text/javascript")
    assert style["statusCode"] == 200 and "text/css" in style["headers"]["content-type"]
    csp = page["headers"]["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_only_the_dashboards_own_files_are_served(aws_env: None) -> None:
    for path in ("/dashboard/settings.py", "/dashboard/..%2Fmain.py", "/dashboard/routes", "/dashboard/index.htm"):
        assert get(path)["statusCode"] == 404, path


def test_a_read_only_deployment_tells_the_page(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads(get("/dashboard/config.json")["body"])["readOnly"] is False
    monkeypatch.setenv("JOBQ_DASHBOARD_READ_ONLY", "true")
    get_settings.cache_clear()
    try:
        assert json.loads(get("/dashboard/config.json")["body"])["readOnly"] is True
    finally:
        get_settings.cache_clear()


def test_clients_are_told_where_the_live_events_are_and_the_page_may_open_that_socket_only(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert json.loads(get("/dashboard/config.json")["body"])["websocketUrl"] is None  # no WebSocket: the page and the CLI poll
    monkeypatch.setenv("JOBQ_WEBSOCKET_ENDPOINT", "wss://abc123.execute-api.eu-west-1.amazonaws.com/live")
    get_settings.cache_clear()
    try:
        config = json.loads(get("/dashboard/config.json")["body"])
        csp = get("/dashboard")["headers"]["content-security-policy"]
    finally:
        get_settings.cache_clear()
    assert config["websocketUrl"] == "wss://abc123.execute-api.eu-west-1.amazonaws.com/live"
    assert "connect-src 'self' wss://abc123.execute-api.eu-west-1.amazonaws.com;" in csp


def test_api_gateway_serves_the_dashboard_routes_without_the_jwt_authorizer_and_nothing_else() -> None:
    events = load_template(ROOT / "template.yaml")["Resources"]["ApiFunction"]["Properties"]["Events"]
    public = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()
              if e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"}

    assert public == {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/dashboard"), ("GET", "/dashboard/{proxy+}")}


def test_the_client_imports_neither_boto3_nor_the_web_stack() -> None:
    code = (
        "import sys, jobq_client, jobq_client.cli; "
        "print(','.join(m for m in ('boto3', 'botocore', 'fastapi', 'starlette', 'mangum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
