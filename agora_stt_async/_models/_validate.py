"""attrs validators for the documented limits; each failure names the field and the limit."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

from agora_stt_async._errors import ValidationError

Validator = Callable[[Any, Any, Any], None]


def to_tuple(value: Collection[Any] | None) -> Any:
    """attrs converter: a list (or any collection) becomes a tuple; None stays None.

    Anything else (a bare string, which would split into characters, or a number) is
    left as is for the field's validator to refuse with the field's name.
    """
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value
    return tuple(value)


def _require_list(path: str, value: object) -> None:
    if not isinstance(value, tuple):
        what = "a single string" if isinstance(value, (str, bytes)) else type(value).__name__
        raise ValidationError(path, f"must be a list, not {what}", value)


def text(path: str, *, max_len: int | None = None, optional: bool = False) -> Validator:
    """A non-empty ``str`` of at most ``max_len`` characters."""

    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or not value:
            raise ValidationError(path, "must be a non-empty string", value)
        if max_len is not None and len(value) > max_len:
            raise ValidationError(path, f"at most {max_len} characters (got {len(value)})")

    return check


def pattern(path: str, regex: str, description: str) -> Validator:
    compiled = re.compile(regex)

    def check(_inst: object, _attr: object, value: object) -> None:
        if isinstance(value, str) and not compiled.fullmatch(value):
            raise ValidationError(path, description, value)

    return check


def strings(
    path: str, *, max_items: int | None = None, min_items: int = 0, optional: bool = True
) -> Validator:
    """A tuple of non-empty strings with a documented maximum count."""

    def check(_inst: object, _attr: object, value: tuple[object, ...] | None) -> None:
        if value is None:
            if optional:
                return
            raise ValidationError(path, "is required", value)
        _require_list(path, value)
        if len(value) < min_items:
            raise ValidationError(path, f"at least {min_items} item(s) required")
        if max_items is not None and len(value) > max_items:
            raise ValidationError(path, f"at most {max_items} items (got {len(value)})")
        for item in value:
            if not isinstance(item, str) or not item:
                raise ValidationError(path, "items must be non-empty strings", item)

    return check


def items(path: str, kind: type, *, max_items: int | None = None) -> Validator:
    """An optional tuple of ``kind`` instances with a documented maximum count."""

    def check(_inst: object, _attr: object, value: tuple[object, ...] | None) -> None:
        if value is None:
            return
        _require_list(path, value)
        if max_items is not None and len(value) > max_items:
            raise ValidationError(path, f"at most {max_items} items (got {len(value)})")
        for item in value:
            if not isinstance(item, kind):
                raise ValidationError(path, f"items must be {kind.__name__}", item)

    return check


def integer(path: str, low: int | None = None, high: int | None = None) -> Validator:
    """An optional ``int`` (not ``bool``) within ``[low, high]``."""

    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(path, "must be an integer", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValidationError(path, f"must be within {low}..{high} (got {value})")

    return check


def one_of(path: str, allowed: Collection[int] | Collection[str]) -> Validator:
    """An optional member of ``allowed``, of its type: an ``int`` enum refuses ``True``
    and ``1.0`` (equal to 1, but sent as ``true`` / ``1.0``), a ``str`` one refuses
    anything but a string; neither ever hashes an unhashable value."""
    kind = str if all(isinstance(a, str) for a in allowed) else int
    shown = ", ".join(str(a) for a in sorted(allowed, key=str))

    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, kind):
            what = "an integer" if kind is int else "a string"
            raise ValidationError(path, f"must be {what}, one of {shown}", value)
        if value not in allowed:
            raise ValidationError(path, f"must be one of {shown} (got {value!r})", value)

    return check


def json_value(path: str) -> Validator:
    """An optional free-form value that JSON can carry (no set, no NaN, no object)."""

    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None:
            return
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise ValidationError(
                path, "must be plain JSON data (str, number, list, dict)"
            ) from None

    return check


def instance(path: str, kind: type, *, optional: bool = True) -> Validator:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None and optional:
            return
        if not isinstance(value, kind):
            raise ValidationError(path, f"must be a {kind.__name__}", value)

    return check


def is_base64_of(raw_len: int, value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == raw_len
    except (binascii.Error, ValueError):
        return False
