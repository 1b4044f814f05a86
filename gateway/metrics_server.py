"""The metrics port: Prometheus ``/metrics`` (``gateway.metrics.REGISTRY``) and ``/readyz``.

It runs on a threaded WSGI server of its own, apart from the gRPC port, so a scrape never queues
behind consumer calls and the port can be kept off the consumer-facing Service.

``/readyz`` says what gRPC health cannot, why the consumer service is NOT_SERVING: 200
``{"ready": true, "reasons": []}``, or 503 with each reason (``{"reason":
"upstream_key_file_unreadable", "profile": "default"}``, ``{"reason": "draining"}``). It names
profiles and reasons only, never a path, key or consumer. Everything else is ``/metrics``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from gateway.config import parse_listen
from gateway.metrics import REGISTRY

#: Why the gateway cannot serve now: each a ``{"reason": ..., ...}`` mapping; empty = ready.
Readiness = Callable[[], list[dict[str, str]]]
READY_PATH = "/readyz"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return None  # a scrape every few seconds is not worth a log line


def _app(readiness: Readiness) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != READY_PATH:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        reasons = readiness()
        body = json.dumps({"ready": not reasons, "reasons": reasons}).encode()
        start_response("200 OK" if not reasons else "503 Service Unavailable",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]

    return app


class MetricsServer:
    """A started metrics endpoint; ``close()`` stops it and joins its thread."""

    def __init__(self, listen: str, readiness: Readiness = list) -> None:
        host, port = parse_listen(listen, "server.metrics_listen")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = type("_Server", (_Server,), {"address_family": family})
        self._httpd = make_server(host, port, _app(readiness), server_class=server,
                                  handler_class=_Quiet)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="metrics-server")
        self._thread.start()
        self.port: int = self._httpd.server_address[1]

    def close(self, timeout: float = 5.0) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout)
