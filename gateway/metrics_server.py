"""The Prometheus endpoint: ``gateway.metrics.REGISTRY`` served over HTTP on its own port.

It runs on prometheus_client's threaded WSGI server, apart from the gRPC port, so a scrape never
queues behind consumer calls and the port can be kept off the consumer-facing Service.
"""

from __future__ import annotations

from prometheus_client import start_http_server

from gateway.config import parse_listen
from gateway.metrics import REGISTRY


class MetricsServer:
    """A started metrics endpoint; ``close()`` stops it and joins its thread."""

    def __init__(self, listen: str) -> None:
        host, port = parse_listen(listen, "server.metrics_listen")
        self._httpd, self._thread = start_http_server(port, addr=host, registry=REGISTRY)
        self.port: int = self._httpd.server_address[1]

    def close(self, timeout: float = 5.0) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout)
