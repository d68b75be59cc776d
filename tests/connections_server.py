"""HTTP targets of the live-events code on 127.0.0.1, for unit tests of its handlers.

* API Gateway's @connections API of one stage: ``POST /<stage>/@connections/<id>`` records the
  message for an open connection (``open()``) and answers 410 GoneException for any other id,
  as API Gateway does; boto3's ``apigatewaymanagementapi`` client talks to it unchanged.
* An OIDC issuer: ``/issuer/.well-known/openid-configuration`` and its JWKS, from a
  ``LocalIssuer`` (infra/local/issuer.py) that mints the tokens.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from infra.local.issuer import LocalIssuer

STAGE = "live"


class ConnectionsServer:
    def __init__(self, state_dir: Path, audience: str = "jobq-tests") -> None:
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.open_ids: set[str] = set()
        self.posts = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/issuer/.well-known/openid-configuration":
                    self._send(200, server.issuer.openid_configuration())
                elif self.path == "/issuer/.well-known/jwks.json":
                    self._send(200, server.issuer.jwks())
                else:
                    self._send(404, {"message": "Not Found"})

            def do_POST(self) -> None:
                prefix = f"/{STAGE}/@connections/"
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.startswith(prefix):
                    self._send(404, {"message": "Not Found"})
                    return
                connection_id = unquote(self.path[len(prefix) :])  # boto3 quotes the id's '='
                with server._lock:
                    server.posts += 1
                    if connection_id not in server.open_ids:
                        self._send(410, {"message": None}, error_type="GoneException")
                        return
                    server.messages[connection_id].append(json.loads(body))
                self._send(200, None)

            def _send(self, status: int, body: Any, error_type: str | None = None) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.websocket_endpoint = f"ws://127.0.0.1:{port}/{STAGE}"
        self.issuer = LocalIssuer.load(state_dir, issuer=f"{self.base_url}/issuer", audience=audience)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def open(self, connection_id: str) -> None:
        with self._lock:
            self.open_ids.add(connection_id)

    def close(self, connection_id: str) -> None:
        with self._lock:
            self.open_ids.discard(connection_id)

    def received(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages[connection_id])

    def types(self, connection_id: str) -> list[str]:
        return [m.get("type", "") for m in self.received(connection_id)]

    def __enter__(self) -> ConnectionsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
