"""The HTTP/JSON face: the upstream's OpenAI-compatible paths, over the call pipeline."""

from __future__ import annotations

from gateway.rest.app import ROUTES, RestApi, create_app
from gateway.rest.server import HttpServer

__all__ = ["ROUTES", "HttpServer", "RestApi", "create_app"]
