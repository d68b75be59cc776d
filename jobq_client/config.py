"""Where the CLI's API URL and token come from, first match wins:

1. the flags ``--url`` / ``--token``;
2. the environment: ``JOBQ_URL``, ``JOBQ_TOKEN``;
3. what ``jobq login`` saved (``$JOBQ_CONFIG``, else ``$XDG_CONFIG_HOME/jobq/config.json``, else
   ``~/.config/jobq/config.json``, readable by you only);
4. the local stack (``python3 dev.py local``): its URL from the state it wrote, and a token
   minted on the spot by its local issuer (``infra/local/token.py``) for ``$JOBQ_LOCAL_USER``
   (default ``local-admin``, an admin). Only from a checkout of the repo, where the issuer's key is.

``watch`` and ``add --wait`` follow a job over the WebSocket the API names (``GET
/dashboard/config.json``); ``JOBQ_WEBSOCKET_URL`` names another, or ``""`` for none (polling).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_URL = "http://127.0.0.1:8000"
LOCAL_USER = "local-admin"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    source: str  # where they came from, for `jobq login --show` and error messages


def config_path() -> Path:
    if os.environ.get("JOBQ_CONFIG"):
        return Path(os.environ["JOBQ_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "jobq" / "config.json"


def saved() -> dict[str, Any]:
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(url: str, token: str | None) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a token: readable by its owner only
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"url": url, "token": token}, out, indent=2)
    return path


def resolve(url: str | None = None, token: str | None = None) -> Settings:
    if url or token:
        stored = saved()
        return Settings(url or os.environ.get("JOBQ_URL") or stored.get("url") or _local_url(), token or os.environ.get("JOBQ_TOKEN") or stored.get("token"), "flags")
    if os.environ.get("JOBQ_URL") or os.environ.get("JOBQ_TOKEN"):
        return Settings(os.environ.get("JOBQ_URL") or _local_url(), os.environ.get("JOBQ_TOKEN") or _local_token(), "environment")
    stored = saved()
    if stored.get("url"):
        return Settings(str(stored["url"]), stored.get("token"), str(config_path()))
    return Settings(_local_url(), _local_token(), "local stack")


def _local_url() -> str:
    state = _local_state()
    return str(state.get("apiUrl") or LOCAL_URL)


def _checkout() -> None:
    """From an editable install (dev.py) the CLI runs anywhere: make the checkout's infra package importable."""
    root = Path(__file__).resolve().parents[1]
    if (root / "infra" / "local" / "token.py").is_file() and str(root) not in sys.path:
        sys.path.append(str(root))


def _local_state() -> dict[str, Any]:
    _checkout()
    try:
        from infra.local.issuer import read_stack_state
    except ImportError:
        return {}
    return read_stack_state(os.environ.get("JOBQ_LOCAL_STATE_DIR")) or {}


def _local_token() -> str | None:
    """A token for the local stack, or None outside a checkout (then the API answers 401 and says so)."""
    _checkout()
    try:
        from infra.local.token import mint_token
    except ImportError:
        return None
    user = os.environ.get("JOBQ_LOCAL_USER", LOCAL_USER)
    try:
        return mint_token(user, admin=os.environ.get("JOBQ_LOCAL_ADMIN", "1") != "0", state_dir=os.environ.get("JOBQ_LOCAL_STATE_DIR"))
    except (OSError, ValueError):
        return None
