"""Command line: ``python -m gateway serve|emulator|keys`` (also the ``gateway`` console script)."""

from __future__ import annotations

import argparse
import sys

from gateway.config import ConfigError, check_settings, load_settings, parse_listen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--grpc-listen", help="HOST:PORT for gRPC")
    serve.add_argument("--http-listen", help="HOST:PORT for HTTP/JSON")
    serve.add_argument("--upstream-url", help="upstream base URL, e.g. http://127.0.0.1:8099/v1")
    emulator = commands.add_parser("emulator", help="run the upstream emulator")
    emulator.add_argument("--listen", default="127.0.0.1:8099", help="HOST:PORT")
    from gateway.credentials import cli as keys_cli

    keys_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        from gateway.credentials import cli as keys_cli

        return keys_cli.run(args)
    if args.command == "emulator":
        try:
            from gateway.emulator.server import serve as serve_emulator
        except ModuleNotFoundError:
            # The production image leaves the emulator out (deploy/Dockerfile).
            print("gateway: the emulator is not installed here (production image); use the dev "
                  "image (docker build --target dev) or a source checkout", file=sys.stderr)
            return 2

        try:
            parse_listen(args.listen, "--listen")
        except ConfigError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        serve_emulator(args.listen)
        return 0

    from gateway.app import serve
    from gateway.log import configure_logging
    from gateway.loop import run

    try:
        settings = load_settings(args.config)
        server_changes = {
            k: v for k, v in (("grpc_listen", args.grpc_listen), ("http_listen", args.http_listen))
            if v is not None
        }
        if server_changes:
            settings = settings.replace("server", **server_changes)
        if args.upstream_url:
            settings = settings.replace("upstream", base_url=args.upstream_url)
        check_settings(settings)  # the flags get the same checks as the file
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging)
    from gateway.config_checks import worker_count
    from gateway import supervisor

    index = supervisor.worker_index()
    if index is None and worker_count(settings.server.workers) > 1:
        return supervisor.run(settings, (sys.argv[1:] if argv is None else argv)[1:])
    if index is not None:
        import structlog

        structlog.contextvars.bind_contextvars(worker=index)
        # The supervisor serves the metrics of every worker (gateway/supervisor.py).
        settings = settings.replace("server", metrics_listen="")
    run(serve(settings), settings.server.event_loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
