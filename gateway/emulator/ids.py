"""Identifiers shaped like the real service's.

Consumers (and the gateway's own validation) may check id shapes, so the emulator mints ids that
look exactly like production ones: ``thread_`` / ``msg_`` + 24 alphanumerics, ``file-`` + 24
alphanumerics, and request ids ``req_`` + 32 lowercase hex digits.

Object ids do not need to be unpredictable (nothing authorises on them), only unique and fast to
make: benchmarks seed 10,000-message threads, so a non-cryptographic generator seeded from the OS
is used for them. Request ids use :mod:`secrets` because they are cheap enough either way.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import string

__all__ = [
    "ALPHANUMERICS",
    "ENDLESS_PREFIX",
    "FILE_ID_RE",
    "MESSAGE_ID_RE",
    "REQUEST_ID_RE",
    "THREAD_ID_RE",
    "endless_message_id",
    "file_id",
    "message_id",
    "request_id",
    "thread_id",
]

ALPHANUMERICS = string.ascii_letters + string.digits

THREAD_ID_RE = re.compile(r"^thread_[A-Za-z0-9]{24}$")
MESSAGE_ID_RE = re.compile(r"^msg_[A-Za-z0-9]{24}$")
FILE_ID_RE = re.compile(r"^file-[A-Za-z0-9]{24}$")
REQUEST_ID_RE = re.compile(r"^req_[0-9a-f]{32}$")

_rng = random.Random(os.urandom(16))


def _suffix() -> str:
    return "".join(_rng.choices(ALPHANUMERICS, k=24))


def thread_id() -> str:
    """A new ``thread_…`` id."""
    return "thread_" + _suffix()


def message_id() -> str:
    """A new ``msg_…`` id."""
    return "msg_" + _suffix()


#: Message ids of the ``endless_pages`` fault: well-shaped, never in the store, recognisable as
#: a cursor that continues the endless list.
ENDLESS_PREFIX = "msg_endless"


def endless_message_id(number: int) -> str:
    """The ``number``-th id of an endless list (``msg_endless`` + 17 digits)."""
    return f"{ENDLESS_PREFIX}{number:017d}"


def file_id() -> str:
    """A new ``file-…`` id (the emulator has no files API; tests use these as attachments)."""
    return "file-" + _suffix()


def request_id() -> str:
    """A new ``req_…`` id for the ``x-request-id`` header."""
    return "req_" + secrets.token_hex(16)
