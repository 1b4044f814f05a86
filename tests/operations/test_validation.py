"""The reads' fast check (``valid_id``, and ``check_get``'s early return) accepts exactly what the
field-by-field checks accept: a request either of them would refuse is refused, with the
violations that name its fields."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.errors import InvalidArgument
from gateway.operations import validation as check

#: Ids near the rules' edges: the allowed characters, dots, and some that are refused.
ID_TEXT = st.one_of(
    st.text(alphabet="ab_:-.", max_size=8),
    st.text(alphabet="aZ9_.:-/%?# \n\u00e9\u0430", max_size=12),
    st.builds(lambda n, c: c * n, st.integers(250, 260), st.sampled_from("a.")),
)


def field_violations(value: str) -> list[str]:
    v = check.Violations()
    check.check_id(v, "thread_id", value)
    return [item.description for item in v.items]


@given(ID_TEXT)
@example("")
@example(".")
@example("..")
@example("a..b")
@example("a" * check.MAX_ID_LENGTH)
@example("a" * (check.MAX_ID_LENGTH + 1))
@example("thread_abc:1.2-x")
def test_valid_id_is_check_id_finding_nothing(value: str) -> None:
    assert check.valid_id(value) == (field_violations(value) == [])


def outcome(run: object) -> list[tuple[str, str]] | None:
    try:
        run()  # type: ignore[operator]
    except InvalidArgument as err:
        return sorted((item.field, item.description) for item in err.details.field_violations)
    return None


@given(ID_TEXT, ID_TEXT, st.booleans(), st.booleans())
def test_check_get_refuses_what_the_field_checks_refuse(
    thread_id: str, message_id: str, options_set: bool, bad_header: bool
) -> None:
    req = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    if options_set:
        req.options.SetInParent()
        if bad_header:
            req.options.extra_headers["x-not-allowed"] = "1"

    def by_fields() -> None:
        v = check.Violations()
        check.check_id(v, "thread_id", req.thread_id)
        check.check_id(v, "message_id", req.message_id)
        check.check_options(v, req.options, allowed_headers=())
        v.raise_if_any()

    assert outcome(lambda: check.check_get(req, ())) == outcome(by_fields)


def test_a_refused_get_names_each_field() -> None:
    req = pb.GetMessageRequest(thread_id="a/b", message_id="..")
    with pytest.raises(InvalidArgument) as err:
        check.check_get(req, ())
    fields = {item.field for item in err.value.details.field_violations}
    assert fields == {"thread_id", "message_id"}


def test_check_get_file_fast_path_still_checks_the_file_id() -> None:
    req = pb.GetMessageFileRequest(thread_id="thread_1", message_id="msg_1", file_id="../x")
    with pytest.raises(InvalidArgument) as err:
        check.check_get_file(req, ())
    assert [item.field for item in err.value.details.field_violations] == ["file_id"]


def test_a_huge_id_is_refused_without_being_kept() -> None:
    # The fast check keeps the ids it has seen; an id of megabytes (gRPC's 4 MiB cap allows it)
    # must not be kept, or 8,192 of them would hold gigabytes.
    huge = "a" * (2 * 1024 * 1024)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3):
            req = pb.GetMessageRequest(thread_id=huge + str(i), message_id="msg_1")
            with pytest.raises(InvalidArgument):
                check.check_get(req, ())
        del req
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1024 * 1024, f"{held} bytes held after refusing three 2 MiB ids"
