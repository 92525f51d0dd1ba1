"""Secret values and redaction: what keeps credentials out of logs, reprs and errors.

``Secret`` wraps a credential so that ``repr()``/``str()`` never show it; code that
needs the value calls ``reveal()``, which makes every use easy to find. ``mask()`` is the
attrs ``repr=`` hook for model fields that hold tokens and storage keys. ``redact_url()``
and ``redact_text()`` mask token-like values in URLs and in body excerpts kept on errors.
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


# Keys whose value is a credential, as the API spells them in bodies (both generations)
# and as a gateway or proxy might: tokenName / builderToken / resourceId (the builder
# token, spec §C.1), pubBotToken / subBotToken, secret / salt (encryption), accessKey /
# secretKey (storage), and the generic password / authorization / api keys.
_SECRET_KEY: Final = (
    r"[\w-]*(?:token|secret|salt|password|authorization|resourceid|accesskey|apikey)[\w-]*"
)
_QUOTED_SECRET = re.compile(
    rf"""(?ix)
    (?P<q>["'])(?P<key>{_SECRET_KEY})(?P=q)    # "tokenName" or 'tokenName' (a Python repr)
    (?P<sep>\s*:\s*)
    (?: "(?:[^"\\]|\\.)*"?                   # a JSON string, possibly cut off at the end
      | '(?:[^'\\]|\\.)*'?                   # a repr string
      | [^\s,}}\]]+ )                          # a bare value (number, true, ...)
    """
)


def redact_text(text: str) -> str:
    """``text`` (a body excerpt: JSON, a Python repr, a query string) with the values of
    credential-like keys replaced by ``***``.

    Meant for excerpts kept on errors: a value cut off by truncation is masked too, so
    mask before cutting the text short.
    """
    masked = _QUOTED_SECRET.sub(
        lambda m: f'{m.group("q")}{m.group("key")}{m.group("q")}{m.group("sep")}"{MASK}"',
        text,
    )
    return redact_url(masked)
