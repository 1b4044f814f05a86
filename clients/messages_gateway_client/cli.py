"""``python -m messages_gateway_client``: the gateway from a terminal, one JSON object per
output line.

    python -m messages_gateway_client messages list THREAD_ID --order asc
    python -m messages_gateway_client messages create THREAD_ID --content "hi" [--role user]
        [--metadata k=v]
    python -m messages_gateway_client messages retrieve THREAD_ID MESSAGE_ID
    python -m messages_gateway_client messages update THREAD_ID MESSAGE_ID --metadata k=v
    python -m messages_gateway_client messages files list THREAD_ID MESSAGE_ID
    python -m messages_gateway_client messages files retrieve THREAD_ID MESSAGE_ID FILE_ID
    python -m messages_gateway_client threads create [--message "hi"] [--metadata k=v]
    python -m messages_gateway_client threads retrieve THREAD_ID
    python -m messages_gateway_client threads update THREAD_ID --metadata k=v
    python -m messages_gateway_client threads delete THREAD_ID

Objects are printed in the upstream API's JSON shape. ``--target`` (or MESSAGES_GATEWAY_TARGET),
``--key`` (or MESSAGES_GATEWAY_KEY; the environment keeps it out of shell history and ``ps``),
``--timeout``. On a terminal, long lists show a progress line on stderr. Exit status: 0 done,
1 the call failed (the status on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from messages_gateway_client._errors import GatewayError
from messages_gateway_client._json import (message_file_json, message_json, thread_deleted_json,
                                          thread_json)
from messages_gateway_client._sync import MessagesGatewayClient, Stream

DEFAULT_TARGET = "127.0.0.1:50051"


def _metadata(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--metadata expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def _connection() -> argparse.ArgumentParser:
    """Connection options, accepted before or after the subcommand (SUPPRESS: the leaf's
    absent option must not overwrite the value given before the subcommand)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default=argparse.SUPPRESS,
                        help=f"HOST:PORT (default: $MESSAGES_GATEWAY_TARGET or {DEFAULT_TARGET})")
    common.add_argument("--key", default=argparse.SUPPRESS,
                        help="gateway key (default: $MESSAGES_GATEWAY_KEY)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds per call; for lists, for the whole list (default 60)")
    common.add_argument("--tls", action="store_true", default=argparse.SUPPRESS,
                        help="use TLS with the system roots")
    common.add_argument("--ca", default=argparse.SUPPRESS,
                        help="PEM file of the root certificates to trust (implies TLS)")
    return common


def _parser() -> argparse.ArgumentParser:
    common = _connection()
    parser = argparse.ArgumentParser(
        prog="python -m messages_gateway_client",
        description="Call the Messages Gateway; prints JSON lines.",
        parents=[common])
    resources = parser.add_subparsers(dest="resource", required=True)
    messages = resources.add_parser("messages", parents=[common]).add_subparsers(
        dest="action", required=True)

    def listing(sub: argparse.ArgumentParser, run_id: bool) -> None:
        sub.add_argument("--limit", type=int, default=0, help="page size, 1-100")
        sub.add_argument("--order", choices=("asc", "desc"))
        sub.add_argument("--after", default="")
        sub.add_argument("--before", default="")
        sub.add_argument("--max-items", type=int, default=0, help="stop after N items")
        if run_id:
            sub.add_argument("--run-id", default="")

    sub = messages.add_parser("list", help="every message of a thread (streamed)", parents=[common])
    sub.add_argument("thread_id")
    listing(sub, run_id=True)
    sub = messages.add_parser("create", help="create a message", parents=[common])
    sub.add_argument("thread_id")
    sub.add_argument("--content", required=True)
    sub.add_argument("--role", choices=("user", "assistant"), default="user")
    sub.add_argument("--file-id", action="append", default=[], dest="file_ids")
    sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    sub.add_argument("--request-id", default="", help="idempotency key")
    sub = messages.add_parser("retrieve", help="one message", parents=[common])
    sub.add_argument("thread_id")
    sub.add_argument("message_id")
    sub = messages.add_parser("update", help="replace a message's metadata", parents=[common])
    sub.add_argument("thread_id")
    sub.add_argument("message_id")
    sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    files = messages.add_parser("files", parents=[common]).add_subparsers(
        dest="files_action", required=True)
    sub = files.add_parser("list", help="every file of a message (streamed)", parents=[common])
    sub.add_argument("thread_id")
    sub.add_argument("message_id")
    listing(sub, run_id=False)
    sub = files.add_parser("retrieve", help="one message file", parents=[common])
    sub.add_argument("thread_id")
    sub.add_argument("message_id")
    sub.add_argument("file_id")
    threads = resources.add_parser("threads", parents=[common]).add_subparsers(
        dest="action", required=True)
    sub = threads.add_parser("create", help="create a thread", parents=[common])
    sub.add_argument("--message", action="append", default=[], dest="messages",
                     help="an initial user message (repeatable, in order)")
    sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    for action, text in (("retrieve", "one thread"), ("update", "replace a thread's metadata"),
                         ("delete", "delete a thread and its messages")):
        sub = threads.add_parser(action, help=text, parents=[common])
        sub.add_argument("thread_id")
        if action == "update":
            sub.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    return parser


class Progress:
    """``\\r1200 items, 12 pages`` on stderr while a list streams, only when stdout is a
    terminal (piped output stays clean JSON lines and logs stay free of carriage returns)."""

    def __init__(self, out: TextIO, err: TextIO, noun: str) -> None:
        self._err = err
        self._noun = noun
        self.enabled = out.isatty()
        self._shown = False

    def update(self, items: int, pages: int) -> None:
        if self.enabled:
            self._err.write(f"\r{items} {self._noun}, {pages} pages")
            self._err.flush()
            self._shown = True

    def done(self) -> None:
        if self._shown:
            self._err.write("\r\033[K")
            self._err.flush()


def _emit(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def _stream(out: TextIO, err: TextIO, stream: Stream[Any, Any], noun: str,
            render: Any) -> None:
    progress = Progress(out, err, noun)
    items = pages = 0
    try:
        for page in stream.pages():
            for item in page.data:
                _emit(out, render(item))
            out.flush()
            items += len(page.data)
            pages += 1
            progress.update(items, pages)
    finally:
        progress.done()


def run_threads(args: argparse.Namespace, client: MessagesGatewayClient, out: TextIO) -> None:
    t = client.threads
    if args.action == "create":
        messages = [{"role": "user", "content": text} for text in args.messages]
        _emit(out, thread_json(t.create(messages=messages, metadata=_metadata(args.metadata))))
    elif args.action == "retrieve":
        _emit(out, thread_json(t.retrieve(args.thread_id)))
    elif args.action == "update":
        _emit(out, thread_json(t.update(args.thread_id, metadata=_metadata(args.metadata))))
    else:
        _emit(out, thread_deleted_json(t.delete(args.thread_id)))


def run(args: argparse.Namespace, client: MessagesGatewayClient, out: TextIO,
        err: TextIO) -> None:
    if args.resource == "threads":
        run_threads(args, client, out)
        return
    m = client.messages
    common: dict[str, Any] = {}
    if args.action == "list":
        common = dict(limit=args.limit, order=args.order, after=args.after, before=args.before,
                      max_items=args.max_items)
        _stream(out, err, m.list(args.thread_id, run_id=args.run_id, **common), "messages",
                message_json)
    elif args.action == "create":
        _emit(out, message_json(m.create(
            args.thread_id, content=args.content, role=args.role, file_ids=args.file_ids,
            metadata=_metadata(args.metadata), request_id=args.request_id)))
    elif args.action == "retrieve":
        _emit(out, message_json(m.retrieve(args.message_id, thread_id=args.thread_id)))
    elif args.action == "update":
        _emit(out, message_json(m.update(args.message_id, thread_id=args.thread_id,
                                         metadata=_metadata(args.metadata))))
    elif args.files_action == "list":
        common = dict(limit=args.limit, order=args.order, after=args.after, before=args.before,
                      max_items=args.max_items)
        _stream(out, err, m.files.list(args.message_id, thread_id=args.thread_id, **common),
                "files", message_file_json)
    else:
        _emit(out, message_file_json(m.files.retrieve(
            args.file_id, thread_id=args.thread_id, message_id=args.message_id)))


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    target = getattr(args, "target", None) or os.environ.get("MESSAGES_GATEWAY_TARGET",
                                                             DEFAULT_TARGET)
    key = getattr(args, "key", None) or os.environ.get("MESSAGES_GATEWAY_KEY") or None
    timeout = getattr(args, "timeout", 60.0)
    ca = getattr(args, "ca", None)
    try:
        root = None
        if ca:
            with open(ca, "rb") as pem:
                root = pem.read()
        client = MessagesGatewayClient(target, api_key=key, timeout=timeout,
                                       tls=getattr(args, "tls", False), root_certificates=root)
        with client:
            run(args, client, out, err)
    except (ValueError, argparse.ArgumentTypeError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except GatewayError as exc:
        print(f"error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


__all__ = ["Progress", "main"]
