"""An in-memory emulator of the retired upstream: Assistants v1 threads, messages and message files.

It is the reference the gateway is tested and benchmarked against, so it must be indistinguishable
from the real service for the official SDK (``openai==1.20.0``): same routes, bodies, errors,
headers and pagination, per ``openapi-messages-v1.yaml`` and ``openapi-threads-v1.yaml`` (verbatim
copies of the contract, kept in the package so nothing outside it is read at run time) and the
upstream NOTES.

Decisions where the contract is silent (each also documented where it is implemented):

* Messages created through the API get every field of MessageObject: ``status`` ``"completed"``
  (the message is whole the moment it is stored), ``completed_at``, ``incomplete_at`` and
  ``incomplete_details`` null (the live API set ``completed_at`` only on messages a run wrote),
  ``assistant_id``/``run_id`` null, ``metadata`` ``{}`` when not given. Messages of any other shape
  (v1-era without ``status``, ``in_progress``, annotations, images, ``run_id``) are seeded raw.
* An unknown ``after``/``before`` cursor is a 400 naming the param (``store`` explains why an
  empty page would be worse). ``after=<last id>`` is ``data: []``.
* Modify replaces ``metadata`` wholesale; ``{}`` or ``{"metadata": null}`` leaves it unchanged.
* Duplicate ``file_ids`` in a create are stored once.
* Keys are never echoed in 401 messages, not even masked.
* Deleting a thread deletes its messages and their message file objects; later calls on any of
  them answer 404 ``No thread found with id '…'.`` (``threads`` lists the thread decisions).

Modules: ``ids`` (id shapes), ``store`` (state and pagination), ``validation`` (request checks and
error envelopes), ``faults`` (fault rules), ``log`` (request log), ``threads`` (the thread
operations and their routes), ``app`` (aiohttp routes and the ``/_emulator`` admin API), ``server``
(running it).
"""

from __future__ import annotations

from pathlib import Path

from gateway.emulator.app import Emulator, create_app
from gateway.emulator.faults import KINDS as FAULT_KINDS
from gateway.emulator.faults import OPERATIONS, FaultRule, Faults
from gateway.emulator.log import LogEntry, RequestLog
from gateway.emulator.server import EmulatorServer, ThreadedEmulator, serve
from gateway.emulator.store import CursorNotFoundError, NotFoundError, Page, Store

SPEC_PATH = Path(__file__).with_name("openapi-messages-v1.yaml")
THREADS_SPEC_PATH = Path(__file__).with_name("openapi-threads-v1.yaml")

__all__ = [
    "FAULT_KINDS",
    "OPERATIONS",
    "SPEC_PATH",
    "THREADS_SPEC_PATH",
    "CursorNotFoundError",
    "Emulator",
    "EmulatorServer",
    "FaultRule",
    "Faults",
    "LogEntry",
    "NotFoundError",
    "Page",
    "RequestLog",
    "Store",
    "ThreadedEmulator",
    "create_app",
    "serve",
]
