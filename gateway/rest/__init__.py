"""The HTTP/JSON face: the upstream's OpenAI-compatible paths, over the shared operations."""

from __future__ import annotations

from gateway.rest.app import ROUTES, RestApi, create_app
from gateway.rest.calls import Authenticator
from gateway.rest.server import HttpServer

__all__ = ["ROUTES", "Authenticator", "HttpServer", "RestApi", "create_app"]
