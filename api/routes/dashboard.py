"""The dashboard: static files from api/dashboard/, served at /dashboard without a token.

The page itself holds no data: every call it makes goes to the same API with the user's
token, so what it shows is what the API lets that token see. API Gateway serves these two
routes without the JWT authorizer (template.yaml: Dashboard, DashboardAssets); only the
files listed here are served, so no path reaches anything else in the package.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse

from api.deps import SettingsDep
from shared.settings import Settings

ASSETS = Path(__file__).resolve().parents[1] / "dashboard"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# The page may load only itself and call only its own origin (and the live events' WebSocket);
# no inline script, no framing.
def security_headers(websocket_endpoint: str) -> dict[str, str]:
    live = urlsplit(websocket_endpoint)
    socket = f" {live.scheme}://{live.netloc}" if live.scheme in ("ws", "wss") and live.netloc else ""
    return {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{socket}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)


def _read(name: str) -> bytes:
    return (ASSETS / name).read_bytes()  # a few KB from the package; read per request so edits show without a restart


def _asset(name: str, settings: Settings) -> Response:
    if name not in FILES:
        raise HTTPException(status_code=404, detail=f"no dashboard file '{name}'")
    # The HTML names no versioned assets: short caching so a deploy shows up within a minute.
    headers = {**security_headers(settings.websocket_endpoint), "Cache-Control": "public, max-age=60"}
    return Response(_read(name), media_type=FILES[name], headers=headers)


@router.get("")
def dashboard(settings: SettingsDep) -> Response:
    return _asset("index.html", settings)


@router.get("/config.json")
def dashboard_config(settings: SettingsDep) -> JSONResponse:
    """What the deployment tells its clients before they sign in: whether the dashboard is read-only
    (JOBQ_DASHBOARD_READ_ONLY hides every change), and where the live events' WebSocket is (``websocketUrl``,
    the stack's WebSocketUrl; empty when there is none), which the page and the CLI follow jobs by."""
    body = {"readOnly": settings.dashboard_read_only, "websocketUrl": settings.websocket_endpoint or None}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/{name}")
def dashboard_file(name: str, settings: SettingsDep) -> Response:
    return _asset(name, settings)
