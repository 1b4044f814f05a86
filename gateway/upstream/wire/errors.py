"""``WireFormatError`` and the value-free descriptions its messages are made of (cold path only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class WireFormatError(ValueError):
    """Upstream JSON (or a proto being rendered to JSON) does not fit the schema.

    ``path`` is the JSON path of the offending field (``""`` for the document itself) and
    ``reason`` a value-free description. ``str(err)`` is ``"<path>: <reason>"``.
    """

    def __init__(self, reason: str, *path: str | int) -> None:
        super().__init__(reason)
        self.reason = reason
        # Innermost segment first: callers add their own segments while the error unwinds.
        self._rpath: list[str | int] = list(reversed(path))

    def _within(self, *segments: str | int) -> WireFormatError:
        self._rpath.extend(reversed(segments))
        return self

    @property
    def path(self) -> str:
        out: list[str] = []
        for seg in reversed(self._rpath):
            if type(seg) is int:
                out.append(f"[{seg}]")
            else:
                if out:
                    out.append(".")
                out.append(seg)  # type: ignore[arg-type]
        return "".join(out)

    def __str__(self) -> str:
        return f"{self.path or '<document>'}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.reason, tuple(reversed(self._rpath))))


def _rebuild_error(reason: str, path: tuple[str | int, ...]) -> WireFormatError:
    return WireFormatError(reason, *path)


def json_type(value: Any) -> str:
    """The JSON type of ``value`` (never the value itself: values can be user content)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "non-JSON value"


def expected(what: str, value: Any, *path: str | int) -> WireFormatError:
    return WireFormatError(f"expected {what}, got {json_type(value)}", *path)
