"""Secret values and redaction: what keeps credentials out of logs, reprs and errors.

``Secret`` wraps a credential so that ``repr()``/``str()`` never show it; code that
needs the value calls ``reveal()``, which makes every use easy to find. ``mask()`` is the
attrs ``repr=`` hook for model fields that hold tokens and storage keys.
"""

from __future__ import annotations

import re
from typing import Final, final

MASK: Final = "***"


@final
class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a secret must be a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The value itself. Call it only where the value is sent, never to log."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def mask(value: object) -> str:
    """attrs ``repr=`` hook: shows whether a secret field is set, never its value."""
    return "None" if value is None else repr(MASK)


_QUERY_SECRET = re.compile(r"(?i)(builderToken|token|secret|key)=([^&\s]+)")


def redact_url(url: str) -> str:
    """``url`` with the values of token-like query parameters replaced by ``***``."""
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", url)
