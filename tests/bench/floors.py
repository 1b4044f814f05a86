"""Floor servers: what the gateway's stack costs with nothing of the gateway in it.

``python -m tests.bench.floors KIND --port PORT [--upstream URL] [--body FILE]`` serves on 127.0.0.1
until SIGTERM. Kinds:

* ``grpc-echo``: grpc.aio, generated ``MessagesService`` servicer, ``GetMessage`` answers a prebuilt
  ~1 KB ``Message`` (the one the gateway makes of the same upstream body);
* ``grpc-echo-read``: the same answer from a stream-unary handler that reads its request with
  ``context.read()``, the shape the gateway's call admission (``gateway/rpc/admission.py``) gives
  every unary method: what that shape costs by itself; ``grpc-echo-trailers``: that shape with
  the three trailers every gateway answer carries (``x-gateway-request-id``, ``x-cache``, ``age``);
* ``grpc-gateway-shell``: the gateway's own gRPC server (``gateway.rpc.server.GrpcServer``: call
  admission, face, call pipeline with its log, audit and metrics; auth off, logging at
  ``warning``) over operations that all answer the prebuilt message at once, marked as a cache hit
  is: everything of a cached ``GetMessage`` but the operation (validation, cache look-up);
* ``grpc-proxy-httpx``: the echo, after one upstream GET on the **gateway's own upstream sender**
  (``gateway.upstream.http.UpstreamHTTP``, built as ``gateway/upstream/pool.py`` builds it, the
  request built per call as the gateway builds it: it follows any change of the gateway's
  transport); ``grpc-proxy-transport``: the same with one request built once and sent again and
  again (what building a request costs); ``grpc-proxy-aiohttp``: the same GET with a raw
  ``aiohttp.ClientSession`` (reference);
* ``grpc-stream``: ``StreamMessages`` walking the upstream's pages with that sender (one GET per
  page, the cursor read from the parsed JSON) and answering each page prebuilt: the transport, the
  JSON parse and gRPC framing of the same pages, without JSON -> protobuf conversion;
  ``grpc-stream-convert``: the same walk, each page converted with the gateway's own decoder
  (``gateway.upstream.wire.message_page_from_json``), the work a stream cannot skip;
* ``rest-echo``, ``rest-proxy-httpx``, ``rest-proxy-aiohttp``: a bare Starlette app on uvicorn
  (socket with ``TCP_NODELAY`` as the gateway's REST face binds it; ``--http`` the gateway's default
  parser) answering ``GET /v1/threads/{t}/messages/{m}`` with the same JSON, from memory or after
  one upstream GET.

A proxy answers only after a 200 upstream answer; anything else is an error status (gRPC INTERNAL,
HTTP 502), which the bench counts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
from pathlib import Path
from typing import Any

GRPC_KINDS = ("grpc-echo", "grpc-echo-read", "grpc-echo-trailers", "grpc-gateway-shell",
              "grpc-proxy-httpx", "grpc-proxy-transport", "grpc-proxy-aiohttp", "grpc-stream",
              "grpc-stream-convert")
REST_KINDS = ("rest-echo", "rest-proxy-httpx", "rest-proxy-aiohttp")
KINDS = GRPC_KINDS + REST_KINDS
#: The kinds that answer from memory: no ``--upstream``.
FROM_MEMORY = ("grpc-echo", "grpc-echo-read", "grpc-echo-trailers", "grpc-gateway-shell",
               "rest-echo")


class _Getter:
    """One upstream GET returning the body: on the gateway's own upstream sender
    (``gateway.upstream.http.UpstreamHTTP``, built as ``gateway/upstream/pool.py`` builds it, its
    request built per call as the gateway builds it, its body read as the gateway reads it), on
    that sender with one request built once (``prebuilt``), or on raw aiohttp."""

    TIMEOUT = 10.0

    def __init__(self, how: str) -> None:
        self.how = how
        self._client: Any = None
        self._prebuilt: dict[str, Any] = {}
        self._urls: dict[str, Any] = {}

    async def get(self, url: str, params: dict[str, str] | None = None) -> bytes:
        if self._client is None:
            self._client = self._open()
        if self.how == "aiohttp":
            async with self._client.get(url, params=params) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"upstream answered {response.status}")
                return body
        request = self._prebuilt.get(url) if self.how == "prebuilt" and not params else None
        if request is None:
            urls = self._urls.get(url)
            if urls is None:  # parsed once, as the gateway parses its base URL once
                from gateway.upstream.http import UpstreamURLs

                urls = self._urls[url] = UpstreamURLs(url)
            request = self._client.build_request(
                "GET", urls.url((), params), headers={},
                timeout=self.TIMEOUT, connect_timeout=self.TIMEOUT)
            if self.how == "prebuilt" and not params:
                self._prebuilt[url] = request
        response = await self._client.send(request)
        try:
            body = b"".join([chunk async for chunk in response.stream])
        finally:
            await response.aclose()
        if response.status_code != 200:
            raise RuntimeError(f"upstream answered {response.status_code}")
        return body

    def _open(self) -> Any:
        if self.how != "aiohttp":
            from gateway.config import UpstreamSettings
            from gateway.upstream.http import UpstreamHTTP

            return UpstreamHTTP(UpstreamSettings())
        import aiohttp

        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100),
                                     cookie_jar=aiohttp.DummyCookieJar())

    async def aclose(self) -> None:
        if self._client is not None:
            await (self._client.close() if self.how == "aiohttp" else self._client.aclose())


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


class _ConstantOperations:
    """Every operation of both services answers ``reply`` at once, as a cache hit marks it."""

    allowed_headers: tuple[str, ...] = ()

    def __init__(self, reply: Any) -> None:
        from gateway.operations.ownership import Ownership

        self.ownership = Ownership("open")
        self._reply = reply

    def __getattr__(self, name: str) -> Any:
        reply = self._reply

        async def answer(_request: Any, ctx: Any) -> Any:
            ctx.cache = "hit"
            ctx.response_headers.update({"x-cache": "hit", "age": "0"})
            return reply
        return answer


async def serve_gateway_shell(port: int, body: bytes) -> None:
    import dataclasses

    import orjson

    from gateway.config import Settings
    from gateway.log import configure_logging
    from gateway.rpc.server import GrpcServer
    from gateway.upstream import wire

    settings = Settings()
    configure_logging(dataclasses.replace(settings.logging, level="warning"))
    server = GrpcServer(settings.server, _ConstantOperations(  # type: ignore[arg-type]
        wire.message_from_json(orjson.loads(body))))
    await server.start(f"127.0.0.1:{port}")
    try:
        await _until_terminated()
    finally:
        await server.server.stop(0)
        await server.admission.close()


async def serve_grpc(kind: str, port: int, upstream: str, body: bytes,
                     pages: list[bytes]) -> None:
    import grpc
    import orjson

    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
    from gateway.upstream import wire

    reply = wire.message_from_json(orjson.loads(body)) if body else pb.Message()
    prebuilt = [wire.message_page_from_json(orjson.loads(p)) for p in pages]
    for index, page in enumerate(prebuilt):  # as the gateway numbers its pages
        page.page_index = index
        page.resume_after = page.data[-1].id if page.data else ""
    getter = _Getter({"grpc-proxy-aiohttp": "aiohttp",
                      "grpc-proxy-transport": "prebuilt"}.get(kind, "httpx"))

    class Floor(pb_grpc.MessagesServiceServicer):
        async def GetMessage(self, request: Any, context: Any) -> Any:
            if kind.startswith("grpc-proxy"):
                try:
                    await getter.get(upstream)
                except Exception as exc:
                    await context.abort(grpc.StatusCode.INTERNAL, str(exc)[:200])
            return reply

        async def StreamMessages(self, request: Any, context: Any) -> Any:
            after = ""
            for index in range(len(prebuilt) + 1):
                params = {"limit": str(request.limit or 100), **({"after": after} if after else {})}
                try:
                    page = orjson.loads(await getter.get(upstream, params))
                except Exception as exc:
                    await context.abort(grpc.StatusCode.INTERNAL, str(exc)[:200])
                if index >= len(prebuilt) or not page["data"]:
                    await context.abort(grpc.StatusCode.INTERNAL, "more pages than prebuilt")
                if kind == "grpc-stream-convert":
                    converted = wire.message_page_from_json(page)
                    converted.page_index = index
                    converted.resume_after = converted.data[-1].id
                    yield converted
                else:
                    yield prebuilt[index]
                if not page["has_more"]:
                    return
                after = page["data"][-1]["id"]

    async def read_then_answer(_requests: Any, context: Any) -> Any:
        pb.GetMessageRequest.FromString(await context.read())
        if kind == "grpc-echo-trailers":
            context.set_trailing_metadata((("x-gateway-request-id", f"{random.getrandbits(128):032x}"),
                                           ("x-cache", "hit"), ("age", "0")))
        return reply

    server = grpc.aio.server()
    if kind in ("grpc-echo-read", "grpc-echo-trailers"):
        method = grpc.stream_unary_rpc_method_handler(
            read_then_answer, request_deserializer=None,
            response_serializer=pb.Message.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "messages_gateway.v1.MessagesService", {"GetMessage": method}),))
    else:
        pb_grpc.add_MessagesServiceServicer_to_server(Floor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await _until_terminated()
    finally:
        await server.stop(0)
        await getter.aclose()


async def serve_rest(kind: str, port: int, upstream: str, body: bytes, http: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    getter = _Getter("aiohttp" if kind == "rest-proxy-aiohttp" else "httpx")

    async def get_message(request: Request) -> Response:
        if kind == "rest-echo":
            return Response(body, media_type="application/json")
        try:
            answer = await getter.get(upstream)
        except Exception as exc:
            return Response(str(exc)[:200], status_code=502)
        return Response(answer, media_type="application/json")

    app = Starlette(routes=[Route("/v1/threads/{thread_id}/messages/{message_id}", get_message)])
    config = uvicorn.Config(app, http=http, lifespan="off", log_config=None, access_log=False,
                            server_header=False, log_level="warning")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _until_terminated()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        await getter.aclose()


def main(argv: list[str] | None = None) -> None:
    from gateway.config import ServerSettings
    from gateway.loop import LOOP_FACTORIES

    parser = argparse.ArgumentParser(prog="python -m tests.bench.floors")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="", help="URL of the upstream GET (proxies)")
    parser.add_argument("--body", default="", help="file of the upstream JSON the echo answers")
    parser.add_argument("--pages", nargs="*", default=[], help="page files (grpc-stream)")
    defaults = ServerSettings()
    parser.add_argument("--http", default=defaults.http_parser,
                        help="uvicorn HTTP protocol (REST kinds); default: the gateway's")
    parser.add_argument("--loop", default=defaults.event_loop, choices=tuple(LOOP_FACTORIES),
                        help="event loop; default: the gateway's")
    args = parser.parse_args(argv)
    if args.kind not in FROM_MEMORY and not args.upstream:
        parser.error(f"{args.kind} needs --upstream")
    body = Path(args.body).read_bytes() if args.body else b""
    if args.kind == "grpc-gateway-shell":
        coro = serve_gateway_shell(args.port, body)
    elif args.kind in GRPC_KINDS:
        coro = serve_grpc(args.kind, args.port, args.upstream, body,
                          [Path(p).read_bytes() for p in args.pages])
    else:
        coro = serve_rest(args.kind, args.port, args.upstream, body, args.http)
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[args.loop]) as runner:  # as gateway/loop.py
        runner.run(coro)


if __name__ == "__main__":
    main()
