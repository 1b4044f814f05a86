"""Upstream JSON <-> protobuf conversion for messages, message files and their list pages.

Functions over already-parsed JSON (``dict``/``list``/``str``/``int``/``bool``/``None``, as
``json.loads`` or orjson produce it; any ``Mapping`` for an object and ``tuple`` for an array too),
pure but for counting and logging what they tolerate (``drift``):

* ``message_from_json`` / ``message_to_json``                (``thread.message`` <-> ``pb.Message``)
* ``message_file_from_json`` / ``message_file_to_json``      (``thread.message.file`` <-> ``pb.MessageFile``)
* ``message_list_from_json`` / ``message_list_to_json``      (``pb.ListMessagesResponse``)
* ``message_file_list_from_json`` / ``message_file_list_to_json`` (``pb.ListMessageFilesResponse``)
* ``message_page_from_json`` / ``message_file_page_from_json``  (a stream's ``pb.MessagePage`` /
  ``pb.MessageFilePage``, items built in place)

Rules:

* JSON that does not fit the spec schema (missing required field, wrong JSON type -- ``bool`` is not
  an integer --, unknown status, incomplete reason or annotation type, non-object where an object
  is required, negative ``start_index``/``end_index``, an integer outside int64, a string protobuf
  cannot hold) raises ``WireFormatError``. Its message names the JSON path
  (``data[3].content[0].type``) and the JSON *type* seen, never a value: values can be user content.
  Metadata keys are user content too, so metadata errors stop at ``metadata``.
* Unknown extra keys are tolerated and dropped.
* Schema drift that would otherwise fail a whole page or stream passes in a documented form:
  a content part whose ``type`` is a non-empty string the contract does not know becomes
  ``MessageContent.unknown`` (``UnknownContent{type, json}``: the whole part as compact JSON text,
  key order kept), and ``*_to_json`` renders that JSON back unchanged; a ``role`` that is a
  non-empty string the contract does not know leaves ``role`` at ``ROLE_UNSPECIFIED`` and is kept in
  ``Message.unknown_role``, rendered back as sent. An empty or non-string type or role is still an
  error, and so is an unknown annotation type (an annotation has no unknown form in the contract).
* Metadata values that are not strings (the spec's schema for metadata is a bare object; its
  description and the contract say strings) are kept as their compact JSON text: ``123`` ->
  ``"123"``, ``true`` -> ``"true"``, ``null`` -> ``"null"``, objects and arrays as JSON. The pair is
  neither dropped (the consumer would lose it unseen) nor allowed to fail the whole page; rendered
  back it is a string. A value with no JSON text (NaN, a lone surrogate) is still an error.
* Every value tolerated this way is counted and logged (``drift``).
* ``object`` strings are kept as sent (not checked against ``thread.message`` etc.).
* v1-era messages (before 2024-03-27) have no ``status``, ``incomplete_details``, ``completed_at``,
  ``incomplete_at``: those are tri-state (absent / null / value) on the proto and stay absent.
* ``*_to_json`` emits keys in the spec's schema property order, omits absent tri-state fields and
  emits ``null`` for null ones, so ``to_json(from_json(x)) == x`` for schema-valid ``x``, with the
  same key order when ``x`` follows the schema order. Exception: protobuf maps do not keep insertion
  order, so ``metadata`` keys come out sorted.
* ``MessageFile.file_id`` is not in the schema (only in the spec's example object): kept when it is
  a string, dropped when null.

Layout: ``schema`` states the rules once, as tables, and names the first violation; ``decode`` is
the hot path (in-place construction, protobuf's own type checks, the walker only once something
failed); ``encode`` renders protos; ``drift`` counts and logs what is tolerated; ``errors``
holds ``WireFormatError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.upstream.wire import schema
from gateway.upstream.wire.decode import decode_into, fill_message, fill_message_file, fill_page
from gateway.upstream.wire.encode import message_file_to_json, message_to_json, page_to_json
from gateway.upstream.wire.errors import WireFormatError

__all__ = [
    "WireFormatError",
    "message_file_from_json",
    "message_file_list_from_json",
    "message_file_list_to_json",
    "message_file_page_from_json",
    "message_file_to_json",
    "message_from_json",
    "message_list_from_json",
    "message_list_to_json",
    "message_page_from_json",
    "message_to_json",
]


def message_from_json(obj: Mapping[str, Any]) -> pb.Message:
    """Convert an upstream ``thread.message`` object to ``pb.Message``."""
    m = pb.Message()
    decode_into(schema.MESSAGE, obj, fill_message, m)
    return m


def message_file_from_json(obj: Mapping[str, Any]) -> pb.MessageFile:
    """Convert an upstream ``thread.message.file`` object to ``pb.MessageFile``."""
    f = pb.MessageFile()
    decode_into(schema.MESSAGE_FILE, obj, fill_message_file, f)
    return f


def message_list_from_json(obj: Mapping[str, Any]) -> pb.ListMessagesResponse:
    """Convert an upstream page of messages (``object: "list"``) to ``pb.ListMessagesResponse``."""
    r = pb.ListMessagesResponse()
    decode_into(schema.MESSAGE_LIST, obj, fill_page, r, r.data, fill_message)
    return r


def message_file_list_from_json(obj: Mapping[str, Any]) -> pb.ListMessageFilesResponse:
    """Convert an upstream page of message files to ``pb.ListMessageFilesResponse``."""
    r = pb.ListMessageFilesResponse()
    decode_into(schema.MESSAGE_FILE_LIST, obj, fill_page, r, r.data, fill_message_file)
    return r


def message_page_from_json(obj: Mapping[str, Any]) -> pb.MessagePage:
    """Convert an upstream page of messages to a stream's ``pb.MessagePage``.

    The envelope is checked exactly as ``message_list_from_json`` checks it (same errors); the
    items are built in place in the page, never copied into it from a list response.
    """
    page = pb.MessagePage()
    decode_into(schema.MESSAGE_LIST, obj, fill_page, pb.ListMessagesResponse(), page.data,
                fill_message)
    return page


def message_file_page_from_json(obj: Mapping[str, Any]) -> pb.MessageFilePage:
    """Convert an upstream page of message files to a stream's ``pb.MessageFilePage``."""
    page = pb.MessageFilePage()
    decode_into(schema.MESSAGE_FILE_LIST, obj, fill_page, pb.ListMessageFilesResponse(),
                page.data, fill_message_file)
    return page


def message_list_to_json(r: pb.ListMessagesResponse) -> dict[str, Any]:
    """Render ``pb.ListMessagesResponse`` as the upstream list page."""
    return page_to_json(r, message_to_json)


def message_file_list_to_json(r: pb.ListMessageFilesResponse) -> dict[str, Any]:
    """Render ``pb.ListMessageFilesResponse`` as the upstream list page."""
    return page_to_json(r, message_file_to_json)
