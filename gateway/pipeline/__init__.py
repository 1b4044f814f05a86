"""The one call pipeline under both faces.

A face (``gateway.rpc`` for gRPC, ``gateway.rest`` for HTTP/JSON) only translates transport
details: it opens a call context from the method, the request metadata or headers, the peer and
the deadline (``opening``), hands the pipeline a function that runs the operation, and renders
the result or the ``GatewayError`` it gets back. Everything a consumer can see happens here,
once, for both faces (``pipeline``): authentication, scope, rate limit, the deferred refusal of a
bad header, the stream limit, revocation and expiry of open streams, drain, the resume point of a
failed stream, and the call's one log line, audit line and metrics (``records``).
"""

from gateway.pipeline.opening import open_call
from gateway.pipeline.pipeline import Pipeline, Resume

__all__ = ["Pipeline", "Resume", "open_call"]
