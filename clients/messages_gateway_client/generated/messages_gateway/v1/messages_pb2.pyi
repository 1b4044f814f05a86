from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATUS_UNSPECIFIED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_IN_PROGRESS: _ClassVar[MessageStatus]
    MESSAGE_STATUS_INCOMPLETE: _ClassVar[MessageStatus]
    MESSAGE_STATUS_COMPLETED: _ClassVar[MessageStatus]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]

class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_UNSPECIFIED: _ClassVar[Order]
    ORDER_ASC: _ClassVar[Order]
    ORDER_DESC: _ClassVar[Order]

class IncompleteReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCOMPLETE_REASON_UNSPECIFIED: _ClassVar[IncompleteReason]
    INCOMPLETE_REASON_CONTENT_FILTER: _ClassVar[IncompleteReason]
    INCOMPLETE_REASON_MAX_TOKENS: _ClassVar[IncompleteReason]
    INCOMPLETE_REASON_RUN_CANCELLED: _ClassVar[IncompleteReason]
    INCOMPLETE_REASON_RUN_EXPIRED: _ClassVar[IncompleteReason]
    INCOMPLETE_REASON_RUN_FAILED: _ClassVar[IncompleteReason]
MESSAGE_STATUS_UNSPECIFIED: MessageStatus
MESSAGE_STATUS_IN_PROGRESS: MessageStatus
MESSAGE_STATUS_INCOMPLETE: MessageStatus
MESSAGE_STATUS_COMPLETED: MessageStatus
ROLE_UNSPECIFIED: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
ORDER_UNSPECIFIED: Order
ORDER_ASC: Order
ORDER_DESC: Order
INCOMPLETE_REASON_UNSPECIFIED: IncompleteReason
INCOMPLETE_REASON_CONTENT_FILTER: IncompleteReason
INCOMPLETE_REASON_MAX_TOKENS: IncompleteReason
INCOMPLETE_REASON_RUN_CANCELLED: IncompleteReason
INCOMPLETE_REASON_RUN_EXPIRED: IncompleteReason
INCOMPLETE_REASON_RUN_FAILED: IncompleteReason

class IncompleteDetails(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: IncompleteReason
    def __init__(self, reason: _Optional[_Union[IncompleteReason, str]] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("entries",)
    class EntriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.ScalarMap[str, str]
    def __init__(self, entries: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "object", "created_at", "thread_id", "status", "incomplete_details_null", "incomplete_details", "completed_at_null", "completed_at", "incomplete_at_null", "incomplete_at", "role", "content", "assistant_id", "run_id", "file_ids", "metadata", "unknown_role")
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_DETAILS_NULL_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_DETAILS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_NULL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_AT_NULL_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_AT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ROLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    object: str
    created_at: int
    thread_id: str
    status: MessageStatus
    incomplete_details_null: _struct_pb2.NullValue
    incomplete_details: IncompleteDetails
    completed_at_null: _struct_pb2.NullValue
    completed_at: int
    incomplete_at_null: _struct_pb2.NullValue
    incomplete_at: int
    role: Role
    content: _containers.RepeatedCompositeFieldContainer[MessageContent]
    assistant_id: str
    run_id: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    metadata: Metadata
    unknown_role: str
    def __init__(self, id: _Optional[str] = ..., object: _Optional[str] = ..., created_at: _Optional[int] = ..., thread_id: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., incomplete_details_null: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., incomplete_details: _Optional[_Union[IncompleteDetails, _Mapping]] = ..., completed_at_null: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., completed_at: _Optional[int] = ..., incomplete_at_null: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., incomplete_at: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., content: _Optional[_Iterable[_Union[MessageContent, _Mapping]]] = ..., assistant_id: _Optional[str] = ..., run_id: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., unknown_role: _Optional[str] = ...) -> None: ...

class MessageContent(_message.Message):
    __slots__ = ("image_file", "text", "unknown")
    IMAGE_FILE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    image_file: ImageFileContent
    text: TextContent
    unknown: UnknownContent
    def __init__(self, image_file: _Optional[_Union[ImageFileContent, _Mapping]] = ..., text: _Optional[_Union[TextContent, _Mapping]] = ..., unknown: _Optional[_Union[UnknownContent, _Mapping]] = ...) -> None: ...

class UnknownContent(_message.Message):
    __slots__ = ("type", "json")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    type: str
    json: str
    def __init__(self, type: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class ImageFileContent(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class TextContent(_message.Message):
    __slots__ = ("value", "annotations")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    value: str
    annotations: _containers.RepeatedCompositeFieldContainer[TextAnnotation]
    def __init__(self, value: _Optional[str] = ..., annotations: _Optional[_Iterable[_Union[TextAnnotation, _Mapping]]] = ...) -> None: ...

class TextAnnotation(_message.Message):
    __slots__ = ("text", "start_index", "end_index", "file_citation", "file_path")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_INDEX_FIELD_NUMBER: _ClassVar[int]
    FILE_CITATION_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_index: int
    end_index: int
    file_citation: FileCitation
    file_path: FilePath
    def __init__(self, text: _Optional[str] = ..., start_index: _Optional[int] = ..., end_index: _Optional[int] = ..., file_citation: _Optional[_Union[FileCitation, _Mapping]] = ..., file_path: _Optional[_Union[FilePath, _Mapping]] = ...) -> None: ...

class FileCitation(_message.Message):
    __slots__ = ("file_id", "quote")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    quote: str
    def __init__(self, file_id: _Optional[str] = ..., quote: _Optional[str] = ...) -> None: ...

class FilePath(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class MessageFile(_message.Message):
    __slots__ = ("id", "object", "created_at", "message_id", "file_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    object: str
    created_at: int
    message_id: str
    file_id: str
    def __init__(self, id: _Optional[str] = ..., object: _Optional[str] = ..., created_at: _Optional[int] = ..., message_id: _Optional[str] = ..., file_id: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("object", "data", "first_id", "last_id", "has_more")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FIRST_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    object: str
    data: _containers.RepeatedCompositeFieldContainer[Message]
    first_id: str
    last_id: str
    has_more: bool
    def __init__(self, object: _Optional[str] = ..., data: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., first_id: _Optional[str] = ..., last_id: _Optional[str] = ..., has_more: _Optional[bool] = ...) -> None: ...

class ListMessageFilesResponse(_message.Message):
    __slots__ = ("object", "data", "first_id", "last_id", "has_more")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FIRST_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    object: str
    data: _containers.RepeatedCompositeFieldContainer[MessageFile]
    first_id: str
    last_id: str
    has_more: bool
    def __init__(self, object: _Optional[str] = ..., data: _Optional[_Iterable[_Union[MessageFile, _Mapping]]] = ..., first_id: _Optional[str] = ..., last_id: _Optional[str] = ..., has_more: _Optional[bool] = ...) -> None: ...

class MessagePage(_message.Message):
    __slots__ = ("data", "resume_after", "page_index", "resume_before")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESUME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[Message]
    resume_after: str
    page_index: int
    resume_before: str
    def __init__(self, data: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., resume_after: _Optional[str] = ..., page_index: _Optional[int] = ..., resume_before: _Optional[str] = ...) -> None: ...

class MessageFilePage(_message.Message):
    __slots__ = ("data", "resume_after", "page_index", "resume_before")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESUME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[MessageFile]
    resume_after: str
    page_index: int
    resume_before: str
    def __init__(self, data: _Optional[_Iterable[_Union[MessageFile, _Mapping]]] = ..., resume_after: _Optional[str] = ..., page_index: _Optional[int] = ..., resume_before: _Optional[str] = ...) -> None: ...

class RequestOptions(_message.Message):
    __slots__ = ("extra_query", "extra_body", "extra_headers")
    class ExtraQueryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ExtraHeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXTRA_QUERY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_BODY_FIELD_NUMBER: _ClassVar[int]
    EXTRA_HEADERS_FIELD_NUMBER: _ClassVar[int]
    extra_query: _containers.ScalarMap[str, str]
    extra_body: _struct_pb2.Struct
    extra_headers: _containers.ScalarMap[str, str]
    def __init__(self, extra_query: _Optional[_Mapping[str, str]] = ..., extra_body: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., extra_headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateMessageRequest(_message.Message):
    __slots__ = ("thread_id", "role", "content", "file_ids", "metadata", "request_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    role: Role
    content: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    metadata: Metadata
    request_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., request_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class GetMessageRequest(_message.Message):
    __slots__ = ("thread_id", "message_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    message_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., message_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class UpdateMessageRequest(_message.Message):
    __slots__ = ("thread_id", "message_id", "metadata", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    message_id: str
    metadata: Metadata
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., message_id: _Optional[str] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("thread_id", "limit", "order", "after", "before", "run_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    limit: int
    order: Order
    after: str
    before: str
    run_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., limit: _Optional[int] = ..., order: _Optional[_Union[Order, str]] = ..., after: _Optional[str] = ..., before: _Optional[str] = ..., run_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class StreamMessagesRequest(_message.Message):
    __slots__ = ("thread_id", "limit", "order", "after", "before", "run_id", "max_items", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    limit: int
    order: Order
    after: str
    before: str
    run_id: str
    max_items: int
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., limit: _Optional[int] = ..., order: _Optional[_Union[Order, str]] = ..., after: _Optional[str] = ..., before: _Optional[str] = ..., run_id: _Optional[str] = ..., max_items: _Optional[int] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class GetMessageFileRequest(_message.Message):
    __slots__ = ("thread_id", "message_id", "file_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    message_id: str
    file_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., message_id: _Optional[str] = ..., file_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class ListMessageFilesRequest(_message.Message):
    __slots__ = ("thread_id", "message_id", "limit", "order", "after", "before", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    message_id: str
    limit: int
    order: Order
    after: str
    before: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., message_id: _Optional[str] = ..., limit: _Optional[int] = ..., order: _Optional[_Union[Order, str]] = ..., after: _Optional[str] = ..., before: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class StreamMessageFilesRequest(_message.Message):
    __slots__ = ("thread_id", "message_id", "limit", "order", "after", "before", "max_items", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    message_id: str
    limit: int
    order: Order
    after: str
    before: str
    max_items: int
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., message_id: _Optional[str] = ..., limit: _Optional[int] = ..., order: _Optional[_Union[Order, str]] = ..., after: _Optional[str] = ..., before: _Optional[str] = ..., max_items: _Optional[int] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class Thread(_message.Message):
    __slots__ = ("id", "object", "created_at", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    object: str
    created_at: int
    metadata: Metadata
    def __init__(self, id: _Optional[str] = ..., object: _Optional[str] = ..., created_at: _Optional[int] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class ThreadMessage(_message.Message):
    __slots__ = ("role", "content", "file_ids", "metadata")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    metadata: Metadata
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ...) -> None: ...

class CreateThreadRequest(_message.Message):
    __slots__ = ("messages", "metadata", "options")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ThreadMessage]
    metadata: Metadata
    options: RequestOptions
    def __init__(self, messages: _Optional[_Iterable[_Union[ThreadMessage, _Mapping]]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class GetThreadRequest(_message.Message):
    __slots__ = ("thread_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class UpdateThreadRequest(_message.Message):
    __slots__ = ("thread_id", "metadata", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    metadata: Metadata
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class DeleteThreadRequest(_message.Message):
    __slots__ = ("thread_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...

class DeleteThreadResponse(_message.Message):
    __slots__ = ("id", "object", "deleted")
    ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    id: str
    object: str
    deleted: bool
    def __init__(self, id: _Optional[str] = ..., object: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class AdoptThreadRequest(_message.Message):
    __slots__ = ("thread_id", "options")
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    thread_id: str
    options: RequestOptions
    def __init__(self, thread_id: _Optional[str] = ..., options: _Optional[_Union[RequestOptions, _Mapping]] = ...) -> None: ...
