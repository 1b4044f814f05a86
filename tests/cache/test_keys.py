from __future__ import annotations

from gateway.cache.keys import list_scope, make_key, message_scope


def test_make_key_query_order_does_not_matter() -> None:
    a = make_key("t", "listMessages", ("thread_1",), {"limit": "5", "order": "asc"})
    b = make_key("t", "listMessages", ("thread_1",), {"order": "asc", "limit": "5"})
    assert a == b and a.text == b.text


def test_make_key_every_component_changes_the_text() -> None:
    base = make_key("t", "getMessage", ("th", "m"), {})
    assert make_key("t", "getMessage", ("th", "m2"), {}).text != base.text
    assert make_key("t", "getMessageFile", ("th", "m"), {}).text != base.text
    assert make_key("t", "getMessage", ("th", "m"), {"x": "1"}).text != base.text


def test_make_key_separators_inside_values_cannot_collide() -> None:
    joined = make_key("t", "getMessage", ("a/b", "c"), {})
    split = make_key("t", "getMessage", ("a", "b/c"), {})
    assert joined.text != split.text
    tricky = make_key("t", "listMessages", ("th",), {"a": "1&b=2"})
    plain = make_key("t", "listMessages", ("th",), {"a": "1", "b": "2"})
    assert tricky.text != plain.text


def test_scopes_distinguish_threads_and_messages() -> None:
    assert list_scope("a") != list_scope("b")
    assert message_scope("a", "m") != message_scope("a/m", "")
